//! Usage counters: lookups that hit or missed and caches evicted, per owner, scope and
//! hour. Recording is one UPSERT; reading sums the hours of the last day and week and
//! joins the bytes stored (caches' and retained objects' sizes) and logical bytes. Hours older than [`KEEP_HOURS`] are pruned by the reaper.

use std::collections::BTreeMap;

use bmat_wire::api::Activity;
use rusqlite::params;

use super::error::RegistryError;
use super::schema::Registry;
use super::values::{Place, unsigned};

const HOUR_MS: i64 = 3_600_000;
/// Hours in "the last day" and "the last week": the current one and those before it.
pub const DAY_HOURS: i64 = 24;
pub const WEEK_HOURS: i64 = 7 * 24;
/// Hours kept: a week and a day, so the last week is always whole.
pub const KEEP_HOURS: i64 = WEEK_HOURS + DAY_HOURS;

/// The hour (since the Unix epoch) a registry time falls in.
pub fn hour_of(now_ms: i64) -> i64 {
    now_ms.div_euclid(HOUR_MS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageEvent {
    Hit,
    Miss,
    Eviction,
}

/// Whose usage to read; `None` is every owner (or scope).
#[derive(Debug, Clone, Copy, Default)]
pub struct UsageFilter<'a> {
    pub owner: Option<&'a str>,
    pub scope: Option<&'a str>,
}

/// One place's caches and activity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaceUsage {
    pub owner: String,
    pub scope: String,
    /// Stored: its caches' sizes and its retained objects'.
    pub bytes: u64,
    /// What its caches would weigh as archives: sizes, or logical sizes of contents.
    pub logical_bytes: u64,
    pub caches: u64,
    pub last_day: Activity,
    pub last_week: Activity,
}

/// The whole registry, for the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryTotals {
    pub caches: u64,
    /// Compressed bytes of the caches.
    pub bytes: u64,
    /// Compressed bytes of retained objects (see `registry::refs`).
    pub retained_bytes: u64,
    /// Σ logical size (size for archives) of the caches.
    pub logical_bytes: u64,
    /// Uploads finished by their client and waiting for the completion worker.
    pub completion_queue: u64,
}

impl Registry {
    /// Counts one event in `at` in the hour of `now`.
    pub fn record_usage(
        &self,
        at: &Place<'_>,
        event: UsageEvent,
        now: i64,
    ) -> Result<(), RegistryError> {
        let one = |e: UsageEvent| i64::from(event == e);
        self.conn
            .prepare_cached(
                "INSERT INTO usage (owner, scope, hour, hits, misses, evictions)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (owner, scope, hour) DO UPDATE SET
                    hits = hits + excluded.hits,
                    misses = misses + excluded.misses,
                    evictions = evictions + excluded.evictions",
            )?
            .execute(params![
                at.owner,
                at.scope,
                hour_of(now),
                one(UsageEvent::Hit),
                one(UsageEvent::Miss),
                one(UsageEvent::Eviction)
            ])?;
        Ok(())
    }

