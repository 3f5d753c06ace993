//! Helpers of the `bmat cache` tests: running bmat in a directory, building sample
//! trees, reading the stored archive back from S3, registering crafted archives.
#![allow(dead_code)]

use std::fs;
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use bmat::trees::manifest::{Manifest, Options};
use bmat::trees::times::Mtime;
use bmat_wire::api::{
    BeginRequest, BeginResponse, CompleteRequest, CompletedPart, Extent, PartUrlsRequest,
    PartUrlsResponse, UploadState, UploadStatus,
};
use rand::RngCore;
use xtask::stack::Stack;

/// One finished bmat run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The `--json` object (the last stdout line).
    pub fn json(&self) -> serde_json::Value {
        let line = self
            .stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("no JSON on stdout: {self:?}"));
        serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
    }

    pub fn outcome(&self) -> String {
        self.json()["outcome"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Lines of stderr that start with `warning:`.
    pub fn warnings(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("warning:"))
            .collect()
    }
}

/// Runs `cmd args…` in `dir` with `stdin`, waiting for it.
pub fn run(mut cmd: Command, dir: &Path, args: &[&str], stdin: &[u8]) -> Run {
    let child = spawn(&mut cmd, dir, args, stdin);
    let out = child.wait_with_output().expect("bmat runs");
    Run::from_output(out)
}

/// Starts `cmd args…` in `dir` with `stdin` written and closed; collect it with
/// `wait_with_output`.
pub fn spawn(cmd: &mut Command, dir: &Path, args: &[&str], stdin: &[u8]) -> Child {
    let mut child = cmd
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bmat starts");
    let mut pipe = child.stdin.take().expect("stdin pipe");
    // bmat may exit before reading stdin (a usage error): a broken pipe is fine.
    let _ = pipe.write_all(stdin);
    drop(pipe);
    child
}

/// Runs a future on a private runtime (the stack's API is synchronous; the S3
/// client is async).
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

pub fn write_random(path: &Path, bytes: usize) {
    let mut file = fs::File::create(path).expect("create");
    let mut rng = rand::rng();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len());
        rng.fill_bytes(&mut buf[..n]);
        file.write_all(&buf[..n]).expect("write");
        left -= n;
    }
}

pub fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    Mtime { secs, nanos }.apply(path).expect("set mtime");
}

pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A small tree with every kind of entry: nested and empty directories, empty
/// files, an executable, relative and dangling symlinks, sub-second mtimes.
pub fn small_tree(root: &Path) {
    fs::create_dir_all(root.join("nested/deeper/deepest")).expect("mkdir");
    fs::create_dir_all(root.join("empty-dir")).expect("mkdir");
    fs::write(root.join("nested/deeper/deepest/leaf.txt"), b"leaf\n").expect("write");
    fs::write(root.join("nested/empty"), b"").expect("write");
    fs::write(root.join("nested/tool.sh"), b"#!/bin/sh\necho tool\n").expect("write");
    chmod(&root.join("nested/tool.sh"), 0o755);
    symlink("deeper/deepest/leaf.txt", root.join("nested/rel-link")).expect("symlink");
    symlink("../no/such/file", root.join("nested/dangling")).expect("symlink");
    for (i, p) in [
        "nested/deeper/deepest/leaf.txt",
        "nested/empty",
        "nested/tool.sh",
        "nested/rel-link",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(
            &root.join(p),
            1_650_000_000 + i as i64,
            100_000_007 * (i as u32 + 1),
        );
    }
    set_mtime(&root.join("nested/deeper"), 1_640_000_000, 555_555_555);
}

/// The manifest of everything under `root`, bmat's staging directories included
/// (so a leftover one shows up as a difference).
pub fn manifest(root: &Path) -> Manifest {
    Manifest::of(root, Options::default(), |_| false).expect("manifest")
}

pub fn assert_same(before: &Manifest, after: &Manifest, what: &str) {
    let diff = before.diff(after);
    assert!(
        diff.is_empty(),
        "{what}: {} differences, first: {:?}",
        diff.len(),
        &diff[..diff.len().min(10)]
    );
}

/// Names (and sizes) of the archives stored in S3 for this stack.
pub fn stored_objects(stack: &Stack) -> Vec<(String, u64)> {
    let prefix = format!("{}/caches/", stack.env().s3_prefix);
    block_on(async {
        stack
            .s3_client()
            .expect("s3 client")
            .list_objects(&prefix)
            .await
            .expect("list")
    })
}

