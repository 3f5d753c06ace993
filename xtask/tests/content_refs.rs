//! The signer's side of content-addressed caches on a real stack (docs/design.md,
//! "Content-addressed caches"): the trust rule on a completion's refs, lookups by
//! format, objects that outlive their cache while another reads them, and the grace
//! that keeps a released object downloadable. Caches of contents are made by hand:
//! any bytes, completed with format 2 and refs (the signer never reads them).

mod common;

use std::time::Duration;

use bmat_wire::api::{
    CacheHit, CompleteRequest, CompletedPart, Deleted, FORMAT_ARCHIVE, FORMAT_CONTENTS,
    LookupRequest, LookupResponse, UploadState, UploadStatus, Usage,
};
use common::api::{Answer, Api, PART, PATIENCE, any_extent, download, random_bytes, sha256};
use common::{poll_until, pr_token, scrape, value, wait_until_older};
use reqwest::StatusCode;
use signer::config::Config;
use xtask::stack::{OWNER, SCOPE, Stack};

const PR: &str = "refs/pull/7/merge";

fn small_parts(c: &mut Config) {
    c.limits.part_size = PART;
}

fn object_name(stack: &Stack, id: &str) -> String {
    format!("{}/caches/{id}", stack.env().s3_prefix)
}

async fn object_exists(stack: &Stack, id: &str) -> bool {
    let s3 = stack.s3_client().expect("s3 client");
    let name = object_name(stack, id);
    s3.head_object(&name).await.expect("HeadObject").is_some()
}

/// Uploads `data` to the upload `id` and completes it as a cache of contents that
/// reads `refs`.
async fn complete_contents(api: &Api, id: &str, data: &[u8], refs: &[&str]) -> Answer {
    let parts = api.put_parts(id, data, PART).await;
    let size = data.len() as u64;
    let req = CompleteRequest {
        parts: parts
            .into_iter()
            .map(|(part_number, etag)| CompletedPart { part_number, etag })
            .collect(),
        size,
        sha256: sha256(data),
        extent: any_extent(size),
        format: FORMAT_CONTENTS,
        refs: refs.iter().map(|r| r.to_string()).collect(),
        logical_size: Some(size * 10),
    };
    api.post(&format!("/v1/uploads/{id}/complete"), &req).await
}

/// Saves `data` under `key` as a cache of contents that reads `refs`; its id.
async fn store_contents(api: &Api, key: &str, data: &[u8], refs: &[&str]) -> String {
    let id = api.begin_upload(key).await;
    let status: UploadStatus = complete_contents(api, &id, data, refs).await.ok();
    assert_eq!(status.state, UploadState::Finished);
    api.wait_state(&id, UploadState::Completed).await;
    id
}

/// A lookup by a client that restores caches of contents.
async fn lookup_contents(api: &Api, key: &str, fallbacks: &[&str]) -> Option<CacheHit> {
    let req = LookupRequest {
        key: key.into(),
        fallbacks: fallbacks.iter().map(|s| s.to_string()).collect(),
        exclude: vec![],
        formats: vec![FORMAT_CONTENTS],
        for_save: false,
    };
    api.post("/v1/lookup", &req)
        .await
        .ok::<LookupResponse>()
        .hit
}

/// Waits for two more reaper passes to end: the second began after this call.
async fn two_reaper_passes(stack: &Stack) {
    let passes = async || value(&scrape(stack).await, "bmat_signer_reaper_passes_total", &[]);
    let now = passes().await;
    poll_until("two reaper passes", PATIENCE, async || {
        passes().await >= now + 2.0
    })
    .await;
}

/// Issue 19: a scope may reuse only contents of caches it could read. A pull request
/// reads main's, so its save may name main's object; main never reads a pull
/// request's, so its save naming one is refused (and left for the client to abort).
#[tokio::test]
async fn a_pull_requests_objects_are_never_reused_by_main() {
    let stack = Stack::start_with(small_parts).expect("stack");
    let main = Api::new(&stack);
    let pr = main.with_token(Some(&pr_token(&stack, PR)));
    let main_bytes = random_bytes(1000);
    let m = main.store("deps-main", &main_bytes).await;
    let p = pr.store("deps-pr", b"the pull request's").await;

    let id = main.begin_upload("deps-main-2").await;
    let e = complete_contents(&main, &id, b"main's new", &[&m, &p])
        .await
        .err(StatusCode::BAD_REQUEST);
    assert_eq!(
        e,
        format!("a referenced object is not one this job may read: {p}")
    );
    assert_eq!(main.status(&id).await.state, UploadState::Uploading);
    // An id that is no object at all is refused alike.
    let unknown = ulid::Ulid::new().to_string();
    let e = complete_contents(&main, &id, b"main's new", &[&unknown])
        .await
        .err(StatusCode::BAD_REQUEST);
    assert!(e.ends_with(&unknown), "{e}");

    let reused = store_contents(&pr, "deps-pr-2", b"the delta", &[&m]).await;
    let hit = lookup_contents(&pr, "deps-pr-2", &[]).await.expect("hit");
    assert_eq!(
        (hit.format, hit.id.as_deref()),
        (FORMAT_CONTENTS, Some(reused.as_str()))
    );
    let objects: Vec<(&str, u64)> = hit
        .objects
        .iter()
        .map(|o| (o.id.as_str(), o.size))
        .collect();
    assert_eq!(objects, [(m.as_str(), 1000)]);
    assert_eq!(download(&pr.http, &hit.objects[0].url).await, main_bytes);
}

