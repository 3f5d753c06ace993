//! A broken cache heals instead of sticking forever (issue 10, point 6): a restore
//! that finds the object missing, corrupt or not unpackable reports it, the signer
//! checks what it can and drops the cache, the restore goes on to the next candidate,
//! and the next save of the key writes a good one. The last use moves on a
//! successful restore, not on a bare lookup. Real stack, real bmat.

#[path = "common/cache.rs"]
mod cache;
mod common;

use std::fs;
use std::path::Path;

use bmat_wire::api::MintRequest;
use cache::{Run, block_on, get_object, put_object, register_archive, run};
use common::api::Api;
use common::{bmat, bmat_with_token};
use xtask::stack::{OWNER, SCOPE, Stack};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn save(cmd: std::process::Command, dir: &Path, key: &str) -> Run {
    run(cmd, dir, &["--json", "cache", "save", key], b"data\n")
}

fn restore(cmd: std::process::Command, dir: &Path, key: &str, fallback: Option<&str>) -> Run {
    let mut args = vec!["--json", "cache", "restore", key];
    args.extend(fallback.iter().flat_map(|p| ["--fallback", *p]));
    run(cmd, dir, &args, b"")
}

fn assert_outcome(r: &Run, outcome: &str) {
    assert_eq!((r.code, r.outcome().as_str()), (0, outcome), "{r:?}");
}

/// Saves `content` as `data` under `key` through the stack's shim.
fn save_content(stack: &Stack, key: &str, content: &str) {
    let src = tempdir();
    fs::write(src.path().join("data"), content).expect("write");
    assert_outcome(&save(bmat(stack), src.path(), key), "saved");
}

/// The S3 object behind `key` in the stack's main scope.
fn object_of(stack: &Stack, key: &str) -> String {
    let hit = block_on(Api::new(stack).hit(key, &[])).expect("a hit");
    let ulid = hit
        .url
        .split('?')
        .next()
        .and_then(|u| u.rsplit('/').next())
        .expect("object name in the URL")
        .to_owned();
    format!("{}/caches/{ulid}", stack.env().s3_prefix)
}

fn delete_object(stack: &Stack, name: &str) {
    block_on(async {
        stack
            .s3_client()
            .expect("s3 client")
            .delete_object(name)
            .await
            .expect("delete")
    })
}

fn has_cache(stack: &Stack, key: &str) -> bool {
    block_on(Api::new(stack).hit(key, &[])).is_some()
}

#[test]
fn a_missing_object_is_dropped_and_the_next_candidate_restored() {
    let stack = Stack::start().expect("stack");
    save_content(&stack, "deps-a", "older");
    save_content(&stack, "deps-b", "newer");
    delete_object(&stack, &object_of(&stack, "deps-b"));

    let dst = tempdir();
    let r = restore(bmat(&stack), dst.path(), "deps-z", Some("deps-"));
    assert_outcome(&r, "hit");
    assert_eq!(r.json()["matched_key"], "deps-a", "{r:?}");
    assert_eq!(
        fs::read_to_string(dst.path().join("data")).ok().as_deref(),
        Some("older")
    );
    // The signer saw for itself that the object is gone and dropped the cache: the
    // next save of the key writes a good one instead of "exists, skipped".
    assert!(!has_cache(&stack, "deps-b"));
    save_content(&stack, "deps-b", "newer again");
    let dst = tempdir();
    assert_outcome(&restore(bmat(&stack), dst.path(), "deps-b", None), "hit");
}

#[test]
fn a_corrupt_object_is_dropped_once_the_signer_has_checked_it() {
    let stack = Stack::start().expect("stack");
    save_content(&stack, "k", "good");
    let object = object_of(&stack, "k");
    let mut bytes = get_object(&stack, &object);
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    put_object(&stack, &object, bytes);

    let dst = tempdir();
    let r = restore(bmat(&stack), dst.path(), "k", None);
    assert_outcome(&r, "failed");
    assert!(r.stderr.contains("corrupt archive"), "{r:?}");
    assert!(!dst.path().join("data").exists());
    assert!(!has_cache(&stack, "k"), "the corrupt cache was kept");
    save_content(&stack, "k", "good again");
    assert_outcome(&restore(bmat(&stack), tempdir().path(), "k", None), "hit");
}

