//! `bmat cache save` / `bmat cache restore` end to end: the real bmat binary, through
//! the real shim, signer and S3 server of the local stack.

#[path = "common/cache.rs"]
mod cache;
mod common;
#[path = "common/proxy.rs"]
mod proxy;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bmat_wire::api::Extent;
use cache::{
    Crafted, Run, archive_names, assert_same, chmod, fresh_part_url, get_object, is_empty_dir,
    lookup_url, manifest, multipart_uploads, only_object, outside_dir, put_object,
    register_archive, register_archive_with, run, set_mtime, small_tree, spawn, staging_leftovers,
    stored_objects, write_random,
};
use common::{bmat, poll_until_sync};
use proxy::{FaultProxy, Trip};
use xtask::stack::Stack;

const MIB: usize = 1 << 20;

fn start() -> Stack {
    Stack::start().expect("stack starts")
}

/// A stack whose signer reaches S3 (and so presigns URLs) through a fault proxy.
/// `None` (the test is skipped) when the stack uses an external S3 server, which can
/// be neither proxied as plain TCP nor stopped.
fn start_behind_proxy() -> Option<(Stack, FaultProxy)> {
    start_behind_proxy_with(|_| {})
}

fn start_behind_proxy_with(
    tweak: impl FnOnce(&mut signer::config::Config),
) -> Option<(Stack, FaultProxy)> {
    if xtask::stack::S3Target::from_env()
        .expect("BMAT_TEST_S3_* settings")
        .is_some()
    {
        eprintln!("skipped: the stack uses an external S3 server");
        return None;
    }
    let mut proxy = None;
    let stack = Stack::start_with(|cfg| {
        let upstream: SocketAddr = cfg
            .s3
            .endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("the stack's Garage endpoint is http://IP:PORT");
        let p = FaultProxy::start(upstream);
        cfg.s3.endpoint = p.url();
        proxy = Some(p);
        tweak(cfg);
    })
    .expect("stack starts");
    Some((stack, proxy.expect("proxy started")))
}

fn save(stack: &Stack, dir: &Path, key: &str, stdin: &[u8]) -> Run {
    run(bmat(stack), dir, &["--json", "cache", "save", key], stdin)
}

fn restore(stack: &Stack, dir: &Path, key: &str) -> Run {
    run(bmat(stack), dir, &["--json", "cache", "restore", key], b"")
}

fn assert_outcome(r: &Run, code: i32, outcome: &str) {
    assert_eq!((r.code, r.outcome().as_str()), (code, outcome), "{r:?}");
}

