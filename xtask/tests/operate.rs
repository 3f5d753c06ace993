//! Operating the signer (issue 12) on a real stack: usage per owner and scope from the
//! API and `signer stats`, `GET /metrics` parsed as Prometheus text, SIGHUP reloads of
//! tokens and limits (a save in flight survives, a broken file changes nothing), and
//! `signer check-config` against the stack's Garage.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bmat_wire::api::{
    Activity, BeginRequest, CacheList, PartUrlsResponse, ScopeUsage, UploadState, UploadStatus,
    Usage,
};
use common::api::{Api, PART, PATIENCE, download, put, random_bytes, sha256};
use common::{poll_until, scrape, value};
use reqwest::StatusCode;
use signer::config::{Config, TokenConfig};
use xtask::stack::{OTHER_OWNER, OWNER, SCOPE, Stack, bins};

fn small_parts(c: &mut Config) {
    c.limits.part_size = PART;
}

/// The stack's operator credential (allowed both owners).
fn operator(stack: &Stack) -> Api {
    Api::new(stack).with_token(Some(&stack.env().operator_token))
}

/// `signer ARGS…` as an operator runs it against the stack: (exit code, stdout, stderr).
fn signer_cmd(stack: &Stack, operator_token: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bins::workspace_bin("signer").expect("signer binary"))
        .args(args)
        .env("BMAT_SIGNER_URL", &stack.env().signer_url)
        .env("BMAT_OPERATOR_TOKEN", operator_token)
        .output()
        .expect("signer runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---- metrics helpers ----

async fn reloads(stack: &Stack, outcome: &str) -> f64 {
    let s = scrape(stack).await;
    value(
        &s,
        "bmat_signer_config_reloads_total",
        &[("outcome", outcome)],
    )
}

fn signer_log(stack: &Stack) -> String {
    let path = stack
        .log_paths()
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "signer.log"))
        .expect("signer log");
    std::fs::read_to_string(path).expect("read the signer log")
}

// ---- usage ----

