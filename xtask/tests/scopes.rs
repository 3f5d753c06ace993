//! Scopes and job tokens (docs/design.md, "Trust model") on a real stack: a pull
//! request reads main's caches and never writes them, read-only tokens, expiry and
//! revocation, owners kept apart, operators held to their owners, and a registry of the
//! previous release migrated in place.

#[path = "common/cache.rs"]
mod cache;
mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use bmat_wire::api::{CacheList, Deleted, LookupResponse, MintRequest, MintedToken, Revoked};
use cache::{Run, assert_same, manifest, multipart_uploads, run, small_tree};
use common::api::{Api, PATIENCE};
use common::{bmat, bmat_with_token, poll_until};
use reqwest::StatusCode;
use signer::config::TokenConfig;
use xtask::stack::{OTHER_OWNER, OWNER, SCOPE, Stack, bins};

const PR: &str = "refs/pull/7/merge";

/// A request for a job token of `owner` in `scope`, reading `read_scopes`, living the
/// signer's default lifetime.
fn token_request(owner: &str, scope: &str, read_scopes: &[&str], write: bool) -> MintRequest {
    MintRequest {
        owner: owner.to_owned(),
        scope: scope.to_owned(),
        read_scopes: read_scopes.iter().map(|s| s.to_string()).collect(),
        write,
        ttl_seconds: None,
    }
}

/// A job token of [`OWNER`], minted with the stack's operator credential.
fn mint(stack: &Stack, scope: &str, read_scopes: &[&str], write: bool) -> MintedToken {
    stack
        .mint(&token_request(OWNER, scope, read_scopes, write))
        .expect("mint a job token")
}

/// A pull request's job token: its own scope, reading main's.
fn pr_token(stack: &Stack, write: bool) -> String {
    mint(stack, PR, &[SCOPE], write).token
}

fn save_as(cmd: Command, dir: &Path, key: &str) -> Run {
    run(cmd, dir, &["--json", "cache", "save", key], b"tree\n")
}

fn restore_as(cmd: Command, dir: &Path, key: &str, fallback: Option<&str>) -> Run {
    let mut args = vec!["--json", "cache", "restore", key];
    if let Some(prefix) = fallback {
        args.extend(["--fallback", prefix]);
    }
    run(cmd, dir, &args, b"")
}

fn tree_with(dir: &Path, marker: &str) {
    small_tree(&dir.join("tree"));
    fs::write(dir.join("tree/marker"), marker).expect("write marker");
}

fn marker(dir: &Path) -> String {
    fs::read_to_string(dir.join("tree/marker")).unwrap_or_default()
}

fn assert_outcome(r: &Run, outcome: &str) {
    assert_eq!((r.code, r.outcome().as_str()), (0, outcome), "{r:?}");
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn a_pull_request_restores_mains_cache() {
    let stack = Stack::start().expect("stack");
    let src = tempdir();
    tree_with(src.path(), "main");
    // main's job (the stack's shim holds a main-scope token) saves.
    assert_outcome(&save_as(bmat(&stack), src.path(), "deps-1"), "saved");

    let pr = pr_token(&stack, true);
    let dst = tempdir();
    let r = restore_as(
        bmat_with_token(&stack, &pr),
        dst.path(),
        "deps-2",
        Some("deps-"),
    );
    assert_outcome(&r, "hit");
    assert_eq!(r.json()["matched_key"], "deps-1", "{r:?}");
    assert_eq!(r.json()["scope"], SCOPE, "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("cache hit: deps-2 (from deps-1 in scope {SCOPE},")),
        "{r:?}"
    );
    assert_same(&manifest(src.path()), &manifest(dst.path()), "restored");
}

#[test]
fn a_pull_requests_save_stays_in_its_own_scope() {
    let stack = Stack::start().expect("stack");
    let main_tree = tempdir();
    tree_with(main_tree.path(), "main");
    assert_outcome(&save_as(bmat(&stack), main_tree.path(), "deps-a"), "saved");

    // The PR saves a newer deps-* cache and the very key main has: both are stored,
    // in the PR's scope.
    let pr = pr_token(&stack, true);
    let pr_tree = tempdir();
    tree_with(pr_tree.path(), "poison");
    for key in ["deps-b", "deps-a"] {
        let r = save_as(bmat_with_token(&stack, &pr), pr_tree.path(), key);
        assert_outcome(&r, "saved");
    }

    // main sees none of it: not by exact key, not by prefix, not its content.
    let main = Api::new(&stack);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        assert!(main.hit("deps-b", &[]).await.is_none());
        let by_prefix = main.hit("deps-z", &["deps-"]).await.expect("main's hit");
        assert_eq!(
            (by_prefix.key.as_str(), by_prefix.scope.as_str()),
            ("deps-a", SCOPE)
        );
        assert!(by_prefix.own_scope);
        let listed: CacheList = main.get("/v1/caches").await.ok();
        let keys: Vec<_> = listed.caches.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["deps-a"]);
    });
    for (key, fallback) in [("deps-a", None), ("deps-z", Some("deps-"))] {
        let dst = tempdir();
        let r = restore_as(bmat(&stack), dst.path(), key, fallback);
        assert_outcome(&r, "hit");
        assert_eq!(marker(dst.path()), "main", "{key}: {r:?}");
    }
    let r = restore_as(bmat(&stack), tempdir().path(), "deps-b", Some("deps-b"));
    assert_outcome(&r, "miss");

    // The PR finds its own first, and says nothing of another scope.
    let dst = tempdir();
    let r = restore_as(bmat_with_token(&stack, &pr), dst.path(), "deps-a", None);
    assert_outcome(&r, "hit");
    assert_eq!(marker(dst.path()), "poison");
    assert_eq!(r.json()["scope"], PR);
    assert!(!r.stderr.contains("scope"), "{r:?}");
}

