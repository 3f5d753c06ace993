//! Issue 20: the job's end on a real stack. A restore's `--save-at-end` and `bmat job
//! defer` queue commands on the agent shim; `bmat job end --status N` runs them by the
//! job's status; a shim stopped with commands still queued runs none.

#[path = "common/cache.rs"]
mod cache;
mod common;

use std::fs;
use std::path::Path;

use cache::{Run, block_on, run, small_tree};
use common::api::Api;
use common::bmat;
use xtask::stack::Stack;

/// `bmat ARGS…` through the shim in `dir`.
fn bmat_in(stack: &Stack, dir: &Path, args: &[&str]) -> Run {
    let r = run(bmat(stack), dir, args, b"");
    eprintln!("bmat {args:?}:\n{}", r.stderr);
    r
}

/// A job's tree: `tree/` with `marker` saying `marker`, and `paths.txt` listing it.
fn job_dir(root: &Path, name: &str, marker: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    small_tree(&dir.join("tree"));
    fs::write(dir.join("tree/marker"), marker).expect("marker");
    fs::write(dir.join("paths.txt"), "tree\n").expect("paths");
    dir
}

/// Whether the job's own scope has a cache of `key`.
fn stored(stack: &Stack, key: &str) -> bool {
    block_on(Api::new(stack).hit(key, &[])).is_some_and(|h| h.key == key)
}

#[test]
fn deferred_saves_run_at_the_jobs_end_by_its_status() {
    let stack = Stack::start().expect("stack");
    let tmp = tempfile::tempdir().expect("tempdir");

    // (key, --save-if, the job's status, saved?)
    let cases = [
        ("ok-default", None, "0", true),
        ("failed-default", None, "1", false),
        ("failed-always", Some("always"), "1", true),
        ("ok-on-failure", Some("failure"), "0", false),
    ];
    for (key, save_if, status, saved) in cases {
        let dir = job_dir(tmp.path(), key, key);
        let mut args = vec![
            "cache",
            "restore",
            key,
            "--save-at-end",
            "--paths",
            "paths.txt",
        ];
        if let Some(when) = save_if {
            args.extend(["--save-if", when]);
        }
        let restored = bmat_in(&stack, &dir, &args);
        assert_eq!(restored.code, 0, "{restored:?}");
        assert!(
            restored.stderr.contains("deferred to the job's end"),
            "{restored:?}"
        );
        assert!(!stored(&stack, key), "{key}: saved before the job's end");
        let end = bmat_in(&stack, &dir, &["job", "end", "--status", status]);
        assert_eq!(end.code, 0, "{end:?}");
        assert_eq!(stored(&stack, key), saved, "{key}: {end:?}");
    }
    // What was saved at the end is the job's tree as it was then.
    let dst = tempfile::tempdir().expect("tempdir");
    let hit = bmat_in(&stack, dst.path(), &["cache", "restore", "ok-default"]);
    assert_eq!(hit.code, 0, "{hit:?}");
    assert_eq!(
        fs::read_to_string(dst.path().join("tree/marker")).expect("marker"),
        "ok-default"
    );

    // Any command, in the directory and environment it was deferred from.
    let dir = tmp.path().join("any");
    fs::create_dir_all(&dir).expect("mkdir");
    let defer = run(
        {
            let mut cmd = bmat(&stack);
            cmd.env("GREETING", "hello");
            cmd
        },
        &dir,
        &[
            "job",
            "defer",
            "--",
            "sh",
            "-c",
            "echo \"$GREETING\" > said.txt",
        ],
        b"",
    );
    assert_eq!(defer.code, 0, "{defer:?}");
    assert!(!dir.join("said.txt").exists());
    let end = bmat_in(&stack, &dir, &["job", "end"]);
    assert!(end.stderr.contains("job end: 1/1 done"), "{end:?}");
    assert_eq!(
        fs::read_to_string(dir.join("said.txt")).expect("said"),
        "hello\n"
    );
    // The queue was taken: a second end runs nothing.
    let again = bmat_in(&stack, &dir, &["job", "end"]);
    assert!(again.stderr.contains("no deferred commands"), "{again:?}");
}

