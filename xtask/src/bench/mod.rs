//! `cargo xtask bench`: bmat's save and restore against the pipeline users would
//! otherwise run (actions/cache: tar + zstd, 64 MiB parts 8 at a time) and against the
//! limits of the machine, on the local stack, in one run.
//!
//! Per input and repetition, in this order: saves (A and B, their order alternating
//! between repetitions, then C's compress and PUT), restores (likewise; B's unpack is
//! C's decompress-only limit; then C's GET), then A's save of the existing key. Dirty
//! pages are flushed before every measured step. The caches of a repetition are
//! deleted after it; restored trees only at the end of the run (see
//! `Ctx::set_aside`), so the run needs about 2 × reps × the inputs' size of disk.
//! Results: a table on stdout, `target/bench/bench-<time>.json` and `latest.json`,
//! and `latest.md` for README's "Benchmarks" section.
//!
//! Speed is measured here, never asserted in a test.

pub(crate) mod bumps;
pub mod dedup;
mod inputs;
mod measure;
mod net;
mod ops;
pub(crate) mod report;
pub mod rust_job;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::stack::{Stack, bins};
use inputs::{Input, Sizes};
use ops::{Ctx, Sample};
use report::{Header, InputResult, Machine, Op, Report, Results, Samples};

const MIB: u64 = 1 << 20;

/// `cargo xtask bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Small inputs (2,000 files / 100 MiB, 100 MiB random, the fixture workspace
    /// instead of bmat's release build) for a run of a minute or two.
    #[arg(long, conflicts_with = "large")]
    pub quick: bool,
    /// The sizes of issue 5: 20,000 files / 1 GiB and 1 GiB of random bytes (the
    /// default is half of that, to stay within 15 minutes from a clean clone on 2
    /// cores).
    #[arg(long)]
    pub large: bool,
    /// Repetitions of every measurement (medians are reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub reps: u32,
    /// Only these inputs (rust-target, source-tree, random); may be repeated.
    #[arg(long = "input", value_name = "NAME")]
    pub inputs: Vec<String>,
    /// The part size in MiB the baseline asks the signer for (actions/cache uploads
    /// 64 MiB parts; bmat asks for its own).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(5..=1024))]
    pub part_size_mib: u64,
}

