//! The Rust job's figures: the efficiency, the table (terminal and markdown) and the
//! JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::super::Results;
use super::super::report::{Machine, group, markdown_table, size, text_table};
use super::next_commit::{CHANGES, LAYER, LAYER_NO_INCREMENTAL, PERSISTENT, Row, SCCACHE, SETUPS};
use super::units::Counts;

const MIB: f64 = (1u64 << 20) as f64;

/// One timed step of a job.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// What was run, as the table shows it.
    pub what: String,
    pub wall_s: f64,
    /// User + system time of the process and its children.
    pub cpu_s: f64,
    pub note: String,
}

/// Job B's build: how it ran and what it rebuilt.
#[derive(Debug, Clone, Serialize)]
pub struct BuildB {
    /// `--offline` worked (nothing was downloaded).
    pub offline: bool,
    pub counts: Counts,
}

#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub machine: Machine,
    /// `cargo -V` as the jobs ran it (their own CARGO_HOME, the real RUSTUP_HOME).
    pub cargo: String,
    /// `sccache --version` of the peer.
    pub sccache: String,
    pub workspace: String,
    /// Job A's cold build: every unit of the workspace.
    pub cold_counts: Counts,
    pub ideal_counts: Counts,
    pub b: BuildB,
    pub steps: Vec<Step>,
    pub cold_s: f64,
    pub ideal_s: f64,
    pub restore_s: f64,
    pub build_s: f64,
    pub restore_plus_build_s: f64,
    /// `(cold − (restore + build)) / (cold − ideal)`: 1 when job B is as fast as a
    /// build that compiles only the workspace, 0 when it is as slow as a cold one.
    pub efficiency: Option<f64>,
    /// The same of CPU times (user + system of the processes): what the job's own
    /// work gained, whatever else ran on the machine meanwhile.
    pub efficiency_cpu: Option<f64>,
    /// The next commit's jobs (see `next_commit`), each job B `reps` times.
    pub next_commit: Vec<Row>,
    pub reps: u32,
    pub total_seconds: f64,
}

/// `(cold − (restore + build)) / (cold − ideal)`; none when the ideal build is not
/// faster than the cold one (nothing to win).
pub fn efficiency(cold: f64, ideal: f64, restore: f64, build: f64) -> Option<f64> {
    let room = cold - ideal;
    (room > 0.0).then(|| (cold - (restore + build)) / room)
}

/// What bmat's JSON outcome says: `hit, 410 MiB (120 MiB compressed)`.
pub fn outcome_note(json: &serde_json::Value) -> String {
    let mut note = json["outcome"].as_str().unwrap_or("?").to_owned();
    if let Some(bytes) = json["bytes"].as_u64() {
        let _ = write!(note, ", {}", size(bytes as f64 / MIB));
    }
    if let Some(archive) = json["archive_bytes"].as_u64() {
        let _ = write!(note, " ({} compressed)", size(archive as f64 / MIB));
    }
    note
}

/// "95 units (89 third-party) and 12 build script runs"
pub fn units_note(counts: &Counts) -> String {
    format!(
        "{} units ({} third-party) and {} build script runs",
        group(counts.units as u64),
        group(counts.third_party_units as u64),
        group(counts.build_script_runs as u64)
    )
}

const HEAD: [&str; 4] = ["step", "wall", "CPU", "notes"];

fn rows(report: &Report) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = report
        .steps
        .iter()
        .map(|s| {
            vec![
                s.what.clone(),
                format!("{:.1} s", s.wall_s),
                format!("{:.1} s", s.cpu_s),
                s.note.clone(),
            ]
        })
        .collect();
    rows.push(vec![
        "job B: restore + build".to_owned(),
        format!("{:.1} s", report.restore_plus_build_s),
        String::new(),
        format!("cold {:.1} s, ideal {:.1} s", report.cold_s, report.ideal_s),
    ]);
    rows.push(vec![
        "**efficiency**".to_owned(),
        percent(report.efficiency),
        percent(report.efficiency_cpu),
        "(cold − (restore + build)) / (cold − ideal), of wall and of CPU times".to_owned(),
    ]);
    rows
}

fn percent(share: Option<f64>) -> String {
    share.map_or("–".to_owned(), |e| format!("{:.0} %", e * 100.0))
}

/// The third-party units job B compiled again, and why it was not offline.
fn rebuilt(report: &Report) -> String {
    let c = &report.b.counts;
    let mut out = String::new();
    if !report.b.offline {
        out.push_str(
            "Job B's `cargo build --locked --offline` failed (its log says why); it was run \
             again without `--offline` (downloading what it needed), and that build is the one \
             timed.\n\n",
        );
    }
    let _ = write!(
        out,
        "Third-party units job B compiled again: {} of {}",
        c.third_party_rebuilt.len(),
        c.third_party_units
    );
    if c.third_party_rebuilt.is_empty() {
        out.push('.');
    } else {
        let _ = write!(out, ": {}.", c.third_party_rebuilt.join(", "));
    }
    out
}

