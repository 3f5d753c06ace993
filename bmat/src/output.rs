//! Writing to stdout and stderr without panicking.
//!
//! `println!` and `eprintln!` panic when the stream fails (`> /dev/full`, a reader
//! that closed its pipe), and a job would see exit 101 from its cache step. Here a
//! failed write is an error the caller weighs like any other failure of the step.

use std::io::{self, Write};

/// Writes `text` to stdout as it is, and flushes.
pub fn print(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Writes one line to stdout.
pub fn println(line: &str) -> io::Result<()> {
    print(&format!("{line}\n"))
}

/// Writes one line to stderr.
pub fn eprintln(line: &str) -> io::Result<()> {
    let mut err = io::stderr().lock();
    writeln!(err, "{line}")?;
    err.flush()
}

/// A cache step that failed and printed nothing else: `warning: …` and exit 0, or
/// `error: …` and exit 1 under `--strict`.
pub fn step_failed(what: &str, strict: bool) -> i32 {
    let level = if strict { "error" } else { "warning" };
    let _ = eprintln(&format!("{level}: {what}"));
    i32::from(strict)
}
