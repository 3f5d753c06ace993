//! Startup and shutdown: credentials, registry, listener, ready file, the background
//! tasks (supervised: restarted when they panic) and the HTTP server.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::http::accept::{self, ConnLimits};
use crate::http::api;
use crate::ops::{claim, lease, reaper, reload};
use crate::registry::{Db, Registry};
use crate::s3::S3Client;
use crate::state::AppState;
use crate::tasks::{RESTART, Task, supervise};
use crate::uploads::worker;

/// Connections the metrics address serves at once (a scraper or two).
const METRICS_CONNECTIONS: usize = 16;

/// Where the config came from (SIGHUP reads it again) and what to tell a supervisor.
#[derive(Debug, Clone)]
pub struct Options {
    pub config_path: PathBuf,
    /// Once listening, the base URL is written here.
    pub ready_file: Option<PathBuf>,
}

/// Builds the shared state: S3 client (credentials loaded now, so a missing variable
/// fails at start) and the migrated registry.
pub fn build_state(cfg: Config) -> anyhow::Result<AppState> {
    let creds = cfg.credentials()?;
    let s3 = S3Client::new(cfg.s3.settings(), creds)?;
    let reg = Registry::open(&cfg.database)?;
    Ok(AppState::new(cfg, Db::new(reg), s3))
}

/// Serves until `shutdown` resolves, then stops the worker, the reaper, the metrics
/// server and the reload task.
pub async fn run(
    cfg: Config,
    opts: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let st = build_state(cfg)?;
    let cfg = st.cfg();
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {} (listen)", cfg.listen))?;
    let url = base_url(listener.local_addr()?);
    let metrics_listener = match &cfg.metrics {
        Some(m) => Some(
            TcpListener::bind(m.listen)
                .await
                .with_context(|| format!("cannot listen on {} (metrics.listen)", m.listen))?,
        ),
        None => None,
    };
    // Before the ready file: from then on a SIGHUP reloads instead of killing.
    let hangups = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;

    // A prefix another registry owns, or another running signer holds, is refused; one
    // whose claim cannot be read now (S3 down) is served, but nothing destructive runs
    // until the lease task has taken it.
    match claim::acquire(&st).await {
        Ok(()) => {}
        Err(e) if e.is_refusal() => return Err(e.into()),
        Err(e) => warn!("{e}; the reaper waits until the prefix is claimed"),
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let leases = spawn_supervised(&st, Task::Lease, &stop_rx, lease::run);
    let worker = spawn_supervised(&st, Task::Worker, &stop_rx, worker::run);
    let reaper = spawn_supervised(&st, Task::Reaper, &stop_rx, reaper::run);
    let reloads = tokio::spawn(reload::run(
        st.clone(),
        opts.config_path.clone(),
        hangups,
        stop_rx.clone(),
    ));

    let t = &cfg.timing;
    let limits = ConnLimits {
        header_read_timeout: t.header_read_timeout(),
        idle_timeout: t.idle_timeout(),
        max_connections: cfg.limits.max_connections,
    };
    let metrics = match metrics_listener {
        Some(l) => {
            info!("metrics on {}/metrics", base_url(l.local_addr()?));
            let limits = ConnLimits {
                max_connections: METRICS_CONNECTIONS,
                ..limits
            };
            let mut stop = stop_rx.clone();
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            tokio::spawn(accept::serve(
                l,
                api::metrics::router(st.clone()),
                limits,
                stopped,
            ))
        }
        None => tokio::spawn(async {}),
    };

    if let Some(path) = &opts.ready_file {
        write_atomically(path, &url)?;
    }
    info!(
        "signer {} listening on {url} (bucket {}, prefix {})",
        env!("CARGO_PKG_VERSION"),
        cfg.s3.bucket,
        cfg.s3.prefix
    );

    accept::serve(listener, api::router(st.clone()), limits, shutdown).await;

    info!("shutting down");
    let _ = stop_tx.send(true);
    for (name, task) in [
        ("prefix lease renewal", leases),
        ("completion worker", worker),
        ("reaper", reaper),
        ("metrics server", metrics),
        ("reload task", reloads),
    ] {
        // A pass in the middle of an S3 call may take a while; what it leaves undone
        // is in the database and resumes at the next start.
        match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(_) => {}
            Err(_) => warn!("{name} did not stop within 10 s; leaving it"),
        }
    }
    // Released last, once the tasks that delete have stopped: the next start takes the
    // prefix at once.
    lease::release(&st).await;
    Ok(())
}

/// Runs `run(state, stop)` as `task` under [`supervise`]: restarted when it panics.
fn spawn_supervised<Fut>(
    st: &AppState,
    task: Task,
    stop: &watch::Receiver<bool>,
    run: impl Fn(AppState, watch::Receiver<bool>) -> Fut + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let (state, stopped) = (st.clone(), stop.clone());
    tokio::spawn(supervise(
        st.tasks.clone(),
        task,
        stop.clone(),
        RESTART,
        move || run(state.clone(), stopped.clone()),
    ))
}

/// `http://IP:PORT`; an unspecified listen address is reached through loopback.
pub fn base_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Temp name then rename: a reader polling for the file never sees half of it.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    std::fs::write(&tmp, text)
        .with_context(|| format!("cannot write {}", Path::new(&tmp).display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot write the ready file {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_uses_loopback_for_unspecified() {
        assert_eq!(
            base_url("0.0.0.0:81".parse().unwrap()),
            "http://127.0.0.1:81"
        );
        assert_eq!(base_url("[::]:81".parse().unwrap()), "http://[::1]:81");
        assert_eq!(
            base_url("127.0.0.1:9".parse().unwrap()),
            "http://127.0.0.1:9"
        );
    }

    #[test]
    fn ready_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ready");
        write_atomically(&p, "http://127.0.0.1:1").unwrap();
        write_atomically(&p, "http://127.0.0.1:2").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "http://127.0.0.1:2");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
