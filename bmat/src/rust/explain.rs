//! Why a dependency cache was not an exact hit. Each cache holds the inputs of its
//! key ([`RECORD`], in the build directory); after a fallback hit, the restoring job
//! compares them with its own and says which differ: the toolchain, the host, its C
//! library, the key suffix, flag variables, cargo config, declared inputs, or the
//! packages whose lock entries changed (`serde_json 1.0.144 → 1.0.145, +1 package`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::key::KeyInputs;

/// The record's name in the build directory (saved and restored with the cache).
pub const RECORD: &str = ".bmat-rust-key.json";

/// The inputs of a key, as a cache records them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub toolchain: String,
    pub host: String,
    pub c_library: Option<String>,
    pub suffix: Option<String>,
    /// `name → versions` of the third-party packages (a name may be locked twice).
    pub packages: BTreeMap<String, Vec<String>>,
    /// Flag variables, by name, their values' digests.
    pub env: BTreeMap<String, String>,
    /// Digest of the cargo config tables, and of the declared inputs.
    pub config: String,
    pub declared: String,
    /// How long the saving job built, from its Rust restore to its save (when it ran
    /// both through a shim): what a restore of this cache may save another job.
    #[serde(default)]
    pub build_ms: Option<u64>,
}

fn digest(lines: impl IntoIterator<Item = String>) -> String {
    let mut h = Sha256::new();
    for l in lines {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())[..16].to_owned()
}

impl KeyRecord {
    pub fn of(inputs: &KeyInputs) -> KeyRecord {
        let mut packages: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in &inputs.packages {
            packages
                .entry(p.name.clone())
                .or_default()
                .push(p.version.clone());
        }
        KeyRecord {
            toolchain: inputs.toolchain.name.clone(),
            host: inputs.toolchain.host.clone(),
            c_library: inputs.c_library.clone(),
            suffix: inputs.suffix.clone(),
            packages,
            env: inputs
                .env
                .iter()
                .map(|(k, v)| (k.clone(), digest([v.clone()])))
                .collect(),
            config: digest(
                inputs
                    .config
                    .iter()
                    // By name, as the key: the same config in another checkout is
                    // the same.
                    .map(|(f, t)| format!("{:?} {t}", f.file_name())),
            ),
            declared: digest(
                inputs
                    .declared_paths
                    .iter()
                    .map(|p| p.digest.clone())
                    .chain(inputs.declared_vars.iter().map(|v| format!("{v:?}"))),
            ),
            build_ms: None,
        }
    }

    /// What differs from `restored` (the cache's), in words; empty when nothing does.
    pub fn differences(&self, restored: &KeyRecord) -> Vec<String> {
        let mut out = Vec::new();
        let mut field = |what: &str, ours: String, theirs: String| {
            if ours != theirs {
                out.push(format!("{what} {theirs} → {ours}"));
            }
        };
        field(
            "toolchain",
            self.toolchain.clone(),
            restored.toolchain.clone(),
        );
        field("host", self.host.clone(), restored.host.clone());
        let none = || "none".to_owned();
        field(
            "C library",
            self.c_library.clone().unwrap_or_else(none),
            restored.c_library.clone().unwrap_or_else(none),
        );
        field(
            "key suffix",
            self.suffix.clone().unwrap_or_else(none),
            restored.suffix.clone().unwrap_or_else(none),
        );
        let mut vars: Vec<&str> = self
            .env
            .keys()
            .chain(restored.env.keys())
            .map(String::as_str)
            .filter(|k| self.env.get(*k) != restored.env.get(*k))
            .collect();
        vars.dedup();
        if !vars.is_empty() {
            out.push(format!("variables {}", vars.join(", ")));
        }
        if self.config != restored.config {
            out.push("cargo config".to_owned());
        }
        if self.declared != restored.declared {
            out.push("declared key inputs".to_owned());
        }
        if let Some(packages) = package_changes(&restored.packages, &self.packages) {
            out.push(packages);
        }
        out
    }
}

