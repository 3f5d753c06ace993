//! `bmat cache rust key|save|restore` with real cargo builds of `testdata/rust-fixture`
//! (crates.io dependencies fetched like any user's build) on the real stack.

#[path = "common/cache.rs"]
mod cache;
mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use cache::{Run, cache_tar, run, stored_objects, tar_names};
use xtask::stack::{Stack, bins};

const LOCK_VARIANT: &str = "Cargo.lock.variant";

fn fixture() -> PathBuf {
    bins::workspace_root().join("testdata/rust-fixture")
}

/// A fresh copy of the fixture (sources, manifests, Cargo.lock; no target dir).
fn checkout(dir: &Path) -> PathBuf {
    xtask::copy::copy_tree(&fixture(), dir).expect("copy the fixture");
    dir.to_path_buf()
}

/// Variables of the test's own environment that would change what cargo builds where.
const CARGO_VARS: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_INCREMENTAL",
];

fn clean_cargo_env(cmd: &mut Command) {
    for var in CARGO_VARS {
        cmd.env_remove(var);
    }
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CARGO_PROFILE_") {
            cmd.env_remove(key);
        }
    }
}

fn bmat(stack: &Stack) -> Command {
    let mut cmd = common::bmat(stack);
    clean_cargo_env(&mut cmd);
    cmd
}

/// `bmat --json cache rust ARGS…` for the dependency cache alone: a save or restore
/// gets `--deps-only` (the workspace layer has tests of its own, which use
/// [`bmat_rust_layered`]).
fn bmat_rust(stack: &Stack, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut args = args.to_vec();
    if matches!(args.first(), Some(&"save" | &"restore")) {
        args.push("--deps-only");
    }
    bmat_rust_layered(stack, dir, &args, env)
}

/// `bmat --json cache rust ARGS…` as given: with the workspace layer.
fn bmat_rust_layered(stack: &Stack, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = bmat(stack);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut all = vec!["--json", "cache", "rust"];
    all.extend_from_slice(args);
    let result = run(cmd, dir, &all, b"");
    eprintln!("bmat {all:?} in {}:\n{}", dir.display(), result.stderr);
    result
}

/// One unit cargo reported: package id and whether it was fresh.
#[derive(Debug)]
struct Unit {
    package_id: String,
    fresh: bool,
}

impl Unit {
    fn third_party(&self) -> bool {
        self.package_id.starts_with("registry+") || self.package_id.starts_with("sparse+")
    }
}

/// `cargo build --locked` with JSON messages; every compiled or fresh unit.
fn cargo_build(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Vec<Unit> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    clean_cargo_env(&mut cmd);
    cmd.current_dir(dir)
        .args(["build", "--locked", "--message-format", "json"])
        .args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo build failed in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact")
        .map(|msg| Unit {
            package_id: msg["package_id"].as_str().unwrap_or_default().to_string(),
            fresh: msg["fresh"].as_bool().unwrap_or(false),
        })
        .collect()
}

fn assert_only_workspace_compiled(units: &[Unit], what: &str) {
    let third_party: Vec<&Unit> = units.iter().filter(|u| u.third_party()).collect();
    assert!(
        third_party.len() >= 5,
        "{what}: too few third-party units: {units:?}"
    );
    let rebuilt: Vec<&str> = third_party
        .iter()
        .filter(|u| !u.fresh)
        .map(|u| u.package_id.as_str())
        .collect();
    assert!(
        rebuilt.is_empty(),
        "{what}: third-party units compiled again: {rebuilt:?}"
    );
    assert!(
        units.iter().any(|u| !u.third_party() && !u.fresh),
        "{what}: the workspace members should have been compiled: {units:?}"
    );
}

fn key_of(stack: &Stack, dir: &Path, env: &[(&str, &str)]) -> String {
    let result = bmat_rust(stack, dir, &["key"], env);
    assert_eq!(result.code, 0, "{result:?}");
    result.stdout.lines().next().unwrap_or_default().to_string()
}

#[test]
fn restore_into_a_fresh_checkout_compiles_only_the_workspace() {
    let stack = Stack::start().expect("stack");
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = checkout(&tmp.path().join("first"));
    cargo_build(&first, &[], &[]);
    let saved = bmat_rust(&stack, &first, &["save"], &[]);
    assert_eq!(
        (saved.code, saved.outcome()),
        (0, "saved".to_string()),
        "{saved:?}"
    );

    // The archive holds third-party artefacts only: no workspace crate, no final binary,
    // no incremental state.
    let objects = stored_objects(&stack);
    assert_eq!(objects.len(), 1, "{objects:?}");
    let names = tar_names(&cache_tar(&stack, &objects[0].0));
    assert!(
        names.iter().any(|n| n.contains("deps/liblibc-")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.contains("deps/libpaste-")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.contains("build/libc-")), "{names:?}");
    for bad in ["fixture", "incremental"] {
        assert!(!names.iter().any(|n| n.contains(bad)), "{bad} in {names:?}");
    }

    let second = checkout(&tmp.path().join("second"));
    let restored = bmat_rust(&stack, &second, &["restore"], &[]);
    assert_eq!(
        (restored.code, restored.outcome()),
        (0, "hit".to_string()),
        "{restored:?}"
    );
    let units = cargo_build(&second, &[], &[]);
    assert_only_workspace_compiled(&units, "after an exact hit");

    // Saving again is a skip: the key exists.
    let again = bmat_rust(&stack, &second, &["save"], &[]);
    assert_eq!(again.outcome(), "skipped", "{again:?}");
}

/// A job on a fresh runner: its own Cargo home, empty until cargo or bmat fills it.
fn runner_env(cargo_home: &Path) -> Vec<(&'static str, String)> {
    vec![("CARGO_HOME", cargo_home.display().to_string())]
}

