//! Checks a manifest against the configured limits: files that must not be stored
//! (keys, credentials), files too large, paths too long or not portable, content
//! stored twice. Nothing in the workspace depends on this crate.

mod rules;

use bench_config::Config;
use bench_core::Manifest;
use bench_report::{Align, Render, Table, human};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    Forbidden,
    TooLarge,
    PathTooLong,
    NotPortable,
    CaseCollision,
    Duplicate,
    Empty,
    OddExecutable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub rule: Rule,
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub files: u64,
    pub bytes: u64,
    /// Worst first, then by path.
    pub findings: Vec<Finding>,
}

impl AuditReport {
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// Whether the manifest may be stored as it is.
    pub fn passes(&self) -> bool {
        self.count(Severity::Error) == 0
    }
}

/// Audits the files of `manifest` that the scan settings of `config` keep.
pub fn audit(manifest: &Manifest, config: &Config) -> Result<AuditReport, bench_core::Error> {
    let kept = manifest.filter(&config.scan.filter()?);
    let mut findings = Vec::new();
    rules::forbidden(&kept, &config.limits.forbidden, &mut findings)?;
    rules::sizes(&kept, &config.limits, &mut findings);
    rules::portability(&kept, &mut findings);
    rules::duplicates(&kept, &mut findings);
    rules::odd_executables(&kept, &mut findings);
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.path.cmp(&b.path))
            .then_with(|| a.rule.cmp(&b.rule))
    });
    Ok(AuditReport {
        files: kept.len() as u64,
        bytes: kept.total_size(),
        findings,
    })
}

impl Render for AuditReport {
    fn text(&self) -> String {
        let mut out = format!("{} files, {} audited: ", self.files, human(self.bytes));
        if self.findings.is_empty() {
            out.push_str("no findings\n");
            return out;
        }
        out.push_str(&format!(
            "{} errors, {} warnings, {} notes\n\n",
            self.count(Severity::Error),
            self.count(Severity::Warning),
            self.count(Severity::Info)
        ));
        let mut table = Table::new([
            ("severity", Align::Left),
            ("rule", Align::Left),
            ("path", Align::Left),
            ("why", Align::Left),
        ]);
        for f in &self.findings {
            let rule = serde_json::to_value(f.rule)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let severity = format!("{:?}", f.severity).to_lowercase();
            table.row([severity, rule, f.path.clone(), f.message.clone()]);
        }
        out.push_str(&table.to_string());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_secrets_sizes_and_waste() {
        let mut m = Manifest::default();
        m.add("deploy/id_rsa", b"-----BEGIN OPENSSH PRIVATE KEY-----");
        m.add("data/big.bin", &vec![0; 2048]);
        m.add("data/copy.bin", &vec![0; 2048]);
        m.add("Readme.md", b"# a");
        m.add("README.md", b"# b");
        m.add("notes/aux.txt", b"");
        m.add("target/debug/x", b"ignored: the scan excludes target/");
        m.entries.get_mut("Readme.md").expect("entry").executable = true;
        let mut config = Config::default();
        config.limits.max_file_bytes = 1024;
        let report = audit(&m, &config).expect("audit");
        let rules: Vec<(Rule, &str)> = report
            .findings
            .iter()
            .map(|f| (f.rule, f.path.as_str()))
            .collect();
        assert_eq!(
            rules,
            [
                (Rule::CaseCollision, "Readme.md"),
                (Rule::TooLarge, "data/big.bin"),
                (Rule::TooLarge, "data/copy.bin"),
                (Rule::Forbidden, "deploy/id_rsa"),
                (Rule::Duplicate, "data/copy.bin"),
                (Rule::NotPortable, "notes/aux.txt"),
                (Rule::OddExecutable, "Readme.md"),
                (Rule::Empty, "notes/aux.txt"),
            ]
        );
        assert!(!report.passes());
        assert!(report.text().contains("4 errors, 2 warnings, 2 notes"));
    }
}
