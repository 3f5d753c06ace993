//! The study's figures: one row per bump, the tables (terminal and markdown) and
//! the JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::accounting::{PerDesign, Size};
use super::snapshot::{Hashing, Stats};
use crate::bench::report::{Machine, Results, group, markdown_table, text_table};

const MIB: f64 = (1u64 << 20) as f64;

/// One bump replayed: the lock change, the build it caused and the snapshot after it.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The lock change as done (`clap 4.6.9 → 4.6.8, clap_derive 4.6.9 → 4.6.8`).
    pub bump: String,
    pub why: String,
    /// Third-party units Cargo compiled (and build scripts it ran) again.
    pub rebuilt: usize,
    pub stats: Stats,
    /// The full save of this snapshot (every file, as one archive would hold it;
    /// zstd: each content compressed alone).
    pub full: Size,
    /// New against the previous snapshot: what a save after restoring it uploads.
    pub upload: PerDesign,
    /// New against every earlier snapshot: what storage grows by.
    pub growth: PerDesign,
    /// The upload's new whole files by package, largest first.
    pub changed: Vec<(String, u64)>,
}

/// A bump that did not resolve, and Cargo's reason.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub package: String,
    pub precise: String,
    pub error: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub machine: Machine,
    /// `cargo -V` as the study ran it (its own CARGO_HOME).
    pub cargo: String,
    pub workspace: String,
    /// Snapshot 0, after the cold build.
    pub cold: Stats,
    pub cold_full: Size,
    pub rows: Vec<Row>,
    pub skipped: Vec<Skipped>,
    /// Over snapshot 0.
    pub hashing: Option<Hashing>,
    pub total_seconds: f64,
}

const HEAD: [&str; 10] = [
    "bump (as done)",
    "rebuilt",
    "full save",
    "files (< 64 KiB)",
    "upload: files",
    "upload: chunks",
    "upload: units",
    "growth: files",
    "growth: chunks",
    "growth: units",
];

const ZSTD_HEAD: [&str; 5] = [
    "bump",
    "full save, zstd",
    "upload: files",
    "upload: chunks",
    "upload: units",
];

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// `12 % (40 MiB)`.
fn cell(part: u64, whole: u64) -> String {
    format!("{:.0} % ({:.1} MiB)", pct(part, whole), mib(part))
}

/// The three designs' figures of `per`, as (bytes, bytes of the full save) pairs.
fn designs(per: &PerDesign, full: Size, zstd: bool) -> [(u64, u64); 3] {
    let pick = |s: Size| if zstd { s.zstd } else { s.raw };
    [per.files, per.chunks, per.units].map(|s| (pick(s), pick(full)))
}

fn rows(report: &Report) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for r in &report.rows {
        let mut row = vec![
            r.bump.clone(),
            r.rebuilt.to_string(),
            format!("{:.0} MiB", mib(r.full.raw)),
            format!("{} ({})", group(r.stats.files), group(r.stats.small_files)),
        ];
        for per in [&r.upload, &r.growth] {
            row.extend(designs(per, r.full, false).map(|(p, w)| cell(p, w)));
        }
        out.push(row);
    }
    out.extend(summary(report, false, 4));
    out
}

fn zstd_rows(report: &Report) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = report
        .rows
        .iter()
        .map(|r| {
            let mut row = vec![
                r.bump.split(',').next().unwrap_or_default().to_owned(),
                format!("{:.0} MiB", mib(r.full.zstd)),
            ];
            row.extend(designs(&r.upload, r.full, true).map(|(p, w)| cell(p, w)));
            row
        })
        .collect();
    out.extend(summary(report, true, 2));
    out
}

