//! The measured operations: bmat (A), the actions/cache pipeline (B) and the limits of
//! the machine (C), each on one input. C's decompress-only limit is the second half of
//! B's restore (see [`Ctx::b_restore`]). Every one checks its own result (a restore
//! must give back as many files and bytes as the input has), so that a broken
//! pipeline cannot pass for a fast one.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use bmat_wire::api::Extent;
use serde::Serialize;

use super::inputs::{Input, count};
use super::measure::{Io, Usage, in_process, pipeline, settle};
use super::net::{self, Signer, Sink, Source};

/// Everything the operations need.
pub struct Ctx {
    pub bmat: PathBuf,
    /// The stack's processes, whose CPU time is recorded with every step.
    pub stack_pids: Vec<u32>,
    pub agent_socket: PathBuf,
    pub signer: Signer,
    pub rt: tokio::runtime::Runtime,
    /// Scratch space (restores, temp archives), on the same filesystem as the inputs.
    pub work: PathBuf,
    /// Where the children's stderr goes.
    pub log: PathBuf,
    /// Restored trees set aside so far (see [`Ctx::set_aside`]).
    pub set_aside: std::sync::atomic::AtomicU32,
}

/// One measurement.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    pub wall_s: f64,
    pub cpu_s: f64,
    /// Peak RSS (sum over the processes of a pipeline); 0 when not measured.
    pub max_rss_bytes: u64,
    /// Compressed size, for saves.
    pub archive_bytes: Option<u64>,
    /// CPU time the stack (S3 server, signer, shim) used meanwhile: on one machine,
    /// the server's share of a transfer competes with compression for the cores.
    pub stack_cpu_s: f64,
}

impl Sample {
    fn of(usage: Usage, archive_bytes: Option<u64>) -> Sample {
        Sample {
            wall_s: usage.wall.as_secs_f64(),
            cpu_s: usage.cpu.as_secs_f64(),
            max_rss_bytes: usage.max_rss,
            archive_bytes,
            stack_cpu_s: 0.0,
        }
    }
}

impl Ctx {
    /// Runs a step and records the stack's CPU time meanwhile.
    pub fn with_stack_cpu<T>(
        &self,
        step: impl FnOnce() -> Result<T>,
        sample: impl Fn(&mut T) -> &mut Sample,
    ) -> Result<T> {
        let before = stack_cpu(&self.stack_pids);
        let mut out = step()?;
        sample(&mut out).stack_cpu_s = (stack_cpu(&self.stack_pids) - before).max(0.0);
        Ok(out)
    }

    /// The list of paths given to bmat (stdin) and tar (`-T`).
    pub fn list_file(&self, input: &Input) -> Result<PathBuf> {
        let path = self.work.join(format!("{}.list", input.name));
        fs::write(&path, input.paths.join("\n") + "\n")?;
        Ok(path)
    }

    /// A: `bmat cache save KEY` with the paths on stdin.
    pub fn a_save(&self, input: &Input, key: &str, list: &Path) -> Result<Sample> {
        let (usage, json) = self.bmat(&input.root, &["cache", "save", key], Io::read(list)?)?;
        expect_outcome(&json, "saved", key)?;
        Ok(Sample::of(usage, json["archive_bytes"].as_u64()))
    }

    /// A: the same save again: the key exists, nothing is read.
    pub fn a_skip(&self, input: &Input, key: &str, list: &Path) -> Result<Sample> {
        let (usage, json) = self.bmat(&input.root, &["cache", "save", key], Io::read(list)?)?;
        expect_outcome(&json, "skipped", key)?;
        Ok(Sample::of(usage, None))
    }

    /// A: `bmat cache restore KEY` into an empty directory.
    pub fn a_restore(&self, input: &Input, key: &str) -> Result<Sample> {
        let dest = self.fresh_dir("restore-a")?;
        let (usage, json) = self.bmat(&dest, &["cache", "restore", key], Io::Null)?;
        expect_outcome(&json, "hit", key)?;
        check_restored(input, &dest)?;
        self.set_aside(&dest)?;
        Ok(Sample::of(usage, None))
    }

