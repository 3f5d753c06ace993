//! agent-shim: runs beside a CI job and forwards bmat's API calls from a Unix socket to
//! the signer, adding the job's bearer token, so the job itself never holds a token.

mod proxy;

use std::io::IsTerminal;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
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
    let token = read_token(
        std::env::var("BMAT_SHIM_TOKEN").ok(),
        args.token_file.as_deref(),
    )?;
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

/// `BMAT_SHIM_TOKEN` (passed in as `from_env`), else the token file; surrounding
/// whitespace (a file's trailing newline) is trimmed.
fn read_token(from_env: Option<String>, file: Option<&Path>) -> Result<String> {
    let (token, source) = match (from_env, file) {
        (Some(t), _) => (t, "BMAT_SHIM_TOKEN".to_owned()),
        (None, Some(path)) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read token file {}", path.display()))?,
            path.display().to_string(),
        ),
        (None, None) => bail!("no token: set BMAT_SHIM_TOKEN or pass --token-file"),
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
    // Only a socket is replaced (one left by a shim that was killed); any other file
    // at that path is somebody's data.
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?,
        Ok(_) => bail!(
            "{} exists and is not a socket; not replacing it",
            path.display()
        ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comes_from_the_env_first_then_the_file_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(
            read_token(Some("from-env".into()), Some(&file)).unwrap(),
            "from-env"
        );
        assert_eq!(read_token(None, Some(&file)).unwrap(), "from-file");
    }

    #[test]
    fn missing_or_empty_tokens_name_their_source() {
        let e = read_token(None, None).unwrap_err().to_string();
        assert!(
            e.contains("BMAT_SHIM_TOKEN") && e.contains("--token-file"),
            "{e}"
        );
        let e = read_token(None, Some(Path::new("/nonexistent/token")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/token"), "{e}");
        let e = read_token(Some(" \n".into()), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("BMAT_SHIM_TOKEN") && e.contains("empty"), "{e}");
    }

    #[test]
    fn a_stale_socket_file_is_replaced_and_the_new_one_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        // A listener dropped without unlinking leaves a stale socket file, as SIGKILL does.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _listener = rt.block_on(async { bind(&path) }).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(meta.file_type().is_socket());

        let file = dir.path().join("data");
        std::fs::write(&file, "keep me").unwrap();
        let e = rt.block_on(async { bind(&file) }).unwrap_err().to_string();
        assert!(e.contains("not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
        assert!(
            rt.block_on(async { bind(dir.path()) }).is_err(),
            "a directory is not replaced"
        );
    }
}
