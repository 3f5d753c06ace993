//! A small client of the signer API for the integration tests: plain HTTP with a bearer
//! token, answers checked by status, uploads through presigned URLs.

use std::time::Duration;

use bmat_wire::api::{
    BeginRequest, BeginResponse, CacheHit, CacheList, CompleteRequest, CompletedPart, ErrorBody,
    Extent, LookupRequest, LookupResponse, PartUrlsRequest, PartUrlsResponse, UploadState,
    UploadStatus,
};
use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use signer::config::MIB;
use xtask::stack::Stack;

use super::{http, poll_until};

/// Generous: a 2-core CI machine builds and tests at the same time.
pub const PATIENCE: Duration = Duration::from_secs(60);
pub const PART: u64 = 5 * MIB;

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

/// A status and the JSON body (an `ErrorBody` when the status is not 200).
pub struct Answer {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

impl Answer {
    pub fn ok<T: DeserializeOwned>(self) -> T {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.body);
        serde_json::from_value(self.body).expect("response JSON")
    }

    /// Asserts an error answer with this status; returns its one-line message.
    pub fn err(self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "body: {}", self.body);
        let body: ErrorBody = serde_json::from_value(self.body).expect("ErrorBody JSON");
        assert!(
            !body.error.is_empty() && !body.error.contains('\n'),
            "{body:?}"
        );
        body.error
    }
}

impl Api {
    pub fn new(stack: &Stack) -> Api {
        Api {
            http: http(),
            base: stack.env().signer_url.clone(),
            token: Some(stack.env().token.clone()),
        }
    }

    pub fn with_token(&self, token: Option<&str>) -> Api {
        Api {
            token: token.map(str::to_owned),
            ..self.clone()
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("signer answers");
        let status = resp.status();
        let text = resp.text().await.expect("response body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text:?}"));
        Answer { status, body }
    }

    pub async fn post(&self, path: &str, body: &impl Serialize) -> Answer {
        let body = serde_json::to_value(body).expect("request JSON");
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    pub async fn lookup(&self, key: &str, fallbacks: &[&str]) -> Answer {
        let req = LookupRequest {
            key: key.into(),
            fallbacks: fallbacks.iter().map(|s| s.to_string()).collect(),
            exclude: vec![],
            formats: vec![],
            for_save: false,
        };
        self.post("/v1/lookup", &req).await
    }

    pub async fn hit(&self, key: &str, fallbacks: &[&str]) -> Option<CacheHit> {
        self.lookup(key, fallbacks).await.ok::<LookupResponse>().hit
    }

    pub async fn begin(&self, key: &str) -> Answer {
        let req = BeginRequest {
            key: key.into(),
            expected_size: None,
            part_size: None,
            refresh_after_secs: None,
            only_scopes: vec![],
        };
        self.post("/v1/uploads", &req).await
    }

    /// Begins an upload that must be granted; returns its id.
    pub async fn begin_upload(&self, key: &str) -> String {
        match self.begin(key).await.ok::<BeginResponse>() {
            BeginResponse::Upload { upload_id, .. } => upload_id,
            other => panic!("begin {key}: expected an upload, got {other:?}"),
        }
    }

    /// URLs for full-size parts.
    pub async fn part_urls(&self, id: &str, parts: &[u32]) -> Answer {
        self.part_urls_sized(id, parts, None).await
    }

    /// With `size`: the URL of one (last) part of that many bytes.
    pub async fn part_urls_sized(&self, id: &str, parts: &[u32], size: Option<u64>) -> Answer {
        let req = PartUrlsRequest {
            part_numbers: parts.to_vec(),
            size,
        };
        self.post(&format!("/v1/uploads/{id}/parts"), &req).await
    }

    pub async fn complete(
        &self,
        id: &str,
        parts: &[(u32, String)],
        size: u64,
        sha256: &str,
    ) -> Answer {
        let req = CompleteRequest {
            parts: parts
                .iter()
                .map(|(n, e)| CompletedPart {
                    part_number: *n,
                    etag: e.clone(),
                })
                .collect(),
            size,
            sha256: sha256.into(),
            extent: any_extent(size),
            format: bmat_wire::api::FORMAT_ARCHIVE,
            refs: vec![],
            logical_size: None,
        };
        self.post(&format!("/v1/uploads/{id}/complete"), &req).await
    }

    pub async fn status(&self, id: &str) -> UploadStatus {
        self.get(&format!("/v1/uploads/{id}")).await.ok()
    }

    pub async fn caches(&self) -> Vec<String> {
        let list: CacheList = self.get("/v1/caches").await.ok();
        list.caches.into_iter().map(|c| c.key).collect()
    }

    pub async fn wait_state(&self, id: &str, state: UploadState) {
        poll_until(
            &format!("upload {id} to be {state:?}"),
            PATIENCE,
            || async { self.status(id).await.state == state },
        )
        .await;
    }

    /// Uploads `data` in `part_size` parts through presigned URLs (plain HTTP PUTs);
    /// returns the part list, ready for `complete`.
    pub async fn put_parts(&self, id: &str, data: &[u8], part_size: u64) -> Vec<(u32, String)> {
        let chunks: Vec<&[u8]> = data.chunks(part_size as usize).collect();
        let mut parts = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            // Every URL is signed for its body's length: the part size, or the last
            // part's own.
            let size = (chunk.len() as u64 != part_size).then_some(chunk.len() as u64);
            let n = i as u32 + 1;
            let urls: PartUrlsResponse = self.part_urls_sized(id, &[n], size).await.ok();
            parts.push((n, put(&self.http, &urls.urls[0].url, chunk.to_vec()).await));
        }
        parts
    }

    /// begin → parts → complete → wait until the worker completed it. Returns the id.
    pub async fn store(&self, key: &str, data: &[u8]) -> String {
        let id = self.begin_upload(key).await;
        let parts = self.put_parts(&id, data, PART).await;
        let status: UploadStatus = self
            .complete(&id, &parts, data.len() as u64, &sha256(data))
            .await
            .ok();
        assert_eq!(status.state, UploadState::Finished);
        self.wait_state(&id, UploadState::Completed).await;
        id
    }
}

/// A presigned PUT; returns the ETag.
pub async fn put(http: &reqwest::Client, url: &str, body: Vec<u8>) -> String {
    let resp = http.put(url).body(body).send().await.expect("PUT to S3");
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "PUT part: {:?}",
        resp.text().await
    );
    resp.headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("ETag header")
        .to_owned()
}

pub async fn download(http: &reqwest::Client, url: &str) -> Vec<u8> {
    let resp = http.get(url).send().await.expect("GET from S3");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.bytes().await.expect("body").to_vec()
}

/// An extent for test data that is not an archive (the signer requires one and never
/// reads the bytes): as if it unpacked to itself, in one entry.
pub fn any_extent(size: u64) -> Extent {
    Extent {
        unpacked_size: Some(size),
        entries: Some(1),
    }
}

pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}