    /// B: `tar --posix -cf - -T list | zstd -T0 -3` into a temp file, then an upload
    /// in parts, [`net::IN_FLIGHT`] at once, and the completion. Leaves the archive
    /// in [`Ctx::archive_path`] for the C steps.
    pub fn b_save(&self, input: &Input, key: &str, list: &Path) -> Result<Sample> {
        let archive = self.archive_path();
        settle();
        let pack = pipeline(
            vec![tar_create(input, list), zstd_compress()],
            Io::Null,
            Io::create(&archive)?,
            &self.log,
        )?;
        let size = fs::metadata(&archive)?.len();
        let ((), upload) = in_process(|| {
            self.rt.block_on(async {
                let up = self.signer.begin(key, size).await?;
                let file = Arc::new(File::open(&archive)?);
                let hash = {
                    let archive = archive.clone();
                    tokio::task::spawn_blocking(move || net::sha256_file(&archive))
                };
                let parts = net::put_parts(self.signer.http(), &up, Source::File(file), size);
                let (parts, hash) = tokio::join!(parts, hash);
                let hash = hash.map_err(|e| anyhow!("hashing crashed: {e}"))??;
                // B restores with `tar -x`, which never reads the extent: a bound
                // (each file's data plus a header and padding) is enough.
                let extent = Extent {
                    unpacked_size: Some(input.bytes + input.files * 2048),
                    entries: Some(input.files),
                };
                self.signer.complete(&up, parts?, size, hash, extent).await
            })
        })?;
        Ok(Sample::of(pack.then(upload), Some(size)))
    }

    /// B: look up, download in ranges ([`net::IN_FLIGHT`] at once) into a temp file,
    /// then `zstd -d | tar -x` into an empty directory. Returns the whole restore and,
    /// as C's decompress-only limit, its second half on its own: that is exactly
    /// `zstd -d` of a local file into `tar -x` (measuring it again would only double
    /// the longest step of the benchmark).
    pub fn b_restore(&self, input: &Input, key: &str) -> Result<(Sample, Sample)> {
        let dest = self.fresh_dir("restore-b")?;
        let download = self.work.join("b-download.tar.zst");
        settle();
        let ((), fetch) = in_process(|| {
            self.rt.block_on(async {
                let hit = self.signer.lookup(key).await?;
                let file = Arc::new(File::create(&download)?);
                net::get_ranges(self.signer.http(), &hit.url, hit.size, Sink::File(file)).await?;
                Ok(())
            })
        })?;
        let unpack = pipeline(
            vec![zstd_decompress(&download), tar_extract(&dest)],
            Io::Null,
            Io::Null,
            &self.log,
        )?;
        check_restored(input, &dest)?;
        self.set_aside(&dest)?;
        fs::remove_file(&download)?;
        Ok((
            Sample::of(fetch.then(unpack), None),
            Sample::of(unpack, None),
        ))
    }

    /// C: compress only, `tar -cf - -T list | zstd -T0 -3 > /dev/null`.
    pub fn c_compress(&self, input: &Input, list: &Path) -> Result<Sample> {
        settle();
        let usage = pipeline(
            vec![tar_create(input, list), zstd_compress()],
            Io::Null,
            Io::Null,
            &self.log,
        )?;
        Ok(Sample::of(usage, None))
    }

    /// C: PUT the compressed archive (already in memory) in parts, [`net::IN_FLIGHT`]
    /// at once, then abort the upload. Only the PUTs are timed.
    pub fn c_put(&self, key: &str) -> Result<Sample> {
        let archive = self.archive_path();
        let size = fs::metadata(&archive)?.len();
        let up = self.rt.block_on(self.signer.begin(key, size))?;
        let source = Source::preload(&archive, up.part_size)?;
        settle();
        let put = in_process(|| {
            self.rt
                .block_on(net::put_parts(self.signer.http(), &up, source, size))
        });
        self.rt.block_on(self.signer.abort(&up))?;
        let (_, usage) = put?;
        Ok(Sample::of(usage, Some(size)))
    }

    /// C: GET the object stored under `key` in ranges, [`net::IN_FLIGHT`] at once,
    /// dropping the bytes. Only the GETs are timed.
    pub fn c_get(&self, key: &str) -> Result<Sample> {
        let hit = self.rt.block_on(self.signer.lookup(key))?;
        settle();
        let (got, usage) = in_process(|| {
            self.rt.block_on(net::get_ranges(
                self.signer.http(),
                &hit.url,
                hit.size,
                Sink::Discard,
            ))
        })?;
        if got != hit.size {
            bail!("GET moved {got} bytes of {}", hit.size);
        }
        Ok(Sample::of(usage, Some(hit.size)))
    }

    /// Deletes the caches of one repetition (not measured).
    pub fn forget(&self, keys: &[&str]) -> Result<()> {
        self.rt.block_on(async {
            for key in keys {
                self.signer.delete(key).await?;
            }
            Ok(())
        })
    }

