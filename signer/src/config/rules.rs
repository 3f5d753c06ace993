//! What serde cannot check in a config, as a table of rules: each names the field it
//! checks and says what is wrong with it. [`validate`] applies them in order and
//! reports the first broken one.

use std::collections::HashSet;

use super::error::ConfigError;
use super::types::{Config, MAX_PART_SIZE, MIN_PART_SIZE};
use Rule::{Check, Presignable, Within};

/// The longest `limits.ttl_days`: ten years.
pub const MAX_TTL_DAYS: f64 = 3650.0;
/// The longest duration any `*_secs` field may name: 30 days.
pub const MAX_SECS: u64 = 30 * 24 * 3600;
/// The longest duration any `*_ms` field may name: 30 days.
pub const MAX_MS: u64 = MAX_SECS * 1000;
/// The largest size in bytes: below 2^53, what a JSON number carries exactly (and far
/// below what SQLite's i64 holds).
pub const MAX_SIZE: u64 = (1 << 53) - 1;
/// The shortest and longest `timing.prefix_lease_secs`: a restart after a crash waits
/// up to the lease.
pub const PREFIX_LEASE_SECS: (u64, u64) = (3, 3600);
/// The largest count (uploads, connections).
pub const MAX_COUNT: u64 = 1_000_000;

/// What is wrong: below the rule's field (`[2].scope` for an element of a list, empty
/// for the field itself) and why.
pub struct Broken {
    at: String,
    reason: String,
}

impl Broken {
    fn because(reason: impl Into<String>) -> Broken {
        Broken {
            at: String::new(),
            reason: reason.into(),
        }
    }

    fn at(at: impl Into<String>, reason: impl Into<String>) -> Broken {
        Broken {
            at: at.into(),
            reason: reason.into(),
        }
    }
}

/// How a rule checks its field.
enum Rule {
    /// Any check.
    Check(fn(&Config) -> Result<(), Broken>),
    /// A number from the first bound to the second, both included.
    Within(u64, u64, fn(&Config) -> u64),
    /// A presigned URL's lifetime: from 1 s to SigV4's limit of 7 days.
    Presignable(fn(&Config) -> u64),
}

impl Rule {
    fn check(&self, c: &Config) -> Result<(), Broken> {
        match self {
            Rule::Check(check) => check(c),
            Rule::Within(min, max, value) => match value(c) {
                v if v < *min || v > *max => Err(Broken::because(format!(
                    "= {v} must be from {min} to {max}"
                ))),
                _ => Ok(()),
            },
            Rule::Presignable(value) => match value(c) {
                0 => Err(Broken::because("must be at least 1")),
                v if v > 7 * 24 * 3600 => Err(Broken::because(format!(
                    "= {v} is above SigV4's limit of 604800 (7 days)"
                ))),
                _ => Ok(()),
            },
        }
    }
}

