//! One function per subcommand.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use bench_buildinfo::{BUILD, Code};
use bench_config::{Config, Format, Layer, Resolved};
use bench_core::{Diff, Manifest};
use bench_index::Index;
use bench_report::{Align, DiffReport, Render, Summary, Table, human, manifest_table};
use bench_store::Store;

use crate::failure::Failure;
use crate::{Cli, Cmd};

/// Decoded manifests kept in memory by one run.
const CACHE_SIZE: usize = 16;

pub async fn run(cli: Cli) -> Result<()> {
    let resolved = settings(&cli)?;
    let config = &resolved.config;
    let store =
        Store::new(&config.store.root, config.store.level).with_limit(config.store.max_bytes);
    let json = config.report.format == Format::Json;
    match cli.command {
        Cmd::Scan { dir, only, summary } => scan(&dir, only.as_deref(), summary, config, json),
        Cmd::Put { dir, name } => put(&store, &dir, name, config, json).await,
        Cmd::Get { hash } => {
            let data = store.get(&hash).await?;
            std::io::stdout()
                .write_all(&data)
                .context("writing to stdout")
        }
        Cmd::Restore { manifest, dir } => {
            let mut index = Index::open(store.clone(), CACHE_SIZE)?;
            let manifest = index.load(&manifest).await?;
            let stats = store.restore_tree(&manifest, &dir).await?;
            println!(
                "{} files, {} written to {}",
                stats.files,
                human(stats.bytes),
                dir.display()
            );
            Ok(())
        }
        Cmd::Diff { from, to } => {
            let mut index = Index::open(store, CACHE_SIZE)?;
            let (old, new) = (index.load(&from).await?, index.load(&to).await?);
            let diff = Diff::between(&old, &new);
            emit(&DiffReport::new(&from, &to, &diff), json)
        }
        Cmd::List => list(&Index::open(store, CACHE_SIZE)?, json),
        Cmd::Sync { to, manifests } => sync(&store, &to, &manifests, config).await,
        Cmd::Verify { manifests } => verify(&store, &manifests, config).await,
        Cmd::Gc { dry_run } => gc(&store, dry_run).await,
        Cmd::Config => show_config(&resolved, json),
        Cmd::Codes => codes(json),
        Cmd::Version => {
            println!("bench-store {BUILD}");
            Ok(())
        }
    }
}

/// Defaults, then the file, then `BENCH_*` variables, then `--json` and `--set`.
fn settings(cli: &Cli) -> Result<Resolved> {
    let mut layers = Vec::new();
    if let Some(path) = &cli.config {
        layers.push(Layer::from_file(path)?);
    }
    layers.push(Layer::from_env(std::env::vars())?);
    let json = cli.json.then_some("report.format=json");
    layers.push(Layer::from_args(
        json.into_iter().chain(cli.set.iter().map(String::as_str)),
    )?);
    Ok(bench_config::resolve(&layers)?)
}

fn emit(report: &impl Render, json: bool) -> Result<()> {
    if json {
        println!("{}", report.json()?);
    } else {
        print!("{}", report.text());
    }
    Ok(())
}

fn scan_dir(dir: &Path, config: &Config) -> Result<Manifest> {
    let filter = config.scan.filter()?;
    Ok(bench_core::scan_dir(dir, &filter)?)
}

fn scan(dir: &Path, only: Option<&str>, summary: bool, config: &Config, json: bool) -> Result<()> {
    let mut manifest = scan_dir(dir, config)?;
    if let Some(pattern) = only {
        manifest = manifest.select(pattern)?;
    }
    match (summary, json) {
        (true, _) => emit(&Summary::of(&manifest, config.report.top), json),
        (false, true) => {
            println!("{}", manifest.to_json()?);
            Ok(())
        }
        (false, false) => {
            print!("{}", manifest_table(&manifest));
            Ok(())
        }
    }
}

async fn put(
    store: &Store,
    dir: &Path,
    name: Option<String>,
    config: &Config,
    json: bool,
) -> Result<()> {
    let manifest = scan_dir(dir, config)?;
    let stats = store.put_tree(dir, &manifest).await?;
    let name = match name {
        Some(name) => name,
        None => dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Failure(Code::Usage, "the directory has no name: give --name".into()))?,
    };
    let mut index = Index::open(store.clone(), CACHE_SIZE)?;
    let hash = index.record(&name, &manifest).await?;
    let summary = serde_json::json!({
        "name": name,
        "manifest": hash,
        "files": stats.files,
        "new_files": stats.files - stats.present,
        "bytes": stats.bytes,
        "free": store.free_bytes()?,
    });
    if json {
        println!("{summary:#}");
    } else {
        println!(
            "{name}: {} files ({} new), {}, manifest {}",
            stats.files,
            stats.files - stats.present,
            human(stats.bytes),
            &hash[..12]
        );
    }
    Ok(())
}

/// Prints `value` as JSON or `table` as text.
fn print_either(json: bool, value: serde_json::Value, table: Table) -> Result<()> {
    if json {
        println!("{value:#}");
    } else {
        print!("{table}");
    }
    Ok(())
}

