//! Usage checks and input, before anything touches the network: a command line
//! becomes a [`Task`] to run (or something decided at once), or a usage error (exit 2).

use std::io::{IsTerminal as _, Read as _};
use std::time::Duration;

use crate::cli::{CacheCommand, Command, JobCommand, RustCommand};
use crate::commands::delete::DeleteRequest;
use crate::commands::list::ListRequest;
use crate::commands::outcome::{Failure, FailureKind, Outcome, UsageError};
use crate::commands::restore::RestoreRequest;
use crate::commands::rust;
use crate::commands::save::SaveRequest;
use crate::commands::save_list::parse_list;
use crate::context::JobContext;

/// What preparing a command came to.
// One per process: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Prepared {
    /// Something to run.
    Run(Task),
    /// Nothing to run: print this on stdout (`bmat cache rust key`).
    Print(String),
    /// Decided while preparing (a Rust workspace that cargo could not describe).
    Done(Outcome),
    /// `bmat cache list`: its own output (a table or a JSON list).
    List(ListRequest),
    /// `bmat job …`: the deferred commands (see [`crate::job`]).
    Job(JobCommand),
}

/// A command whose arguments are checked and whose input is read: a task to run.
pub enum Task {
    Save(SaveRequest),
    Restore(RestoreRequest),
    /// A Rust save: the dependency cache, then the workspace layer if any.
    /// With this job's build time (its Rust restore to now), when it ran one through
    /// its shim: recorded with the cache and reported as `build_seconds`.
    RustSave(SaveRequest, Option<SaveRequest>, Option<Duration>),
    /// A restore, then the Rust cache's own steps (the workspace layer, relocation to
    /// this Cargo home, freshness by content).
    RustRestore(RestoreRequest, Box<rust::AfterRestore>),
    /// `restore --lookup-only`.
    Lookup(RestoreRequest),
    Delete(DeleteRequest),
}

impl Task {
    /// What the job's summary calls the step.
    pub fn label(&self) -> &'static str {
        match self {
            Task::Save(_) => "save",
            Task::Restore(_) => "restore",
            Task::RustSave(..) => "rust save",
            Task::RustRestore(..) => "rust restore",
            Task::Lookup(_) => "lookup",
            Task::Delete(_) => "delete",
        }
    }
}

/// Usage checks, before anything touches the network: the key, the fallback
/// prefixes, every path on stdin.
pub fn prepare(command: Command, ctx: &JobContext) -> Result<Prepared, UsageError> {
    let command = match command {
        Command::Cache { command } => command,
        Command::Job { command } => return Ok(Prepared::Job(command)),
    };
    match command {
        CacheCommand::Rust { command } => prepare_rust(command, ctx),
        CacheCommand::Save { null, key, policy } => {
            check_key(&key)?;
            if std::io::stdin().is_terminal() {
                return Err(UsageError("give the paths to save on stdin, e.g. `find target -type f | bmat cache save KEY`".into()));
            }
            let mut input = Vec::new();
            std::io::stdin()
                .read_to_end(&mut input)
                .map_err(|e| UsageError(format!("cannot read the paths from stdin: {e}")))?;
            let paths = parse_list(&input, null).map_err(|e| UsageError(e.to_string()))?;
            let roots = ctx.trees.clone();
            if paths.iter().any(|p| roots.dir(p.tree).is_none()) {
                return Err(UsageError(
                    "~/… paths need $HOME set to an absolute path".into(),
                ));
            }
            Ok(Prepared::Run(Task::Save(SaveRequest {
                key,
                roots,
                paths,
                policy: policy.into(),
                reuse_from: None,
            })))
        }
        CacheCommand::Restore {
            key,
            fallback,
            flags,
            ..
        } => {
            check_key(&key)?;
            for prefix in &fallback {
                check_prefix("fallback prefix", prefix)?;
            }
            let req = RestoreRequest {
                key,
                fallbacks: fallback,
                roots: ctx.trees.clone(),
            };
            Ok(Prepared::Run(if flags.lookup_only {
                Task::Lookup(req)
            } else {
                Task::Restore(req)
            }))
        }
        CacheCommand::List { prefix } => {
            if let Some(prefix) = &prefix {
                check_prefix("prefix", prefix)?;
            }
            Ok(Prepared::List(ListRequest { prefix }))
        }
        CacheCommand::Delete { key, prefix } => {
            let req = match (key, prefix) {
                (_, Some(prefix)) => {
                    check_prefix("prefix", &prefix)?;
                    DeleteRequest::Prefix(prefix)
                }
                (Some(key), None) => {
                    check_key(&key)?;
                    DeleteRequest::Key(key)
                }
                (None, None) => {
                    return Err(UsageError("delete needs a KEY or --prefix".to_owned()));
                }
            };
            Ok(Prepared::Run(Task::Delete(req)))
        }
    }
}

fn prepare_rust(command: RustCommand, ctx: &JobContext) -> Result<Prepared, UsageError> {
    let build = match &command {
        RustCommand::Save { .. } => crate::job::build_time_blocking(ctx),
        _ => None,
    };
    let (action, args, lookup_only) = match command {
        RustCommand::Key(args) => (rust::Action::Key, args, false),
        RustCommand::Save { args, .. } => (rust::Action::Save(build), args, false),
        RustCommand::Restore { args, flags } => (rust::Action::Restore, args, flags.lookup_only),
    };
    Ok(match rust::plan(action, &args.path(), ctx) {
        Err(rust::PlanError::Usage(usage)) => return Err(usage),
        Err(rust::PlanError::Unavailable(e)) => Prepared::Done(Outcome::Failed {
            key: "rust-deps".into(),
            action: "rust",
            error: Failure::new(FailureKind::Infrastructure, &e),
            elapsed: Duration::ZERO,
        }),
        Ok(rust::Plan::Key(inputs)) => Prepared::Print(inputs.describe()),
        Ok(rust::Plan::Save(request, layer)) => {
            Prepared::Run(Task::RustSave(request, layer, build))
        }
        Ok(rust::Plan::Restore(request, _)) if lookup_only => Prepared::Run(Task::Lookup(request)),
        Ok(rust::Plan::Restore(request, after)) => Prepared::Run(Task::RustRestore(request, after)),
    })
}

pub fn check_key(key: &str) -> Result<(), UsageError> {
    bmat_wire::validate_key(key)
        .map_err(|e| UsageError(format!("invalid cache key {key:?}: it {e}")))
}

fn check_prefix(what: &str, prefix: &str) -> Result<(), UsageError> {
    bmat_wire::validate_prefix(prefix)
        .map_err(|e| UsageError(format!("invalid {what} {prefix:?}: it {e}")))
}
