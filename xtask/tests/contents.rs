//! Contents caches on a real stack (docs/design.md, "Content-addressed caches"): a
//! save uploads only what its base lacks; trust is unchanged (main never reuses a pull
//! request's contents); archives still restore; a content that lies about its hash
//! fails the restore closed, and the cache heals.

#[path = "common/cache.rs"]
mod cache;
mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use bmat::contents::layout::{TRAILER_LEN, Trailer, open_index};
use cache::{
    Run, assert_same, get_object, manifest, put_object, run, small_tree, stored_objects,
    write_random,
};
use common::{bmat, bmat_with_token, pr_token};
use xtask::stack::Stack;

const PR: &str = "refs/pull/8/merge";
const MIB: u64 = 1 << 20;

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Generic saves store contents caches only when asked.
fn contents(mut cmd: Command) -> Command {
    cmd.env("BMAT_CACHE_FORMAT", "contents");
    cmd
}

fn save(cmd: Command, dir: &Path, key: &str) -> Run {
    run(cmd, dir, &["--json", "cache", "save", key], b"tree\n")
}

fn restore(cmd: Command, dir: &Path, key: &str) -> Run {
    run(cmd, dir, &["--json", "cache", "restore", key], b"")
}

fn lookup(cmd: Command, key: &str) -> String {
    let dir = tempdir();
    run(
        cmd,
        dir.path(),
        &["--json", "cache", "restore", key, "--lookup-only"],
        b"",
    )
    .outcome()
}

fn assert_outcome(r: &Run, outcome: &str) {
    assert_eq!((r.code, r.outcome().as_str()), (0, outcome), "{r:?}");
}

fn uploaded(r: &Run) -> u64 {
    r.json()["uploaded_bytes"].as_u64().expect("uploaded_bytes")
}

/// A tree with every kind of entry and a 3 MiB file no compressor shrinks.
fn tree(dir: &Path) {
    small_tree(&dir.join("tree"));
    write_random(&dir.join("tree/big.bin"), 3 << 20);
}

/// The objects stored now, by name.
fn objects(stack: &Stack) -> Vec<String> {
    stored_objects(stack).into_iter().map(|o| o.0).collect()
}

#[test]
fn a_pull_request_stores_only_its_delta_and_main_never_reuses_a_pull_requests_contents() {
    let stack = Stack::start().expect("stack");
    let pr = pr_token(&stack, PR);
    let src = tempdir();
    tree(src.path());
    let first = save(contents(bmat(&stack)), src.path(), "k");
    assert_outcome(&first, "saved");
    assert!(uploaded(&first) > 3 * MIB, "{first:?}");
    assert_eq!(first.json()["base"], serde_json::Value::Null, "{first:?}");

    // The pull request changes one small file and saves the key main has: it reuses
    // main's contents.
    fs::write(src.path().join("tree/nested/empty"), b"now with a line\n").expect("write");
    let delta = save(contents(bmat_with_token(&stack, &pr)), src.path(), "k");
    assert_outcome(&delta, "saved");
    assert!(uploaded(&delta) < MIB / 4, "{delta:?}");
    assert_eq!(delta.json()["base"], "k", "{delta:?}");
    assert!(
        delta.json()["archive_bytes"].as_u64() > Some(3 * MIB),
        "{delta:?}"
    );
    // Its restore reads main's object and its own, and gives the tree back exactly.
    let dst = tempdir();
    assert_outcome(
        &restore(bmat_with_token(&stack, &pr), dst.path(), "k"),
        "hit",
    );
    assert_same(
        &manifest(&src.path().join("tree")),
        &manifest(&dst.path().join("tree")),
        "the pull request's cache",
    );

    // New contents saved by the pull request first…
    write_random(&src.path().join("tree/pr-only.bin"), 2 << 20);
    let pr_save = save(contents(bmat_with_token(&stack, &pr)), src.path(), "k2");
    assert_outcome(&pr_save, "saved");
    assert!(uploaded(&pr_save) > 5 * MIB, "{pr_save:?}");
    // …are uploaded again by main: its base can only be a cache of a scope it reads.
    let main_save = save(contents(bmat(&stack)), src.path(), "k2");
    assert_outcome(&main_save, "saved");
    assert_eq!(
        main_save.json()["base"],
        serde_json::Value::Null,
        "{main_save:?}"
    );
    assert!(uploaded(&main_save) > 5 * MIB, "{main_save:?}");
    let dst = tempdir();
    assert_outcome(&restore(bmat(&stack), dst.path(), "k2"), "hit");
    assert_same(
        &manifest(&src.path().join("tree")),
        &manifest(&dst.path().join("tree")),
        "main's cache",
    );
}

