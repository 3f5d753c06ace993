//! The signer's S3 client: SigV4 (aws-sigv4) over reqwest, XML answers parsed with
//! quick-xml. Only the handful of calls the signer needs, plus a few that tests and the
//! local stack use (put/get/list objects).
//!
//! Works against AWS, MinIO and Garage: path-style or virtual-hosted addressing, any
//! region. Two S3 quirks shape this file:
//! - CompleteMultipartUpload can answer `200 OK` with an `<Error>` body; that is a failure.
//! - An expired presigned URL is `403` on AWS but `400 InvalidRequest` on Garage; callers
//!   of presigned URLs must treat both as "get a fresh URL", which is not our concern here.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials as AwsCredentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
    SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::retry::RetryPolicy;

/// A request that failed in transport is tried three times in all, 100 ms and then
/// 200 ms apart (see [`S3Client::send`] for why a repeat is safe).
const TRANSPORT_RETRY: RetryPolicy = RetryPolicy {
    attempts: Some(3),
    base: Duration::from_millis(100),
    cap: Duration::from_millis(200),
    jitter: false,
};

/// Where the bucket is. `path_style` is required by Garage and MinIO (no wildcard DNS).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct S3Settings {
    pub endpoint: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    #[serde(default = "default_path_style")]
    pub path_style: bool,
}

fn default_region() -> String {
    "us-east-1".to_string()
}

fn default_path_style() -> bool {
    true
}

#[derive(Clone, Deserialize)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartUpload {
    pub key: String,
    pub upload_id: String,
    /// When S3 created it (Unix ms, S3's clock); `None` if S3 sent no readable time.
    pub initiated_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    pub size: u64,
    /// When it was last written (Unix ms, S3's clock); `None` if unreadable.
    pub last_modified_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("S3 answered {status} {code}: {message}")]
    Status {
        status: u16,
        code: String,
        message: String,
    },
    #[error("S3 unreachable: {}", with_causes(.0))]
    Transport(#[from] reqwest::Error),
    #[error("S3 answer not understood: {0}")]
    Xml(String),
    #[error("cannot sign S3 request: {0}")]
    Signing(String),
}

/// reqwest's message and its causes (`error sending request for url (…)` alone does
/// not say whether the connection was refused or cut).
fn with_causes(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

impl S3Error {
    /// CompleteMultipartUpload refused the part list itself (an ETag that matches no
    /// uploaded part, parts out of order, a part below the minimum size): the same
    /// request can never succeed. S3 sends these as 400, or as 200 with an `<Error>`.
    pub fn is_part_mismatch(&self) -> bool {
        matches!(self, S3Error::Status { code, .. }
            if matches!(code.as_str(), "InvalidPart" | "InvalidPartOrder" | "EntityTooSmall"))
    }

    /// The upload or object does not exist (any more).
    pub fn is_not_found(&self) -> bool {
        match self {
            S3Error::Status { status, code, .. } => {
                *status == 404 || code == "NoSuchUpload" || code == "NoSuchKey"
            }
            _ => false,
        }
    }
}

#[derive(Clone)]
pub struct S3Client {
    http: reqwest::Client,
    settings: S3Settings,
    identity: Identity,
    /// `scheme://host[:port]` of the endpoint, with the bucket in the host when
    /// virtual-hosted.
    origin: String,
    /// Path prefix before the object name: `/bucket` (path-style) or empty.
    bucket_path: String,
}

impl fmt::Debug for S3Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Client")
            .field("settings", &self.settings)
            .finish()
    }
}

/// What SigV4 adds to a request: headers (Authorization, x-amz-date, …) or, when
/// presigning, query parameters.
struct Signed {
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
}

