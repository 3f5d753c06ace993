//! Manifests of files: what a tree holds, by path, size and SHA-256; filters on
//! paths, the difference of two manifests and a compact binary encoding.

mod codec;
mod diff;
mod error;
mod filter;
mod manifest;
mod scan;

pub use codec::{decode, encode};
pub use diff::{Change, Diff};
pub use error::{DecodeError, Error};
pub use filter::{Filter, Glob};
pub use manifest::{Entry, Manifest, digest};
pub use scan::scan_dir;