#[test]
fn archives_still_restore_and_a_contents_cache_over_one_stores_everything() {
    let stack = Stack::start().expect("stack");
    let pr = pr_token(&stack, PR);
    let src = tempdir();
    tree(src.path());
    let mut archive = bmat(&stack);
    archive.env("BMAT_CACHE_FORMAT", "archive");
    let old = save(archive, src.path(), "k");
    assert_outcome(&old, "saved");
    assert_eq!(
        uploaded(&old),
        old.json()["archive_bytes"].as_u64().unwrap_or(0)
    );
    // A contents save whose base is an archive has nothing to reuse.
    let over = save(contents(bmat_with_token(&stack, &pr)), src.path(), "k");
    assert_outcome(&over, "saved");
    assert!(uploaded(&over) > 3 * MIB, "{over:?}");
    for (cmd, what) in [
        (bmat(&stack), "the archive"),
        (bmat_with_token(&stack, &pr), "contents"),
    ] {
        let dst = tempdir();
        assert_outcome(&restore(cmd, dst.path(), "k"), "hit");
        assert_same(
            &manifest(&src.path().join("tree")),
            &manifest(&dst.path().join("tree")),
            what,
        );
    }
}

/// Swaps, in the contents cache `object`, the frames of its two contents of `len`
/// bytes (incompressible: their frames are as long): the object keeps its size and
/// every frame decompresses, but each content's bytes are not the ones its hash names.
fn swap_contents(stack: &Stack, object: &str, len: u64) {
    let mut bytes = get_object(stack, object);
    let size = bytes.len() as u64;
    let t = Trailer::parse(&bytes[(size - TRAILER_LEN) as usize..], size).expect("trailer");
    let (_, m) = open_index(
        &bytes[t.skeleton_at as usize..(size - TRAILER_LEN) as usize],
        &t,
    )
    .expect("index");
    let frames: Vec<_> = m
        .contents
        .iter()
        .filter(|c| c.len == len)
        .map(|c| m.frames[c.frame as usize])
        .collect();
    let [a, b] = frames[..] else {
        panic!("two contents of {len} bytes expected: {frames:?}");
    };
    assert_eq!(a.len, b.len, "frames of the same length");
    let (a_bytes, b_bytes) = (
        bytes[a.at as usize..(a.at + a.len) as usize].to_vec(),
        bytes[b.at as usize..(b.at + b.len) as usize].to_vec(),
    );
    bytes[a.at as usize..(a.at + a.len) as usize].copy_from_slice(&b_bytes);
    bytes[b.at as usize..(b.at + b.len) as usize].copy_from_slice(&a_bytes);
    put_object(stack, object, bytes);
}

#[test]
fn a_content_that_lies_about_its_hash_fails_the_restore_closed_and_the_cache_heals() {
    let stack = Stack::start().expect("stack");
    let src = tempdir();
    tree(src.path());
    write_random(&src.path().join("tree/big2.bin"), 3 << 20);
    assert_outcome(&save(contents(bmat(&stack)), src.path(), "k"), "saved");
    let object = objects(&stack).pop().expect("the object");
    swap_contents(&stack, &object, 3 << 20);
    let dst = tempdir();
    fs::create_dir_all(dst.path().join("tree")).expect("mkdir");
    fs::write(dst.path().join("tree/big.bin"), b"the job's own").expect("write");
    let before = manifest(dst.path());
    let r = restore(bmat(&stack), dst.path(), "k");
    assert_outcome(&r, "failed");
    assert!(r.stderr.contains("do not match its hash"), "{r:?}");
    assert_same(
        &before,
        &manifest(dst.path()),
        "the tree after a refused restore",
    );
    // main's own writing job reported it: the cache is dropped, the next save stores
    // a good one instead of "exists, skipped".
    assert_eq!(lookup(bmat(&stack), "k"), "miss");
    assert_outcome(&save(contents(bmat(&stack)), src.path(), "k"), "saved");
    assert_outcome(&restore(bmat(&stack), tempdir().path(), "k"), "hit");
}

/// A restore reads the object's last 512 KiB first, hoping for the whole index there;
/// a cache of many files has a larger one, read by a second GET.
#[test]
fn a_cache_whose_index_is_larger_than_the_first_read_restores_exactly() {
    let stack = Stack::start().expect("stack");
    let src = tempdir();
    let root = src.path().join("tree");
    for d in 0..20 {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..1000 {
            fs::write(dir.join(format!("f{f}")), format!("{d}/{f}")).expect("write");
        }
    }
    assert_outcome(&save(contents(bmat(&stack)), src.path(), "k"), "saved");
    let [object] = &objects(&stack)[..] else {
        panic!("one object expected: {:?}", objects(&stack));
    };
    let bytes = get_object(&stack, object);
    let size = bytes.len() as u64;
    let t = Trailer::parse(&bytes[(size - TRAILER_LEN) as usize..], size).expect("trailer");
    assert!(
        t.skeleton_len + t.manifest_len > 512 << 10,
        "the index is {} bytes: not larger than the first read",
        t.skeleton_len + t.manifest_len
    );
    let dst = tempdir();
    assert_outcome(&restore(contents(bmat(&stack)), dst.path(), "k"), "hit");
    assert_same(
        &manifest(&root),
        &manifest(&dst.path().join("tree")),
        "many files",
    );
}
