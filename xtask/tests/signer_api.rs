//! The signer through its real HTTP API, on a real stack (Garage, SQLite, processes):
//! uploads through presigned URLs, lookups, write-once, leases, caps, key validation,
//! authentication and ownership, crash recovery of the completion queue, the reaper and
//! eviction.

mod common;

use std::time::Duration;

use bmat_wire::api::{
    BeginRequest, BeginResponse, CacheHit, CacheProblem, CompleteRequest, CompletedPart, Deleted,
    Extent, MintRequest, PartUrlsResponse, ReportAnswer, ReportRequest, SkipReason, UploadState,
    UploadStatus,
};
use common::api::{Api, PART, PATIENCE, download, put, random_bytes, sha256};
use common::poll_until;
use reqwest::StatusCode;
use signer::config::{Config, MIB};
use xtask::stack::{OWNER, SCOPE, Stack};

fn object_name(stack: &Stack, id: &str) -> String {
    format!("{}/caches/{id}", stack.env().s3_prefix)
}

fn caches_prefix(stack: &Stack) -> String {
    format!("{}/caches/", stack.env().s3_prefix)
}

/// Object names of the multipart uploads in progress under the signer's prefix.
async fn multipart_uploads(stack: &Stack) -> Vec<String> {
    let s3 = stack.s3_client().expect("s3 client");
    s3.list_multipart_uploads(&caches_prefix(stack))
        .await
        .expect("ListMultipartUploads")
        .into_iter()
        .map(|u| u.key)
        .collect()
}

async fn object_exists(stack: &Stack, name: &str) -> bool {
    let s3 = stack.s3_client().expect("s3 client");
    s3.head_object(name).await.expect("HeadObject").is_some()
}

fn small_parts(c: &mut Config) {
    c.limits.part_size = PART;
}

/// Restarts the signer (already killed) with a changed config. The stack writes the
/// config to `signer.toml` in its dir and restarts with that file.
fn restart_signer_with(stack: &mut Stack, tweak: impl FnOnce(&mut Config)) {
    let mut cfg = stack.signer_config().clone();
    tweak(&mut cfg);
    let path = stack.dir().join("signer.toml");
    std::fs::write(&path, cfg.to_toml().expect("config TOML")).expect("rewrite signer.toml");
    stack.start_signer().expect("signer restarts");
}

// ---- tests ----

#[tokio::test]
async fn multipart_upload_round_trips_through_presigned_urls() {
    let stack = Stack::start_with(small_parts).expect("stack");
    let api = Api::new(&stack);
    // Three parts: 5 MiB, 5 MiB and a short last one.
    let data = random_bytes(2 * PART as usize + 123_457);
    let key = "round-trip_1.0";

    assert!(api.hit(key, &[]).await.is_none());
    let (id, part_size, max_size) = match api.begin(key).await.ok::<BeginResponse>() {
        BeginResponse::Upload {
            upload_id,
            part_size,
            max_size,
            ..
        } => (upload_id, part_size, max_size),
        other => panic!("expected an upload, got {other:?}"),
    };
    assert_eq!(part_size, PART);
    assert_eq!(max_size, stack.signer_config().limits.max_cache_size);
    assert_eq!(api.status(&id).await.state, UploadState::Uploading);

    let parts = api.put_parts(&id, &data, part_size).await;
    assert_eq!(parts.len(), 3);
    let status: UploadStatus = api
        .complete(&id, &parts, data.len() as u64, &sha256(&data))
        .await
        .ok();
    assert_eq!(
        (status.state, status.key.as_str()),
        (UploadState::Finished, key)
    );
    api.wait_state(&id, UploadState::Completed).await;

    let hit = api.hit(key, &[]).await.expect("cache hit after completion");
    assert_eq!(hit.key, key);
    assert_eq!(hit.size, data.len() as u64);
    assert_eq!(hit.sha256, sha256(&data));
    let got = download(&api.http, &hit.url).await;
    assert_eq!(sha256(&got), sha256(&data), "downloaded bytes differ");

    // A ranged GET through the same URL (restore downloads in parallel ranges).
    let ranged = api
        .http
        .get(&hit.url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .expect("ranged GET");
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        ranged.bytes().await.expect("range body").as_ref(),
        &data[100..200]
    );

    // The user's key is in no object's name: the object is named by the upload id (its
    // index object holds it, see docs/design.md, "Registry and S3 layout").
    assert!(object_exists(&stack, &object_name(&stack, &id)).await);
    let s3 = stack.s3_client().expect("s3 client");
    let names = s3
        .list_objects(&format!("{}/", stack.env().s3_prefix))
        .await
        .expect("list");
    assert!(names.iter().all(|(n, _)| !n.contains(key)), "{names:?}");
    assert!(multipart_uploads(&stack).await.is_empty());
    assert_eq!(api.caches().await, [key]);

    // Delete: object first, then row.
    let deleted: Deleted = api.delete(&format!("/v1/caches/{key}")).await.ok();
    assert!(deleted.deleted);
    assert!(api.hit(key, &[]).await.is_none());
    assert!(!object_exists(&stack, &object_name(&stack, &id)).await);
    api.delete(&format!("/v1/caches/{key}"))
        .await
        .err(StatusCode::NOT_FOUND);
}

/// Issue 17, point 11: `DELETE /v1/caches/report` hit the report route (405), so the
/// key `report` could never be deleted. Reports live at `/v1/reports` now.
#[tokio::test]
async fn the_key_report_can_be_deleted_like_any_other() {
    let stack = Stack::start_with(small_parts).expect("stack");
    let api = Api::new(&stack);
    api.store("report", b"a cache whose key names an action")
        .await;
    assert!(api.hit("report", &[]).await.is_some());
    let deleted: Deleted = api.delete("/v1/caches/report").await.ok();
    assert!(deleted.deleted);
    assert!(api.hit("report", &[]).await.is_none());
}

/// An `undecodable` report of `hit`, claiming a lookup at 9e15 ms.
fn undecodable(hit: &CacheHit, lookup_id: Option<String>) -> ReportRequest {
    ReportRequest {
        scope: hit.scope.clone(),
        key: hit.key.clone(),
        sha256: hit.sha256.clone(),
        issued_at_ms: 9_000_000_000_000_000,
        lookup_id,
        problem: Some(CacheProblem::Undecodable),
    }
}

async fn report(api: &Api, req: &ReportRequest) -> bool {
    api.post("/v1/reports", req)
        .await
        .ok::<ReportAnswer>()
        .dropped
}

/// Issue 17, point 2: a read-only token dropped caches through the report endpoint,
/// and the "no good restore since this lookup" guard trusted the client's
/// `issued_at_ms`. Now `undecodable` drops only for a writer of the cache's own scope,
/// judged by the signer's own lookup id.
#[tokio::test]
async fn undecodable_reports_need_a_writer_and_the_signers_own_lookup_id() {
    let stack = Stack::start_with(small_parts).expect("stack");
    let api = Api::new(&stack);
    api.store("k", b"intact bytes").await;
    let minted = stack
        .mint(&MintRequest {
            owner: OWNER.to_owned(),
            scope: SCOPE.to_owned(),
            read_scopes: Vec::new(),
            write: false,
            ttl_seconds: None,
        })
        .expect("mint");
    let reader = api.with_token(Some(&minted.token));

    // A read-only token of the cache's own scope: neither a client clock nor its own
    // genuine lookup id lets it drop the cache.
    let hit = reader.hit("k", &[]).await.expect("the reader's hit");
    for id in [None, hit.lookup_id.clone()] {
        assert!(!report(&reader, &undecodable(&hit, id)).await);
    }
    assert!(
        api.hit("k", &[]).await.is_some(),
        "a reader dropped the cache"
    );

    // A writer whose lookup came before a good restore: a later client time, a missing
    // or a forged id, or its real one, drop nothing.
    let before = api.hit("k", &[]).await.expect("hit");
    let restored = ReportRequest {
        problem: None,
        ..undecodable(&before, before.lookup_id.clone())
    };
    assert!(!report(&api, &restored).await);
    let real = before.lookup_id.clone().expect("a lookup id");
    let (_, mac) = real.split_once('.').expect("time.mac");
    for id in [
        None,
        Some(format!("9000000000000000.{mac}")),
        Some(real.clone()),
    ] {
        assert!(!report(&api, &undecodable(&before, id)).await);
    }
    assert!(
        api.hit("k", &[]).await.is_some(),
        "a stale report dropped it"
    );

    // The writer's own fresh lookup, with no good restore since: its word is taken.
    api.store("k2", b"other intact bytes").await;
    let fresh = api.hit("k2", &[]).await.expect("hit");
    assert!(report(&api, &undecodable(&fresh, fresh.lookup_id.clone())).await);
    assert!(api.hit("k2", &[]).await.is_none());
}