/// The single stored archive (fails if there is not exactly one).
pub fn only_object(stack: &Stack) -> String {
    let objects = stored_objects(stack);
    assert_eq!(objects.len(), 1, "{objects:?}");
    objects[0].0.clone()
}

pub fn get_object(stack: &Stack, name: &str) -> Vec<u8> {
    block_on(async {
        stack
            .s3_client()
            .expect("s3 client")
            .get_object(name)
            .await
            .expect("get")
    })
}

pub fn put_object(stack: &Stack, name: &str, bytes: Vec<u8>) {
    block_on(async {
        stack
            .s3_client()
            .expect("s3 client")
            .put_object(name, bytes)
            .await
            .expect("put")
    })
}

pub fn multipart_uploads(stack: &Stack) -> usize {
    let prefix = format!("{}/", stack.env().s3_prefix);
    block_on(async {
        stack
            .s3_client()
            .expect("s3 client")
            .list_multipart_uploads(&prefix)
            .await
            .expect("list uploads")
            .len()
    })
}

/// Entry names of a stored archive, in order.
pub fn archive_names(archive: &[u8]) -> Vec<String> {
    tar_names(&zstd::decode_all(archive).expect("zstd"))
}

/// The names in a tar stream.
pub fn tar_names(tar_bytes: &[u8]) -> Vec<String> {
    let mut tar = tar::Archive::new(tar_bytes);
    tar.entries()
        .expect("entries")
        .map(|e| String::from_utf8_lossy(&e.expect("entry").path_bytes()).into_owned())
        .collect()
}

/// The tar stream of the stored cache `object` (its S3 name): an archive's,
/// decompressed, or a contents cache's, put back together from the objects its
/// manifest reads, each content checked (docs/design.md, "Content-addressed caches").
pub fn cache_tar(stack: &Stack, object: &str) -> Vec<u8> {
    use bmat::contents::layout::{TRAILER_LEN, Trailer, open_index};
    use bmat::contents::plan::Plan;
    let own = get_object(stack, object);
    let size = own.len() as u64;
    let trailer = size
        .checked_sub(TRAILER_LEN)
        .and_then(|at| Trailer::parse(&own[at as usize..], size).ok());
    let Some(t) = trailer else {
        return zstd::decode_all(&own[..]).expect("an archive");
    };
    let (skeleton, manifest) = open_index(
        &own[t.skeleton_at as usize..(size - TRAILER_LEN) as usize],
        &t,
    )
    .expect("the index");
    let dir = object.rsplit_once('/').expect("an object name").0;
    let plan = Plan::of(&manifest);
    let mut frames = Vec::new();
    for span in plan.spans(&manifest) {
        let bytes = get_object(
            stack,
            &format!("{dir}/{}", manifest.objects[span.object as usize]),
        );
        frames.extend_from_slice(&bytes[span.at as usize..(span.at + span.len) as usize]);
    }
    let mut tar = Vec::new();
    bmat::contents::assemble::assemble(&frames[..], &skeleton, &manifest, &plan, &mut tar)
        .expect("reassembled");
    tar
}

/// Registers `archive` under `key` through the signer API with plain HTTP (begin,
/// part URL, PUT, complete), as if a client had saved it, and waits until it is
/// completed. Its recorded extent is a bound no crafted test archive reaches, so that
/// what a restore refuses is the archive itself.
pub fn register_archive(stack: &Stack, key: &str, archive: Vec<u8>) {
    let generous = Extent {
        unpacked_size: Some(64 << 20),
        entries: Some(10_000),
    };
    register_archive_with(stack, key, archive, generous)
}

/// The same, recording `extent` as what the archive unpacks to.
pub fn register_archive_with(stack: &Stack, key: &str, archive: Vec<u8>, extent: Extent) {
    let env = stack.env().clone();
    block_on(async move {
        let http = crate::common::http();
        let api = |path: &str| format!("{}/v1{path}", env.signer_url);
        let size = Some(archive.len() as u64);
        let (upload_id, part_url) = begin_with_part_url(&http, &env, key, size).await;
        let sha256 = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&archive))
        };
        let size = archive.len() as u64;
        let put = http
            .put(&part_url)
            .body(archive)
            .send()
            .await
            .expect("part PUT");
        assert!(put.status().is_success(), "part PUT: {}", put.status());
        let etag = put.headers()["etag"].to_str().expect("etag").to_owned();
        let status: UploadStatus = http
            .post(api(&format!("/uploads/{upload_id}/complete")))
            .bearer_auth(&env.token)
            .json(&CompleteRequest {
                parts: vec![CompletedPart {
                    part_number: 1,
                    etag,
                }],
                size,
                sha256,
                extent,
                format: bmat_wire::api::FORMAT_ARCHIVE,
                refs: vec![],
                logical_size: None,
            })
            .send()
            .await
            .expect("complete")
            .json()
            .await
            .expect("complete JSON");
        let mut state = status.state;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while state != UploadState::Completed {
            assert!(
                std::time::Instant::now() < deadline,
                "the crafted upload did not complete: {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now: UploadStatus = http
                .get(api(&format!("/uploads/{upload_id}")))
                .bearer_auth(&env.token)
                .send()
                .await
                .expect("status")
                .json()
                .await
                .expect("status JSON");
            state = now.state;
        }
    });
}

