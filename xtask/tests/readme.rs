//! README.md's examples stay true: the sample signer.toml parses, and `.ci/run` runs
//! the test command README names with the Garage xtask pins.

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
