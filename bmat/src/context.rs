//! The job, resolved once at the entry point: the working tree, `$HOME` and Cargo's
//! home, where the cache service is, the transfer knobs, the tools and variables a
//! Rust key reads, and the flags that shape the outcome. Everything below the entry
//! point takes what it needs from here; nothing else reads the environment.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::rust::toolchain::RustTools;
use crate::transfer::api::{ApiClient, ApiError, Endpoint, EndpointError};
use crate::transfer::tuning::Tuning;
use crate::trees::roots::{Extra, Roots, Tree};

/// What the command line says about the whole job.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--strict` (or `BMAT_CACHE_STRICT`).
    pub strict: bool,
    /// `--json`.
    pub json: bool,
    /// `--key-suffix` of a Rust command (or `BMAT_RUST_KEY_SUFFIX`).
    pub key_suffix: Option<String>,
    /// `--key-input` paths of a Rust command (or `BMAT_RUST_KEY_INPUTS`).
    pub key_inputs: Vec<PathBuf>,
    /// `--key-env` names of a Rust command (or `BMAT_RUST_KEY_ENV`).
    pub key_env: Vec<String>,
    /// `--deps-only`: no workspace layer.
    pub deps_only: bool,
    /// `--refresh-after` and `--save-if-scope` of a Rust save.
    pub save_policy: SavePolicy,
}

/// What a save may do besides storing a new key (`--refresh-after`,
/// `--save-if-scope`; see docs/design.md, "Write-once keys and leases").
#[derive(Debug, Clone, Default)]
pub struct SavePolicy {
    /// Replace the key's cache when it is older than this.
    pub refresh_after: Option<std::time::Duration>,
    /// Save only in a scope that matches one of these (none: any).
    pub only_scopes: Vec<String>,
}

/// The process environment, read once.
#[derive(Debug, Clone, Default)]
pub struct Environment(BTreeMap<OsString, OsString>);

impl Environment {
    /// This process's environment.
    pub fn of_process() -> Environment {
        Environment(std::env::vars_os().collect())
    }

    /// An environment of the given variables (tests, tools).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Environment {
        Environment(
            pairs
                .into_iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
        )
    }

    /// A variable's value, if set and valid UTF-8.
    pub fn get(&self, name: &str) -> Option<String> {
        self.get_os(name)
            .and_then(|v| v.to_str())
            .map(str::to_owned)
    }

    pub fn get_os(&self, name: &str) -> Option<&OsStr> {
        self.0.get(OsStr::new(name)).map(OsString::as_os_str)
    }

    /// Every variable whose name and value are UTF-8.
    pub fn utf8_vars(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.0
            .iter()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v.to_str()?.to_owned())))
    }
}

/// The job, resolved once.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub flags: Flags,
    /// The working directory as the main tree, with `$HOME` and Cargo's home.
    pub trees: Roots,
    pub tuning: Tuning,
    /// Where the cache service is, or why none is configured (a failure of the
    /// commands that need it, not a usage error).
    pub endpoint: Result<Endpoint, EndpointError>,
    pub rust_tools: RustTools,
    /// The variables a Rust key may cover (it picks its own from these).
    pub env: Environment,
}

impl JobContext {
    /// The job of this process: its environment and working directory.
    pub fn of_process(flags: Flags) -> std::io::Result<JobContext> {
        Ok(JobContext::resolve(
            flags,
            Environment::of_process(),
            std::env::current_dir()?,
        ))
    }

    /// The job with environment `env`, working in `working_dir`. `$HOME` and
    /// `$CARGO_HOME` count only when absolute (as Cargo has it); Cargo's home is
    /// `$HOME/.cargo` when `$CARGO_HOME` is not.
    pub fn resolve(flags: Flags, env: Environment, working_dir: PathBuf) -> JobContext {
        let path = |name| env.get_os(name).map(PathBuf::from);
        let trees = Roots::resolve(&working_dir, path("HOME"), path("CARGO_HOME"));
        let tool = |name: &str, default: &str| {
            env.get_os(name)
                .map_or_else(|| OsString::from(default), OsStr::to_owned)
        };
        JobContext {
            flags,
            trees,
            tuning: Tuning::from_lookup(|name| env.get(name)),
            endpoint: Endpoint::from_lookup(|name| env.get(name).filter(|v| !v.is_empty())),
            rust_tools: RustTools {
                cargo: tool("CARGO", "cargo"),
                rustc: tool("RUSTC", "rustc"),
            },
            env,
        }
    }

    pub fn working_dir(&self) -> &Path {
        &self.trees.main
    }

    /// Cargo's home, if `$CARGO_HOME` or `$HOME` is set to an absolute path.
    pub fn cargo_home(&self) -> Option<&Path> {
        self.trees.dir(Tree::Extra(Extra::CargoHome))
    }

    /// A client of the cache service (fails when none is configured).
    pub fn api(&self) -> Result<ApiClient, ApiError> {
        ApiClient::new(self.endpoint.clone()?, &self.tuning)
    }

    /// The trees of a cache whose main tree is `main`.
    pub fn trees_at(&self, main: &Path) -> Roots {
        Roots {
            main: main.to_owned(),
            extra: self.trees.extra.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(pairs: &[(&str, &str)]) -> JobContext {
        JobContext::resolve(
            Flags::default(),
            Environment::from_pairs(pairs.iter().copied()),
            PathBuf::from("/work/ws"),
        )
    }

    #[test]
    fn cargo_home_defaults_to_the_one_under_home_as_cargo_has_it() {
        let unset = job(&[("HOME", "/home/ci")]);
        assert_eq!(unset.cargo_home(), Some(Path::new("/home/ci/.cargo")));
        let relative = job(&[("HOME", "/home/ci"), ("CARGO_HOME", "rel")]);
        assert_eq!(relative.cargo_home(), Some(Path::new("/home/ci/.cargo")));
        let set = job(&[("HOME", "/home/ci"), ("CARGO_HOME", "/opt/cargo")]);
        assert_eq!(set.cargo_home(), Some(Path::new("/opt/cargo")));
        assert_eq!(job(&[]).cargo_home(), None);
        assert_eq!(
            job(&[("CARGO_HOME", "/opt/cargo")]).cargo_home(),
            Some(Path::new("/opt/cargo"))
        );
    }

    #[test]
    fn tools_and_knobs_come_from_the_given_environment() {
        let ctx = job(&[("RUSTC", "/opt/rustc"), ("BMAT_LIST_PAGE", "7")]);
        assert_eq!(
            ctx.rust_tools,
            RustTools {
                cargo: "cargo".into(),
                rustc: "/opt/rustc".into()
            }
        );
        assert_eq!(ctx.tuning.list_page, 7);
        assert!(ctx.endpoint.is_err());
        assert_eq!(ctx.working_dir(), Path::new("/work/ws"));
        let at = ctx.trees_at(Path::new("/work/ws/target"));
        assert_eq!(at.main, Path::new("/work/ws/target"));
    }
}