#[tokio::test]
async fn usage_counts_bytes_caches_hits_and_misses_for_the_operators_owners_only() {
    const BETA_OPERATOR: &str = "beta-operator-secret";
    let stack = Stack::start_with(|c| {
        small_parts(c);
        common::add_operator(c, BETA_OPERATOR, "beta-only", &[OTHER_OWNER]);
    })
    .expect("stack");
    let api = Api::new(&stack);
    let (a, b) = (random_bytes(1000), random_bytes(PART as usize + 4321));
    api.store("usage-a", &a).await;
    api.store("usage-b", &b).await;
    // Three hits (exact keys and a fallback prefix), one miss.
    assert!(api.hit("usage-a", &[]).await.is_some());
    assert!(api.hit("usage-b", &[]).await.is_some());
    assert!(api.hit("usage-c", &["usage-"]).await.is_some());
    assert!(api.hit("absent", &[]).await.is_none());
    // Another owner's miss is its own.
    let beta = api.with_token(Some(&stack.env().other_token));
    assert!(beta.hit("absent", &[]).await.is_none());

    let op = operator(&stack);
    let usage: Usage = op.get(&format!("/v1/stats?owner={OWNER}")).await.ok();
    assert_eq!(usage.owners.len(), 1, "{usage:?}");
    let alpha = &usage.owners[0];
    let activity = Activity {
        hits: 3,
        misses: 1,
        evictions: 0,
    };
    let bytes = (a.len() + b.len()) as u64;
    assert_eq!(alpha.owner, OWNER);
    assert_eq!(alpha.quota, stack.signer_config().limits.owner_quota);
    assert_eq!((alpha.bytes, alpha.caches), (bytes, 2));
    assert_eq!((alpha.last_day, alpha.last_week), (activity, activity));
    assert_eq!(
        alpha.scopes,
        [ScopeUsage {
            scope: SCOPE.to_owned(),
            bytes,
            logical_bytes: bytes,
            caches: 2,
            last_day: activity,
            last_week: activity,
        }]
    );
    // The sizes are those the registry lists.
    let listed: CacheList = op.get(&format!("/v1/caches?owner={OWNER}")).await.ok();
    assert_eq!(listed.caches.iter().map(|c| c.size).sum::<u64>(), bytes);

    // Without an owner: every owner the credential covers.
    let all: Usage = op.get("/v1/stats").await.ok();
    let owners: Vec<&str> = all.owners.iter().map(|o| o.owner.as_str()).collect();
    assert_eq!(owners, [OWNER, OTHER_OWNER]);
    assert_eq!(
        (all.owners[1].last_day.misses, all.owners[1].caches),
        (1, 0)
    );

    // An operator of the other owner sees nothing of alpha.
    let beta_op = api.with_token(Some(BETA_OPERATOR));
    let msg = beta_op
        .get(&format!("/v1/stats?owner={OWNER}"))
        .await
        .err(StatusCode::FORBIDDEN);
    assert!(msg.contains(OWNER), "{msg}");
    let theirs: Usage = beta_op.get("/v1/stats").await.ok();
    let owners: Vec<&str> = theirs.owners.iter().map(|o| o.owner.as_str()).collect();
    assert_eq!(owners, [OTHER_OWNER]);
    // A job token reads no usage.
    api.get("/v1/stats").await.err(StatusCode::FORBIDDEN);

    // The command: the same figures as JSON, and lines for people.
    let operator_token = stack.env().operator_token.clone();
    let (code, out, err) = signer_cmd(
        &stack,
        &operator_token,
        &["stats", "--owner", OWNER, "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let from_cmd: Usage = serde_json::from_str(out.trim()).expect("stats JSON");
    assert_eq!(from_cmd, usage);
    let (code, out, err) = signer_cmd(&stack, &operator_token, &["stats", "--scope", SCOPE]);
    assert_eq!(code, 0, "{err}");
    let first = out.lines().next().unwrap_or_default();
    assert!(first.starts_with(&format!("{OWNER}: ")), "{out}");
    assert!(
        first.contains("2 caches; last day: 3 hits, 1 misses, 0 evictions"),
        "{out}"
    );
    assert!(out.contains(&format!("  {SCOPE}: ")), "{out}");
    let (code, _, err) = signer_cmd(&stack, BETA_OPERATOR, &["stats", "--owner", OWNER]);
    assert_eq!(code, 1);
    assert!(err.contains("403") && err.contains("beta-only"), "{err}");
}

#[tokio::test]
async fn evictions_are_counted_in_the_evicted_caches_scope() {
    let stack = Stack::start_with(common::short_ttl).expect("stack");
    let api = Api::new(&stack);
    api.store("short-lived", b"bytes").await;
    let op = operator(&stack);
    let mut usage = Usage::default();
    poll_until("the eviction to be counted", PATIENCE, async || {
        usage = op.get(&format!("/v1/stats?owner={OWNER}")).await.ok();
        usage.owners[0].last_week.evictions > 0
    })
    .await;
    let alpha = &usage.owners[0];
    assert_eq!((alpha.bytes, alpha.caches), (0, 0));
    assert_eq!(alpha.scopes[0].scope, SCOPE);
    assert_eq!(alpha.last_day.evictions, 1);
    // The usage row counts each eviction as it is done, the metrics the whole pass
    // once it ends: wait for the pass, not only the eviction.
    let ttl_evictions = async || {
        let s = scrape(&stack).await;
        value(&s, "bmat_signer_evictions_total", &[("reason", "ttl")])
    };
    poll_until("the reaper pass to be counted", PATIENCE, async || {
        ttl_evictions().await > 0.0
    })
    .await;
    assert_eq!(ttl_evictions().await, 1.0);
}

// ---- metrics ----

#[tokio::test]
async fn metrics_move_by_what_a_save_and_a_restore_did() {
    let stack = Stack::start_with(small_parts).expect("stack");
    let api = Api::new(&stack);
    let before = scrape(&stack).await;
    let data = random_bytes(PART as usize + 1234);
    let id = api.store("metrics-key", &data).await;
    let hit = api.hit("metrics-key", &[]).await.expect("hit");
    assert_eq!(sha256(&download(&api.http, &hit.url).await), sha256(&data));
    assert!(api.hit("metrics-absent", &[]).await.is_none());
    api.with_token(Some("wrong"))
        .get("/v1/caches")
        .await
        .err(StatusCode::UNAUTHORIZED);
    let after = scrape(&stack).await;

    let delta = |metric: &str, labels: &[(&str, &str)]| {
        value(&after, metric, labels) - value(&before, metric, labels)
    };
    assert_eq!(
        delta("bmat_signer_lookups_total", &[("result", "hit")]),
        1.0
    );
    assert_eq!(
        delta("bmat_signer_lookups_total", &[("result", "miss")]),
        1.0
    );
    for (event, moved) in [("started", 1.0), ("completed", 1.0), ("aborted", 0.0)] {
        assert_eq!(
            delta("bmat_signer_uploads_total", &[("event", event)]),
            moved,
            "{event}"
        );
    }
    assert_eq!(
        delta("bmat_signer_committed_bytes_total", &[]),
        data.len() as f64
    );
    let lookup = [("endpoint", "/v1/lookup"), ("method", "POST")];
    assert_eq!(
        delta(
            "bmat_signer_http_requests_total",
            &[lookup[0], lookup[1], ("status", "200")]
        ),
        2.0
    );
    assert_eq!(
        delta("bmat_signer_http_request_duration_seconds_count", &lookup),
        2.0
    );
    assert_eq!(
        delta(
            "bmat_signer_http_requests_total",
            &[("endpoint", "/v1/uploads/:id/complete"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "bmat_signer_http_requests_total",
            &[("endpoint", "/v1/caches"), ("status", "401")]
        ),
        1.0
    );
    // Route templates, never raw paths.
    assert!(
        after
            .samples
            .iter()
            .all(|s| s.labels.get("endpoint").is_none_or(|e| !e.contains(&id))),
        "an upload id became a label"
    );
    assert_eq!(value(&after, "bmat_signer_registry_caches", &[]), 1.0);
    assert_eq!(
        value(&after, "bmat_signer_registry_bytes", &[]),
        data.len() as f64
    );
    assert_eq!(
        value(&after, "bmat_signer_completion_queue_depth", &[]),
        0.0
    );

    // The API's own address does not serve them.
    let on_api = common::http()
        .get(format!("{}/metrics", stack.env().signer_url))
        .send()
        .await
        .expect("GET");
    assert_eq!(on_api.status(), StatusCode::NOT_FOUND);
}

// ---- SIGHUP ----

/// Uploads one part of an upload through its presigned URL; returns (number, ETag).
async fn put_part(api: &Api, id: &str, n: u32, chunk: &[u8]) -> (u32, String) {
    let size = (chunk.len() as u64 != PART).then_some(chunk.len() as u64);
    let urls: PartUrlsResponse = api.part_urls_sized(id, &[n], size).await.ok();
    (n, put(&api.http, &urls.urls[0].url, chunk.to_vec()).await)
}

#[tokio::test]
async fn sighup_adds_a_token_while_a_save_is_in_flight() {
    let mut stack = Stack::start_with(small_parts).expect("stack");
    let api = Api::new(&stack);
    let data = random_bytes(2 * PART as usize + 777);
    let chunks: Vec<&[u8]> = data.chunks(PART as usize).collect();
    let id = api.begin_upload("in-flight").await;
    let mut parts = vec![put_part(&api, &id, 1, chunks[0]).await];

    let new_token = "a-token-added-by-sighup";
    let new_api = api.with_token(Some(new_token));
    new_api
        .get("/v1/caches")
        .await
        .err(StatusCode::UNAUTHORIZED);
    stack
        .reload_signer_with(|c| {
            c.tokens.push(TokenConfig {
                scope: SCOPE.to_owned(),
                ..TokenConfig::new(new_token, OWNER)
            })
        })
        .expect("reload");
    poll_until("the new token to be accepted", PATIENCE, async || {
        new_api.get("/v1/caches").await.status == StatusCode::OK
    })
    .await;

    // The save begun before the reload goes on with the old token.
    for (i, chunk) in chunks.iter().enumerate().skip(1) {
        parts.push(put_part(&api, &id, i as u32 + 1, chunk).await);
    }
    let status: UploadStatus = api
        .complete(&id, &parts, data.len() as u64, &sha256(&data))
        .await
        .ok();
    assert_eq!(status.state, UploadState::Finished);
    api.wait_state(&id, UploadState::Completed).await;
    let hit = new_api
        .hit("in-flight", &[])
        .await
        .expect("the new token finds it");
    assert_eq!((hit.size, hit.sha256), (data.len() as u64, sha256(&data)));
    assert_eq!(reloads(&stack, "applied").await, 1.0);
    assert!(signer_log(&stack).contains("config reloaded"));
}

#[tokio::test]
async fn a_broken_config_on_sighup_keeps_the_running_one() {
    let mut stack = Stack::start_with(small_parts).expect("stack");
    let api = Api::new(&stack);
    let op = operator(&stack);
    let path = stack.signer_config_path().to_path_buf();
    let mut invalid = stack.signer_config().clone();
    invalid.limits.part_size = 1024;

    // Not TOML, then TOML that does not validate.
    for (i, broken) in [
        "this is [not toml".to_owned(),
        invalid.to_toml().expect("TOML"),
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(&path, broken).expect("write a broken config");
        stack.hangup_signer().expect("SIGHUP");
        poll_until("the reload to be refused", PATIENCE, async || {
            reloads(&stack, "refused").await == (i + 1) as f64
        })
        .await;
        let _: CacheList = api.get("/v1/caches").await.ok();
        let _: Usage = op.get("/v1/stats").await.ok();
    }
    let log = signer_log(&stack);
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("config reload refused"))
        .collect();
    assert_eq!(refused.len(), 2, "{log}");
    assert!(refused[0].contains("line 1"), "{}", refused[0]);
    assert!(refused[1].contains("limits.part_size"), "{}", refused[1]);

    // A good file applies its limits at once; start-only settings wait for a restart.
    stack
        .reload_signer_with(|c| {
            c.limits.max_cache_size = 1000;
            c.timing.lease_secs += 1;
        })
        .expect("reload");
    poll_until("the reload to be applied", PATIENCE, async || {
        reloads(&stack, "applied").await == 1.0
    })
    .await;
    let begin = BeginRequest {
        key: "too-big-now".into(),
        expected_size: Some(2000),
        part_size: None,
        refresh_after_secs: None,
        only_scopes: vec![],
    };
    api.post("/v1/uploads", &begin)
        .await
        .err(StatusCode::PAYLOAD_TOO_LARGE);
    let log = signer_log(&stack);
    assert!(
        log.lines()
            .any(|l| l.contains("[timing]") && l.contains("restart")),
        "{log}"
    );
}

/// Issue 17, point 5: a TTL so large that its milliseconds wrap negative made the next
/// reaper pass delete every cache. SIGHUP now refuses it, naming the field, and the
/// reaper keeps the cache saved before.
#[tokio::test]
async fn sighup_refuses_a_ttl_that_would_wrap_and_the_reaper_keeps_every_cache() {
    let mut stack = Stack::start_with(|c| {
        small_parts(c);
        c.timing.reaper_interval_secs = 1;
    })
    .expect("stack");
    let api = Api::new(&stack);
    api.store("kept", b"a cache saved before the reload").await;
    stack
        .reload_signer_with(|c| c.limits.ttl_days = 150_000_000_000.0)
        .expect("reload");
    poll_until("the reload to be refused", PATIENCE, async || {
        reloads(&stack, "refused").await == 1.0
    })
    .await;
    // Two more passes after the refusal, then the cache must still be there.
    let passes = value(
        &scrape(&stack).await,
        "bmat_signer_reaper_passes_total",
        &[],
    );
    poll_until("two reaper passes", PATIENCE, async || {
        value(
            &scrape(&stack).await,
            "bmat_signer_reaper_passes_total",
            &[],
        ) >= passes + 2.0
    })
    .await;
    assert!(
        api.hit("kept", &[]).await.is_some(),
        "the cache was deleted"
    );
    let log = signer_log(&stack);
    assert!(
        log.lines()
            .any(|l| l.contains("config reload refused") && l.contains("limits.ttl_days")),
        "{log}"
    );
    let health = api.with_token(None).get("/v1/health").await;
    assert_eq!(health.status, StatusCode::OK);
}

/// A signer whose prefix another signer took (a copy of its registry started
/// elsewhere, which waited out a lease it could not renew) deletes and aborts nothing
/// from then on, and health says so.
#[tokio::test]
async fn a_signer_whose_prefix_lease_was_taken_deletes_nothing_and_health_says_so() {
    let stack = Stack::start_with(common::eager_reaper).expect("stack");
    let api = Api::new(&stack);
    let s3 = stack.s3_client().expect("s3 client");
    let prefix = &stack.env().s3_prefix;

    // The other signer's claim: the same registry, another instance, renewed now.
    let mut claim = common::prefix_claim(&stack).await;
    claim["holder"]["instance"] = "0ther".into();
    claim["holder"]["host"] = "elsewhere".into();
    claim["holder"]["renewed_at_ms"] = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64)
        .into();
    s3.put_object(
        &format!("{prefix}/registry-id"),
        claim.to_string().into_bytes(),
    )
    .await
    .expect("PUT the other signer's claim");
    poll_until(
        "health to say the prefix lease is down",
        PATIENCE,
        async || {
            let health = api.with_token(None).get("/v1/health").await;
            health.status == StatusCode::SERVICE_UNAVAILABLE
                && health.body["down"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|t| t == "prefix lease"))
        },
    )
    .await;

    // An object the other signer wrote, which this one's registry does not know.
    let theirs = format!("{prefix}/caches/{}", ulid::Ulid::new());
    s3.put_object(&theirs, b"theirs".to_vec())
        .await
        .expect("PUT");
    common::wait_until_older(&stack, &theirs, Duration::from_secs(2)).await;
    let skipped = |s: &prometheus_parse::Scrape| {
        value(
            s,
            "bmat_signer_reaper_actions_total",
            &[("action", "skipped_lease_not_held")],
        )
    };
    let before = skipped(&scrape(&stack).await);
    poll_until("two skipped reaper rounds", PATIENCE, async || {
        skipped(&scrape(&stack).await) >= before + 2.0
    })
    .await;
    assert!(
        s3.head_object(&theirs).await.expect("HEAD").is_some(),
        "the reaper deleted the other signer's object"
    );
    let log = signer_log(&stack);
    assert!(
        log.lines()
            .any(|l| l.contains("reaper pass skipped") && l.contains("instance 0ther")),
        "{log}"
    );
}

// ---- check-config ----

/// `signer check-config --config PATH` with the given S3 credentials: (exit code,
/// stdout lines).
fn check_config(path: &Path, key_id: &str, secret: &str) -> (i32, Vec<String>) {
    let mut cmd = Command::new(bins::workspace_bin("signer").expect("signer binary"));
    cmd.arg("check-config").arg("--config").arg(path);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BMAT_") {
            cmd.env_remove(k);
        }
    }
    if !key_id.is_empty() {
        cmd.env("BMAT_S3_ACCESS_KEY_ID", key_id)
            .env("BMAT_S3_SECRET_ACCESS_KEY", secret);
    }
    let out = cmd.output().expect("signer check-config runs");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

