//! Medians, the table (plain text for the terminal, markdown for README) and the JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::inputs::Input;
use super::ops::Sample;

/// What a run reports: a table for the terminal, a markdown body for README, and
/// itself as JSON.
pub(crate) trait Results: serde::Serialize {
    /// The files' names: `{dated}-<time>.json`, `{latest}.json`, `{latest}.md`.
    const NAMES: (&str, &str);
    fn text(&self) -> String;
    fn markdown(&self) -> String;
}

const MIB: f64 = (1u64 << 20) as f64;

/// What was measured, by operation name (see [`Op`]).
pub type Samples = BTreeMap<&'static str, Vec<Sample>>;

/// The measured operations; the names are the JSON's keys.
pub struct Op;

impl Op {
    pub const A_SAVE: &str = "save.a";
    pub const B_SAVE: &str = "save.b";
    pub const C_COMPRESS: &str = "save.c_compress";
    pub const C_PUT: &str = "save.c_put";
    pub const A_RESTORE: &str = "restore.a";
    pub const B_RESTORE: &str = "restore.b";
    pub const C_DECOMPRESS: &str = "restore.c_decompress";
    pub const C_GET: &str = "restore.c_get";
    pub const A_SKIP: &str = "skip.a";
}

/// Medians of each field, taken separately.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Median {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub max_rss_mib: f64,
    pub archive_mib: Option<f64>,
    /// Uncompressed input per second of wall time.
    pub mib_per_s: f64,
    /// CPU time of the stack (S3 server, signer, shim) meanwhile.
    pub stack_cpu_s: f64,
}

pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if !n.is_multiple_of(2) {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

pub fn medians(input: &Input, samples: &Samples) -> BTreeMap<&'static str, Median> {
    samples
        .iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(op, s)| {
            let wall = median(s.iter().map(|x| x.wall_s).collect());
            let archive: Vec<f64> = s
                .iter()
                .filter_map(|x| x.archive_bytes)
                .map(|b| b as f64 / MIB)
                .collect();
            let m = Median {
                wall_s: wall,
                cpu_s: median(s.iter().map(|x| x.cpu_s).collect()),
                max_rss_mib: median(s.iter().map(|x| x.max_rss_bytes as f64 / MIB).collect()),
                archive_mib: (!archive.is_empty()).then(|| median(archive)),
                mib_per_s: input.bytes as f64 / MIB / wall,
                stack_cpu_s: median(s.iter().map(|x| x.stack_cpu_s).collect()),
            };
            (*op, m)
        })
        .collect()
}

/// One input's results, as stored in the JSON.
#[derive(Debug, Serialize)]
pub struct InputResult {
    #[serde(flatten)]
    pub input: Input,
    pub medians: BTreeMap<&'static str, Median>,
    pub samples: Samples,
}

/// The machine, the toolchain and the checkout a run measured.
#[derive(Debug, Serialize)]
pub struct Machine {
    pub date: String,
    pub command: String,
    pub cpus: String,
    pub cpu_model: String,
    pub memory: String,
    pub rustc: String,
    pub git: String,
    /// The 1, 5 and 15 minute load averages when the report was made: other work on
    /// the machine slows what was measured.
    pub load_average: String,
    /// `BMAT_*` tuning overrides in the environment bmat ran with.
    pub bmat_env: BTreeMap<String, String>,
}

impl Machine {
    /// "on DATE: N CPUs (MODEL), M RAM, RUSTC"
    pub fn describe(&self) -> String {
        format!(
            "on {}: {} CPUs ({}), {} RAM, load average {}, {}",
            self.date, self.cpus, self.cpu_model, self.memory, self.load_average, self.rustc
        )
    }

    /// "bmat ran with K=V ...", or nothing.
    pub fn bmat_env_note(&self) -> String {
        if self.bmat_env.is_empty() {
            return String::new();
        }
        let vars: Vec<String> = self
            .bmat_env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("bmat ran with {}.\n\n", vars.join(" "))
    }
}

