//! Moving archive bytes: retry rules, stall detection, presigned S3 requests, the
//! part cutter and uploader, the parallel ranged downloader.

pub mod download;
pub mod parts;
pub mod retry;
pub mod s3;
pub mod stall;
pub mod upload;
