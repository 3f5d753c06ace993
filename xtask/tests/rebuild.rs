//! Issue 19: "registry rebuilt from the bucket restores every cache it had"
//! (docs/design.md, "Registry and S3 layout": the registry is an index). Caches of two
//! owners and two scopes, archives and contents (a pull request's reading main's), one
//! deleted; then the registry file is lost, `signer registry rebuild` writes it again
//! from the bucket, and the signer serves the same caches as before.

#[path = "common/cache.rs"]
mod cache;
mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use bmat_wire::api::{FORMAT_CONTENTS, LookupRequest, LookupResponse};
use cache::{Run, assert_same, block_on, manifest, run, small_tree, write_random};
use common::api::Api;
use common::{bmat_with_token, pr_token};
use reqwest::StatusCode;
use xtask::stack::{Stack, bins};

const PR: &str = "refs/pull/9/merge";
const MIB: usize = 1 << 20;

/// The places of the jobs: main, a pull request (reading main) and another owner's.
const MAIN: usize = 0;
const PULL: usize = 1;
const OTHER: usize = 2;

/// A cache saved by a job of one place.
struct Saved {
    place: usize,
    key: &'static str,
    src: tempfile::TempDir,
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// bmat with `token`, storing contents caches when `contents`.
fn job(stack: &Stack, token: &str, contents: bool) -> Command {
    let mut cmd = bmat_with_token(stack, token);
    if contents {
        cmd.env("BMAT_CACHE_FORMAT", "contents");
    }
    cmd
}

/// A tree under `dir/tree`: every kind of entry, `big.bin` (copied from `big`, else
/// random) and a file that tells it apart.
fn tree(dir: &Path, big: Option<&Path>) {
    let root = dir.join("tree");
    small_tree(&root);
    match big {
        Some(from) => {
            fs::copy(from.join("tree/big.bin"), root.join("big.bin")).expect("copy");
        }
        None => write_random(&root.join("big.bin"), MIB),
    }
    fs::write(root.join("mark"), dir.display().to_string()).expect("write");
}

fn save(
    stack: &Stack,
    tokens: &[String],
    place: usize,
    key: &'static str,
    contents: bool,
    big: Option<&Path>,
) -> Saved {
    let src = tempdir();
    tree(src.path(), big);
    let r = run(
        job(stack, &tokens[place], contents),
        src.path(),
        &["--json", "cache", "save", key],
        b"tree\n",
    );
    assert_eq!((r.code, r.outcome().as_str()), (0, "saved"), "{r:?}");
    Saved { place, key, src }
}

/// A hit: the cache's id, its format and the objects it reads (id, size).
type Found = (String, u8, Vec<(String, u64)>);

/// What a lookup of `key` by a client of contents finds.
fn found(stack: &Stack, token: &str, key: &str) -> Option<Found> {
    let api = Api::new(stack).with_token(Some(token));
    let req = LookupRequest {
        key: key.into(),
        fallbacks: vec![],
        exclude: vec![],
        formats: vec![FORMAT_CONTENTS],
        for_save: false,
    };
    let hit = block_on(async { api.post("/v1/lookup", &req).await.ok::<LookupResponse>() }).hit?;
    let objects = hit.objects.iter().map(|o| (o.id.clone(), o.size)).collect();
    Some((hit.id.unwrap_or_default(), hit.format, objects))
}

/// The keys `bmat cache list` shows the job of `token`.
fn listed(stack: &Stack, token: &str) -> Vec<String> {
    let dir = tempdir();
    let r = run(
        job(stack, token, false),
        dir.path(),
        &["--json", "cache", "list"],
        b"",
    );
    assert_eq!((r.code, r.outcome().as_str()), (0, "listed"), "{r:?}");
    let mut keys: Vec<String> = r.json()["caches"]
        .as_array()
        .expect("caches")
        .iter()
        .filter_map(|c| c["key"].as_str().map(str::to_owned))
        .collect();
    keys.sort();
    keys
}

/// The ids of the index objects under the prefix.
fn indexes(stack: &Stack) -> Vec<String> {
    let prefix = format!("{}/index/", stack.env().s3_prefix);
    let listed = block_on(async {
        let s3 = stack.s3_client().expect("s3 client");
        s3.list_objects(&prefix).await.expect("list")
    });
    listed
        .into_iter()
        .map(|(name, _)| name[prefix.len()..].to_owned())
        .collect()
}

/// `signer registry rebuild ARGS` on the stack's config, with its S3 credentials.
fn rebuild(stack: &Stack, args: &[&str]) -> Run {
    rebuild_with(stack, stack.signer_config_path(), args)
}

/// `signer registry rebuild ARGS` on the config file `config`.
fn rebuild_with(stack: &Stack, config: &Path, args: &[&str]) -> Run {
    let cfg = stack.signer_config();
    let mut cmd = Command::new(bins::workspace_bin("signer").expect("signer binary"));
    cmd.env(&cfg.s3.access_key_id_env, &stack.env().s3_access_key_id)
        .env(
            &cfg.s3.secret_access_key_env,
            &stack.env().s3_secret_access_key,
        );
    let config = config.to_str().expect("a UTF-8 path");
    let mut all = vec!["registry", "rebuild", "--config", config];
    all.extend_from_slice(args);
    run(cmd, stack.dir(), &all, b"")
}

#[test]
fn a_registry_rebuilt_from_the_bucket_serves_every_cache_it_had() {
    let mut stack = Stack::start().expect("stack");
    let env = stack.env();
    let mut tokens = [
        env.token.clone(),
        pr_token(&stack, PR),
        env.other_token.clone(),
    ];

    let main_k = save(&stack, &tokens, MAIN, "k", true, None);
    let main_k2 = save(&stack, &tokens, MAIN, "k2", true, None);
    let mut caches = vec![
        save(&stack, &tokens, MAIN, "arch", false, None),
        save(&stack, &tokens, PULL, "arch", false, None),
        save(&stack, &tokens, OTHER, "arch", false, None),
        // The pull request's caches of contents read main's.
        save(&stack, &tokens, PULL, "k", true, Some(main_k.src.path())),
        save(&stack, &tokens, PULL, "k2", true, Some(main_k2.src.path())),
    ];
    let (main_k_id, _, _) = found(&stack, &tokens[MAIN], "k").expect("main's k");
    let pr_k = found(&stack, &tokens[PULL], "k").expect("the pull request's k");
    assert!(pr_k.2.iter().any(|(id, _)| *id == main_k_id), "{pr_k:?}");
    caches.push(main_k);

    // Main's k2 goes, and its index object with it; its object stays, retained for the
    // pull request's k2 that reads it.
    let (main_k2_id, _, _) = found(&stack, &tokens[MAIN], "k2").expect("main's k2");
    assert!(indexes(&stack).contains(&main_k2_id));
    let dir = tempdir();
    let delete = ["--json", "cache", "delete", "k2"];
    let r = run(job(&stack, &tokens[MAIN], false), dir.path(), &delete, b"");
    assert_eq!(r.outcome(), "deleted", "{r:?}");
    assert!(!indexes(&stack).contains(&main_k2_id));
    assert_eq!(indexes(&stack).len(), caches.len());
    drop(main_k2);

    let keys = ["arch", "k", "k2"];
    let seen = |stack: &Stack, tokens: &[String; 3]| -> Vec<_> {
        tokens
            .iter()
            .flat_map(|t| keys.iter().map(|k| found(stack, t, k)))
            .collect()
    };
    let before = seen(&stack, &tokens);
    let lists = tokens.each_ref().map(|t| listed(&stack, t));

    // The registry is lost.
    stack.stop_signer().expect("stop the signer");
    let database = stack.signer_config().database.clone();
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", database.display());
        match fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("{file}: {e}"),
            _ => {}
        }
    }
    let r = rebuild(&stack, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout.trim(),
        "rebuilt 6 caches (3 of contents) of 2 owners, 1 retained objects; skipped 0",
        "{r:?}"
    );
    stack
        .start_signer()
        .expect("the signer starts on the rebuilt registry");

    // Minted job tokens are not in the bucket: the pull request's job gets a new one.
    let api = Api::new(&stack).with_token(Some(&tokens[PULL]));
    let e = block_on(api.get("/v1/caches")).err(StatusCode::UNAUTHORIZED);
    assert_eq!(e, "unknown token");
    tokens[PULL] = pr_token(&stack, PR);

    assert_eq!(seen(&stack, &tokens), before);
    assert!(
        found(&stack, &tokens[MAIN], "k2").is_none(),
        "a deleted cache came back"
    );
    assert_eq!(tokens.each_ref().map(|t| listed(&stack, t)), lists);
    for c in &caches {
        let dst = tempdir();
        let r = run(
            job(&stack, &tokens[c.place], false),
            dst.path(),
            &["--json", "cache", "restore", c.key],
            b"",
        );
        assert_eq!((r.code, r.outcome().as_str()), (0, "hit"), "{r:?}");
        assert_same(
            &manifest(&c.src.path().join("tree")),
            &manifest(&dst.path().join("tree")),
            c.key,
        );
    }

    // A registry that holds caches is never rebuilt over, nor one whose signer runs
    // (it renews its lease, 3 s on the stack, while the rebuild waits).
    let r = rebuild(&stack, &["--json"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("holds 6 caches"), "{r:?}");
    let elsewhere = tempdir();
    let mut cfg = stack.signer_config().clone();
    cfg.database = elsewhere.path().join("registry.sqlite");
    let config = elsewhere.path().join("signer.toml");
    fs::write(&config, cfg.to_toml().expect("TOML")).expect("write the config");
    let r = rebuild_with(&stack, &config, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("held by a running signer"), "{r:?}");
    assert!(!cfg.database.exists(), "a refused rebuild made a registry");
}
