//! Client of the signer API (`bmat_wire::api`), through the agent shim's Unix socket
//! (`BMAT_AGENT_SOCKET`) or, for development, straight to a signer
//! (`BMAT_SIGNER_URL` + `BMAT_TOKEN`).
//!
//! Every call is retried per [`crate::transfer::tuning::Tuning::api_retry`]; a call that fails
//! is an [`ApiError`] naming the call and the endpoint, with the cause typed, so that
//! callers tell a refusal from a service that did not answer.

use std::path::PathBuf;
use std::time::Duration;

use bmat_wire::api::{
    BeginRequest, BeginResponse, CacheList, CacheRef, CompleteRequest, DeferredCommand,
    DeferredQueue, Deleted, DeletedCaches, ErrorBody, ErrorCode, FORMAT_CONTENTS, JobStep,
    JobSteps, LookupRequest, LookupResponse, PartUrlsRequest, PartUrlsResponse, Queued,
    ReportAnswer, ReportRequest, UploadStatus,
};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::transfer::retry::{RetryPolicy, Verdict, classify_status, classify_transport};
use crate::transfer::s3::reqwest_cause;
use crate::transfer::tuning::Tuning;

/// Where the API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The agent shim: HTTP/1.1 over a Unix socket; the shim adds the token.
    AgentSocket(PathBuf),
    /// A signer reached directly, with our own bearer token.
    Signer { url: String, token: String },
}

/// Why the job has no cache service to talk to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("BMAT_SIGNER_URL is set but BMAT_TOKEN is not")]
    NoToken,
    #[error("no cache service configured (neither BMAT_AGENT_SOCKET nor BMAT_SIGNER_URL is set)")]
    NotConfigured,
}

impl Endpoint {
    /// `BMAT_AGENT_SOCKET` first, then `BMAT_SIGNER_URL` + `BMAT_TOKEN`, as `get` (a
    /// lookup of set, non-empty variables) has them.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Endpoint, EndpointError> {
        if let Some(socket) = get("BMAT_AGENT_SOCKET") {
            return Ok(Endpoint::AgentSocket(PathBuf::from(socket)));
        }
        match (get("BMAT_SIGNER_URL"), get("BMAT_TOKEN")) {
            (Some(url), Some(token)) => Ok(Endpoint::Signer {
                url: url.trim_end_matches('/').to_owned(),
                token,
            }),
            (Some(_), None) => Err(EndpointError::NoToken),
            _ => Err(EndpointError::NotConfigured),
        }
    }

    /// How messages name it.
    fn shown(&self) -> String {
        match self {
            Endpoint::AgentSocket(path) => format!("agent socket {}", path.display()),
            Endpoint::Signer { url, .. } => format!("signer {url}"),
        }
    }
}

/// Why talking to the cache service failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    NotConfigured(#[from] EndpointError),
    #[error("cannot set up the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("cannot build the list URL: {0}")]
    ListUrl(String),
    /// A call failed, after its retries: `call` names it and the endpoint.
    #[error("{call}")]
    Call {
        call: String,
        #[source]
        cause: CallError,
    },
}

impl ApiError {
    /// The signer's refusal, if it answered with an error status.
    pub fn refusal(&self) -> Option<&Refused> {
        match self {
            ApiError::Call {
                cause: CallError::Refused(r),
                ..
            } => Some(r),
            _ => None,
        }
    }
}

/// How the last attempt of a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Refused(Refused),
    /// No answer: no connection, a timeout, a request that could not be sent.
    #[error("{message}")]
    Transport { message: String, verdict: Verdict },
    /// The answer stopped before its end.
    #[error("reading the answer: {0}")]
    Body(String),
    #[error("unexpected answer ({0})")]
    Decode(serde_json::Error),
    #[error("gave up: retry deadline passed")]
    Deadline,
}

impl CallError {
    fn verdict(&self) -> Verdict {
        match self {
            // A spent budget is a 429 that no retry within the job can pass (the
            // window outlasts it): retrying only waits out the deadline.
            CallError::Refused(r) if r.code == Some(ErrorCode::BudgetSpent) => Verdict::Fatal,
            CallError::Refused(r) => classify_status(r.status.as_u16(), false),
            CallError::Transport { verdict, .. } => *verdict,
            CallError::Body(_) => Verdict::Retry,
            CallError::Decode(_) | CallError::Deadline => Verdict::Fatal,
        }
    }
}

/// The signer answered with an error status: it refused, as opposed to not answering.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct Refused {
    pub status: reqwest::StatusCode,
    pub code: Option<ErrorCode>,
    pub message: String,
}

impl Refused {
    pub fn is_read_only(&self) -> bool {
        self.code == Some(ErrorCode::ReadOnly)
    }

    pub fn is_not_found(&self) -> bool {
        self.status == reqwest::StatusCode::NOT_FOUND
    }
}

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    endpoint: Endpoint,
    retry: RetryPolicy,
}