#[test]
fn a_read_only_token_restores_but_cannot_write() {
    let stack = Stack::start().expect("stack");
    let src = tempdir();
    tree_with(src.path(), "main");
    assert_outcome(&save_as(bmat(&stack), src.path(), "k"), "saved");
    let ro = pr_token(&stack, false);

    let dst = tempdir();
    assert_outcome(
        &restore_as(bmat_with_token(&stack, &ro), dst.path(), "k", None),
        "hit",
    );
    assert_eq!(marker(dst.path()), "main");

    let main = Api::new(&stack);
    let reader = main.with_token(Some(&ro));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let e = reader.begin("k2").await;
        assert_eq!(e.body["code"], "read_only", "{}", e.body);
        e.err(StatusCode::FORBIDDEN);
        // Even an upload id it learnt of is closed to it (main's, in flight).
        let id = main.begin_upload("k2").await;
        reader.part_urls(&id, &[1]).await.err(StatusCode::FORBIDDEN);
        reader
            .complete(&id, &[(1, "\"e\"".into())], 1, &"0".repeat(64))
            .await
            .err(StatusCode::FORBIDDEN);
        reader
            .delete(&format!("/v1/uploads/{id}"))
            .await
            .err(StatusCode::FORBIDDEN);
        reader
            .delete("/v1/caches/k")
            .await
            .err(StatusCode::FORBIDDEN);
        assert!(main.hit("k", &[]).await.is_some(), "the cache survived");
    });
    assert_eq!(multipart_uploads(&stack), 1, "only main's upload exists");

    // bmat: a normal outcome, not a failure; nothing uploaded.
    let r = save_as(bmat_with_token(&stack, &ro), src.path(), "k3");
    assert_outcome(&r, "skipped");
    assert_eq!(r.json()["reason"], "read_only", "{r:?}");
    assert!(
        r.stderr.contains("cache save skipped (read-only): k3"),
        "{r:?}"
    );
    assert!(r.warnings().is_empty(), "{r:?}");
    assert_eq!(multipart_uploads(&stack), 1);
    // --strict changes nothing: it is not a failure.
    let strict = run(
        bmat_with_token(&stack, &ro),
        src.path(),
        &["--strict", "cache", "save", "k3"],
        b"tree\n",
    );
    assert_eq!(strict.code, 0, "{strict:?}");
}

#[tokio::test]
async fn expired_and_revoked_tokens_get_401_with_their_reason() {
    let stack = Stack::start().expect("stack");
    let main = Api::new(&stack);
    let short = stack
        .mint(&MintRequest {
            ttl_seconds: Some(1),
            ..token_request(OWNER, PR, &[SCOPE], true)
        })
        .expect("mint");
    let expiring = main.with_token(Some(&short.token));
    let mut answer = None;
    poll_until("the 1 s token to expire", PATIENCE, async || {
        let a = expiring.lookup("k", &[]).await;
        let expired = a.status == StatusCode::UNAUTHORIZED;
        answer = Some(a);
        expired
    })
    .await;
    let a = answer.expect("an answer");
    assert_eq!(a.body["code"], "token_expired", "{}", a.body);
    let e = a.err(StatusCode::UNAUTHORIZED);
    assert!(e.contains("expired") && e.contains(&short.id), "{e}");

    let long = mint(&stack, PR, &[SCOPE], true);
    let revocable = main.with_token(Some(&long.token));
    revocable.lookup("k", &[]).await.ok::<LookupResponse>();
    let operator = main.with_token(Some(&stack.env().operator_token));
    let revoked: Revoked = operator
        .delete(&format!("/v1/tokens/{}", long.id))
        .await
        .ok();
    assert!(revoked.revoked);
    for a in [
        revocable.lookup("k", &[]).await,
        revocable.begin("k").await,
        revocable.get("/v1/caches").await,
    ] {
        assert_eq!(a.body["code"], "token_revoked", "{}", a.body);
        let e = a.err(StatusCode::UNAUTHORIZED);
        assert!(e.contains("revoked"), "{e}");
    }
}

