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

/// Waits until the reaper has brought [`OWNER`]'s caches, in every scope, within
/// `quota` bytes.
async fn wait_within_owner_quota(stack: &Stack, quota: u64) {
    let operator = Api::new(stack).with_token(Some(&stack.env().operator_token));
    poll_until(
        "the owner to be back within its quota",
        PATIENCE,
        async || {
            let path = format!("/v1/caches?owner={OWNER}");
            let list: CacheList = operator.get(&path).await.ok();
            list.caches.iter().map(|c| c.size).sum::<u64>() <= quota
        },
    )
    .await;
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
    wait_within_owner_quota(&stack, quota).await;

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

#[tokio::test]
async fn a_pull_request_keeps_within_its_scope_quota_and_the_biggest_pays_for_the_owners() {
    let (size, scope_quota, owner_quota) = (9 * KIB as usize, 20 * KIB, 40 * KIB);
    let stack = Stack::start_with(|c| {
        c.limits.part_size = PART;
        c.limits.scope_quota = scope_quota;
        c.limits.owner_quota = owner_quota;
        c.timing.reaper_interval_secs = 1;
    })
    .expect("stack");
    let main = Api::new(&stack);
    main.store("main-1", &random_bytes(size)).await;
    // Past its own quota (27 KiB of 20), a pull request loses its oldest cache, though
    // the owner is within its quota.
    let big = main.with_token(Some(&pr_token(&stack, 7)));
    for key in ["a-1", "a-2", "a-3"] {
        big.store(key, &random_bytes(size)).await;
    }
    poll_until(
        "the pull request to keep within its quota",
        PATIENCE,
        async || big.caches().await == ["a-2", "a-3"],
    )
    .await;
    let small = main.with_token(Some(&pr_token(&stack, 8)));
    small.store("b-1", &random_bytes(5 * KIB as usize)).await;
    // main's save takes the owner to 41 KiB of 40: the bigger pull request pays.
    main.store("main-2", &random_bytes(size)).await;
    wait_within_owner_quota(&stack, owner_quota).await;
    assert_eq!(big.caches().await, ["a-3"]);
    assert_eq!(small.caches().await, ["b-1"]);
    assert_eq!(main.caches().await, ["main-1", "main-2"]);
}
