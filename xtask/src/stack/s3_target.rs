//! The S3 bucket a stack stores into: its own Garage's, or the one `BMAT_TEST_S3_*`
//! names, and how to reach it.

use anyhow::{Context, Result, bail};
use signer::s3::{Credentials, S3Client, S3Settings};

use super::children::non_empty_var;

/// An S3 bucket and the credentials to reach it.
#[derive(Debug, Clone)]
pub struct S3Target {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl S3Target {
    /// The server named by `BMAT_TEST_S3_ENDPOINT` and friends, if set.
    pub fn from_env() -> Result<Option<S3Target>> {
        let Some(endpoint) = non_empty_var("BMAT_TEST_S3_ENDPOINT") else {
            return Ok(None);
        };
        let need = |name: &str| {
            non_empty_var(name)
                .with_context(|| format!("BMAT_TEST_S3_ENDPOINT is set but {name} is not"))
        };
        let path_style = match non_empty_var("BMAT_TEST_S3_PATH_STYLE").as_deref() {
            None | Some("1" | "true" | "yes") => true,
            Some("0" | "false" | "no") => false,
            Some(other) => bail!("BMAT_TEST_S3_PATH_STYLE={other:?}: expected true or false"),
        };
        Ok(Some(S3Target {
            endpoint,
            region: non_empty_var("BMAT_TEST_S3_REGION").unwrap_or_else(|| "us-east-1".to_owned()),
            bucket: need("BMAT_TEST_S3_BUCKET")?,
            path_style,
            access_key_id: need("BMAT_TEST_S3_ACCESS_KEY_ID")?,
            secret_access_key: need("BMAT_TEST_S3_SECRET_ACCESS_KEY")?,
        }))
    }

    /// A signing client for the bucket (its own connection pool: build it on the
    /// runtime that uses it).
    pub fn client(&self) -> Result<S3Client> {
        install_crypto();
        S3Client::new(
            S3Settings {
                endpoint: self.endpoint.clone(),
                region: self.region.clone(),
                bucket: self.bucket.clone(),
                path_style: self.path_style,
            },
            Credentials {
                access_key_id: self.access_key_id.clone(),
                secret_access_key: self.secret_access_key.clone(),
            },
        )
    }
}

/// reqwest is built without a default TLS crypto provider; pick ring once per process.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A check that a signed ListObjectsV2 on the bucket answers 200.
pub(super) fn s3_ready_check(
    target: S3Target,
) -> impl FnMut() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool>> + Send>> + Send
{
    move || {
        let target = target.clone();
        Box::pin(async move {
            let client = target.client()?;
            client.list_objects("bmat-readiness-probe/").await?;
            Ok(true)
        })
    }
}
