//! agent-shim against the real stack: forwarding, token injection, socket hygiene,
//! and what a job sees when the signer is gone.

mod common;

use std::os::unix::fs::PermissionsExt;

use bmat_wire::api::{ErrorBody, Health, LookupRequest, LookupResponse};
use common::{http, unix_http};
use xtask::stack::Stack;

const SHIM: &str = "http://agent-shim";

fn lookup(key: &str) -> LookupRequest {
    LookupRequest {
        key: key.to_owned(),
        fallbacks: vec![],
    }
}

#[tokio::test]
async fn forwards_requests_adding_the_token() {
    let stack = Stack::start().expect("stack starts");
    let env = stack.env();
    let shim = unix_http(&env.agent_socket);

    let health = shim
        .get(format!("{SHIM}/v1/health"))
        .send()
        .await
        .expect("health via shim");
    assert_eq!(health.status(), 200);
    assert!(health.json::<Health>().await.expect("health JSON").ok);

    // No token from the client: the shim adds its own.
    let via_shim = shim
        .post(format!("{SHIM}/v1/lookup"))
        .json(&lookup("some-key"))
        .send()
        .await
        .expect("lookup");
    assert_eq!(via_shim.status(), 200);
    let answer: LookupResponse = via_shim.json().await.expect("lookup JSON");
    assert_eq!(answer.hit, None);

    // A token the client made up is replaced, not passed on.
    let forged = shim
        .post(format!("{SHIM}/v1/lookup"))
        .bearer_auth("not-a-real-token")
        .json(&lookup("some-key"))
        .send()
        .await
        .expect("lookup with forged token");
    assert_eq!(forged.status(), 200);

    // The same request straight to the signer, without a token, is refused.
    let direct = http()
        .post(format!("{}/v1/lookup", env.signer_url))
        .json(&lookup("some-key"))
        .send()
        .await;
    let direct = direct.expect("direct lookup");
    assert_eq!(direct.status(), 401);

    // Signer errors pass through unchanged.
    let bad = shim
        .post(format!("{SHIM}/v1/lookup"))
        .json(&lookup("../bad key"))
        .send()
        .await
        .expect("lookup");
    assert!(
        bad.status().is_client_error() && bad.status() != 401,
        "status {}",
        bad.status()
    );
    assert!(
        !bad.json::<ErrorBody>()
            .await
            .expect("error JSON")
            .error
            .is_empty()
    );
}

#[tokio::test]
async fn socket_is_private_and_replaced_when_stale() {
    let mut stack = Stack::start().expect("stack starts");
    let socket = stack.env().agent_socket.clone();
    let mode = std::fs::metadata(&socket)
        .expect("socket metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    // SIGKILL leaves the socket file behind; a new shim must replace it.
    stack.kill_shim().expect("kill shim");
    assert!(socket.exists(), "expected a stale socket after SIGKILL");
    stack
        .start_shim()
        .expect("shim restarts over a stale socket");
    let health = unix_http(&socket)
        .get(format!("{SHIM}/v1/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn signer_down_is_a_502_with_a_json_error() {
    let mut stack = Stack::start().expect("stack starts");
    stack.kill_signer().expect("kill signer");
    let shim = unix_http(&stack.env().agent_socket);
    let answer = shim
        .post(format!("{SHIM}/v1/lookup"))
        .json(&lookup("k"))
        .send()
        .await
        .expect("lookup");
    assert_eq!(answer.status(), 502);
    let body: ErrorBody = answer.json().await.expect("502 body is JSON");
    assert!(body.error.contains("signer unreachable"), "{}", body.error);
    assert!(
        body.error.contains(&stack.env().signer_url),
        "{}",
        body.error
    );

    stack.start_signer().expect("signer restarts");
    let again = shim
        .get(format!("{SHIM}/v1/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(again.status(), 200, "shim recovers once the signer is back");
}

#[tokio::test]
async fn sigterm_removes_the_socket() {
    let mut stack = Stack::start().expect("stack starts");
    let socket = stack.env().agent_socket.clone();
    let status = stack
        .terminate_shim()
        .expect("terminate")
        .expect("shim was running");
    assert!(status.success(), "shim exited with {status}");
    assert!(!socket.exists(), "socket left behind after SIGTERM");
}
