//! Reading a config: the file, its TOML, then the rules ([`super::rules`]). Errors are
//! one line naming the file, the line and the field, never quoting the file's text.

use std::path::Path;

use anyhow::Context;

use super::error::ConfigError;
use super::rules;
use super::types::Config;

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text).map_err(|problem| ConfigError::InFile {
            path: path.to_owned(),
            problem: Box::new(problem),
        })
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config =
            toml::from_str(text).map_err(|error| describe_toml_error(text, &error))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Serialises to TOML (what the test stack writes for the binary to read).
    pub fn to_toml(&self) -> anyhow::Result<String> {
        toml::to_string(self).context("cannot serialise the signer config")
    }

    /// Checks the rules serde cannot express; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        rules::validate(self)
    }
}

/// Where a TOML error is, by line number and the field that line sets, and toml's
/// message with every quoted string blanked: nothing of the file's text but key names,
/// so a broken `token = "…` line never prints the token.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let message = blank_quoted(&e.message().trim().replace('\n', " "));
    let Some(span) = e.span() else {
        return ConfigError::TomlWhole { message };
    };
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    ConfigError::Toml {
        line,
        field: field_at(text, line),
        message,
    }
}

/// `"…"` for every double-quoted part of a message (serde quotes values it refuses).
fn blank_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (i, part) in message.split('"').enumerate() {
        if i % 2 == 0 {
            out.push_str(part);
        } else {
            out.push_str("\"…\"");
        }
    }
    out
}

