//! What goes into a Rust cache key: `rust-deps-{toolchain}-{host}-{hash}`, or
//! `rust-deps-{suffix}-{toolchain}-{host}-{hash}` with a user's `--key-suffix` (matrix
//! jobs that build differently). The suffix is in the fallback prefix too, so a
//! partial restore never takes another matrix job's cache.
//!
//! The hash covers what changes third-party artefacts and nothing else, so that a
//! version bump of a workspace member or an edit of its code keeps the key:
//! - where Cargo's home is, unless Cargo's fingerprints can be carried to another home
//!   (see [`super::relocate`]): then a runner whose `CARGO_HOME` is elsewhere misses
//!   cleanly instead of restoring units that would all rebuild;
//! - the third-party entries of Cargo.lock (name, version, source, checksum);
//! - an explicit list of environment variables that change compiler flags;
//! - the `[profile]` table of the workspace's Cargo.toml, and the `[build]`, `[profile]`
//!   and `[target]` tables of every cargo config file cargo would read;
//! - the host's C library (see [`super::host`]);
//! - what the user declares with `--key-input` and `--key-env` (see [`super::declared`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::declared::{DeclaredPath, DeclaredVar};
use super::lockfile::LockedPackage;
use super::toolchain::{self, RustTools, Toolchain};
use super::workspace::Workspace;

/// Variables that change how every crate is compiled. Deliberately not "everything that
/// starts with CARGO_": most of those (CARGO_TERM_*, CARGO_HOME, …) change no artefact
/// and would only split the cache.
const KEY_VARIABLES: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    // Not third-party units (Cargo compiles them without), but the members': a
    // workspace layer built with it is rebuilt without it, and the other way round.
    "CARGO_INCREMENTAL",
];

/// Families of variables with a variable middle part: `CARGO_PROFILE_<NAME>_<KEY>` and
/// `CARGO_TARGET_<TRIPLE>_RUSTFLAGS`.
fn is_key_variable(name: &str) -> bool {
    KEY_VARIABLES.contains(&name)
        || name.starts_with("CARGO_PROFILE_")
        || (name.starts_with("CARGO_TARGET_") && name.ends_with("_RUSTFLAGS"))
}

/// What the key says about Cargo's home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HomeKey {
    /// Cargo's fingerprints are relocated at restore: any home will do.
    Relocatable { cargo: String },
    /// Not a Cargo whose fingerprints we can rewrite: the artefacts are valid only
    /// where the registry sources are at this path.
    Pinned { cargo: String, sources: PathBuf },
}

#[derive(Debug, Clone)]
pub struct KeyInputs {
    /// The user's part (`--key-suffix`).
    pub suffix: Option<String>,
    pub home: HomeKey,
    pub toolchain: Toolchain,
    pub packages: Vec<LockedPackage>,
    /// Set variables from the list above, sorted by name.
    pub env: Vec<(String, String)>,
    /// (file, canonical TOML of the tables that matter), in the order cargo reads them.
    pub config: Vec<(PathBuf, String)>,
    /// `glibc 2.36`, `musl`, or none (see [`super::host`]).
    pub c_library: Option<String>,
    /// `--key-input` paths and `--key-env` variables, in the order given.
    pub declared_paths: Vec<DeclaredPath>,
    pub declared_vars: Vec<DeclaredVar>,
}