    /// B's temp archive, reused by the C steps of the same repetition.
    pub fn archive_path(&self) -> PathBuf {
        self.work.join("b-archive.tar.zst")
    }

    /// Runs bmat with `--json`; returns its usage and the JSON outcome.
    fn bmat(&self, dir: &Path, args: &[&str], stdin: Io) -> Result<(Usage, serde_json::Value)> {
        let out = self.work.join("bmat.json");
        let mut cmd = Command::new(&self.bmat);
        cmd.arg("--json")
            .arg("--strict")
            .args(args)
            .current_dir(dir)
            .env("BMAT_AGENT_SOCKET", &self.agent_socket)
            .env_remove("BMAT_SIGNER_URL")
            .env_remove("BMAT_TOKEN");
        settle();
        let usage = pipeline(vec![cmd], stdin, Io::create(&out)?, &self.log)?;
        Ok((usage, json_outcome(&out, args)?))
    }

    /// Moves a restored tree out of the way, to be deleted at the end of the run.
    /// Deleting it any earlier slows down the restores that follow, A's and B's: on
    /// an ext4 without a journal (this VM's), allocating an inode within 60 s (300 s
    /// while the inode table is dirty) of many being deleted scans past every one
    /// of them (`recently_deleted` in `perf`). Extracting 10,000 files took 5.6 s
    /// instead of 0.9-1.7 s; deleting each repetition's trees at its end made the
    /// source-tree restores slower with every repetition (B: 3.0, 8.5, 10.8, 13.9 s).
    fn set_aside(&self, dir: &Path) -> Result<()> {
        let n = self
            .set_aside
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let trash = self.work.join("set-aside");
        fs::create_dir_all(&trash)?;
        let to = trash.join(n.to_string());
        fs::rename(dir, &to)
            .with_context(|| format!("cannot move {} to {}", dir.display(), to.display()))
    }

    fn fresh_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.work.join(name);
        if dir.exists() {
            self.set_aside(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}

/// User + system CPU seconds of `pids` so far (from `/proc/PID/stat`; 0 for a pid
/// that cannot be read).
fn stack_cpu(pids: &[u32]) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    pids.iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the command name (which may hold spaces) in parentheses:
            // state is field 3, utime 14 and stime 15.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks)
        })
        .sum()
}

/// The JSON outcome bmat `args` wrote (its last line of stdout) to `out`.
pub fn json_outcome(out: &Path, args: &[&str]) -> Result<serde_json::Value> {
    let text = fs::read_to_string(out).with_context(|| format!("cannot read {}", out.display()))?;
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .with_context(|| format!("bmat {}: not JSON on stdout: {line:?}", args.join(" ")))
}

pub fn expect_outcome(json: &serde_json::Value, want: &str, key: &str) -> Result<()> {
    let got = json["outcome"].as_str().unwrap_or_default();
    if got != want {
        bail!(
            "bmat on {key}: outcome {got:?}, expected {want:?} ({})",
            json["error"].as_str().unwrap_or("no error given")
        );
    }
    Ok(())
}

/// The restored tree holds as many files and bytes as the input.
fn check_restored(input: &Input, dest: &Path) -> Result<()> {
    let (mut files, mut bytes) = (0, 0);
    for p in &input.paths {
        let (f, b) = count(&dest.join(p))?;
        files += f;
        bytes += b;
    }
    if (files, bytes) != (input.files, input.bytes) {
        bail!(
            "restored {files} files / {bytes} bytes of {}, expected {} / {}",
            input.name,
            input.files,
            input.bytes
        );
    }
    Ok(())
}

fn tar_create(input: &Input, list: &Path) -> Command {
    let mut tar = Command::new("tar");
    tar.args(["--posix", "-cf", "-", "-T"])
        .arg(list)
        .current_dir(&input.root);
    tar
}

fn zstd_compress() -> Command {
    let mut zstd = Command::new("zstd");
    zstd.args(["-T0", "-3", "-q", "-c"]);
    zstd
}

fn zstd_decompress(archive: &Path) -> Command {
    let mut zstd = Command::new("zstd");
    zstd.args(["-d", "-q", "-c"]).arg(archive);
    zstd
}

/// `tar -x`; `--no-same-owner` because xtask may run as root, where tar would chown
/// every file (a job's runner user does not).
fn tar_extract(dest: &Path) -> Command {
    let mut tar = Command::new("tar");
    tar.args(["-xf", "-", "--no-same-owner", "-C"]).arg(dest);
    tar
}