fn list(index: &Index, json: bool) -> Result<()> {
    let records: BTreeMap<&str, &bench_index::Record> = index.records().collect();
    let mut table = Table::new([
        ("name", Align::Left),
        ("files", Align::Right),
        ("size", Align::Right),
        ("manifest", Align::Left),
    ]);
    for (name, record) in index.records() {
        table.row([
            name.to_owned(),
            record.files.to_string(),
            human(record.bytes),
            record.hash[..12].to_owned(),
        ]);
    }
    print_either(json, serde_json::to_value(records)?, table)
}

/// The blobs of the named manifests (all recorded ones when none is named),
/// manifests included.
async fn blobs_of(index: &mut Index, keys: &[String]) -> Result<Vec<String>> {
    let keys: Vec<String> = if keys.is_empty() {
        index.records().map(|(name, _)| name.to_owned()).collect()
    } else {
        keys.to_vec()
    };
    let mut blobs = BTreeSet::new();
    for key in &keys {
        blobs.insert(index.resolve(key)?);
        blobs.extend(bench_sync::blobs_of(&*index.load(key).await?));
    }
    Ok(blobs.into_iter().collect())
}

async fn sync(store: &Store, to: &Path, keys: &[String], config: &Config) -> Result<()> {
    let mut index = Index::open(store.clone(), CACHE_SIZE)?;
    let blobs = blobs_of(&mut index, keys).await?;
    let dst = Store::new(to, config.store.level);
    let options = bench_sync::Options {
        concurrency: config.sync.concurrency,
        verify: config.sync.verify,
        retries: config.sync.retries,
        retry_delay: std::time::Duration::from_millis(config.sync.retry_delay),
    };
    let report = bench_sync::copy_blobs(store, &dst, blobs, &options, |event| {
        if let bench_sync::Event::Failed { hash, error } = event {
            eprintln!("{hash}: {error}");
        }
    })
    .await;
    println!(
        "{} copied ({}), {} present, {} retries",
        report.copied,
        human(report.bytes),
        report.present,
        report.retries
    );
    if !report.is_complete() {
        let message = format!("{} blobs not copied", report.failed.len());
        return Err(Failure(Code::SyncIncomplete, message).into());
    }
    // The destination's index names what was copied, so it can restore them.
    let mut dst_index = Index::open(dst, CACHE_SIZE)?;
    let wanted = |hash: &str| {
        keys.iter()
            .any(|k| index.resolve(k).is_ok_and(|h| h == hash))
    };
    let names: Vec<String> = index
        .records()
        .filter(|(_, record)| keys.is_empty() || wanted(&record.hash))
        .map(|(name, _)| name.to_owned())
        .collect();
    for name in names {
        let manifest = index.load(&name).await?;
        dst_index.record(&name, &manifest).await?;
    }
    Ok(())
}

async fn verify(store: &Store, keys: &[String], config: &Config) -> Result<()> {
    let mut index = Index::open(store.clone(), CACHE_SIZE)?;
    let blobs = blobs_of(&mut index, keys).await?;
    let check = bench_sync::verify_blobs(store, blobs, config.sync.concurrency).await;
    for hash in &check.missing {
        eprintln!("missing: {hash}");
    }
    for hash in &check.corrupt {
        eprintln!("corrupt: {hash}");
    }
    for (hash, error) in &check.unreadable {
        eprintln!("unreadable: {hash}: {error}");
    }
    println!("{} blobs whole", check.ok);
    if check.is_ok() {
        Ok(())
    } else {
        let bad = check.missing.len() + check.corrupt.len() + check.unreadable.len();
        Err(Failure(Code::VerifyFailed, format!("{bad} blobs are not whole")).into())
    }
}

async fn gc(store: &Store, dry_run: bool) -> Result<()> {
    let mut index = Index::open(store.clone(), CACHE_SIZE)?;
    let live = index.live_blobs().await?;
    if dry_run {
        let dead = store
            .list()
            .await?
            .into_iter()
            .filter(|h| !live.contains(h))
            .count();
        println!("{dead} blobs would be removed, {} kept", live.len());
        return Ok(());
    }
    let stats = store.gc(&live).await?;
    println!(
        "{} blobs removed ({}), {} kept",
        stats.removed,
        human(stats.freed_bytes),
        stats.kept
    );
    Ok(())
}

fn show_config(resolved: &Resolved, json: bool) -> Result<()> {
    let mut table = Table::new([
        ("setting", Align::Left),
        ("value", Align::Left),
        ("from", Align::Left),
    ]);
    for (name, value) in resolved.config.describe() {
        table.row([name.to_owned(), value, resolved.origin(name).to_string()]);
    }
    print_either(json, serde_json::to_value(&resolved.config)?, table)
}

fn codes(json: bool) -> Result<()> {
    let mut table = Table::new([
        ("code", Align::Left),
        ("exit", Align::Right),
        ("name", Align::Left),
        ("meaning", Align::Left),
    ]);
    for code in Code::all() {
        table.row([
            code.code().to_owned(),
            code.exit_status().to_string(),
            code.name().to_owned(),
            code.message().to_owned(),
        ]);
    }
    let value = Code::all()
        .map(|c| {
            serde_json::json!({
                "code": c.code(),
                "exit": c.exit_status(),
                "name": c.name(),
                "message": c.message(),
            })
        })
        .collect();
    print_either(json, value, table)
}
