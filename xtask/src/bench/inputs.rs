//! The inputs of the benchmark, generated once under `target/bench/inputs/` and reused
//! by later runs (a marker file records that an input is complete):
//! - `rust-target`: a real Cargo target directory: a copy of bmat's release build
//!   (`release/{deps,build,.fingerprint}`, ~100 crates.io packages), which the
//!   benchmark makes anyway. `--quick` builds the small fixture workspace of
//!   `testdata/rust-fixture` instead.
//! - `source-tree`: source-like text files in nested directories, from a fixed seed:
//!   10,000 files / 512 MiB (`--large`: 20,000 / 1 GiB; `--quick`: 2,000 / 100 MiB).
//! - `random`: one file of random bytes, 512 MiB (`--large`: 1 GiB; `--quick`:
//!   100 MiB).
//! - `many-files`: the same kind of text in many small files: 100,000 files / 256 MiB
//!   (`--large`: 200,000 / 512 MiB; `--quick`: 20,000 / 50 MiB), for the memory and
//!   time that go with each entry.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use rand::{Rng, RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::stack::bins;

const MIB: u64 = 1 << 20;
const MARKER: &str = ".bench-input.json";

/// One input: the paths a job would list, relative to `root`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Input {
    pub name: String,
    pub description: String,
    #[serde(skip)]
    pub root: PathBuf,
    pub paths: Vec<String>,
    /// Regular files and symlinks under `paths`.
    pub files: u64,
    /// Bytes of the regular files.
    pub bytes: u64,
}

/// The sizes of the generated inputs.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub source_files: u64,
    pub source_bytes: u64,
    pub random_bytes: u64,
    pub many_files: u64,
    pub many_bytes: u64,
    /// Build the fixture instead of the workspace.
    pub small_rust: bool,
}

impl Sizes {
    /// The default: half of issue 5's sizes, so that a run from a clean clone (builds
    /// included) stays within 15 minutes on 2 cores.
    pub fn default_run() -> Sizes {
        Sizes {
            source_files: 10_000,
            source_bytes: 512 * MIB,
            random_bytes: 512 * MIB,
            many_files: 100_000,
            many_bytes: 256 * MIB,
            small_rust: false,
        }
    }

    /// Issue 5's sizes.
    pub fn large() -> Sizes {
        Sizes {
            source_files: 20_000,
            source_bytes: 1024 * MIB,
            random_bytes: 1024 * MIB,
            many_files: 200_000,
            many_bytes: 512 * MIB,
            small_rust: false,
        }
    }

    pub fn quick() -> Sizes {
        Sizes {
            source_files: 2_000,
            source_bytes: 100 * MIB,
            random_bytes: 100 * MIB,
            many_files: 20_000,
            many_bytes: 50 * MIB,
            small_rust: true,
        }
    }
}

pub const NAMES: [&str; 4] = ["rust-target", "source-tree", "random", "many-files"];

/// Makes (or finds) the inputs named in `only` (all when empty), in `dir`.
/// `target` is the workspace's target directory (its `release/` holds bmat's build).
pub fn prepare(dir: &Path, target: &Path, sizes: Sizes, only: &[String]) -> Result<Vec<Input>> {
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let mut inputs = Vec::new();
    if wanted("rust-target") {
        inputs.push(rust_target(dir, target, sizes.small_rust)?);
    }
    if wanted("source-tree") {
        inputs.push(source_tree(
            "source-tree",
            dir,
            sizes.source_files,
            sizes.source_bytes,
        )?);
    }
    if wanted("random") {
        inputs.push(random(dir, sizes.random_bytes)?);
    }
    if wanted("many-files") {
        inputs.push(source_tree(
            "many-files",
            dir,
            sizes.many_files,
            sizes.many_bytes,
        )?);
    }
    Ok(inputs)
}

/// The input at `root` if a previous run completed it.
fn existing(root: &Path) -> Option<Input> {
    let text = fs::read_to_string(root.join(MARKER)).ok()?;
    let mut input: Input = serde_json::from_str(&text).ok()?;
    input.root = root.to_owned();
    Some(input)
}

