//! Single attempts against presigned S3 URLs: PUT one part, GET one byte range.
//!
//! No credentials here: the URLs carry their signature. Each call is one attempt,
//! watched for stalls, with its failure classified for the caller's retry loop.

use std::time::Duration;

use anyhow::anyhow;
use bmat_wire::api::CacheProblem;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, ETAG, RANGE};

use super::retry::{AttemptCause, AttemptError, CacheDefect, classify_status, classify_transport};
use super::stall::{Heartbeat, watch};
use crate::transfer::tuning::Tuning;

/// Slice size of an upload body: the stall watchdog sees progress at this grain.
const BODY_SLICE: usize = 256 << 10;

#[derive(Clone)]
pub struct S3Transfer {
    http: reqwest::Client,
    stall: Duration,
}

impl S3Transfer {
    pub fn new(tuning: &Tuning) -> anyhow::Result<S3Transfer> {
        let http = reqwest::Client::builder()
            .connect_timeout(tuning.connect_timeout)
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|e| anyhow!("cannot set up the HTTP client: {e}"))?;
        Ok(S3Transfer {
            http,
            stall: tuning.stall_timeout,
        })
    }

    /// PUTs one part to a presigned UploadPart URL; returns the ETag S3 answered with.
    pub async fn put_part(&self, url: &str, data: Bytes) -> Result<String, AttemptError> {
        let beat = Heartbeat::new();
        let len = data.len();
        let body_beat = beat.clone();
        let slices =
            futures_util::stream::iter((0..len.max(1)).step_by(BODY_SLICE).map(move |start| {
                body_beat.tick();
                Ok::<Bytes, std::io::Error>(data.slice(start..(start + BODY_SLICE).min(len)))
            }));
        // S3 wants a Content-Length on UploadPart (no chunked encoding), and a streamed
        // body has none unless we set it.
        let request = self
            .http
            .put(url)
            .header(CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(slices));
        let response = watch(&beat, self.stall, request.send())
            .await
            .map_err(AttemptError::retry)?
            .map_err(|e| {
                AttemptError::new(
                    classify_transport(&e),
                    anyhow!("part upload: {}", reqwest_cause(&e)),
                )
            })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(AttemptError::new(
                classify_status(status.as_u16(), true),
                anyhow!("part upload: S3 answered {status}{}", s3_error_code(&body)),
            ));
        }
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| {
                AttemptError::fatal(anyhow!("part upload: S3 answered without an ETag"))
            })?;
        Ok(etag)
    }

    /// GETs bytes `start .. start + len` of the object behind a presigned URL. The
    /// answer must be exactly that range of an object of `total` bytes: anything else
    /// (a shorter or longer object, say) is a fatal error, not a retry.
    pub async fn get_range(
        &self,
        url: &str,
        start: u64,
        len: u64,
        total: u64,
    ) -> Result<Bytes, AttemptError> {
        let end = start + len - 1;
        let beat = Heartbeat::new();
        let attempt = async {
            let response = self
                .http
                .get(url)
                .header(RANGE, format!("bytes={start}-{end}"))
                .send()
                .await
                .map_err(|e| {
                    AttemptError::new(
                        classify_transport(&e),
                        anyhow!("download: {}", reqwest_cause(&e)),
                    )
                })?;
            let status = response.status();
            if status.as_u16() == 416 {
                return Err(AttemptError::fatal(CacheDefect {
                    problem: CacheProblem::Corrupt,
                    message: format!(
                        "download: the stored archive is shorter than the {total} bytes \
                         registered"
                    ),
                }));
            }
            // The object is gone (deleted behind the registry's back, a lost bucket).
            if status.as_u16() == 404 {
                let body = response.text().await.unwrap_or_default();
                return Err(AttemptError::fatal(CacheDefect {
                    problem: CacheProblem::Missing,
                    message: format!("download: S3 answered {status}{}", s3_error_code(&body)),
                }));
            }
            if !status.is_success() {
                let body = response.text().await.unwrap_or_default();
                return Err(AttemptError::new(
                    classify_status(status.as_u16(), true),
                    anyhow!("download: S3 answered {status}{}", s3_error_code(&body)),
                ));
            }
            check_content_range(
                status.as_u16(),
                response.headers().get(CONTENT_RANGE),
                start,
                end,
                total,
            )
            .map_err(AttemptError::fatal)?;
            let mut buf = BytesMut::with_capacity(len as usize);
            let mut body = response.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk
                    .map_err(|e| AttemptError::retry(anyhow!("download: {}", reqwest_cause(&e))))?;
                beat.tick();
                if buf.len() + chunk.len() > len as usize {
                    return Err(AttemptError::fatal(anyhow!(
                        "download: S3 sent more bytes than asked for"
                    )));
                }
                buf.extend_from_slice(&chunk);
            }
            if buf.len() as u64 != len {
                return Err(AttemptError::retry(anyhow!(
                    "download: connection closed after {} of {len} bytes",
                    buf.len()
                )));
            }
            Ok(buf.freeze())
        };
        watch(&beat, self.stall, attempt)
            .await
            .map_err(AttemptError::retry)?
    }
}