impl ApiClient {
    pub fn new(endpoint: Endpoint, tuning: &Tuning) -> Result<ApiClient, ApiError> {
        let builder = reqwest::Client::builder()
            .connect_timeout(tuning.connect_timeout)
            .timeout(tuning.api_attempt_timeout);
        let (builder, base, token) = match &endpoint {
            // The host part is ignored on a Unix socket; "agent" reads well in logs.
            Endpoint::AgentSocket(path) => (
                builder.unix_socket(path.clone()),
                "http://agent".to_owned(),
                None,
            ),
            Endpoint::Signer { url, token } => (builder, url.clone(), Some(token.clone())),
        };
        let http = builder.build().map_err(ApiError::Client)?;
        Ok(ApiClient {
            http,
            base,
            token,
            endpoint,
            retry: tuning.api_retry.clone(),
        })
    }

    /// Passes over the caches in `exclude` (candidates that already failed).
    pub async fn lookup(
        &self,
        key: &str,
        fallbacks: &[String],
        exclude: &[CacheRef],
    ) -> Result<LookupResponse, ApiError> {
        let req = LookupRequest {
            key: key.to_owned(),
            fallbacks: fallbacks.to_vec(),
            exclude: exclude.to_vec(),
            formats: vec![FORMAT_CONTENTS],
            for_save: false,
        };
        self.call(Method::POST, "/v1/lookup", Some(&req)).await
    }

    /// The cache a save of `key` may reuse contents of: what a restore with
    /// `fallbacks` would take, not counted as a hit or miss.
    pub async fn lookup_base(
        &self,
        key: &str,
        fallbacks: &[String],
    ) -> Result<LookupResponse, ApiError> {
        let req = LookupRequest {
            key: key.to_owned(),
            fallbacks: fallbacks.to_vec(),
            exclude: vec![],
            formats: vec![FORMAT_CONTENTS],
            for_save: true,
        };
        self.call(Method::POST, "/v1/lookup", Some(&req)).await
    }

    pub async fn report(&self, req: &ReportRequest) -> Result<ReportAnswer, ApiError> {
        self.call(Method::POST, "/v1/reports", Some(req)).await
    }

    /// Not idempotent on the signer's side: if an answer is lost and the call retried,
    /// the retry sees our own lease and is told to skip. That is the safe outcome (no
    /// cache this time; the signer reaps the orphan).
    pub async fn begin(
        &self,
        key: &str,
        part_size: u64,
        refresh_after: Option<Duration>,
        only_scopes: &[String],
    ) -> Result<BeginResponse, ApiError> {
        let req = BeginRequest {
            key: key.to_owned(),
            expected_size: None,
            part_size: Some(part_size),
            refresh_after_secs: refresh_after.map(|d| d.as_secs()),
            only_scopes: only_scopes.to_vec(),
        };
        self.call(Method::POST, "/v1/uploads", Some(&req)).await
    }

    pub async fn part_urls(
        &self,
        upload_id: &str,
        part_numbers: Vec<u32>,
        size: Option<u64>,
    ) -> Result<PartUrlsResponse, ApiError> {
        let req = PartUrlsRequest { part_numbers, size };
        self.call(
            Method::POST,
            &format!("/v1/uploads/{upload_id}/parts"),
            Some(&req),
        )
        .await
    }

    pub async fn complete(
        &self,
        upload_id: &str,
        req: &CompleteRequest,
    ) -> Result<UploadStatus, ApiError> {
        self.call(
            Method::POST,
            &format!("/v1/uploads/{upload_id}/complete"),
            Some(req),
        )
        .await
    }

    pub async fn status(&self, upload_id: &str) -> Result<UploadStatus, ApiError> {
        self.call::<(), _>(Method::GET, &format!("/v1/uploads/{upload_id}"), None)
            .await
    }

    pub async fn abort(&self, upload_id: &str) -> Result<UploadStatus, ApiError> {
        self.call::<(), _>(Method::DELETE, &format!("/v1/uploads/{upload_id}"), None)
            .await
    }