/// Every rule, in the order they are checked: the field, and its check.
const RULES: &[(&str, Rule)] = &[
    ("s3.endpoint", Check(|c| not_blank(&c.s3.endpoint))),
    (
        "s3.endpoint",
        Check(|c| match url::Url::parse(&c.s3.endpoint) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
            _ => Err(Broken::because(format!(
                "{:?} is not an http(s) URL",
                c.s3.endpoint
            ))),
        }),
    ),
    ("s3.bucket", Check(|c| not_blank(&c.s3.bucket))),
    ("s3.region", Check(|c| not_blank(&c.s3.region))),
    ("s3.prefix", Check(s3_prefix)),
    (
        "metrics.listen",
        Check(|c| match &c.metrics {
            Some(m) if m.listen.port() != 0 && m.listen == c.listen => {
                Err(Broken::because(format!(
                    "= {} is also listen: the metrics need an address of their own",
                    m.listen
                )))
            }
            _ => Ok(()),
        }),
    ),
    (
        "limits.part_size",
        Check(|c| {
            let v = c.limits.part_size;
            if v < MIN_PART_SIZE {
                return Err(Broken::because(format!(
                    "= {v} is below S3's minimum part size of {MIN_PART_SIZE} (5 MiB)"
                )));
            }
            if v > MAX_PART_SIZE {
                return Err(Broken::because(format!(
                    "= {v} is above S3's maximum part size of {MAX_PART_SIZE} (5 GiB)"
                )));
            }
            Ok(())
        }),
    ),
    (
        "limits.max_cache_size",
        Within(1, MAX_SIZE, |c| c.limits.max_cache_size),
    ),
    (
        "limits.owner_quota",
        Within(0, MAX_SIZE, |c| c.limits.owner_quota),
    ),
    (
        "limits.scope_quota",
        Within(0, MAX_SIZE, |c| c.limits.scope_quota),
    ),
    (
        "limits.protected_scopes",
        Check(|c| {
            for (i, p) in c.limits.protected_scopes.0.iter().enumerate() {
                pattern(format!("[{i}]"), p, bmat_wire::validate_scope)?;
            }
            Ok(())
        }),
    ),
    (
        "limits.max_live_uploads",
        Within(1, MAX_COUNT, |c| c.limits.max_live_uploads),
    ),
    (
        "limits.max_live_unprotected_uploads",
        Within(1, MAX_COUNT, |c| c.limits.max_live_unprotected_uploads),
    ),
    (
        "limits.reports_per_token",
        Within(1, MAX_COUNT, |c| c.limits.reports_per_token),
    ),
    (
        "limits.max_connections",
        Within(1, MAX_COUNT, |c| c.limits.max_connections as u64),
    ),
    (
        "limits.max_connections_per_token",
        Within(1, MAX_COUNT, |c| c.limits.max_connections_per_token as u64),
    ),
    (
        "limits.ttl_days",
        Check(|c| {
            let v = c.limits.ttl_days;
            if v.is_finite() && v > 0.0 && v <= MAX_TTL_DAYS {
                Ok(())
            } else {
                Err(Broken::because(format!(
                    "= {v} must be a positive number of days, at most {MAX_TTL_DAYS}"
                )))
            }
        }),
    ),
    ("", Check(durations)),
    (
        "timing.prefix_lease_secs",
        Within(PREFIX_LEASE_SECS.0, PREFIX_LEASE_SECS.1, |c| {
            c.timing.prefix_lease_secs
        }),
    ),
    (
        "timing.part_url_expiry_secs",
        Presignable(|c| c.timing.part_url_expiry_secs),
    ),
    (
        "timing.download_url_expiry_secs",
        Presignable(|c| c.timing.download_url_expiry_secs),
    ),
    (
        "timing.completion_max_backoff_ms",
        Within(0, MAX_MS, |c| c.timing.completion_max_backoff_ms),
    ),
    (
        "timing.completion_backoff_ms",
        Check(|c| {
            let t = &c.timing;
            if t.completion_backoff_ms == 0 || t.completion_max_backoff_ms < t.completion_backoff_ms
            {
                return Err(Broken::because(format!(
                    "= {} must be at least 1 and not above timing.completion_max_backoff_ms = {}",
                    t.completion_backoff_ms, t.completion_max_backoff_ms
                )));
            }
            Ok(())
        }),
    ),
    (
        "job_tokens.default_ttl_secs",
        Check(|c| {
            let p = &c.job_tokens;
            if p.default_ttl_secs > p.max_ttl_secs {
                return Err(Broken::because(format!(
                    "= {} is above job_tokens.max_ttl_secs = {}",
                    p.default_ttl_secs, p.max_ttl_secs
                )));
            }
            Ok(())
        }),
    ),
    (
        "tokens",
        Check(|c| {
            if c.tokens.is_empty() && c.operators.is_empty() {
                return Err(Broken::because(
                    "needs at least one [[tokens]] or [[operators]] entry",
                ));
            }
            Ok(())
        }),
    ),
    (
        "tokens",
        Check(|c| {
            for (i, tok) in c.tokens.iter().enumerate() {
                if tok.owner.trim().is_empty() {
                    return Err(Broken::at(format!("[{i}].owner"), "is empty"));
                }
                scope_name(format!("[{i}].scope"), &tok.scope)?;
                for (j, r) in tok.read_scopes.iter().enumerate() {
                    scope_name(format!("[{i}].read_scopes[{j}]"), r)?;
                }
            }
            Ok(())
        }),
    ),
    (
        "operators",
        Check(|c| {
            for (i, op) in c.operators.iter().enumerate() {
                if op.name.trim().is_empty() {
                    return Err(Broken::at(format!("[{i}].name"), "is empty"));
                }
                if op.owners.is_empty() {
                    return Err(Broken::at(format!("[{i}].owners"), "is empty"));
                }
                for (j, p) in op.owners.iter().enumerate() {
                    pattern(format!("[{i}].owners[{j}]"), p, |_| Ok(()))?;
                }
            }
            Ok(())
        }),
    ),
    ("", Check(secrets)),
];