#[test]
fn job_end_sums_up_every_cache_step_of_the_job() {
    let stack = Stack::start().expect("stack");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = job_dir(tmp.path(), "summed", "summed");
    let restore = [
        "cache",
        "restore",
        "summed",
        "--save-at-end",
        "--paths",
        "paths.txt",
    ];
    assert_eq!(bmat_in(&stack, &dir, &restore).code, 0);
    let md = tmp.path().join("step-summary.md");
    let end = run(
        {
            let mut cmd = bmat(&stack);
            cmd.env("GITHUB_STEP_SUMMARY", &md);
            cmd
        },
        &dir,
        &["--json", "job", "end", "--status", "0"],
        b"",
    );
    assert_eq!(end.code, 0, "{end:?}");
    assert!(
        end.stderr.contains("job summary: 2 cache step(s)"),
        "{end:?}"
    );
    let json: serde_json::Value = serde_json::from_str(end.stdout.trim()).expect("JSON");
    let steps: Vec<(String, String)> = json["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["command"].as_str().unwrap_or_default().to_owned(),
                s["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("restore".to_owned(), "miss".to_owned()),
            ("save".to_owned(), "saved".to_owned())
        ]
    );
    assert!(
        json["steps"][1]["bytes"].as_u64().is_some_and(|b| b > 0),
        "{json}"
    );
    let table = fs::read_to_string(&md).expect("the step summary");
    assert!(table.contains("| restore | miss | `summed` |"), "{table}");
    assert!(table.contains("| save | saved | `summed` |"), "{table}");
}

#[test]
fn a_job_killed_before_its_end_saves_nothing() {
    let mut stack = Stack::start().expect("stack");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = job_dir(tmp.path(), "killed", "killed");
    let args = [
        "cache",
        "restore",
        "killed",
        "--save-at-end",
        "--paths",
        "paths.txt",
    ];
    let restored = bmat_in(&stack, &dir, &args);
    assert_eq!(restored.code, 0, "{restored:?}");
    // The runner stops the job's shim without `bmat job end`.
    stack.terminate_shim().expect("stop the shim");
    let log = fs::read_to_string(&stack.log_paths()[stack.log_paths().len() - 1])
        .expect("the shim's log");
    assert!(
        log.contains("stopping with 1 deferred command(s) not run"),
        "{log}"
    );
    assert!(!stored(&stack, "killed"));
    // A new job's shim has an empty queue.
    stack.start_shim().expect("start the shim");
    let end = bmat_in(&stack, &dir, &["job", "end"]);
    assert!(end.stderr.contains("no deferred commands"), "{end:?}");
    assert!(!stored(&stack, "killed"));
}

#[test]
fn without_a_shim_a_deferred_save_is_a_warning_and_the_restore_runs() {
    let stack = Stack::start().expect("stack");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = job_dir(tmp.path(), "direct", "direct");
    let args = [
        "cache",
        "restore",
        "direct",
        "--save-at-end",
        "--paths",
        "paths.txt",
    ];
    let r = run(common::bmat_direct(&stack), &dir, &args, b"");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("warning: cannot defer")
            && r.stderr
                .contains("deferred commands need the job's agent shim"),
        "{r:?}"
    );
    assert!(r.stderr.contains("cache miss: direct"), "{r:?}");
    // --save-at-end without --paths is a usage error, before anything runs.
    let usage = run(
        bmat(&stack),
        &dir,
        &["cache", "restore", "direct", "--save-at-end"],
        b"",
    );
    assert_eq!(usage.code, 2, "{usage:?}");
    assert!(
        usage.stderr.contains("--save-at-end needs --paths"),
        "{usage:?}"
    );
}
