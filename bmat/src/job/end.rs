//! `bmat job end [--status N]`: takes the shim's queue and runs it in order, each
//! command in its own directory and environment with its output in the job's log,
//! under a deadline per command and one for all. Exits 0 unless `--strict` and a
//! command failed: the job's own status is the wrapper's to report.

use std::process::Stdio;
use std::time::{Duration, Instant};

use bmat_wire::api::{DeferredCommand, RunIf};

use crate::context::JobContext;
use crate::output;

/// What became of one deferred command.
enum Ran {
    Succeeded,
    Skipped(RunIf),
    Failed(String),
}

pub async fn end(
    ctx: &JobContext,
    status: i32,
    command_deadline: Duration,
    deadline: Duration,
    strict: bool,
) -> i32 {
    let queue = match ctx.api() {
        Ok(api) => api.take_deferred().await,
        Err(e) => Err(e),
    };
    let commands = match queue {
        Ok(q) => q.commands,
        Err(e) => {
            return output::step_failed(
                &format!("job end: cannot take the deferred commands from the agent shim: {e}"),
                strict,
            );
        }
    };
    let started = Instant::now();
    let total = commands.len();
    let mut failures = 0;
    for (n, cmd) in commands.into_iter().enumerate() {
        let name = cmd.argv.join(" ");
        let left = deadline.saturating_sub(started.elapsed());
        let ran = if !cmd.run_if.allows(status) {
            Ran::Skipped(cmd.run_if)
        } else if left.is_zero() {
            Ran::Failed(format!(
                "not run: the job end's deadline ({deadline:?}) passed"
            ))
        } else {
            let _ = output::eprintln(&format!("job end: {}/{total}: {name}", n + 1));
            run_one(&cmd, command_deadline.min(left)).await
        };
        let line = match &ran {
            Ran::Succeeded => format!("job end: {}/{total} done: {name}", n + 1),
            Ran::Skipped(run_if) => format!(
                "job end: {}/{total} skipped (the job's status is {status}; it runs {}): {name}",
                n + 1,
                super::defer::when(*run_if)
            ),
            Ran::Failed(why) => {
                failures += 1;
                format!("job end: {}/{total} failed ({why}): {name}", n + 1)
            }
        };
        let _ = output::eprintln(&line);
    }
    if total == 0 {
        let _ = output::eprintln("job end: no deferred commands");
    }
    summary(ctx).await;
    i32::from(strict && failures > 0)
}

/// The job's cache steps (the deferred saves' included): a block on stderr, `--json`
/// on stdout, Markdown in `$GITHUB_STEP_SUMMARY`. Best effort.
async fn summary(ctx: &JobContext) {
    let steps = match ctx.api() {
        Ok(api) => api.job_steps().await,
        Err(_) => None,
    };
    let Some(steps) = steps.map(|s| s.steps) else {
        let _ = output::eprintln("job summary: not available (the agent shim did not answer)");
        return;
    };
    for line in super::steps::text(&steps).lines() {
        let _ = output::eprintln(line);
    }
    if ctx.flags.json {
        let saved = super::steps::rust_saved_seconds(&steps).map(|(r, t)| r - t);
        let json = serde_json::json!({
            "outcome": "ended",
            "steps": steps,
            "rust_saved_seconds": saved,
        });
        let _ = output::println(&json.to_string());
    }
    if let Err(e) = super::steps::append_to_step_summary(&steps) {
        let _ = output::eprintln(&format!(
            "warning: cannot append to GITHUB_STEP_SUMMARY: {e}"
        ));
    }
}

/// Runs one command to its end or its deadline (then kills it).
async fn run_one(cmd: &DeferredCommand, limit: Duration) -> Ran {
    let Some((program, args)) = cmd.argv.split_first() else {
        return Ran::Failed("empty command".into());
    };
    let stdin = match &cmd.stdin_file {
        Some(file) => match std::fs::File::open(file) {
            Ok(f) => Stdio::from(f),
            Err(e) => return Ran::Failed(format!("cannot open its input {file}: {e}")),
        },
        None => Stdio::null(),
    };
    let spawned = tokio::process::Command::new(program)
        .args(args)
        .current_dir(&cmd.cwd)
        .env_clear()
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(stdin)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return Ran::Failed(format!("cannot start it: {e}")),
    };
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(s)) if s.success() => Ran::Succeeded,
        Ok(Ok(s)) => Ran::Failed(format!("it exited with {s}")),
        Ok(Err(e)) => Ran::Failed(format!("cannot wait for it: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            Ran::Failed(format!("killed after {limit:?}"))
        }
    }
}
