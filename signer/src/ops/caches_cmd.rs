//! `signer caches delete --owner O --scope S [--prefix P]`: an operator drops every
//! cache of one scope (whose key starts with P), e.g. a closed pull request's, on a
//! running signer (`DELETE /v1/caches`), and sees how many and how many bytes.

use bmat_wire::api::DeletedCaches;
use clap::{Args, Subcommand};

use super::client::Target;

#[derive(Subcommand)]
pub enum CachesCommand {
    /// Delete the caches of one scope, or those whose key starts with a prefix.
    Delete(DeleteArgs),
}

#[derive(Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long)]
    owner: String,
    /// The scope, e.g. refs/pull/42/merge (never every scope at once).
    #[arg(long)]
    scope: String,
    /// Only caches whose key starts with this.
    #[arg(long)]
    prefix: Option<String>,
    /// Print the API's JSON answer ({"deleted","bytes"}).
    #[arg(long)]
    json: bool,
}

pub async fn run(cmd: CachesCommand) -> anyhow::Result<()> {
    let CachesCommand::Delete(a) = cmd;
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("owner", &a.owner);
    query.append_pair("scope", &a.scope);
    if let Some(prefix) = &a.prefix {
        query.append_pair("prefix", prefix);
    }
    let path = format!("/v1/caches?{}", query.finish());
    let done: DeletedCaches = a
        .target
        .call::<(), DeletedCaches>(reqwest::Method::DELETE, &path, None)
        .await?;
    if a.json {
        println!("{}", serde_json::to_string(&done)?);
    } else {
        println!(
            "deleted {} caches of {} in {} ({} bytes)",
            done.deleted, a.owner, a.scope, done.bytes
        );
    }
    Ok(())
}