pub fn run(opts: &Options) -> Result<()> {
    let started = Instant::now();
    for name in &opts.inputs {
        if !inputs::NAMES.contains(&name.as_str()) {
            bail!(
                "unknown input {name:?}; expected one of {}",
                inputs::NAMES.join(", ")
            );
        }
    }
    for tool in ["tar", "zstd"] {
        if which(tool).is_none() {
            bail!("`{tool}` is not on PATH; the baseline needs it");
        }
    }
    let out_dir = target_dir().join("bench");
    let work = out_dir.join("work");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;

    let bmat = build_binaries()?;
    if !measure::measures_rss() {
        say("warning: GNU time (/usr/bin/time) is missing: peak RSS is not measured");
    }

    let sizes = if opts.quick {
        Sizes::quick()
    } else if opts.large {
        Sizes::large()
    } else {
        Sizes::default_run()
    };
    let inputs_started = Instant::now();
    let inputs = inputs::prepare(&out_dir.join("inputs"), &target_dir(), sizes, &opts.inputs)?;
    for i in &inputs {
        say(&format!(
            "input {}: {} files, {} MiB ({})",
            i.name,
            i.files,
            i.bytes / MIB,
            i.description
        ));
    }

    say(&format!(
        "inputs ready in {:.0} s",
        inputs_started.elapsed().as_secs_f64()
    ));
    let part_size = opts.part_size_mib * MIB;
    let stack = Stack::start()?;
    let env = stack.env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot build a tokio runtime")?;
    let signer = {
        let _guard = rt.enter();
        net::Signer::new(&env.signer_url, &env.token, part_size)?
    };
    let ctx = Ctx {
        bmat,
        stack_pids: stack.pids(),
        agent_socket: env.agent_socket.clone(),
        signer,
        rt,
        work: work.clone(),
        log: out_dir.join("bench.log"),
        set_aside: Default::default(),
    };
    let _ = fs::remove_file(&ctx.log);

    let run_id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let mut results = Vec::new();
    for input in inputs {
        let samples = measure_input(&ctx, &input, opts.reps, &run_id)
            .with_context(|| format!("measuring {}", input.name))?;
        let medians = report::medians(&input, &samples);
        results.push(InputResult {
            input,
            medians,
            samples,
        });
    }
    drop(ctx);
    drop(stack);
    let _ = fs::remove_dir_all(&work);

    let report = Report {
        header: header(opts)?,
        inputs: results,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    publish(&out_dir, &report)?;
    say(&format!("done in {:.0} s", report.total_seconds));
    Ok(())
}

/// Every repetition of every operation on one input.
fn measure_input(ctx: &Ctx, input: &Input, reps: u32, run_id: &str) -> Result<Samples> {
    let list = ctx.list_file(input)?;
    let mut samples = Samples::new();
    for rep in 0..reps {
        let key_a = format!("bench-a-{}-{run_id}-{rep}", input.name);
        let key_b = format!("bench-b-{}-{run_id}-{rep}", input.name);
        let key_c = format!("bench-c-{}-{run_id}-{rep}", input.name);
        let a_first = rep.is_multiple_of(2);
        let mut add = |op: &'static str, sample: Sample| {
            samples.entry(op).or_default().push(sample);
        };
        say(&format!("{} repetition {}/{reps}", input.name, rep + 1));

        for a_turn in [a_first, !a_first] {
            if a_turn {
                add(
                    Op::A_SAVE,
                    ctx.with_stack_cpu(|| ctx.a_save(input, &key_a, &list), same)?,
                );
            } else {
                add(
                    Op::B_SAVE,
                    ctx.with_stack_cpu(|| ctx.b_save(input, &key_b, &list), same)?,
                );
            }
        }
        add(
            Op::C_COMPRESS,
            ctx.with_stack_cpu(|| ctx.c_compress(input, &list), same)?,
        );
        add(Op::C_PUT, ctx.with_stack_cpu(|| ctx.c_put(&key_c), same)?);

        for a_turn in [a_first, !a_first] {
            if a_turn {
                add(
                    Op::A_RESTORE,
                    ctx.with_stack_cpu(|| ctx.a_restore(input, &key_a), same)?,
                );
            } else {
                let (restore, unpack) =
                    ctx.with_stack_cpu(|| ctx.b_restore(input, &key_b), first)?;
                add(Op::B_RESTORE, restore);
                add(Op::C_DECOMPRESS, unpack);
            }
        }
        add(Op::C_GET, ctx.with_stack_cpu(|| ctx.c_get(&key_b), same)?);

        add(Op::A_SKIP, ctx.a_skip(input, &key_a, &list)?);
        ctx.forget(&[&key_a, &key_b])?;
        let _ = fs::remove_file(ctx.archive_path());
        progress(input, &samples, rep);
    }
    Ok(samples)
}

fn same(sample: &mut Sample) -> &mut Sample {
    sample
}

fn first(pair: &mut (Sample, Sample)) -> &mut Sample {
    &mut pair.0
}

/// One line per repetition, so a long run shows where it is.
fn progress(input: &Input, samples: &Samples, rep: u32) {
    let last = |op: &str| {
        samples
            .get(op)
            .and_then(|s| s.get(rep as usize))
            .map_or(f64::NAN, |s| s.wall_s)
    };
    say(&format!(
        "{}: save A {:.2} s, B {:.2} s, C {:.2} s | restore A {:.2} s, B {:.2} s, C {:.2} s | skip {:.3} s",
        input.name,
        last(Op::A_SAVE),
        last(Op::B_SAVE),
        last(Op::C_COMPRESS),
        last(Op::A_RESTORE),
        last(Op::B_RESTORE),
        last(Op::C_DECOMPRESS),
        last(Op::A_SKIP),
    ));
}

fn header(opts: &Options) -> Result<Header> {
    let mut command = "cargo xtask bench".to_owned();
    if opts.quick {
        command.push_str(" --quick");
    }
    if opts.large {
        command.push_str(" --large");
    }
    if opts.reps != 3 {
        command.push_str(&format!(" --reps {}", opts.reps));
    }
    for i in &opts.inputs {
        command.push_str(&format!(" --input {i}"));
    }
    if opts.part_size_mib != 64 {
        command.push_str(&format!(" --part-size-mib {}", opts.part_size_mib));
    }
    let first_line = |s: String| s.lines().next().unwrap_or_default().to_owned();
    Ok(Header {
        machine: machine(command)?,
        tar: first_line(command_out("tar", &["--version"])?),
        zstd: command_out("zstd", &["-V"])?
            .split_whitespace()
            .find(|w| w.starts_with('v'))
            .unwrap_or("?")
            .trim_end_matches(',')
            .to_owned(),
        reps: opts.reps as usize,
        part_size_mib: opts.part_size_mib,
    })
}

