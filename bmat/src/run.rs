//! The entry point: parses the command line, resolves the job once, prepares and runs
//! the command, prints its outcome and returns the exit code.

use std::time::{Duration, Instant};

use clap::Parser;

use crate::cli::Cli;
use crate::commands::delete::delete;
use crate::commands::list::{Listing, list};
use crate::commands::outcome::{Outcome, UsageError, infrastructure};
use crate::commands::restore::{lookup_only, restore};
use crate::commands::rust;
use crate::commands::save::save;
use crate::context::JobContext;
use crate::job;
use crate::output;
use crate::prepare::{Prepared, Task, prepare};

/// Parses the command line, runs the command, prints the outcome and returns the
/// exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let (strict, json) = (cli.strict, cli.json);
    let fail_on_miss = cli.command.fails_on_miss();
    let prepared = JobContext::of_process(cli.flags())
        .map_err(|e| UsageError(format!("cannot tell the working directory: {e}")))
        .and_then(|ctx| {
            let save_at_end = job::deferred_save(&cli.command, &ctx)?;
            Ok((prepare(cli.command, &ctx)?, ctx, save_at_end))
        })
        .map(|(prepared, ctx, save_at_end)| {
            // Queued before the restore runs: a job killed during it saves nothing
            // anyway, and one that goes on finds its save waiting at the end.
            if let Some(cmd) = save_at_end {
                defer_save(&cmd, &ctx, strict);
            }
            (prepared, ctx)
        });
    let (code, written) = match prepared {
        Ok((Prepared::Job(command), ctx)) => (job::run(command, &ctx, strict), Ok(())),
        Ok((Prepared::Print(text), _)) => (0, output::print(&text)),
        Ok((Prepared::List(req), ctx)) => {
            let listing = on_runtime(async || list(req, &ctx).await)
                .unwrap_or_else(|e| Listing::failed(None, &e, Duration::ZERO));
            (listing.exit_code(strict), listing.print(strict, json))
        }
        Ok((Prepared::Done(outcome), _)) => (
            outcome.exit_code(strict),
            print_outcome(&outcome, Vec::new(), strict, json),
        ),
        Ok((Prepared::Run(task), ctx)) => {
            let label = task.label();
            let (outcome, report) = run(task, &ctx);
            record_steps(&ctx, label, &outcome, &report.fields);
            let code = match outcome.is_miss() && fail_on_miss {
                true => 1,
                false => outcome.exit_code(strict),
            };
            let written = report
                .lines
                .iter()
                .try_for_each(|line| output::eprintln(line));
            let printed = print_outcome(&outcome, report.fields, strict, json);
            (code, written.and(printed))
        }
        Err(usage) => {
            let mut written = output::eprintln(&format!("error: {usage}"));
            if json {
                let line = serde_json::json!({"outcome": "failed", "error": usage.0});
                written = written.and(output::println(&line.to_string()));
            }
            (2, written)
        }
    };
    match written {
        Ok(()) => code,
        Err(e) => output_failed(&e, code, strict),
    }
}

