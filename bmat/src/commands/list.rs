//! `bmat cache list [--prefix P]`: the caches of the job's own scope (as its token
//! sees them), newest first: a table on stdout for people, or one JSON object with
//! `--json`; one outcome line on stderr either way.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use bmat_wire::api::{CacheInfo, CacheRef};
use serde::Serialize;

use crate::commands::outcome::one_line;
use crate::context::JobContext;
use crate::output;
use crate::progress::human_bytes;
use crate::transfer::api::ApiClient;

/// A validated list request.
pub struct ListRequest {
    pub prefix: Option<String>,
}

/// What a list came to.
pub struct Listing {
    pub prefix: Option<String>,
    /// The caches, newest first; or why they could not be listed (one line).
    pub caches: Result<Vec<CacheInfo>, String>,
    pub elapsed: Duration,
}

/// Pages the signer may answer before the list is given up as endless.
const MAX_PAGES: usize = 10_000;

/// Lists every page; never fails, a failure is part of the [`Listing`].
pub async fn list(req: ListRequest, ctx: &JobContext) -> Listing {
    let started = Instant::now();
    let caches = match ctx.api() {
        Ok(api) => all_pages(&api, req.prefix.as_deref(), ctx.tuning.list_page).await,
        Err(e) => Err(e.into()),
    };
    match caches {
        Ok(caches) => Listing {
            prefix: req.prefix,
            caches: Ok(newest_first(caches)),
            elapsed: started.elapsed(),
        },
        Err(e) => Listing::failed(req.prefix, &e, started.elapsed()),
    }
}

async fn all_pages(
    api: &ApiClient,
    prefix: Option<&str>,
    page_size: u32,
) -> anyhow::Result<Vec<CacheInfo>> {
    let mut caches = Vec::new();
    let mut after: Option<CacheRef> = None;
    for _ in 0..MAX_PAGES {
        let page = api.list_page(prefix, after.as_ref(), page_size).await?;
        caches.extend(page.caches);
        match page.next {
            // Pages go forward by (scope, key); one that does not would loop.
            Some(next) if after.as_ref().is_some_and(|a| key_of(a) >= key_of(&next)) => {
                bail!("the signer's list does not move forward (after {next:?})")
            }
            Some(next) => after = Some(next),
            None => return Ok(caches),
        }
    }
    bail!("the signer's list has more than {MAX_PAGES} pages")
}

fn key_of(r: &CacheRef) -> (&str, &str) {
    (&r.scope, &r.key)
}

fn newest_first(mut caches: Vec<CacheInfo>) -> Vec<CacheInfo> {
    caches.sort_by(|a, b| (b.created_at, &b.scope, &b.key).cmp(&(a.created_at, &a.scope, &a.key)));
    caches
}

/// The `--json` object.
#[derive(Serialize)]
struct JsonListing<'a> {
    outcome: &'static str,
    prefix: Option<&'a str>,
    caches: Option<&'a [CacheInfo]>,
    seconds: f64,
    error: Option<&'a str>,
}

impl Listing {
    pub fn failed(prefix: Option<String>, e: &anyhow::Error, elapsed: Duration) -> Listing {
        Listing {
            prefix,
            caches: Err(one_line(e)),
            elapsed,
        }
    }

    /// The outcome line on stderr.
    pub fn line(&self, strict: bool) -> String {
        let prefix = match &self.prefix {
            Some(p) => format!(" with prefix {p}"),
            None => String::new(),
        };
        match &self.caches {
            Ok(caches) => {
                let total: u64 = caches.iter().map(|c| c.size).sum();
                let n = caches.len();
                let s = if n == 1 { "" } else { "s" };
                format!("cache list: {n} cache{s}{prefix}, {}", human_bytes(total))
            }
            Err(e) => {
                let level = if strict { "error" } else { "warning" };
                format!("{level}: cache list{prefix} failed: {e}")
            }
        }
    }