fn pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn a_fresh_runner_with_another_cargo_home_builds_offline_and_compiles_no_dependency() {
    let stack = Stack::start().expect("stack");
    let tmp = tempfile::tempdir().expect("tempdir");
    // Job A: an empty Cargo home; cargo downloads the index entries and crates.
    let env_a = runner_env(&tmp.path().join("a/cargo-home"));
    let first = checkout(&tmp.path().join("a/ws"));
    cargo_build(&first, &[], &pairs(&env_a));
    let saved = bmat_rust(&stack, &first, &["save"], &pairs(&env_a));
    assert_eq!(saved.outcome(), "saved", "{saved:?}");
    let objects = stored_objects(&stack);
    let names = tar_names(&cache_tar(&stack, &objects[0].0));
    for package in ["cfg-if", "itoa", "libc", "memchr", "paste"] {
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(".bmat-root/cargo-home/registry/cache/")
                    && n.contains(&format!("/{package}-"))
                    && n.ends_with(".crate")),
            "{package}'s .crate missing: {names:?}"
        );
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(".bmat-root/cargo-home/registry/index/")
                    && n.contains("/.cache/")
                    && n.ends_with(&format!("/{package}"))),
            "{package}'s index entry missing: {names:?}"
        );
    }
    for never in ["registry/src", "/bin/", ".package-cache", ".global-cache"] {
        assert!(
            !names.iter().any(|n| n.contains(never)),
            "{never} in {names:?}"
        );
    }

    // Job B: another checkout path, another Cargo home of another length, and no
    // network for cargo: everything comes from the cache.
    let env_b = runner_env(&tmp.path().join("b/runner-2/other-cargo-home"));
    let second = checkout(&tmp.path().join("b/checkout/ws"));
    assert_eq!(
        key_of(&stack, &second, &pairs(&env_b)),
        key_of(&stack, &first, &pairs(&env_a)),
        "a Cargo whose fingerprints bmat relocates: one key for every Cargo home"
    );
    let restored = bmat_rust(&stack, &second, &["restore"], &pairs(&env_b));
    assert_eq!(restored.outcome(), "hit", "{restored:?}");
    assert!(restored.stderr.contains("relocated"), "{restored:?}");
    let units = cargo_build(&second, &["--offline"], &pairs(&env_b));
    assert_only_workspace_compiled(&units, "on another runner, offline");

    let described = bmat_rust(&stack, &second, &["key"], &pairs(&env_b));
    assert!(
        described.stdout.contains("cargo home: any path"),
        "{}",
        described.stdout
    );
}

/// A `cargo` that says it is a version bmat does not know, and is the real one for
/// everything else: an injected fault, since no other Cargo can be installed here.
fn unknown_cargo(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let real = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let script = dir.join("cargo-1.99");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = -V ]; then echo 'cargo 1.99.0 (0000000 2027-01-01)'; exit 0; fi\nexec '{real}' \"$@\"\n"
        ),
    )
    .expect("write");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

#[test]
fn a_cargo_bmat_cannot_relocate_gets_a_key_per_cargo_home() {
    let stack = Stack::start().expect("stack");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = checkout(&tmp.path().join("ws"));
    let cargo = unknown_cargo(tmp.path());
    let cargo = cargo.display().to_string();
    let key_at = |home: &str| {
        key_of(
            &stack,
            &dir,
            &[("CARGO", cargo.as_str()), ("CARGO_HOME", home)],
        )
    };
    let (at_root, at_ci) = (key_at("/root/.cargo"), key_at("/home/ci/.cargo"));
    assert_ne!(at_root, at_ci, "another Cargo home must miss cleanly");
    assert_eq!(at_root, key_at("/root/.cargo"));
    let described = bmat_rust(
        &stack,
        &dir,
        &["key"],
        &[("CARGO", cargo.as_str()), ("CARGO_HOME", "/home/ci/.cargo")],
    );
    assert!(
        described.stdout.contains("/home/ci/.cargo/registry/src")
            && described.stdout.contains("1.99.0"),
        "rust key says why: {}",
        described.stdout
    );
}