/// Tells the job's shim what this command did, for `bmat job end`'s summary.
fn record_steps(
    ctx: &JobContext,
    label: &str,
    outcome: &Outcome,
    fields: &[(&'static str, serde_json::Value)],
) {
    let mut main = serde_json::to_value(outcome.json()).unwrap_or_default();
    for (name, v) in fields {
        if matches!(*name, "build_seconds" | "cache_build_seconds") {
            main[*name] = v.clone();
        }
    }
    let layer = fields
        .iter()
        .find(|(name, _)| *name == "workspace")
        .map(|(_, v)| v.clone());
    let _ = on_runtime(async || {
        job::record(ctx, label, &main).await;
        if let Some(layer) = &layer {
            job::record(ctx, "workspace layer", layer).await;
        }
    });
}

/// Queues a restore's `--save-at-end`; a failure is a `warning:` (an `error:` under
/// `--strict`), the restore runs anyway.
fn defer_save(cmd: &bmat_wire::api::DeferredCommand, ctx: &JobContext, strict: bool) {
    match on_runtime(async || job::queue(cmd, ctx).await) {
        Ok(Ok(line)) => {
            let _ = output::eprintln(&line);
        }
        Ok(Err(e)) => {
            output::step_failed(&e, strict);
        }
        Err(e) => {
            output::step_failed(&e.to_string(), strict);
        }
    }
}

/// Stdout or stderr could not be written (full, or its reader gone): a failure of the
/// cache step like any other, so exit 0 with a `warning:` (if stderr takes it), or 1
/// under `--strict`. A usage error keeps its 2.
fn output_failed(e: &std::io::Error, code: i32, strict: bool) -> i32 {
    let level = if strict { "error" } else { "warning" };
    // Nothing more can be done if stderr is the stream that failed.
    let _ = output::eprintln(&format!("{level}: cannot write the outcome: {e}"));
    if strict { code.max(1) } else { code }
}

/// Runs a prepared task on a fresh runtime: its outcome, and for a Rust save or
/// restore what the steps around the dependency cache did.
pub fn run(task: Task, ctx: &JobContext) -> (Outcome, rust::RustReport) {
    let key = match &task {
        Task::Save(r) | Task::RustSave(r, ..) => r.key.clone(),
        Task::Restore(r) | Task::Lookup(r) | Task::RustRestore(r, _) => r.key.clone(),
        Task::Delete(r) => r.asked().to_owned(),
    };
    on_runtime(async || match task {
        Task::Save(req) => (save(req, ctx).await, Default::default()),
        Task::Restore(req) => (restore(req, ctx).await, Default::default()),
        Task::Lookup(req) => (lookup_only(req, ctx).await, Default::default()),
        Task::Delete(req) => (delete(req, ctx).await, Default::default()),
        Task::RustSave(deps, layer, build) => {
            let outcome = save(deps, ctx).await;
            let mut report: rust::RustReport = match layer {
                Some(layer) => rust::save_layer(layer, ctx).await,
                None => Default::default(),
            };
            if let Some(build) = build {
                report
                    .fields
                    .push(("build_seconds", build.as_secs_f64().into()));
            }
            (outcome, report)
        }
        Task::RustRestore(req, after) => {
            let key = req.key.clone();
            let outcome = restore(req, ctx).await;
            let report = match &outcome {
                Outcome::Hit { matched_key, .. } => {
                    rust::after_hit(&after, *matched_key == key, &key, ctx).await
                }
                Outcome::Miss { .. } => rust::after_miss(&after, ctx).await,
                _ => Default::default(),
            };
            (outcome, report)
        }
    })
    .unwrap_or_else(|e| {
        let failed = Outcome::failed(&key, "run", Instant::now(), infrastructure(e));
        (failed, Default::default())
    })
}

/// Runs `task` on a fresh multithreaded runtime.
fn on_runtime<T>(task: impl AsyncFnOnce() -> T) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    Ok(runtime.block_on(task()))
}

/// Prints the outcome line on stderr and, with `json`, its JSON object on stdout
/// (with the Rust steps' fields, `workspace` and `explain`, if any). Tries both; fails
/// with the first error.
pub fn print_outcome(
    outcome: &Outcome,
    fields: Vec<(&'static str, serde_json::Value)>,
    strict: bool,
    json: bool,
) -> std::io::Result<()> {
    let line = output::eprintln(&outcome.line(strict));
    if !json {
        return line;
    }
    let mut object = serde_json::to_value(outcome.json()).unwrap_or_default();
    for (name, value) in fields {
        object[name] = value;
    }
    let object = serde_json::to_string(&object)
        .map_err(std::io::Error::other)
        .and_then(|text| output::println(&text));
    line.and(object)
}