/// Exit 0, one `warning:` line, outcome "failed".
fn assert_failed_open(r: &Run) {
    assert_outcome(r, 0, "failed");
    assert_eq!(r.warnings().len(), 1, "{r:?}");
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn round_trip_of_a_large_mixed_tree() {
    let stack = start();
    let src = tempdir();
    let tree = src.path().join("tree");
    small_tree(&tree);
    write_random(&tree.join("big.bin"), 300 * MIB);
    set_mtime(&tree.join("big.bin"), 1_700_000_000, 987_654_321);
    for i in 0..5000u32 {
        let dir = tree.join(format!("many/d{:02}", i / 100));
        if i % 100 == 0 {
            fs::create_dir_all(&dir).expect("mkdir");
        }
        let file = dir.join(format!("f{i:04}"));
        fs::write(&file, format!("small file {i}\n").repeat((i % 7) as usize)).expect("write");
        chmod(&file, [0o644, 0o755, 0o600, 0o444][(i % 4) as usize]);
        set_mtime(&file, 1_600_000_000 + i64::from(i), i * 1_000 + 1);
    }
    let before = manifest(src.path());
    assert!(before.entries.len() > 5_000, "{}", before.entries.len());

    let saved = save(&stack, src.path(), "round-trip", b"tree\n");
    assert_outcome(&saved, 0, "saved");
    assert!(
        saved.stderr.contains("cache saved: round-trip ("),
        "{saved:?}"
    );
    assert!(
        saved.json()["bytes"].as_u64().unwrap_or(0) > 300 * MIB as u64,
        "{saved:?}"
    );

    let dst = tempdir();
    let restored = restore(&stack, dst.path(), "round-trip");
    assert_outcome(&restored, 0, "hit");
    assert!(
        restored.stderr.contains("cache hit: round-trip ("),
        "{restored:?}"
    );
    assert_eq!(restored.json()["matched_key"], "round-trip");
    assert_same(&before, &manifest(dst.path()), "restored tree");
}

#[test]
fn nul_separated_input_and_duplicate_paths() {
    let stack = start();
    let src = tempdir();
    fs::create_dir_all(src.path().join("dir")).expect("mkdir");
    fs::write(src.path().join("with\nnewline"), b"one").expect("write");
    fs::write(src.path().join("plain"), b"two").expect("write");
    fs::write(src.path().join("dir/x"), b"three").expect("write");
    let before = manifest(src.path());

    let input = b"plain\0with\nnewline\0plain\0./plain\0dir\0dir/x\0dir/../plain\0";
    let saved = run(
        bmat(&stack),
        src.path(),
        &["--json", "cache", "save", "-0", "nul"],
        input,
    );
    assert_outcome(&saved, 0, "saved");
    assert!(saved.warnings().is_empty(), "{saved:?}");
    let names = archive_names(&get_object(&stack, &only_object(&stack)));
    assert_eq!(
        names,
        ["plain", "with\nnewline", "dir/", "dir/x"],
        "each path once"
    );

    let dst = tempdir();
    assert_outcome(&restore(&stack, dst.path(), "nul"), 0, "hit");
    assert_same(&before, &manifest(dst.path()), "restored tree");
}

#[test]
fn a_path_outside_the_tree_is_a_usage_error_and_nothing_is_uploaded() {
    let stack = start();
    let dir = tempdir();
    fs::write(dir.path().join("ok"), b"ok").expect("write");
    for (input, named) in [
        ("ok\n../escape\n", "../escape"),
        ("ok\n/etc/passwd\n", "/etc/passwd"),
        ("a/../../b\n", "a/../../b"),
    ] {
        let r = run(
            bmat(&stack),
            dir.path(),
            &["cache", "save", "k"],
            input.as_bytes(),
        );
        assert_eq!(r.code, 2, "{input:?}: {r:?}");
        assert!(r.stderr.contains(named), "{input:?}: {r:?}");
    }
    assert_eq!(
        multipart_uploads(&stack),
        0,
        "no multipart upload was started"
    );
    assert!(stored_objects(&stack).is_empty());
    assert_outcome(&restore(&stack, dir.path(), "k"), 0, "miss");
}

#[test]
fn home_paths_are_restored_under_the_restoring_jobs_home() {
    let stack = start();
    let (first, second) = (tempdir(), tempdir());
    let (home_a, home_b) = (tempdir(), tempdir());
    small_tree(&home_a.path().join(".cargo/registry"));
    fs::create_dir_all(home_a.path().join("tool/bin")).expect("mkdir");
    write_random(&home_a.path().join("tool/bin/helper"), 70_000);
    fs::write(first.path().join("local"), b"in the working tree").expect("write");
    let saved = run(
        with_home(bmat(&stack), home_a.path()),
        first.path(),
        &["--json", "cache", "save", "homes"],
        b"~/.cargo/registry\n~/tool\nlocal\n",
    );
    assert_outcome(&saved, 0, "saved");

    // Another job: another working tree, another $HOME, with something of its own.
    fs::write(home_b.path().join("mine"), b"kept").expect("write");
    let b_before = manifest(home_b.path());
    let restored = run(
        with_home(bmat(&stack), home_b.path()),
        second.path(),
        &["--json", "cache", "restore", "homes"],
        b"",
    );
    assert_outcome(&restored, 0, "hit");
    for dir in [".cargo/registry", "tool"] {
        assert_same(
            &manifest(&home_a.path().join(dir)),
            &manifest(&home_b.path().join(dir)),
            dir,
        );
    }
    assert_eq!(fs::read(home_b.path().join("mine")).expect("read"), b"kept");
    assert_eq!(
        fs::read(second.path().join("local")).expect("read"),
        b"in the working tree"
    );
    assert!(
        !second.path().join(".bmat-root").exists() && !second.path().join("tool").exists(),
        "home entries stay out of the working tree"
    );
    assert!(staging_leftovers(home_b.path()).is_empty());
    assert!(b_before.entries.len() < manifest(home_b.path()).entries.len());

    // Other absolute paths, a way out of $HOME and the reserved name stay usage errors,
    // and so does ~/ without a $HOME.
    for (input, says) in [
        ("/etc/passwd\n", "absolute path"),
        ("~/../escape\n", "outside $HOME"),
        (".bmat-root/home/x\n", "reserves"),
    ] {
        let r = run(
            with_home(bmat(&stack), home_a.path()),
            first.path(),
            &["cache", "save", "refused"],
            input.as_bytes(),
        );
        assert_eq!(r.code, 2, "{input:?}: {r:?}");
        assert!(r.stderr.contains(says), "{input:?}: {r:?}");
    }
    let mut no_home = bmat(&stack);
    no_home.env_remove("HOME");
    let r = run(
        no_home,
        first.path(),
        &["cache", "save", "refused"],
        b"~/tool\n",
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("$HOME"), "{r:?}");
    assert_eq!(
        stored_objects(&stack).len(),
        1,
        "only the first save stored anything"
    );
}

fn with_home(mut cmd: Command, home: &Path) -> Command {
    cmd.env("HOME", home).env_remove("CARGO_HOME");
    cmd
}

#[test]
fn invalid_keys_and_flags_are_usage_errors_before_any_network() {
    let dir = tempdir();
    // No agent socket or signer: had bmat gone past the checks it would have failed
    // open (exit 0 with a warning), not with 2.
    let bare = || {
        let mut cmd = Command::new(xtask::stack::bins::workspace_bin("bmat").expect("bmat binary"));
        cmd.env_remove("BMAT_AGENT_SOCKET")
            .env_remove("BMAT_SIGNER_URL")
            .env_remove("BMAT_TOKEN");
        cmd
    };
    for args in [
        &["cache", "save", "a/b"][..],
        &["cache", "save", ".hidden"],
        &["cache", "restore", "-x"],
        &["cache", "restore", &"k".repeat(129)],
        &["cache", "restore", "ok", "--fallback", "bad prefix"],
        &["cache", "restore", "ok", "--no-such-flag"],
        &["cache", "save"],
    ] {
        let r = run(bare(), dir.path(), args, b"ok\n");
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
    }
    let r = run(bare(), dir.path(), &["cache", "save", "bad key"], b"ok\n");
    assert!(r.stderr.contains("invalid cache key \"bad key\""), "{r:?}");
    // The same, well-formed, fails open instead.
    let r = run(
        bare(),
        dir.path(),
        &["--json", "cache", "restore", "fine"],
        b"",
    );
    assert_failed_open(&r);
    assert!(r.stderr.contains("BMAT_AGENT_SOCKET"), "{r:?}");
}

/// inotify watch for opens and reads: root ignores file modes, so an unreadable file
/// proves nothing here; the kernel's own record of every open does.
struct OpenWatch {
    fd: libc::c_int,
}

impl OpenWatch {
    fn new(paths: &[&Path]) -> OpenWatch {
        // SAFETY: plain syscalls on a descriptor we own; paths are NUL-terminated.
        unsafe {
            let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
            assert!(fd >= 0, "inotify_init1");
            for p in paths {
                let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
                let wd = libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_OPEN | libc::IN_ACCESS);
                assert!(wd >= 0, "inotify_add_watch {}", p.display());
            }
            OpenWatch { fd }
        }
    }

    /// Events since the last call.
    fn take(&self) -> usize {
        let mut count = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: buf is valid for buf.len() bytes.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return count;
            }
            let mut at = 0usize;
            while at < n as usize {
                // struct inotify_event: wd, mask, cookie, len, then `len` name bytes.
                let len =
                    u32::from_ne_bytes(buf[at + 12..at + 16].try_into().expect("4 bytes")) as usize;
                at += 16 + len;
                count += 1;
            }
        }
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        // SAFETY: closing our own descriptor.
        unsafe { libc::close(self.fd) };
    }
}