#[test]
fn matrix_jobs_with_key_suffixes_keep_their_own_caches() {
    let stack = Stack::start().expect("stack");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = checkout(&tmp.path().join("ws"));
    cargo_build(&dir, &[], &[]);
    let release = bmat_rust(&stack, &dir, &["save", "--key-suffix", "release"], &[]);
    assert_eq!(release.outcome(), "saved", "{release:?}");
    let wasm = bmat_rust(&stack, &dir, &["save"], &[("BMAT_RUST_KEY_SUFFIX", "wasm")]);
    assert_eq!(
        wasm.outcome(),
        "saved",
        "the second suffix is not skipped: {wasm:?}"
    );
    let release_key = release.json()["key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let wasm_key = wasm.json()["key"].as_str().unwrap_or_default().to_owned();
    assert!(
        release_key.starts_with("rust-deps-release-"),
        "{release_key}"
    );
    assert!(wasm_key.starts_with("rust-deps-wasm-"), "{wasm_key}");
    assert_eq!(stored_objects(&stack).len(), 2);

    let described = bmat_rust(&stack, &dir, &["key", "--key-suffix", "release"], &[]);
    assert_eq!(described.stdout.lines().next(), Some(release_key.as_str()));
    assert!(
        described.stdout.contains("key suffix: release"),
        "{}",
        described.stdout
    );

    // Each job restores its own; a job without a suffix finds neither.
    let second = checkout(&tmp.path().join("second"));
    let hit = bmat_rust(&stack, &second, &["restore", "--key-suffix", "wasm"], &[]);
    assert_eq!(
        hit.json()["matched_key"].as_str(),
        Some(wasm_key.as_str()),
        "{hit:?}"
    );
    let plain = bmat_rust(
        &stack,
        &checkout(&tmp.path().join("third")),
        &["restore"],
        &[],
    );
    assert_eq!(plain.outcome(), "miss", "{plain:?}");
    // Issue 18, point 4: the miss says what the scope has instead.
    let why = plain.json()["explain"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        why.starts_with("no cache of rust-deps-1.") && why.contains("rust-deps-release-1."),
        "{plain:?}"
    );
    assert!(plain.stderr.contains(&why), "{plain:?}");

    let bad = bmat_rust(&stack, &dir, &["save", "--key-suffix", "1.95"], &[]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("key suffix"), "{bad:?}");
}

#[test]
fn key_follows_third_party_lock_entries_and_flags_not_member_versions() {
    let stack = Stack::start().expect("stack");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = checkout(&tmp.path().join("ws"));
    let base = key_of(&stack, &dir, &[]);
    assert!(base.starts_with("rust-deps-"), "{base}");
    assert_eq!(bmat_wire::validate_key(&base), Ok(()));

    // A member's version bump and an edit of its code keep the key.
    let manifest = dir.join("core/Cargo.toml");
    let text = fs::read_to_string(&manifest).expect("read");
    fs::write(
        &manifest,
        text.replace("version = \"0.1.0\"", "version = \"0.2.0\""),
    )
    .expect("write");
    let lock = dir.join("Cargo.lock");
    let lock_text = fs::read_to_string(&lock).expect("read lock");
    let bumped = lock_text.replacen(
        "name = \"fixture-core\"\nversion = \"0.1.0\"",
        "name = \"fixture-core\"\nversion = \"0.2.0\"",
        1,
    );
    assert_ne!(
        bumped, lock_text,
        "the fixture's Cargo.lock lists fixture-core 0.1.0"
    );
    fs::write(&lock, &bumped).expect("write lock");
    fs::write(dir.join("core/src/extra.rs"), "pub fn more() {}\n").expect("write");
    assert_eq!(
        key_of(&stack, &dir, &[]),
        base,
        "member version bump changed the key"
    );

    // Unrelated variables keep it; flag variables change it.
    assert_eq!(
        key_of(&stack, &dir, &[("CARGO_TERM_COLOR", "always")]),
        base
    );
    assert_ne!(
        key_of(&stack, &dir, &[("RUSTFLAGS", "-Cdebug-assertions=on")]),
        base
    );
    assert_ne!(
        key_of(&stack, &dir, &[("CARGO_PROFILE_DEV_OPT_LEVEL", "1")]),
        base
    );

    // A third-party entry changes it.
    fs::copy(fixture().join(LOCK_VARIANT), &lock).expect("variant lock");
    let variant = key_of(&stack, &dir, &[]);
    assert_ne!(variant, base);
    // Same toolchain and host: same prefix, which is what a partial restore falls back to.
    let prefix_len = base.rfind('-').expect("dash") + 1;
    assert_eq!(variant[..prefix_len], base[..prefix_len]);

    // `key` lists what went into the key.
    let described = bmat_rust(&stack, &dir, &["key"], &[("RUSTFLAGS", "-Cfoo")]);
    for needle in ["itoa 1.0.15", "RUSTFLAGS", "profile"] {
        assert!(
            described.stdout.contains(needle),
            "{needle} missing: {}",
            described.stdout
        );
    }
}

/// With `CARGO_HOME` unset, Cargo reads `$HOME/.cargo/config.toml`: so does the key,
/// also for a workspace outside `$HOME` (whose parents' `.cargo/` do not include it).
#[test]
fn an_unset_cargo_home_means_the_one_under_home_for_the_key() {
    let stack = Stack::start().expect("stack");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = checkout(&tmp.path().join("ws"));
    let home = tempfile::tempdir().expect("home");
    // rustup's proxies find their toolchains through RUSTUP_HOME, by default under HOME.
    let rustup_home = std::env::var_os("RUSTUP_HOME").unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME"))
            .join(".rustup")
            .into_os_string()
    });
    let key = || {
        let mut cmd = bmat(&stack);
        cmd.env("HOME", home.path())
            .env("RUSTUP_HOME", &rustup_home)
            .env_remove("CARGO_HOME");
        let result = run(cmd, &dir, &["cache", "rust", "key"], b"");
        assert_eq!(result.code, 0, "{result:?}");
        result.stdout.lines().next().unwrap_or_default().to_string()
    };
    let before = key();
    assert!(before.starts_with("rust-deps-"), "{before}");
    fs::create_dir_all(home.path().join(".cargo")).expect("mkdir");
    fs::write(
        home.path().join(".cargo/config.toml"),
        "[build]\nrustflags = [\"-Cdebug-assertions\"]\n",
    )
    .expect("write");
    assert_ne!(
        key(),
        before,
        "$HOME/.cargo/config.toml was left out of the key"
    );
}

