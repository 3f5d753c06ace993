//! `signer check-config --config FILE`: is this file one the signer would start with,
//! and can its credentials do in the bucket what the signer does there? Each check
//! prints one line, `ok: …` or `error: …`; the exit code is 0 only when all passed.
//! The bucket is checked by creating and aborting a multipart upload under
//! `{prefix}/check-config/` (outside the caches the reaper watches) and by listing the
//! objects and the multipart uploads under the prefix. Nothing is left behind.

use std::path::Path;

use crate::config::{Config, ConfigError};
use crate::s3::{S3Client, S3Error};
use crate::text::chain;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{}", chain(.0))]
    Config(#[source] ConfigError),
    #[error("{0:#}")]
    Credentials(#[source] anyhow::Error),
    #[error("cannot set up the S3 client: {0:#}")]
    Client(#[source] anyhow::Error),
    #[error("S3 {step} in bucket {bucket:?} under {prefix:?}: {source}")]
    S3 {
        step: &'static str,
        bucket: String,
        prefix: String,
        #[source]
        source: S3Error,
    },
}

/// Runs every check that can run (a file that does not load stops there), printing a
/// line for each. True when all passed.
pub async fn run(path: &Path) -> bool {
    let results = check(path).await;
    for r in &results {
        match r {
            Ok(line) => println!("ok: {line}"),
            Err(e) => println!("error: {}", e.to_string().replace('\n', " ")),
        }
    }
    results.iter().all(Result::is_ok)
}

/// The checks' outcomes, in order.
pub async fn check(path: &Path) -> Vec<Result<String, CheckError>> {
    let mut out = Vec::new();
    let cfg = match Config::load(path) {
        Ok(cfg) => cfg,
        Err(e) => {
            out.push(Err(CheckError::Config(e)));
            return out;
        }
    };
    out.push(Ok(format!(
        "config file {} is valid ({} tokens, {} operators)",
        path.display(),
        cfg.tokens.len(),
        cfg.operators.len()
    )));
    let creds = match cfg.credentials() {
        Ok(c) => c,
        Err(e) => {
            out.push(Err(CheckError::Credentials(e)));
            return out;
        }
    };
    out.push(Ok("S3 credentials found".to_owned()));
    let s3 = match S3Client::new(cfg.s3.settings(), creds) {
        Ok(s3) => s3,
        Err(e) => {
            out.push(Err(CheckError::Client(e)));
            return out;
        }
    };
    out.extend(check_bucket(&cfg, &s3).await);
    out
}

async fn check_bucket(cfg: &Config, s3: &S3Client) -> Vec<Result<String, CheckError>> {
    let prefix = format!("{}/", cfg.s3.prefix);
    let bucket = cfg.s3.bucket.clone();
    let failed = |step: &'static str| {
        let (bucket, prefix) = (bucket.clone(), prefix.clone());
        move |source| CheckError::S3 {
            step,
            bucket,
            prefix,
            source,
        }
    };
    let at = format!("in bucket {bucket:?} under {prefix:?}");
    let mut out = Vec::new();
    let probe = format!("{}check-config/{}", prefix, ulid::Ulid::new());
    match s3.create_multipart_upload(&probe).await {
        Ok(id) => {
            out.push(Ok(format!("S3 CreateMultipartUpload {at}")));
            out.push(
                s3.abort_multipart_upload(&probe, &id)
                    .await
                    .map(|()| format!("S3 AbortMultipartUpload {at}"))
                    .map_err(failed("AbortMultipartUpload")),
            );
        }
        Err(e) => out.push(Err(failed("CreateMultipartUpload")(e))),
    }
    out.push(
        s3.list_objects(&prefix)
            .await
            .map(|objects| format!("S3 ListObjectsV2 {at} ({} objects)", objects.len()))
            .map_err(failed("ListObjectsV2")),
    );
    out.push(
        s3.list_multipart_uploads(&prefix)
            .await
            .map(|uploads| {
                format!(
                    "S3 ListMultipartUploads {at} ({} in progress)",
                    uploads.len()
                )
            })
            .map_err(failed("ListMultipartUploads")),
    );
    out
}
