//! The command line: parsing, usage checks (exit 2), running a command, printing its
//! outcome.

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::commands::delete::{DeleteRequest, delete};
use crate::commands::list::{ListRequest, Listing, list};
use crate::commands::outcome::{
    Failure, FailureKind, JSON_HELP, Outcome, UsageError, infrastructure,
};
use crate::commands::restore::{RestoreRequest, lookup_only, restore};
use crate::commands::rust;
use crate::commands::save::{SaveRequest, save};
use crate::context::{Flags, JobContext};
use crate::output;
use crate::trees::input::parse_list;

#[derive(Debug, Parser)]
#[command(
    name = "bmat",
    version,
    about = "Build caches for CI jobs, through the job's agent."
)]
pub struct Cli {
    /// Exit 1 (instead of 0 with a warning) when the cache service fails.
    #[arg(long, global = true, env = "BMAT_CACHE_STRICT", value_parser = clap::builder::FalseyValueParser::new())]
    pub strict: bool,
    /// Print the outcome as one JSON object on stdout (see `bmat cache --help`).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Save and restore caches.
    #[command(after_long_help = JSON_HELP)]
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Save the paths listed on stdin (files, directories, symlinks) under KEY.
    ///
    /// Paths are relative to the working directory and must stay inside it, or are
    /// written `~/…` for paths under $HOME (restored under the restoring job's $HOME,
    /// whatever its path). Nothing is read when KEY already exists.
    #[command(after_long_help = JSON_HELP)]
    Save {
        /// Paths on stdin are NUL-separated (as from `find -print0`).
        #[arg(short = '0', long = "null")]
        null: bool,
        /// Letters, digits, '.', '_' and '-'; at most 128; not starting with '.' or '-'.
        key: String,
    },
    /// Restore the cache saved under KEY into the working directory.
    ///
    /// When KEY has no cache, each --fallback prefix is tried in order; the newest
    /// cache whose key starts with it is restored.
    #[command(after_long_help = JSON_HELP)]
    Restore {
        key: String,
        /// A key prefix to fall back to; may be repeated.
        #[arg(long = "fallback", value_name = "PREFIX")]
        fallback: Vec<String>,
        #[command(flatten)]
        flags: RestoreFlags,
    },
    /// List the caches of the job's scope, newest first: key, scope, size, created,
    /// last used.
    #[command(after_long_help = JSON_HELP)]
    List {
        /// Only caches whose key starts with this.
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
    },
    /// Delete the cache saved under KEY in the job's scope.
    ///
    /// The token must be allowed to write. The next save of KEY then stores a new
    /// cache: the way to replace a bad one.
    #[command(after_long_help = JSON_HELP)]
    Delete { key: String },
    /// Cache the third-party artefacts of a Cargo workspace (see `bmat cache rust --help`).
    Rust {
        #[command(subcommand)]
        command: RustCommand,
    },
}

/// `bmat cache rust restore`, `cargo build`, `bmat cache rust save`: the next run
/// downloads nothing and compiles only the workspace's own crates.
///
/// A cache holds the third-party build units of the build directory and, from
/// $CARGO_HOME, the registry index entries and `.crate` files of Cargo.lock's packages
/// and its git dependencies at their locked commits; restored under any CARGO_HOME
/// path, the units stay fresh.
///
/// The key is `rust-deps-{toolchain}-{host}-{hash}` (with `--key-suffix S`:
/// `rust-deps-S-{toolchain}-{host}-{hash}`), the hash covering the third-party entries
/// of Cargo.lock and the flags that change artefacts (`bmat cache rust key` lists
/// them). On an exact miss, restore takes the newest cache of the same toolchain, host
/// and suffix; the next save leaves out what is no longer in Cargo.lock.
#[derive(Debug, Subcommand)]
pub enum RustCommand {
    /// Print the cache key and every input that went into it.
    Key(ManifestArgs),
    /// Save the third-party artefacts of the build directory.
    #[command(after_long_help = JSON_HELP)]
    Save(ManifestArgs),
    /// Restore the newest matching artefacts into the build directory.
    #[command(after_long_help = JSON_HELP)]
    Restore {
        #[command(flatten)]
        args: ManifestArgs,
        #[command(flatten)]
        flags: RestoreFlags,
    },
}