#[test]
fn partial_hit_rebuilds_only_the_changed_dependency_and_prunes_it_on_save() {
    let stack = Stack::start().expect("stack");
    let tmp = tempfile::tempdir().expect("tempdir");
    // An older lock (itoa 1.0.15) is cached first…
    let old = checkout(&tmp.path().join("old"));
    fs::copy(fixture().join(LOCK_VARIANT), old.join("Cargo.lock")).expect("variant lock");
    cargo_build(&old, &[], &[]);
    let saved = bmat_rust(&stack, &old, &["save"], &[]);
    assert_eq!(saved.outcome(), "saved", "{saved:?}");
    let old_objects: BTreeSet<String> = stored_objects(&stack).into_iter().map(|o| o.0).collect();

    // …then a checkout with the current lock (itoa 1.0.19) misses its exact key and
    // falls back to it.
    let new = checkout(&tmp.path().join("new"));
    let restored = bmat_rust(&stack, &new, &["restore"], &[]);
    assert_eq!(restored.outcome(), "hit", "{restored:?}");
    let json = restored.json();
    assert_ne!(
        json["matched_key"], json["key"],
        "expected a fallback hit: {json}"
    );
    // Issue 18, point 4: the fallback says why the exact key missed.
    let why = "Cargo.lock: itoa 1.0.15 → 1.0.19";
    assert_eq!(json["explain"], serde_json::json!([why]), "{json}");
    assert!(
        restored
            .stderr
            .contains(&format!("the restored cache's key differs in: {why}")),
        "{restored:?}"
    );
    let units = cargo_build(&new, &[], &[]);
    let rebuilt: Vec<&str> = units
        .iter()
        .filter(|u| u.third_party() && !u.fresh)
        .map(|u| u.package_id.as_str())
        .collect();
    assert!(
        rebuilt.len() == 1 && rebuilt[0].contains("itoa@1.0.19"),
        "only itoa should be rebuilt: {rebuilt:?}"
    );

    // The save after the partial hit has the new itoa, and nothing of the old one.
    let saved = bmat_rust(&stack, &new, &["save"], &[]);
    assert_eq!(saved.outcome(), "saved", "{saved:?}");
    let new_object: Vec<String> = stored_objects(&stack)
        .into_iter()
        .map(|o| o.0)
        .filter(|o| !old_objects.contains(o))
        .collect();
    assert_eq!(new_object.len(), 1, "{new_object:?}");
    let tar_bytes = cache_tar(&stack, &new_object[0]);
    let itoa_units: BTreeSet<String> = tar_names(&tar_bytes)
        .into_iter()
        .filter_map(|n| {
            let unit = n.strip_prefix("debug/.fingerprint/")?.split('/').next()?;
            unit.starts_with("itoa-").then(|| unit.to_string())
        })
        .collect();
    assert_eq!(
        itoa_units.len(),
        1,
        "exactly one itoa unit expected: {itoa_units:?}"
    );
    let mut tar = tar::Archive::new(&tar_bytes[..]);
    let mut dep_infos_read = 0;
    for entry in tar.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if name.contains("deps/itoa-") && name.ends_with(".d") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).expect("read .d");
            assert!(text.contains("itoa-1.0.19/"), "{name}: {text}");
            assert!(!text.contains("itoa-1.0.15/"), "{name}: {text}");
            dep_infos_read += 1;
        }
    }
    assert_eq!(
        dep_infos_read, 1,
        "the archive should hold itoa's dep-info once"
    );
    // From Cargo's home too, only what the new lock uses.
    let crates: Vec<String> = tar_names(&tar_bytes)
        .into_iter()
        .filter(|n| n.contains("/itoa-") && n.ends_with(".crate"))
        .collect();
    assert!(
        crates.len() == 1 && crates[0].ends_with("/itoa-1.0.19.crate"),
        "{crates:?}"
    );
}

#[test]
fn target_triple_layout_and_a_target_dir_outside_the_tree_are_found() {
    let stack = Stack::start().expect("stack");
    let tmp = tempfile::tempdir().expect("tempdir");
    let host = {
        let out = Command::new("rustc").arg("-vV").output().expect("rustc");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
            .expect("host")
    };
    let outside_a = tmp.path().join("elsewhere-a");
    let first = checkout(&tmp.path().join("first"));
    let target_a = outside_a.to_string_lossy().into_owned();
    cargo_build(
        &first,
        &["--target", &host],
        &[("CARGO_TARGET_DIR", &target_a)],
    );
    assert!(outside_a.join(&host).join("debug/.fingerprint").is_dir());
    let saved = bmat_rust(
        &stack,
        &first,
        &["save"],
        &[("CARGO_TARGET_DIR", &target_a)],
    );
    assert_eq!(saved.outcome(), "saved", "{saved:?}");
    let names = tar_names(&cache_tar(&stack, &stored_objects(&stack)[0].0));
    assert!(
        names
            .iter()
            .any(|n| n.starts_with(&format!("{host}/debug/deps/liblibc-"))),
        "{names:?}"
    );
    // Build scripts and proc-macros are built for the host, in the plain profile dir.
    assert!(
        names.iter().any(|n| n.starts_with("debug/build/paste-")),
        "{names:?}"
    );

    let outside_b = tmp.path().join("elsewhere-b");
    let target_b = outside_b.to_string_lossy().into_owned();
    let second = checkout(&tmp.path().join("second"));
    let restored = bmat_rust(
        &stack,
        &second,
        &["restore"],
        &[("CARGO_TARGET_DIR", &target_b)],
    );
    assert_eq!(restored.outcome(), "hit", "{restored:?}");
    assert!(
        !second.join("target").exists(),
        "restored into the tree instead of CARGO_TARGET_DIR"
    );
    let units = cargo_build(
        &second,
        &["--target", &host],
        &[("CARGO_TARGET_DIR", &target_b)],
    );
    assert_only_workspace_compiled(&units, "with --target and an outside CARGO_TARGET_DIR");
}

#[test]
fn missing_manifest_is_a_usage_error_and_missing_cargo_fails_open() {
    let stack = Stack::start().expect("stack");
    let tmp = tempfile::tempdir().expect("tempdir");

    // Not a Cargo directory: usage error, exit 2, the message names the manifest.
    for args in [&["save"][..], &["restore"][..], &["key"][..]] {
        let result = bmat_rust(&stack, tmp.path(), args, &[]);
        assert_eq!(result.code, 2, "{args:?}: {result:?}");
        assert!(result.stderr.contains("Cargo.toml"), "{result:?}");
    }
    let named = bmat_rust(
        &stack,
        tmp.path(),
        &["save", "--manifest-path", "nope/Cargo.toml"],
        &[],
    );
    assert_eq!(named.code, 2, "{named:?}");
    assert!(named.stderr.contains("nope/Cargo.toml"), "{named:?}");

    // cargo not on PATH: an infrastructure problem. Fail open, or exit 1 when strict.
    let dir = checkout(&tmp.path().join("ws"));
    let empty_path = tmp.path().join("empty-bin");
    fs::create_dir_all(&empty_path).expect("mkdir");
    let no_cargo = |strict: bool| {
        let mut cmd = bmat(&stack);
        cmd.env("PATH", &empty_path)
            .env_remove("CARGO")
            .env_remove("RUSTC");
        let mut args = vec!["--json", "cache", "rust", "restore"];
        if strict {
            args.insert(0, "--strict");
        }
        run(cmd, &dir, &args, b"")
    };
    let lenient = no_cargo(false);
    assert_eq!(lenient.code, 0, "{lenient:?}");
    assert_eq!(lenient.warnings().len(), 1, "{lenient:?}");
    assert_eq!(lenient.outcome(), "failed", "{lenient:?}");
    let strict = no_cargo(true);
    assert_eq!(strict.code, 1, "{strict:?}");
}

