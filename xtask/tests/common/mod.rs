//! Helpers shared by the integration tests (each test file uses a subset).
#![allow(dead_code)]

pub mod api;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use signer::config::{Config, OperatorConfig};
use xtask::stack::{Stack, bins};

/// Polls `check` every 50 ms until it answers `true`; panics naming `what` after `limit`.
/// Takes an async closure (`async || ...`), which may also write to captured variables.
pub async fn poll_until<F>(what: &str, limit: Duration, mut check: F)
where
    F: AsyncFnMut() -> bool,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Synchronous twin of [`poll_until`].
pub fn poll_until_sync(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain HTTP client (TLS provider installed).
pub fn http() -> reqwest::Client {
    xtask::stack::install_crypto();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// An HTTP client that talks over a Unix socket (URLs: `http://shim/...`).
pub fn unix_http(socket: &Path) -> reqwest::Client {
    xtask::stack::install_crypto();
    reqwest::Client::builder()
        .unix_socket(socket)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("unix socket http client")
}

/// `bmat` as a job runs it: through the stack's shim, no token or signer URL in sight.
pub fn bmat(stack: &Stack) -> Command {
    let mut cmd = Command::new(bins::workspace_bin("bmat").expect("bmat binary"));
    clear_bmat_env(&mut cmd);
    cmd.env("BMAT_AGENT_SOCKET", &stack.env().agent_socket);
    cmd
}

/// `bmat` talking to the signer directly with the token (development mode).
pub fn bmat_direct(stack: &Stack) -> Command {
    bmat_with_token(stack, &stack.env().token)
}

/// `bmat` talking to the signer directly with another job token.
pub fn bmat_with_token(stack: &Stack, token: &str) -> Command {
    let mut cmd = Command::new(bins::workspace_bin("bmat").expect("bmat binary"));
    clear_bmat_env(&mut cmd);
    cmd.env("BMAT_SIGNER_URL", &stack.env().signer_url)
        .env("BMAT_TOKEN", token);
    cmd
}

/// The test process may run inside `cargo xtask stack`'s environment; start clean.
fn clear_bmat_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("BMAT_") && key != "BMAT_BIN_DIR" {
            cmd.env_remove(key);
        }
    }
}

/// True while a process with this pid exists (a zombie counts as gone for us only
/// once reaped, which the stack does on kill).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// The prefix's claim object (`{prefix}/registry-id`: registry and lease holder).
pub async fn prefix_claim(stack: &Stack) -> serde_json::Value {
    let s3 = stack.s3_client().expect("s3 client");
    let object = format!("{}/registry-id", stack.env().s3_prefix);
    let bytes = s3.get_object(&object).await.expect("GET the claim object");
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "the claim {:?} is not JSON: {e}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// Waits until S3 says `object` was written more than `age` ago (by S3's own
/// `LastModified`, which the reaper's stale window is judged by).
pub async fn wait_until_older(stack: &Stack, object: &str, age: Duration) {
    let s3 = stack.s3_client().expect("s3 client");
    let prefix = format!("{}/", stack.env().s3_prefix);
    poll_until(
        &format!("{object} to be older than {age:?}"),
        api::PATIENCE,
        async || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_millis() as i64;
            s3.list_objects_dated(&prefix)
                .await
                .expect("ListObjects")
                .iter()
                .find(|o| o.name == object)
                .and_then(|o| o.last_modified_ms)
                .is_some_and(|t| now - t > age.as_millis() as i64)
        },
    )
    .await;
}

/// Small parts, a stale window of 1 s and a reaper pass every second: a reaper that
/// does not know an object deletes it as soon as S3 says it is a second old.
pub fn eager_reaper(c: &mut Config) {
    c.limits.part_size = api::PART;
    c.timing.part_url_expiry_secs = 1;
    c.timing.stale_margin_secs = 0;
    c.timing.reaper_interval_secs = 1;
}

/// Small parts, caches unused for 5 s evicted, a reaper pass every second.
pub fn short_ttl(c: &mut Config) {
    c.limits.part_size = api::PART;
    c.limits.ttl_days = 5.0 / 86_400.0;
    c.timing.reaper_interval_secs = 1;
}

/// A writing job token of the stack's owner for the pull request scope `pr`, which
/// reads the stack's scope (main).
pub fn pr_token(stack: &Stack, pr: &str) -> String {
    stack
        .mint(&bmat_wire::api::MintRequest {
            owner: xtask::stack::OWNER.to_owned(),
            scope: pr.to_owned(),
            read_scopes: vec![xtask::stack::SCOPE.to_owned()],
            write: true,
            ttl_seconds: None,
        })
        .expect("mint a pull request's token")
        .token
}

/// Adds an operator credential allowed only `owners`.
pub fn add_operator(c: &mut Config, token: &str, name: &str, owners: &[&str]) {
    c.operators.push(OperatorConfig {
        token: token.to_owned(),
        name: name.to_owned(),
        owners: owners.iter().map(|o| o.to_string()).collect(),
    });
}

/// The stack's `GET /metrics`, parsed.
pub async fn scrape(stack: &Stack) -> prometheus_parse::Scrape {
    let url = stack
        .env()
        .metrics_url
        .clone()
        .expect("the stack serves metrics");
    let resp = http().get(&url).send().await.expect("GET /metrics");
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("metrics body");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses")
}

/// The sum of the samples of `metric` whose labels include `labels` (0 when none).
pub fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    use prometheus_parse::Value;
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{metric}: unexpected sample {other:?}"),
        })
        .sum()
}

/// A request whose head is sent whole and its body not: `{` of a 100-byte JSON body,
/// then silence (from a job holding `token`, or through the shim with none).
pub fn slow_body_request(token: Option<&str>) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "POST /v1/lookup HTTP/1.1\r\nHost: signer\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n{auth}\r\n{{"
    )
}

/// Opens `n` connections with `connect` and sends `head` on each; returns them, held
/// open.
pub async fn hold<C, F>(n: usize, head: &str, mut connect: F) -> Vec<C>
where
    C: tokio::io::AsyncWrite + Unpin,
    F: AsyncFnMut() -> std::io::Result<C>,
{
    let mut held = Vec::new();
    for _ in 0..n {
        let mut conn = connect().await.expect("connect");
        tokio::io::AsyncWriteExt::write_all(&mut conn, head.as_bytes())
            .await
            .expect("a head and one body byte");
        held.push(conn);
    }
    held
}

/// Waits until the server has answered and closed each of the `held` slow requests:
/// each ends with 408 (its body deadline passed) or 429 (over the cap of requests in
/// progress), at least `in_progress` (the cap) with 408 and one with 429.
pub async fn slow_requests_end<C>(held: Vec<C>, in_progress: usize)
where
    C: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let mut answers = tokio::task::JoinSet::new();
    for conn in held {
        answers.spawn(answer_then_close(conn));
    }
    let (mut timed_out, mut refused) = (0, 0);
    while let Some(status) = answers.join_next().await {
        match status.expect("reader task") {
            Some(408) => timed_out += 1,
            Some(429) => refused += 1,
            other => panic!("a slow request ended with {other:?}"),
        }
    }
    assert!(
        timed_out >= in_progress && refused >= 1,
        "{timed_out} 408, {refused} 429"
    );
}

/// Reads what the server answers on `conn` until it closes it: the status of the
/// answer (`None`: closed without one).
async fn answer_then_close(mut conn: impl tokio::io::AsyncRead + Unpin) -> Option<u16> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&seen);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}
