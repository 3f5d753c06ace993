//! The job-side commands around save and restore, end to end on a real stack:
//! `restore --lookup-only`, `--fail-on-miss`, `list` and `delete` (by key and by
//! prefix), and the operator's `signer caches delete`.

#[path = "common/cache.rs"]
mod cache;
mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bmat_wire::api::{BeginRequest, BeginResponse, MintRequest, SkipReason};
use cache::{Run, assert_same, block_on, manifest, run, small_tree, stored_objects};
use common::api::{Api, download, sha256};
use common::{bmat, bmat_with_token};
use xtask::stack::{OWNER, SCOPE, Stack, bins};

const PR: &str = "refs/pull/9/merge";

/// A stack whose owner has a cache `deps-1` in main's scope, and the tree it was
/// saved from.
fn start_with_deps_1() -> (Stack, tempfile::TempDir) {
    let stack = Stack::start().expect("stack starts");
    let src = tempdir();
    save_tree(bmat(&stack), src.path(), "deps-1", "main");
    (stack, src)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// `bmat --json ARGS…` in `dir`, nothing on stdin.
fn bmat_json(cmd: Command, dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    run(cmd, dir, &all, b"")
}

/// Saves `dir/tree` (a small tree with `marker` in `tree/marker`) under `key`.
fn save_tree(cmd: Command, dir: &Path, key: &str, marker: &str) {
    if !dir.join("tree").exists() {
        small_tree(&dir.join("tree"));
    }
    fs::write(dir.join("tree/marker"), marker).expect("write marker");
    let r = run(cmd, dir, &["--json", "cache", "save", key], b"tree\n");
    assert_eq!((r.code, r.outcome().as_str()), (0, "saved"), "{r:?}");
}

fn assert_outcome(r: &Run, code: i32, outcome: &str) {
    assert_eq!((r.code, r.outcome().as_str()), (code, outcome), "{r:?}");
}

/// A job token of [`OWNER`] minted for `scope`.
fn mint(stack: &Stack, scope: &str, read_scopes: &[&str], write: bool) -> String {
    stack
        .mint(&MintRequest {
            owner: OWNER.to_owned(),
            scope: scope.to_owned(),
            read_scopes: read_scopes.iter().map(|s| s.to_string()).collect(),
            write,
            ttl_seconds: None,
        })
        .expect("mint a job token")
        .token
}

/// Sets a cache's created and last-used times (Unix seconds) in the signer's registry,
/// as if it had been saved and used then.
fn set_times(stack: &Stack, key: &str, created: i64, last_used: i64) {
    let db = rusqlite::Connection::open(&stack.signer_config().database).expect("registry");
    db.busy_timeout(Duration::from_secs(30))
        .expect("busy timeout");
    let rows = db
        .execute(
            "UPDATE caches SET created_at = ?1, last_used_at = ?2 WHERE owner = ?3 AND key = ?4",
            rusqlite::params![created * 1000, last_used * 1000, OWNER, key],
        )
        .expect("update the registry");
    assert_eq!(rows, 1, "one cache {key}");
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The `caches` of `bmat --json cache list ARGS…`, checked to be a listed outcome.
fn listed(cmd: Command, dir: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["cache", "list"];
    all.extend_from_slice(args);
    let r = bmat_json(cmd, dir, &all);
    assert_outcome(&r, 0, "listed");
    r.json()["caches"].as_array().expect("caches").clone()
}

fn keys(caches: &[serde_json::Value]) -> Vec<&str> {
    caches.iter().filter_map(|c| c["key"].as_str()).collect()
}

#[test]
fn lookup_only_says_hit_or_miss_and_writes_nothing() {
    let (stack, _src) = start_with_deps_1();

    // A tree with other content where the cache would land.
    let job = tempdir();
    save_tree_files(job.path());
    let before = manifest(job.path());

    let hit = bmat_json(
        bmat(&stack),
        job.path(),
        &[
            "cache",
            "restore",
            "deps-2",
            "--fallback",
            "deps-",
            "--lookup-only",
        ],
    );
    assert_outcome(&hit, 0, "hit");
    let j = hit.json();
    assert_eq!(
        (j["key"].as_str(), j["matched_key"].as_str()),
        (Some("deps-2"), Some("deps-1"))
    );
    assert_eq!(j["scope"], SCOPE);
    assert!(j["archive_bytes"].as_u64().unwrap_or(0) > 0, "{hit:?}");
    assert!(j["bytes"].is_null(), "nothing unpacked: {hit:?}");
    assert!(
        hit.stderr
            .contains("cache hit (lookup only): deps-2 (from deps-1, "),
        "{hit:?}"
    );
    assert_same(&before, &manifest(job.path()), "after a lookup-only hit");

    let miss = bmat_json(
        bmat(&stack),
        job.path(),
        &["cache", "restore", "nothing-here", "--lookup-only"],
    );
    assert_outcome(&miss, 0, "miss");
    assert!(miss.stderr.contains("cache miss: nothing-here"), "{miss:?}");
    assert_same(&before, &manifest(job.path()), "after a lookup-only miss");

    // From a read scope: the line and the JSON name it.
    let pr = mint(&stack, PR, &[SCOPE], true);
    let from_main = bmat_json(
        bmat_with_token(&stack, &pr),
        job.path(),
        &["cache", "restore", "deps-1", "--lookup-only"],
    );
    assert_outcome(&from_main, 0, "hit");
    assert_eq!(from_main.json()["scope"], SCOPE);
    assert!(
        from_main.stderr.contains(&format!("(from scope {SCOPE}, ")),
        "{from_main:?}"
    );
    assert_same(
        &before,
        &manifest(job.path()),
        "after a hit from a read scope",
    );
}

/// Files at the paths a restore of `save_tree`'s cache would write, with other content.
fn save_tree_files(dir: &Path) {
    fs::create_dir_all(dir.join("tree/nested")).expect("mkdir");
    fs::write(dir.join("tree/marker"), "the job's own").expect("write");
    fs::write(dir.join("tree/nested/tool.sh"), "not the cached one").expect("write");
}

#[test]
fn a_lookup_does_not_move_last_use_and_a_restore_does() {
    let (stack, src) = start_with_deps_1();
    let long_ago = now() - 30 * 86_400;
    set_times(&stack, "deps-1", long_ago, long_ago);
    let last_used = || listed(bmat(&stack), src.path(), &[])[0]["last_used_at"].as_i64();

    let dst = tempdir();
    let looked = bmat_json(
        bmat(&stack),
        dst.path(),
        &["cache", "restore", "deps-1", "--lookup-only"],
    );
    assert_outcome(&looked, 0, "hit");
    assert_eq!(last_used(), Some(long_ago), "a lookup is not a use");

    let restored = bmat_json(bmat(&stack), dst.path(), &["cache", "restore", "deps-1"]);
    assert_outcome(&restored, 0, "hit");
    let moved = last_used().unwrap_or(0);
    assert!(moved >= now() - 3600, "a restore is a use: {moved}");
}

#[test]
fn fail_on_miss_exits_1_on_a_miss_only() {
    let (stack, _src) = start_with_deps_1();
    let dst = tempdir();
    for extra in [&["--lookup-only"][..], &[]] {
        let args = |key| {
            let mut a = vec!["cache", "restore", key, "--fail-on-miss"];
            a.extend_from_slice(extra);
            a
        };
        let miss = bmat_json(bmat(&stack), dst.path(), &args("deps-0"));
        assert_outcome(&miss, 1, "miss");
        assert!(miss.warnings().is_empty(), "{miss:?}");
        let hit = bmat_json(bmat(&stack), dst.path(), &args("deps-1"));
        assert_outcome(&hit, 0, "hit");
    }
    // A cache service that is down is still not the job's problem.
    let mut down = Command::new(xtask::stack::bins::workspace_bin("bmat").expect("bmat"));
    down.env_remove("BMAT_SIGNER_URL")
        .env("BMAT_AGENT_SOCKET", dst.path().join("no-such.sock"))
        .env("BMAT_API_RETRY_SECS", "1");
    let failed = bmat_json(
        down,
        dst.path(),
        &[
            "cache",
            "restore",
            "deps-1",
            "--lookup-only",
            "--fail-on-miss",
        ],
    );
    assert_outcome(&failed, 0, "failed");
    assert_eq!(failed.warnings().len(), 1, "{failed:?}");
}

#[test]
fn list_shows_the_scopes_caches_newest_first() {
    let stack = Stack::start().expect("stack starts");
    let src = tempdir();
    for key in ["deps-a", "deps-b", "other-c"] {
        save_tree(bmat(&stack), src.path(), key, key);
    }
    // Not listed: another owner's cache, and one of the owner's other scopes.
    save_tree(
        bmat_with_token(&stack, &stack.env().other_token),
        src.path(),
        "deps-z",
        "beta",
    );
    let pr = mint(&stack, PR, &[SCOPE], true);
    save_tree(bmat_with_token(&stack, &pr), src.path(), "deps-pr", "pr");
    let t = now() - 10 * 86_400 - 3600;
    set_times(&stack, "deps-a", t, t + 500);
    set_times(&stack, "other-c", t + 100, t + 100);
    set_times(&stack, "deps-b", t + 200, t + 300);

    let all = listed(bmat(&stack), src.path(), &[]);
    assert_eq!(keys(&all), ["deps-b", "other-c", "deps-a"]);
    let a = &all[2];
    assert_eq!(
        (a["owner"].as_str(), a["scope"].as_str()),
        (Some(OWNER), Some(SCOPE))
    );
    assert_eq!(
        (a["created_at"].as_i64(), a["last_used_at"].as_i64()),
        (Some(t), Some(t + 500))
    );
    assert!(a["size"].as_u64().unwrap_or(0) > 0, "{a}");
    assert_eq!(a["sha256"].as_str().map(str::len), Some(64), "{a}");

    // Pages of one cache each: every page is followed.
    let mut paged = bmat(&stack);
    paged.env("BMAT_LIST_PAGE", "1");
    assert_eq!(keys(&listed(paged, src.path(), &[])), keys(&all));

    let deps = listed(bmat(&stack), src.path(), &["--prefix", "deps-"]);
    assert_eq!(keys(&deps), ["deps-b", "deps-a"]);
    assert!(listed(bmat(&stack), src.path(), &["--prefix", "zzz"]).is_empty());

    // The table for people, in the same order, and the count on stderr.
    let table = run(bmat(&stack), src.path(), &["cache", "list"], b"");
    assert_eq!(table.code, 0, "{table:?}");
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{table:?}");
    assert!(
        lines[0].starts_with("KEY") && lines[0].contains("LAST USED"),
        "{table:?}"
    );
    assert!(
        lines[1].starts_with("deps-b ") && lines[1].contains("10 d ago"),
        "{table:?}"
    );
    assert!(lines[3].starts_with("deps-a "), "{table:?}");
    assert!(table.stderr.contains("cache list: 3 caches, "), "{table:?}");
}

#[test]
fn delete_then_save_again_stores_the_new_content() {
    let (stack, src) = start_with_deps_1();
    assert_eq!(stored_objects(&stack).len(), 1);

    let deleted = bmat_json(bmat(&stack), src.path(), &["cache", "delete", "deps-1"]);
    assert_outcome(&deleted, 0, "deleted");
    assert!(
        deleted.stderr.contains("cache deleted: deps-1"),
        "{deleted:?}"
    );
    assert!(stored_objects(&stack).is_empty(), "the object went too");
    let gone = bmat_json(
        bmat(&stack),
        src.path(),
        &["cache", "restore", "deps-1", "--lookup-only"],
    );
    assert_outcome(&gone, 0, "miss");

    let good = tempdir();
    save_tree(bmat(&stack), good.path(), "deps-1", "good");
    let dst = tempdir();
    let restored = bmat_json(bmat(&stack), dst.path(), &["cache", "restore", "deps-1"]);
    assert_outcome(&restored, 0, "hit");
    assert_eq!(
        fs::read_to_string(dst.path().join("tree/marker"))
            .ok()
            .as_deref(),
        Some("good")
    );

    let unknown = bmat_json(bmat(&stack), src.path(), &["cache", "delete", "deps-9"]);
    assert_outcome(&unknown, 0, "not_found");
    assert!(
        unknown
            .stderr
            .contains("cache not found, nothing deleted: deps-9"),
        "{unknown:?}"
    );
}

#[test]
fn a_read_only_token_cannot_delete() {
    let (stack, src) = start_with_deps_1();
    let read_only = mint(&stack, SCOPE, &[], false);

    for strict in [false, true] {
        let mut cmd = bmat_with_token(&stack, &read_only);
        if strict {
            cmd.arg("--strict");
        }
        let refused = bmat_json(cmd, src.path(), &["cache", "delete", "deps-1"]);
        assert_outcome(&refused, 0, "refused");
        assert_eq!(refused.json()["reason"], "read_only");
        assert!(
            refused
                .stderr
                .contains("cache delete refused (read-only token): deps-1"),
            "{refused:?}"
        );
    }
    // Still there, for the read-only token to list and for everyone to restore.
    assert_eq!(
        keys(&listed(
            bmat_with_token(&stack, &read_only),
            src.path(),
            &[]
        )),
        ["deps-1"]
    );
    let dst = tempdir();
    let hit = bmat_json(bmat(&stack), dst.path(), &["cache", "restore", "deps-1"]);
    assert_outcome(&hit, 0, "hit");
}

/// The sorted keys of a scope's caches, listed with `token`.
fn sorted_keys(stack: &Stack, token: &str, dir: &Path) -> Vec<String> {
    let caches = listed(bmat_with_token(stack, token), dir, &[]);
    let mut keys: Vec<String> = keys(&caches).into_iter().map(str::to_owned).collect();
    keys.sort();
    keys
}

/// Issue 20: a closed pull request's caches go in one call, by prefix from the job
/// (own scope, writing token) or by scope from the operator, and nothing of another
/// scope goes with them, not even a cache under the same key.
#[test]
fn a_closed_pull_requests_caches_go_by_prefix_or_by_scope_and_nothing_else() {
    let stack = Stack::start().expect("stack starts");
    let src = tempdir();
    let pr = mint(&stack, PR, &[SCOPE], true);
    for key in ["pr-9-a", "pr-9-b", "other-1"] {
        save_tree(bmat_with_token(&stack, &pr), src.path(), key, key);
    }
    for key in ["pr-9-a", "keep-1"] {
        save_tree(bmat(&stack), src.path(), key, key);
    }
    let pr_caches = listed(bmat_with_token(&stack, &pr), src.path(), &[]);
    let pr_9_bytes: u64 = pr_caches
        .iter()
        .filter(|c| c["key"].as_str().is_some_and(|k| k.starts_with("pr-9-")))
        .filter_map(|c| c["size"].as_u64())
        .sum();
    assert!(pr_9_bytes > 0, "{pr_caches:?}");

    // A read-only token of the pull request deletes nothing.
    let read_only = mint(&stack, PR, &[], false);
    let refused = bmat_json(
        bmat_with_token(&stack, &read_only),
        src.path(),
        &["cache", "delete", "--prefix", "pr-9-"],
    );
    assert_outcome(&refused, 0, "refused");

    let deleted = bmat_json(
        bmat_with_token(&stack, &pr),
        src.path(),
        &["cache", "delete", "--prefix", "pr-9-"],
    );
    assert_outcome(&deleted, 0, "deleted");
    assert_eq!(deleted.json()["deleted"], 2, "{deleted:?}");
    assert_eq!(deleted.json()["bytes"], pr_9_bytes, "{deleted:?}");
    assert!(
        deleted
            .stderr
            .contains("caches deleted: 2 whose key starts with pr-9-"),
        "{deleted:?}"
    );
    assert_eq!(sorted_keys(&stack, &pr, src.path()), ["other-1"]);
    let main = stack.env().token.clone();
    assert_eq!(sorted_keys(&stack, &main, src.path()), ["keep-1", "pr-9-a"]);
    assert_eq!(stored_objects(&stack).len(), 3, "the objects went too");

    // The operator drops what is left of the pull request's scope.
    let out = Command::new(bins::workspace_bin("signer").expect("signer binary"))
        .args([
            "caches", "delete", "--owner", OWNER, "--scope", PR, "--json",
        ])
        .env("BMAT_SIGNER_URL", &stack.env().signer_url)
        .env("BMAT_OPERATOR_TOKEN", &stack.env().operator_token)
        .output()
        .expect("signer runs");
    assert!(out.status.success(), "{out:?}");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(answer["deleted"], 1, "{answer}");
    assert_eq!(sorted_keys(&stack, &pr, src.path()), Vec::<String>::new());
    assert_eq!(sorted_keys(&stack, &main, src.path()), ["keep-1", "pr-9-a"]);
    assert_eq!(stored_objects(&stack).len(), 2);
    let dst = tempdir();
    let hit = bmat_json(bmat(&stack), dst.path(), &["cache", "restore", "pr-9-a"]);
    assert_outcome(&hit, 0, "hit");
}

/// `bmat cache save KEY` with `--refresh-after D` in `dir`; its outcome.
fn refresh(stack: &Stack, dir: &Path, key: &str, marker: &str, after: &str) -> Run {
    fs::write(dir.join("tree/marker"), marker).expect("write marker");
    let args = ["--json", "cache", "save", key, "--refresh-after", after];
    run(bmat(stack), dir, &args, b"tree\n")
}

/// Issue 20: `--refresh-after` replaces an exact key's cache once it is older than
/// that, after the new upload completed: a lookup made before the replacement still
/// downloads the old cache whole, one made after gets the new one; two refreshes at
/// once store one.
#[test]
fn refresh_after_replaces_a_stale_cache_and_a_lookup_meanwhile_gets_a_whole_one() {
    let (stack, src) = start_with_deps_1();
    let fresh = refresh(&stack, src.path(), "deps-1", "new", "1h");
    assert_outcome(&fresh, 0, "skipped");
    assert_eq!(fresh.json()["reason"], "exists");

    set_times(&stack, "deps-1", now() - 7200, now() - 7200);
    let api = Api::new(&stack);
    let before = block_on(api.hit("deps-1", &[])).expect("the old cache hits");
    let replaced = refresh(&stack, src.path(), "deps-1", "new", "1h");
    assert_outcome(&replaced, 0, "saved");

    // The old object outlives its row: the lookup made before still gets all of it.
    let http = reqwest::Client::new();
    let old_bytes = block_on(download(&http, &before.url));
    assert_eq!(sha256(&old_bytes), before.sha256);
    assert_eq!(stored_objects(&stack).len(), 2);
    let after = block_on(api.hit("deps-1", &[])).expect("the new cache hits");
    assert_ne!(after.sha256, before.sha256);
    let dst = tempdir();
    let hit = bmat_json(bmat(&stack), dst.path(), &["cache", "restore", "deps-1"]);
    assert_outcome(&hit, 0, "hit");
    assert_eq!(
        fs::read_to_string(dst.path().join("tree/marker")).expect("marker"),
        "new"
    );

    // Two refreshes of a stale key at once: one uploads, the other is told to skip.
    set_times(&stack, "deps-1", now() - 7200, now() - 7200);
    let begin = BeginRequest {
        key: "deps-1".into(),
        expected_size: None,
        part_size: None,
        refresh_after_secs: Some(3600),
        only_scopes: vec![],
    };
    let first: BeginResponse = block_on(api.post("/v1/uploads", &begin)).ok();
    assert!(matches!(first, BeginResponse::Upload { .. }), "{first:?}");
    let second: BeginResponse = block_on(api.post("/v1/uploads", &begin)).ok();
    assert_eq!(
        second,
        BeginResponse::Skip {
            reason: SkipReason::InProgress
        }
    );
}

/// Issue 20: `--save-if-scope 'refs/heads/*'`: a pull request's save uploads nothing
/// (and holds no key), a branch's stores its cache.
#[test]
fn save_if_scope_lets_branches_write_and_pull_requests_only_read() {
    let stack = Stack::start().expect("stack starts");
    let src = tempdir();
    small_tree(&src.path().join("tree"));
    let pr = mint(&stack, PR, &[SCOPE], true);
    let args = [
        "--json",
        "cache",
        "save",
        "k",
        "--save-if-scope",
        "refs/heads/*",
    ];
    let skipped = run(bmat_with_token(&stack, &pr), src.path(), &args, b"tree\n");
    assert_outcome(&skipped, 0, "skipped");
    assert_eq!(skipped.json()["reason"], "scope", "{skipped:?}");
    assert!(
        skipped
            .stderr
            .contains("cache save skipped (the job's scope is not one that saves): k"),
        "{skipped:?}"
    );
    assert!(stored_objects(&stack).is_empty(), "nothing uploaded");
    let saved = run(bmat(&stack), src.path(), &args, b"tree\n");
    assert_outcome(&saved, 0, "saved");
    assert_eq!(stored_objects(&stack).len(), 1);
}

#[test]
fn bad_keys_and_prefixes_are_usage_errors() {
    let dir = tempdir();
    for args in [
        &["cache", "list", "--prefix", "a/b"][..],
        &["cache", "delete", ".x"],
        &["cache", "delete", "--prefix", "a b"],
        &[
            "cache",
            "restore",
            "k",
            "--lookup-only",
            "--fallback",
            "a b",
        ],
    ] {
        // No cache service at all: a usage error is found before any is needed.
        let mut bare = Command::new(xtask::stack::bins::workspace_bin("bmat").expect("bmat"));
        bare.env_remove("BMAT_AGENT_SOCKET")
            .env_remove("BMAT_SIGNER_URL");
        let r = bmat_json(bare, dir.path(), args);
        assert_eq!(
            (r.code, r.outcome().as_str()),
            (2, "failed"),
            "{args:?}: {r:?}"
        );
        assert!(r.stderr.starts_with("error: invalid "), "{args:?}: {r:?}");
    }
}