#[tokio::test]
async fn check_config_passes_a_good_file_and_names_what_is_wrong() {
    let stack = Stack::start().expect("stack");
    let env = stack.env().clone();
    let (key_id, secret) = (
        env.s3_access_key_id.as_str(),
        env.s3_secret_access_key.as_str(),
    );
    let path = stack.signer_config_path().to_path_buf();

    let (code, lines) = check_config(&path, key_id, secret);
    assert_eq!(code, 0, "{lines:#?}");
    assert_eq!(lines.len(), 6, "{lines:#?}");
    assert!(lines.iter().all(|l| l.starts_with("ok: ")), "{lines:#?}");
    for step in [
        "CreateMultipartUpload",
        "AbortMultipartUpload",
        "ListObjectsV2",
        "ListMultipartUploads",
    ] {
        assert!(lines.iter().any(|l| l.contains(step)), "{step}: {lines:#?}");
    }
    // Nothing left behind.
    let s3 = stack.s3_client().expect("s3 client");
    let left = s3
        .list_multipart_uploads(&format!("{}/", env.s3_prefix))
        .await
        .expect("ListMultipartUploads");
    assert!(left.is_empty(), "{left:?}");

    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write config");
        p
    };
    let good = std::fs::read_to_string(&path).expect("config");

    // Not TOML: one line, naming the file and the line.
    let (code, lines) = check_config(&write("bad.toml", "listen = [\n"), key_id, secret);
    assert_eq!(code, 1);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("error: config file") && lines[0].contains("line 1"),
        "{lines:#?}"
    );

    // No credentials in the environment: named.
    let (code, lines) = check_config(&path, "", "");
    assert_eq!(code, 1);
    assert!(
        lines[1].starts_with("error: ") && lines[1].contains("BMAT_S3_ACCESS_KEY_ID"),
        "{lines:#?}"
    );

    // Wrong secret: the file is fine, every S3 step fails, each on its own line.
    let (code, lines) = check_config(&path, key_id, "not-the-secret");
    assert_eq!(code, 1);
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert!(lines[0].starts_with("ok: config file") && lines[1].starts_with("ok: "));
    for (line, step) in lines[2..].iter().zip([
        "CreateMultipartUpload",
        "ListObjectsV2",
        "ListMultipartUploads",
    ]) {
        assert!(
            line.starts_with(&format!("error: S3 {step} in bucket \"{}\"", env.s3_bucket))
                && line.contains("403"),
            "{lines:#?}"
        );
    }
    assert!(lines.iter().all(|l| !l.contains("not-the-secret")));

    // A bucket that does not exist.
    let missing = good.replace(
        &format!("bucket = \"{}\"", env.s3_bucket),
        "bucket = \"no-such-bucket-for-bmat\"",
    );
    assert_ne!(missing, good);
    let (code, lines) = check_config(&write("nobucket.toml", &missing), key_id, secret);
    assert_eq!(code, 1);
    let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 3, "{lines:#?}");
    assert!(
        errors
            .iter()
            .all(|l| l.contains("\"no-such-bucket-for-bmat\"") && !l.contains('\n')),
        "{lines:#?}"
    );
}

/// Issue 17, point 8: a missing quote on a `token = "…` line was quoted back, secret
/// included. check-config now names the line number and the field, never its text.
#[tokio::test]
async fn check_config_names_a_broken_token_line_without_quoting_the_secret() {
    let stack = Stack::start().expect("stack");
    let env = stack.env().clone();
    let good = std::fs::read_to_string(stack.signer_config_path()).expect("config");
    let secret = &env.token;
    let (n, _) = good
        .lines()
        .enumerate()
        .find(|(_, l)| l.trim() == format!("token = \"{secret}\""))
        .expect("the stack's token line");
    let broken = good.replacen(
        &format!("token = \"{secret}\""),
        &format!("token = \"{secret}"),
        1,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, broken).expect("write config");
    let (code, lines) = check_config(&path, &env.s3_access_key_id, &env.s3_secret_access_key);
    assert_ne!(code, 0, "{lines:#?}");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains(&format!("line {}", n + 1)), "{lines:#?}");
    assert!(lines[0].contains("token"), "{lines:#?}");
    assert!(
        lines.iter().all(|l| !l.contains(secret.as_str())),
        "{lines:#?}"
    );
}