/// Issue 17, point 7: a pull request's "it restored fine" for main's broken cache kept
/// main's own `undecodable` report from dropping it, and moved main's LRU clock. A
/// success reported from a read scope now moves nothing of the owning scope.
#[tokio::test]
async fn a_readers_success_report_moves_nothing_of_the_owning_scope() {
    let stack = Stack::start_with(small_parts).expect("stack");
    let api = Api::new(&stack);
    api.store("k", b"bytes main cannot unpack").await;
    let minted = stack
        .mint(&MintRequest {
            owner: OWNER.to_owned(),
            scope: "refs/pull/7/merge".to_owned(),
            read_scopes: vec![SCOPE.to_owned()],
            write: true,
            ttl_seconds: None,
        })
        .expect("mint");
    let pr = api.with_token(Some(&minted.token));
    // The owning scope's clocks, in ms, from the registry file (the API shows seconds).
    let clocks = || {
        let reg = signer::registry::Registry::open_reader(&stack.signer_config().database)
            .expect("open the registry");
        let place = signer::registry::Place {
            owner: OWNER,
            scope: SCOPE,
        };
        let row = reg.find_cache(&place, "k").expect("read").expect("k's row");
        (row.last_used_at, row.restored_at)
    };
    let before = clocks();

    // Main looks it up; then the pull request restores it "fine" and says so.
    let main_hit = api.hit("k", &[]).await.expect("main's hit");
    let pr_hit = pr.hit("k", &[]).await.expect("the PR's hit from main");
    assert_eq!(pr_hit.scope, SCOPE);
    let fine = ReportRequest {
        problem: None,
        ..undecodable(&pr_hit, pr_hit.lookup_id.clone())
    };
    assert!(!report(&pr, &fine).await);
    assert_eq!(
        clocks(),
        before,
        "the PR moved main's LRU clock or heal guard"
    );

    // Main's own report, from its lookup before the PR's: its word is still taken.
    assert!(
        report(&api, &undecodable(&main_hit, main_hit.lookup_id.clone())).await,
        "the PR's success report kept main's broken cache"
    );
    assert!(api.hit("k", &[]).await.is_none());
}

/// How many reported caches the signer has read whole from S3 to check them.
async fn report_checks(stack: &Stack) -> f64 {
    let s = common::scrape(stack).await;
    common::value(&s, "bmat_signer_report_checks_total", &[])
}

/// Issue 17, point 6: each `missing` report made the signer read and hash the whole
/// object, with no memo and no limit: 20 reports from a read-only pull request token
/// read 4 GB from S3. Now many reports at once cost one read per cache and window, and
/// a token past its report budget is answered 429.
#[tokio::test]
async fn reports_cost_one_read_per_cache_and_a_budget_per_token() {
    const BUDGET: usize = 20;
    let stack = Stack::start_with(|c| {
        small_parts(c);
        c.limits.reports_per_token = BUDGET as u64;
    })
    .expect("stack");
    let api = Api::new(&stack);
    api.store("big", &random_bytes(3 * PART as usize)).await;
    let minted = stack
        .mint(&MintRequest {
            owner: OWNER.to_owned(),
            scope: "refs/pull/9/merge".to_owned(),
            read_scopes: vec![SCOPE.to_owned()],
            write: false,
            ttl_seconds: None,
        })
        .expect("mint");
    let reader = api.with_token(Some(&minted.token));
    let hit = reader.hit("big", &[]).await.expect("the reader's hit");
    let missing = ReportRequest {
        problem: Some(CacheProblem::Missing),
        ..undecodable(&hit, hit.lookup_id.clone())
    };

    let mut reports = tokio::task::JoinSet::new();
    for _ in 0..BUDGET {
        let (reader, missing) = (reader.clone(), missing.clone());
        reports.spawn(async move { report(&reader, &missing).await });
    }
    while let Some(dropped) = reports.join_next().await {
        assert!(!dropped.expect("a report"), "an intact cache was dropped");
    }
    assert_eq!(report_checks(&stack).await, 1.0, "reads of the object");

    let spent = reader.post("/v1/reports", &missing).await;
    // The code tells bmat not to retry: the budget outlasts the job.
    assert_eq!(spent.body["code"], "budget_spent", "{}", spent.body);
    let e = spent.err(StatusCode::TOO_MANY_REQUESTS);
    assert!(e.contains("limits.reports_per_token"), "{e}");
    // Another token has its own budget, and gets the verdict of this window.
    assert!(!report(&api, &missing).await);
    assert_eq!(report_checks(&stack).await, 1.0, "reads of the object");
    assert!(api.hit("big", &[]).await.is_some());
}

#[tokio::test]
async fn lookup_prefers_the_exact_key_then_the_newest_in_each_prefix_in_order() {
    let stack = Stack::start_with(small_parts).expect("stack");
    let api = Api::new(&stack);
    for key in ["deps-a", "deps-b", "other-1"] {
        api.store(key, key.as_bytes()).await;
    }
    let key_of = |hit: Option<CacheHit>| hit.map(|h| h.key);

    // Exact wins even though a newer cache matches the prefix.
    assert_eq!(
        key_of(api.hit("deps-a", &["deps-"]).await).as_deref(),
        Some("deps-a")
    );
    // Prefix: the newest match.
    assert_eq!(
        key_of(api.hit("deps-zzz", &["deps-"]).await).as_deref(),
        Some("deps-b")
    );
    // Prefixes in order: the first one that matches decides, not the newest overall.
    assert_eq!(
        key_of(api.hit("deps-zzz", &["nothing-", "deps-a", "other-"]).await).as_deref(),
        Some("deps-a")
    );
    assert_eq!(
        key_of(api.hit("deps-zzz", &["other-", "deps-"]).await).as_deref(),
        Some("other-1")
    );
    // '_' is no wildcard.
    assert!(api.hit("deps_x", &["deps_"]).await.is_none());
    // A miss.
    assert!(api.hit("deps-zzz", &[]).await.is_none());
    assert!(api.hit("nope", &["nothing"]).await.is_none());

    // A fallback hit is a usable download of that cache.
    let hit = api.hit("deps-zzz", &["deps-"]).await.expect("hit");
    assert_eq!(download(&api.http, &hit.url).await, b"deps-b");
}

#[tokio::test]
async fn keys_are_write_once_and_one_upload_at_a_time() {
    let stack = Stack::start_with(small_parts).expect("stack");
    let api = Api::new(&stack);

    let id = api.begin_upload("once").await;
    // While it is uploading, another begin is told to skip.
    assert_eq!(
        api.begin("once").await.ok::<BeginResponse>(),
        BeginResponse::Skip {
            reason: SkipReason::InProgress
        }
    );
    let parts = api.put_parts(&id, b"first", PART).await;
    api.complete(&id, &parts, 5, &sha256(b"first"))
        .await
        .ok::<UploadStatus>();
    // A retried complete (lost answer) is accepted again, not an error.
    let again: UploadStatus = api.complete(&id, &parts, 5, &sha256(b"first")).await.ok();
    assert!(matches!(
        again.state,
        UploadState::Finished | UploadState::Completed
    ));
    api.wait_state(&id, UploadState::Completed).await;

    assert_eq!(
        api.begin("once").await.ok::<BeginResponse>(),
        BeginResponse::Skip {
            reason: SkipReason::Exists
        }
    );
    let hit = api.hit("once", &[]).await.expect("hit");
    assert_eq!(download(&api.http, &hit.url).await, b"first");
}

