//! The figures of `bench-dedup`: per bump, both series side by side; a summary per
//! series, the pull request's save and issue 19's goals (terminal, markdown, JSON).

use std::fmt::Write as _;

use serde::Serialize;

use super::super::report::{Machine, Results, markdown_table, median, text_table};
use super::locks::Lock;

const MIB: f64 = (1u64 << 20) as f64;

/// Restores on a fresh runner of each series' last save: their median decides a goal
/// (five: on this 2-core VM one restore in a few runs is 10 % off).
pub const LAST_RESTORES: usize = 5;

/// The series whose figures the goals compare against.
pub const ARCHIVE: &str = "archive";

/// One save, as its `--json` and the bucket said.
#[derive(Debug, Clone, Serialize)]
pub struct Saved {
    /// `uploaded_bytes` (`archive_bytes` when the client does not report it).
    pub uploaded_bytes: u64,
    /// `logical_bytes`, the cache's full size (`archive_bytes` when not reported).
    pub logical_bytes: u64,
    /// `stored_bytes`: every object the cache reads, whole (`archive_bytes` when not
    /// reported).
    pub stored_bytes: u64,
    /// Uncompressed bytes saved (`bytes`).
    pub bytes: Option<u64>,
    /// Bytes of every object under the stack's S3 prefix after the save minus before.
    pub growth_bytes: i64,
    pub save_s: f64,
    /// The key saved.
    pub key: String,
}

/// One job: restore (none for job 0), build, save, then a restore of the key just
/// saved on a fresh runner (none for job 0 and the pull request).
#[derive(Debug, Clone, Serialize)]
pub struct JobFigures {
    pub restore_s: Option<f64>,
    pub build_s: f64,
    /// Third-party units Cargo compiled (or build scripts it ran) again.
    pub rebuilt: usize,
    pub saved: Saved,
    /// Restores of the key saved, each on a fresh runner: one per bump, a few at the
    /// last (see `LAST_RESTORES`).
    pub fresh_restores_s: Vec<f64>,
}

impl JobFigures {
    /// The median restore on a fresh runner; none for job 0 and the pull request.
    pub fn fresh_restore_s(&self) -> Option<f64> {
        (!self.fresh_restores_s.is_empty()).then(|| median(self.fresh_restores_s.clone()))
    }
}

/// Every job of one series.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// `archive` or `contents`: the `BMAT_CACHE_FORMAT` and key suffix of its jobs.
    pub format: &'static str,
    /// Job 0: the workspace's lock built from scratch, a full save.
    pub cold: JobFigures,
    /// One per bump, in order.
    pub bumps: Vec<JobFigures>,
    /// The pull request's job, over this series' last cache of main.
    pub pull_request: JobFigures,
}

impl Series {
    /// What a full save of `job` is: job 0's archive for the archive series (every
    /// archive is a full save), the save's own logical size for the others.
    pub fn full(&self, job: &JobFigures) -> u64 {
        if self.format == ARCHIVE {
            self.cold.saved.logical_bytes
        } else {
            job.saved.logical_bytes
        }
    }

    pub fn upload_pct(&self, job: &JobFigures) -> f64 {
        pct(job.saved.uploaded_bytes as f64, self.full(job))
    }

    pub fn growth_pct(&self, job: &JobFigures) -> f64 {
        pct(job.saved.growth_bytes as f64, self.full(job))
    }
}

/// A series over its bumps.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub format: &'static str,
    pub mean_upload_pct: f64,
    pub max_upload_pct: f64,
    pub mean_growth_pct: f64,
    pub max_growth_pct: f64,
    pub median_save_s: f64,
    pub median_restore_s: f64,
    /// The fresh restore after the last bump ÷ the archive series'.
    pub last_restore_ratio: f64,
    pub pull_request_upload_pct: f64,
}

