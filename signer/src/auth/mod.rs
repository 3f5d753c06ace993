//! Who is asking (see docs/design.md, "Trust model"): a bearer token is a job token
//! (static in the config, or minted and kept hashed in the registry) or an operator
//! credential. This module resolves a token to a [`Principal`] and holds the rules of
//! what each may do; the HTTP edge maps its errors to statuses.
//!
//! - [`grants`] — what a job token or an operator credential allows.
//! - [`tokens`] — the header, hashes, minting, expiry and revocation.
//! - [`error`] — [`AuthError`] (refusals) and [`PrincipalError`].

pub mod error;
pub mod grants;
pub mod tokens;

pub use error::{AuthError, PrincipalError};
pub use grants::{JobGrant, OperatorGrant, Principal};
pub use tokens::{StaticTokens, bearer, check_job_token, new_token_secret, token_hash};
