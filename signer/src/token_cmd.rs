//! `signer token create|revoke`: an operator mints or revokes a job token on a running
//! signer without writing HTTP by hand. The operator credential comes from
//! `BMAT_OPERATOR_TOKEN`, never from the command line (which `ps` shows).

use std::time::Duration;

use anyhow::{Context, bail};
use bmat_wire::api::{ErrorBody, MintRequest, MintedToken, Revoked};
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Mint a job token; prints the token on stdout (`--json`: token, id, expiry).
    Create(CreateArgs),
    /// Revoke a job token by its id.
    Revoke(RevokeArgs),
}

#[derive(Args)]
pub struct Target {
    /// The signer's base URL.
    #[arg(long, env = "BMAT_SIGNER_URL", default_value = "http://127.0.0.1:8080")]
    signer: String,
    /// The operator credential (from the environment only).
    #[arg(long, env = "BMAT_OPERATOR_TOKEN", hide_env_values = true, hide = true)]
    operator_token: String,
}

#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    target: Target,
    /// The owner (repository or account) the job acts for.
    #[arg(long)]
    owner: String,
    /// The job's own scope: its CI ref, e.g. refs/pull/42/merge.
    #[arg(long)]
    scope: String,
    /// A scope the job may restore from after its own (repeatable, in order).
    #[arg(long = "read-scope", value_name = "SCOPE")]
    read_scopes: Vec<String>,
    /// The job may restore but not save or delete.
    #[arg(long)]
    read_only: bool,
    /// Lifetime in seconds (default: the signer's job_tokens.default_ttl_secs).
    #[arg(long, value_name = "SECONDS")]
    ttl: Option<u64>,
    /// Print {"token","id","expires_at"} instead of the bare token.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    target: Target,
    /// The token's id, as `create --json` printed it.
    id: String,
}

pub async fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create(a) => {
            let req = MintRequest {
                owner: a.owner,
                scope: a.scope,
                read_scopes: a.read_scopes,
                write: !a.read_only,
                ttl_seconds: a.ttl,
            };
            let minted: MintedToken =
                call(&a.target, reqwest::Method::POST, "/v1/tokens", Some(&req)).await?;
            if a.json {
                println!("{}", serde_json::to_string(&minted)?);
            } else {
                println!("{}", minted.token);
                eprintln!(
                    "signer: job token {} expires at Unix time {}",
                    minted.id, minted.expires_at
                );
            }
        }
        TokenCommand::Revoke(a) => {
            let path = format!("/v1/tokens/{}", a.id);
            call::<(), Revoked>(&a.target, reqwest::Method::DELETE, &path, None).await?;
            eprintln!("signer: job token {} revoked", a.id);
        }
    }
    Ok(())
}

async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
    target: &Target,
    method: reqwest::Method,
    path: &str,
    body: Option<&Req>,
) -> anyhow::Result<Resp> {
    let url = format!("{}{path}", target.signer.trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut req = http
        .request(method.clone(), &url)
        .bearer_auth(&target.operator_token);
    if let Some(body) = body {
        req = req.json(body);
    }
    let answer = req
        .send()
        .await
        .with_context(|| format!("{method} {url}: no answer"))?;
    let status = answer.status();
    let text = answer.text().await?;
    if !status.is_success() {
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or(text);
        bail!("{method} {url}: {status}: {message}");
    }
    serde_json::from_str(&text).with_context(|| format!("{method} {url}: unexpected answer"))
}
