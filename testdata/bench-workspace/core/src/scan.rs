//! The manifest of a directory tree on disk.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::{Entry, Error, Filter, Manifest, digest};

/// Hashes every regular file under `root` that `filter` accepts. Symbolic links are
/// not followed; directories the filter excludes whole are not read.
pub fn scan_dir(root: &Path, filter: &Filter) -> Result<Manifest, Error> {
    let mut manifest = Manifest::default();
    walk(root, "", filter, &mut manifest)?;
    Ok(manifest)
}

fn walk(dir: &Path, rel: &str, filter: &Filter, out: &mut Manifest) -> Result<(), Error> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    let mut children = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io(dir))?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let path = child.path();
        let Some(name) = child.file_name().to_str().map(str::to_owned) else {
            // A manifest's paths are UTF-8; others cannot be named in one.
            continue;
        };
        let rel_path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            if !filter.prunes_dir(&rel_path) {
                walk(&path, &rel_path, filter, out)?;
            }
        } else if meta.is_file() && filter.accepts(&rel_path) {
            let data = std::fs::read(&path).map_err(io(&path))?;
            let entry = Entry {
                size: data.len() as u64,
                sha256: digest(&data),
                executable: meta.permissions().mode() & 0o111 != 0,
            };
            out.insert(&rel_path, entry);
        }
    }
    Ok(())
}
