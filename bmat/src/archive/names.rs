//! How an archive names its entries: the one place that writes and reads the
//! `.bmat-root/…` names.
//!
//! An entry of the main tree is named by its path in it. An entry of another tree
//! (the user's home, Cargo's home) is named by what the tree is, not where it is:
//! `.bmat-root/home/…` and `.bmat-root/cargo-home/…`, which each restoring job puts
//! under its own `$HOME` or `$CARGO_HOME`, whatever their paths. The name `.bmat-root`
//! is reserved: a main tree's own directory of that name is never archived, and a
//! restore never writes one into it.

use std::ffi::OsStr;
use std::path::{Component, Path};

use crate::trees::paths::RelPath;
use crate::trees::roots::{Extra, Roots, Tree, TreePath};

/// The top directory of extra trees' entries in an archive.
const EXTRA_DIR: &str = ".bmat-root";

/// An archive entry that names no tree of this restore.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("the name {EXTRA_DIR} is reserved for bmat")]
    Reserved,
    #[error("it belongs to {0}, which is not set here")]
    Unset(&'static str),
    #[error("{EXTRA_DIR}/{0} is no tree bmat knows")]
    Unknown(String),
    /// The entry is a tree's root itself: restoring it would set the mode and mtime
    /// of `$HOME` or `$CARGO_HOME`.
    #[error("it names {0} itself, not a path inside it")]
    TreeRoot(&'static str),
}

/// The name of an extra tree's directory under `.bmat-root`.
fn dir_name(extra: Extra) -> &'static str {
    match extra {
        Extra::Home => "home",
        Extra::CargoHome => "cargo-home",
    }
}

fn extra_named(name: &OsStr) -> Option<Extra> {
    Extra::ALL
        .into_iter()
        .find(|e| OsStr::new(dir_name(*e)) == name)
}

/// The archive name of `entry`.
pub fn name_of(entry: &TreePath) -> RelPath {
    match entry.tree {
        Tree::Main => entry.path.clone(),
        Tree::Extra(e) => RelPath::from_normal(
            Path::new(EXTRA_DIR)
                .join(dir_name(e))
                .join(entry.path.as_path()),
        ),
    }
}

/// Which tree of `roots` an archive name belongs to, and the path inside it. A name
/// inside `.bmat-root` that stops short of a path inside a tree (`.bmat-root`,
/// `.bmat-root/home`) is refused, and so is one of a tree this job does not have.
pub fn parse(roots: &Roots, name: &RelPath) -> Result<TreePath, TreeError> {
    let mut components = name.as_path().components();
    match components.next() {
        Some(Component::Normal(first)) if first == EXTRA_DIR => {}
        _ => return Ok(TreePath::main(name.clone())),
    }
    let Some(Component::Normal(which)) = components.next() else {
        return Err(TreeError::Reserved);
    };
    let extra = extra_named(which)
        .ok_or_else(|| TreeError::Unknown(which.to_string_lossy().into_owned()))?;
    if components.as_path().as_os_str().is_empty() {
        return Err(TreeError::TreeRoot(extra.shown()));
    }
    if roots.dir(Tree::Extra(extra)).is_none() {
        return Err(TreeError::Unset(extra.shown()));
    }
    Ok(TreePath {
        tree: Tree::Extra(extra),
        path: RelPath::from_normal(components.as_path().to_owned()),
    })
}

/// Whether a top-level name of a tree is reserved (never archived, never restored).
pub fn is_reserved_top(name: &OsStr) -> bool {
    name == EXTRA_DIR
}

/// Whether `path`, in a main tree, starts with the reserved name.
pub fn starts_reserved(path: &RelPath) -> bool {
    path.as_path()
        .components()
        .next()
        .is_some_and(|c| is_reserved_top(c.as_os_str()))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn rel(s: &str) -> RelPath {
        RelPath::from_normal(PathBuf::from(s))
    }

    fn roots() -> Roots {
        Roots::resolve(
            Path::new("/work/ws"),
            Some("/home/ci".into()),
            Some("/opt/cargo".into()),
        )
    }

    /// Where archive name `name` is on disk.
    fn locate(roots: &Roots, name: &RelPath) -> Result<PathBuf, TreeError> {
        let entry = parse(roots, name)?;
        let dir = roots.dir(entry.tree).ok_or(TreeError::Unset("the tree"))?;
        Ok(dir.join(entry.path.as_path()))
    }

    #[test]
    fn names_of_extra_trees_say_what_they_are_not_where() {
        let roots = roots();
        let name = name_of(&TreePath {
            tree: Tree::Extra(Extra::Home),
            path: rel(".cargo/bin"),
        });
        assert_eq!(name.to_string(), ".bmat-root/home/.cargo/bin");
        assert_eq!(
            locate(&roots, &name),
            Ok(PathBuf::from("/home/ci/.cargo/bin"))
        );
        assert_eq!(
            locate(&roots, &rel(".bmat-root/cargo-home/registry")),
            Ok(PathBuf::from("/opt/cargo/registry"))
        );
        assert_eq!(
            locate(&roots, &rel("target/debug")),
            Ok(PathBuf::from("/work/ws/target/debug"))
        );
    }

    #[test]
    fn a_name_of_a_tree_this_job_lacks_is_refused() {
        let none = Roots::resolve(Path::new("/w"), None, None);
        assert_eq!(
            parse(&none, &rel(".bmat-root/home/x")),
            Err(TreeError::Unset("$HOME"))
        );
    }

    #[test]
    fn the_reserved_directory_and_unknown_trees_are_refused() {
        assert_eq!(
            parse(&roots(), &rel(".bmat-root")),
            Err(TreeError::Reserved)
        );
        assert_eq!(
            parse(&roots(), &rel(".bmat-root/etc/passwd")),
            Err(TreeError::Unknown("etc".into()))
        );
    }

    #[test]
    fn a_tree_root_itself_is_refused_set_or_not() {
        let none = Roots::resolve(Path::new("/w"), None, None);
        for roots in [roots(), none] {
            assert_eq!(
                parse(&roots, &rel(".bmat-root/home")),
                Err(TreeError::TreeRoot("$HOME"))
            );
            assert!(matches!(
                parse(&roots, &rel(".bmat-root/cargo-home")),
                Err(TreeError::TreeRoot(_))
            ));
        }
    }
}
