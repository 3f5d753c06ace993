//! What `GET /metrics` shows (Prometheus text, or OpenMetrics when the scraper asks for
//! it): counters moved where things happen (requests, lookups, uploads, the reaper,
//! reloads) and gauges read from the registry at scrape time (caches, bytes, the
//! completion queue). Served on its own address by [`crate::server`].

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::registry::RegistryTotals;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The route template (`/v1/uploads/:id`), never the raw path: ids would make
    /// a series per upload.
    endpoint: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
    method: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadEvent {
    Started,
    Completed,
    Aborted,
}

impl UploadEvent {
    fn as_str(self) -> &'static str {
        match self {
            UploadEvent::Started => "started",
            UploadEvent::Completed => "completed",
            UploadEvent::Aborted => "aborted",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Applied,
    Refused,
}

impl ReloadOutcome {
    fn as_str(self) -> &'static str {
        match self {
            ReloadOutcome::Applied => "applied",
            ReloadOutcome::Refused => "refused",
        }
    }
}

/// One label with a fixed set of values.
macro_rules! label {
    ($name:ident, $key:ident) => {
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct $name {
            $key: &'static str,
        }
    };
}
label!(LookupLabels, result);
label!(UploadLabels, event);
label!(ReaperLabels, action);
label!(EvictionLabels, reason);
label!(ReloadLabels, outcome);

type Histograms = Family<EndpointLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Histograms,
    lookups: Family<LookupLabels, Counter>,
    committed_bytes: Counter,
    uploads: Family<UploadLabels, Counter>,
    reaper_passes: Counter,
    reaper_actions: Family<ReaperLabels, Counter>,
    evictions: Family<EvictionLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    report_checks: Counter,
    completion_queue: Gauge,
    registry_caches: Gauge,
    registry_bytes: Gauge,
    retained_bytes: Gauge,
    logical_bytes: Gauge,
}

/// Methods outside this list share one label value, so a client cannot mint series.
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "HEAD"];