/// The grace of a released object: long enough for a test's download, short enough to
/// wait out (it is also how long download URLs live).
const GRACE_SECS: u64 = 20;

/// Issue 19: "nothing a live lookup or restore may still read is deleted". A's object
/// stays while B reads it, A deleted or not; once B goes too, A's object stays for the
/// download grace, so the URL a lookup of B handed out before keeps working (this
/// fails with a zero grace), and then goes.
#[tokio::test]
async fn a_referenced_object_outlives_its_cache() {
    let stack = Stack::start_with(|c| {
        small_parts(c);
        c.timing.part_url_expiry_secs = 1;
        c.timing.stale_margin_secs = 0;
        c.timing.reaper_interval_secs = 1;
        c.timing.download_url_expiry_secs = GRACE_SECS;
    })
    .expect("stack");
    let api = Api::new(&stack);
    let a_bytes = random_bytes(1000);
    let a = api.store("a", &a_bytes).await;
    let b = store_contents(&api, "b", b"b's own contents", &[&a]).await;

    let deleted: Deleted = api.delete("/v1/caches/a").await.ok();
    assert!(deleted.deleted);
    assert!(api.hit("a", &[]).await.is_none());
    // Old enough for the orphan sweep, which passes it over.
    wait_until_older(&stack, &object_name(&stack, &a), Duration::from_secs(1)).await;
    two_reaper_passes(&stack).await;
    assert!(
        object_exists(&stack, &a).await,
        "a retained object was deleted"
    );
    let hit = lookup_contents(&api, "b", &[]).await.expect("b's hit");
    assert_eq!(hit.objects.len(), 1, "{hit:?}");
    assert_eq!(
        (hit.objects[0].id.as_str(), hit.objects[0].size),
        (a.as_str(), 1000)
    );
    let url = hit.objects[0].url.clone();
    assert_eq!(download(&api.http, &url).await, a_bytes);

    // B goes: its own object at once, A's after the grace. A restore of B that looked
    // it up before still downloads A meanwhile.
    let deleted: Deleted = api.delete("/v1/caches/b").await.ok();
    assert!(deleted.deleted);
    assert!(!object_exists(&stack, &b).await);
    two_reaper_passes(&stack).await;
    assert_eq!(
        download(&api.http, &url).await,
        a_bytes,
        "a released object went before its grace"
    );
    poll_until("A's object to go after the grace", PATIENCE, async || {
        !object_exists(&stack, &a).await
    })
    .await;
}

/// A client from before content manifests announces no formats: a cache of contents is
/// passed over as if absent, for the next candidate or a miss.
#[tokio::test]
async fn an_old_clients_lookup_passes_over_a_cache_of_contents() {
    let stack = Stack::start_with(small_parts).expect("stack");
    let api = Api::new(&stack);
    let old = api.store("deps-1", b"an archive").await;
    let new = store_contents(&api, "deps-2", b"contents", &[&old]).await;

    // No formats: the archive, or nothing.
    let hit = api.hit("deps-2", &["deps-"]).await.expect("the archive");
    assert_eq!(
        (hit.key.as_str(), hit.format, hit.id.as_deref()),
        ("deps-1", FORMAT_ARCHIVE, Some(old.as_str()))
    );
    assert!(hit.objects.is_empty());
    assert!(api.hit("deps-2", &[]).await.is_none());
    // A client that restores contents gets the newest.
    let hit = lookup_contents(&api, "deps-2", &["deps-"])
        .await
        .expect("hit");
    assert_eq!(
        (hit.key.as_str(), hit.format, hit.id.as_deref()),
        ("deps-2", FORMAT_CONTENTS, Some(new.as_str()))
    );
    let hit = lookup_contents(&api, "x", &["deps-"]).await.expect("hit");
    assert_eq!(hit.key, "deps-2");
}

/// A retained object is stored bytes of its scope: the stats (and the quotas, which
/// count the same) keep counting it after its cache is gone, beside the logical bytes
/// of the caches of contents.
#[tokio::test]
async fn retained_bytes_count_in_their_scopes_stored_bytes() {
    let stack = Stack::start_with(small_parts).expect("stack");
    let api = Api::new(&stack);
    let a = api.store("a", &random_bytes(1000)).await;
    store_contents(&api, "b", &random_bytes(100), &[&a]).await;
    let deleted: Deleted = api.delete("/v1/caches/a").await.ok();
    assert!(deleted.deleted);

    let operator = api.with_token(Some(&stack.env().operator_token));
    let usage: Usage = operator.get(&format!("/v1/stats?owner={OWNER}")).await.ok();
    let main = &usage.owners[0].scopes[0];
    // B's 100 bytes and A's 1000, retained; B's logical size (10 × its size) alone.
    assert_eq!(
        (
            main.scope.as_str(),
            main.bytes,
            main.logical_bytes,
            main.caches
        ),
        (SCOPE, 1100, 1000, 1)
    );
    assert_eq!(usage.owners[0].bytes, 1100);
    let metrics = scrape(&stack).await;
    assert_eq!(value(&metrics, "bmat_signer_retained_bytes", &[]), 1000.0);
}
