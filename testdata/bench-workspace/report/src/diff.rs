//! A diff of two manifests, as `git status` would say it.

use std::fmt::Write as _;

use bench_core::Diff;
use serde::Serialize;

use crate::{Render, human, human_delta};

#[derive(Debug, Clone, Serialize)]
pub struct DiffReport<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub diff: &'a Diff,
    pub size_delta: i64,
    pub transfer_bytes: u64,
}

impl<'a> DiffReport<'a> {
    pub fn new(from: &'a str, to: &'a str, diff: &'a Diff) -> DiffReport<'a> {
        DiffReport {
            from,
            to,
            diff,
            size_delta: diff.size_delta(),
            transfer_bytes: diff.transfer_size(),
        }
    }
}

impl Render for DiffReport<'_> {
    fn text(&self) -> String {
        let diff = self.diff;
        let mut out = format!("{} -> {}\n", self.from, self.to);
        if diff.is_empty() {
            out.push_str("no change\n");
            return out;
        }
        let renames = diff.renames();
        let renamed_from = |p: &str| renames.iter().any(|(from, _)| *from == p);
        let renamed_to = |p: &str| renames.iter().any(|(_, to)| *to == p);
        for (from, to) in &renames {
            let _ = writeln!(out, "R {from} -> {to}");
        }
        for (path, entry) in diff.removed.iter().filter(|(p, _)| !renamed_from(p)) {
            let _ = writeln!(out, "- {path} ({})", human(entry.size));
        }
        for (path, entry) in diff.added.iter().filter(|(p, _)| !renamed_to(p)) {
            let _ = writeln!(out, "+ {path} ({})", human(entry.size));
        }
        for change in &diff.changed {
            let what = match (
                change.old.sha256 == change.new.sha256,
                change.new.executable,
            ) {
                (true, true) => "now executable".to_owned(),
                (true, false) => "no longer executable".to_owned(),
                (false, _) => human_delta(change.new.size as i64 - change.old.size as i64),
            };
            let _ = writeln!(out, "M {} ({what})", change.path);
        }
        let _ = writeln!(
            out,
            "{} added, {} removed, {} changed; size {}, {} to transfer",
            diff.added.len(),
            diff.removed.len(),
            diff.changed.len(),
            human_delta(self.size_delta),
            human(self.transfer_bytes)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bench_core::Manifest;

    #[test]
    fn renders_renames_and_changes() {
        let mut old = Manifest::default();
        old.add("a.txt", b"moved");
        old.add("b.txt", b"short");
        let mut new = Manifest::default();
        new.add("c.txt", b"moved");
        new.add("b.txt", b"longer text");
        let diff = Diff::between(&old, &new);
        let text = DiffReport::new("v1", "v2", &diff).text();
        assert_eq!(
            text,
            "v1 -> v2\nR a.txt -> c.txt\nM b.txt (+6 B)\n\
             1 added, 1 removed, 1 changed; size +6 B, 16 B to transfer\n"
        );
    }
}
