//! What a cache command came to: the line a person reads on stderr, the JSON object a
//! script reads on stdout (`--json`), and the exit code.
//!
//! Exit codes (docs/design.md, "Exit codes"): 0 for hit, miss, saved, skipped and for any failure of the
//! cache infrastructure (one `warning:` line; the job goes on without its cache), 1
//! for such a failure under `--strict`, 2 for a usage error (see [`UsageError`]).

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::progress::{human_bytes, human_rate};

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Hit {
        key: String,
        matched_key: String,
        /// The scope the cache came from, and whether it is the job's own.
        scope: String,
        own_scope: bool,
        bytes: u64,
        archive_bytes: u64,
        elapsed: Duration,
    },
    Miss {
        key: String,
        elapsed: Duration,
    },
    Saved {
        key: String,
        bytes: u64,
        /// The cache's compressed size (a contents cache's: what an archive of it
        /// would about weigh, the contents it reuses included).
        archive_bytes: u64,
        /// What this save sent to S3.
        uploaded_bytes: u64,
        /// What S3 holds for this cache: its object and every object it reads.
        stored_bytes: u64,
        /// A contents cache's base: the key of the cache whose contents it reuses.
        base: Option<String>,
        elapsed: Duration,
    },
    Skipped {
        key: String,
        reason: Skip,
        elapsed: Duration,
    },
    /// `restore --lookup-only` found a cache; nothing was downloaded or written.
    Found {
        key: String,
        matched_key: String,
        scope: String,
        own_scope: bool,
        archive_bytes: u64,
        elapsed: Duration,
    },
    /// `delete`: the cache is gone; the next save of the key writes a new one.
    Deleted {
        key: String,
        elapsed: Duration,
    },
    /// `delete --prefix`: every cache of the job's scope under the prefix is gone.
    DeletedMany {
        prefix: String,
        count: u64,
        bytes: u64,
        elapsed: Duration,
    },
    /// `delete`: the job's scope has no cache under the key.
    NotFound {
        key: String,
        elapsed: Duration,
    },
    /// `delete` with a read-only token: refused, nothing deleted.
    Refused {
        key: String,
        elapsed: Duration,
    },
    /// The cache step failed; the tree is as it was. `action` names the command
    /// ("save", "restore", "delete").
    Failed {
        key: String,
        action: &'static str,
        error: Failure,
        elapsed: Duration,
    },
}

/// What failed, and the one line that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

/// Where a failure is: what to look at first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The cache service, the network, S3, or a tool the step runs (cargo, rustc).
    Infrastructure,
    /// The cache itself: damaged, or holding entries no restore may write. The only
    /// kind the signer is told of (docs/design.md, "Healing").
    CorruptCache,
    /// This job's trees, disk or environment: a file that cannot be read or written,
    /// no space, a symlink or a non-empty directory where the cache has entries, no
    /// `$HOME` for `~/` paths. Never told to the signer: the cache may be sound.
    LocalTree,
}

impl Failure {
    /// `error` and its causes, on one line.
    pub fn new(kind: FailureKind, error: &anyhow::Error) -> Failure {
        Failure {
            kind,
            message: one_line(error),
        }
    }
}

/// A failure of the cache service (or of whatever `error` says).
pub fn infrastructure(error: impl Into<anyhow::Error>) -> Failure {
    Failure::new(FailureKind::Infrastructure, &error.into())
}

/// A failure of the infrastructure, said in so many words.
impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure {
            kind: FailureKind::Infrastructure,
            message: message.to_owned(),
        }
    }
}

/// An error and its causes on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// Why a save stored nothing (or a delete was refused), and why that is not a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// The key has a cache: keys are written once.
    Exists,
    /// Another job is saving the key right now.
    InProgress,
    /// The job's token may restore but not save (a pull request's, say).
    ReadOnly,
    /// The job's scope matches none of `--save-if-scope`.
    Scope,
}

/// The command line is wrong: exit 2, nothing attempted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The `--json` object. Documented in `bmat cache --help`.
#[derive(Debug, Serialize, PartialEq)]
pub struct JsonOutcome<'a> {
    pub outcome: &'static str,
    pub key: &'a str,
    pub matched_key: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub reason: Option<Skip>,
    pub bytes: Option<u64>,
    pub archive_bytes: Option<u64>,
    /// `delete --prefix`: how many caches were deleted (`bytes`: their size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<u64>,
    /// `saved`: the bytes this save sent to S3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uploaded_bytes: Option<u64>,
    /// `saved`: the stored bytes of every object the cache reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<u64>,
    /// `saved`, a contents cache over a base: the base's key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<&'a str>,
    pub seconds: f64,
    pub error: Option<&'a str>,
}