#[test]
fn saving_an_existing_key_skips_without_reading_any_file() {
    let stack = start();
    let src = tempdir();
    let d = src.path().join("d");
    fs::create_dir_all(&d).expect("mkdir");
    fs::write(d.join("secret"), b"secret").expect("write");
    fs::write(d.join("other"), b"other").expect("write");
    let watch = OpenWatch::new(&[&d, &d.join("secret"), &d.join("other")]);

    assert_outcome(
        &save(&stack, src.path(), "once", b"d\nd/secret\n"),
        0,
        "saved",
    );
    assert!(
        watch.take() >= 3,
        "the watch sees the first save read the files"
    );

    chmod(&d.join("secret"), 0o000);
    let again = save(&stack, src.path(), "once", b"d\nd/secret\n");
    assert_outcome(&again, 0, "skipped");
    assert!(
        again.stderr.contains("cache exists, skipped: once"),
        "{again:?}"
    );
    assert_eq!(
        watch.take(),
        0,
        "the second save opened a file or directory"
    );
    assert_eq!(stored_objects(&stack).len(), 1);
}

#[test]
fn a_fallback_prefix_restores_the_newest_match() {
    let stack = start();
    let src = tempdir();
    let file = src.path().join("v");
    fs::write(&file, b"older").expect("write");
    assert_outcome(&save(&stack, src.path(), "deps-b", b"v\n"), 0, "saved");
    fs::write(&file, b"newer").expect("write");
    // Newer, but sorts first: the match must go by age, not by name.
    assert_outcome(&save(&stack, src.path(), "deps-a", b"v\n"), 0, "saved");
    fs::write(&file, b"other prefix").expect("write");
    assert_outcome(&save(&stack, src.path(), "tools-z", b"v\n"), 0, "saved");

    let dst = tempdir();
    let r = run(
        bmat(&stack),
        dst.path(),
        &[
            "--json",
            "cache",
            "restore",
            "deps-c",
            "--fallback",
            "deps-",
        ],
        b"",
    );
    assert_outcome(&r, 0, "hit");
    assert_eq!(r.json()["key"], "deps-c");
    assert_eq!(r.json()["matched_key"], "deps-a");
    assert!(
        r.stderr.contains("cache hit: deps-c (from deps-a,"),
        "{r:?}"
    );
    assert_eq!(fs::read(dst.path().join("v")).expect("restored"), b"newer");

    let miss = run(
        bmat(&stack),
        dst.path(),
        &[
            "--json",
            "cache",
            "restore",
            "deps-c",
            "--fallback",
            "nope-",
        ],
        b"",
    );
    assert_outcome(&miss, 0, "miss");
    assert!(miss.stderr.contains("cache miss: deps-c"), "{miss:?}");
}