/// The field line `line` (1-based) sets: its table (`[[tokens]]` counted, as
/// `tokens[1]`) and its key, when both are plain names.
fn field_at(text: &str, line: usize) -> Option<String> {
    let plain = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    let mut table = String::new();
    let mut arrays: Vec<(String, usize)> = Vec::new();
    let mut key = None;
    for (n, l) in text.lines().take(line).enumerate() {
        let l = l.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
            let name = name.trim().to_owned();
            let i = match arrays.iter_mut().find(|(a, _)| *a == name) {
                Some((_, count)) => {
                    *count += 1;
                    *count - 1
                }
                None => {
                    arrays.push((name.clone(), 1));
                    0
                }
            };
            table = format!("{name}[{i}]");
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            table = name.trim().to_owned();
        } else if n + 1 == line {
            key = l.split_once('=').map(|(k, _)| k.trim().to_owned());
        }
    }
    let key = key.filter(|k| plain(k))?;
    if table.is_empty() {
        return Some(key);
    }
    plain(table.split('[').next().unwrap_or("")).then(|| format!("{table}.{key}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::types::{GIB, MIB, default_listen};

    const MINIMAL: &str = r#"
[s3]
endpoint = "http://127.0.0.1:3900"
bucket = "caches"

[[tokens]]
token = "t0ken"
owner = "acme/widgets"
"#;

    #[test]
    fn minimal_config_gets_the_defaults() {
        let cfg = Config::parse(MINIMAL).unwrap();
        assert_eq!(cfg.listen, default_listen());
        assert_eq!(cfg.limits.max_cache_size, 10 * GIB);
        assert_eq!(cfg.limits.part_size, 16 * MIB);
        assert_eq!(cfg.timing.part_url_expiry_secs, 900);
        assert_eq!(cfg.s3.prefix, "bmat");
        assert!(cfg.s3.path_style);
        assert_eq!(cfg.s3.object_name("X"), "bmat/caches/X");
    }

    #[test]
    fn round_trips_through_toml() {
        let mut cfg = Config::parse(MINIMAL).unwrap();
        cfg.limits.ttl_days = 0.5;
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        let again = Config::parse(&cfg.to_toml().unwrap()).unwrap();
        assert_eq!(again.limits.ttl_days, 0.5);
        assert_eq!(again.listen.port(), 0);
        assert_eq!(again.tokens[0].token, "t0ken");
    }

    #[test]
    fn integer_ttl_days_is_accepted() {
        let cfg = Config::parse(&format!("{MINIMAL}\n[limits]\nttl_days = 3\n")).unwrap();
        assert_eq!(cfg.limits.ttl_days, 3.0);
    }

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field() {
        let e = err(&MINIMAL.replace("bucket = \"caches\"", "bucket = 3"));
        assert!(e.contains("bucket"), "{e}");
        assert!(!e.contains('\n'), "{e}");

        let e = err(&format!("{MINIMAL}\n[limits]\npart_size = \"big\"\n"));
        assert!(e.contains("part_size"), "{e}");

        let e = err(&format!("{MINIMAL}\n[timing]\nlease_sec = 3\n"));
        assert!(e.contains("lease_sec"), "{e}");

        let e = err(&MINIMAL.replace("bucket = \"caches\"", ""));
        assert!(e.contains("bucket"), "{e}");

        let e = err(&format!("listen = \"nowhere\"\n{MINIMAL}"));
        assert!(e.contains("listen"), "{e}");
    }

    #[test]
    fn a_toml_error_names_line_and_field_but_never_quotes_the_line() {
        let broken = MINIMAL.replace("token = \"t0ken\"", "token = \"s3cr3t-t0ken");
        let e = err(&broken);
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(e.contains("line 7"), "{e}");
        assert!(e.contains("tokens[0].token"), "{e}");
        let e = err(&format!("{MINIMAL}\n[limits]\npart_size = \"s3cr3t\"\n"));
        assert!(
            !e.contains("s3cr3t") && e.contains("limits.part_size"),
            "{e}"
        );
    }

    #[test]
    fn values_that_overflow_the_reaper_are_refused() {
        for (line, field) in [
            ("[limits]\nttl_days = 150000000000", "limits.ttl_days"),
            ("[limits]\nttl_days = 1e15", "limits.ttl_days"),
            ("[limits]\nttl_days = 3651", "limits.ttl_days"),
            (
                "[limits]\nowner_quota = 9007199254740992",
                "limits.owner_quota",
            ),
            (
                "[timing]\nreaper_interval_secs = 18446744073709551615",
                "timing.reaper_interval_secs",
            ),
            (
                "[timing]\nstale_margin_secs = 2592001",
                "timing.stale_margin_secs",
            ),
            (
                "[timing]\nprefix_lease_secs = 3601",
                "timing.prefix_lease_secs",
            ),
            (
                "[timing]\nprefix_lease_secs = 2",
                "timing.prefix_lease_secs",
            ),
            (
                "[timing]\ncompletion_max_backoff_ms = 9999999999999",
                "timing.completion_max_backoff_ms",
            ),
            (
                "[job_tokens]\nmax_ttl_secs = 2592001",
                "job_tokens.max_ttl_secs",
            ),
        ] {
            let e = err(&format!("{MINIMAL}\n{line}\n"));
            assert!(e.contains(field), "{line}: {e}");
        }
        let cfg = Config::parse(&format!("{MINIMAL}\n[limits]\nttl_days = 3650\n")).unwrap();
        assert_eq!(cfg.limits.ttl().as_secs(), 3650 * 86_400);
    }

    #[test]
    fn connection_and_completion_limits_are_checked() {
        let cfg = Config::parse(MINIMAL).unwrap();
        assert_eq!(cfg.limits.max_connections, 512);
        assert_eq!(cfg.timing.header_read_timeout_secs, 10);
        assert_eq!(cfg.timing.completion_give_up_after_secs, 6 * 3600);
        assert!(!cfg.s3.take_over_prefix);
        for (section, line, field) in [
            ("limits", "max_connections = 0", "limits.max_connections"),
            (
                "timing",
                "header_read_timeout_secs = 0",
                "timing.header_read_timeout_secs",
            ),
            (
                "timing",
                "idle_timeout_secs = 0",
                "timing.idle_timeout_secs",
            ),
            (
                "timing",
                "completion_give_up_after_secs = 0",
                "timing.completion_give_up_after_secs",
            ),
            (
                "timing",
                "completion_backoff_ms = 0",
                "timing.completion_backoff_ms",
            ),
            (
                "timing",
                "completion_max_backoff_ms = 10",
                "timing.completion_backoff_ms",
            ),
        ] {
            let e = err(&format!("{MINIMAL}\n[{section}]\n{line}\n"));
            assert!(e.contains(field), "{line}: {e}");
        }
    }

    #[test]
    fn metrics_are_off_unless_given_an_address_of_their_own() {
        assert!(Config::parse(MINIMAL).unwrap().metrics.is_none());
        let cfg = Config::parse(&format!(
            "{MINIMAL}\n[metrics]\nlisten = \"127.0.0.1:9100\"\n"
        ))
        .unwrap();
        assert_eq!(cfg.metrics.unwrap().listen.port(), 9100);
        let e = err(&format!(
            "listen = \"127.0.0.1:9100\"\n{MINIMAL}\n[metrics]\nlisten = \"127.0.0.1:9100\"\n"
        ));
        assert!(e.contains("metrics.listen"), "{e}");
    }

    #[test]
    fn small_part_size_is_refused() {
        let e = err(&format!("{MINIMAL}\n[limits]\npart_size = 1048576\n"));
        assert!(e.contains("limits.part_size"), "{e}");
    }

    #[test]
    fn tokens_are_required_and_unique() {
        let e = err("[s3]\nendpoint = \"http://x\"\nbucket = \"b\"\n");
        assert!(e.contains("tokens"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[[tokens]]\ntoken = \"t0ken\"\nowner = \"other\"\n"
        ));
        assert!(e.contains("tokens[1].token"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[[operators]]\ntoken = \"t0ken\"\nname = \"ci\"\nowners = [\"*\"]\n"
        ));
        assert!(e.contains("operators[0].token"), "{e}");
    }

    #[test]
    fn static_tokens_default_to_a_writing_token_of_the_default_scope() {
        let cfg = Config::parse(MINIMAL).unwrap();
        let t = &cfg.tokens[0];
        assert_eq!(
            (t.scope.as_str(), t.read_scopes.len(), t.write),
            (bmat_wire::DEFAULT_SCOPE, 0, true)
        );
        assert_eq!(cfg.job_tokens.default_ttl_secs, 4 * 3600);
    }

    #[test]
    fn scopes_and_operator_owners_are_checked() {
        let e = err(&format!("{MINIMAL}scope = \"refs heads\"\n"));
        assert!(e.contains("tokens[0].scope"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[[operators]]\ntoken = \"op\"\nname = \"ci\"\nowners = [\"a*b\"]\n"
        ));
        assert!(e.contains("operators[0].owners[0]"), "{e}");
        let op = "[[operators]]\ntoken = \"op\"\nname = \"ci\"\nowners = [\"acme/*\"]\n";
        let cfg = Config::parse(&format!(
            "[s3]\nendpoint = \"http://x\"\nbucket = \"b\"\n{op}"
        ))
        .unwrap();
        assert_eq!(cfg.operators[0].owners, ["acme/*"]);
        assert!(!format!("{cfg:?}").contains("\"op\""));
    }

    #[test]
    fn protected_scopes_and_scope_limits_are_checked() {
        let limits = Config::parse(MINIMAL).unwrap().limits;
        assert!(limits.protects("default") && limits.protects("refs/heads/main"));
        assert!(!limits.protects("refs/pull/42/merge") && !limits.protects("refs/heads"));
        assert_eq!(
            (limits.scope_quota, limits.max_live_unprotected_uploads),
            (10 * GIB, 64)
        );
        for (line, field) in [
            (
                "protected_scopes = [\"refs/*/main\"]",
                "limits.protected_scopes[0]",
            ),
            (
                "protected_scopes = [\"main\", \"\"]",
                "limits.protected_scopes[1]",
            ),
            (
                "protected_scopes = [\"refs heads/*\"]",
                "limits.protected_scopes[0]",
            ),
            (
                "protected_scopes = [\"/refs*\"]",
                "limits.protected_scopes[0]",
            ),
            ("scope_quota = 9007199254740992", "limits.scope_quota"),
            (
                "max_live_unprotected_uploads = 0",
                "limits.max_live_unprotected_uploads",
            ),
        ] {
            let e = err(&format!("{MINIMAL}\n[limits]\n{line}\n"));
            assert!(e.contains(field), "{line}: {e}");
        }
        let everything = format!("{MINIMAL}\n[limits]\nprotected_scopes = [\"*\"]\n");
        assert!(
            Config::parse(&everything)
                .unwrap()
                .limits
                .protects("refs/pull/1/merge")
        );
        let nothing = format!("{MINIMAL}\n[limits]\nprotected_scopes = []\n");
        assert!(!Config::parse(&nothing).unwrap().limits.protects("default"));
    }

    #[test]
    fn bad_prefix_and_endpoint_are_refused() {
        let e = err(&MINIMAL.replace("bucket = \"caches\"", "bucket = \"c\"\nprefix = \"/x/\""));
        assert!(e.contains("s3.prefix"), "{e}");
        let e = err(&MINIMAL.replace("http://127.0.0.1:3900", "127.0.0.1:3900"));
        assert!(e.contains("s3.endpoint"), "{e}");
    }

    #[test]
    fn debug_redacts_tokens() {
        let cfg = Config::parse(MINIMAL).unwrap();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("t0ken"), "{dbg}");
        assert!(dbg.contains("acme/widgets"));
    }

    #[test]
    fn missing_credential_variable_is_named() {
        let mut cfg = Config::parse(MINIMAL).unwrap();
        cfg.s3.access_key_id_env = "BMAT_TEST_SURELY_UNSET_VARIABLE_1".into();
        let e = cfg.credentials().err().unwrap().to_string();
        assert!(e.contains("BMAT_TEST_SURELY_UNSET_VARIABLE_1"), "{e}");
    }

    #[test]
    fn credentials_file_is_read_and_not_echoed_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.toml");
        std::fs::write(
            &path,
            "access_key_id = \"GKabc\"\nsecret_access_key = \"s3cr3t-0123456789\"\n",
        )
        .unwrap();
        let mut cfg = Config::parse(MINIMAL).unwrap();
        cfg.s3.credentials_file = Some(path.clone());
        let creds = cfg.credentials().unwrap();
        assert_eq!(creds.access_key_id, "GKabc");
        assert_eq!(creds.secret_access_key, "s3cr3t-0123456789");

        std::fs::write(
            &path,
            "access_key_id = \"GKabc\"\nsecret = \"s3cr3t-0123456789\"\n",
        )
        .unwrap();
        let e = cfg.credentials().err().unwrap().to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(e.contains("secret"), "{e}");
    }
}
