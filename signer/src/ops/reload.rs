//! SIGHUP: the config file is read again and what can change while serving is
//! swapped in at once (tokens, operators, job token lifetimes, limits and quota);
//! requests in flight finish with the config they started with. A file that does not
//! load or validate changes nothing (one line in the log says why). Settings read only
//! at start (addresses, registry, S3, timings, the connection limit) keep their running
//! values; a reload that changes them says that they wait for a restart.

use std::path::{Path, PathBuf};

use tokio::signal::unix::Signal;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{Config, ConfigError};
use crate::metrics::ReloadOutcome;
use crate::state::AppState;
use crate::text::chain;

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{}", chain(.0))]
    Load(#[source] ConfigError),
}

/// What a reload applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Fields that changed in the file but apply only after a restart.
    pub needs_restart: Vec<&'static str>,
}

/// Reloads on every SIGHUP until `stop` turns true. `hangups` is installed before the
/// signer says it is ready, so an early SIGHUP never kills it.
pub async fn run(
    st: AppState,
    path: PathBuf,
    mut hangups: Signal,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            got = hangups.recv() => {
                if got.is_none() {
                    return;
                }
            }
            _ = stop.changed() => return,
        }
        match reload(&st, &path) {
            Ok(r) => {
                st.metrics.reload(ReloadOutcome::Applied);
                let cfg = st.cfg();
                info!(
                    "config reloaded from {}: {} tokens, {} operators",
                    path.display(),
                    cfg.tokens.len(),
                    cfg.operators.len()
                );
                if !r.needs_restart.is_empty() {
                    warn!(
                        "config reload: {} changed in {} but apply only after a restart; \
                         the running values are kept",
                        r.needs_restart.join(", "),
                        path.display()
                    );
                }
            }
            Err(e) => {
                st.metrics.reload(ReloadOutcome::Refused);
                warn!(
                    "config reload refused, the running config is kept: {}",
                    e.to_string().replace('\n', " ")
                );
            }
        }
    }
}

/// Loads and validates `path`, then swaps in what may change live.
pub fn reload(st: &AppState, path: &Path) -> Result<Reloaded, ReloadError> {
    let new = Config::load(path).map_err(ReloadError::Load)?;
    let running = st.cfg();
    let needs_restart = restart_only_changes(&running, &new);
    st.replace_config(keep_restart_only(&running, new));
    Ok(Reloaded { needs_restart })
}

/// The settings read at start only that differ between `running` and `new`.
pub fn restart_only_changes(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if running.listen != new.listen {
        changed.push("listen");
    }
    if running.database != new.database {
        changed.push("database");
    }
    if running.s3 != new.s3 {
        changed.push("[s3]");
    }
    if running.timing != new.timing {
        changed.push("[timing]");
    }
    if running.limits.max_connections != new.limits.max_connections {
        changed.push("limits.max_connections");
    }
    if running.metrics != new.metrics {
        changed.push("[metrics]");
    }
    changed
}

/// `new` with the start-only settings of `running`.
fn keep_restart_only(running: &Config, new: Config) -> Config {
    Config {
        listen: running.listen,
        database: running.database.clone(),
        s3: running.s3.clone(),
        timing: running.timing.clone(),
        metrics: running.metrics.clone(),
        limits: crate::config::Limits {
            max_connections: running.limits.max_connections,
            ..new.limits
        },
        ..new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[s3]\nendpoint = \"http://127.0.0.1:3900\"\nbucket = \"b\"\n\
                        [[tokens]]\ntoken = \"t0ken\"\nowner = \"o\"\n";

    #[test]
    fn only_live_settings_change() {
        let running = Config::parse(BASE).unwrap();
        let new = Config::parse(&format!(
            "listen = \"127.0.0.1:9\"\n{}[limits]\nowner_quota = 5\nmax_connections = 7\n\
             [timing]\nlease_secs = 9\n",
            BASE.replace("\"b\"", "\"other\"")
        ))
        .unwrap();
        assert_eq!(
            restart_only_changes(&running, &new),
            ["listen", "[s3]", "[timing]", "limits.max_connections"]
        );
        let merged = keep_restart_only(&running, new);
        assert_eq!(merged.limits.owner_quota, 5);
        assert_eq!(
            merged.limits.max_connections,
            running.limits.max_connections
        );
        assert_eq!(merged.s3.bucket, "b");
        assert_eq!(merged.listen, running.listen);
        assert_eq!(merged.timing, running.timing);
        assert!(restart_only_changes(&running, &merged).is_empty());
    }
}