/// Issue 18, point 5: what a build reads that Cargo does not see (sqlx's `.sqlx/`, a
/// variable) goes into the key when declared, by content: another checkout of the same
/// files keys the same, through the flags or their environment twins; a typo is a
/// usage error. The host's C library is part of the key and shown.
#[test]
fn declared_inputs_and_the_host_c_library_are_in_the_key() {
    let stack = Stack::start().expect("stack");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (one, two) = (
        checkout(&tmp.path().join("one")),
        checkout(&tmp.path().join("two")),
    );
    for dir in [&one, &two] {
        fs::create_dir_all(dir.join(".sqlx")).expect("mkdir");
        fs::write(dir.join(".sqlx/query-1.json"), "{}").expect("write");
    }
    let key = |dir: &Path, args: &[&str], env: &[(&str, &str)]| -> Run {
        let mut cmd = bmat(&stack);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut all = vec!["cache", "rust", "key"];
        all.extend_from_slice(args);
        run(cmd, dir, &all, b"")
    };
    let first_line = |r: &Run| {
        assert_eq!(r.code, 0, "{r:?}");
        r.stdout.lines().next().unwrap_or_default().to_owned()
    };
    let plain = key(&one, &[], &[]);
    assert!(plain.stdout.contains("host C library: glibc "), "{plain:?}");
    let declared = ["--key-input", ".sqlx", "--key-env", "SQLX_OFFLINE"];
    let a = key(&one, &declared, &[]);
    assert!(
        a.stdout.contains("key input: .sqlx (1 files")
            && a.stdout.contains("key env: SQLX_OFFLINE (unset)"),
        "{a:?}"
    );
    assert_ne!(first_line(&a), first_line(&plain));
    let twins = [
        ("BMAT_RUST_KEY_INPUTS", ".sqlx"),
        ("BMAT_RUST_KEY_ENV", "SQLX_OFFLINE"),
    ];
    assert_eq!(first_line(&key(&two, &[], &twins)), first_line(&a));

    fs::write(two.join(".sqlx/query-1.json"), "{\"changed\": 1}").expect("write");
    assert_ne!(first_line(&key(&two, &declared, &[])), first_line(&a));
    let set = key(&one, &declared, &[("SQLX_OFFLINE", "s3cr3t-value")]);
    assert_ne!(first_line(&set), first_line(&a));
    assert!(
        !set.stdout.contains("s3cr3t"),
        "the value was shown: {set:?}"
    );

    let typo = key(&one, &["--key-input", ".sqlxx"], &[]);
    assert_eq!(typo.code, 2, "{typo:?}");
    assert!(typo.stderr.contains("key input .sqlxx"), "{typo:?}");
}