/// The machine and the run.
#[derive(Debug, Serialize)]
pub struct Header {
    #[serde(flatten)]
    pub machine: Machine,
    pub tar: String,
    pub zstd: String,
    pub reps: usize,
    pub part_size_mib: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub header: Header,
    pub inputs: Vec<InputResult>,
    pub total_seconds: f64,
}

struct Row {
    input: String,
    op: &'static str,
    cells: Vec<String>,
}

const COLUMNS: [&str; 12] = [
    "A bmat",
    "B baseline",
    "C limit",
    "A/B",
    "A/C",
    "C network",
    "A CPU",
    "B CPU",
    "A peak RSS",
    "B peak RSS",
    "archive A / B",
    "stack CPU A / B",
];

fn rows(report: &Report) -> Vec<Row> {
    let mut out = Vec::new();
    for r in &report.inputs {
        let m = |op: &str| r.medians.get(op).copied();
        let label = format!(
            "{} ({}, {} files)",
            r.input.name,
            size(r.input.bytes as f64 / MIB),
            group(r.input.files)
        );
        let ops = [
            (
                "save",
                Op::A_SAVE,
                Op::B_SAVE,
                Op::C_COMPRESS,
                Op::C_PUT,
                "PUT",
            ),
            (
                "restore",
                Op::A_RESTORE,
                Op::B_RESTORE,
                Op::C_DECOMPRESS,
                Op::C_GET,
                "GET",
            ),
        ];
        for (i, (op, a, b, c, net, verb)) in ops.into_iter().enumerate() {
            let (a, b, c, net) = (m(a), m(b), m(c), m(net));
            let timed = |x: Option<Median>| {
                x.map_or("–".to_owned(), |x| {
                    format!("{:.2} s, {:.0} MiB/s", x.wall_s, x.mib_per_s)
                })
            };
            let ratio = |x: Option<Median>, y: Option<Median>| match (x, y) {
                (Some(x), Some(y)) => format!("{:.2}", x.wall_s / y.wall_s),
                _ => "–".to_owned(),
            };
            let cpu =
                |x: Option<Median>| x.map_or("–".to_owned(), |x| format!("{:.1} s", x.cpu_s));
            let rss = |x: Option<Median>| {
                x.map_or("–".to_owned(), |x| format!("{:.0} MiB", x.max_rss_mib))
            };
            let archive = match (m(Op::A_SAVE), m(Op::B_SAVE)) {
                (Some(a), Some(b)) if i == 0 => format!(
                    "{} / {}",
                    size(a.archive_mib.unwrap_or(f64::NAN)),
                    size(b.archive_mib.unwrap_or(f64::NAN))
                ),
                _ => String::new(),
            };
            out.push(Row {
                input: if i == 0 { label.clone() } else { String::new() },
                op,
                cells: vec![
                    timed(a),
                    timed(b),
                    timed(c),
                    ratio(a, b),
                    ratio(a, c),
                    net.map_or("–".to_owned(), |n| format!("{verb} {:.2} s", n.wall_s)),
                    cpu(a),
                    cpu(b),
                    rss(a),
                    rss(b),
                    archive,
                    match (a, b) {
                        (Some(a), Some(b)) => {
                            format!("{:.1} s / {:.1} s", a.stack_cpu_s, b.stack_cpu_s)
                        }
                        _ => "–".to_owned(),
                    },
                ],
            });
        }
        if let Some(skip) = m(Op::A_SKIP) {
            let mut cells = vec![String::new(); COLUMNS.len()];
            cells[0] = format!("{:.3} s", skip.wall_s);
            cells[6] = format!("{:.2} s", skip.cpu_s);
            cells[8] = format!("{:.0} MiB", skip.max_rss_mib);
            out.push(Row {
                input: String::new(),
                op: "save, key exists",
                cells,
            });
        }
    }
    out
}

/// The rows as cells: input, op, then one per column.
fn cells(rows: &[Row]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|row| {
            let mut cells = vec![row.input.clone(), row.op.to_owned()];
            cells.extend(row.cells.iter().cloned());
            cells
        })
        .collect()
}