    /// One page of at most `limit` caches of the token's own scope whose keys start
    /// with `prefix`, starting after `after` (a previous page's `next`).
    pub async fn list_page(
        &self,
        prefix: Option<&str>,
        after: Option<&CacheRef>,
        limit: u32,
    ) -> Result<CacheList, ApiError> {
        let limit = limit.to_string();
        let mut query = vec![("limit", limit.as_str())];
        query.extend(prefix.map(|p| ("prefix", p)));
        if let Some(after) = after {
            query.extend([
                ("after_scope", after.scope.as_str()),
                ("after_key", after.key.as_str()),
            ]);
        }
        let path = caches_path(&query)?;
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// Deletes the cache of `key` in the token's own scope (needs a writing token).
    pub async fn delete_cache(&self, key: &str) -> Result<Deleted, ApiError> {
        self.call::<(), _>(Method::DELETE, &format!("/v1/caches/{key}"), None)
            .await
    }

    /// Queues a command on the agent shim for the job's end (the signer has no such
    /// route: without a shim this is a 404).
    pub async fn defer(&self, cmd: &DeferredCommand) -> Result<Queued, ApiError> {
        self.call(Method::POST, "/v1/job/deferred", Some(cmd)).await
    }

    /// Tells the shim what a cache step of the job did, for `bmat job end`'s summary.
    /// One attempt, two seconds at most: a step is worth no retries, and a command
    /// whose shim is gone must not wait out a retry budget for it. `None` when it did
    /// not go through.
    pub async fn report_step(&self, step: &JobStep) -> Option<Queued> {
        let attempt = self.attempt(Method::POST, "/v1/job/steps", Some(step));
        tokio::time::timeout(Duration::from_secs(2), attempt)
            .await
            .ok()?
            .ok()
    }

    /// The job's cache steps so far, from the shim: one attempt, two seconds at most
    /// (see [`ApiClient::report_step`]).
    pub async fn job_steps(&self) -> Option<JobSteps> {
        let attempt = self.attempt::<(), _>(Method::GET, "/v1/job/steps", None);
        tokio::time::timeout(Duration::from_secs(2), attempt)
            .await
            .ok()?
            .ok()
    }

    /// Takes the shim's queue of deferred commands (it is empty after).
    pub async fn take_deferred(&self) -> Result<DeferredQueue, ApiError> {
        self.call::<(), _>(Method::POST, "/v1/job/deferred/take", None)
            .await
    }

    /// Deletes every cache of the token's own scope whose key starts with `prefix`.
    pub async fn delete_caches(&self, prefix: &str) -> Result<DeletedCaches, ApiError> {
        let path = caches_path(&[("prefix", prefix)])?;
        self.call::<(), _>(Method::DELETE, &path, None).await
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Req>,
    ) -> Result<Resp, ApiError> {
        let mut retry = self.retry.start();
        loop {
            let attempt =
                tokio::time::timeout(retry.remaining(), self.attempt(method.clone(), path, body));
            let err = match attempt.await {
                Ok(Ok(resp)) => return Ok(resp),
                Ok(Err(err)) => err,
                Err(_) => CallError::Deadline,
            };
            if !retry.wait(err.verdict()).await {
                let tries = retry.failures();
                let tries = if tries > 1 {
                    format!(" (after {tries} attempts)")
                } else {
                    String::new()
                };
                return Err(ApiError::Call {
                    call: format!("{method} {path} via {}{tries}", self.endpoint.shown()),
                    cause: err,
                });
            }
        }
    }

    async fn attempt<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Req>,
    ) -> Result<Resp, CallError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| CallError::Transport {
            message: reqwest_cause(&e),
            verdict: classify_transport(&e),
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CallError::Body(reqwest_cause(&e)))?;
        if !status.is_success() {
            let (message, code) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => (body.error, body.code),
                Err(_) => (
                    String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                    None,
                ),
            };
            return Err(CallError::Refused(Refused {
                status,
                code,
                message: message.trim().to_owned(),
            }));
        }
        serde_json::from_slice(&bytes).map_err(CallError::Decode)
    }
}

/// `/v1/caches?QUERY`, the values encoded.
fn caches_path(query: &[(&str, &str)]) -> Result<String, ApiError> {
    let mut url = reqwest::Url::parse("http://agent/v1/caches")
        .map_err(|e| ApiError::ListUrl(e.to_string()))?;
    url.query_pairs_mut().extend_pairs(query);
    Ok(format!(
        "{}?{}",
        url.path(),
        url.query().unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_agent_socket_wins() {
        let e = Endpoint::from_lookup(env(&[
            ("BMAT_AGENT_SOCKET", "/run/a.sock"),
            ("BMAT_SIGNER_URL", "http://x"),
            ("BMAT_TOKEN", "t"),
        ]));
        assert_eq!(e.ok(), Some(Endpoint::AgentSocket("/run/a.sock".into())));
    }

    #[test]
    fn a_signer_needs_a_token() {
        let e = Endpoint::from_lookup(env(&[
            ("BMAT_SIGNER_URL", "http://127.0.0.1:9/"),
            ("BMAT_TOKEN", "t"),
        ]));
        assert_eq!(
            e.ok(),
            Some(Endpoint::Signer {
                url: "http://127.0.0.1:9".into(),
                token: "t".into()
            })
        );
        assert!(Endpoint::from_lookup(env(&[("BMAT_SIGNER_URL", "http://x")])).is_err());
    }

    #[test]
    fn a_spent_budget_is_not_retried_but_other_429s_are() {
        let refused = |code| {
            CallError::Refused(Refused {
                status: reqwest::StatusCode::TOO_MANY_REQUESTS,
                code,
                message: String::new(),
            })
        };
        assert_eq!(
            refused(Some(ErrorCode::BudgetSpent)).verdict(),
            Verdict::Fatal
        );
        assert_eq!(refused(None).verdict(), Verdict::Retry);
    }

    #[test]
    fn nothing_configured_is_an_error_naming_both_variables() {
        let msg = Endpoint::from_lookup(env(&[]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("BMAT_AGENT_SOCKET") && msg.contains("BMAT_SIGNER_URL"),
            "{msg}"
        );
    }
}