pub fn summary(series: &Series, archive: &Series) -> Summary {
    let uploads: Vec<f64> = series.bumps.iter().map(|j| series.upload_pct(j)).collect();
    let growths: Vec<f64> = series.bumps.iter().map(|j| series.growth_pct(j)).collect();
    let last_restore = |s: &Series| {
        s.bumps
            .last()
            .and_then(JobFigures::fresh_restore_s)
            .unwrap_or(f64::NAN)
    };
    Summary {
        format: series.format,
        mean_upload_pct: mean(&uploads),
        max_upload_pct: max(&uploads),
        mean_growth_pct: mean(&growths),
        max_growth_pct: max(&growths),
        median_save_s: median(series.bumps.iter().map(|j| j.saved.save_s).collect()),
        median_restore_s: median(
            series
                .bumps
                .iter()
                .filter_map(JobFigures::fresh_restore_s)
                .collect(),
        ),
        last_restore_ratio: last_restore(series) / last_restore(archive),
        pull_request_upload_pct: series.upload_pct(&series.pull_request),
    }
}

/// One of issue 19's goals, judged on one run.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub goal: &'static str,
    pub measured: String,
    pub met: bool,
}

/// The goals of `new` (the contents series) against `archive`.
pub fn goals(new: &Summary, archive: &Summary) -> Vec<Goal> {
    vec![
        Goal {
            goal: "uploaded bytes per bump ≤ 35 % of a full save",
            measured: format!("at most {:.1} %", new.max_upload_pct),
            met: new.max_upload_pct <= 35.0,
        },
        Goal {
            goal: "storage growth per bump ≤ 40 % of a full save",
            measured: format!("at most {:.1} %", new.max_growth_pct),
            met: new.max_growth_pct <= 40.0,
        },
        Goal {
            goal: "save no slower than the archive's",
            measured: format!(
                "median {:.2} s against {:.2} s",
                new.median_save_s, archive.median_save_s
            ),
            met: new.median_save_s <= archive.median_save_s,
        },
        Goal {
            goal: "restore after the last bump ≤ 1.1 × the archive's",
            measured: format!("{:.2} ×", new.last_restore_ratio),
            met: new.last_restore_ratio <= 1.1,
        },
        Goal {
            goal: "a pull request's save over main's uploads ≤ 35 % of a full save",
            measured: format!("{:.1} %", new.pull_request_upload_pct),
            met: new.pull_request_upload_pct <= 35.0,
        },
    ]
}

#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub machine: Machine,
    /// `cargo -V` as the jobs ran it.
    pub cargo: String,
    pub workspace: String,
    /// What the series share, and what not.
    pub shared: String,
    pub bumps: Vec<Lock>,
    /// The pull request's bump, on top of main's last.
    pub pull_request_bump: Lock,
    pub skipped: Vec<String>,
    /// The archive series first.
    pub series: Vec<Series>,
    pub summaries: Vec<Summary>,
    pub goals: Vec<Goal>,
    pub total_seconds: f64,
}

impl Report {
    /// The summaries and goals of `series` (the archive series first, the series the
    /// goals judge last).
    pub fn judge(series: &[Series]) -> (Vec<Summary>, Vec<Goal>) {
        let Some(archive) = series.iter().find(|s| s.format == ARCHIVE) else {
            return (Vec::new(), Vec::new());
        };
        let summaries: Vec<Summary> = series.iter().map(|s| summary(s, archive)).collect();
        let goals = match (summaries.first(), summaries.last()) {
            (Some(a), Some(new)) => goals(new, a),
            _ => Vec::new(),
        };
        (summaries, goals)
    }
}

