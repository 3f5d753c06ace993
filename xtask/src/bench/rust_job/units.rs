//! What a `cargo build --message-format json` did, read off its messages: which
//! units it compiled and which it found fresh, third-party or workspace members.

use serde::Serialize;

/// One unit of a build: a compiled target (`compiler-artifact`) or a build script
/// run (`build-script-executed`, counted only when Cargo says it was not fresh).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unit {
    /// `name version (kind)`, e.g. `serde 1.0.228 (build script)`.
    pub name: String,
    /// `lib`, `bin`, `proc-macro`, `build script` or `build script run`.
    pub kind: &'static str,
    /// From crates.io or another registry, or git: not a workspace member (which
    /// Cargo names by a `path+` source).
    pub third_party: bool,
    /// What Cargo said; none for a build script run it does not say it of.
    pub fresh: Option<bool>,
}

impl Unit {
    fn is_run(&self) -> bool {
        self.kind == RUN
    }
}

/// The kind of a build script run (the others are those of targets).
const RUN: &str = "build script run";

/// Every unit in `stdout` (Cargo's JSON messages, one a line; other lines ignored).
pub fn units(stdout: &str) -> Vec<Unit> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|msg| unit(&msg))
        .collect()
}

fn unit(msg: &serde_json::Value) -> Option<Unit> {
    let package_id = msg["package_id"].as_str()?;
    let (kind, fresh) = match msg["reason"].as_str()? {
        "compiler-artifact" => (target_kind(&msg["target"]), msg["fresh"].as_bool()),
        "build-script-executed" => (RUN, msg["fresh"].as_bool()),
        _ => return None,
    };
    Some(Unit {
        name: format!("{} ({kind})", package_name(package_id)),
        kind,
        third_party: ["registry+", "sparse+", "git+"]
            .iter()
            .any(|s| package_id.starts_with(s)),
        fresh,
    })
}

fn target_kind(target: &serde_json::Value) -> &'static str {
    let kinds: Vec<&str> = target["kind"]
        .as_array()
        .map(|k| k.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if kinds.contains(&"custom-build") {
        "build script"
    } else if kinds.contains(&"proc-macro") {
        "proc-macro"
    } else if kinds.contains(&"bin") {
        "bin"
    } else {
        "lib"
    }
}

/// `name version` of a package id: `registry+URL#name@1.2.3` (Cargo ≥ 1.77), or
/// `name 1.2.3 (registry+URL)` (older Cargo); the id itself if it is neither.
fn package_name(id: &str) -> String {
    if let Some((_, spec)) = id.rsplit_once('#') {
        if let Some((name, version)) = spec.split_once('@') {
            return format!("{name} {version}");
        }
        // `path+file:///…/serde#1.0.0`: the name is the last path segment.
        let name = id[..id.len() - spec.len() - 1]
            .rsplit('/')
            .next()
            .unwrap_or(id);
        return format!("{name} {spec}");
    }
    match id.split_once(" (") {
        Some((name_version, _)) => name_version.to_owned(),
        None => id.to_owned(),
    }
}

/// The units of one build, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Compiled targets (fresh or not): the size of the build.
    pub units: usize,
    pub third_party_units: usize,
    /// Build scripts run (fresh or not), beside the units.
    pub build_script_runs: usize,
    /// Third-party units compiled (and build scripts run) again, by name.
    pub third_party_rebuilt: Vec<String>,
    /// Workspace members' units compiled (and build scripts run), by name.
    pub members_rebuilt: Vec<String>,
}

impl Counts {
    pub fn of(units: &[Unit]) -> Counts {
        let compiled = units.iter().filter(|u| !u.is_run());
        let rebuilt = |third_party: bool| {
            units
                .iter()
                .filter(|u| u.third_party == third_party && u.fresh == Some(false))
                .map(|u| u.name.clone())
                .collect()
        };
        Counts {
            units: compiled.clone().count(),
            third_party_units: compiled.filter(|u| u.third_party).count(),
            build_script_runs: units.iter().filter(|u| u.is_run()).count(),
            third_party_rebuilt: rebuilt(true),
            members_rebuilt: rebuilt(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REG: &str = "registry+https://github.com/rust-lang/crates.io-index";

    fn artifact(id: &str, kind: &str, fresh: bool) -> String {
        serde_json::json!({
            "reason": "compiler-artifact",
            "package_id": id,
            "target": {"kind": [kind], "name": "x"},
            "fresh": fresh,
        })
        .to_string()
    }

    #[test]
    fn counts_third_party_units_compiled_again() {
        let serde = format!("{REG}#serde@1.0.228");
        let member = "path+file:///tmp/b/checkout/ws/core#bench-core@0.1.0";
        let stdout = [
            artifact(&serde, "custom-build", true),
            // A build script run Cargo reports without `fresh` (as it does today) is
            // not counted; one with `"fresh": false` is.
            serde_json::json!({"reason": "build-script-executed", "package_id": serde})
                .to_string(),
            serde_json::json!({"reason": "build-script-executed", "package_id": format!("{REG}#libc@0.2.180"), "fresh": false})
                .to_string(),
            artifact(&serde, "lib", false),
            artifact(&format!("{REG}#serde_derive@1.0.228"), "proc-macro", true),
            artifact("git+https://example.com/x.git#abc123", "lib", false),
            artifact(member, "lib", false),
            artifact(
                "path+file:///tmp/b/checkout/ws/cli#bench-cli@0.1.0",
                "bin",
                false,
            ),
            "   Compiling serde v1.0.228".to_owned(),
            serde_json::json!({"reason": "build-finished", "success": true}).to_string(),
        ]
        .join("\n");
        let counts = Counts::of(&units(&stdout));
        assert_eq!(counts.units, 6);
        assert_eq!(counts.third_party_units, 4);
        assert_eq!(counts.build_script_runs, 2);
        assert_eq!(
            counts.third_party_rebuilt,
            [
                "libc 0.2.180 (build script run)",
                "serde 1.0.228 (lib)",
                "x.git abc123 (lib)",
            ]
        );
        assert_eq!(
            counts.members_rebuilt,
            ["bench-core 0.1.0 (lib)", "bench-cli 0.1.0 (bin)"]
        );
    }

    #[test]
    fn package_ids_old_and_new() {
        assert_eq!(
            package_name(&format!("{REG}#serde@1.0.228")),
            "serde 1.0.228"
        );
        assert_eq!(
            package_name("serde 1.0.228 (registry+https://github.com/rust-lang/crates.io-index)"),
            "serde 1.0.228"
        );
        assert_eq!(package_name("path+file:///ws/itoa#1.0.0"), "itoa 1.0.0");
        assert_eq!(package_name("odd"), "odd");
    }
}