/// What the fixture's binary prints.
fn app_stdout(dir: &Path) -> String {
    let out = Command::new(dir.join("target/debug/fixture-app"))
        .output()
        .expect("the app runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the fixture's binary prints, its pid left out.
fn run_app(dir: &Path) -> String {
    let text = app_stdout(dir);
    text.split("pid ").next().unwrap_or_default().to_owned()
}

/// The members compiled again (not fresh) by a build.
fn members_rebuilt(units: &[Unit]) -> Vec<String> {
    let mut names: Vec<String> = units
        .iter()
        .filter(|u| !u.third_party() && !u.fresh)
        .map(|u| {
            // `path+file:///…/app#fixture-app@0.1.0` → `fixture-app`
            let tail = u.package_id.rsplit('#').next().unwrap_or_default();
            tail.split('@').next().unwrap_or_default().to_owned()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Issue 18: job A builds and saves; job B, a fresh clone at another path whose
/// files all have new mtimes, restores the dependency cache and the workspace layer
/// and rebuilds exactly the member whose source changed (and runs the changed code);
/// a clone with no change rebuilds nothing; `--deps-only` rebuilds every member.
#[test]
fn the_workspace_layer_rebuilds_only_the_members_whose_sources_changed() {
    let stack = Stack::start().expect("stack");
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = checkout(&tmp.path().join("a"));
    cargo_build(&a, &[], &[]);
    let saved = bmat_rust_layered(&stack, &a, &["save"], &[]);
    assert_eq!(saved.outcome(), "saved", "{saved:?}");
    assert_eq!(saved.json()["workspace"]["outcome"], "saved", "{saved:?}");
    let before = run_app(&a);

    // Job B: one line of the app changed; the core library did not.
    let b = checkout(&tmp.path().join("elsewhere/b"));
    let main_rs = b.join("app/src/main.rs");
    let text = fs::read_to_string(&main_rs).expect("read main.rs");
    fs::write(&main_rs, text.replace("(pid {})", "(changed, pid {})")).expect("edit");
    let restored = bmat_rust_layered(&stack, &b, &["restore"], &[]);
    assert_eq!(restored.outcome(), "hit", "{restored:?}");
    let workspace = &restored.json()["workspace"];
    assert_eq!(workspace["outcome"], "hit", "{restored:?}");
    assert_eq!(workspace["members"], 2, "{workspace}");
    assert_eq!(
        workspace["rebuild"],
        serde_json::json!(["fixture-app"]),
        "{workspace}"
    );
    assert!(
        restored
            .stderr
            .contains("workspace: 1 of 2 members restored fresh, 1 to rebuild (fixture-app)"),
        "{restored:?}"
    );
    // Made at job A's path: rustc will not reuse it here, and bmat says so.
    let a_root = fs::canonicalize(&a).expect("canonical path");
    assert_eq!(
        workspace["incremental_at"],
        a_root.display().to_string(),
        "{workspace}"
    );
    let units = cargo_build(&b, &[], &[]);
    assert_eq!(members_rebuilt(&units), ["fixture-app"], "{units:?}");
    assert!(
        units.iter().filter(|u| u.third_party()).all(|u| u.fresh),
        "{units:?}"
    );
    let after = run_app(&b);
    assert!(
        after.ends_with("(changed, ") && !before.contains("changed"),
        "{after}"
    );

    // Job C: the same commit as A, at yet another path: nothing to compile.
    let c = checkout(&tmp.path().join("c"));
    let restored = bmat_rust_layered(&stack, &c, &["restore"], &[]);
    assert_eq!(
        restored.json()["workspace"]["rebuild"],
        serde_json::json!([]),
        "{restored:?}"
    );
    let incremental: Vec<String> = fs::read_dir(c.join("target/debug/incremental"))
        .expect("the layer brings the members' incremental state")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        incremental.iter().any(|n| n.starts_with("fixture_core-")),
        "{incremental:?}"
    );
    let units = cargo_build(&c, &[], &[]);
    assert_eq!(members_rebuilt(&units), Vec::<String>::new(), "{units:?}");
    assert_eq!(run_app(&c), before);

    // --deps-only: today's behaviour, every member compiled.
    let d = checkout(&tmp.path().join("d"));
    let restored = bmat_rust(&stack, &d, &["restore"], &[]);
    assert!(restored.json().get("workspace").is_none(), "{restored:?}");
    let units = cargo_build(&d, &[], &[]);
    assert_eq!(
        members_rebuilt(&units),
        ["fixture-app", "fixture-core"],
        "{units:?}"
    );
}

/// Moves every mtime under `dir` (sources and build directory) by `secs`, each inode
/// once: a runner whose clock ran ahead.
fn shift_times(dir: &Path, secs: i64) {
    use std::os::unix::fs::MetadataExt;
    let mut seen = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).expect("lstat");
        if meta.is_dir() {
            for entry in fs::read_dir(&path).expect("read_dir") {
                stack.push(entry.expect("entry").path());
            }
        }
        if meta.file_type().is_symlink() || !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        cache::set_mtime(&path, meta.mtime() + secs, meta.mtime_nsec() as u32);
    }
}

/// Issue 18's correctness cases on the fixture: job A's clock an hour ahead (its
/// outputs stamped in the future) and a change in the core library: both members
/// rebuild and the program says what the changed source says; a file changed and
/// changed back is fresh.
#[test]
fn the_workspace_layer_never_runs_stale_code_whatever_the_saving_clock() {
    let stack = Stack::start().expect("stack");
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = checkout(&tmp.path().join("a"));
    cargo_build(&a, &[], &[]);
    shift_times(&a, 3600);
    let saved = bmat_rust_layered(&stack, &a, &["save"], &[]);
    assert_eq!(saved.json()["workspace"]["outcome"], "saved", "{saved:?}");

    // Job B: the core library changed, on a clock an hour behind job A's.
    let b = checkout(&tmp.path().join("b"));
    let lib_rs = b.join("core/src/lib.rs");
    let text = fs::read_to_string(&lib_rs).expect("read lib.rs");
    fs::write(&lib_rs, text.replace("lines\"", "rows\"")).expect("edit");
    let restored = bmat_rust_layered(&stack, &b, &["restore"], &[]);
    let workspace = &restored.json()["workspace"];
    assert_eq!(
        workspace["rebuild"],
        serde_json::json!(["fixture-app", "fixture-core"]),
        "{restored:?}"
    );
    assert!(
        workspace["shifted_seconds"].as_f64().unwrap_or(0.0) > 3000.0,
        "{workspace}"
    );
    let units = cargo_build(&b, &[], &[]);
    assert_eq!(
        members_rebuilt(&units),
        ["fixture-app", "fixture-core"],
        "{units:?}"
    );
    assert!(run_app(&b).ends_with("2 rows ("), "{}", run_app(&b));

    // Job C: a file changed and changed back (same content, a new mtime): fresh.
    let c = checkout(&tmp.path().join("c"));
    let main_rs = c.join("app/src/main.rs");
    let text = fs::read_to_string(&main_rs).expect("read main.rs");
    fs::write(&main_rs, "fn main() {}").expect("edit");
    fs::write(&main_rs, &text).expect("edit back");
    let restored = bmat_rust_layered(&stack, &c, &["restore"], &[]);
    assert_eq!(
        restored.json()["workspace"]["rebuild"],
        serde_json::json!([]),
        "{restored:?}"
    );
    let units = cargo_build(&c, &[], &[]);
    assert_eq!(members_rebuilt(&units), Vec::<String>::new(), "{units:?}");
}

/// A build script WITHOUT `rerun-if-changed`, which lists its package's `data/`: Cargo
/// runs it again when its package's newest mtime (and that file's path) is not the one
/// recorded, an equality test.
const LISTS_ITS_DATA: &str = r#"fn main() {
    let mut files: Vec<String> = std::fs::read_dir("data")
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            format!("{}={}", path.file_name().unwrap().to_string_lossy(), text.trim())
        })
        .collect();
    files.sort();
    println!("cargo:rustc-env=CORE_DATA={}", files.join(","));
}
"#;