/// A zstd-compressed tar built entry by entry with raw header names: the tar crate's
/// setters refuse `..` and absolute names, which is exactly what these archives carry.
pub struct Crafted {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for Crafted {
    fn default() -> Self {
        Crafted {
            builder: tar::Builder::new(Vec::new()),
        }
    }
}

impl Crafted {
    pub fn file(self, name: &str, data: &[u8]) -> Crafted {
        self.entry(name, tar::EntryType::Regular, None, data)
    }

    pub fn symlink(self, name: &str, target: &str) -> Crafted {
        self.entry(name, tar::EntryType::Symlink, Some(target), b"")
    }

    fn entry(
        mut self,
        name: &str,
        kind: tar::EntryType,
        link: Option<&str>,
        data: &[u8],
    ) -> Crafted {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.builder.append(&h, data).expect("append");
        self
    }

    pub fn finish(self) -> Vec<u8> {
        let tar_bytes = self.builder.into_inner().expect("tar");
        zstd::encode_all(&tar_bytes[..], 3).expect("zstd")
    }
}

/// A directory under /tmp that must stay empty (the target of hostile links).
pub fn outside_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("bmat-outside-")
        .tempdir()
        .expect("tempdir")
}

pub fn is_empty_dir(path: &Path) -> bool {
    fs::read_dir(path)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

pub fn staging_leftovers(root: &Path) -> Vec<PathBuf> {
    fs::read_dir(root)
        .expect("read_dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".bmat-restore-"))
        })
        .collect()
}

/// A fresh presigned GET URL of `key`'s cache, from the signer.
pub fn lookup_url(stack: &Stack, key: &str) -> String {
    let env = stack.env().clone();
    block_on(async move {
        let answer: bmat_wire::api::LookupResponse = crate::common::http()
            .post(format!("{}/v1/lookup", env.signer_url))
            .bearer_auth(&env.token)
            .json(&bmat_wire::api::LookupRequest {
                key: key.to_owned(),
                fallbacks: vec![],
                exclude: vec![],
                formats: vec![],
                for_save: false,
            })
            .send()
            .await
            .expect("lookup")
            .json()
            .await
            .expect("lookup JSON");
        answer.hit.expect("a hit").url
    })
}

/// A fresh presigned part URL of a new upload of `key`, from the signer, for a body of
/// `size` bytes.
pub fn fresh_part_url(stack: &Stack, key: &str, size: u64) -> String {
    let env = stack.env().clone();
    block_on(async move {
        begin_with_part_url(&crate::common::http(), &env, key, Some(size))
            .await
            .1
    })
}

/// Begins an upload of `key` as the stack's owner and asks for part 1's URL, for a
/// body of `size` bytes (else of the part size): (upload id, presigned PUT URL).
async fn begin_with_part_url(
    http: &reqwest::Client,
    env: &xtask::stack::StackEnv,
    key: &str,
    size: Option<u64>,
) -> (String, String) {
    let begin: BeginResponse = http
        .post(format!("{}/v1/uploads", env.signer_url))
        .bearer_auth(&env.token)
        .json(&BeginRequest {
            key: key.to_owned(),
            expected_size: None,
            part_size: None,
            refresh_after_secs: None,
            only_scopes: vec![],
        })
        .send()
        .await
        .expect("begin")
        .json()
        .await
        .expect("begin JSON");
    let BeginResponse::Upload { upload_id, .. } = begin else {
        panic!("begin said {begin:?}")
    };
    let urls: PartUrlsResponse = http
        .post(format!("{}/v1/uploads/{upload_id}/parts", env.signer_url))
        .bearer_auth(&env.token)
        .json(&PartUrlsRequest {
            part_numbers: vec![1],
            size,
        })
        .send()
        .await
        .expect("part urls")
        .json()
        .await
        .expect("part urls JSON");
    (upload_id, urls.urls[0].url.clone())
}