impl Results for Report {
    const NAMES: (&str, &str) = ("rust-job", "rust-job-latest");

    /// The table for the terminal.
    fn text(&self) -> String {
        let report = self;
        let plain: Vec<Vec<String>> = rows(report)
            .into_iter()
            .map(|r| r.into_iter().map(|c| c.replace("**", "")).collect())
            .collect();
        let next: Vec<Vec<String>> = next_rows(report)
            .into_iter()
            .map(|r| r.into_iter().map(|c| c.replace("**", "")).collect())
            .collect();
        format!(
            "{}\n{}\n\nThe next commit's job B:\n{}\n{}\n{}",
            text_table(&HEAD, &plain),
            rebuilt(report),
            text_table(&strs(&next_head()), &next),
            next_notes(report),
            next_details(report)
        )
    }

    /// The markdown section body for README (no heading).
    fn markdown(&self) -> String {
        let report = self;
        let m = &report.machine;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Measured with `{}` {} (jobs: {}); commit {}; S3 is Garage on loopback. \
             Workspace: {}; cold build: {}.\n",
            m.command,
            m.describe(),
            report.cargo,
            m.git,
            report.workspace,
            units_note(&report.cold_counts),
        );
        out.push_str(&m.bmat_env_note());
        out.push_str(&markdown_table(&HEAD, &rows(report)));
        let _ = writeln!(
            out,
            "\n{}\n\n#### The next commit's job B ({})\n",
            rebuilt(report),
            report.sccache
        );
        out.push_str(&markdown_table(&strs(&next_head()), &next_rows(report)));
        let _ = writeln!(
            out,
            "\n{}\n\n{}\nWhole run: {:.0} s (`target/bench/rust-job-latest.json` has every figure).",
            next_notes(report),
            next_details(report),
            report.total_seconds
        );
        out
    }
}

fn next_head() -> Vec<String> {
    let mut head = vec!["job B at commit 2".to_owned()];
    for c in CHANGES {
        head.extend([
            c.name.to_owned(),
            format!("{} ÷ sccache", c.name),
            format!("{} ÷ persistent", c.name),
        ]);
    }
    head
}

/// The repetitions of one job B, by total time.
fn reps<'a>(report: &'a Report, how: &str, case: &str) -> Vec<&'a Row> {
    let mut rows: Vec<&Row> = report
        .next_commit
        .iter()
        .filter(|r| r.how == how && r.case == case)
        .collect();
    rows.sort_by(|a, b| a.total_s.total_cmp(&b.total_s));
    rows
}

/// The median repetition (the lower one of an even count): a whole job, so its
/// restore and build add up to its total.
fn find<'a>(report: &'a Report, how: &str, case: &str) -> Option<&'a Row> {
    let rows = reps(report, how, case);
    rows.get(rows.len().saturating_sub(1) / 2).copied()
}

/// `**5.2 s** = 3.3 + 1.9 (4.8–6.0)`: the median job's total (restore + build) and
/// the range of the repetitions.
fn cell(report: &Report, how: &str, case: &str) -> String {
    let Some(row) = find(report, how, case) else {
        return "–".to_owned();
    };
    let mut cell = format!("**{:.1} s**", row.total_s);
    if let Some(restore) = row.restore_s {
        let _ = write!(cell, " = {restore:.1} + {:.1}", row.build_s);
    }
    let all = reps(report, how, case);
    if let (Some(first), Some(last)) = (all.first(), all.last())
        && all.len() > 1
    {
        let _ = write!(cell, " ({:.1}–{:.1})", first.total_s, last.total_s);
    }
    cell
}

fn ratio(report: &Report, how: &str, over: &str, case: &str) -> String {
    match (find(report, how, case), find(report, over, case)) {
        (Some(row), Some(peer)) if peer.total_s > 0.0 && how != over => {
            format!("{:.2} ×", row.total_s / peer.total_s)
        }
        _ => "–".to_owned(),
    }
}

fn next_rows(report: &Report) -> Vec<Vec<String>> {
    let mut cold = vec!["cold build (job A's, commit 1, downloads included)".to_owned()];
    for _ in CHANGES {
        cold.extend([
            format!("{:.1} s", report.cold_s),
            String::new(),
            String::new(),
        ]);
    }
    let mut rows = vec![cold];
    for (how, label) in SETUPS {
        let mut row = vec![label.to_owned()];
        for c in CHANGES {
            row.extend([
                cell(report, how, c.name),
                ratio(report, how, SCCACHE, c.name),
                ratio(report, how, PERSISTENT, c.name),
            ]);
        }
        rows.push(row);
    }
    rows
}

