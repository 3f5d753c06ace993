//! `signer --config signer.toml [--ready-file PATH]`: serve.
//! `signer token create|revoke …`: mint or revoke a job token on a running signer.
//! `signer stats [--owner O] [--scope S] [--json]`: usage per owner and scope.
//! `signer check-config --config FILE`: the file and the bucket access, checked.
//! `signer registry rebuild --config FILE [--json]`: a lost registry rebuilt from S3.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use signer::config::Config;
use signer::ops::caches_cmd::CachesCommand;
use signer::ops::rebuild::RebuildArgs;
use signer::ops::stats_cmd::StatsArgs;
use signer::ops::token_cmd::TokenCommand;
use tracing_subscriber::EnvFilter;

/// Holds the S3 credentials and the cache registry; presigns, completes, reaps and
/// evicts.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Args {
    /// The TOML config file (to serve).
    #[arg(long, required = true)]
    config: Option<PathBuf>,
    /// Once listening, write the base URL (`http://127.0.0.1:PORT`) to this file.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Job tokens, with an operator credential in BMAT_OPERATOR_TOKEN.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Usage per owner and scope (bytes, quota, caches, hits, misses, evictions), with
    /// an operator credential in BMAT_OPERATOR_TOKEN.
    Stats(StatsArgs),
    /// Caches of a scope (a closed pull request's), with an operator credential in
    /// BMAT_OPERATOR_TOKEN.
    #[command(subcommand)]
    Caches(CachesCommand),
    /// Check a config file and its bucket access; one line per check, exit 1 if any
    /// failed.
    CheckConfig {
        /// The TOML config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// The registry file, with the signer stopped.
    #[command(subcommand)]
    Registry(RegistryCommand),
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Recover a lost registry from the bucket alone (into an absent or empty database
    /// file), with the S3 credentials in the environment as for serving.
    Rebuild(RebuildArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(command) = args.command {
        return run_command(command);
    }
    let Some(config) = args.config else {
        return fail(&anyhow::anyhow!("--config is required to serve"));
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // No colour codes in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();

    let cfg = match Config::load(&config) {
        Ok(cfg) => cfg,
        Err(e) => return fail(&e.into()),
    };
    let opts = signer::server::Options {
        config_path: config,
        ready_file: args.ready_file,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    match runtime.block_on(signer::server::run(cfg, opts, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// The operator's commands: a small runtime each, no logging set up.
fn run_command(command: Command) -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    let done = match command {
        Command::Token(cmd) => rt.block_on(signer::ops::token_cmd::run(cmd)),
        Command::Stats(a) => rt.block_on(signer::ops::stats_cmd::run(a)),
        Command::Caches(cmd) => rt.block_on(signer::ops::caches_cmd::run(cmd)),
        Command::Registry(RegistryCommand::Rebuild(a)) => rt.block_on(signer::ops::rebuild::run(a)),
        Command::CheckConfig { config } => {
            return if rt.block_on(signer::ops::check_config::run(&config)) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("signer: error: {}", format!("{e:#}").replace('\n', " "));
    ExitCode::FAILURE
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