/// Mean and max of each design's share over the bumps (upload, and growth unless
/// `zstd`), after `lead` label cells.
fn summary(report: &Report, zstd: bool, lead: usize) -> Vec<Vec<String>> {
    let n = report.rows.len().max(1) as f64;
    let shares: Vec<Vec<(f64, f64)>> = report
        .rows
        .iter()
        .map(|r| {
            let mut per = vec![&r.upload];
            if !zstd {
                per.push(&r.growth);
            }
            per.into_iter()
                .flat_map(|p| designs(p, r.full, zstd))
                .map(|(p, w)| (pct(p, w), mib(p)))
                .collect()
        })
        .collect();
    let columns = shares.first().map_or(0, Vec::len);
    let mut mean = vec!["**mean**".to_owned()];
    let mut max = vec!["**max**".to_owned()];
    for _ in 1..lead {
        mean.push(String::new());
        max.push(String::new());
    }
    for c in 0..columns {
        let col = shares.iter().map(|s| s[c]);
        let (p, m) = col.clone().fold((0.0, 0.0), |a, x| (a.0 + x.0, a.1 + x.1));
        mean.push(format!("**{:.0} %** ({:.1} MiB)", p / n, m / n));
        let (p, m) = col.fold((0.0f64, 0.0f64), |a, x| (a.0.max(x.0), a.1.max(x.1)));
        max.push(format!("**{p:.0} %** ({m:.1} MiB)"));
    }
    vec![mean, max]
}

fn notes(report: &Report) -> String {
    let c = &report.cold;
    let mut out = format!(
        "Rebuilt: third-party units Cargo compiled (or build scripts it ran) again. \
         Snapshot 0 (the cold build): {:.0} MiB ({:.0} MiB zstd) in {} files, {} of them \
         below 64 KiB ({:.1} MiB), {} chunks, {} units.",
        mib(c.bytes),
        mib(report.cold_full.zstd),
        group(c.files),
        group(c.small_files),
        mib(c.small_bytes),
        group(c.chunks),
        group(c.units),
    );
    if let Some(h) = &report.hashing {
        let _ = write!(
            out,
            " Hashing it ({:.0} MiB, one thread): SHA-256 {:.0} MiB/s, BLAKE3 {:.0} MiB/s.",
            h.mib, h.sha256_mib_s, h.blake3_mib_s
        );
    }
    for s in &report.skipped {
        let _ = write!(
            out,
            " Skipped: `cargo update -p {} --precise {}`: {}.",
            s.package,
            s.precise,
            s.error.trim_end_matches('.')
        );
    }
    out
}

/// Per bump, the packages whose files were new (whole files), largest first.
fn changed(report: &Report) -> String {
    let mut out = String::new();
    for r in &report.rows {
        let top: Vec<String> = r
            .changed
            .iter()
            .take(6)
            .map(|(p, bytes)| format!("{p} {:.1}", mib(*bytes)))
            .collect();
        let more = r.changed.len().saturating_sub(top.len());
        let _ = writeln!(
            out,
            "- {}: {} MiB{}",
            r.bump,
            top.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    out
}

impl Results for Report {
    const NAMES: (&str, &str) = ("dedup-study", "dedup-study-latest");

    fn text(&self) -> String {
        let plain = |rows: Vec<Vec<String>>| -> Vec<Vec<String>> {
            rows.into_iter()
                .map(|r| r.into_iter().map(|c| c.replace("**", "")).collect())
                .collect()
        };
        format!(
            "{}\nzstd -3 (each content alone):\n{}\nNew whole files by package:\n{}\n{}",
            text_table(&HEAD, &plain(rows(self))),
            text_table(&ZSTD_HEAD, &plain(zstd_rows(self))),
            changed(self),
            notes(self)
        )
    }

    /// The markdown section body for README (no heading).
    fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = format!(
            "Measured with `{}` {} (study: {}); commit {}. Workspace: {}. Percentages are of \
             that snapshot's full save; sizes uncompressed unless said.\n\n",
            m.command,
            m.describe(),
            self.cargo,
            m.git,
            self.workspace,
        );
        out.push_str(&markdown_table(&HEAD, &rows(self)));
        out.push_str("\nThe uploads compressed (zstd -3, each content alone):\n\n");
        out.push_str(&markdown_table(&ZSTD_HEAD, &zstd_rows(self)));
        let _ = write!(
            out,
            "\nWhat a save after each bump uploads as whole files, by package (MiB):\n\n{}",
            changed(self)
        );
        let _ = writeln!(
            out,
            "\n{}\n\nWhole run: {:.0} s (`target/bench/dedup-study-latest.json` has every figure).",
            notes(self),
            self.total_seconds
        );
        out
    }
}