#[tokio::test]
async fn owners_never_see_each_other_and_operators_keep_to_their_owners() {
    const BETA_OPERATOR: &str = "beta-operator-token-0123456789";
    let stack = Stack::start_with(|c| {
        common::add_operator(c, BETA_OPERATOR, "beta-ci", &[OTHER_OWNER]);
    })
    .expect("stack");
    let alpha = Api::new(&stack);
    alpha.store("shared", b"alpha's").await;
    let alpha_pr = mint(&stack, PR, &[SCOPE], true);
    alpha
        .with_token(Some(&alpha_pr.token))
        .store("pr-only", b"alpha's pr")
        .await;

    // Beta, in every scope it may read (even ones named like alpha's), finds nothing.
    let beta_op = alpha.with_token(Some(BETA_OPERATOR));
    let beta_pr: MintedToken = beta_op
        .post(
            "/v1/tokens",
            &token_request(OTHER_OWNER, PR, &[SCOPE], true),
        )
        .await
        .ok();
    for token in [&stack.env().other_token, &beta_pr.token] {
        let beta = alpha.with_token(Some(token));
        for (key, fallbacks) in [("shared", vec![]), ("x", vec!["shared", "pr-", "s"])] {
            let found: LookupResponse = beta.lookup(key, &fallbacks).await.ok();
            assert!(found.hit.is_none(), "{found:?}");
        }
        assert!(beta.caches().await.is_empty());
        beta.delete("/v1/caches/shared")
            .await
            .err(StatusCode::NOT_FOUND);
        // A job token cannot name another owner or scope to list.
        beta.get(&format!("/v1/caches?owner={OWNER}"))
            .await
            .err(StatusCode::FORBIDDEN);
    }
    assert!(alpha.hit("shared", &[]).await.is_some());

    // The stack's operator sees alpha's caches in every scope; beta's operator sees
    // none, cannot mint or revoke for alpha, nor delete alpha's caches.
    let op = alpha.with_token(Some(&stack.env().operator_token));
    let all: CacheList = op.get(&format!("/v1/caches?owner={OWNER}")).await.ok();
    let mut seen: Vec<_> = all
        .caches
        .iter()
        .map(|c| (c.scope.as_str(), c.key.as_str()))
        .collect();
    seen.sort();
    assert_eq!(seen, [(SCOPE, "shared"), (PR, "pr-only")]);
    beta_op
        .get(&format!("/v1/caches?owner={OWNER}"))
        .await
        .err(StatusCode::FORBIDDEN);
    let e = beta_op
        .post("/v1/tokens", &token_request(OWNER, SCOPE, &[], true))
        .await
        .err(StatusCode::FORBIDDEN);
    assert!(e.contains("beta-ci") && e.contains(OWNER), "{e}");
    beta_op
        .delete(&format!("/v1/tokens/{}", alpha_pr.id))
        .await
        .err(StatusCode::NOT_FOUND);
    beta_op
        .delete(&format!("/v1/caches/shared?owner={OWNER}&scope={SCOPE}"))
        .await
        .err(StatusCode::FORBIDDEN);
    // Job tokens cannot mint.
    alpha
        .post("/v1/tokens", &token_request(OWNER, SCOPE, &[], true))
        .await
        .err(StatusCode::FORBIDDEN);
    // The allowed operator deletes in a named scope.
    let gone: Deleted = op
        .delete(&format!("/v1/caches/pr-only?owner={OWNER}&scope={PR}"))
        .await
        .ok();
    assert!(gone.deleted);
    assert!(alpha.hit("shared", &[]).await.is_some());
}

