//! `signer registry rebuild --config FILE`: the registry recovered from the bucket
//! alone when its SQLite file is lost (docs/design.md, "Registry and S3 layout": the
//! registry is an index).
//! Only into an absent or empty registry, and never while a signer runs on the prefix.
//! The new registry takes the id the prefix's claim names, so the signer then starts
//! on it as before; every cache whose index object, own object and read objects are
//! all there is inserted ([`plan`]). Reads S3, writes nothing there.

pub mod plan;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::cache_index::CacheIndex;
use crate::config::rules::PREFIX_LEASE_SECS;
use crate::config::{Config, ConfigError};
use crate::lease::{self, Claim};
use crate::names;
use crate::registry::{Registry, RegistryError};
use crate::s3::{S3Client, S3Error};
use crate::state::now_ms;
use crate::text::chain;
use plan::{Plan, Skipped};

/// Index objects read at once.
const READS_IN_FLIGHT: usize = 16;

#[derive(Args)]
pub struct RebuildArgs {
    /// The signer's TOML config file (its `database` and `[s3]`).
    #[arg(long)]
    config: PathBuf,
    /// Print one JSON object: the counts and each skipped index object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("{}", chain(.0))]
    Config(#[source] ConfigError),
    #[error("{0:#}")]
    Setup(#[source] anyhow::Error),
    #[error(
        "the registry {} holds {count} caches: a rebuild writes only into an absent or empty \
         registry (move that file, with its -wal and -shm, away first)",
        .path.display()
    )]
    NotEmpty { path: PathBuf, count: u64 },
    #[error(
        "s3.prefix {prefix:?} is held by a running signer ({holder}), whose claim changed \
         while this waited for its lease to lapse; stop it before rebuilding its registry"
    )]
    Held { prefix: String, holder: String },
    #[error("S3 {doing}: {source}")]
    S3 {
        doing: String,
        #[source]
        source: S3Error,
    },
    #[error("{}", chain(.0))]
    Registry(#[from] RegistryError),
}

fn s3_err(doing: impl Into<String>) -> impl FnOnce(S3Error) -> RebuildError {
    let doing = doing.into();
    move |source| RebuildError::S3 { doing, source }
}

/// What a rebuild did (`--json` prints it).
#[derive(Debug, Serialize)]
pub struct Rebuilt {
    pub registry_id: String,
    pub caches: usize,
    pub contents: usize,
    pub owners: usize,
    pub retained: usize,
    pub skipped: Vec<Skipped>,
}

pub async fn run(args: RebuildArgs) -> anyhow::Result<()> {
    let done = rebuild(&args.config).await?;
    if args.json {
        println!("{}", serde_json::to_string(&done)?);
        return Ok(());
    }
    for s in &done.skipped {
        println!("skipped {}: {}", s.id, s.reason);
    }
    println!(
        "rebuilt {} caches ({} of contents) of {} owners, {} retained objects; skipped {}",
        done.caches,
        done.contents,
        done.owners,
        done.retained,
        done.skipped.len()
    );
    Ok(())
}

/// The whole rebuild (see the module doc).
pub async fn rebuild(config: &Path) -> Result<Rebuilt, RebuildError> {
    let cfg = Config::load(config).map_err(RebuildError::Config)?;
    // Refused before anything is read or made: a registry that holds caches is no
    // lost one.
    let existing = match cfg.database.exists() {
        true => Some(empty_registry(&cfg.database)?),
        false => None,
    };
    let creds = cfg.credentials().map_err(RebuildError::Setup)?;
    let s3 = S3Client::new(cfg.s3.settings(), creds).map_err(RebuildError::Setup)?;
    let claim = unheld_claim(&s3, &cfg).await?;
    let objects: HashMap<String, u64> = list(&s3, &cfg.s3.caches_prefix()).await?;
    let found = read_indexes(&s3, &cfg).await?;
    let plan = plan::plan(found, &objects, |scope| cfg.limits.protects(scope));

    let mut reg = match existing {
        Some(reg) => reg,
        None => Registry::open(&cfg.database)?,
    };
    if let Some(claim) = &claim {
        reg.set_registry_id(&claim.registry)?;
    }
    let (contents, owners) = (plan.contents(), plan.owners());
    let Plan {
        caches,
        retained,
        skipped,
    } = plan;
    let rows: Vec<_> = caches.into_iter().map(CacheIndex::into_row).collect();
    if !reg.insert_rebuilt(&rows, &retained, now_ms())? {
        return Err(RebuildError::NotEmpty {
            path: cfg.database.clone(),
            count: reg.cache_count()?,
        });
    }
    Ok(Rebuilt {
        registry_id: reg.registry_id()?,
        caches: rows.len(),
        contents,
        owners,
        retained: retained.len(),
        skipped,
    })
}