/// A table with aligned columns, for the terminal.
pub fn text_table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|c| c.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (c, width) in cells.zip(&widths) {
            let pad = width.saturating_sub(c.chars().count());
            s.push_str(c);
            s.push_str(&" ".repeat(pad + 2));
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut head.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// The same table in markdown.
pub fn markdown_table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}

pub fn size(mib: f64) -> String {
    if mib >= 1024.0 {
        format!("{:.2} GiB", mib / 1024.0)
    } else if mib >= 10.0 {
        format!("{mib:.0} MiB")
    } else {
        format!("{mib:.1} MiB")
    }
}

pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Results for Report {
    const NAMES: (&str, &str) = ("bench", "latest");

    /// The table for the terminal.
    fn text(&self) -> String {
        let report = self;
        let mut head = vec!["input", "op"];
        head.extend(COLUMNS);
        text_table(&head, &cells(&rows(report)))
    }

    /// The markdown section body for README (no heading).
    fn markdown(&self) -> String {
        let report = self;
        let h = &report.header;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Measured with `{}` {}, {}, zstd {}; S3 is Garage on \
             loopback. {} repetition(s), interleaved, medians; input sizes are uncompressed, MiB/s \
             is uncompressed input per second. The baseline uploads {} MiB parts; bmat asks the \
             signer for its own (8 MiB by default).\n",
            h.machine.command,
            h.machine.describe(),
            h.tar,
            h.zstd,
            h.reps,
            h.part_size_mib
        );
        let _ = writeln!(
            out,
            "- **A**: `bmat cache save KEY` / `bmat cache restore KEY` (into an empty directory), \
             through the agent shim.\n\
             - **B**: actions/cache's pipeline with the system tools: `tar --posix -cf - -T list | \
             zstd -T0 -3` into a temp file, then parts of that size, 8 in flight, through presigned URLs \
             (plus the SHA-256 the signer wants); restore: lookup, 8 ranged GETs in flight into a \
             temp file, then `zstd -d | tar -x`.\n\
             - **C**: the machine's limits on the same input: compress only (`tar -c | zstd -T0 -3 > \
             /dev/null`) and decompress only (`zstd -d archive | tar -x` from a local file: the second \
             half of B's restore); \"C network\" is a raw parallel PUT / GET of B's archive (8 \
             in flight), bytes already in memory / dropped.\n\
             - CPU is user + system time of the processes (B's transfers: xtask's own threads); \
             peak RSS is `ru_maxrss` (B: tar + zstd, summed); stack CPU is what the S3 \
             server, signer and shim used meanwhile (they share the machine's cores). A/B and A/C are ratios of wall \
             times (below 1: bmat is faster).\n"
        );
        out.push_str(&h.machine.bmat_env_note());
        let mut head = vec!["input", "op"];
        head.extend(COLUMNS);
        out.push_str(&markdown_table(&head, &cells(&rows(report))));
        let _ = writeln!(
            out,
            "\nWhole run: {:.0} s (`target/bench/latest.json` has every sample).",
            report.total_seconds
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn tables_align_columns_and_render_markdown() {
        let rows = vec![
            vec!["a".to_owned(), "1.0 s".to_owned()],
            vec!["longer".to_owned(), "2 s".to_owned()],
        ];
        assert_eq!(
            text_table(&["step", "wall"], &rows),
            "step    wall\na       1.0 s\nlonger  2 s\n"
        );
        assert_eq!(
            markdown_table(&["step", "wall"], &rows),
            "| step | wall |\n|---|---|\n| a | 1.0 s |\n| longer | 2 s |\n"
        );
    }

    #[test]
    fn numbers_are_grouped_and_sized() {
        assert_eq!(group(1234567), "1,234,567");
        assert_eq!(group(999), "999");
        assert_eq!(size(2048.0), "2.00 GiB");
        assert_eq!(size(100.0), "100 MiB");
        assert_eq!(size(1.25), "1.2 MiB");
    }
}