impl KeyInputs {
    pub fn new(
        toolchain: Toolchain,
        packages: Vec<LockedPackage>,
        env: impl IntoIterator<Item = (String, String)>,
        config: Vec<(PathBuf, String)>,
    ) -> KeyInputs {
        let env: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(name, _)| is_key_variable(name))
            .collect();
        KeyInputs {
            suffix: None,
            home: HomeKey::Relocatable {
                cargo: String::new(),
            },
            toolchain,
            packages,
            env: env.into_iter().collect(),
            config,
            c_library: None,
            declared_paths: Vec::new(),
            declared_vars: Vec::new(),
        }
    }

    pub fn with_c_library(mut self, c_library: Option<String>) -> KeyInputs {
        self.c_library = c_library;
        self
    }

    pub fn with_declared(mut self, paths: Vec<DeclaredPath>, vars: Vec<DeclaredVar>) -> KeyInputs {
        self.declared_paths = paths;
        self.declared_vars = vars;
        self
    }

    pub fn with_suffix(mut self, suffix: Option<String>) -> KeyInputs {
        self.suffix = suffix;
        self
    }

    pub fn with_home(mut self, home: HomeKey) -> KeyInputs {
        self.home = home;
        self
    }

    /// Every key of this toolchain, host (and suffix) starts with this: the fallback
    /// prefix of a partial restore.
    pub fn prefix(&self) -> String {
        let suffix = self
            .suffix
            .as_ref()
            .map_or_else(String::new, |s| format!("{s}-"));
        sanitize(&format!(
            "rust-deps-{suffix}{}-{}-",
            self.toolchain.name, self.toolchain.host
        ))
    }

    pub fn key(&self) -> String {
        format!("{}{}", self.prefix(), &self.hash()[..20])
    }

    fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        for line in self.hashed_lines() {
            hasher.update(line.as_bytes());
            hasher.update(b"\n");
        }
        hex::encode(hasher.finalize())
    }

    fn hashed_lines(&self) -> Vec<String> {
        // v2: the cache holds Cargo's home too. v3: the host's C library and declared
        // inputs.
        let mut lines = vec!["bmat rust key v3".to_string()];
        if let Some(c_library) = &self.c_library {
            lines.push(format!("host c library {c_library}"));
        }
        // By content and position, never by path: another checkout keys the same.
        lines.extend(
            self.declared_paths
                .iter()
                .map(|p| format!("declared input {}", p.digest)),
        );
        lines.extend(self.declared_vars.iter().map(|v| match &v.digest {
            Some(digest) => format!("declared env {}={digest}", v.name),
            None => format!("declared env {} unset", v.name),
        }));
        match &self.home {
            HomeKey::Relocatable { .. } => lines.push("home relocatable".into()),
            HomeKey::Pinned { sources, .. } => {
                lines.push(format!("home {}", sources.display()));
            }
        }
        lines.extend(
            self.packages
                .iter()
                .map(|p| format!("lock {}", p.key_line())),
        );
        lines.extend(self.env.iter().map(|(k, v)| format!("env {k}={v:?}")));
        for (file, tables) in &self.config {
            // The tables, not the path: the same config in another checkout is the same key.
            lines.push(format!(
                "config {}",
                file.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            ));
            lines.extend(tables.lines().map(|l| format!("  {l}")));
        }
        lines
    }

    /// For `bmat cache rust key`: the key, then every input that went into it.
    pub fn describe(&self) -> String {
        let mut out = format!("{}\n", self.key());
        out.push_str(&format!(
            "toolchain: {} (host {})\n",
            self.toolchain.name, self.toolchain.host
        ));
        if let Some(suffix) = &self.suffix {
            out.push_str(&format!("key suffix: {suffix}\n"));
        }
        if let Some(c_library) = &self.c_library {
            out.push_str(&format!("host C library: {c_library}\n"));
        }
        for p in &self.declared_paths {
            out.push_str(&format!(
                "key input: {} ({} files, sha256 {})\n",
                p.shown,
                p.files,
                &p.digest[..16]
            ));
        }
        for v in &self.declared_vars {
            out.push_str(&match &v.digest {
                Some(digest) => format!("key env: {} (set, sha256 {})\n", v.name, &digest[..16]),
                None => format!("key env: {} (unset)\n", v.name),
            });
        }
        out.push_str(&match &self.home {
            HomeKey::Relocatable { cargo } => format!(
                "cargo home: any path (Cargo {cargo}: fingerprints are rewritten for the restoring job's CARGO_HOME)\n"
            ),
            HomeKey::Pinned { cargo, sources } => format!(
                "cargo home: registry sources at {} (Cargo {cargo} is not one whose fingerprints bmat can relocate: a runner whose CARGO_HOME is elsewhere has another key)\n",
                sources.display()
            ),
        });
        out.push_str(&format!(
            "third-party packages in Cargo.lock: {}\n",
            self.packages.len()
        ));
        for p in &self.packages {
            out.push_str(&format!("  {}\n", p.key_line()));
        }
        if self.env.is_empty() {
            out.push_str("environment: none of the key variables is set\n");
        }
        for (k, v) in &self.env {
            out.push_str(&format!("environment: {k}={v:?}\n"));
        }
        for (file, tables) in &self.config {
            out.push_str(&format!("config: {}\n", file.display()));
            for line in tables.lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        out
    }
}