#[test]
fn an_unpackable_archive_is_dropped_by_its_own_scope_only() {
    let stack = Stack::start().expect("stack");
    // Intact in S3 (the hash matches) but not a zstd stream: only a job can tell.
    register_archive(&stack, "k", b"not a zstd stream at all".to_vec());
    let pr = stack
        .mint(&MintRequest {
            owner: OWNER.to_owned(),
            scope: "refs/pull/3/merge".to_owned(),
            read_scopes: vec![SCOPE.to_owned()],
            write: true,
            ttl_seconds: None,
        })
        .expect("mint");
    // A job that only reads main's scope cannot drop main's cache.
    let r = restore(
        bmat_with_token(&stack, &pr.token),
        tempdir().path(),
        "k",
        None,
    );
    assert_outcome(&r, "failed");
    assert!(has_cache(&stack, "k"), "a reader dropped main's cache");
    // main's own job can, as no good restore was reported since it looked it up.
    let r = restore(bmat(&stack), tempdir().path(), "k", None);
    assert_outcome(&r, "failed");
    assert!(!has_cache(&stack, "k"));
}

#[test]
fn the_last_use_moves_on_a_successful_restore_not_on_a_lookup() {
    let stack = Stack::start().expect("stack");
    save_content(&stack, "k", "good");
    let used = || {
        let conn = rusqlite::Connection::open(&stack.signer_config().database).expect("open");
        conn.query_row(
            "SELECT last_used_at, created_at, restored_at FROM caches WHERE key = 'k'",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            },
        )
        .expect("the row")
    };
    for _ in 0..3 {
        assert!(has_cache(&stack, "k"));
    }
    let (last_used, created, restored) = used();
    assert_eq!((last_used, restored), (created, None), "a lookup moved it");
    assert_outcome(&restore(bmat(&stack), tempdir().path(), "k", None), "hit");
    let (last_used, _, restored) = used();
    assert!(restored.is_some() && last_used >= created, "{restored:?}");
    assert_eq!(Some(last_used), restored);
}

/// When the last restore of `key` was reported good (`None`: never).
fn restored_at(stack: &Stack, key: &str) -> Option<i64> {
    let conn = rusqlite::Connection::open(&stack.signer_config().database).expect("open");
    conn.query_row(
        "SELECT restored_at FROM caches WHERE key = ?1",
        [key],
        |r| r.get::<_, Option<i64>>(0),
    )
    .expect("the row")
}

/// Issue 17, point 1: a restore refused for a reason in the job's own tree (`target`
/// a symlink, a non-empty directory where the cache has a file, no `$HOME` for a
/// cache of `~/` paths) is a local failure: it fails open, reports nothing, and
/// leaves every candidate in place for the runners whose trees are fine.
#[test]
fn a_refusal_by_the_jobs_own_tree_drops_no_cache() {
    let stack = Stack::start().expect("stack");
    let keys = ["fb-1", "fb-2", "fb-3", "fb-4"];
    for key in keys {
        let src = tempdir();
        fs::create_dir_all(src.path().join("target")).expect("mkdir");
        fs::write(src.path().join("target/x"), key).expect("write");
        let r = run(
            bmat(&stack),
            src.path(),
            &["--json", "cache", "save", key],
            b"target/x\n",
        );
        assert_outcome(&r, "saved");
    }
    let elsewhere = tempdir();
    let linked = tempdir();
    std::os::unix::fs::symlink(elsewhere.path(), linked.path().join("target")).expect("symlink");
    let blocked = tempdir();
    fs::create_dir_all(blocked.path().join("target/x/mine")).expect("mkdir");
    for (tree, what) in [
        (linked.path(), "symlink"),
        (blocked.path(), "non-empty directory"),
    ] {
        let r = restore(bmat(&stack), tree, "fb-x", Some("fb-"));
        assert_outcome(&r, "failed");
        assert!(r.stderr.contains(what), "{r:?}");
        assert_eq!(r.warnings().len(), 1, "{r:?}");
        for key in keys {
            assert!(has_cache(&stack, key), "{what}: {key} was dropped");
            assert_eq!(restored_at(&stack, key), None, "{what}: {key} reported");
        }
    }
    assert!(
        fs::read_dir(elsewhere.path())
            .expect("read")
            .next()
            .is_none(),
        "written through the symlink"
    );

    let home = tempdir();
    fs::write(home.path().join("cfg"), "settings").expect("write");
    let mut with_home = bmat(&stack);
    with_home.env("HOME", home.path()).env_remove("CARGO_HOME");
    let r = run(
        with_home,
        tempdir().path(),
        &["--json", "cache", "save", "home-cfg"],
        b"~/cfg\n",
    );
    assert_outcome(&r, "saved");
    let mut homeless = bmat(&stack);
    homeless.env_remove("HOME").env_remove("CARGO_HOME");
    let r = restore(homeless, tempdir().path(), "home-cfg", None);
    assert_outcome(&r, "failed");
    assert!(r.stderr.contains("$HOME"), "{r:?}");
    assert!(has_cache(&stack, "home-cfg"), "dropped for want of a $HOME");
    assert_eq!(restored_at(&stack, "home-cfg"), None);
}