/// The registry at `path`, if it holds no cache.
fn empty_registry(path: &Path) -> Result<Registry, RebuildError> {
    let reg = Registry::open(path)?;
    match reg.cache_count()? {
        0 => Ok(reg),
        count => Err(RebuildError::NotEmpty {
            path: path.to_owned(),
            count,
        }),
    }
}

/// The prefix's claim, once no signer holds it: a claim naming a holder is watched for
/// that holder's lease (as a starting signer does, `ops::claim`); renewed meanwhile, a
/// signer is running and the rebuild is refused.
async fn unheld_claim(s3: &S3Client, cfg: &Config) -> Result<Option<Claim>, RebuildError> {
    let object = cfg.s3.claim_object();
    let read = || async {
        lease::read(s3, &object)
            .await
            .map_err(s3_err(format!("reading the prefix claim {object}")))
    };
    let first = read().await?;
    let Some(holder) = first.as_ref().and_then(|c| c.holder.clone()) else {
        return Ok(first);
    };
    let lease = holder
        .lease_secs
        .clamp(PREFIX_LEASE_SECS.0, PREFIX_LEASE_SECS.1);
    eprintln!(
        "s3.prefix {:?} names a signer's lease ({}); waiting {lease} s for it to lapse",
        cfg.s3.prefix,
        holder.describe(now_ms())
    );
    tokio::time::sleep(Duration::from_secs(lease)).await;
    if read().await? != first {
        return Err(RebuildError::Held {
            prefix: cfg.s3.prefix.clone(),
            holder: holder.describe(now_ms()),
        });
    }
    Ok(first)
}

/// The objects under `prefix` named by a ULID, with their sizes.
async fn list(s3: &S3Client, prefix: &str) -> Result<HashMap<String, u64>, RebuildError> {
    let listed = s3
        .list_objects(prefix)
        .await
        .map_err(s3_err(format!("listing {prefix}")))?;
    Ok(listed
        .into_iter()
        .filter_map(|(name, size)| {
            let id = name.strip_prefix(prefix)?;
            names::is_ulid(id).then(|| (id.to_owned(), size))
        })
        .collect())
}

/// Every index object under the prefix, read ([`READS_IN_FLIGHT`] at once): its id
/// and the index, or why it gives none. An S3 failure other than "gone" ends the
/// rebuild.
async fn read_indexes(
    s3: &S3Client,
    cfg: &Config,
) -> Result<Vec<(String, Result<CacheIndex, String>)>, RebuildError> {
    let mut ids: Vec<String> = list(s3, &cfg.s3.index_prefix())
        .await?
        .into_keys()
        .collect();
    ids.sort();
    let mut found = Vec::with_capacity(ids.len());
    let mut reads = JoinSet::new();
    let mut ids = ids.into_iter();
    loop {
        while reads.len() < READS_IN_FLIGHT {
            let Some(id) = ids.next() else { break };
            let (s3, name) = (s3.clone(), cfg.s3.index_name(&id));
            reads.spawn(async move {
                let bytes = s3.get_object(&name).await;
                (id, name, bytes)
            });
        }
        let Some(done) = reads.join_next().await else {
            break;
        };
        let (id, name, bytes) = done.map_err(|e| RebuildError::Setup(e.into()))?;
        let index = match bytes {
            Ok(b) => CacheIndex::parse(&id, &b).map_err(|e| e.to_string()),
            Err(e) if e.is_not_found() => Err("its index object went meanwhile".to_owned()),
            Err(e) => return Err(s3_err(format!("reading {name}"))(e)),
        };
        found.push((id, index));
    }
    Ok(found)
}
