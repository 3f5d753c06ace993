//! `cargo xtask stack | test | demo | garage | bench | bench-rust | bench-dedup | dedup-study |
//! layout`.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use xtask::stack::Stack;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Developer commands of the bmat workspace"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start the local stack (S3, signer, agent-shim), write its BMAT_* variables to a
    /// file once everything answers, and run until SIGINT/SIGTERM.
    Stack {
        /// Where to write the KEY=VALUE lines.
        #[arg(long)]
        env_file: PathBuf,
    },
    /// Build the binaries, then run every test of the workspace (extra arguments go to
    /// `cargo test`).
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Save and restore a sample tree on the local stack, end to end.
    Demo,
    /// Print the path of Garage (the local stack's S3 server), installing the pinned
    /// version into $CARGO_HOME/bin first when it is missing (about 12 minutes, once).
    Garage {
        /// Install nothing: exit 1 when the pinned Garage is not installed.
        #[arg(long)]
        check: bool,
    },
    /// Measure bmat's save/restore against the actions/cache pipeline and the
    /// machine's limits on the local stack (results in target/bench/).
    Bench(xtask::bench::Options),
    /// Time the Rust job as fresh CI runners run it (a cold build, a build of the
    /// workspace only, and a restore + build in another checkout and Cargo home) on
    /// testdata/bench-workspace (results in target/bench/rust-job-latest.*).
    BenchRust(xtask::bench::rust_job::Options),
    /// Measure how many bytes of a Rust dependency cache are new after each of a series
    /// of real lock bumps, stored as whole files, content-defined chunks or Cargo units
    /// (no stack; results in target/bench/dedup-study-latest.*).
    DedupStudy(xtask::dedup_study::Options),
    /// Replay real lock bumps of testdata/bench-workspace as CI jobs on the local stack,
    /// saving caches of today's format and of the new one: uploaded bytes, the bucket's
    /// growth, save and restore times (results in target/bench/dedup.*).
    BenchDedup(xtask::bench::dedup::Options),
    /// Check that no crate has an import cycle between its files or its top-level
    /// modules: print each cycle, exit 1 when there is one.
    Layout,
}

fn main() -> ExitCode {
    xtask::stack::install_crypto();
    let argv: Vec<OsString> = std::env::args_os().collect();
    let cli = parse(argv);
    let result = match cli.command {
        Cmd::Stack { env_file } => stack(&env_file),
        Cmd::Test { args } => xtask::test_cmd::run(&args),
        Cmd::Demo => xtask::demo::run(),
        Cmd::Garage { check } => garage(check),
        Cmd::Bench(opts) => xtask::bench::run(&opts),
        Cmd::BenchRust(opts) => xtask::bench::rust_job::run(&opts),
        Cmd::DedupStudy(opts) => xtask::dedup_study::run(&opts),
        Cmd::BenchDedup(opts) => xtask::bench::dedup::run(&opts),
        Cmd::Layout => layout(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Like `Cli::parse`, except that everything after `test` goes to `cargo test`
/// verbatim: clap would swallow a leading `--` (`cargo xtask test -- --nocapture`).
fn parse(argv: Vec<OsString>) -> Cli {
    if argv.get(1).is_some_and(|a| a == "test") {
        return Cli {
            command: Cmd::Test {
                args: argv[2..].to_vec(),
            },
        };
    }
    Cli::parse_from(argv)
}

fn garage(check: bool) -> Result<()> {
    let bin = if check {
        xtask::garage_install::installed().with_context(|| {
            format!(
                "Garage {} is not installed (`cargo xtask garage` installs it)",
                xtask::stack::GARAGE_VERSION
            )
        })?
    } else {
        xtask::garage_install::ensure()?
    };
    println!("{}", bin.display());
    Ok(())
}

fn layout() -> Result<()> {
    let survey = xtask::layout::survey(&xtask::stack::bins::workspace_root())?;
    for finding in &survey.findings {
        println!("{finding}");
    }
    println!("{survey}");
    if !survey.findings.is_empty() {
        bail!("import cycles (see above)");
    }
    Ok(())
}

fn stack(env_file: &Path) -> Result<()> {
    // Signal handlers first: a Ctrl-C during startup still tears down what started.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build a tokio runtime")?;
    let mut signals = rt.block_on(async { Signals::new() })?;
    xtask::garage_install::ensure_for_stack()?;
    let mut stack = Stack::start()?;
    write_env_file(env_file, &stack.env().vars())?;
    let env = stack.env();
    eprintln!(
        "xtask: stack ready; variables in {} (Ctrl-C to stop)\n  signer  {}\n  shim    {}\n  S3      {} bucket {}\n  logs    {}",
        env_file.display(),
        env.signer_url,
        env.agent_socket.display(),
        env.s3_endpoint,
        env.s3_bucket,
        stack.dir().display(),
    );
    let outcome = rt.block_on(async {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                name = signals.wait() => {
                    eprintln!("xtask: {name}: stopping the stack");
                    return Ok(());
                }
                _ = tick.tick() => stack.check_children()?,
            }
        }
    });
    drop(stack);
    // The variables point at nothing now.
    let _ = std::fs::remove_file(env_file);
    outcome
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        })
    }

    async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Writes `KEY=VALUE` lines atomically (temp file + rename), so a reader polling for
/// the file never sees half of it.
fn write_env_file(path: &Path, vars: &[(&'static str, String)]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    for (key, value) in vars {
        if value.contains('\n') {
            bail!("{key} holds a newline; cannot write it as KEY=VALUE");
        }
        writeln!(tmp, "{key}={value}")?;
    }
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_args(argv: &[&str]) -> Vec<String> {
        match parse(argv.iter().map(OsString::from).collect()).command {
            Cmd::Test { args } => args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn test_passes_its_arguments_to_cargo_test() {
        assert_eq!(test_args(&["xtask", "test"]), Vec::<String>::new());
        assert_eq!(test_args(&["xtask", "test", "-p", "bmat"]), ["-p", "bmat"]);
        assert_eq!(
            test_args(&["xtask", "test", "--test", "shim", "--", "--nocapture"]),
            ["--test", "shim", "--", "--nocapture"]
        );
        assert_eq!(
            test_args(&["xtask", "test", "--", "--nocapture"]),
            ["--", "--nocapture"]
        );
    }
}