fn latency_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("bmat_signer"),
            requests: Family::default(),
            latency: Histograms::new_with_constructor(latency_histogram),
            lookups: Family::default(),
            committed_bytes: Counter::default(),
            uploads: Family::default(),
            reaper_passes: Counter::default(),
            reaper_actions: Family::default(),
            evictions: Family::default(),
            reloads: Family::default(),
            report_checks: Counter::default(),
            completion_queue: Gauge::default(),
            registry_caches: Gauge::default(),
            registry_bytes: Gauge::default(),
            retained_bytes: Gauge::default(),
            logical_bytes: Gauge::default(),
        };
        // name, help, unit => metric (the registry adds the prefix, the unit and the
        // `_total` of counters to the name).
        macro_rules! register {
            ($($name:literal, $help:literal, $unit:expr => $metric:expr;)*) => {$(
                match $unit {
                    Some(unit) => m.registry.register_with_unit($name, $help, unit, $metric.clone()),
                    None => m.registry.register($name, $help, $metric.clone()),
                }
            )*};
        }
        register! {
            "http_requests", "API requests answered, by route template, method and status", None => m.requests;
            "http_request_duration", "Time to answer an API request (to its headers), by route template and method", Some(Unit::Seconds) => m.latency;
            "lookups", "Cache lookups, by result", None => m.lookups;
            "committed", "Compressed bytes of caches stored by the completion worker", Some(Unit::Bytes) => m.committed_bytes;
            "uploads", "Uploads started (multipart upload created), completed (cache stored) and aborted", None => m.uploads;
            "reaper_passes", "Reaper passes run", None => m.reaper_passes;
            "reaper_actions", "What the reaper did besides evicting, and the failures it met", None => m.reaper_actions;
            "evictions", "Caches deleted by the reaper: unused past the TTL, or owner over quota", None => m.evictions;
            "config_reloads", "SIGHUP reloads of the config file, applied or refused", None => m.reloads;
            "report_checks", "Caches reported broken that the signer read whole from S3 to check (at most one per cache per window)", None => m.report_checks;
            "completion_queue_depth", "Uploads finished by their client, waiting for the completion worker", None => m.completion_queue;
            "registry_caches", "Caches in the registry", None => m.registry_caches;
            "registry", "Compressed bytes of the caches in the registry", Some(Unit::Bytes) => m.registry_bytes;
            "retained", "Compressed bytes of deleted caches' objects that live caches still read", Some(Unit::Bytes) => m.retained_bytes;
            "logical", "What the caches in the registry would weigh as archives (their size, or the logical size of a cache of contents)", Some(Unit::Bytes) => m.logical_bytes;
        }
        m
    }

    pub fn request(&self, endpoint: &str, method: &str, status: u16, took: Duration) {
        let method = if METHODS.contains(&method) {
            method
        } else {
            "other"
        };
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_owned(),
                method: method.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn lookup(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.lookups.get_or_create(&LookupLabels { result }).inc();
    }

    pub fn upload(&self, event: UploadEvent) {
        self.uploads
            .get_or_create(&UploadLabels {
                event: event.as_str(),
            })
            .inc();
    }

    /// A cache of `bytes` was stored.
    pub fn committed(&self, bytes: u64) {
        self.upload(UploadEvent::Completed);
        self.committed_bytes.inc_by(bytes);
    }

    pub fn reload(&self, outcome: ReloadOutcome) {
        self.reloads
            .get_or_create(&ReloadLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// A reported cache was read from S3 to check it.
    pub fn report_check(&self) {
        self.report_checks.inc();
    }

    /// One reaper pass: how many times it did each action (`stale_upload_aborted`,
    /// `abort_retried`, `orphan_upload_aborted`, `orphan_object_deleted`, `error`) and
    /// how many caches it evicted for each reason (`ttl`, `quota`).
    pub fn reaper_pass(
        &self,
        actions: &[(&'static str, usize)],
        evictions: &[(&'static str, usize)],
    ) {
        self.reaper_passes.inc();
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        for &(action, n) in actions {
            self.reaper_actions
                .get_or_create(&ReaperLabels { action })
                .inc_by(count(n));
        }
        for &(reason, n) in evictions {
            self.evictions
                .get_or_create(&EvictionLabels { reason })
                .inc_by(count(n));
        }
    }

    /// A reaper round that ran no pass: this process does not hold the prefix's lease
    /// (`reaper_actions_total{action="skipped_lease_not_held"}`).
    pub fn reaper_skipped(&self) {
        self.reaper_actions
            .get_or_create(&ReaperLabels {
                action: "skipped_lease_not_held",
            })
            .inc();
    }

    /// The text of a scrape, with the registry's figures as of now. OpenMetrics ends
    /// with `# EOF`; the Prometheus text format has no such line.
    pub fn render(
        &self,
        totals: RegistryTotals,
        openmetrics: bool,
    ) -> Result<String, std::fmt::Error> {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.completion_queue.set(gauge(totals.completion_queue));
        self.registry_caches.set(gauge(totals.caches));
        self.registry_bytes.set(gauge(totals.bytes));
        self.retained_bytes.set(gauge(totals.retained_bytes));
        self.logical_bytes.set(gauge(totals.logical_bytes));
        let mut out = String::new();
        text::encode_registry(&mut out, &self.registry)?;
        if openmetrics {
            text::encode_eof(&mut out)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_names_route_templates_and_bounds_methods() {
        let m = Metrics::new();
        m.request("/v1/uploads/:id", "POST", 200, Duration::from_millis(3));
        m.request("/v1/uploads/:id", "BREW", 405, Duration::from_millis(1));
        m.lookup(true);
        m.committed(42);
        let text = m.render(RegistryTotals::default(), false).unwrap();
        assert!(
            text.contains(
                r#"bmat_signer_http_requests_total{endpoint="/v1/uploads/:id",method="POST",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"method="other""#), "{text}");
        assert!(
            text.contains(r#"bmat_signer_lookups_total{result="hit"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("bmat_signer_committed_bytes_total 42"),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
        assert!(
            m.render(RegistryTotals::default(), true)
                .unwrap()
                .ends_with("# EOF\n")
        );
    }
}