/// A key suffix: 1 to 40 of `A-Za-z0-9._-`, starting with a letter (so that no
/// suffixed prefix is a prefix of an unsuffixed key, whose toolchain part starts with a
/// digit or `nightly-`/`beta-` and then a digit).
pub fn validate_suffix(suffix: &str) -> Result<(), &'static str> {
    if suffix.is_empty() || suffix.len() > 40 {
        return Err("must be 1 to 40 characters long");
    }
    if !suffix.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("must start with a letter");
    }
    if !suffix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("may hold only letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// Keys allow `[A-Za-z0-9._-]`; a host triple or toolchain name never needs more, but a
/// custom one could.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The artefact-changing tables of the workspace manifest and of every cargo config file
/// that applies to `workspace_root` (its `.cargo/` and each parent's, then those of
/// Cargo's home `cargo_home`).
pub fn config_tables(
    workspace_root: &Path,
    cargo_home: &Path,
) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut found = Vec::new();
    let manifest = workspace_root.join("Cargo.toml");
    if let Some(tables) = tables_of(&manifest, &["profile"])? {
        found.push((manifest, tables));
    }
    let mut config_files: Vec<PathBuf> = workspace_root
        .ancestors()
        .flat_map(|dir| [dir.join(".cargo/config.toml"), dir.join(".cargo/config")])
        .collect();
    config_files.extend([cargo_home.join("config.toml"), cargo_home.join("config")]);
    let mut seen = std::collections::HashSet::new();
    for file in config_files {
        if !seen.insert(file.clone()) {
            continue;
        }
        if let Some(tables) = tables_of(&file, &["build", "profile", "target"])? {
            found.push((file, tables));
        }
    }
    Ok(found)
}

/// The named tables of a TOML file, re-serialised in a canonical form (sorted keys, no
/// comments), or `None` when the file does not exist or has none of them.
fn tables_of(file: &Path, names: &[&str]) -> anyhow::Result<Option<String>> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("cannot read {}: {e}", file.display()),
    };
    let doc: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not valid TOML: {e}", file.display()))?;
    let picked: toml::Table = doc
        .into_iter()
        .filter(|(name, _)| names.contains(&name.as_str()))
        .collect();
    if picked.is_empty() {
        return Ok(None);
    }
    Ok(Some(toml::to_string(&picked)?))
}