/// What a restore does besides restoring.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct RestoreFlags {
    /// Only say whether a cache would be restored (hit, with the key and scope it
    /// matched, or miss); download nothing, write nothing.
    #[arg(long)]
    pub lookup_only: bool,
    /// Exit 1 on a miss (a failure of the cache service still exits 0 without
    /// --strict).
    #[arg(long)]
    pub fail_on_miss: bool,
}

#[derive(Debug, clap::Args)]
pub struct ManifestArgs {
    /// A part of the key for jobs of a matrix that build differently (`release`,
    /// `wasm`, `features-all`): each has its own caches.
    #[arg(long = "key-suffix", value_name = "NAME", env = "BMAT_RUST_KEY_SUFFIX")]
    pub key_suffix: Option<String>,
    /// The workspace's Cargo.toml (default: ./Cargo.toml).
    #[arg(value_name = "CARGO_TOML", conflicts_with = "manifest_path")]
    pub manifest: Option<PathBuf>,
    /// Same as CARGO_TOML, spelled as cargo does.
    #[arg(long = "manifest-path", value_name = "PATH")]
    pub manifest_path: Option<PathBuf>,
}

impl ManifestArgs {
    fn path(&self) -> PathBuf {
        self.manifest
            .clone()
            .or_else(|| self.manifest_path.clone())
            .unwrap_or_else(|| PathBuf::from("Cargo.toml"))
    }
}