fn pct(part: f64, whole: u64) -> f64 {
    if whole == 0 {
        f64::NAN
    } else {
        100.0 * part / whole as f64
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}

fn mib(bytes: f64) -> f64 {
    bytes / MIB
}

fn head(series: &[Series]) -> Vec<String> {
    let mut head = vec!["bump".to_owned()];
    for s in series {
        let f = s.format;
        head.extend([
            format!("{f}: upload"),
            format!("{f}: growth"),
            format!("{f}: save"),
            format!("{f}: restore"),
        ]);
    }
    head
}

/// `12.3 MiB (14 %)`
fn share(bytes: f64, percent: f64) -> String {
    format!("{:.1} MiB ({percent:.0} %)", mib(bytes))
}

fn seconds(s: Option<f64>) -> String {
    s.map_or("–".to_owned(), |s| format!("{s:.1} s"))
}

/// A row of every series' cells for the job `pick` chooses.
fn row(label: String, series: &[Series], pick: impl Fn(&Series) -> &JobFigures) -> Vec<String> {
    let mut row = vec![label];
    for s in series {
        let job = pick(s);
        row.extend([
            share(job.saved.uploaded_bytes as f64, s.upload_pct(job)),
            share(job.saved.growth_bytes as f64, s.growth_pct(job)),
            seconds(Some(job.saved.save_s)),
            seconds(job.fresh_restore_s()),
        ]);
    }
    row
}

pub fn rows(report: &Report) -> Vec<Vec<String>> {
    let series = &report.series;
    let mut rows = vec![row(
        "job 0: the lock as checked in, cold".to_owned(),
        series,
        |s| &s.cold,
    )];
    for (i, lock) in report.bumps.iter().enumerate() {
        rows.push(row(format!("{}: {}", i + 1, lock.bump), series, |s| {
            &s.bumps[i]
        }));
    }
    rows.push(row(
        format!("pull request: {}", report.pull_request_bump.bump),
        series,
        |s| &s.pull_request,
    ));
    rows
}

fn summary_lines(report: &Report) -> String {
    let mut out = String::new();
    for (s, series) in report.summaries.iter().zip(&report.series) {
        let pr = &series.pull_request;
        let _ = writeln!(
            out,
            "- {}: upload per bump mean {:.1} %, max {:.1} %; growth mean {:.1} %, max {:.1} %; \
             save median {:.2} s, restore median {:.2} s; restore after the last bump {:.2} × \
             the archive's; pull request uploaded {:.1} MiB of a full {:.1} MiB ({:.1} %); \
             after the last bump the cache's full size is {:.1} MiB and S3 holds {:.1} MiB \
             for it (every object it reads, whole)",
            s.format,
            s.mean_upload_pct,
            s.max_upload_pct,
            s.mean_growth_pct,
            s.max_growth_pct,
            s.median_save_s,
            s.median_restore_s,
            s.last_restore_ratio,
            mib(pr.saved.uploaded_bytes as f64),
            mib(series.full(pr) as f64),
            s.pull_request_upload_pct,
            mib(series
                .bumps
                .last()
                .map_or(f64::NAN, |j| j.saved.logical_bytes as f64)),
            mib(series
                .bumps
                .last()
                .map_or(f64::NAN, |j| j.saved.stored_bytes as f64)),
        );
    }
    out
}

fn goal_lines(report: &Report) -> String {
    let mut out = String::new();
    for g in &report.goals {
        let _ = writeln!(
            out,
            "- {}: {} — {}",
            g.goal,
            g.measured,
            if g.met { "met" } else { "NOT met" }
        );
    }
    out
}

fn notes(report: &Report) -> String {
    let mut out = format!(
        "Upload: what the save sent to S3 (`uploaded_bytes`), as a share of a full save (the \
         archive series: its job 0's archive; the others: the cache's full size, the save's \
         `logical_bytes` or else `archive_bytes`). Growth: the bytes under the stack's S3 \
         prefix after the save minus before. Save: the wall time of `bmat cache rust save \
         --deps-only`. Restore: a restore of the key just saved into a fresh checkout with an \
         empty Cargo home (after the last bump the median of {LAST_RESTORES}, the series \
         taking turns). {}",
        report.shared
    );
    for s in &report.skipped {
        let _ = write!(out, " Skipped: {s}.");
    }
    out
}

impl Results for Report {
    const NAMES: (&str, &str) = ("dedup", "dedup");

    fn text(&self) -> String {
        let head = head(&self.series);
        let head: Vec<&str> = head.iter().map(String::as_str).collect();
        format!(
            "{}\n{}\n{}\nGoals (the {} series):\n{}",
            text_table(&head, &rows(self)),
            notes(self),
            summary_lines(self),
            self.series.last().map_or("?", |s| s.format),
            goal_lines(self)
        )
    }

    /// The markdown section body for README (no heading).
    fn markdown(&self) -> String {
        let m = &self.machine;
        let head = head(&self.series);
        let head: Vec<&str> = head.iter().map(String::as_str).collect();
        let mut out = format!(
            "Measured with `{}` {} (jobs: {}); commit {}; S3 is Garage on loopback. \
             Workspace: {}, `--deps-only`.\n\n",
            m.command,
            m.describe(),
            self.cargo,
            m.git,
            self.workspace
        );
        out.push_str(&m.bmat_env_note());
        out.push_str(&markdown_table(&head, &rows(self)));
        let _ = write!(
            out,
            "\n{}\n\n{}\nGoals (the {} series):\n\n{}\nWhole run: {:.0} s \
             (`target/bench/dedup.json` has every figure).\n",
            notes(self),
            summary_lines(self),
            self.series.last().map_or("?", |s| s.format),
            goal_lines(self),
            self.total_seconds
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(
        uploaded_mib: u64,
        logical_mib: u64,
        growth_mib: i64,
        save_s: f64,
        restore_s: f64,
    ) -> JobFigures {
        JobFigures {
            restore_s: Some(1.0),
            build_s: 10.0,
            rebuilt: 3,
            saved: Saved {
                uploaded_bytes: uploaded_mib << 20,
                logical_bytes: logical_mib << 20,
                stored_bytes: logical_mib << 20,
                bytes: None,
                growth_bytes: growth_mib << 20,
                save_s,
                key: String::new(),
            },
            fresh_restores_s: vec![restore_s],
        }
    }

    fn series(
        format: &'static str,
        cold: JobFigures,
        bumps: Vec<JobFigures>,
        pr: JobFigures,
    ) -> Series {
        Series {
            format,
            cold,
            bumps,
            pull_request: pr,
        }
    }

    #[test]
    fn an_archive_is_measured_against_job_zeros_and_contents_against_their_own_size() {
        // Archives of 90 and 110 MiB against job 0's 100: 90 % and 110 %.
        let archive = series(
            ARCHIVE,
            job(100, 100, 100, 5.0, 2.0),
            vec![job(90, 90, 90, 4.0, 2.0), job(110, 110, 110, 6.0, 4.0)],
            job(100, 100, 100, 5.0, 2.0),
        );
        // Contents: 10 of 200 and 30 of 100 MiB uploaded, growth 20 and 40 MiB.
        let contents = series(
            "contents",
            job(100, 100, 100, 5.0, 2.0),
            vec![job(10, 200, 20, 3.0, 2.0), job(30, 100, 40, 2.0, 4.2)],
            job(20, 100, 20, 2.0, 2.0),
        );
        assert_eq!(archive.upload_pct(&archive.bumps[0]), 90.0);
        assert_eq!(archive.upload_pct(&archive.bumps[1]), 110.0);
        assert_eq!(contents.upload_pct(&contents.bumps[0]), 5.0);
        assert_eq!(contents.growth_pct(&contents.bumps[1]), 40.0);

        let (summaries, goals) = Report::judge(&[archive, contents]);
        let s = &summaries[1];
        assert_eq!((s.mean_upload_pct, s.max_upload_pct), (17.5, 30.0));
        assert_eq!((s.mean_growth_pct, s.max_growth_pct), (25.0, 40.0));
        assert_eq!((s.median_save_s, s.median_restore_s), (2.5, 3.1));
        assert!((s.last_restore_ratio - 1.05).abs() < 1e-9);
        assert_eq!(s.pull_request_upload_pct, 20.0);
        assert_eq!(summaries[0].last_restore_ratio, 1.0);
        let met: Vec<bool> = goals.iter().map(|g| g.met).collect();
        assert_eq!(met, [true, true, true, true, true]);
    }

    #[test]
    fn goals_say_which_are_not_met() {
        let archive = series(
            ARCHIVE,
            job(100, 100, 100, 5.0, 2.0),
            vec![job(100, 100, 100, 2.0, 2.0)],
            job(100, 100, 100, 5.0, 2.0),
        );
        // Everything whole again: nothing met.
        let same = series(
            "contents",
            job(100, 100, 100, 5.0, 2.0),
            vec![job(100, 100, 100, 3.0, 3.0)],
            job(100, 100, 100, 5.0, 2.0),
        );
        let (_, goals) = Report::judge(&[archive, same]);
        assert!(goals.iter().all(|g| !g.met), "{goals:?}");
    }
}