/// The machine, the toolchain and the checkout, for a report of `command`.
pub(crate) fn machine(command: String) -> Result<Machine> {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cpu_model = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(bins::workspace_root())
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    let git = command_out("git", &["rev-parse", "--short", "HEAD"]).unwrap_or_default()
        + if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        };
    Ok(Machine {
        date: command_out("date", &["-u"])?,
        command,
        cpus: command_out("nproc", &[])?,
        cpu_model,
        memory: format!("{:.1} GiB", mem_kib as f64 / (1 << 20) as f64),
        rustc: command_out("rustc", &["--version"])?,
        git,
        load_average: fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        bmat_env: bmat_tuning_env(),
    })
}

/// The `BMAT_*` variables of xtask's environment that tune bmat (not the ones that
/// point it at a stack or hold credentials): they reach every bmat the bench runs.
fn bmat_tuning_env() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("BMAT_")
                && !matches!(
                    k.as_str(),
                    "BMAT_SIGNER_URL" | "BMAT_TOKEN" | "BMAT_AGENT_SOCKET"
                )
                && !k.starts_with("BMAT_S3_")
                && !k.starts_with("BMAT_TEST_")
        })
        .collect()
}

/// Builds bmat in release and the stack's binaries (debug); returns bmat's path.
fn build_binaries() -> Result<PathBuf> {
    say("building bmat (release) and the stack's binaries");
    let build_started = Instant::now();
    cargo(&["build", "--quiet", "--release", "-p", "bmat"])?;
    cargo(&[
        "build",
        "--quiet",
        "-p",
        "signer",
        "-p",
        "agent-shim",
        "--bins",
    ])?;
    say(&format!(
        "built in {:.0} s",
        build_started.elapsed().as_secs_f64()
    ));
    Ok(target_dir().join("release/bmat"))
}

/// Prints a run's table and writes its results to `out_dir` (see [`Results::NAMES`]).
pub(crate) fn publish<R: Results>(out_dir: &Path, results: &R) -> Result<()> {
    let (dated, latest) = R::NAMES;
    println!("{}", results.text());
    let json = serde_json::to_string_pretty(results)?;
    let stamp = command_out("date", &["-u", "+%Y%m%dT%H%M%SZ"])?;
    let path = out_dir.join(format!("{dated}-{stamp}.json"));
    for (file, body) in [
        (path.clone(), json.clone()),
        (out_dir.join(format!("{latest}.json")), json),
        (out_dir.join(format!("{latest}.md")), results.markdown()),
    ] {
        fs::write(&file, body).with_context(|| format!("cannot write {}", file.display()))?;
    }
    say(&format!(
        "results in {} (and {latest}.json, {latest}.md)",
        path.display()
    ));
    Ok(())
}

/// Where a run of jobs writes: results in `target/bench/`, each step's output in
/// `NAME-logs/` there (emptied first), the jobs' trees in a temp dir `bmat-NAME-…`.
pub(crate) struct Scratch {
    pub out_dir: PathBuf,
    pub logs: PathBuf,
    pub tmp: tempfile::TempDir,
}

impl Scratch {
    pub(crate) fn new(name: &str) -> Result<Scratch> {
        let out_dir = target_dir().join("bench");
        let logs = out_dir.join(format!("{name}-logs"));
        let _ = fs::remove_dir_all(&logs);
        fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!("bmat-{name}-"))
            .tempdir()
            .context("cannot create a temp dir")?;
        Ok(Scratch { out_dir, logs, tmp })
    }

    /// Publishes `report`, keeps the temp dir when asked (saying where) and says
    /// where the logs are.
    pub(crate) fn finish<R: Results>(self, report: &R, keep: bool, seconds: f64) -> Result<()> {
        publish(&self.out_dir, report)?;
        if keep {
            say(&format!("kept {}", self.tmp.keep().display()));
        }
        say(&format!(
            "done in {seconds:.0} s; logs of every step in {}",
            self.logs.display()
        ));
        Ok(())
    }
}

/// The workspace's target directory (`CARGO_TARGET_DIR` when set).
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(t) if t.is_absolute() => t,
        Some(t) => bins::workspace_root().join(t),
        None => bins::workspace_root().join("target"),
    }
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .current_dir(bins::workspace_root())
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo {} failed: {status}", args.join(" "));
    }
    Ok(())
}

fn command_out(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!("{program} {} failed: {}", args.join(" "), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| Path::new(p).is_file())
    })
}

fn say(line: &str) {
    eprintln!("bench: {line}");
}
