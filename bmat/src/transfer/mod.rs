//! Talking to the cache service and moving archive bytes: the signer API client, retry
//! rules and the knobs of it all ([`tuning`]), stall detection, presigned S3 requests,
//! the part cutter and uploader, the parallel ranged downloader.

pub mod api;
pub mod download;
pub mod parts;
pub mod retry;
pub mod s3;
pub mod stall;
pub mod tuning;
pub mod upload;