    pub fn exit_code(&self, strict: bool) -> i32 {
        if self.caches.is_err() && strict { 1 } else { 0 }
    }

    pub fn json(&self) -> serde_json::Result<String> {
        let (outcome, caches, error) = match &self.caches {
            Ok(caches) => ("listed", Some(caches.as_slice()), None),
            Err(e) => ("failed", None, Some(e.as_str())),
        };
        serde_json::to_string(&JsonListing {
            outcome,
            prefix: self.prefix.as_deref(),
            caches,
            seconds: (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            error,
        })
    }

    /// The table for people (nothing when there are no caches), ages as of `now`.
    pub fn table(&self, now: SystemTime) -> String {
        let caches = match &self.caches {
            Ok(c) if !c.is_empty() => c,
            _ => return String::new(),
        };
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let mut rows = vec![["KEY", "SCOPE", "SIZE", "CREATED", "LAST USED"].map(String::from)];
        rows.extend(caches.iter().map(|c| {
            [
                c.key.clone(),
                c.scope.clone(),
                human_bytes(c.size),
                human_age(now - c.created_at),
                human_age(now - c.last_used_at),
            ]
        }));
        let mut widths = [0usize; 5];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table (or, with `json`, the JSON object) on stdout and the outcome
    /// line on stderr. Tries both; fails with the first error.
    pub fn print(&self, strict: bool, json: bool) -> std::io::Result<()> {
        let data = if json {
            self.json()
                .map_err(std::io::Error::other)
                .and_then(|text| output::println(&text))
        } else {
            output::print(&self.table(SystemTime::now()))
        };
        let line = output::eprintln(&self.line(strict));
        data.and(line)
    }
}

/// `12 s ago`, `5 min ago`, `3 h ago`, `2 d ago`.
pub fn human_age(secs: i64) -> String {
    match secs.max(0) {
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(key: &str, created_at: i64, size: u64) -> CacheInfo {
        CacheInfo {
            owner: "o".into(),
            scope: "refs/heads/main".into(),
            key: key.into(),
            size,
            sha256: "00".into(),
            created_at,
            last_used_at: created_at + 60,
        }
    }

    #[test]
    fn newest_first_then_by_key() {
        let sorted = newest_first(vec![
            cache("a", 10, 1),
            cache("b", 30, 1),
            cache("c", 30, 1),
        ]);
        let keys: Vec<&str> = sorted.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["c", "b", "a"]);
    }

    #[test]
    fn table_has_human_sizes_and_ages() {
        let listing = Listing {
            prefix: None,
            caches: Ok(vec![cache("deps-1", 1_000_000, 5 << 20)]),
            elapsed: Duration::ZERO,
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000 + 7200);
        let table = listing.table(now);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2, "{table}");
        assert!(lines[0].starts_with("KEY     SCOPE"), "{table}");
        assert_eq!(
            lines[1],
            "deps-1  refs/heads/main  5.0 MiB  2 h ago  1 h ago"
        );
        assert_eq!(listing.line(false), "cache list: 1 cache, 5.0 MiB");
    }

    #[test]
    fn a_failure_is_a_warning_and_null_caches() {
        let listing = Listing {
            prefix: Some("deps-".into()),
            caches: Err("boom".into()),
            elapsed: Duration::ZERO,
        };
        assert_eq!(
            listing.line(false),
            "warning: cache list with prefix deps- failed: boom"
        );
        assert_eq!((listing.exit_code(false), listing.exit_code(true)), (0, 1));
        let json: serde_json::Value =
            serde_json::from_str(&listing.json().unwrap_or_default()).unwrap_or_default();
        assert_eq!(json["outcome"], "failed");
        assert!(json["caches"].is_null());
        assert_eq!(listing.table(SystemTime::now()), "");
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(human_age(-5), "0 s ago");
        assert_eq!(human_age(59), "59 s ago");
        assert_eq!(human_age(600), "10 min ago");
        assert_eq!(human_age(86_400 * 3), "3 d ago");
    }
}
