//! signer: holds the S3 credentials and the cache registry; presigns, completes, reaps
//! and evicts.

pub mod s3;
