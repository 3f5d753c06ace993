//! The HTTP edge: the accept loop ([`accept`]: timeouts, a connection limit), the API
//! under `/v1` ([`api`]), the limits per token and the body deadline ([`guard`]), and
//! the one mapping of every error to a status ([`error`]).

pub mod accept;
pub mod api;
pub mod error;
pub mod guard;
