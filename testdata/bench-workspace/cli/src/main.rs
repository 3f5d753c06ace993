//! `bench-store scan DIR` / `put DIR` / `get HASH`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bench_core::Manifest;
use bench_store::Store;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "A content-addressed store of compressed blobs")]
struct Cli {
    /// Where the blobs live.
    #[arg(long, default_value = ".store")]
    store: PathBuf,
    /// zstd level.
    #[arg(long, default_value_t = 3)]
    level: i32,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the manifest of DIR (files whose path matches --only).
    Scan {
        dir: PathBuf,
        #[arg(long, default_value = ".")]
        only: String,
    },
    /// Store every file of DIR.
    Put { dir: PathBuf },
    /// Write a blob to stdout.
    Get { hash: String },
}

fn scan(dir: &Path, prefix: &Path, manifest: &mut Manifest) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            scan(&path, prefix, manifest)?;
        } else {
            let rel = path.strip_prefix(prefix)?.to_string_lossy().into_owned();
            manifest.add(&rel, &std::fs::read(&path)?);
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let store = Store::new(&cli.store, cli.level);
    match cli.command {
        Cmd::Scan { dir, only } => {
            let mut manifest = Manifest::default();
            scan(&dir, &dir, &mut manifest)?;
            println!("{}", manifest.select(&only)?.to_json()?);
        }
        Cmd::Put { dir } => {
            let mut manifest = Manifest::default();
            scan(&dir, &dir, &mut manifest)?;
            let n = store.put_tree(&dir, &manifest).await?;
            let summary = serde_json::json!({
                "files": n,
                "bytes": manifest.total_size(),
                "free": store.free_bytes()?,
            });
            println!("{summary}");
        }
        Cmd::Get { hash } => {
            use std::io::Write;
            std::io::stdout().write_all(&store.get(&hash).await?)?;
        }
    }
    Ok(())
}