    /// Every place matching `filter` that holds caches or saw activity in the last
    /// week, by owner and scope.
    pub fn usage(
        &self,
        filter: UsageFilter<'_>,
        now: i64,
    ) -> Result<Vec<PlaceUsage>, RegistryError> {
        // Retained objects are stored bytes of their scope, but neither caches nor
        // logical bytes.
        let mut sizes = self.conn.prepare_cached(
            "SELECT owner, scope, sum(size), sum(logical), sum(cache) FROM
                (SELECT owner, scope, size, coalesce(logical_size, size) AS logical,
                        1 AS cache
                 FROM caches
                 UNION ALL SELECT owner, scope, size, 0, 0 FROM retained)
             WHERE (?1 IS NULL OR owner = ?1) AND (?2 IS NULL OR scope = ?2)
             GROUP BY owner, scope",
        )?;
        let rows = sizes.query_map(params![filter.owner, filter.scope], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                unsigned(r.get(2)?),
                unsigned(r.get(3)?),
                unsigned(r.get(4)?),
            ))
        })?;
        let mut found: BTreeMap<(String, String), PlaceUsage> = BTreeMap::new();
        for row in rows {
            let (owner, scope, bytes, logical_bytes, caches) = row?;
            let p = place(&mut found, owner, scope);
            p.bytes = bytes;
            p.logical_bytes = logical_bytes;
            p.caches = caches;
        }
        let hour = hour_of(now);
        let mut activity = self.conn.prepare_cached(
            "SELECT owner, scope,
                    sum(CASE WHEN hour > ?3 THEN hits ELSE 0 END),
                    sum(CASE WHEN hour > ?3 THEN misses ELSE 0 END),
                    sum(CASE WHEN hour > ?3 THEN evictions ELSE 0 END),
                    sum(hits), sum(misses), sum(evictions)
             FROM usage
             WHERE hour > ?4 AND (?1 IS NULL OR owner = ?1) AND (?2 IS NULL OR scope = ?2)
             GROUP BY owner, scope",
        )?;
        let rows = activity.query_map(
            params![
                filter.owner,
                filter.scope,
                hour - DAY_HOURS,
                hour - WEEK_HOURS
            ],
            |r| {
                let window = |from: usize| -> rusqlite::Result<Activity> {
                    Ok(Activity {
                        hits: unsigned(r.get(from)?),
                        misses: unsigned(r.get(from + 1)?),
                        evictions: unsigned(r.get(from + 2)?),
                    })
                };
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    window(2)?,
                    window(5)?,
                ))
            },
        )?;
        for row in rows {
            let (owner, scope, day, week) = row?;
            let p = place(&mut found, owner, scope);
            p.last_day = day;
            p.last_week = week;
        }
        Ok(found.into_values().collect())
    }

    /// Forgets the hours before the last [`KEEP_HOURS`].
    pub fn prune_usage(&self, now: i64) -> Result<usize, RegistryError> {
        Ok(self.conn.execute(
            "DELETE FROM usage WHERE hour <= ?1",
            params![hour_of(now) - KEEP_HOURS],
        )?)
    }

    pub fn totals(&self) -> Result<RegistryTotals, RegistryError> {
        let (caches, bytes, logical_bytes) = self.conn.query_row(
            "SELECT count(*), coalesce(sum(size), 0), coalesce(sum(coalesce(logical_size, size)), 0)
             FROM caches",
            [],
            |r| Ok((unsigned(r.get(0)?), unsigned(r.get(1)?), unsigned(r.get(2)?))),
        )?;
        let retained_bytes =
            self.conn
                .query_row("SELECT coalesce(sum(size), 0) FROM retained", [], |r| {
                    Ok(unsigned(r.get(0)?))
                })?;
        let completion_queue = self.conn.query_row(
            "SELECT count(*) FROM uploads WHERE state = 'finished'",
            [],
            |r| Ok(unsigned(r.get(0)?)),
        )?;
        Ok(RegistryTotals {
            caches,
            bytes,
            retained_bytes,
            logical_bytes,
            completion_queue,
        })
    }
}

