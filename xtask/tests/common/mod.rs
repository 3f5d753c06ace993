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

/// Small parts, caches unused for 5 s evicted, a reaper pass every second.
pub fn short_ttl(c: &mut Config) {
    c.limits.part_size = api::PART;
    c.limits.ttl_days = 5.0 / 86_400.0;
    c.timing.reaper_interval_secs = 1;
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