#[tokio::test]
async fn two_concurrent_begins_of_one_key_grant_exactly_one_upload() {
    let stack = Stack::start_with(small_parts).expect("stack");
    let api = Api::new(&stack);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let api = api.clone();
        set.spawn(async move { api.begin("contended").await.ok::<BeginResponse>() });
    }
    let mut uploads = 0;
    let mut skips = 0;
    while let Some(answer) = set.join_next().await {
        match answer.expect("task") {
            BeginResponse::Upload { .. } => uploads += 1,
            BeginResponse::Skip {
                reason: SkipReason::InProgress,
            } => skips += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((uploads, skips), (1, 7));
    assert_eq!(multipart_uploads(&stack).await.len(), 1);
}

#[tokio::test]
async fn an_expired_lease_lets_a_new_begin_through() {
    let stack = Stack::start_with(|c| {
        small_parts(c);
        c.timing.lease_secs = 1;
        c.timing.reaper_interval_secs = 1;
    })
    .expect("stack");
    let api = Api::new(&stack);
    let first = api.begin_upload("leased").await;
    // The holder dies (asks nothing more); once its lease ran out a begin wins.
    let deadline = std::time::Instant::now() + PATIENCE;
    let second = loop {
        match api.begin("leased").await.ok::<BeginResponse>() {
            BeginResponse::Upload { upload_id, .. } => break upload_id,
            BeginResponse::Skip { reason } => assert_eq!(reason, SkipReason::InProgress),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(first, second);
    assert_eq!(api.status(&first).await.state, UploadState::Aborted);
    // The old holder can no longer upload or complete.
    let e = api.part_urls(&first, &[1]).await.err(StatusCode::CONFLICT);
    assert!(e.contains("aborted"), "{e}");
    api.complete(&first, &[(1, "\"x\"".into())], 1, &sha256(b"x"))
        .await
        .err(StatusCode::CONFLICT);
    // Its multipart upload is aborted by the reaper; the new one stays.
    let first_object = object_name(&stack, &first);
    poll_until(
        "the taken-over multipart upload to be aborted",
        PATIENCE,
        || async { !multipart_uploads(&stack).await.contains(&first_object) },
    )
    .await;
    assert_eq!(
        multipart_uploads(&stack).await,
        [object_name(&stack, &second)]
    );
    // The new holder finishes normally.
    let parts = api.put_parts(&second, b"second", PART).await;
    api.complete(&second, &parts, 6, &sha256(b"second"))
        .await
        .ok::<UploadStatus>();
    api.wait_state(&second, UploadState::Completed).await;
}

#[tokio::test]
async fn a_client_gets_the_part_size_it_asks_for_within_s3_limits() {
    let cap = 20 * MIB;
    let stack = Stack::start_with(|c| c.limits.max_cache_size = cap).expect("stack");
    let api = Api::new(&stack);
    let begin = |key: &str, part_size: Option<u64>| BeginRequest {
        key: key.into(),
        expected_size: None,
        part_size,
        refresh_after_secs: None,
        only_scopes: vec![],
    };
    let granted = |answer: BeginResponse| match answer {
        BeginResponse::Upload {
            upload_id,
            part_size,
            ..
        } => (upload_id, part_size),
        other => panic!("expected an upload, got {other:?}"),
    };
    let (_, default) = granted(api.post("/v1/uploads", &begin("default", None)).await.ok());
    assert_eq!(
        default,
        16 * MIB,
        "the configured size when none is asked for"
    );
    let (_, tiny) = granted(api.post("/v1/uploads", &begin("tiny", Some(1))).await.ok());
    assert_eq!(tiny, 5 * MIB, "S3's minimum");

    // The size granted is the upload's: the cap is checked against it.
    let (id, size) = granted(
        api.post("/v1/uploads", &begin("asked", Some(5 * MIB)))
            .await
            .ok(),
    );
    assert_eq!(size, 5 * MIB);
    api.part_urls(&id, &[1, 2, 3, 4])
        .await
        .ok::<PartUrlsResponse>();
    api.part_urls(&id, &[5])
        .await
        .err(StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn oversize_is_refused_at_part_urls_and_at_completion() {
    let cap = 6 * MIB;
    let stack = Stack::start_with(|c| {
        small_parts(c);
        c.limits.max_cache_size = cap;
    })
    .expect("stack");
    let api = Api::new(&stack);

    // Known size over the cap: refused at begin.
    let req = BeginRequest {
        key: "big".into(),
        expected_size: Some(cap + 1),
        part_size: None,
        refresh_after_secs: None,
        only_scopes: vec![],
    };
    api.post("/v1/uploads", &req)
        .await
        .err(StatusCode::PAYLOAD_TOO_LARGE);

    // Part URLs: parts starting below the cap only; S3's part number range.
    let id = api.begin_upload("big").await;
    api.part_urls(&id, &[1, 2]).await.ok::<PartUrlsResponse>();
    let e = api
        .part_urls(&id, &[3])
        .await
        .err(StatusCode::PAYLOAD_TOO_LARGE);
    assert!(e.contains("maximum cache size"), "{e}");
    api.part_urls(&id, &[2, 3])
        .await
        .err(StatusCode::PAYLOAD_TOO_LARGE);
    api.part_urls(&id, &[0]).await.err(StatusCode::BAD_REQUEST);
    api.part_urls(&id, &[10_001])
        .await
        .err(StatusCode::BAD_REQUEST);
    api.part_urls(&id, &[]).await.err(StatusCode::BAD_REQUEST);

    // A part URL is signed for its body's length: S3 itself refuses a part bigger than
    // the part size (here, bigger than the whole cap), or one that lies about its length.
    let body = random_bytes((cap + MIB) as usize);
    let urls: PartUrlsResponse = api.part_urls(&id, &[1]).await.ok();
    // S3 answers 403, or closes the connection before reading a body it refuses.
    for len in [body.len(), MIB as usize] {
        let sent = api
            .http
            .put(&urls.urls[0].url)
            .body(body[..len].to_vec())
            .send()
            .await;
        if let Ok(answer) = sent {
            assert_eq!(answer.status(), StatusCode::FORBIDDEN, "a {len}-byte part");
        }
    }
    // Part 2 starts at 5 MiB of a 6 MiB cap: its URL is for at most 1 MiB.
    api.part_urls_sized(&id, &[2], Some(MIB + 1))
        .await
        .err(StatusCode::PAYLOAD_TOO_LARGE);
    let e = api
        .complete(&id, &[(1, "\"e\"".into())], MIB, &sha256(&body))
        .await
        .err(StatusCode::BAD_REQUEST);
    assert!(e.contains("not uploaded"), "{e}");
    api.delete(&format!("/v1/uploads/{id}"))
        .await
        .ok::<UploadStatus>();
    assert_eq!(api.status(&id).await.state, UploadState::Aborted);
    assert!(api.hit("big", &[]).await.is_none());
    assert!(
        multipart_uploads(&stack).await.is_empty(),
        "the oversize upload was not aborted"
    );
    assert!(!object_exists(&stack, &object_name(&stack, &id)).await);

    // A completion claiming more than the cap is refused, and the upload aborted.
    let id = api.begin_upload("big").await;
    let urls: PartUrlsResponse = api.part_urls(&id, &[1, 2]).await.ok();
    let e1 = put(&api.http, &urls.urls[0].url, random_bytes(PART as usize)).await;
    let e2 = put(&api.http, &urls.urls[1].url, random_bytes(MIB as usize)).await;
    api.complete(&id, &[(1, e1), (2, e2)], PART + 2 * MIB, &"0".repeat(64))
        .await
        .err(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(api.status(&id).await.state, UploadState::Aborted);
    assert!(api.caches().await.is_empty());
    assert!(multipart_uploads(&stack).await.is_empty());
}

#[tokio::test]
async fn completion_is_checked_against_s3() {
    let stack = Stack::start_with(small_parts).expect("stack");
    let api = Api::new(&stack);
    let id = api.begin_upload("checked").await;
    let parts = api.put_parts(&id, b"hello", PART).await;
    let sha = sha256(b"hello");
    let etag = parts[0].1.clone();

    // Wrong ETag, missing part, wrong size, bad checksum, bad order: 400, nothing stored.
    api.complete(&id, &[(1, "\"0123\"".into())], 5, &sha)
        .await
        .err(StatusCode::BAD_REQUEST);
    api.complete(&id, &[(1, etag.clone()), (2, etag.clone())], 5, &sha)
        .await
        .err(StatusCode::BAD_REQUEST);
    api.complete(&id, &[(1, etag.clone())], 4, &sha)
        .await
        .err(StatusCode::BAD_REQUEST);
    api.complete(&id, &[(1, etag.clone())], 5, "abc")
        .await
        .err(StatusCode::BAD_REQUEST);
    api.complete(&id, &[(1, etag.clone())], 5, &sha.to_uppercase())
        .await
        .err(StatusCode::BAD_REQUEST);
    api.complete(&id, &[(2, etag.clone()), (1, etag.clone())], 5, &sha)
        .await
        .err(StatusCode::BAD_REQUEST);
    api.complete(&id, &[], 5, &sha)
        .await
        .err(StatusCode::BAD_REQUEST);
    assert_eq!(api.status(&id).await.state, UploadState::Uploading);

    // The right one still goes through; ETags compare without their quotes.
    let unquoted = etag.trim_matches('"').to_owned();
    api.complete(&id, &[(1, unquoted)], 5, &sha)
        .await
        .ok::<UploadStatus>();
    api.wait_state(&id, UploadState::Completed).await;
}

/// Issue 17, point 12: an `unpacked_size` the registry cannot store (2^63) answered
/// 503, as if the signer were at fault, and left the upload open; a completion with no
/// recorded extent was accepted, and its bomb filled a restoring job's disk. Now each
/// is a 400 that aborts the upload.
#[tokio::test]
async fn an_impossible_or_missing_extent_is_a_400_that_ends_the_upload() {
    let stack = Stack::start_with(small_parts).expect("stack");
    let api = Api::new(&stack);
    for (key, extent) in [
        (
            "huge-unpacked",
            Extent {
                unpacked_size: Some(1 << 63),
                entries: Some(1),
            },
        ),
        (
            "huge-entries",
            Extent {
                unpacked_size: Some(5),
                entries: Some(u64::MAX),
            },
        ),
        ("no-extent", Extent::default()),
        (
            "no-entries",
            Extent {
                unpacked_size: Some(5),
                entries: None,
            },
        ),
    ] {
        let id = api.begin_upload(key).await;
        let parts = api.put_parts(&id, b"hello", PART).await;
        let req = CompleteRequest {
            parts: parts
                .into_iter()
                .map(|(part_number, etag)| CompletedPart { part_number, etag })
                .collect(),
            size: 5,
            sha256: sha256(b"hello"),
            extent,
            format: bmat_wire::api::FORMAT_ARCHIVE,
            refs: vec![],
            logical_size: None,
        };
        let err = api
            .post(&format!("/v1/uploads/{id}/complete"), &req)
            .await
            .err(StatusCode::BAD_REQUEST);
        assert!(err.contains("aborted"), "{err}");
        assert_eq!(api.status(&id).await.state, UploadState::Aborted);
    }
    assert!(api.caches().await.is_empty());
    assert!(multipart_uploads(&stack).await.is_empty());
}

#[tokio::test]
async fn a_client_abort_ends_the_upload_and_its_multipart_upload() {
    let stack = Stack::start_with(small_parts).expect("stack");
    let api = Api::new(&stack);
    let id = api.begin_upload("aborted").await;
    api.put_parts(&id, b"partial", PART).await;
    assert_eq!(multipart_uploads(&stack).await.len(), 1);
    let status: UploadStatus = api.delete(&format!("/v1/uploads/{id}")).await.ok();
    assert_eq!(status.state, UploadState::Aborted);
    assert!(multipart_uploads(&stack).await.is_empty());
    // Idempotent, and final.
    let again: UploadStatus = api.delete(&format!("/v1/uploads/{id}")).await.ok();
    assert_eq!(again.state, UploadState::Aborted);
    api.part_urls(&id, &[1]).await.err(StatusCode::CONFLICT);
    // The key is free again.
    api.begin_upload("aborted").await;
    // Unknown and malformed upload ids.
    api.get("/v1/uploads/01ARZ3NDEKTSV4RRFFQ69G5FAV")
        .await
        .err(StatusCode::NOT_FOUND);
    api.get("/v1/uploads/not-a-ulid")
        .await
        .err(StatusCode::BAD_REQUEST);
}

/// Percent-encodes every byte but ASCII letters and digits, for a path segment.
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn invalid_keys_are_refused_on_every_endpoint() {
    let stack = Stack::start().expect("stack");
    let api = Api::new(&stack);
    let too_long = "k".repeat(129);
    let invalid: Vec<&str> = vec![
        "", ".hidden", "-flag", "a/b", "../x", "a b", "é", "a\0", "a\n", "a\t", "a%2f", "a:b",
        "a*b", "a?b", "a#b", "a\\b", "a+b", "a~b", "a@b", "😀", &too_long,
    ];
    assert!(invalid.len() >= 15);
    for key in &invalid {
        let e = api.lookup(key, &[]).await.err(StatusCode::BAD_REQUEST);
        assert!(e.starts_with("invalid key"), "lookup {key:?}: {e}");
        let e = api
            .lookup("valid", &[key])
            .await
            .err(StatusCode::BAD_REQUEST);
        assert!(
            e.starts_with("invalid fallback prefix"),
            "fallback {key:?}: {e}"
        );
        let e = api.begin(key).await.err(StatusCode::BAD_REQUEST);
        assert!(e.starts_with("invalid key"), "begin {key:?}: {e}");
        let e = api
            .delete(&format!("/v1/caches/{}", path_segment(key)))
            .await
            .err(StatusCode::BAD_REQUEST);
        assert!(e.starts_with("invalid key"), "delete {key:?}: {e}");
    }
    // Nothing was created on the way.
    assert!(api.caches().await.is_empty());
    assert!(multipart_uploads(&stack).await.is_empty());
    // The longest valid key is fine.
    let longest = "k".repeat(128);
    assert!(api.hit(&longest, &[]).await.is_none());
}

#[tokio::test]
async fn tokens_and_owners_are_enforced() {
    let stack = Stack::start_with(small_parts).expect("stack");
    let api = Api::new(&stack);
    let other = api.with_token(Some(&stack.env().other_token));
    let anonymous = api.with_token(None);
    let forged = api.with_token(Some("not-a-token"));

    api.store("shared-key", b"alpha's").await;
    let id = api.begin_upload("in-flight").await;

    // Health needs no token; everything else does.
    let health = anonymous.get("/v1/health").await;
    assert_eq!(health.status, StatusCode::OK);
    for client in [&anonymous, &forged] {
        client
            .lookup("shared-key", &[])
            .await
            .err(StatusCode::UNAUTHORIZED);
        client.begin("k").await.err(StatusCode::UNAUTHORIZED);
        client
            .part_urls(&id, &[1])
            .await
            .err(StatusCode::UNAUTHORIZED);
        client
            .complete(&id, &[(1, "\"e\"".into())], 1, &"0".repeat(64))
            .await
            .err(StatusCode::UNAUTHORIZED);
        client
            .get(&format!("/v1/uploads/{id}"))
            .await
            .err(StatusCode::UNAUTHORIZED);
        client
            .delete(&format!("/v1/uploads/{id}"))
            .await
            .err(StatusCode::UNAUTHORIZED);
        client.get("/v1/caches").await.err(StatusCode::UNAUTHORIZED);
        client
            .delete("/v1/caches/shared-key")
            .await
            .err(StatusCode::UNAUTHORIZED);
    }
    // A header that is not `Bearer <token>`.
    let basic = api
        .http
        .get(format!("{}/v1/caches", api.base))
        .header("authorization", format!("Basic {}", stack.env().token))
        .send()
        .await
        .expect("answer");
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);

    // Another owner's upload: 404 on every upload endpoint, as for an unknown one (ids
    // reveal nothing), and it is left untouched.
    other.part_urls(&id, &[1]).await.err(StatusCode::NOT_FOUND);
    other
        .complete(&id, &[(1, "\"e\"".into())], 1, &"0".repeat(64))
        .await
        .err(StatusCode::NOT_FOUND);
    other
        .get(&format!("/v1/uploads/{id}"))
        .await
        .err(StatusCode::NOT_FOUND);
    other
        .delete(&format!("/v1/uploads/{id}"))
        .await
        .err(StatusCode::NOT_FOUND);
    assert_eq!(api.status(&id).await.state, UploadState::Uploading);

    // Another owner's key does not exist for you.
    assert!(other.hit("shared-key", &[]).await.is_none());
    assert!(other.hit("nothing", &["shared"]).await.is_none());
    assert!(other.caches().await.is_empty());
    other
        .delete("/v1/caches/shared-key")
        .await
        .err(StatusCode::NOT_FOUND);
    // …and it has a namespace of its own under the same key.
    other.store("shared-key", b"beta's").await;
    let mine = api.hit("shared-key", &[]).await.expect("alpha's hit");
    let theirs = other.hit("shared-key", &[]).await.expect("beta's hit");
    assert_eq!(download(&api.http, &mine.url).await, b"alpha's");
    assert_eq!(download(&api.http, &theirs.url).await, b"beta's");
}

#[tokio::test]
async fn health_needs_no_s3_and_s3_failures_are_502() {
    let mut stack = Stack::start_with(small_parts).expect("stack");
    if !stack.owns_s3() {
        eprintln!("skipped: the stack uses an external S3 server that cannot be stopped");
        return;
    }
    let api = Api::new(&stack);
    stack.kill_s3().expect("kill S3");
    let health = api.with_token(None).get("/v1/health").await;
    assert_eq!(health.status, StatusCode::OK);
    let e = api
        .begin("while-s3-is-down")
        .await
        .err(StatusCode::BAD_GATEWAY);
    assert!(e.contains("storage backend failed"), "{e}");
    // The failed begin does not block the key.
    stack.start_s3().expect("restart S3");
    poll_until("a begin to succeed once S3 is back", PATIENCE, || async {
        matches!(
            api.begin("while-s3-is-down")
                .await
                .body
                .get("outcome")
                .and_then(|o| o.as_str()),
            Some("upload")
        )
    })
    .await;
}

#[tokio::test]
async fn a_502_names_no_endpoint_bucket_prefix_or_object() {
    let mut stack = Stack::start_with(small_parts).expect("stack");
    if !stack.owns_s3() {
        eprintln!("skipped: the stack uses an external S3 server that cannot be stopped");
        return;
    }
    let api = Api::new(&stack);
    let stored = api.store("stored", b"stored").await;
    let pending = api.begin_upload("pending").await;
    let parts = api.put_parts(&pending, b"pending", PART).await;
    stack.kill_s3().expect("kill S3");

    let env = stack.env();
    let host_port = env
        .s3_endpoint
        .split_once("://")
        .map_or(env.s3_endpoint.as_str(), |(_, rest)| rest);
    let hidden = [
        env.s3_endpoint.as_str(),
        host_port,
        env.s3_bucket.as_str(),
        env.s3_prefix.as_str(),
        stored.as_str(),
        pending.as_str(),
    ];
    let answers = [
        api.begin("while-s3-is-down")
            .await
            .err(StatusCode::BAD_GATEWAY),
        api.complete(&pending, &parts, 7, &sha256(b"pending"))
            .await
            .err(StatusCode::BAD_GATEWAY),
        api.delete("/v1/caches/stored")
            .await
            .err(StatusCode::BAD_GATEWAY),
    ];
    for e in answers {
        assert!(e.contains("storage backend failed"), "{e}");
        for h in hidden {
            assert!(!e.contains(h), "{h:?} in the answer: {e}");
        }
    }
}

#[tokio::test]
async fn a_signer_killed_before_its_worker_ran_completes_after_restart() {
    // The worker is held back, so `complete` only queues the upload in SQLite.
    let mut stack = Stack::start_with(|c| {
        small_parts(c);
        c.timing.worker_start_delay_secs = 3600;
    })
    .expect("stack");
    let api = Api::new(&stack);
    let data = random_bytes(PART as usize + 1000);
    let id = api.begin_upload("survives").await;
    let parts = api.put_parts(&id, &data, PART).await;
    api.complete(&id, &parts, data.len() as u64, &sha256(&data))
        .await
        .ok::<UploadStatus>();
    assert_eq!(api.status(&id).await.state, UploadState::Finished);
    assert!(
        api.hit("survives", &[]).await.is_none(),
        "completed before the worker ran"
    );

    // A second queued upload whose CompleteMultipartUpload already went through in S3
    // (the crash hit between S3's answer and the database write).
    let id2 = api.begin_upload("completed-in-s3").await;
    let parts2 = api.put_parts(&id2, b"done already", PART).await;
    api.complete(&id2, &parts2, 12, &sha256(b"done already"))
        .await
        .ok::<UploadStatus>();
    let s3 = stack.s3_client().expect("s3 client");
    let object2 = object_name(&stack, &id2);
    let upload2 = s3
        .list_multipart_uploads(&object2)
        .await
        .expect("list uploads")
        .into_iter()
        .find(|u| u.key == object2)
        .expect("the multipart upload");
    s3.complete_multipart_upload(&object2, &upload2.upload_id, &parts2)
        .await
        .expect("complete in S3 behind the signer's back");

    stack.kill_signer().expect("SIGKILL the signer");
    restart_signer_with(&mut stack, |c| c.timing.worker_start_delay_secs = 0);
    // A fresh client: its pooled connection died with the old signer.
    let api = Api::new(&stack);

    api.wait_state(&id, UploadState::Completed).await;
    let hit = api.hit("survives", &[]).await.expect("cache after restart");
    assert_eq!(sha256(&download(&api.http, &hit.url).await), sha256(&data));

    api.wait_state(&id2, UploadState::Completed).await;
    let hit2 = api
        .hit("completed-in-s3", &[])
        .await
        .expect("recovered through HeadObject");
    assert_eq!(download(&api.http, &hit2.url).await, b"done already");
    assert!(multipart_uploads(&stack).await.is_empty());
}

#[tokio::test]
async fn a_completion_that_cannot_succeed_ends_aborted() {
    let mut stack = Stack::start_with(|c| {
        small_parts(c);
        c.timing.worker_start_delay_secs = 3600;
        c.timing.completion_backoff_ms = 10;
    })
    .expect("stack");
    let api = Api::new(&stack);
    let id = api.begin_upload("doomed").await;
    let parts = api.put_parts(&id, b"doomed", PART).await;
    api.complete(&id, &parts, 6, &sha256(b"doomed"))
        .await
        .ok::<UploadStatus>();
    // The multipart upload vanishes before the worker gets to it.
    let s3 = stack.s3_client().expect("s3 client");
    let object = object_name(&stack, &id);
    for u in s3.list_multipart_uploads(&object).await.expect("list") {
        s3.abort_multipart_upload(&u.key, &u.upload_id)
            .await
            .expect("abort");
    }
    stack.kill_signer().expect("kill");
    restart_signer_with(&mut stack, |c| c.timing.worker_start_delay_secs = 0);
    // A fresh client: its pooled connection died with the old signer.
    let api = Api::new(&stack);
    api.wait_state(&id, UploadState::Aborted).await;
    assert!(api.hit("doomed", &[]).await.is_none());
    // The key is free for a new attempt.
    api.begin_upload("doomed").await;
}

/// How many times the completion worker has tried the upload, read from the registry
/// file (the API does not show it).
fn completion_attempts(stack: &Stack, id: &str) -> u32 {
    let reg = signer::registry::Registry::open(&stack.signer_config().database)
        .expect("open the registry");
    reg.get_upload(id)
        .expect("read the upload")
        .expect("the upload row")
        .attempts
}

#[tokio::test]
async fn a_completion_outlasts_an_s3_outage() {
    // The worker is held back until S3 is down; then tiny backoffs let it fail many
    // times in a few seconds.
    let mut stack = Stack::start_with(|c| {
        small_parts(c);
        c.timing.worker_start_delay_secs = 3600;
        c.timing.completion_backoff_ms = 10;
        c.timing.completion_max_backoff_ms = 50;
    })
    .expect("stack");
    if !stack.owns_s3() {
        eprintln!("skipped: the stack uses an external S3 server that cannot be stopped");
        return;
    }
    let api = Api::new(&stack);
    let data = random_bytes(PART as usize + 1000);
    let id = api.begin_upload("outlasts").await;
    let parts = api.put_parts(&id, &data, PART).await;
    api.complete(&id, &parts, data.len() as u64, &sha256(&data))
        .await
        .ok::<UploadStatus>();

    stack.kill_signer().expect("kill the signer");
    stack.kill_s3().expect("kill S3");
    restart_signer_with(&mut stack, |c| c.timing.worker_start_delay_secs = 0);
    let api = Api::new(&stack);
    // The old worker gave up after 5 attempts; this one keeps going.
    poll_until("10 failed completion attempts", PATIENCE, || async {
        assert_eq!(api.status(&id).await.state, UploadState::Finished);
        completion_attempts(&stack, &id) >= 10
    })
    .await;

    stack.start_s3().expect("restart S3");
    api.wait_state(&id, UploadState::Completed).await;
    let hit = api
        .hit("outlasts", &[])
        .await
        .expect("cache after the outage");
    assert_eq!(sha256(&download(&api.http, &hit.url).await), sha256(&data));
}

#[tokio::test]
async fn the_reaper_aborts_abandoned_and_unknown_uploads_and_orphan_objects() {
    let stack = Stack::start_with(|c| {
        small_parts(c);
        c.timing.part_url_expiry_secs = 1;
        c.timing.stale_margin_secs = 4; // long enough for the final `store` on a busy machine
        c.timing.reaper_interval_secs = 1;
    })
    .expect("stack");
    let api = Api::new(&stack);
    let s3 = stack.s3_client().expect("s3 client");
    // A completed cache, which none of this touches.
    let kept = api.store("kept", b"kept").await;

    // Abandoned mid-way: one part uploaded, then nothing.
    let id = api.begin_upload("abandoned").await;
    api.put_parts(&id, &random_bytes(1000), PART).await;
    // A multipart upload and an object under the prefix that no row knows.
    let unknown = format!("{}01ARZ3NDEKTSV4RRFFQ69G5FAV", caches_prefix(&stack));
    s3.create_multipart_upload(&unknown).await.expect("create");
    let stray = format!("{}not-a-ulid", caches_prefix(&stack));
    s3.create_multipart_upload(&stray).await.expect("create");
    let orphan = format!("{}01BX5ZZKBKACTAV9WEVGEMMVRZ", caches_prefix(&stack));
    s3.put_object(&orphan, b"nobody's".to_vec())
        .await
        .expect("put");
    // An index object of no cache (its cache's deletion failed to delete it).
    let index = |id: &str| format!("{}/index/{id}", stack.env().s3_prefix);
    let orphan_index = index("01BX5ZZKBKACTAV9WEVGEMMVRZ");
    s3.put_object(&orphan_index, b"{}".to_vec())
        .await
        .expect("put");
    // Outside the prefix: not the signer's business.
    let outside = format!(
        "{}-elsewhere/caches/01BX5ZZKBKACTAV9WEVGEMMVS0",
        stack.env().s3_prefix
    );
    s3.put_object(&outside, b"keep".to_vec())
        .await
        .expect("put");

    api.wait_state(&id, UploadState::Aborted).await;
    poll_until(
        "ListMultipartUploads under the prefix to be empty",
        PATIENCE,
        || async { multipart_uploads(&stack).await.is_empty() },
    )
    .await;
    poll_until("the orphan objects to be deleted", PATIENCE, || async {
        !object_exists(&stack, &orphan).await && !object_exists(&stack, &orphan_index).await
    })
    .await;
    assert!(object_exists(&stack, &outside).await);
    // Older than the stale window too, the cache and its index object are kept.
    assert!(object_exists(&stack, &index(&kept)).await);
    let hit = api.hit("kept", &[]).await.expect("hit");
    assert_eq!(download(&api.http, &hit.url).await, b"kept");
}

#[tokio::test]
async fn the_reaper_spares_unknown_uploads_and_objects_younger_than_the_stale_window() {
    let stack = Stack::start_with(small_parts).expect("stack");
    // A reaper of a second registry, driven pass by pass from here, on a prefix of its
    // own (the stack's signer never looks there) in the stack's real bucket.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = stack.signer_config().clone();
    cfg.database = dir.path().join("second.sqlite");
    cfg.s3.prefix = format!("{}-second", stack.env().s3_prefix);
    cfg.timing.part_url_expiry_secs = 1;
    cfg.timing.stale_margin_secs = 9;
    let creds = dir.path().join("s3.toml");
    let env = stack.env();
    std::fs::write(
        &creds,
        format!(
            "access_key_id = {:?}\nsecret_access_key = {:?}\n",
            env.s3_access_key_id, env.s3_secret_access_key
        ),
    )
    .expect("credentials file");
    cfg.s3.credentials_file = Some(creds);
    let caches = cfg.s3.caches_prefix();
    let st = signer::server::build_state(cfg).expect("second registry");

    // No row knows them, and S3 says they were made just now. The object's name is an
    // old ULID: a restored or copied object is new under an old name.
    let s3 = stack.s3_client().expect("s3 client");
    let upload = format!("{caches}{}", ulid::Ulid::new());
    s3.create_multipart_upload(&upload).await.expect("create");
    let object = format!("{caches}01BX5ZZKBKACTAV9WEVGEMMVS1");
    s3.put_object(&object, b"young".to_vec())
        .await
        .expect("put");
    let uploads_there = || async {
        s3.list_multipart_uploads(&caches)
            .await
            .expect("list uploads")
            .len()
    };

    let report = signer::ops::reaper::reap_once(&st).await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(uploads_there().await, 1, "{report:?}");
    assert!(object_exists(&stack, &object).await, "{report:?}");

    // Once S3 says they are older than the stale window (10 s), a pass removes them.
    poll_until(
        "the aged upload and object to be reaped",
        PATIENCE,
        || async {
            signer::ops::reaper::reap_once(&st).await;
            uploads_there().await == 0 && !object_exists(&stack, &object).await
        },
    )
    .await;
}

/// A second signer process: another registry (its own database) on the stack's
/// bucket and prefix, `tweak` applied to its config. Killed when dropped.
struct SecondSigner {
    child: std::process::Child,
    ready: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl SecondSigner {
    fn spawn(
        stack: &Stack,
        dir: &std::path::Path,
        tweak: impl FnOnce(&mut Config),
    ) -> SecondSigner {
        let mut cfg = stack.signer_config().clone();
        cfg.database = dir.join("second.sqlite");
        cfg.listen = ([127, 0, 0, 1], 0).into();
        // The first signer's metrics address is taken.
        cfg.metrics = None;
        tweak(&mut cfg);
        let config = dir.join("second.toml");
        std::fs::write(&config, cfg.to_toml().expect("config TOML")).expect("write config");
        let (ready, log) = (dir.join("second.ready"), dir.join("second.log"));
        let _ = std::fs::remove_file(&ready);
        let env = stack.env();
        let child = std::process::Command::new(
            xtask::stack::bins::workspace_bin("signer").expect("signer binary"),
        )
        .arg("--config")
        .arg(&config)
        .arg("--ready-file")
        .arg(&ready)
        .env(&cfg.s3.access_key_id_env, &env.s3_access_key_id)
        .env(&cfg.s3.secret_access_key_env, &env.s3_secret_access_key)
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn the second signer");
        SecondSigner { child, ready, log }
    }

    /// Waits until it is ready (`Ok`) or has exited (`Err` with its stderr).
    fn outcome(&mut self) -> Result<(), String> {
        let mut exited = None;
        common::poll_until_sync("the second signer to start or exit", PATIENCE, || {
            exited = self.child.try_wait().expect("wait");
            exited.is_some() || self.ready.exists()
        });
        match exited {
            None => Ok(()),
            Some(_) => Err(std::fs::read_to_string(&self.log).expect("read the log")),
        }
    }
}

impl Drop for SecondSigner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_second_registry_on_a_claimed_prefix_is_refused_unless_it_takes_over() {
    let mut stack = Stack::start_with(small_parts).expect("stack");
    let api = Api::new(&stack);
    api.store("first", b"first").await;
    let dir = tempfile::tempdir().expect("tempdir");

    let stderr = SecondSigner::spawn(&stack, dir.path(), |_| {})
        .outcome()
        .expect_err("a second registry started on a claimed prefix");
    let line = stderr
        .lines()
        .find(|l| l.contains("error"))
        .unwrap_or_default();
    assert!(
        line.contains("belongs to another registry") && line.contains("s3.take_over_prefix"),
        "{stderr}"
    );
    // The first signer is untouched.
    assert!(api.hit("first", &[]).await.is_some());

    // With the flag it takes the prefix over, once the first signer is gone (its lease
    // lapsed) ...
    stack.kill_signer().expect("kill the first signer");
    let mut second = SecondSigner::spawn(&stack, dir.path(), |c| c.s3.take_over_prefix = true);
    second
        .outcome()
        .expect("the second signer takes the prefix over");
    drop(second);

    // ... and now the first one is the stranger there.
    let e = stack
        .start_signer()
        .expect_err("the first signer restarted on a prefix taken over");
    assert!(
        format!("{e:#}").contains("belongs to another registry"),
        "{e:#}"
    );
}

/// Issue 17, point 12: a second signer started on a copy of the live registry (the
/// same registry id, as a restored backup has) passed the prefix claim, and its
/// reaper deleted the first signer's newer cache as an orphan. Now the running
/// signer's lease keeps the copy out.
#[tokio::test]
async fn a_signer_on_a_copy_of_the_live_registry_refuses_the_prefix_and_deletes_nothing() {
    // A reaper that does not know the newer cache would delete it at once. A lease of
    // 10 s, renewed every 3 s.
    let stack = Stack::start_with(|c| {
        common::eager_reaper(c);
        c.timing.prefix_lease_secs = 10;
    })
    .expect("stack");
    let api = Api::new(&stack);
    api.store("before-copy", b"older").await;
    let dir = tempfile::tempdir().expect("tempdir");
    // A consistent copy of the live registry, as a backup tool makes it.
    rusqlite::Connection::open(stack.signer_config().database.as_path())
        .expect("open the live registry")
        .execute(
            "VACUUM INTO ?1",
            [dir.path()
                .join("second.sqlite")
                .to_str()
                .expect("utf-8 path")],
        )
        .expect("copy the registry");
    let id = api.store("after-copy", b"newer").await;
    let object = object_name(&stack, &id);
    common::wait_until_older(&stack, &object, Duration::from_secs(2)).await;

    let mut copy = SecondSigner::spawn(&stack, dir.path(), |_| {});
    if copy.outcome().is_ok() {
        poll_until(
            "the copy's reaper to delete the newer cache",
            PATIENCE,
            async || !object_exists(&stack, &object).await,
        )
        .await;
        panic!("the signer on the copy took the prefix and deleted {object}");
    }
    let stderr = std::fs::read_to_string(&copy.log).expect("the copy's log");
    let line = stderr
        .lines()
        .find(|l| l.contains("is held by another running signer"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let holder = common::prefix_claim(&stack).await["holder"]["instance"].clone();
    assert!(
        line.contains(&format!("s3.prefix {:?}", stack.env().s3_prefix))
            && line.contains(&format!("instance {}", holder.as_str().expect("instance")))
            && line.contains("renewed its 10 s lease")
            && line.contains("a prefix of its own"),
        "{line}"
    );
    // The first signer's caches, the newer one included, are untouched, and it is well.
    assert!(object_exists(&stack, &object).await);
    assert!(api.hit("after-copy", &[]).await.is_some());
    assert!(api.hit("before-copy", &[]).await.is_some());
    let health = api.with_token(None).get("/v1/health").await;
    assert_eq!(health.status, StatusCode::OK);
}

/// A clean stop releases the prefix's lease, so the restart does not wait for it; a
/// killed signer's lease holds the prefix until it lapses, then a restart takes it.
#[tokio::test]
async fn a_clean_stop_releases_the_prefix_and_a_killed_signers_lease_lapses() {
    // A lease far longer than the restart's 30 s deadline.
    let mut stack = Stack::start_with(|c| {
        small_parts(c);
        c.timing.prefix_lease_secs = 600;
    })
    .expect("stack");
    let api = Api::new(&stack);
    api.store("kept", b"kept").await;
    let held = common::prefix_claim(&stack).await;
    assert_eq!(held["holder"]["lease_secs"], 600, "{held}");

    let status = stack.stop_signer().expect("SIGTERM");
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let released = common::prefix_claim(&stack).await;
    assert_eq!(released["registry"], held["registry"], "{released}");
    assert!(released.get("holder").is_none(), "{released}");
    stack
        .start_signer_with(|c| c.timing.prefix_lease_secs = 3)
        .expect("a restart after a clean stop takes the prefix at once");
    assert!(api.hit("kept", &[]).await.is_some());

    let before = common::prefix_claim(&stack).await;
    stack.kill_signer().expect("SIGKILL");
    assert_eq!(common::prefix_claim(&stack).await, before, "not released");
    stack
        .start_signer()
        .expect("a restart after a kill takes the prefix once the lease lapsed");
    let after = common::prefix_claim(&stack).await;
    assert_ne!(
        after["holder"]["instance"], before["holder"]["instance"],
        "{after}"
    );
    let log = std::fs::read_to_string(stack.dir().join("signer.log")).expect("signer log");
    assert!(log.contains("lapsed without a renewal"), "{log}");
    assert!(api.hit("kept", &[]).await.is_some());
}

#[tokio::test]
async fn a_flood_of_half_sent_requests_neither_starves_health_nor_stays_open() {
    let stack = Stack::start_with(|c| {
        c.timing.header_read_timeout_secs = 1;
        c.limits.max_connections = 100;
    })
    .expect("stack");
    let api = Api::new(&stack);
    // Three times the connection limit, each with half a request line and then silence.
    let mut held = Vec::new();
    for _ in 0..300 {
        let mut conn = tokio::net::TcpStream::connect(stack.signer_config().listen)
            .await
            .expect("connect");
        tokio::io::AsyncWriteExt::write_all(&mut conn, b"GET /v1/hea")
            .await
            .expect("half a request line");
        held.push(conn);
    }

    // Answered within the client's own 30 s timeout, while all 300 are still open
    // from the client's side.
    let health = api.with_token(None).get("/v1/health").await;
    assert_eq!(health.status, StatusCode::OK);

    // The server closes every one of them (EOF or reset) once the header timeout hits.
    let mut closing = tokio::task::JoinSet::new();
    for mut conn in held {
        closing.spawn(async move {
            let mut buf = [0u8; 256];
            loop {
                match tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {} // an error answer, then the close
                }
            }
        });
    }
    let all_closed = async {
        while let Some(done) = closing.join_next().await {
            done.expect("reader task");
        }
    };
    tokio::time::timeout(PATIENCE, all_closed)
        .await
        .expect("half-sent connections still open after a minute");
}

/// Issue 17, point 12: 520 connections with a job token, each sending one body byte
/// and then holding, timed out every health probe for 90 s. Now one token has at most
/// `max_connections_per_token` requests in progress (the rest are answered 429 at
/// once), a body must arrive within `body_read_timeout_secs` (else 408), and health
/// is answered while the slow requests are still open.
#[tokio::test]
async fn one_tokens_slow_bodies_neither_starve_health_nor_stay_open() {
    let stack = Stack::start_with(|c| {
        c.limits.max_connections = 20;
        c.limits.max_connections_per_token = 4;
        c.timing.body_read_timeout_secs = 3;
    })
    .expect("stack");
    let api = Api::new(&stack);
    let head = common::slow_body_request(Some(&stack.env().token));
    let held = common::hold(40, &head, async || {
        tokio::net::TcpStream::connect(stack.signer_config().listen).await
    })
    .await;

    // Answered within the client's own 30 s timeout, while all 40 are still open
    // from the client's side.
    let health = api.with_token(None).get("/v1/health").await;
    assert_eq!(health.status, StatusCode::OK);

    common::slow_requests_end(held, 4).await;
    // The token works again once its slow requests are gone.
    assert!(api.hit("absent", &[]).await.is_none());
}

#[tokio::test]
async fn sigterm_ends_the_signer_while_clients_hold_connections() {
    let stack = Stack::start_with(small_parts).expect("stack");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut signer = SecondSigner::spawn(&stack, dir.path(), |c| {
        c.s3.prefix = "elsewhere".to_owned();
    });
    signer.outcome().expect("the signer starts");
    let url = std::fs::read_to_string(&signer.ready).expect("ready file");
    let addr = url.trim().trim_start_matches("http://");
    // One connection idle after a request, one with half a request line.
    let http = common::http();
    let health = http
        .get(format!("{}/v1/health", url.trim()))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), StatusCode::OK);
    let mut half = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut half, b"POST /v1/look")
        .await
        .expect("half a request line");

    let pid = libc::pid_t::try_from(signer.child.id()).expect("pid");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut status = None;
    common::poll_until_sync("the signer to exit after SIGTERM", PATIENCE, || {
        status = signer.child.try_wait().expect("wait");
        status.is_some()
    });
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[tokio::test]
async fn caches_unused_past_the_ttl_are_evicted() {
    let stack = Stack::start_with(common::short_ttl).expect("stack");
    let api = Api::new(&stack);
    let id = api.store("short-lived", b"bytes").await;
    let object = object_name(&stack, &id);
    assert!(object_exists(&stack, &object).await);
    poll_until("the unused cache to be evicted", PATIENCE, || async {
        api.caches().await.is_empty()
    })
    .await;
    assert!(
        !object_exists(&stack, &object).await,
        "row gone but object kept"
    );
    assert!(api.hit("short-lived", &[]).await.is_none());
}

#[tokio::test]
async fn owners_over_quota_lose_their_least_recently_used_caches() {
    let size = 1000usize;
    let stack = Stack::start_with(|c| {
        small_parts(c);
        c.limits.owner_quota = 2 * size as u64 + size as u64 / 2;
        c.timing.reaper_interval_secs = 1;
    })
    .expect("stack");
    let api = Api::new(&stack);
    let other = api.with_token(Some(&stack.env().other_token));
    other.store("theirs", &random_bytes(size)).await;

    api.store("a", &random_bytes(size)).await;
    let b = api.store("b", &random_bytes(size)).await;
    // Restoring `a` (a reported success; a bare lookup is not a use) makes `b` the
    // least recently used.
    let hit = api.hit("a", &[]).await.expect("a's hit");
    let answer: ReportAnswer = api
        .post(
            "/v1/reports",
            &ReportRequest {
                scope: hit.scope,
                key: hit.key,
                sha256: hit.sha256,
                issued_at_ms: hit.issued_at_ms,
                lookup_id: hit.lookup_id,
                problem: None,
            },
        )
        .await
        .ok();
    assert!(!answer.dropped);
    api.store("c", &random_bytes(size)).await;

    poll_until("the owner to be back under quota", PATIENCE, || async {
        api.caches().await == ["a", "c"]
    })
    .await;
    assert!(!object_exists(&stack, &object_name(&stack, &b)).await);
    // Quotas are per owner.
    assert_eq!(other.caches().await, ["theirs"]);
}

#[tokio::test]
async fn secrets_never_reach_the_signer_log() {
    let stack = Stack::start_with(small_parts).expect("stack");
    let api = Api::new(&stack);
    api.store("logged", b"bytes").await;
    api.begin("bad key").await.err(StatusCode::BAD_REQUEST);
    api.with_token(Some("wrong-token"))
        .get("/v1/caches")
        .await
        .err(StatusCode::UNAUTHORIZED);
    let env = stack.env();
    let log_path = stack
        .log_paths()
        .into_iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains("signer"))
        })
        .expect("signer log");
    let log = std::fs::read_to_string(&log_path).expect("signer log");
    assert!(log.contains("listening on"), "{log}");
    for secret in [&env.s3_secret_access_key, &env.token, &env.other_token] {
        assert!(
            !log.contains(secret.as_str()),
            "a secret is in {}",
            log_path.display()
        );
    }
}

/// Runs the signer binary on a config text; returns (success, stderr).
fn run_signer_with_config(text: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("signer.toml");
    std::fs::write(&path, text).expect("write config");
    let mut cmd = std::process::Command::new(
        xtask::stack::bins::workspace_bin("signer").expect("signer binary"),
    );
    cmd.arg("--config").arg(&path);
    cmd.env_remove("BMAT_S3_ACCESS_KEY_ID")
        .env_remove("BMAT_S3_SECRET_ACCESS_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run signer");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_errors_name_the_field_and_exit_non_zero() {
    let base = format!(
        "listen = \"127.0.0.1:0\"\ndatabase = \"{}/never.sqlite\"\n\
         [s3]\nendpoint = \"http://127.0.0.1:9\"\nbucket = \"b\"\n\
         [[tokens]]\ntoken = \"t\"\nowner = \"o\"\n",
        std::env::temp_dir().display()
    );
    let creds = [
        ("BMAT_S3_ACCESS_KEY_ID", "GK0123456789"),
        ("BMAT_S3_SECRET_ACCESS_KEY", "0123456789abcdef"),
    ];
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(String, Env, &str)] = &[
        (
            base.replace("bucket = \"b\"", "bucket = 7"),
            &creds,
            "bucket",
        ),
        (
            base.replace("bucket = \"b\"", "bucket = \"b\"\nbukket = \"c\""),
            &creds,
            "bukket",
        ),
        (
            format!("{base}[limits]\npart_size = 1024\n"),
            &creds,
            "limits.part_size",
        ),
        (
            format!("{base}[timing]\nlease_secs = \"long\"\n"),
            &creds,
            "lease_secs",
        ),
        (
            base.replace("listen = \"127.0.0.1:0\"", "listen = \"here\""),
            &creds,
            "listen",
        ),
        (base.clone(), &[], "BMAT_S3_ACCESS_KEY_ID"),
    ];
    for (text, env, field) in cases {
        let (ok, stderr) = run_signer_with_config(text, env);
        assert!(!ok, "signer accepted:\n{text}");
        let line = stderr
            .lines()
            .find(|l| l.contains("error"))
            .unwrap_or_default();
        assert!(
            line.contains(field),
            "error does not name {field}: {stderr}"
        );
        assert!(
            !stderr.contains("0123456789abcdef"),
            "secret echoed: {stderr}"
        );
    }
}

#[tokio::test]
async fn lists_come_in_pages() {
    let stack = Stack::start_with(small_parts).expect("stack");
    let api = Api::new(&stack);
    for key in ["a", "b", "c", "d", "e"] {
        api.store(key, key.as_bytes()).await;
    }
    let mut seen = Vec::new();
    let mut path = "/v1/caches?limit=2".to_owned();
    loop {
        let page: bmat_wire::api::CacheList = api.get(&path).await.ok();
        assert!(page.caches.len() <= 2);
        seen.extend(page.caches.into_iter().map(|c| c.key));
        let Some(next) = page.next else { break };
        path = format!(
            "/v1/caches?limit=2&after_scope={}&after_key={}",
            next.scope, next.key
        );
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    api.get("/v1/caches?after_key=a")
        .await
        .err(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_owner_has_at_most_max_live_uploads_at_once() {
    let stack = Stack::start_with(|c| {
        small_parts(c);
        c.limits.max_live_uploads = 2;
    })
    .expect("stack");
    let api = Api::new(&stack);
    let first = api.begin_upload("one").await;
    api.begin_upload("two").await;
    let e = api.begin("three").await.err(StatusCode::TOO_MANY_REQUESTS);
    assert!(e.contains("max_live_uploads"), "{e}");
    // Another owner is not held back; an upload that ends frees its slot.
    let other = api.with_token(Some(&stack.env().other_token));
    other.begin_upload("three").await;
    api.delete(&format!("/v1/uploads/{first}"))
        .await
        .ok::<UploadStatus>();
    api.begin_upload("three").await;
}