/// A 206 must name the range asked for and the registered object size; a 200 (server
/// ignoring Range) is only acceptable when the range is the whole object.
fn check_content_range(
    status: u16,
    header: Option<&reqwest::header::HeaderValue>,
    start: u64,
    end: u64,
    total: u64,
) -> Result<(), AttemptCause> {
    if status == 200 {
        if start == 0 && end + 1 == total {
            return Ok(());
        }
        return Err(anyhow!("download: S3 ignored the Range header").into());
    }
    let value = header
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| anyhow!("download: S3 answered {status} without a Content-Range"))?;
    let parsed = parse_content_range(value)
        .ok_or_else(|| anyhow!("download: unreadable Content-Range {value:?}"))?;
    if parsed.2 != total {
        return Err(CacheDefect {
            problem: CacheProblem::Corrupt,
            message: format!(
                "download: the stored archive is {} bytes, the registry says {total}",
                parsed.2
            ),
        }
        .into());
    }
    if (parsed.0, parsed.1) != (start, end) {
        return Err(anyhow!("download: asked for bytes {start}-{end}, S3 sent {value:?}").into());
    }
    Ok(())
}

/// Parses `bytes START-END/TOTAL`.
fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?, total.parse().ok()?))
}

/// ` (Code)` from an S3 XML error body, or nothing.
fn s3_error_code(body: &str) -> String {
    let code = body
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.trim())
        .filter(|c| !c.is_empty() && c.len() < 64);
    code.map(|c| format!(" ({c})")).unwrap_or_default()
}

/// The innermost cause of a reqwest error ("connection refused", "operation timed
/// out"), which is what a person needs; reqwest's own text names the URL, which for a
/// presigned URL is long and carries a signature.
pub fn reqwest_cause(err: &reqwest::Error) -> String {
    let mut cause: Option<&dyn std::error::Error> = None;
    let mut next = std::error::Error::source(err);
    while let Some(inner) = next {
        cause = Some(inner);
        next = inner.source();
    }
    let text = match cause {
        Some(inner) => inner.to_string(),
        None => {
            let own = err.to_string();
            match own.split_once(" for url (") {
                Some((head, _)) => head.to_owned(),
                None => own,
            }
        }
    };
    if err.is_timeout() {
        format!("timed out ({text})")
    } else if err.is_connect() {
        format!("cannot connect: {text}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_parsed() {
        assert_eq!(parse_content_range("bytes 0-99/1000"), Some((0, 99, 1000)));
        assert_eq!(parse_content_range("bytes */1000"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }

    #[test]
    fn a_truncated_object_is_named_by_its_content_range() {
        let h = reqwest::header::HeaderValue::from_static("bytes 0-99/500");
        let err = check_content_range(206, Some(&h), 0, 99, 1000)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("download: the stored archive is 500 bytes, the registry says 1000")
        );
        assert!(check_content_range(206, Some(&h), 0, 99, 500).is_ok());
    }

    #[test]
    fn a_whole_object_200_is_accepted_only_for_the_whole_range() {
        assert!(check_content_range(200, None, 0, 9, 10).is_ok());
        assert!(check_content_range(200, None, 0, 4, 10).is_err());
    }

    #[test]
    fn s3_error_codes_are_extracted() {
        assert_eq!(
            s3_error_code("<Error><Code>InvalidRequest</Code></Error>"),
            " (InvalidRequest)"
        );
        assert_eq!(s3_error_code("gibberish"), "");
    }
}