/// The inputs of `workspace`'s key, with Cargo's home at `cargo_home`, the tools
/// `tools` and the variables `vars` of the job.
pub fn key_inputs(
    workspace: &Workspace,
    cargo_home: &Path,
    tools: &RustTools,
    vars: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<KeyInputs> {
    let lock_path = workspace.root.join("Cargo.lock");
    let lock_text = std::fs::read_to_string(&lock_path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}: {e} (commit Cargo.lock, or run `cargo generate-lockfile` before bmat)",
            lock_path.display()
        )
    })?;
    let packages = super::lockfile::third_party(&lock_text)?;
    let toolchain = toolchain::detect(&tools.rustc, &workspace.root)?;
    let config = config_tables(&workspace.root, cargo_home)?;
    let cargo = toolchain::cargo_version(&tools.cargo, &workspace.root)?;
    let home = if toolchain::minor_of(&cargo)
        .is_some_and(|v| super::relocate::RELOCATABLE_CARGO.contains(&v))
    {
        HomeKey::Relocatable { cargo }
    } else {
        HomeKey::Pinned {
            cargo,
            sources: cargo_home.join("registry/src"),
        }
    };
    let c_library = super::host::c_library(&toolchain.host);
    Ok(KeyInputs::new(toolchain, packages, vars, config)
        .with_home(home)
        .with_c_library(c_library))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toolchain() -> Toolchain {
        Toolchain {
            name: "1.95.0".into(),
            host: "x86_64-unknown-linux-gnu".into(),
            verbose_version: String::new(),
        }
    }

    fn package(name: &str, version: &str) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            source: Some("registry+https://github.com/rust-lang/crates.io-index".into()),
            checksum: None,
        }
    }

    fn key(packages: Vec<LockedPackage>, env: &[(&str, &str)]) -> String {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        KeyInputs::new(toolchain(), packages, env, Vec::new()).key()
    }

    #[test]
    fn key_has_the_documented_shape() {
        let key = key(vec![package("libc", "0.2.1")], &[]);
        assert!(
            key.starts_with("rust-deps-1.95.0-x86_64-unknown-linux-gnu-"),
            "{key}"
        );
        assert_eq!(bmat_wire::validate_key(&key), Ok(()));
    }

    #[test]
    fn key_follows_lock_entries_and_flag_variables_only() {
        let base = key(vec![package("libc", "0.2.1")], &[]);
        assert_ne!(base, key(vec![package("libc", "0.2.2")], &[]));
        assert_ne!(
            base,
            key(
                vec![package("libc", "0.2.1")],
                &[("RUSTFLAGS", "-Cdebuginfo=0")]
            )
        );
        assert_ne!(
            base,
            key(
                vec![package("libc", "0.2.1")],
                &[("CARGO_PROFILE_DEV_OPT_LEVEL", "1")]
            )
        );
        assert_ne!(
            base,
            key(
                vec![package("libc", "0.2.1")],
                &[("CARGO_INCREMENTAL", "0")]
            )
        );
        assert_eq!(
            base,
            key(
                vec![package("libc", "0.2.1")],
                &[("CARGO_TERM_COLOR", "always")]
            )
        );
        assert_eq!(
            base,
            key(
                vec![package("libc", "0.2.1")],
                &[("CARGO_HOME", "/elsewhere")]
            )
        );
    }

    #[test]
    fn the_host_c_library_and_declared_inputs_change_the_key_not_the_prefix() {
        let base = || KeyInputs::new(toolchain(), vec![package("libc", "0.2.1")], [], Vec::new());
        let plain = base();
        let older = base().with_c_library(Some("glibc 2.31".into()));
        let newer = base().with_c_library(Some("glibc 2.36".into()));
        let input = |digest: &str| DeclaredPath {
            shown: ".sqlx".into(),
            files: 1,
            digest: digest.into(),
        };
        let var = |digest: Option<&str>| DeclaredVar {
            name: "SQLX_OFFLINE".into(),
            digest: digest.map(str::to_owned),
        };
        let keys = [
            plain.key(),
            older.key(),
            newer.key(),
            base().with_declared(vec![input("aa")], vec![]).key(),
            base().with_declared(vec![input("bb")], vec![]).key(),
            base().with_declared(vec![], vec![var(None)]).key(),
            base().with_declared(vec![], vec![var(Some("cc"))]).key(),
        ];
        let distinct: std::collections::BTreeSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "{keys:#?}");
        assert_eq!(older.prefix(), plain.prefix());
        // Where the declared input is does not matter, only its content.
        let moved = DeclaredPath {
            shown: "/elsewhere/.sqlx".into(),
            ..input("aa")
        };
        assert_eq!(base().with_declared(vec![moved], vec![]).key(), keys[3]);
        let shown = newer
            .with_declared(vec![input(&"ab".repeat(32))], vec![var(None)])
            .describe();
        assert!(shown.contains("host C library: glibc 2.36"), "{shown}");
        assert!(shown.contains("key input: .sqlx (1 files"), "{shown}");
        assert!(shown.contains("key env: SQLX_OFFLINE (unset)"), "{shown}");
    }

    #[test]
    fn a_suffix_is_part_of_the_key_and_of_the_fallback_prefix() {
        let plain = KeyInputs::new(toolchain(), vec![package("libc", "0.2.1")], [], Vec::new());
        let wasm = plain.clone().with_suffix(Some("wasm".into()));
        assert!(
            wasm.key().starts_with("rust-deps-wasm-1.95.0-"),
            "{}",
            wasm.key()
        );
        assert!(wasm.key().starts_with(&wasm.prefix()));
        assert!(!wasm.key().starts_with(&plain.prefix()));
        assert!(!plain.key().starts_with(&wasm.prefix()));
        assert_eq!(validate_suffix("features-all"), Ok(()));
        assert!(validate_suffix("1.95").is_err());
        assert!(validate_suffix("a/b").is_err());
        assert!(validate_suffix("").is_err());
    }

    #[test]
    fn a_pinned_home_is_in_the_key_and_a_relocatable_one_is_not() {
        let at = |home: HomeKey| {
            KeyInputs::new(toolchain(), vec![package("libc", "0.2.1")], [], Vec::new())
                .with_home(home)
                .key()
        };
        let relocatable = |cargo: &str| HomeKey::Relocatable {
            cargo: cargo.into(),
        };
        let pinned = |path: &str| HomeKey::Pinned {
            cargo: "1.99.0".into(),
            sources: PathBuf::from(path),
        };
        assert_eq!(at(relocatable("1.95.0")), at(relocatable("1.95.1")));
        assert_ne!(
            at(pinned("/root/.cargo/registry/src")),
            at(pinned("/home/ci/.cargo/registry/src"))
        );
        assert_ne!(
            at(pinned("/root/.cargo/registry/src")),
            at(relocatable("1.95.0"))
        );
    }

    #[test]
    fn config_tables_pick_profile_and_build_sections() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[workspace]\nmembers = []\n[workspace.package]\nversion = \"1.0.0\"\n[profile.dev]\nopt-level = 1\n",
        )
        .expect("write");
        std::fs::create_dir(dir.path().join(".cargo")).expect("mkdir");
        std::fs::write(
            dir.path().join(".cargo/config.toml"),
            "[alias]\nx = \"run\"\n[build]\nrustflags = [\"-Ccodegen-units=4\"]\n",
        )
        .expect("write");
        let tables = config_tables(dir.path(), &dir.path().join("no-cargo-home")).expect("tables");
        let text: Vec<&str> = tables.iter().map(|(_, t)| t.as_str()).collect();
        assert!(
            text[0].contains("opt-level = 1") && !text[0].contains("version"),
            "{text:?}"
        );
        assert!(
            text[1].contains("codegen-units") && !text[1].contains("alias"),
            "{text:?}"
        );
    }
}
