//! Uploads: every state transition of an upload ([`lifecycle`]), the durable queue that
//! completes finished ones ([`worker`]), what a completion says of its cache's format
//! ([`contents`]), and [`UploadError`].

pub mod contents;
pub mod error;
pub mod lifecycle;
pub mod worker;

pub use error::{MAX_URLS_PER_REQUEST, UploadError};