/// Counts what `paths` hold and writes the marker that makes the input reusable.
fn finish(name: &str, description: String, root: &Path, paths: Vec<String>) -> Result<Input> {
    let (mut files, mut bytes) = (0, 0);
    for p in &paths {
        let (f, b) = count(&root.join(p))?;
        files += f;
        bytes += b;
    }
    let input = Input {
        name: name.to_owned(),
        description,
        root: root.to_owned(),
        paths,
        files,
        bytes,
    };
    fs::write(root.join(MARKER), serde_json::to_string_pretty(&input)?)?;
    Ok(input)
}

fn rust_target(dir: &Path, target: &Path, small: bool) -> Result<Input> {
    let name = "rust-target";
    let root = dir.join(if small {
        "rust-target-fixture"
    } else {
        "rust-target"
    });
    if let Some(input) = existing(&root) {
        return Ok(input);
    }
    let _ = fs::remove_dir_all(&root);
    let (description, paths) = if small {
        build_fixture(dir, &root)?;
        (
            "Cargo target dir of testdata/rust-fixture: debug/{deps,build,.fingerprint}",
            ["debug/deps", "debug/build", "debug/.fingerprint"],
        )
    } else {
        // bmat's release build, which the benchmark has just made: a real target dir
        // of ~100 crates.io packages, for free (a dedicated build would take longer
        // than the whole benchmark may). Copied, so later builds do not change it.
        say(&format!(
            "copying {}/release/{{deps,build,.fingerprint}} into {}",
            target.display(),
            root.display()
        ));
        for sub in ["deps", "build", ".fingerprint"] {
            let to = root.join("release").join(sub);
            fs::create_dir_all(to.parent().unwrap_or(&root))?;
            let status = Command::new("cp")
                .arg("-a")
                .arg(target.join("release").join(sub))
                .arg(&to)
                .status()
                .context("cannot run cp")?;
            if !status.success() {
                bail!("copying the release build failed: {status}");
            }
        }
        (
            "Cargo target dir of bmat's release build: release/{deps,build,.fingerprint}",
            ["release/deps", "release/build", "release/.fingerprint"],
        )
    };
    finish(
        name,
        description.to_owned(),
        &root,
        paths.map(String::from).to_vec(),
    )
}

/// Builds the fixture workspace (copied out of the repository) with `root` as its
/// target directory.
fn build_fixture(dir: &Path, root: &Path) -> Result<()> {
    let src = tempfile::Builder::new()
        .prefix("bmat-bench-src-")
        .tempdir()?;
    crate::copy::copy_tree(
        &bins::workspace_root().join("testdata/rust-fixture"),
        src.path(),
    )?;
    let log = dir.join("rust-target-build.log");
    say(&format!(
        "building testdata/rust-fixture into {} (once; log {})",
        root.display(),
        log.display()
    ));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--workspace", "--locked"])
        .current_dir(src.path())
        .env("CARGO_TARGET_DIR", root)
        .env_remove("RUSTFLAGS")
        .stdout(fs::File::create(&log)?)
        .stderr(fs::File::options().append(true).open(&log)?)
        .status()
        .context("cannot run cargo build")?;
    if !status.success() {
        bail!(
            "building the rust-target input failed ({status}); see {}",
            log.display()
        );
    }
    Ok(())
}

fn source_tree(name: &str, dir: &Path, files: u64, bytes: u64) -> Result<Input> {
    let root = dir.join(format!("{name}-{files}"));
    if let Some(input) = existing(&root) {
        return Ok(input);
    }
    say(&format!(
        "generating {files} source-like files, {} MiB, in {}",
        bytes / MIB,
        root.display()
    ));
    let _ = fs::remove_dir_all(&root);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_50c3);
    let pool = line_pool(&mut rng, 200_000);
    // Sizes: log-uniform between 512 B and 256 KiB, then scaled to the total.
    let raw: Vec<f64> = (0..files)
        .map(|_| (512f64).ln() + rng.random::<f64>() * (512f64).ln())
        .map(f64::exp)
        .collect();
    let scale = bytes as f64 / raw.iter().sum::<f64>();
    for (n, size) in raw.iter().enumerate() {
        let size = (size * scale) as usize;
        let sub = match rng.random_range(0..4) {
            0 => format!("crate-{:02}/src", n % 50),
            _ => format!(
                "crate-{:02}/src/mod{}/part{}",
                n % 50,
                rng.random_range(0..8),
                rng.random_range(0..6)
            ),
        };
        let dir = root.join("src").join(sub);
        fs::create_dir_all(&dir)?;
        let path = dir.join(format!("file_{n:05}.rs"));
        let mut out = BufWriter::with_capacity(
            256 << 10,
            fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?,
        );
        writeln!(out, "// generated file {n}\nuse crate::prelude::*;\n")?;
        let mut written = 0;
        while written < size {
            let line = &pool[rng.random_range(0..pool.len())];
            out.write_all(line.as_bytes())?;
            written += line.len();
        }
        out.flush()?;
    }
    finish(
        name,
        format!("{files} source-like text files in nested directories"),
        &root,
        vec!["src".to_owned()],
    )
}

