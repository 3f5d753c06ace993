//! A restore's placement and its undo: moves the verified staging trees into place,
//! one per tree the archive writes to ([`TreeStagings`]), and puts everything back
//! when a move fails.
//!
//! [`check_targets`] runs first and touches nothing: it refuses an entry whose
//! parent, already on disk, is a symlink (writing there would go wherever the link
//! points), and a file or symlink that would replace a non-empty directory. Only then
//! [`place`] renames entries over what is there: a whole directory in one rename
//! when the destination has none, otherwise merged entry by entry, replacing files,
//! symlinks, empty directories and mismatched types. Renames stay inside one
//! filesystem because the staging directory lives in the destination tree.
//!
//! Placement is undoable: every entry it replaces is first moved aside (into the
//! staging directory, so the same filesystem: a rename), and every move is journalled.
//! When a move fails half way (EPERM on an immutable file, a mount point in the tree,
//! a full disk for a directory entry), the journal is played back: placed entries go
//! back to staging, replaced ones come back, and the modes and mtimes of the
//! directories merged into are reset, so the tree is as it was.
//!
//! Across trees, the extra trees (home, Cargo's home) are placed first and the main
//! one last; a failure in one puts back the trees placed before it. A tree that
//! cannot be put back is named in the error, never passed over.
//!
//! Crash window: a process killed in the middle of [`place`] leaves the entries moved
//! so far in place (each complete and verified) and the replaced ones under the
//! staging directory, which the next restore removes.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::UnpackError;
use super::names::{self, TreeError};
use super::staging::Staging;
use super::unpack::{Stage, Unpacked};
use crate::trees::paths::RelPath;
use crate::trees::roots::{Roots, Tree, TreePath};
use crate::trees::times::Mtime;

/// Refuses when any entry would be written below a symlink that exists in the
/// destination tree, or when a file or symlink would replace a non-empty directory
/// there (a restore never deletes what the user has in a directory). Looks, changes
/// nothing.
pub fn check_targets(root: &Path, unpacked: &Unpacked) -> Result<(), UnpackError> {
    let dirs: HashSet<&RelPath> = unpacked.dirs.iter().map(|(p, _, _)| p).collect();
    // Whether each ancestor looked at is a directory on disk. Below one that is not,
    // nothing exists: a restore into a fresh tree costs one `lstat` per directory.
    let mut is_dir: HashMap<&Path, bool> = HashMap::new();
    for rel in &unpacked.paths {
        let mut parent_on_disk = true;
        for ancestor in rel.ancestors() {
            let here = match is_dir.get(ancestor) {
                Some(here) => *here,
                None => {
                    let here = ancestor_is_dir(root, rel, ancestor)?;
                    is_dir.insert(ancestor, here);
                    here
                }
            };
            if !here {
                parent_on_disk = false;
                break;
            }
        }
        if parent_on_disk && !dirs.contains(rel) && is_non_empty_dir(&root.join(rel.as_path()))? {
            return Err(UnpackError::Blocked {
                path: rel.to_string(),
                reason: "it would replace a non-empty directory on disk".into(),
            });
        }
    }
    Ok(())
}

