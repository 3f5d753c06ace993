//! `signer token create|revoke`: an operator mints or revokes a job token on a running
//! signer without writing HTTP by hand (through [`super::client`]).

use bmat_wire::api::{MintRequest, MintedToken, Revoked};
use clap::{Args, Subcommand};

use super::client::Target;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Mint a job token; prints the token on stdout (`--json`: token, id, expiry).
    Create(CreateArgs),
    /// Revoke a job token by its id.
    Revoke(RevokeArgs),
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
            let minted: MintedToken = a
                .target
                .call(reqwest::Method::POST, "/v1/tokens", Some(&req))
                .await?;
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
            a.target
                .call::<(), Revoked>(reqwest::Method::DELETE, &path, None)
                .await?;
            eprintln!("signer: job token {} revoked", a.id);
        }
    }
    Ok(())
}