pub const JSON_HELP: &str = "\
With --json, one JSON object is printed on stdout when the command ends:
  {\"outcome\": \"hit\" | \"miss\" | \"saved\" | \"skipped\" | \"deleted\" | \"not_found\"
              | \"refused\" | \"failed\",
   \"key\": the key asked for,
   \"matched_key\": the key restored or found (differs from key after a --fallback match), or null,
   \"scope\": on a hit, the scope the cache came from (the job's own, or one it may read), or null,
   \"reason\": on skipped, \"exists\" | \"in_progress\" | \"read_only\" | \"scope\"; on refused, \"read_only\"; else null,
   \"bytes\": uncompressed archive bytes packed or unpacked (delete --prefix: the bytes
            of the caches deleted), or null,
   \"deleted\": (delete --prefix only) how many caches were deleted,
   \"archive_bytes\": compressed bytes of the cache (a hit: downloaded; with
                    --lookup-only: its size, nothing downloaded), or null,
   \"uploaded_bytes\": (saved only) compressed bytes this save sent to S3: less than
                     archive_bytes when it reused contents of a base cache,
   \"stored_bytes\": (saved only) compressed bytes S3 holds for the cache: its own
                   object and every object it reads contents from, whole (frames
                   no longer used by any cache included, until a save repacks them),
   \"base\": (saved only, when it reused contents) the key of the cache it reused from,
   \"seconds\": time taken,
   \"error\": one line saying what failed, or null}
The outcome line for people is always printed on stderr. `bmat cache list --json`
prints {\"outcome\": \"listed\" | \"failed\", \"prefix\", \"caches\": [{\"owner\", \"scope\",
\"key\", \"size\", \"sha256\", \"created_at\", \"last_used_at\"}, …] newest first (times in
seconds since the Unix epoch), or null on failure, \"seconds\", \"error\"}.