/// `serde_json 1.0.144 → 1.0.145, itoa 1.0.15 → 1.0.19, +1 package (foo 0.1.0), -1
/// package (bar 2.0.0)`; at most five changes named, then a count.
fn package_changes(
    before: &BTreeMap<String, Vec<String>>,
    after: &BTreeMap<String, Vec<String>>,
) -> Option<String> {
    let mut changed = Vec::new();
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for (name, now) in after {
        match before.get(name) {
            None => added.push(format!("{name} {}", now.join("/"))),
            Some(then) if then != now => {
                changed.push(format!("{name} {} → {}", then.join("/"), now.join("/")))
            }
            Some(_) => {}
        }
    }
    for (name, then) in before {
        if !after.contains_key(name) {
            removed.push(format!("{name} {}", then.join("/")));
        }
    }
    let mut parts: Vec<String> = changed;
    let plural = |n: usize| if n == 1 { "package" } else { "packages" };
    if !added.is_empty() {
        parts.push(format!(
            "+{} {} ({})",
            added.len(),
            plural(added.len()),
            added.join(", ")
        ));
    }
    if !removed.is_empty() {
        parts.push(format!(
            "-{} {} ({})",
            removed.len(),
            plural(removed.len()),
            removed.join(", ")
        ));
    }
    if parts.is_empty() {
        return None;
    }
    let shown = parts.len().min(5);
    let mut text = parts[..shown].join(", ");
    if parts.len() > shown {
        text.push_str(&format!(", and {} more", parts.len() - shown));
    }
    Some(format!("Cargo.lock: {text}"))
}

/// After a miss: the prefixes (toolchain, host, suffix) of the Rust caches `keys`
/// the scope holds, with how many each, when none is `ours`.
pub fn other_prefixes<'a>(ours: &str, keys: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut prefixes: BTreeMap<&str, usize> = BTreeMap::new();
    for key in keys {
        // `rust-deps-…-{hash}`: the prefix is all but the hash.
        if let Some((prefix, _)) = key.rsplit_once('-') {
            *prefixes.entry(prefix).or_default() += 1;
        }
    }
    let ours = ours.trim_end_matches('-');
    if prefixes.contains_key(ours) {
        return None;
    }
    if prefixes.is_empty() {
        return Some("no Rust cache in this job's scope yet".to_owned());
    }
    let listed: Vec<String> = prefixes
        .iter()
        .map(|(p, n)| format!("{p}-… ({n})"))
        .collect();
    Some(format!(
        "no cache of {ours}-…; this job's scope has {}",
        listed.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_miss_names_the_prefixes_the_scope_has() {
        let keys = [
            "rust-deps-1.94.0-x86_64-unknown-linux-gnu-0123456789abcdef0123",
            "rust-deps-1.94.0-x86_64-unknown-linux-gnu-1123456789abcdef0123",
            "rust-deps-release-1.95.0-x86_64-unknown-linux-gnu-2123456789abcdef0123",
        ];
        assert_eq!(
            other_prefixes("rust-deps-1.95.0-x86_64-unknown-linux-gnu-", keys).as_deref(),
            Some(
                "no cache of rust-deps-1.95.0-x86_64-unknown-linux-gnu-…; this job's scope has \
                 rust-deps-1.94.0-x86_64-unknown-linux-gnu-… (2), \
                 rust-deps-release-1.95.0-x86_64-unknown-linux-gnu-… (1)"
            )
        );
        assert_eq!(
            other_prefixes("rust-deps-1.94.0-x86_64-unknown-linux-gnu-", keys),
            None
        );
    }

    fn record(packages: &[(&str, &str)]) -> KeyRecord {
        let mut r = KeyRecord {
            toolchain: "1.95.0".into(),
            host: "x86_64-unknown-linux-gnu".into(),
            ..KeyRecord::default()
        };
        for (n, v) in packages {
            r.packages
                .entry(n.to_string())
                .or_default()
                .push(v.to_string());
        }
        r
    }

    #[test]
    fn a_lock_bump_and_a_flag_are_named() {
        let restored = record(&[
            ("serde_json", "1.0.144"),
            ("bar", "2.0.0"),
            ("itoa", "1.0.15"),
        ]);
        let mut ours = record(&[
            ("serde_json", "1.0.145"),
            ("foo", "0.1.0"),
            ("itoa", "1.0.15"),
        ]);
        ours.env.insert("RUSTFLAGS".into(), "x".into());
        assert_eq!(
            ours.differences(&restored),
            [
                "variables RUSTFLAGS",
                "Cargo.lock: serde_json 1.0.144 → 1.0.145, +1 package (foo 0.1.0), -1 package (bar 2.0.0)"
            ]
        );
        assert!(restored.differences(&restored).is_empty());
        let mut newer = restored.clone();
        newer.toolchain = "1.96.0".into();
        assert_eq!(newer.differences(&restored), ["toolchain 1.95.0 → 1.96.0"]);
    }
}
