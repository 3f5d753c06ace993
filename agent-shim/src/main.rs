//! agent-shim: runs beside a CI job and forwards bmat's API calls from a Unix socket to
//! the signer, adding the job's bearer token, so the job itself never holds a token.

mod listen;
mod proxy;
mod secret;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;

use listen::{PeerCheckedListener, PeerPolicy};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Unix socket to listen on (a stale socket file is replaced).
    #[arg(long)]
    socket: PathBuf,
    /// The socket's mode, in octal: 600 (the shim's uid only) or 660 (its group too:
    /// run the job in that group).
    #[arg(long, default_value = "600", value_parser = parse_mode)]
    socket_mode: u32,
    /// Accept connections only from this uid (repeatable; the shim's own uid always).
    #[arg(long = "allow-uid", value_name = "UID")]
    allow_uids: Vec<u32>,
    /// Accept connections only from processes whose primary gid is this (repeatable).
    #[arg(long = "allow-gid", value_name = "GID")]
    allow_gids: Vec<u32>,
    /// Base URL of the signer, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    signer: String,
    /// File holding the job's token (preferred); else BMAT_SHIM_TOKEN, which the shim
    /// removes from its environment at start.
    #[arg(long)]
    token_file: Option<PathBuf>,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("{s:?} is not an octal mode such as 600 or 660"))?;
    if mode & !0o777 != 0 || mode & 0o600 != 0o600 || mode & 0o007 != 0 {
        return Err(format!(
            "{s:?}: the owner needs read and write, others nothing (600, 620, 660)"
        ));
    }
    Ok(mode)
}

fn main() -> std::process::ExitCode {
    // First, while the process has one thread: the token leaves the environment and
    // the process becomes non-dumpable (see `secret`).
    let env_token = secret::take_token_from_env();
    if let Err(e) = secret::forbid_inspection() {
        eprintln!("agent-shim: error: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
        .and_then(|rt| rt.block_on(run(args, env_token)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent-shim: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, env_token: Option<String>) -> Result<()> {
    let token = secret::read_token(env_token, args.token_file.as_deref())?;
    let signer = args.signer.trim_end_matches('/').to_owned();
    url_check(&signer)?;
    let listener = listen::bind(&args.socket, args.socket_mode)?;
    let policy = PeerPolicy {
        uids: args.allow_uids.iter().copied().collect(),
        gids: args.allow_gids.iter().copied().collect(),
    };
    tracing::info!(
        socket = %args.socket.display(), mode = format!("{:o}", args.socket_mode),
        signer = %signer, "listening"
    );
    let app = proxy::router(proxy::Upstream::new(signer, token)?);
    let served = axum::serve(PeerCheckedListener::new(listener, policy), app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    // Remove the socket whatever happened, so the job sees "no shim", not a dead file.
    let removed = std::fs::remove_file(&args.socket);
    served.context("serving the socket failed")?;
    removed.with_context(|| format!("cannot remove {}", args.socket.display()))?;
    tracing::info!("stopped");
    Ok(())
}

fn url_check(signer: &str) -> Result<()> {
    if !(signer.starts_with("http://") || signer.starts_with("https://")) {
        bail!("--signer {signer:?} must be an http:// or https:// URL");
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_modes_keep_others_out() {
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0o660"), Ok(0o660));
        assert!(parse_mode("666").is_err());
        assert!(parse_mode("400").is_err());
        assert!(parse_mode("9").is_err());
    }
}
