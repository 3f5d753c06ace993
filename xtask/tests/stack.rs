//! The local stack itself: it starts, answers, restarts its parts and cleans up.

mod common;

use std::collections::HashSet;
use std::io::BufRead;
use std::process::{Command, Stdio};

use bmat_wire::api::{BeginRequest, BeginResponse, Health};
use common::{http, pid_alive};
use xtask::stack::{Stack, bins};

#[tokio::test]
async fn stack_starts_answers_and_leaves_nothing_behind() {
    let stack = Stack::start().expect("stack starts");
    let env = stack.env().clone();

    let vars = env.vars();
    let names: HashSet<&str> = vars.iter().map(|(k, _)| *k).collect();
    for expected in [
        "BMAT_AGENT_SOCKET",
        "BMAT_SIGNER_URL",
        "BMAT_TOKEN",
        "BMAT_S3_ENDPOINT",
        "BMAT_S3_BUCKET",
        "BMAT_S3_ACCESS_KEY_ID",
        "BMAT_S3_SECRET_ACCESS_KEY",
        "BMAT_S3_REGION",
        "BMAT_METRICS_URL",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        vars.iter().all(|(_, v)| !v.is_empty()),
        "empty value in {vars:?}"
    );
    assert_ne!(env.token, env.other_token);
    assert!(env.agent_socket.exists(), "shim socket missing");

    // S3 answers a signed request with the stack's credentials.
    let s3 = stack.s3_client().expect("s3 client");
    s3.list_objects(&format!("{}/", env.s3_prefix))
        .await
        .expect("signed ListObjectsV2");

    let health = http()
        .get(format!("{}/v1/health", env.signer_url))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    let health: Health = health.json().await.expect("health JSON");
    assert!(health.ok);

    let probe = format!("{}/caches/left-behind", env.s3_prefix);
    s3.put_object(&probe, b"x".to_vec())
        .await
        .expect("put a probe object");
    let owns_s3 = stack.owns_s3();
    let target = stack.s3_target().clone();

    let pids = stack.pids();
    assert_eq!(pids.len(), if stack.owns_s3() { 3 } else { 2 }, "{pids:?}");
    assert!(pids.iter().all(|p| pid_alive(*p)));
    let dir = stack.dir().to_path_buf();
    drop(stack);
    for pid in pids {
        assert!(!pid_alive(pid), "process {pid} survived the stack");
    }
    assert!(!dir.exists(), "{} survived the stack", dir.display());
    if !owns_s3 {
        // A shared server keeps nothing of the stack's prefix.
        let left = target
            .client()
            .expect("client")
            .list_objects(&format!("{}/", env.s3_prefix))
            .await;
        assert_eq!(
            left.expect("list").len(),
            0,
            "objects left under {}",
            env.s3_prefix
        );
    }
}

async fn begun_part_size(stack: &Stack, key: &str) -> u64 {
    let env = stack.env();
    let begin = http()
        .post(format!("{}/v1/uploads", env.signer_url))
        .bearer_auth(&env.token)
        .json(&BeginRequest {
            key: key.into(),
            expected_size: None,
            part_size: None,
            refresh_after_secs: None,
            only_scopes: vec![],
        })
        .send()
        .await
        .expect("begin");
    assert_eq!(begin.status(), 200);
    match begin.json::<BeginResponse>().await.expect("begin JSON") {
        BeginResponse::Upload { part_size, .. } => part_size,
        other => panic!("expected an upload, got {other:?}"),
    }
}

#[tokio::test]
async fn signer_config_tweaks_reach_the_signer() {
    const MIB: u64 = 1024 * 1024;
    let mut stack = Stack::start_with(|c| c.limits.part_size = 7 * MIB).expect("stack starts");
    assert_eq!(stack.signer_config().limits.part_size, 7 * MIB);
    assert_eq!(begun_part_size(&stack, "tweak-check").await, 7 * MIB);

    // Restart with another config: the same database, the new part size.
    assert!(
        stack
            .start_signer_with(|c| c.limits.part_size = 6 * MIB)
            .is_err(),
        "signer still running"
    );
    stack.kill_signer().expect("kill signer");
    stack
        .start_signer_with(|c| c.limits.part_size = 6 * MIB)
        .expect("signer restarts");
    assert_eq!(stack.signer_config().limits.part_size, 6 * MIB);
    assert_eq!(begun_part_size(&stack, "tweak-check-2").await, 6 * MIB);
}

#[tokio::test]
async fn signer_and_s3_restart_on_their_data_and_ports() {
    let mut stack = Stack::start().expect("stack starts");
    let health_url = format!("{}/v1/health", stack.env().signer_url);
    let client = http();

    stack.kill_signer().expect("kill signer");
    assert!(
        client.get(&health_url).send().await.is_err(),
        "signer still answers after SIGKILL"
    );
    stack.start_signer().expect("signer restarts");
    assert_eq!(
        client
            .get(&health_url)
            .send()
            .await
            .expect("health")
            .status(),
        200
    );

    if stack.owns_s3() {
        let prefix = format!("{}/restart-probe", stack.env().s3_prefix);
        let s3 = stack.s3_client().expect("s3 client");
        s3.put_object(&prefix, b"kept".to_vec()).await.expect("put");
        stack.kill_s3().expect("kill s3");
        assert!(
            s3.list_objects(&prefix).await.is_err(),
            "S3 still answers after SIGKILL"
        );
        stack.start_s3().expect("s3 restarts");
        // A fresh client: the old one's pooled connection died with the server.
        let s3 = stack.s3_client().expect("s3 client");
        assert_eq!(
            s3.get_object(&prefix)
                .await
                .expect("object kept across restart"),
            b"kept"
        );
    }
}

#[test]
fn xtask_stack_writes_env_file_and_tears_down_on_sigterm() {
    let xtask = bins::bin_dir().join("xtask");
    assert!(
        xtask.is_file(),
        "{} missing: run cargo build --workspace --bins",
        xtask.display()
    );
    let out = tempfile::tempdir().expect("tempdir");
    let env_file = out.path().join("stack.env");
    let mut child = Command::new(&xtask)
        .arg("stack")
        .arg("--env-file")
        .arg(&env_file)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cargo xtask stack");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut first = String::new();
    stderr.read_line(&mut first).expect("read stderr");
    assert!(
        first.contains("stack ready"),
        "unexpected first line: {first}"
    );

    let text = std::fs::read_to_string(&env_file).expect("env file written before the ready line");
    let vars: std::collections::HashMap<&str, &str> =
        text.lines().filter_map(|l| l.split_once('=')).collect();
    for key in [
        "BMAT_AGENT_SOCKET",
        "BMAT_SIGNER_URL",
        "BMAT_TOKEN",
        "BMAT_S3_ENDPOINT",
        "BMAT_S3_REGION",
        "BMAT_METRICS_URL",
    ] {
        assert!(
            vars.get(key).is_some_and(|v| !v.is_empty()),
            "{key} missing in:\n{text}"
        );
    }
    let socket = std::path::PathBuf::from(vars["BMAT_AGENT_SOCKET"]);
    let stack_dir = socket.parent().expect("socket dir").to_path_buf();
    assert!(socket.exists());

    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = child.wait().expect("wait");
    assert!(status.success(), "cargo xtask stack exited with {status}");
    assert!(!stack_dir.exists(), "{} left behind", stack_dir.display());
    assert!(!env_file.exists(), "env file left behind after teardown");
}