/// Parses the command line, runs the command, prints the outcome and returns the
/// exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let (strict, json) = (cli.strict, cli.json);
    let fail_on_miss = cli.command.fails_on_miss();
    let prepared = JobContext::of_process(cli.flags())
        .map_err(|e| UsageError(format!("cannot tell the working directory: {e}")))
        .and_then(|ctx| Ok((prepare(cli.command, &ctx)?, ctx)));
    let (code, written) = match prepared {
        Ok((Prepared::Print(text), _)) => (0, output::print(&text)),
        Ok((Prepared::List(req), ctx)) => {
            let listing = on_runtime(async || list(req, &ctx).await)
                .unwrap_or_else(|e| Listing::failed(None, &e, Duration::ZERO));
            (listing.exit_code(strict), listing.print(strict, json))
        }
        Ok((Prepared::Done(outcome), _)) => (
            outcome.exit_code(strict),
            print_outcome(&outcome, strict, json),
        ),
        Ok((Prepared::Run(task), ctx)) => {
            let outcome = run(task, &ctx);
            let code = match outcome.is_miss() && fail_on_miss {
                true => 1,
                false => outcome.exit_code(strict),
            };
            (code, print_outcome(&outcome, strict, json))
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

/// Stdout or stderr could not be written (full, or its reader gone): a failure of the
/// cache step like any other, so exit 0 with a `warning:` (if stderr takes it), or 1
/// under `--strict`. A usage error keeps its 2.
fn output_failed(e: &std::io::Error, code: i32, strict: bool) -> i32 {
    let level = if strict { "error" } else { "warning" };
    // Nothing more can be done if stderr is the stream that failed.
    let _ = output::eprintln(&format!("{level}: cannot write the outcome: {e}"));
    if strict { code.max(1) } else { code }
}

/// What preparing a command came to.
pub enum Prepared {
    /// Something to run.
    Run(Task),
    /// Nothing to run: print this on stdout (`bmat cache rust key`).
    Print(String),
    /// Decided while preparing (a Rust workspace that cargo could not describe).
    Done(Outcome),
    /// `bmat cache list`: its own output (a table or a JSON list).
    List(ListRequest),
}

/// A command whose arguments are checked and whose input is read: a task to run.
pub enum Task {
    Save(SaveRequest),
    Restore(RestoreRequest),
    /// A restore, then the Rust cache's own step (relocation to this Cargo home).
    RustRestore(RestoreRequest, rust::AfterRestore),
    /// `restore --lookup-only`.
    Lookup(RestoreRequest),
    Delete(DeleteRequest),
}

impl Cli {
    /// What the command line says about the whole job.
    pub fn flags(&self) -> Flags {
        let Command::Cache { command } = &self.command;
        let key_suffix = match command {
            CacheCommand::Rust {
                command:
                    RustCommand::Key(args) | RustCommand::Save(args) | RustCommand::Restore { args, .. },
            } => args.key_suffix.clone(),
            _ => None,
        };
        Flags {
            strict: self.strict,
            json: self.json,
            key_suffix,
        }
    }
}

impl Command {
    /// `restore --fail-on-miss`: a miss exits 1.
    pub fn fails_on_miss(&self) -> bool {
        let Command::Cache { command } = self;
        match command {
            CacheCommand::Restore { flags, .. }
            | CacheCommand::Rust {
                command: RustCommand::Restore { flags, .. },
            } => flags.fail_on_miss,
            _ => false,
        }
    }
}

/// Usage checks, before anything touches the network: the key, the fallback
/// prefixes, every path on stdin.
pub fn prepare(command: Command, ctx: &JobContext) -> Result<Prepared, UsageError> {
    let Command::Cache { command } = command;
    match command {
        CacheCommand::Rust { command } => prepare_rust(command, ctx),
        CacheCommand::Save { null, key } => {
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
            Ok(Prepared::Run(Task::Save(SaveRequest { key, roots, paths })))
        }
        CacheCommand::Restore {
            key,
            fallback,
            flags,
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
        CacheCommand::Delete { key } => {
            check_key(&key)?;
            Ok(Prepared::Run(Task::Delete(DeleteRequest { key })))
        }
    }
}

fn prepare_rust(command: RustCommand, ctx: &JobContext) -> Result<Prepared, UsageError> {
    let (action, args, lookup_only) = match command {
        RustCommand::Key(args) => (rust::Action::Key, args, false),
        RustCommand::Save(args) => (rust::Action::Save, args, false),
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
        Ok(rust::Plan::Save(request)) => Prepared::Run(Task::Save(request)),
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

/// Runs a prepared task on a fresh runtime.
pub fn run(task: Task, ctx: &JobContext) -> Outcome {
    let key = match &task {
        Task::Save(r) => r.key.clone(),
        Task::Restore(r) | Task::Lookup(r) | Task::RustRestore(r, _) => r.key.clone(),
        Task::Delete(r) => r.key.clone(),
    };
    on_runtime(async || match task {
        Task::Save(req) => save(req, ctx).await,
        Task::Restore(req) => restore(req, ctx).await,
        Task::Lookup(req) => lookup_only(req, ctx).await,
        Task::Delete(req) => delete(req, ctx).await,
        Task::RustRestore(req, after) => {
            let outcome = restore(req, ctx).await;
            if matches!(outcome, Outcome::Hit { .. })
                && let Some(line) = rust::after_restore(&after)
            {
                let _ = output::eprintln(&line);
            }
            outcome
        }
    })
    .unwrap_or_else(|e| Outcome::failed(&key, "run", Instant::now(), infrastructure(e)))
}

/// Runs `task` on a fresh multithreaded runtime.
fn on_runtime<T>(task: impl AsyncFnOnce() -> T) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    Ok(runtime.block_on(task()))
}

/// Prints the outcome line on stderr and, with `json`, its JSON object on stdout.
/// Tries both; fails with the first error.
pub fn print_outcome(outcome: &Outcome, strict: bool, json: bool) -> std::io::Result<()> {
    let line = output::eprintln(&outcome.line(strict));
    if !json {
        return line;
    }
    let object = serde_json::to_string(&outcome.json())
        .map_err(std::io::Error::other)
        .and_then(|text| output::println(&text));
    line.and(object)
}
