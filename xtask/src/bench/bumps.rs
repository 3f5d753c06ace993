//! The lock bumps `dedup-study` and `bench-dedup` replay, one after the other, each
//! on top of the ones before: `cargo update -p PACKAGE --precise VERSION`. Every version is a real
//! crates.io release, the one published before the version `testdata/bench-workspace`
//! locks (read off the crates.io index), so each step is a real release bump, taken
//! backwards. Different packages, at different depths of the dependency graph.

use std::collections::{BTreeMap, BTreeSet};

use bmat::rust::lockfile::LockedPackage;

pub struct Bump {
    pub package: &'static str,
    pub precise: &'static str,
    /// Why this bump: what it is and what it exercises.
    pub why: &'static str,
}

pub const BUMPS: &[Bump] = &[
    Bump {
        package: "serde_json",
        precise: "1.0.153",
        why: "the release before the locked 1.0.154; a library the members use directly",
    },
    Bump {
        package: "memchr",
        precise: "2.8.2",
        why: "the release before 2.8.3; deep: under aho-corasick, regex and serde_json",
    },
    Bump {
        package: "itoa",
        precise: "1.0.18",
        why: "the release before 1.0.19; a small leaf under serde_json",
    },
    Bump {
        package: "regex",
        precise: "1.13.1",
        why: "the release before 1.13.2; a large library",
    },
    Bump {
        package: "anyhow",
        precise: "1.0.104",
        why: "the release before 1.0.105; has a build script",
    },
    Bump {
        package: "libc",
        precise: "0.2.190",
        why: "the release before 0.2.191; build script, many dependents (tokio, jobserver, …)",
    },
    Bump {
        package: "sha2",
        precise: "0.10.8",
        why: "the release before 0.10.9",
    },
    Bump {
        package: "zstd",
        precise: "0.13.4",
        why: "the release before 0.13.5; a wrapper over zstd-sys's C library",
    },
    Bump {
        package: "cc",
        precise: "1.11.2",
        why: "the release before 1.11.3; a build dependency: build scripts built and run again",
    },
    Bump {
        package: "tokio",
        precise: "1.53.3",
        why: "the newest release before 1.54.1 that is not yanked (1.54.0 is)",
    },
    Bump {
        package: "bytes",
        precise: "1.12.1",
        why: "the release before 1.12.2; under tokio",
    },
    Bump {
        package: "clap",
        precise: "4.6.8",
        why: "the release before 4.6.9; takes clap_derive (a proc macro) along",
    },
    Bump {
        package: "thiserror",
        precise: "2.0.20",
        why: "the release before 2.0.21; takes thiserror-impl (a proc macro) along",
    },
    Bump {
        package: "syn",
        precise: "3.0.9",
        why: "the release before 3.0.10; does not resolve after clap's bump (clap_derive \
              4.6.8 wants syn ^3.0.10): shows a skipped bump",
    },
    Bump {
        package: "unicode-ident",
        precise: "1.0.26",
        why: "the release before 1.0.27; under proc-macro2: every proc macro and what it \
              expands is built again",
    },
    Bump {
        package: "aho-corasick",
        precise: "1.1.4",
        why: "the release before 1.1.5; under regex",
    },
];

/// What a lock change did, the bumped package first: `clap 4.6.9 → 4.6.8,
/// clap_derive 4.6.9 → 4.6.8`.
pub fn describe(package: &str, before: &[LockedPackage], after: &[LockedPackage]) -> String {
    let versions = |lock: &[LockedPackage]| {
        let mut by_name: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for p in lock {
            by_name
                .entry(p.name.clone())
                .or_default()
                .insert(p.version.clone());
        }
        by_name
    };
    let (old, new) = (versions(before), versions(after));
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let join = |v: Option<&BTreeSet<String>>| {
        v.map(|s| s.iter().cloned().collect::<Vec<_>>().join("+"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "none".to_owned())
    };
    let mut changes: Vec<(bool, String)> = names
        .into_iter()
        .filter(|n| old.get(*n) != new.get(*n))
        .map(|n| {
            (
                n != package,
                format!("{n} {} → {}", join(old.get(n)), join(new.get(n))),
            )
        })
        .collect();
    changes.sort();
    let text: Vec<String> = changes.into_iter().map(|(_, c)| c).collect();
    if text.is_empty() {
        format!("{package}: no change")
    } else {
        text.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, version: &str) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            source: Some("registry+https://github.com/rust-lang/crates.io-index".into()),
            checksum: None,
        }
    }

    #[test]
    fn describes_the_bump_and_what_it_took_along() {
        let before = [
            p("clap", "4.6.9"),
            p("clap_derive", "4.6.9"),
            p("syn", "3.0.10"),
        ];
        let after = [
            p("clap", "4.6.8"),
            p("clap_derive", "4.6.8"),
            p("syn", "3.0.10"),
        ];
        assert_eq!(
            describe("clap_derive", &before, &after),
            "clap_derive 4.6.9 → 4.6.8, clap 4.6.9 → 4.6.8"
        );
        assert_eq!(describe("syn", &before, &before), "syn: no change");
    }

    #[test]
    fn the_bumps_are_of_different_packages() {
        let names: BTreeSet<&str> = BUMPS.iter().map(|b| b.package).collect();
        assert_eq!(names.len(), BUMPS.len());
        assert!(
            BUMPS.len() >= 11,
            "10 must succeed; one is expected to be skipped"
        );
    }
}