/// A build script that reads one file, with `rerun-if-changed` on it.
const READS_ITS_VERSION: &str = r#"fn main() {
    println!("cargo:rerun-if-changed=data/version.txt");
    let v = std::fs::read_to_string("data/version.txt").unwrap();
    println!("cargo:rustc-env=DATA_VERSION={}", v.trim());
}
"#;

/// The app's first line: everything [`with_inputs_cargo_tracks`] adds.
const PRINTS_ALL: &str = r#"fn main() {
    println!(
        "{} {} {:?} loud={} {} {} debug_assertions={}",
        fixture_core::INCLUDED.trim(),
        env!("DATA_VERSION"),
        fixture_core::FLAVOUR,
        fixture_core::LOUD,
        fixture_core::DATA,
        greeting::GREETING,
        cfg!(debug_assertions),
    );"#;

/// What the app built by [`with_inputs_cargo_tracks`] says first.
const SAYS: &str =
    "included-1 version-1 None loud=false a.txt=1,b.txt=2 hello debug_assertions=true";

/// Turns a checkout of the fixture into one that reads what Cargo tracks besides the
/// members' `.rs` files, and whose app prints all of it ([`SAYS`]). The core library:
/// a file through `include_str!`, a variable through `option_env!`, a feature, and a
/// build script without `rerun-if-changed` ([`LISTS_ITS_DATA`]). The app: a module,
/// the profile's `debug_assertions`, and a build script with `rerun-if-changed`
/// ([`READS_ITS_VERSION`]).
fn with_inputs_cargo_tracks(dir: &Path) {
    let core = dir.join("core");
    fs::create_dir_all(core.join("data")).expect("mkdir");
    fs::write(core.join("data/a.txt"), "1\n").expect("write");
    fs::write(core.join("data/b.txt"), "2\n").expect("write");
    // Older than the package's other files (a checkout may give any times): removing
    // it leaves the package's newest mtime as recorded.
    cache::set_mtime(&core.join("data/a.txt"), 1_600_000_000, 0);
    fs::write(core.join("build.rs"), LISTS_ITS_DATA).expect("write build.rs");
    fs::write(core.join("src/include.txt"), "included-1\n").expect("write");
    edit(
        &core.join("Cargo.toml"),
        "[dependencies]",
        "[features]\nloud = []\n\n[dependencies]",
    );
    let lib = core.join("src/lib.rs");
    let text = fs::read_to_string(&lib).expect("read lib.rs");
    fs::write(
        &lib,
        text + "\npub const INCLUDED: &str = include_str!(\"include.txt\");\n\
                pub const DATA: &str = env!(\"CORE_DATA\");\n\
                pub const FLAVOUR: Option<&str> = option_env!(\"FIXTURE_FLAVOUR\");\n\
                pub const LOUD: bool = cfg!(feature = \"loud\");\n",
    )
    .expect("write lib.rs");

    let app = dir.join("app");
    fs::create_dir_all(app.join("data")).expect("mkdir");
    fs::write(app.join("data/version.txt"), "version-1\n").expect("write");
    fs::write(app.join("build.rs"), READS_ITS_VERSION).expect("write build.rs");
    fs::write(
        app.join("src/greeting.rs"),
        "pub const GREETING: &str = \"hello\";\n",
    )
    .expect("write");
    let main = app.join("src/main.rs");
    edit(&main, "fn main() {", PRINTS_ALL);
    edit(&main, "paste::paste!", "mod greeting;\n\npaste::paste!");
}

/// Replaces `from`, which must be there, with `to` in the file at `path`.
fn edit(path: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).expect("read");
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    fs::write(path, text.replacen(from, to, 1)).expect("write");
}

/// The first line the fixture's app prints.
fn first_line_of_app(dir: &Path) -> String {
    app_stdout(dir)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// One job B of [`the_workspace_layer_builds_what_every_change_says`].
struct Case {
    name: &'static str,
    change: fn(&Path),
    /// `cargo build`'s extra arguments and variables.
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    /// How the app's first line differs from [`SAYS`]: (from, to).
    says: &'static [(&'static str, &'static str)],
    /// The members Cargo compiles again: never one the change does not reach.
    rebuilt: &'static [&'static str],
}

const APP: &[&str] = &["fixture-app"];
const BOTH: &[&str] = &["fixture-app", "fixture-core"];

