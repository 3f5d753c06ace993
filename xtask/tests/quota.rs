//! Quotas and live-upload limits no scope can spend for another (docs/design.md,
//! "Registry and S3 layout"), on a real stack: a pull request that fills its owner's
//! quota loses its own caches, never main's, and one that holds its most live uploads
//! never makes main's saves wait.

mod common;

use bmat_wire::api::{CacheList, MintRequest, PartUrlsResponse};
use common::api::{Api, PART, PATIENCE, random_bytes};
use common::poll_until;
use reqwest::StatusCode;
use signer::config::KIB;
use xtask::stack::{OWNER, SCOPE, Stack};

/// A writing job token of [`OWNER`] for the pull request `n`, reading main's scope.
fn pr_token(stack: &Stack, n: u32) -> String {
    let req = MintRequest {
        owner: OWNER.to_owned(),
        scope: format!("refs/pull/{n}/merge"),
        read_scopes: vec![SCOPE.to_owned()],
        write: true,
        ttl_seconds: None,
    };
    stack.mint(&req).expect("mint a pull request's token").token
}

/// Every cache of [`OWNER`], in every scope, as (scope, key, size).
async fn owners_caches(api: &Api, stack: &Stack) -> Vec<(String, String, u64)> {
    let operator = api.with_token(Some(&stack.env().operator_token));
    let list: CacheList = operator
        .get(&format!("/v1/caches?owner={OWNER}"))
        .await
        .ok();
    let caches = list.caches.into_iter();
    caches.map(|c| (c.scope, c.key, c.size)).collect()
}

#[tokio::test]
async fn a_pull_request_filling_the_owner_quota_evicts_only_its_own_caches() {
    // Issue 17's attack in KiB instead of MiB: an owner quota of 30, caches of 9.
    let (size, quota) = (9 * KIB as usize, 30 * KIB);
    let stack = Stack::start_with(|c| {
        c.limits.part_size = PART;
        c.limits.owner_quota = quota;
        c.timing.reaper_interval_secs = 1;
    })
    .expect("stack");
    let main = Api::new(&stack);
    for key in ["main-1", "main-2"] {
        main.store(key, &random_bytes(size)).await;
        assert!(main.hit(key, &[]).await.is_some());
    }
    let pr = main.with_token(Some(&pr_token(&stack, 7)));
    for key in ["pr-1", "pr-2", "pr-3"] {
        pr.store(key, &random_bytes(size)).await;
    }
    poll_until(
        "the owner to be back within its quota",
        PATIENCE,
        async || {
            let held: u64 = owners_caches(&main, &stack).await.iter().map(|c| c.2).sum();
            held <= quota
        },
    )
    .await;

    // main's caches still hit; the pull request paid with its least recently used.
    for key in ["main-1", "main-2"] {
        let hit = main.hit(key, &[]).await;
        assert!(hit.is_some_and(|h| h.own_scope), "main lost {key}");
    }
    assert_eq!(pr.caches().await, ["pr-3"]);
}

#[tokio::test]
async fn a_pull_request_holding_its_most_live_uploads_never_blocks_mains_saves() {
    let mut stack = Stack::start_with(|c| {
        c.limits.part_size = PART;
        c.limits.max_live_uploads = 32;
        c.limits.max_live_unprotected_uploads = 40;
    })
    .expect("stack");
    let main = Api::new(&stack);
    // Issue 17's attack: one pull request's token holds 32 uploads open, renewing them
    // by asking for part URLs.
    let pr = main.with_token(Some(&pr_token(&stack, 7)));
    let mut held = Vec::new();
    for i in 0..32 {
        held.push(pr.begin_upload(&format!("held-{i}")).await);
    }
    for id in &held {
        pr.part_urls(id, &[1]).await.ok::<PartUrlsResponse>();
    }
    let e = pr
        .begin("one-more")
        .await
        .err(StatusCode::TOO_MANY_REQUESTS);
    assert!(e.contains("limits.max_live_uploads"), "{e}");

    // main saves as if it were not there.
    main.store("main-save", &random_bytes(1000)).await;
    assert!(main.hit("main-save", &[]).await.is_some());

    // Another pull request shares the unprotected scopes' 40 with the first ...
    let other = main.with_token(Some(&pr_token(&stack, 8)));
    for i in 0..8 {
        other.begin_upload(&format!("other-{i}")).await;
    }
    let e = other
        .begin("other-8")
        .await
        .err(StatusCode::TOO_MANY_REQUESTS);
    assert!(e.contains("limits.max_live_unprotected_uploads"), "{e}");
    // ... which holds main back neither.
    main.begin_upload("main-again").await;

    // A reload raises it.
    stack
        .reload_signer_with(|c| c.limits.max_live_unprotected_uploads = 41)
        .expect("reload");
    poll_until(
        "the reloaded limit to admit one more",
        PATIENCE,
        async || other.begin("other-8").await.status == StatusCode::OK,
    )
    .await;
}
