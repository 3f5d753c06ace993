//! Queuing a command for the job's end: `bmat job defer -- CMD…`, and the save a
//! restore's `--save-at-end` stands for.

use std::path::{Path, PathBuf};

use bmat_wire::api::{DeferredCommand, RunIf};

use crate::cli::{CacheCommand, Command, ManifestArgs, RustCommand};
use crate::commands::outcome::UsageError;
use crate::context::JobContext;

/// `argv` as this job would run it now: its working directory and environment.
pub fn command(
    argv: Vec<String>,
    ctx: &JobContext,
    run_if: RunIf,
    stdin_file: Option<PathBuf>,
) -> DeferredCommand {
    DeferredCommand {
        argv,
        cwd: ctx.trees.main.display().to_string(),
        // The job's environment as read at the entry point; a variable that is not
        // UTF-8 is left out (the wire carries text).
        env: ctx.env.utf8_vars().collect(),
        stdin_file: stdin_file.map(|p| p.display().to_string()),
        run_if,
    }
}

/// Queues `cmd` on the agent shim: the line to print, or why it could not.
pub async fn queue(cmd: &DeferredCommand, ctx: &JobContext) -> Result<String, String> {
    let api = ctx
        .api()
        .map_err(|e| format!("cannot defer `{}`: {e}", cmd.argv.join(" ")))?;
    let queued = api.defer(cmd).await.map_err(|e| {
        format!(
            "cannot defer `{}` (deferred commands need the job's agent shim): {e}",
            cmd.argv.join(" ")
        )
    })?;
    Ok(format!(
        "deferred to the job's end ({}; {} queued): {}",
        when(cmd.run_if),
        queued.queued,
        cmd.argv.join(" ")
    ))
}

/// The save a restore's `--save-at-end` stands for, or none without it: `bmat cache
/// save KEY` reading `--paths FILE`, or `bmat cache rust save` with the restore's
/// manifest and key arguments.
pub fn deferred_save(
    cli: &Command,
    ctx: &JobContext,
) -> Result<Option<DeferredCommand>, UsageError> {
    let Some(flags) = cli.restore_flags().filter(|f| f.save_at_end) else {
        return Ok(None);
    };
    let exe = std::env::current_exe()
        .map_err(|e| UsageError(format!("cannot tell bmat's own path: {e}")))?
        .display()
        .to_string();
    let cwd = &ctx.trees.main;
    let (mut argv, stdin) = match cli {
        Command::Cache {
            command: CacheCommand::Restore { key, paths, .. },
        } => {
            let Some(paths) = paths else {
                return Err(UsageError(
                    "--save-at-end needs --paths FILE: the paths to save, as `cache save` reads them"
                        .into(),
                ));
            };
            let argv = vec![exe, "cache".into(), "save".into(), key.clone()];
            (argv, Some(cwd.join(paths)))
        }
        Command::Cache {
            command:
                CacheCommand::Rust {
                    command: RustCommand::Restore { args, .. },
                },
        } => (rust_save(exe, args, cwd), None),
        _ => return Ok(None),
    };
    for pattern in &flags.save_if_scope {
        argv.extend(["--save-if-scope".into(), pattern.clone()]);
    }
    Ok(Some(command(argv, ctx, flags.save_if.into(), stdin)))
}

/// `bmat cache rust save` with what the restore was given (paths made absolute, so
/// the key is the same whatever directory the save runs in).
fn rust_save(exe: String, args: &ManifestArgs, cwd: &Path) -> Vec<String> {
    let mut argv = vec![
        exe,
        "cache".into(),
        "rust".into(),
        "save".into(),
        "--manifest-path".into(),
        cwd.join(args.path()).display().to_string(),
    ];
    if let Some(suffix) = &args.key_suffix {
        argv.extend(["--key-suffix".into(), suffix.clone()]);
    }
    for input in &args.key_inputs {
        argv.extend(["--key-input".into(), cwd.join(input).display().to_string()]);
    }
    for name in &args.key_env {
        argv.extend(["--key-env".into(), name.clone()]);
    }
    if args.deps_only {
        argv.push("--deps-only".into());
    }
    argv
}

/// When a deferred command runs, for the job's log.
pub(super) fn when(run_if: RunIf) -> &'static str {
    match run_if {
        RunIf::Always => "whatever the job's status",
        RunIf::Success => "if the job succeeds",
        RunIf::Failure => "if the job fails",
    }
}
