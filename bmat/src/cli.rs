//! The command line: clap's types, and what they say about the whole job.

use std::path::PathBuf;
use std::time::Duration;

use bmat_wire::api::RunIf;
use clap::{Parser, Subcommand};

use crate::commands::outcome::JSON_HELP;
use crate::context::{Flags, SavePolicy};

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
    /// Commands that run at the job's end, queued on the job's agent shim.
    Job {
        #[command(subcommand)]
        command: JobCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Queue a command to run at the job's end (`bmat job end`), in this directory and
    /// with this environment.
    Defer {
        /// When it runs, by the status `bmat job end --status` is given.
        #[arg(long = "if", value_enum, default_value_t = When::Always)]
        when: When,
        /// The command and its arguments (after `--`).
        #[arg(trailing_var_arg = true, required = true, value_name = "CMD")]
        argv: Vec<String>,
    },
    /// Run the queued commands in order, each with its output in the job's log: what
    /// a job wrapper calls after the job script. Exits 0 unless --strict.
    End {
        /// The job script's exit status.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        status: i32,
        /// How long one command may run before it is killed.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10m")]
        command_deadline: Duration,
        /// How long all of them may run together.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "30m")]
        deadline: Duration,
    },
}

/// `--if` and `--save-if`: by the job's status at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum When {
    Always,
    Success,
    Failure,
}

impl From<When> for RunIf {
    fn from(when: When) -> RunIf {
        match when {
            When::Always => RunIf::Always,
            When::Success => RunIf::Success,
            When::Failure => RunIf::Failure,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Save the paths listed on stdin (files, directories, symlinks) under KEY.
    ///
    /// Paths are relative to the working directory and must stay inside it, or are
    /// written `~/…` for paths under $HOME (restored under the restoring job's $HOME,
    /// whatever its path). Nothing is read when KEY already exists, unless it is older
    /// than --refresh-after.
    #[command(after_long_help = JSON_HELP)]
    Save {
        /// Paths on stdin are NUL-separated (as from `find -print0`).
        #[arg(short = '0', long = "null")]
        null: bool,
        /// Letters, digits, '.', '_' and '-'; at most 128; not starting with '.' or '-'.
        key: String,
        #[command(flatten)]
        policy: SaveFlags,
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
        /// With --save-at-end: the file listing the paths to save (what `cache save`
        /// reads on stdin).
        #[arg(long, value_name = "FILE", requires = "save_at_end")]
        paths: Option<PathBuf>,
    },
    /// List the caches of the job's scope, newest first: key, scope, size, created,
    /// last used.
    #[command(after_long_help = JSON_HELP)]
    List {
        /// Only caches whose key starts with this.
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
    },
    /// Delete the cache saved under KEY in the job's scope, or with `--prefix P` every
    /// cache of the job's scope whose key starts with P.
    ///
    /// The token must be allowed to write. The next save of KEY then stores a new
    /// cache: the way to replace a bad one.
    #[command(after_long_help = JSON_HELP)]
    Delete {
        #[arg(required_unless_present = "prefix")]
        key: Option<String>,
        /// Every cache of the job's scope whose key starts with this (count and
        /// bytes freed are printed).
        #[arg(long, value_name = "PREFIX", conflicts_with = "key")]
        prefix: Option<String>,
    },
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
    Save {
        #[command(flatten)]
        args: ManifestArgs,
        #[command(flatten)]
        policy: SaveFlags,
    },
    /// Restore the newest matching artefacts into the build directory.
    #[command(after_long_help = JSON_HELP)]
    Restore {
        #[command(flatten)]
        args: ManifestArgs,
        #[command(flatten)]
        flags: RestoreFlags,
    },
}

/// What a save may do besides storing a new key.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SaveFlags {
    /// When the key's cache is older than this (`90m`, `7d`), save anyway and replace
    /// it once the new one is stored (a lookup gets the old or the new, whole).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub refresh_after: Option<Duration>,
    /// Save only in a scope that matches (an exact scope, or a prefix ending in `*`;
    /// repeatable): `refs/heads/*` lets branches write while pull requests only read.
    #[arg(long = "save-if-scope", value_name = "PATTERN")]
    pub save_if_scope: Vec<String>,
}

impl From<SaveFlags> for SavePolicy {
    fn from(f: SaveFlags) -> SavePolicy {
        SavePolicy {
            refresh_after: f.refresh_after,
            only_scopes: f.save_if_scope,
        }
    }
}

/// What a restore does besides restoring.
#[derive(Debug, Clone, clap::Args)]
pub struct RestoreFlags {
    /// Only say whether a cache would be restored (hit, with the key and scope it
    /// matched, or miss); download nothing, write nothing.
    #[arg(long)]
    pub lookup_only: bool,
    /// Exit 1 on a miss (a failure of the cache service still exits 0 without
    /// --strict).
    #[arg(long)]
    pub fail_on_miss: bool,
    /// Queue the matching save on the agent shim, to run at the job's end (`bmat job
    /// end`).
    #[arg(long, conflicts_with = "lookup_only")]
    pub save_at_end: bool,
    /// With --save-at-end: save when the job succeeded (the default), failed, or
    /// always.
    #[arg(long, value_enum, default_value_t = When::Success, requires = "save_at_end")]
    pub save_if: When,
    /// With --save-at-end: the save's --save-if-scope (repeatable).
    #[arg(
        long = "save-if-scope",
        value_name = "PATTERN",
        requires = "save_at_end"
    )]
    pub save_if_scope: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ManifestArgs {
    /// A part of the key for jobs of a matrix that build differently (`release`,
    /// `wasm`, `features-all`): each has its own caches.
    #[arg(long = "key-suffix", value_name = "NAME", env = "BMAT_RUST_KEY_SUFFIX")]
    pub key_suffix: Option<String>,
    /// A file or directory whose content goes into the key, for what Cargo does not
    /// see: files a macro reads at compile time (sqlx's `.sqlx/`). Repeatable; in
    /// BMAT_RUST_KEY_INPUTS, separated by `:`. By content, never by path.
    #[arg(
        long = "key-input",
        value_name = "PATH",
        env = "BMAT_RUST_KEY_INPUTS",
        value_delimiter = ':'
    )]
    pub key_inputs: Vec<PathBuf>,
    /// An environment variable whose value goes into the key (a build reads it
    /// without telling Cargo). Repeatable; in BMAT_RUST_KEY_ENV, separated by `,`.
    /// `rust key` shows only a digest of the value.
    #[arg(
        long = "key-env",
        value_name = "NAME",
        env = "BMAT_RUST_KEY_ENV",
        value_delimiter = ','
    )]
    pub key_env: Vec<String>,
    /// Only the dependency cache: no workspace layer (the members' own units) is
    /// saved or restored.
    #[arg(long)]
    pub deps_only: bool,
    /// The workspace's Cargo.toml (default: ./Cargo.toml).
    #[arg(value_name = "CARGO_TOML", conflicts_with = "manifest_path")]
    pub manifest: Option<PathBuf>,
    /// Same as CARGO_TOML, spelled as cargo does.
    #[arg(long = "manifest-path", value_name = "PATH")]
    pub manifest_path: Option<PathBuf>,
}

