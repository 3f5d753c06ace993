//! README.md's examples stay true: the sample signer.toml parses, and `.ci/run` runs
//! the test command README names with the Garage xtask pins. And every section of
//! docs/design.md that a comment cites exists.

use xtask::stack::bins::{GARAGE_VERSION, workspace_root};

fn read(rel: &str) -> String {
    std::fs::read_to_string(workspace_root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The fenced block that starts with `first_line`.
fn block_starting_with<'a>(text: &'a str, first_line: &str) -> &'a str {
    let start = text
        .find(&format!("```toml\n{first_line}\n"))
        .expect("sample block in README");
    let body = &text[start + "```toml\n".len()..];
    &body[..body.find("```").expect("closing fence")]
}

#[test]
fn sample_signer_config_parses() {
    let readme = read("README.md");
    let sample = block_starting_with(&readme, "# signer.toml");
    let cfg =
        signer::config::Config::parse(sample).unwrap_or_else(|e| panic!("README sample: {e}"));
    assert!(cfg.s3.path_style);
    assert_eq!(cfg.tokens.len(), 1);
    assert_eq!(cfg.tokens[0].scope, "refs/heads/main");
    assert_eq!(cfg.operators[0].owners, ["acme/*"]);
    assert_eq!(cfg.limits.ttl_days, 7.0);
}

#[test]
fn ci_runs_the_readme_test_command_with_the_pinned_garage() {
    let readme = read("README.md");
    let ci = read(".ci/run");
    assert!(readme.contains("cargo xtask test"));
    assert!(
        ci.lines().any(|l| l.trim() == "cargo xtask test"),
        ".ci/run must run `cargo xtask test`"
    );
    assert!(
        ci.contains("$(cargo xtask garage)") && !ci.contains("GARAGE_VERSION="),
        ".ci/run must take Garage from `cargo xtask garage`, which pins the version"
    );
    assert!(
        readme.contains(&format!("garage@{GARAGE_VERSION}")),
        "README names another Garage"
    );
}

/// The `.rs` files of the workspace, `target/` and hidden directories left out.
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// The section names cited as in `docs/design.md, "Healing"` in `text`, comment markers
/// removed so that a citation may wrap. A quoted text that cannot be a section name
/// (this file's own string literals) is no citation.
fn cited_sections(text: &str) -> Vec<String> {
    const DOC: &str = "docs/design.md";
    let joined: String = text
        .lines()
        .map(|l| {
            l.trim_start()
                .trim_start_matches('/')
                .trim_start_matches('!')
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut cited = Vec::new();
    let mut rest = joined.as_str();
    while let Some(at) = rest.find(DOC) {
        rest = &rest[at + DOC.len()..];
        let after = rest.trim_start_matches(',').trim_start();
        let name = after
            .strip_prefix('"')
            .and_then(|q| q.find('"').map(|end| &q[..end]))
            .map(|n| n.split_whitespace().collect::<Vec<_>>().join(" "));
        if let Some(name) = name.filter(|n| {
            !n.is_empty() && n.len() <= 60 && n.chars().all(|c| c.is_alphanumeric() || c == ' ')
        }) {
            cited.push(name);
        }
    }
    cited
}

#[test]
fn comments_cite_sections_the_design_document_has() {
    let design = read("docs/design.md");
    let sections: Vec<&str> = design
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .collect();
    let mut files = Vec::new();
    rust_files(&workspace_root(), &mut files);
    let mut cited = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for name in cited_sections(&text) {
            assert!(
                sections.contains(&name.as_str()),
                "{} cites docs/design.md, \"{name}\", which has no such section (it has: {})",
                file.display(),
                sections.join(", ")
            );
            cited += 1;
        }
    }
    assert!(cited > 0, "no comment cites docs/design.md");
}