Exit status: 0 for hit, miss, saved, skipped (a read-only token's save included), deleted,
not found, refused (a read-only token's delete), and for a failure of the cache service
(a `warning:` line; the tree is left as it was); 1 for such a failure with --strict
or BMAT_CACHE_STRICT=1, and for a miss with --fail-on-miss; 2 for a usage error
(unknown flag, invalid key, a path outside the working directory).";

impl Outcome {
    pub fn key(&self) -> &str {
        match self {
            Outcome::Hit { key, .. }
            | Outcome::Miss { key, .. }
            | Outcome::Saved { key, .. }
            | Outcome::Skipped { key, .. }
            | Outcome::Found { key, .. }
            | Outcome::Deleted { key, .. }
            | Outcome::DeletedMany { prefix: key, .. }
            | Outcome::NotFound { key, .. }
            | Outcome::Refused { key, .. }
            | Outcome::Failed { key, .. } => key,
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failed { .. })
    }

    pub fn is_miss(&self) -> bool {
        matches!(self, Outcome::Miss { .. })
    }

    /// The failure of `action` on `key`, begun at `started`.
    pub fn failed(key: &str, action: &'static str, started: Instant, error: Failure) -> Outcome {
        Outcome::Failed {
            key: key.to_owned(),
            action,
            error,
            elapsed: started.elapsed(),
        }
    }

    /// The one line printed on stderr.
    pub fn line(&self, strict: bool) -> String {
        match self {
            Outcome::Hit {
                key,
                matched_key,
                scope,
                own_scope,
                bytes,
                elapsed,
                ..
            } => {
                let via = via(key, matched_key, scope, *own_scope);
                format!("cache hit: {key} ({via}{})", amount(*bytes, *elapsed))
            }
            Outcome::Found {
                key,
                matched_key,
                scope,
                own_scope,
                archive_bytes,
                ..
            } => {
                let via = via(key, matched_key, scope, *own_scope);
                let size = human_bytes(*archive_bytes);
                format!("cache hit (lookup only): {key} ({via}{size} compressed)")
            }
            Outcome::Deleted { key, .. } => format!("cache deleted: {key}"),
            Outcome::DeletedMany {
                prefix,
                count,
                bytes,
                ..
            } => format!(
                "caches deleted: {count} whose key starts with {prefix} ({})",
                human_bytes(*bytes)
            ),
            Outcome::NotFound { key, .. } => format!("cache not found, nothing deleted: {key}"),
            Outcome::Refused { key, .. } => {
                format!("cache delete refused (read-only token): {key}")
            }
            Outcome::Miss { key, .. } => format!("cache miss: {key}"),
            Outcome::Saved {
                key,
                bytes,
                archive_bytes,
                uploaded_bytes,
                base,
                elapsed,
                ..
            } => {
                let reused = match base {
                    Some(base) => format!(
                        ", {} uploaded, the rest reused from {base}",
                        human_bytes(*uploaded_bytes)
                    ),
                    None => String::new(),
                };
                format!(
                    "cache saved: {key} ({}, {} compressed{reused})",
                    amount(*bytes, *elapsed),
                    human_bytes(*archive_bytes)
                )
            }
            Outcome::Skipped { key, reason, .. } => match reason {
                Skip::Exists => format!("cache exists, skipped: {key}"),
                Skip::InProgress => {
                    format!("cache exists, skipped: {key} (another job is saving it)")
                }
                Skip::ReadOnly => format!("cache save skipped (read-only): {key}"),
                Skip::Scope => {
                    format!("cache save skipped (the job's scope is not one that saves): {key}")
                }
            },
            Outcome::Failed {
                key, action, error, ..
            } => {
                let level = if strict { "error" } else { "warning" };
                format!("{level}: cache {action} of {key} failed: {}", error.message)
            }
        }
    }

    pub fn json(&self) -> JsonOutcome<'_> {
        let mut j = JsonOutcome {
            outcome: "",
            key: self.key(),
            matched_key: None,
            scope: None,
            reason: None,
            bytes: None,
            archive_bytes: None,
            deleted: None,
            uploaded_bytes: None,
            stored_bytes: None,
            base: None,
            seconds: 0.0,
            error: None,
        };
        let elapsed = match self {
            // A lookup-only hit unpacked nothing: no bytes.
            Outcome::Hit {
                matched_key,
                scope,
                archive_bytes,
                elapsed,
                ..
            }
            | Outcome::Found {
                matched_key,
                scope,
                archive_bytes,
                elapsed,
                ..
            } => {
                j.outcome = "hit";
                j.matched_key = Some(matched_key);
                j.scope = Some(scope);
                j.archive_bytes = Some(*archive_bytes);
                if let Outcome::Hit { bytes, .. } = self {
                    j.bytes = Some(*bytes);
                }
                elapsed
            }
            Outcome::Miss { elapsed, .. } => {
                j.outcome = "miss";
                elapsed
            }
            Outcome::Saved {
                bytes,
                archive_bytes,
                uploaded_bytes,
                stored_bytes,
                base,
                elapsed,
                ..
            } => {
                j.outcome = "saved";
                j.bytes = Some(*bytes);
                j.archive_bytes = Some(*archive_bytes);
                j.uploaded_bytes = Some(*uploaded_bytes);
                j.stored_bytes = Some(*stored_bytes);
                j.base = base.as_deref();
                elapsed
            }
            Outcome::Skipped {
                reason, elapsed, ..
            } => {
                j.outcome = "skipped";
                j.reason = Some(*reason);
                elapsed
            }
            Outcome::Deleted { elapsed, .. } => {
                j.outcome = "deleted";
                elapsed
            }
            Outcome::DeletedMany {
                count,
                bytes,
                elapsed,
                ..
            } => {
                j.outcome = "deleted";
                j.deleted = Some(*count);
                j.bytes = Some(*bytes);
                elapsed
            }
            Outcome::NotFound { elapsed, .. } => {
                j.outcome = "not_found";
                elapsed
            }
            Outcome::Refused { elapsed, .. } => {
                j.outcome = "refused";
                j.reason = Some(Skip::ReadOnly);
                elapsed
            }
            Outcome::Failed { error, elapsed, .. } => {
                j.outcome = "failed";
                j.error = Some(&error.message);
                elapsed
            }
        };
        j.seconds = (elapsed.as_secs_f64() * 1000.0).round() / 1000.0;
        j
    }

    pub fn exit_code(&self, strict: bool) -> i32 {
        if self.is_failure() && strict { 1 } else { 0 }
    }
}

/// How the cache came to match, for the outcome line: `from KEY in scope S, ` (or a
/// part of that), nothing for the exact key of the job's own scope.
fn via(key: &str, matched_key: &str, scope: &str, own_scope: bool) -> String {
    match (matched_key != key, own_scope) {
        (false, true) => String::new(),
        (true, true) => format!("from {matched_key}, "),
        (false, false) => format!("from scope {scope}, "),
        (true, false) => format!("from {matched_key} in scope {scope}, "),
    }
}

/// `412 MiB in 3.1 s, 133 MiB/s`.
fn amount(bytes: u64, elapsed: Duration) -> String {
    format!(
        "{} in {:.1} s, {}",
        human_bytes(bytes),
        elapsed.as_secs_f64(),
        human_rate(bytes, elapsed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(2);

    #[test]
    fn lines_read_as_documented() {
        let hit = Outcome::Hit {
            key: "k".into(),
            matched_key: "k".into(),
            scope: "refs/heads/main".into(),
            own_scope: true,
            bytes: 400 << 20,
            archive_bytes: 100 << 20,
            elapsed: SEC,
        };
        assert_eq!(
            hit.line(false),
            "cache hit: k (400 MiB in 2.0 s, 200 MiB/s)"
        );
        let fallback = Outcome::Hit {
            key: "k".into(),
            matched_key: "k-old".into(),
            scope: "refs/heads/main".into(),
            own_scope: true,
            bytes: 400 << 20,
            archive_bytes: 100 << 20,
            elapsed: SEC,
        };
        assert_eq!(
            fallback.line(false),
            "cache hit: k (from k-old, 400 MiB in 2.0 s, 200 MiB/s)"
        );
        let hit_from = |key: &str, own_scope| Outcome::Hit {
            key: key.into(),
            matched_key: "k-old".into(),
            scope: "refs/heads/main".into(),
            own_scope,
            bytes: 400 << 20,
            archive_bytes: 100 << 20,
            elapsed: SEC,
        };
        assert_eq!(
            hit_from("k", false).line(false),
            "cache hit: k (from k-old in scope refs/heads/main, 400 MiB in 2.0 s, 200 MiB/s)"
        );
        assert_eq!(
            hit_from("k-old", false).line(false),
            "cache hit: k-old (from scope refs/heads/main, 400 MiB in 2.0 s, 200 MiB/s)"
        );
        assert_eq!(
            Outcome::Miss {
                key: "k".into(),
                elapsed: SEC
            }
            .line(false),
            "cache miss: k"
        );
        assert_eq!(
            Outcome::Skipped {
                key: "k".into(),
                reason: Skip::Exists,
                elapsed: SEC
            }
            .line(false),
            "cache exists, skipped: k"
        );
        assert_eq!(
            Outcome::Skipped {
                key: "k".into(),
                reason: Skip::ReadOnly,
                elapsed: SEC
            }
            .line(false),
            "cache save skipped (read-only): k"
        );
        let failed = Outcome::Failed {
            key: "k".into(),
            action: "save",
            error: "boom".into(),
            elapsed: SEC,
        };
        assert_eq!(failed.line(false), "warning: cache save of k failed: boom");
        assert_eq!(failed.line(true), "error: cache save of k failed: boom");
    }

    #[test]
    fn lookup_only_and_delete_lines_and_json() {
        let found = Outcome::Found {
            key: "k".into(),
            matched_key: "k-old".into(),
            scope: "refs/heads/main".into(),
            own_scope: false,
            archive_bytes: 100 << 20,
            elapsed: SEC,
        };
        assert_eq!(
            found.line(false),
            "cache hit (lookup only): k (from k-old in scope refs/heads/main, 100 MiB compressed)"
        );
        let j = found.json();
        assert_eq!(
            (j.outcome, j.matched_key, j.bytes, j.archive_bytes),
            ("hit", Some("k-old"), None, Some(100 << 20))
        );
        let refused = Outcome::Refused {
            key: "k".into(),
            elapsed: SEC,
        };
        assert_eq!(
            refused.line(true),
            "cache delete refused (read-only token): k"
        );
        assert_eq!(refused.exit_code(true), 0);
        assert_eq!(
            (refused.json().outcome, refused.json().reason),
            ("refused", Some(Skip::ReadOnly))
        );
        let gone = Outcome::NotFound {
            key: "k".into(),
            elapsed: SEC,
        };
        assert_eq!(gone.line(false), "cache not found, nothing deleted: k");
        assert_eq!(gone.json().outcome, "not_found");
    }

    #[test]
    fn only_failures_under_strict_exit_nonzero() {
        let failed = Outcome::Failed {
            key: "k".into(),
            action: "restore",
            error: "x".into(),
            elapsed: SEC,
        };
        assert_eq!(failed.exit_code(false), 0);
        assert_eq!(failed.exit_code(true), 1);
        assert_eq!(
            Outcome::Miss {
                key: "k".into(),
                elapsed: SEC
            }
            .exit_code(true),
            0
        );
    }

    #[test]
    fn json_has_every_field() {
        let saved = Outcome::Saved {
            key: "k".into(),
            bytes: 10,
            archive_bytes: 5,
            uploaded_bytes: 2,
            stored_bytes: 7,
            base: Some("b".into()),
            elapsed: SEC,
        };
        let text = serde_json::to_string(&saved.json()).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"outcome":"saved","key":"k","matched_key":null,"scope":null,"reason":null,"bytes":10,"archive_bytes":5,"uploaded_bytes":2,"stored_bytes":7,"base":"b","seconds":2.0,"error":null}"#
        );
        let skipped = Outcome::Skipped {
            key: "k".into(),
            reason: Skip::ReadOnly,
            elapsed: SEC,
        };
        let text = serde_json::to_string(&skipped.json()).unwrap_or_default();
        assert!(
            text.contains(r#""outcome":"skipped""#) && text.contains(r#""reason":"read_only""#),
            "{text}"
        );
    }
}