/// Per job B: what was compiled, what the layer said, what sccache counted.
fn next_details(report: &Report) -> String {
    let mut out = String::new();
    let medians = report
        .next_commit
        .iter()
        .filter(|r| find(report, r.how, r.case).is_some_and(|m| std::ptr::eq(m, *r)));
    for row in medians {
        let label = SETUPS
            .iter()
            .find(|(how, _)| *how == row.how)
            .map_or(row.how, |(_, label)| label);
        let label = label.split(':').next().unwrap_or(label);
        let _ = write!(
            out,
            "- {label}, {}: {} member and {} third-party units {}",
            row.case,
            row.counts.members_rebuilt.len(),
            row.counts.third_party_rebuilt.len(),
            if row.sccache.is_some() {
                "run through rustc"
            } else {
                "compiled"
            }
        );
        if !row.offline {
            out.push_str(", online (`--offline` failed)");
        }
        for note in [&row.workspace, &row.sccache.as_ref().map(|s| s.note())]
            .into_iter()
            .flatten()
        {
            let _ = write!(out, "; {note}");
        }
        out.push_str(".\n");
    }
    out
}

/// What the cases are, sccache's own job A, and what bmat's job B is made of.
fn next_notes(report: &Report) -> String {
    let mut out = format!(
        "Each job B ran {} times, in turn; a cell is the median job (its restore + build) \
         and the range of the totals. Commit 2 appends one item to a crate root: ",
        report.reps
    );
    let whats: Vec<String> = CHANGES
        .iter()
        .map(|c| format!("**{}**: {} (`{}`)", c.name, c.what, c.file))
        .collect();
    out.push_str(&whats.join("; "));
    out.push('.');
    for (how, what) in [
        (
            SCCACHE,
            "sccache's own job A (a cold build through it, filling its S3 cache)",
        ),
        (
            LAYER_NO_INCREMENTAL,
            "bmat's job A with `CARGO_INCREMENTAL=0` (its own key: a fallback to job A's \
             dependency cache, then every member compiled)",
        ),
    ] {
        if let Some(fill) = find(report, how, "fill") {
            let _ = write!(out, " {what}: {:.1} s.", fill.build_s);
        }
    }
    if let Some(floor) = find(report, LAYER, "none") {
        let _ = write!(
            out,
            " bmat's job B with the layer at commit 1 (nothing changed): {:.1} s = {:.1} s \
             restore + {:.1} s of Cargo with nothing to compile (unpacking the `.crate` files \
             into the empty home, checking fingerprints; {} units compiled); the rest of a \
             job B at commit 2 is compiling the changed members",
            floor.total_s,
            floor.restore_s.unwrap_or(f64::NAN),
            floor.build_s,
            floor.counts.members_rebuilt.len() + floor.counts.third_party_rebuilt.len()
        );
        let rest: Vec<String> = CHANGES
            .iter()
            .filter_map(|c| {
                find(report, LAYER, c.name)
                    .map(|r| format!("{} {:.1} s", c.name, r.build_s - floor.build_s))
            })
            .collect();
        let _ = write!(out, " ({}).", rest.join(", "));
    }
    out
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn efficiency_is_the_share_of_the_possible_gain() {
        // Cold 100 s, ideal 10 s: a job B of 10 s is perfect, one of 100 s worthless.
        assert_eq!(efficiency(100.0, 10.0, 2.0, 8.0), Some(1.0));
        assert_eq!(efficiency(100.0, 10.0, 5.0, 95.0), Some(0.0));
        assert_eq!(efficiency(100.0, 10.0, 4.0, 51.0), Some(0.5));
        // Slower than cold: negative, reported as measured.
        assert_eq!(efficiency(100.0, 10.0, 10.0, 99.0), Some(-0.1));
        // Nothing to win.
        assert_eq!(efficiency(10.0, 10.0, 1.0, 1.0), None);
        assert_eq!(efficiency(10.0, 12.0, 1.0, 1.0), None);
    }

    #[test]
    fn outcome_notes_name_sizes() {
        let hit = serde_json::json!({"outcome": "hit", "bytes": 400u64 << 20, "archive_bytes": 100u64 << 20});
        assert_eq!(outcome_note(&hit), "hit, 400 MiB (100 MiB compressed)");
        let miss = serde_json::json!({"outcome": "miss", "bytes": null});
        assert_eq!(outcome_note(&miss), "miss");
    }
}