/// A token past its report budget (`limits.reports_per_token`) got a 429 that bmat
/// retried until `REPORT_TIMEOUT`: every restore of the job then took 10 s more. The
/// signer says `budget_spent` with that 429, and bmat sends the refused report once.
#[test]
fn a_spent_report_budget_is_not_retried_and_the_restore_still_hits() {
    let stack = Stack::start_with(|c| c.limits.reports_per_token = 1).expect("stack starts");
    let src = tempdir();
    fs::write(src.path().join("f"), b"budget").expect("write");
    assert_outcome(&save(&stack, src.path(), "budget", b"f\n"), 0, "saved");

    // The first restore's report spends the budget; the second's is refused.
    for _ in 0..2 {
        let dst = tempdir();
        assert_outcome(&restore(&stack, dst.path(), "budget"), 0, "hit");
        assert_eq!(fs::read(dst.path().join("f")).expect("restored"), b"budget");
    }
    let metrics = cache::block_on(common::scrape(&stack));
    let reports = |status| {
        common::value(
            &metrics,
            "bmat_signer_http_requests_total",
            &[
                ("endpoint", "/v1/reports"),
                ("method", "POST"),
                ("status", status),
            ],
        )
    };
    assert_eq!(reports("200"), 1.0, "reports accepted");
    assert_eq!(reports("429"), 1.0, "refused reports: the client retried");
}

/// A tree a failed restore must leave exactly as it was, file mtimes, directory
/// mtimes and all.
fn existing_tree(root: &Path) {
    small_tree(root);
    fs::write(root.join("data.bin"), b"the old contents").expect("write");
}

/// Restores `key` into a copy of [`existing_tree`]: the restore must fail open with
/// `reason` in its warning and leave the tree exactly as it was, staging included.
fn assert_restore_refused(stack: &Stack, key: &str, reason: &str) {
    let dst = tempdir();
    existing_tree(dst.path());
    let before = manifest(dst.path());
    let r = restore(stack, dst.path(), key);
    assert_failed_open(&r);
    assert!(r.stderr.contains(reason), "{key}: {r:?}");
    assert_same(&before, &manifest(dst.path()), key);
    assert!(staging_leftovers(dst.path()).is_empty(), "{key}");
}

/// bmat with its control requests' retries cut to 1 s: against a stack that stays
/// broken, the default 30 s of retries would only slow the test down.
fn impatient(stack: &Stack) -> Command {
    let mut cmd = bmat(stack);
    cmd.env("BMAT_API_RETRY_SECS", "1");
    cmd
}

/// Runs restore and save against a broken stack: exit 0 with one warning, 1 with
/// --strict or BMAT_CACHE_STRICT=1, and the tree untouched.
fn assert_both_fail_open(stack: &Stack, cached_key: &str) {
    let dir = tempdir();
    existing_tree(dir.path());
    let before = manifest(dir.path());
    let json_restore = ["--json", "cache", "restore", cached_key];
    assert_failed_open(&run(impatient(stack), dir.path(), &json_restore, b""));
    let strict = run(
        impatient(stack),
        dir.path(),
        &["--strict", "cache", "restore", cached_key],
        b"",
    );
    assert_eq!(strict.code, 1, "{strict:?}");
    assert!(strict.stderr.contains("error: cache restore"), "{strict:?}");
    let mut by_env = impatient(stack);
    by_env.env("BMAT_CACHE_STRICT", "1");
    assert_eq!(
        run(by_env, dir.path(), &["cache", "restore", cached_key], b"").code,
        1
    );
    assert_same(&before, &manifest(dir.path()), "tree after failed restores");

    let json_save = ["--json", "cache", "save", "new-key"];
    assert_failed_open(&run(
        impatient(stack),
        dir.path(),
        &json_save,
        b"data.bin\n",
    ));
    let strict = run(
        impatient(stack),
        dir.path(),
        &["--strict", "cache", "save", "new-key"],
        b"data.bin\n",
    );
    assert_eq!(strict.code, 1, "{strict:?}");
}

#[test]
fn a_save_rides_out_a_signer_restart() {
    let mut stack = start();
    let src = tempdir();
    write_random(&src.path().join("data.bin"), MIB);
    stack.kill_signer().expect("kill signer");
    let mut cmd = bmat(&stack);
    let child = spawn(
        &mut cmd,
        src.path(),
        &["--json", "cache", "save", "k"],
        b"data.bin\n",
    );
    // Four refused begins (the shim logs each 502) is more than the 2 s of retries
    // bmat used to allow; then the signer comes back.
    let shim_log = stack.log_paths().pop().expect("the shim's log");
    poll_until_sync("four refused begins", Duration::from_secs(60), || {
        fs::read_to_string(&shim_log)
            .unwrap_or_default()
            .matches("POST /v1/uploads 502")
            .count()
            >= 4
    });
    stack.start_signer().expect("signer restarts");
    let r = Run::from_output(child.wait_with_output().expect("bmat ends"));
    assert_outcome(&r, 0, "saved");
    let dst = tempdir();
    assert_outcome(&restore(&stack, dst.path(), "k"), 0, "hit");
}

#[test]
fn fails_open_when_the_shim_is_not_running() {
    fails_open_after(|stack| stack.kill_shim());
}

#[test]
fn fails_open_when_the_signer_is_down() {
    fails_open_after(|stack| stack.kill_signer());
}

/// Saves a cache, breaks the stack with `break_it`, then checks both commands.
fn fails_open_after(break_it: impl FnOnce(&mut Stack) -> anyhow::Result<()>) {
    let mut stack = start();
    let src = tempdir();
    fs::write(src.path().join("data.bin"), b"cached").expect("write");
    assert_outcome(
        &save(&stack, src.path(), "cached", b"data.bin\n"),
        0,
        "saved",
    );
    break_it(&mut stack).expect("break the stack");
    assert_both_fail_open(&stack, "cached");
}