/// Whether `ancestor` of `rel` is a directory on disk; a symlink is refused.
fn ancestor_is_dir(root: &Path, rel: &RelPath, ancestor: &Path) -> Result<bool, UnpackError> {
    match fs::symlink_metadata(root.join(ancestor)) {
        Ok(meta) if meta.file_type().is_symlink() => Err(UnpackError::Blocked {
            path: rel.to_string(),
            reason: format!(
                "it would be written through the symlink {} on disk",
                ancestor.display()
            ),
        }),
        Ok(meta) => Ok(meta.is_dir()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(UnpackError::Io(e)),
    }
}

fn is_non_empty_dir(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(fs::read_dir(path)?.next().is_some()),
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// A placement done, which can still be taken back (while the staging directory
/// lives): a restore spanning several trees undoes the trees placed before one that
/// failed.
pub struct Placed(Journal);

impl Placed {
    pub fn undo(self) -> io::Result<()> {
        self.0.undo()
    }
}

/// Moves everything under `staging` to the same place under `root`, then sets the
/// directories' modes and mtimes (deepest first, since placing a child changes its
/// parent's mtime). On failure, puts the tree back as it was (see the module doc).
pub fn place(staging: &Path, root: &Path, dirs: &[(RelPath, u32, Mtime)]) -> io::Result<Placed> {
    let aside = staging
        .parent()
        .map(|base| base.join("aside"))
        .ok_or_else(|| io::Error::other("the staging directory has no parent"))?;
    let mut journal = Journal {
        aside,
        aside_made: false,
        moves: Vec::new(),
        dirs: Vec::new(),
    };
    let placed = merge(staging, root, &mut journal).and_then(|()| set_dir_attrs(root, dirs));
    if let Err(e) = placed {
        return Err(match journal.undo() {
            Ok(()) => e,
            Err(undo) => io::Error::new(
                e.kind(),
                format!("{e}; putting the tree back failed too: {undo}"),
            ),
        });
    }
    Ok(Placed(journal))
}

/// The staging directory of each tree an archive writes to, made on its first entry
/// (with the tree's directory, which a fresh runner's `$CARGO_HOME` may lack).
pub struct TreeStagings<'a> {
    roots: &'a Roots,
    made: Vec<(Tree, Staging)>,
}

impl<'a> TreeStagings<'a> {
    /// The stagings of a restore into `roots`. The main tree's staging directory is
    /// made at once, whatever the archive holds: the litter of dead restores there goes.
    pub fn create(roots: &'a Roots) -> io::Result<TreeStagings<'a>> {
        let mut stagings = TreeStagings {
            roots,
            made: Vec::new(),
        };
        stagings.staging(Tree::Main)?;
        Ok(stagings)
    }

    fn staging(&mut self, tree: Tree) -> io::Result<&mut Staging> {
        if let Some(i) = self.made.iter().position(|(t, _)| *t == tree) {
            return Ok(&mut self.made[i].1);
        }
        let dir = self.tree_dir(tree)?;
        fs::create_dir_all(dir)?;
        let staging = Staging::create(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("creating a staging directory: {e}")))?;
        self.made.push((tree, staging));
        Ok(&mut self.made.last_mut().expect("just pushed").1)
    }

    fn tree_dir(&self, tree: Tree) -> io::Result<&'a Path> {
        self.roots
            .dir(tree)
            .ok_or_else(|| io::Error::other("the tree is not set"))
    }

    /// Checks every tree's targets, then places the trees, extra ones first. A
    /// failure puts back the trees already placed; one that cannot be put back is
    /// named in the error. The staging directories go either way.
    pub fn place(mut self, unpacked: &Unpacked) -> Result<(), UnpackError> {
        let trees = by_tree(unpacked, self.roots)?;
        for (tree, part) in &trees {
            check_targets(self.tree_dir(*tree)?, part)?;
        }
        let mut placed: Vec<(Tree, Placed)> = Vec::new();
        for (tree, part) in &trees {
            let root = self.tree_dir(*tree)?;
            let staging = self.staging(*tree)?;
            match place(staging.path(), root, &part.dirs) {
                Ok(done) => placed.push((*tree, done)),
                Err(e) => {
                    let mut message = format!("moving the files into place: {e}");
                    for (tree, done) in placed.into_iter().rev() {
                        if let Err(undo) = done.undo() {
                            message.push_str(&format!(
                                "; putting {} back failed too: {undo}",
                                shown(tree)
                            ));
                        }
                    }
                    return Err(UnpackError::Io(io::Error::new(e.kind(), message)));
                }
            }
        }
        for (_, staging) in &mut self.made {
            staging.set_placed();
        }
        Ok(())
    }
}

impl Stage for &mut TreeStagings<'_> {
    fn locate(&mut self, name: &RelPath) -> Result<(PathBuf, RelPath), UnpackError> {
        let entry = parse(self.roots, name)?;
        let staging = self.staging(entry.tree)?;
        Ok((staging.path().to_owned(), entry.path))
    }
}

/// How messages name a tree.
fn shown(tree: Tree) -> &'static str {
    match tree {
        Tree::Main => "the working tree",
        Tree::Extra(e) => e.shown(),
    }
}

/// What was unpacked, split by tree (paths inside each), extra trees first.
fn by_tree(unpacked: &Unpacked, roots: &Roots) -> Result<Vec<(Tree, Unpacked)>, UnpackError> {
    let mut trees: Vec<(Tree, Unpacked)> = Vec::new();
    for name in &unpacked.paths {
        let entry = parse(roots, name)?;
        part_of(&mut trees, entry.tree).paths.push(entry.path);
    }
    for (name, mode, mtime) in &unpacked.dirs {
        let entry = parse(roots, name)?;
        part_of(&mut trees, entry.tree)
            .dirs
            .push((entry.path, *mode, *mtime));
    }
    trees.sort_by_key(|(tree, _)| *tree == Tree::Main);
    Ok(trees)
}