impl S3Client {
    pub fn new(settings: S3Settings, creds: Credentials) -> anyhow::Result<S3Client> {
        let endpoint = url::Url::parse(&settings.endpoint).map_err(|e| {
            anyhow::anyhow!("s3.endpoint {:?} is not a URL: {e}", settings.endpoint)
        })?;
        let host = endpoint
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("s3.endpoint {:?} has no host", settings.endpoint))?;
        let port = endpoint.port().map(|p| format!(":{p}")).unwrap_or_default();
        let (origin, bucket_path) = if settings.path_style {
            (
                format!("{}://{host}{port}", endpoint.scheme()),
                format!("/{}", encode_path(&settings.bucket)),
            )
        } else {
            (
                format!("{}://{}.{host}{port}", endpoint.scheme(), settings.bucket),
                String::new(),
            )
        };
        // reqwest is built without a default TLS crypto provider (ring builds faster than
        // aws-lc); installing it is idempotent and process-wide.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Generous: CompleteMultipartUpload of a large object can take minutes on AWS.
            .timeout(Duration::from_secs(300))
            .build()?;
        let identity: Identity = AwsCredentials::new(
            creds.access_key_id,
            creds.secret_access_key,
            None,
            None,
            "bmat-signer",
        )
        .into();
        Ok(S3Client {
            http,
            settings,
            identity,
            origin,
            bucket_path,
        })
    }

    pub fn settings(&self) -> &S3Settings {
        &self.settings
    }

    fn url(&self, object: &str, query: &str) -> String {
        let mut url = format!(
            "{}{}/{}",
            self.origin,
            self.bucket_path,
            encode_path(object)
        );
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    fn bucket_url(&self, query: &str) -> String {
        format!("{}{}/?{query}", self.origin, self.bucket_path)
    }

    fn signing_settings(location: SignatureLocation) -> SigningSettings {
        let mut settings = SigningSettings::default();
        // S3 wants the path encoded once and never normalised (object names may hold `//`).
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.signature_location = location;
        if location == SignatureLocation::Headers {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        settings
    }

    fn sign_parts(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: SignableBody<'_>,
        settings: SigningSettings,
    ) -> Result<Signed, S3Error> {
        let params: aws_sigv4::http_request::SigningParams<'_> = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.settings.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| S3Error::Signing(e.to_string()))?
            .into();
        let request = SignableRequest::new(method, url, headers.iter().copied(), body)
            .map_err(|e| S3Error::Signing(e.to_string()))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| S3Error::Signing(e.to_string()))?
            .into_parts();
        let (headers, params) = instructions.into_parts();
        Ok(Signed {
            headers: headers
                .into_iter()
                .map(|h| (h.name().to_string(), h.value().to_string()))
                .collect(),
            query: params
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.into_owned()))
                .collect(),
        })
    }

    /// A URL anyone can use with `method` until `expires` passes. The payload is
    /// unsigned, but `headers` are signed: the request must carry them with exactly
    /// these values (a signed `content-length` makes S3 refuse any other body size).
    fn presign(
        &self,
        method: &str,
        url: String,
        headers: &[(&str, &str)],
        expires: Duration,
    ) -> Result<String, S3Error> {
        let mut settings = Self::signing_settings(SignatureLocation::QueryParams);
        settings.expires_in = Some(expires);
        let params = self
            .sign_parts(
                method,
                &url,
                headers,
                SignableBody::UnsignedPayload,
                settings,
            )?
            .query;
        let mut url = url;
        let mut sep = if url.contains('?') { '&' } else { '?' };
        for (k, v) in params {
            url.push(sep);
            url.push_str(&encode_query(&k));
            url.push('=');
            url.push_str(&encode_query(&v));
            sep = '&';
        }
        Ok(url)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: String,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, S3Error> {
        let sha = hex::encode(Sha256::digest(&body));
        // A transport error is retried twice (TRANSPORT_RETRY): a pooled connection the server closed
        // while idle, or a refused connect, fails before S3 acts on the request. When
        // S3 did act, a repeat is harmless: reads, PUTs and DELETEs are idempotent; a
        // second CreateMultipartUpload leaves an upload whose id no row holds, which
        // the reaper aborts; a repeated CompleteMultipartUpload answers NoSuchUpload,
        // which the worker settles with HeadObject.
        let mut failed = 0;
        loop {
            let headers = self
                .sign_parts(
                    method.as_str(),
                    &url,
                    &[],
                    SignableBody::Precomputed(sha.clone()),
                    Self::signing_settings(SignatureLocation::Headers),
                )?
                .headers;
            let mut request = self.http.request(method.clone(), &url);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            match request.body(body.clone()).send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => return Err(error_from(response).await),
                Err(e) => {
                    failed += 1;
                    if !TRANSPORT_RETRY.allows(failed) {
                        return Err(e.into());
                    }
                    tokio::time::sleep(TRANSPORT_RETRY.delay(failed)).await;
                }
            }
        }
    }

    async fn send_xml(
        &self,
        method: reqwest::Method,
        url: String,
        body: Vec<u8>,
    ) -> Result<String, S3Error> {
        let response = self.send(method, url, body).await?;
        let text = response.text().await?;
        // CompleteMultipartUpload (and a few others) may fail with `200 OK` and an
        // `<Error>` document, sent after the headers went out.
        if is_error_document(&text) {
            let err: ErrorXml = parse(&text)?;
            return Err(S3Error::Status {
                status: 200,
                code: err.code,
                message: err.message.unwrap_or_default(),
            });
        }
        Ok(text)
    }

    pub async fn create_multipart_upload(&self, object: &str) -> Result<String, S3Error> {
        let text = self
            .send_xml(
                reqwest::Method::POST,
                self.url(object, "uploads"),
                Vec::new(),
            )
            .await?;
        let parsed: InitiateXml = parse(&text)?;
        Ok(parsed.upload_id)
    }

    /// An UploadPart URL for a body of exactly `size` bytes: the length is signed, so
    /// S3 itself refuses a bigger (or smaller) part.
    pub fn presign_upload_part(
        &self,
        object: &str,
        upload_id: &str,
        part_number: u32,
        size: u64,
        expires: Duration,
    ) -> Result<String, S3Error> {
        let query = format!(
            "partNumber={part_number}&uploadId={}",
            encode_query(upload_id)
        );
        let size = size.to_string();
        self.presign(
            "PUT",
            self.url(object, &query),
            &[("content-length", &size)],
            expires,
        )
    }

    pub fn presign_get(&self, object: &str, expires: Duration) -> Result<String, S3Error> {
        self.presign("GET", self.url(object, ""), &[], expires)
    }

    pub async fn complete_multipart_upload(
        &self,
        object: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<(), S3Error> {
        let mut body = String::from("<CompleteMultipartUpload>");
        for (number, etag) in parts {
            body.push_str(&format!(
                "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
                quick_xml::escape::escape(etag.as_str())
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        let url = self.url(object, &format!("uploadId={}", encode_query(upload_id)));
        self.send_xml(reqwest::Method::POST, url, body.into_bytes())
            .await
            .map(drop)
    }

    /// Idempotent: an upload that is already gone is not an error.
    pub async fn abort_multipart_upload(
        &self,
        object: &str,
        upload_id: &str,
    ) -> Result<(), S3Error> {
        let url = self.url(object, &format!("uploadId={}", encode_query(upload_id)));
        match self.send(reqwest::Method::DELETE, url, Vec::new()).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// Every in-progress multipart upload whose object name starts with `prefix`.
    pub async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<MultipartUpload>, S3Error> {
        let mut uploads = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = format!("prefix={}&uploads=", encode_query(prefix));
            if let Some((key, id)) = &markers {
                query = format!(
                    "key-marker={}&{query}&upload-id-marker={}",
                    encode_query(key),
                    encode_query(id)
                );
            }
            let text = self
                .send_xml(reqwest::Method::GET, self.bucket_url(&query), Vec::new())
                .await?;
            let page: ListUploadsXml = parse(&text)?;
            uploads.extend(page.uploads.into_iter().map(|u| MultipartUpload {
                initiated_ms: u.initiated.as_deref().and_then(unix_ms),
                key: u.key,
                upload_id: u.upload_id,
            }));
            match (
                page.is_truncated,
                page.next_key_marker,
                page.next_upload_id_marker,
            ) {
                (Some(true), Some(key), Some(id)) if !key.is_empty() => markers = Some((key, id)),
                _ => return Ok(uploads),
            }
        }
    }

    pub async fn list_parts(
        &self,
        object: &str,
        upload_id: &str,
    ) -> Result<Vec<PartInfo>, S3Error> {
        let mut parts = Vec::new();
        let mut marker: Option<u32> = None;
        loop {
            let mut query = String::new();
            if let Some(m) = marker {
                query.push_str(&format!("part-number-marker={m}&"));
            }
            query.push_str(&format!("uploadId={}", encode_query(upload_id)));
            let text = self
                .send_xml(reqwest::Method::GET, self.url(object, &query), Vec::new())
                .await?;
            let page: ListPartsXml = parse(&text)?;
            parts.extend(page.parts.into_iter().map(|p| PartInfo {
                part_number: p.part_number,
                etag: p.etag,
                size: p.size,
            }));
            match (page.is_truncated, page.next_part_number_marker) {
                (Some(true), Some(next)) if Some(next) != marker => marker = Some(next),
                _ => return Ok(parts),
            }
        }
    }

    /// The object's size, or `None` when it does not exist.
    pub async fn head_object(&self, object: &str) -> Result<Option<u64>, S3Error> {
        match self
            .send(reqwest::Method::HEAD, self.url(object, ""), Vec::new())
            .await
        {
            Ok(response) => Ok(response
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Idempotent: S3 answers 204 for a missing object too.
    pub async fn delete_object(&self, object: &str) -> Result<(), S3Error> {
        match self
            .send(reqwest::Method::DELETE, self.url(object, ""), Vec::new())
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    pub async fn put_object(&self, object: &str, body: Vec<u8>) -> Result<(), S3Error> {
        self.send(reqwest::Method::PUT, self.url(object, ""), body)
            .await
            .map(drop)
    }

    pub async fn get_object(&self, object: &str) -> Result<Vec<u8>, S3Error> {
        let response = self
            .send(reqwest::Method::GET, self.url(object, ""), Vec::new())
            .await?;
        Ok(response.bytes().await?.to_vec())
    }

    /// The object's size and hex SHA-256, read as a stream (never held whole), or
    /// `None` when it does not exist.
    pub async fn object_digest(&self, object: &str) -> Result<Option<(u64, String)>, S3Error> {
        let mut response = match self
            .send(reqwest::Method::GET, self.url(object, ""), Vec::new())
            .await
        {
            Ok(response) => response,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let (mut hasher, mut size) = (Sha256::new(), 0u64);
        while let Some(chunk) = response.chunk().await? {
            hasher.update(&chunk);
            size += chunk.len() as u64;
        }
        Ok(Some((size, hex::encode(hasher.finalize()))))
    }

    /// Every object (name, size) under `prefix` (ListObjectsV2, all pages). Also the
    /// readiness probe of the local stack.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<(String, u64)>, S3Error> {
        Ok(self
            .list_objects_dated(prefix)
            .await?
            .into_iter()
            .map(|o| (o.name, o.size))
            .collect())
    }

    /// Every object under `prefix` with its size and time.
    pub async fn list_objects_dated(&self, prefix: &str) -> Result<Vec<ObjectInfo>, S3Error> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = String::new();
            if let Some(t) = &token {
                query.push_str(&format!("continuation-token={}&", encode_query(t)));
            }
            query.push_str(&format!("list-type=2&prefix={}", encode_query(prefix)));
            let text = self
                .send_xml(reqwest::Method::GET, self.bucket_url(&query), Vec::new())
                .await?;
            let page: ListObjectsXml = parse(&text)?;
            objects.extend(page.contents.into_iter().map(|o| ObjectInfo {
                last_modified_ms: o.last_modified.as_deref().and_then(unix_ms),
                name: o.key,
                size: o.size,
            }));
            match (page.is_truncated, page.next_continuation_token) {
                (Some(true), Some(next)) => token = Some(next),
                _ => return Ok(objects),
            }
        }
    }
}

async fn error_from(response: reqwest::Response) -> S3Error {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    match quick_xml::de::from_str::<ErrorXml>(&text) {
        Ok(err) => S3Error::Status {
            status,
            code: err.code,
            message: err.message.unwrap_or_default(),
        },
        // HEAD answers carry no body.
        Err(_) => S3Error::Status {
            status,
            code: if status == 404 {
                "NotFound".into()
            } else {
                String::new()
            },
            message: text.chars().take(200).collect(),
        },
    }
}

/// An S3 timestamp (`2026-01-02T03:04:05.000Z`) in Unix milliseconds.
fn unix_ms(text: &str) -> Option<i64> {
    use aws_smithy_types::date_time::{DateTime, Format};
    DateTime::from_str(text.trim(), Format::DateTime)
        .ok()?
        .to_millis()
        .ok()
}

/// True when the document's root element is `<Error>`.
fn is_error_document(text: &str) -> bool {
    let body = text.trim_start();
    let body = match body.strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map_or("", |(_, after)| after.trim_start()),
        None => body,
    };
    body.starts_with("<Error>") || body.starts_with("<Error ")
}

fn parse<'de, T: Deserialize<'de>>(text: &'de str) -> Result<T, S3Error> {
    quick_xml::de::from_str(text).map_err(|e| S3Error::Xml(e.to_string()))
}

/// Query values in SigV4's canonical form: everything but unreserved characters escaped.
fn encode_query(value: &str) -> Cow<'_, str> {
    encode(value, false)
}

/// Object names: like query values, but `/` separates path segments.
fn encode_path(value: &str) -> Cow<'_, str> {
    encode(value, true)
}

fn encode(value: &str, keep_slash: bool) -> Cow<'_, str> {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
    if value
        .bytes()
        .all(|b| unreserved(b) || (keep_slash && b == b'/'))
    {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if unreserved(b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorXml {
    code: String,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InitiateXml {
    upload_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUploadsXml {
    is_truncated: Option<bool>,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
    #[serde(rename = "Upload", default)]
    uploads: Vec<UploadXml>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UploadXml {
    key: String,
    upload_id: String,
    initiated: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListPartsXml {
    is_truncated: Option<bool>,
    next_part_number_marker: Option<u32>,
    #[serde(rename = "Part", default)]
    parts: Vec<PartXml>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PartXml {
    part_number: u32,
    #[serde(rename = "ETag")]
    etag: String,
    size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListObjectsXml {
    is_truncated: Option<bool>,
    next_continuation_token: Option<String>,
    #[serde(default)]
    contents: Vec<ObjectXml>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ObjectXml {
    key: String,
    size: u64,
    last_modified: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(path_style: bool) -> S3Client {
        let settings = S3Settings {
            endpoint: "http://127.0.0.1:3900".into(),
            region: "garage".into(),
            bucket: "caches".into(),
            path_style,
        };
        let creds = Credentials {
            access_key_id: "GKtest".into(),
            secret_access_key: "secret-secret-secret".into(),
        };
        S3Client::new(settings, creds).expect("client")
    }

    #[test]
    fn addresses_path_style_and_virtual_hosted() {
        assert_eq!(
            client(true).url("bmat/caches/01H", ""),
            "http://127.0.0.1:3900/caches/bmat/caches/01H"
        );
        assert_eq!(
            client(false).url("bmat/caches/01H", "uploads"),
            "http://caches.127.0.0.1:3900/bmat/caches/01H?uploads"
        );
    }

    #[test]
    fn presigned_part_url_carries_the_signature_and_expiry() {
        let url = client(true)
            .presign_upload_part("p/caches/X", "abc+/=", 3, 5 << 20, Duration::from_secs(60))
            .expect("presign");
        assert!(url.starts_with(
            "http://127.0.0.1:3900/caches/p/caches/X?partNumber=3&uploadId=abc%2B%2F%3D&"
        ));
        for param in [
            "X-Amz-Signature=",
            "X-Amz-Expires=60",
            "X-Amz-Credential=GKtest%2F",
            "X-Amz-SignedHeaders=content-length%3Bhost",
        ] {
            assert!(url.contains(param), "{param} missing from {url}");
        }
        assert!(!url.contains("secret-secret"), "secret leaked into {url}");
    }

    #[test]
    fn parses_s3_answers() {
        let parts: ListPartsXml = parse(
            "<ListPartsResult><IsTruncated>false</IsTruncated>\
             <Part><PartNumber>1</PartNumber><ETag>\"e1\"</ETag><Size>5242880</Size></Part>\
             <Part><PartNumber>2</PartNumber><ETag>\"e2\"</ETag><Size>7</Size></Part></ListPartsResult>",
        )
        .expect("parts");
        assert_eq!(parts.parts.len(), 2);
        assert_eq!(parts.parts[1].etag, "\"e2\"");
        assert_eq!(parts.parts[0].size, 5_242_880);
        let empty: ListUploadsXml =
            parse("<ListMultipartUploadsResult><Bucket>b</Bucket></ListMultipartUploadsResult>")
                .expect("uploads");
        assert!(empty.uploads.is_empty());
        let uploads: ListUploadsXml = parse(
            "<ListMultipartUploadsResult><Upload><Key>p/caches/X</Key><UploadId>u1</UploadId>\
             <Initiated>2026-01-02T03:04:05.678Z</Initiated></Upload></ListMultipartUploadsResult>",
        )
        .expect("uploads");
        let initiated = uploads.uploads[0].initiated.as_deref().and_then(unix_ms);
        assert_eq!(initiated, Some(1_767_323_045_678));
        let objects: ListObjectsXml = parse(
            "<ListBucketResult><Contents><Key>p/caches/X</Key><Size>3</Size>\
             <LastModified>2026-01-02T03:04:05Z</LastModified></Contents></ListBucketResult>",
        )
        .expect("objects");
        let modified = objects.contents[0]
            .last_modified
            .as_deref()
            .and_then(unix_ms);
        assert_eq!(modified, Some(1_767_323_045_000));
        assert_eq!(unix_ms("yesterday"), None);
        let err: ErrorXml =
            parse("<Error><Code>NoSuchUpload</Code><Message>gone</Message></Error>").expect("err");
        assert_eq!(err.code, "NoSuchUpload");
        assert!(is_error_document(
            "<?xml version=\"1.0\"?>\n<Error><Code>InternalError</Code></Error>"
        ));
        assert!(!is_error_document(
            "<CompleteMultipartUploadResult><ETag>x</ETag></CompleteMultipartUploadResult>"
        ));
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let creds = Credentials {
            access_key_id: "GKid".into(),
            secret_access_key: "very-secret".into(),
        };
        assert!(!format!("{creds:?}").contains("very-secret"));
    }
}
