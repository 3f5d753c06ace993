//! Manifests, their summaries and diffs, rendered as aligned text tables or JSON.

mod diff;
mod size;
mod summary;
mod table;

pub use diff::DiffReport;
pub use size::{human, human_delta};
pub use summary::{Group, Summary};
pub use table::{Align, Table};

/// A report that renders as text for people or as JSON for programs.
pub trait Render: serde::Serialize {
    fn text(&self) -> String;

    fn json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}

/// Every file of a manifest: path, size, mode and a short hash.
pub fn manifest_table(manifest: &bench_core::Manifest) -> Table {
    let mut table = Table::new([
        ("path", Align::Left),
        ("size", Align::Right),
        ("mode", Align::Left),
        ("sha256", Align::Left),
    ]);
    for (path, entry) in &manifest.entries {
        table.row([
            path.clone(),
            human(entry.size),
            if entry.executable { "x" } else { "-" }.to_owned(),
            entry.sha256[..12.min(entry.sha256.len())].to_owned(),
        ]);
    }
    table
}