impl ManifestArgs {
    pub fn path(&self) -> PathBuf {
        self.manifest
            .clone()
            .or_else(|| self.manifest_path.clone())
            .unwrap_or_else(|| PathBuf::from("Cargo.toml"))
    }
}

impl Cli {
    /// What the command line says about the whole job.
    pub fn flags(&self) -> Flags {
        let rust_args = match &self.command {
            Command::Cache {
                command:
                    CacheCommand::Rust {
                        command:
                            RustCommand::Key(args)
                            | RustCommand::Save { args, .. }
                            | RustCommand::Restore { args, .. },
                    },
            } => Some(args),
            _ => None,
        };
        Flags {
            strict: self.strict,
            json: self.json,
            key_suffix: rust_args.and_then(|a| a.key_suffix.clone()),
            key_inputs: rust_args.map(|a| a.key_inputs.clone()).unwrap_or_default(),
            key_env: rust_args.map(|a| a.key_env.clone()).unwrap_or_default(),
            deps_only: rust_args.is_some_and(|a| a.deps_only),
            save_policy: match &self.command {
                Command::Cache {
                    command:
                        CacheCommand::Rust {
                            command: RustCommand::Save { policy, .. },
                        },
                } => policy.clone().into(),
                _ => Default::default(),
            },
        }
    }
}

impl Command {
    /// `restore --fail-on-miss`: a miss exits 1.
    pub fn fails_on_miss(&self) -> bool {
        self.restore_flags().is_some_and(|f| f.fail_on_miss)
    }

    /// The flags of a restore, generic or Rust.
    pub fn restore_flags(&self) -> Option<&RestoreFlags> {
        match self {
            Command::Cache {
                command:
                    CacheCommand::Restore { flags, .. }
                    | CacheCommand::Rust {
                        command: RustCommand::Restore { flags, .. },
                    },
            } => Some(flags),
            _ => None,
        }
    }
}