fn place(
    found: &mut BTreeMap<(String, String), PlaceUsage>,
    owner: String,
    scope: String,
) -> &mut PlaceUsage {
    found
        .entry((owner.clone(), scope.clone()))
        .or_insert_with(|| PlaceUsage {
            owner,
            scope,
            ..PlaceUsage::default()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(&dir.path().join("r.sqlite")).unwrap();
        (dir, reg)
    }

    fn cache(reg: &Registry, owner: &str, scope: &str, key: &str, size: i64) {
        reg.conn
            .execute(
                "INSERT INTO caches (owner, scope, key, ulid, size, sha256, created_at,
                                     last_used_at)
                 VALUES (?1, ?2, ?3, ?3, ?4, '00', 0, 0)",
                params![owner, scope, key, size],
            )
            .unwrap();
    }

    const NOW: i64 = 1_000 * HOUR_MS + 5;

    #[test]
    fn sizes_and_counts_per_place_over_a_day_and_a_week() {
        let (_d, reg) = open();
        let main = Place {
            owner: "o",
            scope: "main",
        };
        cache(&reg, "o", "main", "a", 10);
        cache(&reg, "o", "main", "b", 20);
        cache(&reg, "p", "main", "c", 5);
        for (event, at) in [
            (UsageEvent::Hit, NOW),
            (UsageEvent::Hit, NOW),
            (UsageEvent::Miss, NOW - 23 * HOUR_MS),
            // Outside the last day, inside the week.
            (UsageEvent::Hit, NOW - 24 * HOUR_MS),
            (UsageEvent::Eviction, NOW - 167 * HOUR_MS),
            // Outside the week.
            (UsageEvent::Hit, NOW - 168 * HOUR_MS),
        ] {
            reg.record_usage(&main, event, at).unwrap();
        }
        let pr = Place {
            owner: "o",
            scope: "pr",
        };
        reg.record_usage(&pr, UsageEvent::Miss, NOW).unwrap();

        let all = reg.usage(UsageFilter::default(), NOW).unwrap();
        let places: Vec<(&str, &str)> = all
            .iter()
            .map(|p| (p.owner.as_str(), p.scope.as_str()))
            .collect();
        assert_eq!(places, [("o", "main"), ("o", "pr"), ("p", "main")]);
        let m = &all[0];
        assert_eq!((m.bytes, m.logical_bytes, m.caches), (30, 30, 2));
        let (day, week) = (m.last_day, m.last_week);
        assert_eq!((day.hits, day.misses, day.evictions), (2, 1, 0));
        assert_eq!((week.hits, week.misses, week.evictions), (3, 1, 1));
        assert_eq!((all[1].bytes, all[1].last_day.misses), (0, 1));

        let only = UsageFilter {
            owner: Some("o"),
            scope: Some("pr"),
        };
        assert_eq!(reg.usage(only, NOW).unwrap().len(), 1);

        // The hour past the week and a day goes; the week stays whole.
        reg.record_usage(&main, UsageEvent::Hit, NOW - KEEP_HOURS * HOUR_MS)
            .unwrap();
        assert_eq!(reg.prune_usage(NOW).unwrap(), 1);
        assert_eq!(
            reg.usage(UsageFilter::default(), NOW).unwrap()[0]
                .last_week
                .hits,
            3
        );
    }

    #[test]
    fn retained_objects_are_stored_bytes_and_contents_count_their_logical_size() {
        let (_d, reg) = open();
        cache(&reg, "o", "main", "a", 10);
        cache(&reg, "o", "main", "b", 3);
        reg.conn
            .execute_batch(
                "UPDATE caches SET format = 2, logical_size = 40 WHERE key = 'b';
                 INSERT INTO retained (object, owner, scope, size, since)
                 VALUES ('R', 'o', 'main', 7, 0), ('S', 'o', 'pr', 5, 0);",
            )
            .unwrap();
        let all = reg.usage(UsageFilter::default(), NOW).unwrap();
        let got: Vec<_> = all
            .iter()
            .map(|p| (p.scope.as_str(), p.bytes, p.logical_bytes, p.caches))
            .collect();
        assert_eq!(got, [("main", 20, 50, 2), ("pr", 5, 0, 0)]);
        let t = reg.totals().unwrap();
        assert_eq!((t.bytes, t.retained_bytes, t.logical_bytes), (13, 12, 50));
    }

    #[test]
    fn totals_count_caches_bytes_and_the_completion_queue() {
        let (_d, reg) = open();
        assert_eq!(reg.totals().unwrap(), RegistryTotals::default());
        cache(&reg, "o", "main", "a", 10);
        cache(&reg, "p", "main", "b", 7);
        let t = reg.totals().unwrap();
        assert_eq!((t.caches, t.bytes, t.completion_queue), (2, 17, 0));
    }
}