#[test]
fn the_signer_command_mints_and_revokes_tokens() {
    let stack = Stack::start().expect("stack");
    let signer = |args: &[&str]| {
        let out = Command::new(bins::workspace_bin("signer").expect("signer binary"))
            .args(args)
            .env("BMAT_SIGNER_URL", &stack.env().signer_url)
            .env("BMAT_OPERATOR_TOKEN", &stack.env().operator_token)
            .output()
            .expect("signer runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = signer(&[
        "token",
        "create",
        "--owner",
        OWNER,
        "--scope",
        PR,
        "--read-scope",
        SCOPE,
        "--read-only",
        "--ttl",
        "600",
        "--json",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let minted: MintedToken = serde_json::from_str(stdout.trim()).expect("JSON");
    let dir = tempdir();
    tree_with(dir.path(), "x");
    let r = save_as(bmat_with_token(&stack, &minted.token), dir.path(), "k");
    assert_outcome(&r, "skipped");

    let (code, _, stderr) = signer(&["token", "revoke", &minted.id]);
    assert_eq!(code, Some(0), "{stderr}");
    let r = save_as(bmat_with_token(&stack, &minted.token), dir.path(), "k");
    assert_outcome(&r, "failed");
    assert!(r.stderr.contains("revoked"), "{r:?}");

    // A bare token on stdout by default; refusals are one line on stderr, exit 1.
    let (code, stdout, _) = signer(&["token", "create", "--owner", OWNER, "--scope", PR]);
    assert_eq!(code, Some(0));
    assert!(stdout.trim().starts_with("bmatjt_"), "{stdout}");
    let (code, _, stderr) = signer(&["token", "create", "--owner", "nobody", "--scope", PR]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("403") && stderr.lines().count() == 1,
        "{stderr}"
    );
}

#[test]
fn a_registry_of_the_previous_release_migrates_and_keeps_serving() {
    // A token of the old kind: no scope in the config, so the default scope.
    const LEGACY: &str = "legacy-static-token-0123456789";
    let mut stack =
        Stack::start_with(|c| c.tokens.push(TokenConfig::new(LEGACY, OWNER))).expect("stack");
    let src = tempdir();
    tree_with(src.path(), "legacy");
    let saved = save_as(bmat_with_token(&stack, LEGACY), src.path(), "old-key");
    assert_outcome(&saved, "saved");

    // Rewrite the registry as the previous release kept it: schema version 1 (the first
    // migration, never edited since), the same cache row, no scope anywhere.
    stack.kill_signer().expect("kill signer");
    let db = stack.signer_config().database.clone();
    let (ulid, size, sha256, created): (String, i64, String, i64) = {
        let conn = rusqlite::Connection::open(&db).expect("open registry");
        conn.query_row(
            "SELECT ulid, size, sha256, created_at FROM caches WHERE key = 'old-key'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("the saved row")
    };
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{suffix}", db.display()));
    }
    {
        let conn = rusqlite::Connection::open(&db).expect("new registry");
        conn.execute_batch(signer::registry::SCHEMA_V1)
            .expect("v1 schema applies");
        conn.pragma_update(None, "user_version", 1)
            .expect("schema version 1");
        conn.execute(
            "INSERT INTO caches (owner, key, ulid, size, sha256, created_at, last_used_at)
             VALUES (?1, 'old-key', ?2, ?3, ?4, ?5, ?5)",
            rusqlite::params![OWNER, ulid, size, sha256, created],
        )
        .expect("v1 row");
    }
    // A registry rebuilt from scratch is a new registry: it takes the prefix over.
    stack
        .start_signer_with(|c| c.s3.take_over_prefix = true)
        .expect("signer starts on the v1 registry");

    let dst = tempdir();
    let r = restore_as(bmat_with_token(&stack, LEGACY), dst.path(), "old-key", None);
    assert_outcome(&r, "hit");
    assert_eq!(r.json()["scope"], bmat_wire::DEFAULT_SCOPE);
    assert_same(&manifest(src.path()), &manifest(dst.path()), "restored");
    // Write-once still holds for the migrated key.
    let again = save_as(bmat_with_token(&stack, LEGACY), src.path(), "old-key");
    assert_outcome(&again, "skipped");
    let conn = rusqlite::Connection::open(&db).expect("open registry");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert!(version >= 2, "{version}");
}

#[test]
fn a_minted_token_is_refused_past_the_maximum_lifetime() {
    let stack = Stack::start_with(|c| {
        c.job_tokens.max_ttl_secs = 3600;
        c.job_tokens.default_ttl_secs = 600;
    })
    .expect("stack");
    let e = stack
        .mint(&MintRequest {
            ttl_seconds: Some(3601),
            ..token_request(OWNER, PR, &[], false)
        })
        .expect_err("too long");
    assert!(format!("{e:#}").contains("max_ttl_secs"), "{e:#}");
}

/// Issue 17, point 12: a token minted by an operator outlived that operator's removal
/// from the config. Now the next request after the reload is refused as revoked.
#[tokio::test]
async fn tokens_minted_by_a_removed_operator_stop_working() {
    let mut stack = Stack::start().expect("stack");
    let minted = mint(&stack, PR, &[SCOPE], true);
    let job = Api::new(&stack).with_token(Some(&minted.token));
    job.lookup("k", &[]).await.ok::<LookupResponse>();
    stack
        .reload_signer_with(|c| c.operators.clear())
        .expect("reload");
    poll_until("the minted token to be refused", PATIENCE, async || {
        job.lookup("k", &[]).await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    let a = job.begin("k").await;
    assert_eq!(a.body["code"], "token_revoked", "{}", a.body);
    let e = a.err(StatusCode::UNAUTHORIZED);
    assert!(
        e.contains(&minted.id) && e.contains("no longer allowed"),
        "{e}"
    );
}
