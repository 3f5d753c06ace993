//! `cargo xtask demo`: the main job end to end on the local stack.
//!
//! Builds the binaries, starts the stack (S3, signer, agent-shim), makes a sample
//! build tree (a `target/`-like directory of a few thousand files, generated from a
//! fixed seed, plus the sources in `testdata/`), then runs what a job runs:
//!
//! ```text
//! find target testdata \( -type f -o -type l \) | bmat cache save KEY
//! bmat cache restore KEY                      # in an empty checkout
//! ```
//!
//! checks the restored tree against the original (path, type, size, mode, mtime,
//! SHA-256 of every entry), shows a skipped save and a fallback restore, then runs the
//! Rust job (`bmat cache rust restore --save-at-end; cargo build; bmat job end`) twice on
//! fresh checkouts of `testdata/rust-fixture`, each with its own empty Cargo home (the
//! second builds offline), prints the timings and tears down.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bmat::trees::manifest::{Manifest, Options};
use rand::{Rng, RngCore, SeedableRng};

use crate::copy::copy_tree;
use crate::stack::{Stack, bins};

pub fn run() -> Result<()> {
    let started = Instant::now();
    say("checking for Garage, the local stack's S3 server");
    crate::garage_install::ensure_for_stack()?;
    say("building the binaries (cargo build --workspace --bins)");
    build_binaries()?;
    let bmat_bin = bins::workspace_bin("bmat")?;

    say("starting the local stack: S3 (Garage), signer, agent-shim");
    let t = Instant::now();
    let stack = Stack::start()?;
    say(&format!(
        "stack ready in {:.1} s",
        t.elapsed().as_secs_f64()
    ));

    let work = tempfile::Builder::new().prefix("bmat-demo-").tempdir()?;
    let job = work.path().join("job");
    let fresh = work.path().join("fresh-checkout");
    fs::create_dir_all(&job)?;
    fs::create_dir_all(&fresh)?;
    let (files, bytes) = sample_tree(&job)?;
    say(&format!(
        "sample tree in {}: {files} files, {:.0} MiB (target/ and testdata/)",
        job.display(),
        bytes as f64 / (1 << 20) as f64
    ));
    let options = Options {
        dir_mtimes: false,
        symlink_mtimes: true,
    };
    let original = Manifest::of(&job, options, |_| false)?;

    let key = format!("demo-{}", rand::random::<u32>());
    let list = r"find target testdata \( -type f -o -type l \)";
    let socket = &stack.env().agent_socket;
    let bmat = |dir: &Path, script: &str| -> Result<()> {
        say(&format!("$ {script}"));
        let status = Command::new("sh")
            .arg("-c")
            .arg(script.replace("bmat ", "\"$BMAT\" "))
            .current_dir(dir)
            .env("BMAT", &bmat_bin)
            .env("BMAT_AGENT_SOCKET", socket)
            .env_remove("BMAT_SIGNER_URL")
            .env_remove("BMAT_TOKEN")
            // Each checkout builds into its own target/, as on a fresh CI machine.
            .env_remove("CARGO_TARGET_DIR")
            .stdin(Stdio::null())
            .status()
            .context("cannot run sh")?;
        if !status.success() {
            bail!("`{script}` failed: {status}");
        }
        Ok(())
    };

    bmat(&job, &format!("{list} | bmat cache save {key}"))?;
    bmat(&job, &format!("{list} | bmat cache save {key}"))?;
    bmat(&fresh, &format!("bmat cache restore {key}"))?;
    let restored = Manifest::of(&fresh, options, |_| false)?;
    let diff = original.diff(&restored);
    if !diff.is_empty() {
        bail!(
            "the restored tree differs from the original: {} differences, e.g. {}",
            diff.len(),
            diff[0]
        );
    }
    say(&format!(
        "verified: the restored tree matches the original ({} entries: path, type, size, mode, mtime, SHA-256)",
        original.entries.len()
    ));
    let other = work.path().join("other-branch");
    fs::create_dir_all(&other)?;
    bmat(
        &other,
        &format!("bmat cache restore demo-other-branch --fallback {key}"),
    )?;
    bmat(&other, "bmat --json cache restore no-such-key")?;

    // The Rust job, as on fresh CI runners: each run has its own checkout and its own
    // empty Cargo home at another path. The first run downloads and builds everything
    // and saves; the next restores, builds offline and compiles only its own crates.
    let fixture = job.join("testdata/rust-fixture");
    for (checkout, run, build) in [
        ("rust-first-run", "first", "cargo build --locked"),
        ("rust-next-run", "next", "cargo build --locked --offline"),
    ] {
        let dir = work.path().join(checkout);
        copy_tree(&fixture, &dir)?;
        let home = work.path().join(format!("{checkout}-cargo-home"));
        say(&format!(
            "Rust job, {run} run, in a fresh checkout of testdata/rust-fixture, CARGO_HOME={}",
            home.display()
        ));
        let in_home = |script: &str| format!("CARGO_HOME='{}' {script}", home.display());
        let t = Instant::now();
        // The one-line form: the restore queues the save, which the job's end runs
        // (as a job wrapper would: after the script, with its status).
        bmat(&dir, &in_home("bmat cache rust restore --save-at-end"))?;
        bmat(
            &dir,
            &in_home(&format!(
                "{build}; status=$?; bmat job end --status $status; exit $status"
            )),
        )?;
        say(&format!(
            "Rust job, {run} run: {:.1} s",
            t.elapsed().as_secs_f64()
        ));
    }

    drop(stack);
    say(&format!(
        "done in {:.1} s; the stack is stopped",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn say(line: &str) {
    eprintln!("demo: {line}");
}

fn build_binaries() -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--workspace", "--bins"])
        .current_dir(bins::workspace_root())
        .status()
        .context("cannot run cargo build")?;
    if !status.success() {
        bail!("cargo build --workspace --bins failed: {status}");
    }
    Ok(())
}

/// A build-like tree: `target/debug/{deps,build,.fingerprint}` with rlibs of random
/// and of repetitive bytes, small fingerprint files, executables, a symlink or two;
/// plus a copy of the repository's `testdata/`. Fixed seed: the same tree every run.
/// Returns (files, bytes).
fn sample_tree(job: &Path) -> Result<(u64, u64)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x626d_6174);
    let (mut files, mut bytes) = (0u64, 0u64);
    let debug = job.join("target/debug");
    for crate_no in 0..120 {
        let name = format!("crate{crate_no:03}");
        let hash: String = (0..16)
            .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
            .collect();
        let deps = debug.join("deps");
        let fp = debug.join(format!(".fingerprint/{name}-{hash}"));
        let build = debug.join(format!("build/{name}-{hash}"));
        for dir in [&deps, &fp] {
            fs::create_dir_all(dir)?;
        }
        // rlib: half random (code), half repetitive (metadata), 16 KiB to 1 MiB.
        let size = rng.random_range(16 << 10..1 << 20);
        let mut data = vec![0u8; size];
        rng.fill_bytes(&mut data[..size / 2]);
        for (i, b) in data[size / 2..].iter_mut().enumerate() {
            *b = b"pub fn item_0123456789() {}\n"[i % 28];
        }
        write(
            &deps.join(format!("lib{name}-{hash}.rlib")),
            &data,
            0o644,
            &mut files,
            &mut bytes,
        )?;
        write(
            &deps.join(format!("{name}-{hash}.d")),
            format!("{name}: src/lib.rs\n").as_bytes(),
            0o644,
            &mut files,
            &mut bytes,
        )?;
        for f in ["dep-lib", "lib", "lib.json", "invoked.timestamp"] {
            let body = format!("{hash}{f}{}\n", rng.random::<u64>());
            write(&fp.join(f), body.as_bytes(), 0o644, &mut files, &mut bytes)?;
        }
        if crate_no % 10 == 0 {
            fs::create_dir_all(&build)?;
            let script = build.join("build-script-build");
            let mut exe = vec![0u8; 64 << 10];
            rng.fill_bytes(&mut exe);
            write(&script, &exe, 0o755, &mut files, &mut bytes)?;
            symlink(
                "build-script-build",
                build.join(format!("build_script_build-{hash}")),
            )?;
            files += 1;
        }
    }
    let testdata = bins::workspace_root().join("testdata");
    if testdata.is_dir() {
        let (f, b) = copy_tree(&testdata, &job.join("testdata"))?;
        files += f;
        bytes += b;
    }
    Ok((files, bytes))
}

fn write(path: &Path, data: &[u8], mode: u32, files: &mut u64, bytes: &mut u64) -> Result<()> {
    let mut f =
        fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(data)?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    *files += 1;
    *bytes += data.len() as u64;
    Ok(())
}