/// Checks the rules serde cannot express; the error names the field.
pub fn validate(cfg: &Config) -> Result<(), ConfigError> {
    for (field, rule) in RULES {
        rule.check(cfg).map_err(|b| ConfigError::Invalid {
            field: format!("{field}{}", b.at),
            reason: b.reason,
        })?;
    }
    Ok(())
}

fn not_blank(v: &str) -> Result<(), Broken> {
    if v.trim().is_empty() {
        Err(Broken::because("is empty"))
    } else {
        Ok(())
    }
}

/// Every duration in seconds (but the presigned URLs' lifetimes) is from its least
/// value to [`MAX_SECS`].
fn durations(c: &Config) -> Result<(), Broken> {
    let (t, j) = (&c.timing, &c.job_tokens);
    for (field, v, min) in [
        (
            "timing.header_read_timeout_secs",
            t.header_read_timeout_secs,
            1,
        ),
        ("timing.idle_timeout_secs", t.idle_timeout_secs, 1),
        ("timing.body_read_timeout_secs", t.body_read_timeout_secs, 1),
        ("timing.lease_secs", t.lease_secs, 1),
        ("timing.stale_margin_secs", t.stale_margin_secs, 0),
        (
            "timing.report_check_window_secs",
            t.report_check_window_secs,
            1,
        ),
        ("timing.reaper_interval_secs", t.reaper_interval_secs, 1),
        (
            "timing.completion_give_up_after_secs",
            t.completion_give_up_after_secs,
            1,
        ),
        (
            "timing.worker_start_delay_secs",
            t.worker_start_delay_secs,
            0,
        ),
        ("job_tokens.default_ttl_secs", j.default_ttl_secs, 1),
        ("job_tokens.max_ttl_secs", j.max_ttl_secs, 1),
    ] {
        if v < min || v > MAX_SECS {
            return Err(Broken::at(
                field,
                format!("= {v} must be from {min} to {MAX_SECS} (30 days)"),
            ));
        }
    }
    Ok(())
}

fn s3_prefix(c: &Config) -> Result<(), Broken> {
    let p = &c.s3.prefix;
    let ok = !p.is_empty()
        && !p.starts_with('/')
        && !p.ends_with('/')
        && !p.contains("//")
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Broken::because(format!(
            "{p:?} must be non-empty, use only letters, digits, '/', '.', '_', '-', and not \
             start or end with '/'"
        )))
    }
}

/// A name pattern (`crate::names::matches`): a name, or a prefix ending in `*`, or `*`
/// alone; what comes before the `*` must pass `rule`.
fn pattern(
    at: String,
    p: &str,
    rule: fn(&str) -> Result<(), bmat_wire::KeyError>,
) -> Result<(), Broken> {
    let fixed = p.strip_suffix('*').unwrap_or(p);
    let wrong = |why: String| Err(Broken::at(at.clone(), format!("= {p:?}: {why}")));
    if fixed.contains('*') || (fixed.is_empty() && p != "*") {
        return wrong("a name, or a prefix ending in '*'".to_owned());
    }
    match fixed {
        "" => Ok(()),
        _ => rule(fixed).or_else(|e| wrong(e.to_string())),
    }
}

fn scope_name(at: String, v: &str) -> Result<(), Broken> {
    bmat_wire::validate_scope(v).map_err(|e| Broken::at(at, format!("{v:?} {e}")))
}

/// Every token and operator credential is set, and no two are the same.
fn secrets(c: &Config) -> Result<(), Broken> {
    let all = c
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("tokens[{i}].token"), &t.token))
        .chain(
            c.operators
                .iter()
                .enumerate()
                .map(|(i, o)| (format!("operators[{i}].token"), &o.token)),
        );
    let mut seen = HashSet::new();
    for (field, secret) in all {
        if secret.trim().is_empty() {
            return Err(Broken::at(field, "is empty"));
        }
        if !seen.insert(secret.as_str()) {
            return Err(Broken::at(field, "repeats an earlier token"));
        }
    }
    Ok(())
}
