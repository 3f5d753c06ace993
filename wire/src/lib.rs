//! The one definition of what bmat, agent-shim and signer say to each other.
//!
//! This crate is deliberately tiny (serde only): bmat depends on it and must not pull in
//! the server stack or rusqlite to learn the shape of a request.

pub mod api;
pub mod key;

pub use key::{
    DEFAULT_SCOPE, KeyError, validate_key, validate_owner, validate_prefix, validate_scope,
};
