//! agent-shim: runs beside a CI job and forwards bmat's API calls from a Unix socket to
//! the signer, adding the job's bearer token, so the job itself never holds a token.

mod proxy;

use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Parser;
use tokio::net::UnixListener;

#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Unix socket to listen on (created with mode 0600; a stale file is replaced).
    #[arg(long)]
    socket: PathBuf,
    /// Base URL of the signer, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    signer: String,
    /// File holding the job's token; used when BMAT_SHIM_TOKEN is not set.
    #[arg(long)]
    token_file: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
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
    let token = read_token(args.token_file.as_deref())?;
    let signer = args.signer.trim_end_matches('/').to_owned();
    url_check(&signer)?;
    let listener = bind(&args.socket)?;
    tracing::info!(socket = %args.socket.display(), signer = %signer, "listening");
    let app = proxy::router(proxy::Upstream::new(signer, token)?);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    // Remove the socket whatever happened, so the job sees "no shim", not a dead file.
    let removed = std::fs::remove_file(&args.socket);
    served.context("serving the socket failed")?;
    removed.with_context(|| format!("cannot remove {}", args.socket.display()))?;
    tracing::info!("stopped");
    Ok(())
}

/// `BMAT_SHIM_TOKEN`, else the token file; surrounding whitespace is trimmed.
fn read_token(file: Option<&Path>) -> Result<String> {
    let (token, source) = match (std::env::var("BMAT_SHIM_TOKEN"), file) {
        (Ok(t), _) => (t, "BMAT_SHIM_TOKEN".to_owned()),
        (Err(_), Some(path)) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read token file {}", path.display()))?,
            path.display().to_string(),
        ),
        (Err(_), None) => bail!("no token: set BMAT_SHIM_TOKEN or pass --token-file"),
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!("the token from {source} is empty");
    }
    Ok(token)
}

fn url_check(signer: &str) -> Result<()> {
    if !(signer.starts_with("http://") || signer.starts_with("https://")) {
        bail!("--signer {signer:?} must be an http:// or https:// URL");
    }
    Ok(())
}

/// Binds the socket, replacing a stale socket file, and restricts it to the owner.
fn bind(path: &Path) -> Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_dir() => bail!("{} is a directory", path.display()),
        Ok(_) => std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?,
        Err(_) => {}
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    // Between bind and chmod the socket has the umask's mode; the directory it lives in
    // is what really guards it, this makes the intent explicit.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot chmod 0600 {}", path.display()))?;
    Ok(listener)
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
