//! `bench-store`: scan trees into manifests, store them, compare, copy and verify
//! stores. Exit statuses and error codes come from `bench-buildinfo`.

mod commands;
mod failure;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bench-store",
    about = "A content-addressed store of compressed blobs"
)]
struct Cli {
    /// A JSON configuration file, merged over the defaults.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Override a setting, after the file and the environment: section.key=value.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print JSON (the same as --set report.format=json).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the manifest of DIR (the files the scan settings keep).
    Scan {
        dir: PathBuf,
        /// Only paths matching this regular expression.
        #[arg(long)]
        only: Option<String>,
        /// A summary instead of every file.
        #[arg(long)]
        summary: bool,
    },
    /// Store every file of DIR and record its manifest as NAME.
    Put {
        dir: PathBuf,
        /// Defaults to the directory's name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Write a blob to stdout.
    Get { hash: String },
    /// Write the files of a recorded manifest under DIR.
    Restore { manifest: String, dir: PathBuf },
    /// What changed from one recorded manifest to another.
    Diff { from: String, to: String },
    /// The recorded manifests.
    List,
    /// Copy recorded manifests and their blobs to the store at TO.
    Sync {
        to: PathBuf,
        /// Manifests to copy; all when none is named.
        manifests: Vec<String>,
    },
    /// Check that the blobs of recorded manifests are whole.
    Verify { manifests: Vec<String> },
    /// Remove the blobs no recorded manifest needs.
    Gc {
        #[arg(long)]
        dry_run: bool,
    },
    /// The settings in effect and where each came from.
    Config,
    /// The error codes and their exit statuses.
    Codes,
    /// This build's version, target and profile.
    Version,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let code = failure::code_of(&error);
            eprintln!("error[{code}]: {error:#}");
            ExitCode::from(code.exit_status())
        }
    }
}