/// Issue 18's correctness cases beyond a changed line: what Cargo tracks besides `.rs`
/// files (`include_str!`, a build script's inputs with and without `rerun-if-changed`,
/// `option_env!`, a feature, a profile setting) and files added, removed and renamed,
/// each in a fresh clone after job A's layer was restored. The program built says what
/// the changed sources say, never the saved ones, and a change to the app alone
/// compiles the app alone (its core library, with a build script without
/// `rerun-if-changed`, stays fresh).
#[test]
fn the_workspace_layer_builds_what_every_change_says() {
    let stack = Stack::start().expect("stack");
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = checkout(&tmp.path().join("a"));
    with_inputs_cargo_tracks(&a);
    // Job A built an hour ago, sources two hours old: job B, now, needs no shift of the
    // recorded times. (A shift, needed when the outputs are less than a second old,
    // runs core's build script again whatever changed, and so rebuilds both members.)
    // The sources are moved before the build: Cargo writes the newest mtime of core's
    // files into the fingerprint of its build script's run.
    shift_times(&a, -7200);
    cargo_build(&a, &[], &[]);
    shift_times(&a.join("target"), -3600);
    assert_eq!(first_line_of_app(&a), SAYS);
    let saved = bmat_rust_layered(&stack, &a, &["save"], &[]);
    assert_eq!(saved.json()["workspace"]["outcome"], "saved", "{saved:?}");

    let none = Case {
        name: "",
        change: |_| {},
        args: &[],
        env: &[],
        says: &[],
        rebuilt: BOTH,
    };
    let cases = [
        Case {
            name: "include",
            change: |d| fs::write(d.join("core/src/include.txt"), "included-2\n").expect("write"),
            says: &[("included-1", "included-2")],
            ..none
        },
        Case {
            name: "include-renamed",
            change: |d| {
                let src = d.join("core/src");
                fs::rename(src.join("include.txt"), src.join("renamed.txt")).expect("mv");
                edit(&src.join("lib.rs"), "\"include.txt\"", "\"renamed.txt\"");
            },
            ..none
        },
        Case {
            name: "variable",
            env: &[("FIXTURE_FLAVOUR", "blue")],
            says: &[("None", "Some(\"blue\")")],
            ..none
        },
        Case {
            name: "feature",
            args: &["--features", "fixture-core/loud"],
            says: &[("loud=false", "loud=true")],
            ..none
        },
        Case {
            name: "profile",
            env: &[("CARGO_PROFILE_DEV_DEBUG_ASSERTIONS", "false")],
            says: &[("debug_assertions=true", "debug_assertions=false")],
            ..none
        },
        Case {
            name: "no-rerun-if-changed",
            change: |d| fs::write(d.join("core/data/b.txt"), "3\n").expect("write"),
            says: &[("b.txt=2", "b.txt=3")],
            ..none
        },
        Case {
            name: "removed",
            change: |d| fs::remove_file(d.join("core/data/a.txt")).expect("rm"),
            says: &[("a.txt=1,", "")],
            ..none
        },
        Case {
            name: "renamed",
            change: |d| {
                let data = d.join("core/data");
                fs::rename(data.join("b.txt"), data.join("c.txt")).expect("mv");
            },
            says: &[("b.txt", "c.txt")],
            ..none
        },
        Case {
            name: "build-input",
            change: |d| fs::write(d.join("app/data/version.txt"), "version-2\n").expect("write"),
            says: &[("version-1", "version-2")],
            rebuilt: APP,
            ..none
        },
        Case {
            name: "module-added",
            change: |d| {
                fs::write(
                    d.join("app/src/more.rs"),
                    "pub const MORE: &str = \"more\";\n",
                )
                .expect("write");
                let main = d.join("app/src/main.rs");
                edit(&main, "mod greeting;", "mod greeting;\nmod more;");
                edit(&main, "greeting::GREETING", "more::MORE");
            },
            says: &[("hello", "more")],
            rebuilt: APP,
            ..none
        },
        Case {
            name: "module-removed",
            change: |d| {
                fs::remove_file(d.join("app/src/greeting.rs")).expect("rm");
                let main = d.join("app/src/main.rs");
                edit(&main, "mod greeting;", "");
                edit(&main, "greeting::GREETING", "\"bye\"");
            },
            says: &[("hello", "bye")],
            rebuilt: APP,
            ..none
        },
    ];
    // Every case is run and the wrong ones listed together.
    let mut wrong = Vec::new();
    for case in &cases {
        let b = checkout(&tmp.path().join(case.name));
        with_inputs_cargo_tracks(&b);
        (case.change)(&b);
        let restored = bmat_rust_layered(&stack, &b, &["restore"], &[]);
        assert_eq!(
            restored.json()["workspace"]["outcome"],
            "hit",
            "{}: {restored:?}",
            case.name
        );
        let units = cargo_build(&b, case.args, case.env);
        let says = case
            .says
            .iter()
            .fold(SAYS.to_owned(), |line, (from, to)| line.replace(from, to));
        let (said, rebuilt) = (first_line_of_app(&b), members_rebuilt(&units));
        if said != says || rebuilt != case.rebuilt {
            wrong.push(format!(
                "{}: said {said:?} and rebuilt {rebuilt:?}, not {says:?} and {:?}",
                case.name, case.rebuilt
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `bmat --json job end --status 0` in `dir`.
fn job_end(stack: &Stack, dir: &Path) -> Run {
    let r = run(
        bmat(stack),
        dir,
        &["--json", "job", "end", "--status", "0"],
        b"",
    );
    eprintln!("job end in {}:\n{}", dir.display(), r.stderr);
    r
}

/// Issue 20: the one-line form for Rust. Job A's `restore --save-at-end` queues the
/// save, which `job end` runs and which records job A's build time with the cache; job
/// B restores it and its summary estimates the build time the cache saved it.
#[test]
fn a_deferred_rust_save_records_its_build_time_and_the_next_job_is_told_what_it_saved() {
    let stack = Stack::start().expect("stack");
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = checkout(&tmp.path().join("a"));
    let restored = bmat_rust_layered(&stack, &a, &["restore", "--save-at-end"], &[]);
    assert_eq!(restored.outcome(), "miss", "{restored:?}");
    cargo_build(&a, &[], &[]);
    let end = job_end(&stack, &a);
    assert!(end.stderr.contains("job end: 1/1 done"), "{end:?}");
    let steps: serde_json::Value = serde_json::from_str(end.stdout.trim()).expect("JSON");
    let save = &steps["steps"][1];
    assert_eq!(
        (save["command"].as_str(), save["outcome"].as_str()),
        (Some("rust save"), Some("saved")),
        "{steps}"
    );
    let built_a = save["build_seconds"].as_f64().expect("job A's build time");

    let b = checkout(&tmp.path().join("b"));
    let restored = bmat_rust_layered(&stack, &b, &["restore", "--save-at-end"], &[]);
    assert_eq!(restored.outcome(), "hit", "{restored:?}");
    let recorded = restored.json()["cache_build_seconds"]
        .as_f64()
        .expect("the cache's build time");
    assert!((recorded - built_a).abs() < 1.0, "{recorded} vs {built_a}");
    cargo_build(&b, &[], &[]);
    let end = job_end(&stack, &b);
    let json: serde_json::Value = serde_json::from_str(end.stdout.trim()).expect("JSON");
    assert!(json["rust_saved_seconds"].is_number(), "{json}");
    assert!(
        end.stderr.contains("rust: the cache's job built for"),
        "{end:?}"
    );
}