/// Starts `bmat args…` in `dir`, waits for the proxy to trip (the transfer is then in
/// flight), kills S3, cuts the held connections, and returns bmat's result.
fn kill_s3_mid_transfer(
    stack: &mut Stack,
    proxy: &FaultProxy,
    trip: Trip,
    dir: &Path,
    args: &[&str],
    stdin: &[u8],
) -> Run {
    proxy.arm(trip, 3 * MIB as u64);
    let child = spawn(&mut bmat(stack), dir, args, stdin);
    proxy.wait_tripped(Duration::from_secs(120));
    stack.kill_s3().expect("kill S3");
    proxy.release();
    Run::from_output(child.wait_with_output().expect("bmat ends"))
}

#[test]
fn fails_open_when_s3_dies_mid_upload() {
    let Some((mut stack, proxy)) = start_behind_proxy() else {
        return;
    };
    let src = tempdir();
    write_random(&src.path().join("big.bin"), 40 * MIB);

    let r = kill_s3_mid_transfer(
        &mut stack,
        &proxy,
        Trip::Upload,
        src.path(),
        &["--json", "cache", "save", "k1"],
        b"big.bin\n",
    );
    assert_failed_open(&r);

    stack.start_s3().expect("restart S3");
    let r = kill_s3_mid_transfer(
        &mut stack,
        &proxy,
        Trip::Upload,
        src.path(),
        &["--strict", "cache", "save", "k2"],
        b"big.bin\n",
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("error: cache save of k2 failed"), "{r:?}");

    // Neither upload became a cache.
    stack.start_s3().expect("restart S3");
    let dst = tempdir();
    assert_outcome(&restore(&stack, dst.path(), "k1"), 0, "miss");
    assert_outcome(&restore(&stack, dst.path(), "k2"), 0, "miss");
    assert!(stored_objects(&stack).is_empty());
}

