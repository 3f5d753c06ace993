//! The job's cache steps: each bmat command tells the agent shim what it did, and
//! `bmat job end` prints them as one summary (lines, `--json`, and Markdown appended
//! to `$GITHUB_STEP_SUMMARY` when it is set).

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bmat_wire::api::JobStep;

use crate::context::JobContext;
use crate::progress::{human_bytes, human_rate};
use crate::transfer::api::{ApiClient, Endpoint};

/// The job's shim, if it has one (steps and deferred commands live there).
fn shim_api(ctx: &JobContext) -> Option<ApiClient> {
    match ctx.endpoint {
        Ok(Endpoint::AgentSocket(_)) => ctx.api().ok(),
        _ => None,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How long the job has built since its last Rust restore ended (what a Rust save
/// records with its cache), if it ran one through its shim.
async fn build_time(api: &ApiClient) -> Option<Duration> {
    let steps = api.job_steps().await?.steps;
    let restored = steps
        .iter()
        .rev()
        .find(|s| s.command == RUST_RESTORE)?
        .ended_at_ms?;
    u64::try_from(now_ms() - restored)
        .ok()
        .map(Duration::from_millis)
}

/// [`build_time`], asked once by the Rust save's plan (not on a runtime).
pub fn build_time_blocking(ctx: &JobContext) -> Option<Duration> {
    let api = shim_api(ctx)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(build_time(&api))
}

const RUST_RESTORE: &str = "rust restore";
const RUST_SAVE: &str = "rust save";

/// Records `outcome` (a command's `--json` object) as a step of the job, when the job
/// has a shim; best effort and quiet: the summary is not worth a failed step.
pub async fn record(ctx: &JobContext, command: &str, outcome: &serde_json::Value) {
    let Some(api) = shim_api(ctx) else {
        return;
    };
    let text = |field: &str| outcome[field].as_str().map(str::to_owned);
    let seconds = outcome["seconds"].as_f64().unwrap_or(0.0);
    let step = JobStep {
        command: command.to_owned(),
        key: text("key").unwrap_or_default(),
        outcome: text("outcome").unwrap_or_default(),
        matched_key: text("matched_key"),
        reason: text("reason"),
        bytes: outcome["bytes"].as_u64(),
        archive_bytes: outcome["archive_bytes"].as_u64(),
        seconds,
        ended_at_ms: Some(now_ms()),
        build_seconds: outcome["build_seconds"].as_f64(),
        cache_build_seconds: outcome["cache_build_seconds"].as_f64(),
    };
    api.report_step(&step).await;
}

/// The build time a Rust cache saved this job, estimated: the build time the job that
/// made the restored cache recorded, minus this job's (its restore to its save).
pub fn rust_saved_seconds(steps: &[JobStep]) -> Option<(f64, f64)> {
    let recorded = steps
        .iter()
        .filter(|s| s.command == RUST_RESTORE)
        .find_map(|s| s.cache_build_seconds)?;
    let this = steps
        .iter()
        .filter(|s| s.command == RUST_SAVE)
        .find_map(|s| s.build_seconds)?;
    Some((recorded, this))
}

/// `rust restore  hit  rust-deps-…  280 MiB in 0.8 s, 350 MiB/s`
fn line(step: &JobStep) -> String {
    let mut line = format!("  {:<16} {:<9} {}", step.command, step.outcome, step.key);
    if let Some(matched) = step.matched_key.as_ref().filter(|m| **m != step.key) {
        let _ = write!(line, " (from {matched})");
    }
    if let Some(reason) = &step.reason {
        let _ = write!(line, " ({reason})");
    }
    let _ = write!(line, "{}", amount(step));
    line
}

fn amount(step: &JobStep) -> String {
    let elapsed = std::time::Duration::from_secs_f64(step.seconds.max(0.0));
    match step.bytes {
        Some(bytes) => format!(
            ", {} in {:.1} s, {}",
            human_bytes(bytes),
            step.seconds,
            human_rate(bytes, elapsed)
        ),
        None => format!(", {:.1} s", step.seconds),
    }
}

/// The summary block for the job's log.
pub fn text(steps: &[JobStep]) -> String {
    let mut out = format!("job summary: {} cache step(s)\n", steps.len());
    for step in steps {
        out.push_str(&line(step));
        out.push('\n');
    }
    if let Some((recorded, this)) = rust_saved_seconds(steps) {
        let _ = writeln!(
            out,
            "  rust: the cache's job built for {recorded:.1} s, this one for {this:.1} s: about {:.1} s saved",
            recorded - this
        );
    }
    out
}

/// The summary as a Markdown table (for `$GITHUB_STEP_SUMMARY`).
pub fn markdown(steps: &[JobStep]) -> String {
    let mut out = String::from(
        "### bmat cache\n\n| step | outcome | key | bytes | seconds |\n|---|---|---|---|---|\n",
    );
    for s in steps {
        let key = match s.matched_key.as_ref().filter(|m| **m != s.key) {
            Some(m) => format!("`{}` (from `{m}`)", s.key),
            None => format!("`{}`", s.key),
        };
        let _ = writeln!(
            out,
            "| {} | {}{} | {key} | {} | {:.1} |",
            s.command,
            s.outcome,
            s.reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            s.bytes.map(human_bytes).unwrap_or_default(),
            s.seconds
        );
    }
    out
}

/// Appends the Markdown summary to `$GITHUB_STEP_SUMMARY`, when it is set.
pub fn append_to_step_summary(steps: &[JobStep]) -> std::io::Result<()> {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") else {
        return Ok(());
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(markdown(steps).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_names_each_step_its_outcome_and_amount() {
        let steps = [
            JobStep {
                command: "restore".into(),
                key: "build-2".into(),
                outcome: "hit".into(),
                matched_key: Some("build-1".into()),
                reason: None,
                bytes: Some(10 << 20),
                archive_bytes: Some(4 << 20),
                seconds: 2.0,
                ended_at_ms: None,
                build_seconds: None,
                cache_build_seconds: None,
            },
            JobStep {
                command: "save".into(),
                key: "build-2".into(),
                outcome: "skipped".into(),
                matched_key: None,
                reason: Some("scope".into()),
                bytes: None,
                archive_bytes: None,
                seconds: 0.1,
                ended_at_ms: None,
                build_seconds: None,
                cache_build_seconds: None,
            },
        ];
        let text = text(&steps);
        assert!(text.starts_with("job summary: 2 cache step(s)\n"), "{text}");
        assert!(
            text.contains(
                "restore          hit       build-2 (from build-1), 10 MiB in 2.0 s, 5.0 MiB/s"
            ),
            "{text}"
        );
        assert!(
            text.contains("save             skipped   build-2 (scope), 0.1 s"),
            "{text}"
        );
        let md = markdown(&steps);
        assert!(
            md.contains("| restore | hit | `build-2` (from `build-1`) | 10 MiB | 2.0 |"),
            "{md}"
        );
        assert!(
            md.contains("| save | skipped (scope) | `build-2` |  | 0.1 |"),
            "{md}"
        );
    }
}
