//! The deployment files in `deploy/` stay true: the example signer.toml parses with the
//! signer's own loader and shows every field the signer knows, and the systemd units
//! run the binaries with flags they accept and credentials they load.

use std::path::Path;
use std::process::Command;

use signer::config::Config;
use xtask::stack::bins::{workspace_bin, workspace_root};

fn read(rel: &str) -> String {
    std::fs::read_to_string(workspace_root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The example with its commented-out `[[tokens]]` block switched on.
fn with_static_token(text: &str) -> String {
    let start = text
        .find("# [[tokens]]")
        .expect("a commented [[tokens]] example");
    let (head, block) = text.split_at(start);
    let block: Vec<&str> = block
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .collect();
    format!("{head}{}\n", block.join("\n"))
}

/// Dotted names of every leaf field of a JSON value (`s3.bucket`, `tokens.write`).
fn field_names(value: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let name = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                field_names(v, &name, out);
            }
        }
        serde_json::Value::Array(items) if items.iter().any(|i| i.is_object()) => {
            for item in items {
                field_names(item, path, out);
            }
        }
        _ => out.push(path.to_owned()),
    }
}

#[test]
fn the_example_signer_config_parses_and_shows_every_field() {
    let path = workspace_root().join("deploy/signer.toml");
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
    // Where the units put things.
    assert_eq!(cfg.database, Path::new("/var/lib/bmat/registry.sqlite"));
    assert_eq!(
        cfg.s3.credentials_file.as_deref(),
        Some(Path::new(
            "/run/credentials/bmat-signer.service/s3-credentials.toml"
        ))
    );
    assert_eq!(cfg.listen.to_string(), "127.0.0.1:8080");
    // A port of its own: 9100 is node_exporter's on most hosts.
    assert_eq!(
        cfg.metrics.map(|m| m.listen.to_string()).as_deref(),
        Some("127.0.0.1:8081")
    );
    assert!(cfg.tokens.is_empty(), "static tokens stay commented out");
    assert_eq!(cfg.operators.len(), 1);

    let text = read("deploy/signer.toml");
    let full = Config::parse(&with_static_token(&text))
        .unwrap_or_else(|e| panic!("the commented [[tokens]] example: {e}"));
    assert_eq!(full.tokens.len(), 1);
    let mut names = Vec::new();
    field_names(
        &serde_json::to_value(&full).expect("config as JSON"),
        "",
        &mut names,
    );
    assert!(names.len() > 30, "{names:?}");
    for name in names {
        let (section, field) = name.rsplit_once('.').unwrap_or(("", &name));
        let top = section.split('.').next().unwrap_or("");
        assert!(
            text.contains(&format!("\n{field} =")) || text.contains(&format!("\n# {field} =")),
            "deploy/signer.toml does not show {name}"
        );
        assert!(
            top.is_empty()
                || text.contains(&format!("[{top}]"))
                || text.contains(&format!("[[{top}]]")),
            "deploy/signer.toml has no section for {name}"
        );
    }
}

/// `KEY=VALUE` lines of a unit file's sections, in order.
fn directives(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn values<'a>(d: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    d.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Checks a unit's ExecStart against the binary's `--help`, and that every `%d/NAME`
/// it reads is loaded with `LoadCredential=NAME:…`. Returns the directives.
fn check_unit(file: &str, binary: &str) -> Vec<(String, String)> {
    let d = directives(&read(&format!("deploy/{file}")));
    let exec = values(&d, "ExecStart");
    assert_eq!(exec.len(), 1, "{file}: one ExecStart");
    let mut words = exec[0].split_whitespace();
    assert_eq!(
        words.next(),
        Some(format!("/usr/local/bin/{binary}").as_str()),
        "{file}"
    );
    let help = Command::new(workspace_bin(binary).expect("binary built"))
        .arg("--help")
        .output()
        .expect("--help runs");
    let help = String::from_utf8_lossy(&help.stdout);
    let loaded: Vec<&str> = values(&d, "LoadCredential")
        .iter()
        .filter_map(|v| v.split_once(':').map(|(name, _)| name))
        .collect();
    for word in words {
        if word.starts_with("--") {
            assert!(
                help.contains(&format!("{word} ")),
                "{file}: {binary} has no flag {word}"
            );
        }
        if let Some(name) = word.strip_prefix("%d/") {
            assert!(loaded.contains(&name), "{file}: {name} is not loaded");
        }
    }
    for key in [
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "ProtectSystem",
    ] {
        let want = if key == "ProtectSystem" {
            "strict"
        } else {
            "yes"
        };
        assert_eq!(values(&d, key), [want], "{file}: {key}");
    }
    d
}

#[test]
fn the_units_run_the_binaries_as_they_are() {
    let signer = check_unit("bmat-signer.service", "signer");
    assert_eq!(values(&signer, "User"), ["bmat-signer"]);
    assert_eq!(values(&signer, "StateDirectory"), ["bmat"]);
    let config = read("deploy/signer.toml");
    for loaded in values(&signer, "LoadCredential") {
        let (name, _) = loaded.split_once(':').expect("NAME:PATH");
        assert!(
            config.contains(&format!("/run/credentials/bmat-signer.service/{name}")),
            "{name} is loaded but the config does not read it"
        );
    }
    // `systemctl reload` sends SIGHUP, and the signer then reads the file the operator
    // edited: not a credential's copy, which systemd makes once at start.
    assert_eq!(values(&signer, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert!(
        values(&signer, "ExecStart")[0].ends_with("--config /etc/bmat/signer.toml"),
        "{:?}",
        values(&signer, "ExecStart")
    );

    let shim = check_unit("bmat-shim@.service", "agent-shim");
    assert_eq!(values(&shim, "RuntimeDirectory"), ["bmat-shim/%i"]);
    let exec = values(&shim, "ExecStart")[0];
    assert!(
        exec.contains("--socket %t/bmat-shim/%i/agent.sock") && exec.contains("--socket-mode 660"),
        "{exec}"
    );
    // The slot's allow list is not optional: without the file the unit fails to start
    // (a leading '-' would start it with every runner let in).
    assert!(
        values(&shim, "EnvironmentFile").contains(&"/etc/bmat/shim-%i.env"),
        "{:?}",
        values(&shim, "EnvironmentFile")
    );
}