fn part_of(trees: &mut Vec<(Tree, Unpacked)>, tree: Tree) -> &mut Unpacked {
    let i = match trees.iter().position(|(t, _)| *t == tree) {
        Some(i) => i,
        None => {
            trees.push((tree, Unpacked::default()));
            trees.len() - 1
        }
    };
    &mut trees[i].1
}

/// The tree of archive name `name` and its path there. A name no archive may hold is a
/// refused entry; one of a tree this job lacks (no `$HOME`) is blocked by the job.
fn parse(roots: &Roots, name: &RelPath) -> Result<TreePath, UnpackError> {
    names::parse(roots, name).map_err(|e| {
        let (path, reason) = (name.to_string(), e.to_string());
        match e {
            TreeError::Unset(_) => UnpackError::Blocked { path, reason },
            TreeError::Reserved | TreeError::Unknown(_) | TreeError::TreeRoot(_) => {
                UnpackError::Refused { path, reason }
            }
        }
    })
}

fn set_dir_attrs(root: &Path, dirs: &[(RelPath, u32, Mtime)]) -> io::Result<()> {
    let mut dirs: Vec<&(RelPath, u32, Mtime)> = dirs.iter().collect();
    dirs.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.depth()));
    for (rel, mode, mtime) in dirs {
        let dest = root.join(rel.as_path());
        fs::set_permissions(&dest, fs::Permissions::from_mode(*mode))?;
        mtime.apply(&dest)?;
    }
    Ok(())
}

/// One rename of placement, and how to take it back.
enum Move {
    /// `src` went to `dest`, where nothing was.
    New { src: PathBuf, dest: PathBuf },
    /// What was at `dest` went to `saved`, then `src` to `dest`.
    Replaced {
        src: PathBuf,
        dest: PathBuf,
        saved: PathBuf,
    },
}

/// What placement changed, in order.
struct Journal {
    /// Where replaced entries wait (created on first use).
    aside: PathBuf,
    aside_made: bool,
    moves: Vec<Move>,
    /// Directories that existed and were merged into, with their mode and mtime then.
    dirs: Vec<(PathBuf, fs::Permissions, Mtime)>,
}

impl Journal {
    /// Moves what is at `dest` aside; returns where it went.
    fn set_aside(&mut self, dest: &Path) -> io::Result<PathBuf> {
        if !self.aside_made {
            fs::create_dir_all(&self.aside)?;
            self.aside_made = true;
        }
        let saved = self.aside.join(self.moves.len().to_string());
        fs::rename(dest, &saved)?;
        Ok(saved)
    }

    /// Plays the moves back, newest first, then resets the directories. Goes on past
    /// a failure (putting back as much as it can) and reports the first.
    fn undo(self) -> io::Result<()> {
        let mut first = None;
        let mut note = |r: io::Result<()>| {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        };
        for m in self.moves.into_iter().rev() {
            match m {
                Move::New { src, dest } => note(fs::rename(&dest, &src)),
                Move::Replaced { src, dest, saved } => {
                    note(fs::rename(&dest, &src));
                    note(fs::rename(&saved, &dest));
                }
            }
        }
        for (dir, perms, mtime) in self.dirs.into_iter().rev() {
            note(fs::set_permissions(&dir, perms));
            note(mtime.apply(&dir));
        }
        first.map_or(Ok(()), Err)
    }
}

fn merge(from: &Path, to: &Path, journal: &mut Journal) -> io::Result<()> {
    for child in fs::read_dir(from)? {
        let child = child?;
        let src = child.path();
        let dest = to.join(child.file_name());
        let src_is_dir = child.file_type()?.is_dir();
        match fs::symlink_metadata(&dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::rename(&src, &dest)?;
                journal.moves.push(Move::New { src, dest });
            }
            Err(e) => return Err(e),
            Ok(meta) if meta.is_dir() && src_is_dir => {
                journal
                    .dirs
                    .push((dest.clone(), meta.permissions(), Mtime::of(&meta)));
                merge(&src, &dest, journal)?;
            }
            Ok(meta) => {
                // A file, a symlink or an empty directory (`check_targets` refused
                // non-empty ones) is replaced: moved aside first, so it can come back.
                if meta.is_dir() && fs::read_dir(&dest)?.next().is_some() {
                    return Err(io::Error::other(format!(
                        "{} is no longer an empty directory",
                        dest.display()
                    )));
                }
                let saved = journal.set_aside(&dest)?;
                if let Err(e) = fs::rename(&src, &dest) {
                    // Nothing of ours is there: put the original straight back.
                    let _ = fs::rename(&saved, &dest);
                    return Err(e);
                }
                journal.moves.push(Move::Replaced { src, dest, saved });
            }
        }
    }
    Ok(())
}
