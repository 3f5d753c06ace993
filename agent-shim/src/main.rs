//! agent-shim: runs beside a CI job and forwards bmat's API calls from a Unix socket to
//! the signer, adding the job's bearer token, so the job itself never holds a token.

mod guard;
mod job;
mod listen;
mod proxy;
mod secret;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;

use listen::{PeerCheckedListener, PeerPolicy};
use secret::TokenSource;

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
    /// File holding the job's token (readable by the shim's uid alone).
    #[arg(
        long,
        conflicts_with = "token_fd",
        required_unless_present = "token_fd"
    )]
    token_file: Option<PathBuf>,
    /// An inherited descriptor to read the job's token from (to its end), e.g. a pipe
    /// the job wrapper writes it into. The environment is never read for a token.
    #[arg(long, value_name = "N")]
    token_fd: Option<i32>,
    /// Requests forwarded at once; more are answered 429 at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_in_flight: u32,
    /// A request's body must arrive whole within this many seconds of its head, else
    /// 408.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_timeout_secs: u64,
}

impl Args {
    fn token_source(&self) -> Option<TokenSource> {
        match (&self.token_file, self.token_fd) {
            (Some(path), _) => Some(TokenSource::File(path.clone())),
            (None, Some(fd)) => Some(TokenSource::Fd(fd)),
            (None, None) => None,
        }
    }

    fn peer_policy(&self) -> Result<PeerPolicy> {
        let policy = PeerPolicy {
            uids: self.allow_uids.iter().copied().collect(),
            gids: self.allow_gids.iter().copied().collect(),
        };
        // A group-reachable socket admits every member of the group: with one group for
        // all runner users, every job could use every slot's token. Say who may.
        if self.socket_mode & 0o070 != 0 && policy.is_open() {
            bail!(
                "--socket-mode {:o} lets every member of the socket's group connect: \
                 name the job's user with --allow-uid UID (or --allow-gid GID), or use 600",
                self.socket_mode
            );
        }
        Ok(policy)
    }
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
    // First, while the process has one thread: the process becomes non-dumpable and a
    // token offered in the environment is wiped (see `secret`).
    if let Err(e) = secret::forbid_inspection() {
        eprintln!("agent-shim: error: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    if secret::scrub_token_from_env() {
        eprintln!("agent-shim: error: {:#}", secret::refuse_env_token());
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
        .and_then(|rt| rt.block_on(run(args)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent-shim: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let policy = args.peer_policy()?;
    let source = args
        .token_source()
        .context("no token: pass --token-file FILE or --token-fd N")?;
    let token = secret::read_token(&source)?;
    let signer = args.signer.trim_end_matches('/').to_owned();
    url_check(&signer)?;
    let listener = listen::bind(&args.socket, args.socket_mode)?;
    tracing::info!(
        socket = %args.socket.display(), mode = format!("{:o}", args.socket_mode),
        signer = %signer, "listening"
    );
    let limits = guard::Guard::new(
        args.max_in_flight as usize,
        std::time::Duration::from_secs(args.body_timeout_secs),
    );
    let queue = job::Queue::default();
    let app = job::router(queue.clone())
        .merge(proxy::router(proxy::Upstream::new(signer, token)?))
        .layer(axum::middleware::from_fn_with_state(limits, guard::guard));
    let served = axum::serve(PeerCheckedListener::new(listener, policy), app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    queue.log_pending();
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

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        let base = ["agent-shim", "--socket", "/tmp/s", "--signer", "http://x"];
        Args::try_parse_from(base.iter().chain(extra))
    }

    #[test]
    fn a_group_socket_needs_an_allow_list() {
        let open = args(&["--token-fd", "3", "--socket-mode", "660"]).unwrap();
        let e = open.peer_policy().unwrap_err().to_string();
        assert!(e.contains("--allow-uid"), "{e}");
        for ok in [
            &[
                "--token-fd",
                "3",
                "--socket-mode",
                "660",
                "--allow-uid",
                "1001",
            ][..],
            &[
                "--token-fd",
                "3",
                "--socket-mode",
                "660",
                "--allow-gid",
                "1001",
            ],
            &["--token-fd", "3"],
        ] {
            assert!(args(ok).unwrap().peer_policy().is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn the_token_comes_from_one_file_or_descriptor() {
        assert_eq!(
            args(&["--token-fd", "3"]).unwrap().token_source(),
            Some(TokenSource::Fd(3))
        );
        assert!(args(&[]).is_err(), "no token source");
        assert!(args(&["--token-fd", "3", "--token-file", "/t"]).is_err());
    }
}