/// Lines of Rust-looking text. Many more than fit in zstd's window, so that the
/// tree compresses like real source rather than like one repeated file.
fn line_pool(rng: &mut impl Rng, lines: usize) -> Vec<String> {
    const WORDS: &[&str] = &[
        "fn", "let", "mut", "pub", "struct", "impl", "match", "if", "else", "return", "for",
        "while", "use", "self", "Self", "Some", "None", "Ok", "Err", "async", "await", "const",
        "where", "trait", "enum", "type", "as", "in", "loop", "move", "ref", "&", "=", "==", "->",
        "=>", "::", "+", "-", "*", "<", ">", "(", ")", "{", "}", ";", ",", ".", "?",
    ];
    const SYLLABLES: &[&str] = &[
        "buf", "len", "idx", "map", "key", "val", "node", "tree", "item", "iter", "state", "conf",
        "path", "file", "read", "write", "parse", "token", "span", "ctx", "err", "res", "hash",
        "size", "count", "next", "prev", "data", "meta", "name", "list", "entry",
    ];
    let idents: Vec<String> = (0..3000)
        .map(|_| {
            let parts = rng.random_range(1..4);
            let mut s = String::new();
            for i in 0..parts {
                if i > 0 {
                    s.push('_');
                }
                s.push_str(SYLLABLES[rng.random_range(0..SYLLABLES.len())]);
            }
            s
        })
        .collect();
    (0..lines)
        .map(|_| {
            let mut line = " ".repeat(4 * rng.random_range(0..5));
            if rng.random_range(0..8) == 0 {
                line.push_str("// ");
                for _ in 0..rng.random_range(3..12) {
                    line.push_str(&idents[rng.random_range(0..idents.len())]);
                    line.push(' ');
                }
            } else {
                for _ in 0..rng.random_range(2..10) {
                    match rng.random_range(0..10) {
                        0..4 => line.push_str(WORDS[rng.random_range(0..WORDS.len())]),
                        4 => line.push_str(&rng.random_range(0..100_000u32).to_string()),
                        _ => line.push_str(&idents[rng.random_range(0..idents.len())]),
                    }
                    line.push(' ');
                }
            }
            line.push('\n');
            line
        })
        .collect()
}

fn random(dir: &Path, bytes: u64) -> Result<Input> {
    let name = "random";
    let root = dir.join(format!("random-{}m", bytes / MIB));
    if let Some(input) = existing(&root) {
        return Ok(input);
    }
    say(&format!(
        "generating {} MiB of random bytes in {}",
        bytes / MIB,
        root.display()
    ));
    fs::create_dir_all(&root)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x7a4d_0001);
    let mut out = fs::File::create(root.join("random.bin"))?;
    let mut buf = vec![0u8; 4 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.sync_all()?;
    finish(
        name,
        format!("one file of {} MiB of random bytes", bytes / MIB),
        &root,
        vec!["random.bin".to_owned()],
    )
}

/// (regular files + symlinks, bytes of regular files) under `path`.
pub fn count(path: &Path) -> Result<(u64, u64)> {
    let meta =
        fs::symlink_metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    if meta.is_dir() {
        let (mut files, mut bytes) = (0, 0);
        for entry in fs::read_dir(path)? {
            let (f, b) = count(&entry?.path())?;
            files += f;
            bytes += b;
        }
        Ok((files, bytes))
    } else if meta.is_file() {
        Ok((1, meta.len()))
    } else {
        Ok((1, 0))
    }
}

fn say(line: &str) {
    eprintln!("bench: {line}");
}