#[test]
fn fails_open_when_s3_dies_mid_download_and_leaves_the_tree_as_it_was() {
    let Some((mut stack, proxy)) = start_behind_proxy() else {
        return;
    };
    let src = tempdir();
    write_random(&src.path().join("data.bin"), 40 * MIB);
    fs::create_dir_all(src.path().join("nested")).expect("mkdir");
    fs::write(src.path().join("nested/new-file"), b"new").expect("write");
    assert_outcome(
        &save(&stack, src.path(), "k", b"data.bin\nnested\n"),
        0,
        "saved",
    );

    let dst = tempdir();
    existing_tree(dst.path());
    let before = manifest(dst.path());
    let r = kill_s3_mid_transfer(
        &mut stack,
        &proxy,
        Trip::Download,
        dst.path(),
        &["--json", "cache", "restore", "k"],
        b"",
    );
    assert_failed_open(&r);
    // The cause is named: the download, not the unpacker that saw its input end.
    assert!(r.stderr.contains("failed: downloading:"), "{r:?}");
    assert_same(
        &before,
        &manifest(dst.path()),
        "tree after a failed download",
    );
    assert!(staging_leftovers(dst.path()).is_empty());

    stack.start_s3().expect("restart S3");
    let r = kill_s3_mid_transfer(
        &mut stack,
        &proxy,
        Trip::Download,
        dst.path(),
        &["--strict", "cache", "restore", "k"],
        b"",
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert_same(
        &before,
        &manifest(dst.path()),
        "tree after a failed strict download",
    );

    // And with S3 back, the same restore works.
    stack.start_s3().expect("restart S3");
    assert_outcome(&restore(&stack, dst.path(), "k"), 0, "hit");
    assert_eq!(
        fs::read(dst.path().join("nested/new-file")).expect("restored"),
        b"new"
    );
}

#[test]
fn a_stalled_download_is_abandoned() {
    let Some((stack, proxy)) = start_behind_proxy() else {
        return;
    };
    let src = tempdir();
    write_random(&src.path().join("data.bin"), 20 * MIB);
    assert_outcome(&save(&stack, src.path(), "k", b"data.bin\n"), 0, "saved");

    // S3 accepts the connections but sends nothing more: only the stall timeout
    // can end this.
    proxy.arm(Trip::Download, MIB as u64);
    let dst = tempdir();
    existing_tree(dst.path());
    let before = manifest(dst.path());
    let mut cmd = bmat(&stack);
    cmd.env("BMAT_STALL_TIMEOUT_SECS", "1")
        .env("BMAT_RETRY_ATTEMPTS", "2");
    let r = run(cmd, dst.path(), &["--json", "cache", "restore", "k"], b"");
    proxy.release();
    assert_failed_open(&r);
    assert!(r.stderr.contains("no data moved"), "{r:?}");
    assert_same(
        &before,
        &manifest(dst.path()),
        "tree after a stalled download",
    );
}

#[test]
fn a_corrupted_or_truncated_archive_is_refused_and_the_tree_untouched() {
    let stack = start();
    let src = tempdir();
    small_tree(src.path());
    write_random(&src.path().join("data.bin"), 3 * MIB);
    // Saves the tree, then damages its stored archive with `damage`. Each refused
    // restore gets the broken cache dropped (see tests/healing.rs): save anew each time.
    let damaged_cache = |damage: &dyn Fn(&mut Vec<u8>)| {
        let saved = save(&stack, src.path(), "k", b"nested\ndata.bin\n");
        assert_outcome(&saved, 0, "saved");
        let object = only_object(&stack);
        let mut bytes = get_object(&stack, &object);
        damage(&mut bytes);
        put_object(&stack, &object, bytes);
    };

    let dst = tempdir();
    existing_tree(dst.path());
    let before = manifest(dst.path());

    let flip = |bytes: &mut Vec<u8>| {
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x20;
    };
    damaged_cache(&flip);
    let r = restore(&stack, dst.path(), "k");
    assert_failed_open(&r);
    assert!(r.stderr.contains("corrupt"), "{r:?}");
    assert_same(
        &before,
        &manifest(dst.path()),
        "tree after a corrupt archive",
    );
    damaged_cache(&flip);
    let strict = run(
        bmat(&stack),
        dst.path(),
        &["--strict", "cache", "restore", "k"],
        b"",
    );
    assert_eq!(strict.code, 1, "{strict:?}");

    damaged_cache(&|bytes| bytes.truncate(bytes.len() - 1000));
    let r = restore(&stack, dst.path(), "k");
    assert_failed_open(&r);
    assert!(
        r.stderr.contains("shorter") || r.stderr.contains("bytes"),
        "{r:?}"
    );
    assert_same(
        &before,
        &manifest(dst.path()),
        "tree after a truncated archive",
    );
    assert!(staging_leftovers(dst.path()).is_empty());

    // A good archive restores: the refusals were about the damage.
    damaged_cache(&|_| {});
    assert_outcome(&restore(&stack, dst.path(), "k"), 0, "hit");
}

#[test]
fn crafted_archives_cannot_write_outside_the_tree() {
    let stack = start();
    let outside = outside_dir();
    let target = outside.path().display().to_string();
    let cases = [
        (
            "dotdot",
            Crafted::default()
                .file("fine", b"ok")
                .file("../escape", b"evil")
                .finish(),
        ),
        (
            "absolute",
            Crafted::default()
                .file(&format!("{target}/planted"), b"evil")
                .finish(),
        ),
        (
            "through-link",
            Crafted::default()
                .symlink("link", &target)
                .file("link/planted", b"evil")
                .finish(),
        ),
    ];
    for (key, archive) in cases {
        register_archive(&stack, key, archive);
        // The tree is a subdirectory, so that `../escape` would land in `parent`.
        let parent = tempdir();
        let tree = parent.path().join("tree");
        existing_tree(&tree);
        let before = manifest(parent.path());
        let r = restore(&stack, &tree, key);
        assert_failed_open(&r);
        assert!(r.stderr.contains("refused archive entry"), "{key}: {r:?}");
        assert_same(&before, &manifest(parent.path()), key);
        assert!(
            is_empty_dir(outside.path()),
            "{key}: something was written in {target}"
        );
    }
}

#[test]
fn help_documents_the_json_outcome() {
    let mut cmd = Command::new(xtask::stack::bins::workspace_bin("bmat").expect("bmat binary"));
    let out = cmd
        .args(["cache", "save", "--help"])
        .output()
        .expect("help");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in [
        "--json",
        "\"outcome\"",
        "matched_key",
        "archive_bytes",
        "--strict",
        "Exit status",
    ] {
        assert!(text.contains(needle), "{needle} missing from help:\n{text}");
    }
}

/// Waits until S3 refuses `url` (expired), probing past the held proxy.
fn wait_expired(proxy: &FaultProxy, method: &str, url: &str) {
    poll_until_sync(
        "the presigned URL to expire",
        Duration::from_secs(30),
        || !(200..300).contains(&proxy.probe(method, url)),
    );
}

#[test]
fn an_expired_download_url_is_replaced_once() {
    let Some((stack, proxy)) = start_behind_proxy_with(|c| c.timing.download_url_expiry_secs = 2)
    else {
        return;
    };
    let src = tempdir();
    write_random(&src.path().join("data.bin"), 8 * MIB);
    assert_outcome(&save(&stack, src.path(), "k", b"data.bin\n"), 0, "saved");

    proxy.arm(Trip::Download, (MIB / 4) as u64);
    let dst = tempdir();
    let mut cmd = bmat(&stack);
    cmd.env("BMAT_RANGE_SIZE_MIB", "1");
    let child = spawn(
        &mut cmd,
        dst.path(),
        &["--json", "cache", "restore", "k"],
        b"",
    );
    proxy.wait_tripped(Duration::from_secs(120));
    // Issued after bmat's URL: once it has expired, bmat's has too.
    wait_expired(&proxy, "GET", &lookup_url(&stack, "k"));
    proxy.release();
    let r = Run::from_output(child.wait_with_output().expect("bmat ends"));
    assert_outcome(&r, 0, "hit");
    assert_eq!(
        fs::read(dst.path().join("data.bin")).ok(),
        fs::read(src.path().join("data.bin")).ok()
    );
}

#[test]
fn an_expired_part_url_is_replaced_once() {
    let Some((stack, proxy)) = start_behind_proxy_with(|c| c.timing.part_url_expiry_secs = 2)
    else {
        return;
    };
    let src = tempdir();
    write_random(&src.path().join("data.bin"), 24 * MIB);

    proxy.arm(Trip::Upload, MIB as u64);
    let child = spawn(
        &mut bmat(&stack),
        src.path(),
        &["--json", "cache", "save", "k"],
        b"data.bin\n",
    );
    proxy.wait_tripped(Duration::from_secs(120));
    // Issued after bmat's part URLs: once it has expired, theirs have too. (For the
    // probe's 1-byte body: a part URL is signed for its body's length.)
    wait_expired(&proxy, "PUT", &fresh_part_url(&stack, "probe", 1));
    proxy.release();
    let r = Run::from_output(child.wait_with_output().expect("bmat ends"));
    assert_outcome(&r, 0, "saved");

    let dst = tempdir();
    assert_outcome(&restore(&stack, dst.path(), "k"), 0, "hit");
    assert_eq!(
        fs::read(dst.path().join("data.bin")).ok(),
        fs::read(src.path().join("data.bin")).ok()
    );
}

#[test]
fn a_restore_killed_mid_download_leaves_litter_that_save_skips_and_restore_removes() {
    let Some((stack, proxy)) = start_behind_proxy() else {
        return;
    };
    let src = tempdir();
    write_random(&src.path().join("data.bin"), 20 * MIB);
    assert_outcome(&save(&stack, src.path(), "k", b"data.bin\n"), 0, "saved");
    let first = only_object(&stack);

    let dst = tempdir();
    fs::write(dst.path().join("mine"), b"the user's").expect("write");
    // The download is held after 1 MiB: bmat is in the middle of the restore, its
    // staging directory locked, when it is killed with SIGKILL.
    proxy.arm(Trip::Download, MIB as u64);
    let mut child = spawn(
        &mut bmat(&stack),
        dst.path(),
        &["--json", "cache", "restore", "k"],
        b"",
    );
    proxy.wait_tripped(Duration::from_secs(120));
    poll_until_sync(
        "the restore's staging directory",
        Duration::from_secs(30),
        || {
            staging_leftovers(dst.path())
                .iter()
                .any(|p| p.join("locked").exists())
        },
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("bmat reaped");
    proxy.release();
    assert_eq!(
        staging_leftovers(dst.path()).len(),
        1,
        "the litter is there"
    );

    // `find . | bmat cache save` does not archive it.
    let saved = save(&stack, dst.path(), "after-kill", b".\n");
    assert_outcome(&saved, 0, "saved");
    assert!(saved.warnings().is_empty(), "{saved:?}");
    let second = stored_objects(&stack)
        .into_iter()
        .map(|(name, _)| name)
        .find(|name| *name != first)
        .expect("the second archive");
    assert_eq!(archive_names(&get_object(&stack, &second)), ["mine"]);

    // The next restore removes it (its restore is dead: its lock is free).
    assert_outcome(&restore(&stack, dst.path(), "k"), 0, "hit");
    assert!(staging_leftovers(dst.path()).is_empty());
    assert!(
        fs::read(dst.path().join("data.bin")).expect("restored")
            == fs::read(src.path().join("data.bin")).expect("source")
    );
}

#[test]
fn a_full_or_closed_stdout_or_stderr_fails_the_step_open_never_a_panic() {
    let stack = start();
    let dir = tempdir();
    let full = || {
        Stdio::from(
            fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .expect("/dev/full"),
        )
    };
    let closed_pipe = || {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        Stdio::from(writer)
    };
    let run_with = |strict: bool, stdout: Stdio, stderr: Stdio| {
        let mut cmd = bmat(&stack);
        cmd.current_dir(dir.path())
            .args(["--json", "cache", "restore", "k"])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        if strict {
            cmd.arg("--strict");
        }
        Run::from_output(cmd.output().expect("bmat runs"))
    };

    // stdout unwritable: the miss is reported on stderr, then a warning that the
    // JSON could not be written; exit 0, or 1 under --strict.
    for (what, stdout) in [("full", full()), ("closed", closed_pipe())] {
        let r = run_with(false, stdout, Stdio::piped());
        assert_eq!(r.code, 0, "stdout {what}: {r:?}");
        assert!(r.stderr.contains("cache miss: k"), "stdout {what}: {r:?}");
        assert!(
            r.stderr.contains("warning: cannot write the outcome"),
            "stdout {what}: {r:?}"
        );
    }
    for (what, stdout) in [("full", full()), ("closed", closed_pipe())] {
        let r = run_with(true, stdout, Stdio::piped());
        assert_eq!(r.code, 1, "stdout {what}, --strict: {r:?}");
        assert!(
            r.stderr.contains("error: cannot write the outcome"),
            "stdout {what}, --strict: {r:?}"
        );
    }
    // stderr unwritable: the JSON still reaches stdout; exit 0, or 1 under --strict.
    for (strict, code) in [(false, 0), (true, 1)] {
        let r = run_with(strict, Stdio::piped(), full());
        assert_eq!((r.code, r.outcome().as_str()), (code, "miss"), "{r:?}");
        let r = run_with(strict, Stdio::piped(), closed_pipe());
        assert_eq!((r.code, r.outcome().as_str()), (code, "miss"), "{r:?}");
    }
}

#[test]
fn a_restore_never_replaces_a_non_empty_directory() {
    let stack = start();
    register_archive(
        &stack,
        "k",
        Crafted::default()
            .file("new-file", b"new")
            .file("nested", b"a file where the tree has a directory")
            .finish(),
    );
    assert_restore_refused(
        &stack,
        "k",
        "nested: it would replace a non-empty directory",
    );
}

#[test]
fn a_33_kb_archive_claiming_a_gib_extension_header_is_refused() {
    use std::io::Write as _;
    // One pax extension header claiming 1 GiB, and the GiB of zeros: 33 KB
    // compressed. The tar crate's own walk would read that header into memory whole.
    let mut header = tar::Header::new_ustar();
    header.set_path("PaxHeaders/huge").expect("name");
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_size(1 << 30);
    header.set_cksum();
    let mut zstd = zstd::stream::write::Encoder::new(Vec::new(), 19).expect("zstd");
    zstd.write_all(header.as_bytes()).expect("header");
    let zeros = vec![0u8; MIB];
    for _ in 0..1024 {
        zstd.write_all(&zeros).expect("body");
    }
    zstd.write_all(&[0u8; 1024]).expect("end of archive");
    let archive = zstd.finish().expect("zstd");
    assert!(archive.len() < 40_000, "{} bytes", archive.len());

    let stack = start();
    register_archive(&stack, "k", archive);
    assert_restore_refused(
        &stack,
        "k",
        "huge: pax extension header too large: 1073741824 bytes",
    );
}

/// A zstd-compressed tar of one file of `claimed` zero bytes: a few hundred KiB that
/// unpack to `claimed`.
fn zstd_bomb(claimed: u64) -> Vec<u8> {
    use std::io::Write;
    let mut header = tar::Header::new_gnu();
    header.set_path("zeros").expect("path");
    header.set_size(claimed);
    header.set_mode(0o644);
    header.set_cksum();
    let mut z = zstd::stream::write::Encoder::new(Vec::new(), 19).expect("zstd");
    z.write_all(header.as_bytes()).expect("header");
    let zeros = vec![0u8; MIB];
    for _ in 0..claimed / MIB as u64 {
        z.write_all(&zeros).expect("zeros");
    }
    z.write_all(&[0u8; 1024]).expect("end of archive");
    z.finish().expect("zstd finish")
}

#[test]
fn a_restore_stops_past_the_recorded_size_and_checks_free_space_first() {
    let stack = start();
    let bomb = zstd_bomb(1 << 30);
    assert!(bomb.len() < 200 * 1024, "{} bytes", bomb.len());
    let recorded = |unpacked_size| Extent {
        unpacked_size: Some(unpacked_size),
        entries: Some(1),
    };
    register_archive_with(&stack, "bomb", bomb.clone(), recorded(MIB as u64));
    register_archive_with(&stack, "huge", bomb, recorded(1 << 60));

    assert_restore_refused(
        &stack,
        "bomb",
        "unpacks to more than the 1048576 bytes recorded",
    );
    assert_restore_refused(&stack, "huge", "not enough free space");

    // A real save records what its archive unpacks to.
    let src = tempdir();
    small_tree(&src.path().join("tree"));
    assert_outcome(&save(&stack, src.path(), "real", b"tree\n"), 0, "saved");
    let hit = cache::block_on(common::api::Api::new(&stack).hit("real", &[])).expect("hit");
    // Every entry under the source, "tree" itself included.
    let entries = manifest(src.path()).entries.len() as u64;
    assert_eq!(hit.extent.entries, Some(entries), "{hit:?}");
    assert!(
        hit.extent.unpacked_size.unwrap_or(0) >= entries * 512,
        "{hit:?}"
    );
}

/// Issue 17, point 10: `~` alone (or `~/`, `~/.`, `~/./`) would archive all of
/// `$HOME`, credentials included: a usage error naming what to list instead, and
/// nothing uploaded.
#[test]
fn all_of_home_on_stdin_is_a_usage_error_and_nothing_is_uploaded() {
    let stack = start();
    let (dir, home) = (tempdir(), tempdir());
    fs::create_dir_all(home.path().join(".ssh")).expect("mkdir");
    fs::write(home.path().join(".ssh/id_ed25519"), b"secret").expect("write");
    for input in ["~\n", "~/\n", "~/.\n", "~/./\n", "ok\n~\n"] {
        let r = run(
            with_home(bmat(&stack), home.path()),
            dir.path(),
            &["cache", "save", "whole-home"],
            input.as_bytes(),
        );
        assert_eq!(r.code, 2, "{input:?}: {r:?}");
        assert!(
            r.stderr
                .contains("list the directories under ~ to cache, e.g. ~/.cargo/registry"),
            "{input:?}: {r:?}"
        );
    }
    assert_eq!(
        multipart_uploads(&stack),
        0,
        "no multipart upload was started"
    );
    assert!(stored_objects(&stack).is_empty());
}
