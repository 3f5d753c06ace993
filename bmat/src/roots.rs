//! The trees one cache spans.
//!
//! A cache always has a main tree (the working directory, or a Rust workspace's build
//! directory): the archive names its entries relative to it. It may also hold entries
//! of trees that live elsewhere and differ from runner to runner: the user's home
//! (`~/…` in `bmat cache save`) and Cargo's home. Those are named by what they are, not
//! where they are: `.bmat-root/home/…` and `.bmat-root/cargo-home/…` in the archive,
//! and each restoring job puts them under its own `$HOME` or `$CARGO_HOME`, whatever
//! their paths. The name `.bmat-root` is reserved: a main tree's own directory of that
//! name is never archived, and a restore never writes one into it.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use crate::paths::RelPath;

/// The top directory of extra trees' entries in an archive.
pub const EXTRA_DIR: &str = ".bmat-root";

/// A tree other than the main one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Extra {
    /// `$HOME`.
    Home,
    /// `$CARGO_HOME`, by default `$HOME/.cargo`.
    CargoHome,
}

impl Extra {
    pub const ALL: [Extra; 2] = [Extra::Home, Extra::CargoHome];

    pub fn name(self) -> &'static str {
        match self {
            Extra::Home => "home",
            Extra::CargoHome => "cargo-home",
        }
    }

    /// How a user would write the tree: in messages.
    pub fn shown(self) -> &'static str {
        match self {
            Extra::Home => "$HOME",
            Extra::CargoHome => "$CARGO_HOME",
        }
    }

    fn from_name(name: &OsStr) -> Option<Extra> {
        Extra::ALL
            .into_iter()
            .find(|e| OsStr::new(e.name()) == name)
    }
}

/// Where an archive entry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tree {
    Main,
    Extra(Extra),
}

/// The trees of this job, resolved once from the environment.
#[derive(Debug, Clone)]
pub struct Roots {
    pub main: PathBuf,
    /// Each extra tree this job has (none when `$HOME` is unset).
    pub extra: Vec<(Extra, PathBuf)>,
}

/// An archive entry that names no tree of this restore.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("the name {EXTRA_DIR} is reserved for bmat")]
    Reserved,
    #[error("it belongs to {0}, which is not set here")]
    Unset(&'static str),
    #[error("{EXTRA_DIR}/{0} is no tree bmat knows")]
    Unknown(String),
}

impl Roots {
    /// A main tree alone (tests, tools).
    pub fn main_only(main: &Path) -> Roots {
        Roots {
            main: main.to_owned(),
            extra: Vec::new(),
        }
    }

    /// The main tree with `$HOME` and `$CARGO_HOME` as set (relative values are
    /// ignored, as Cargo ignores them; Cargo's home defaults to `$HOME/.cargo`).
    pub fn resolve(main: &Path, home: Option<PathBuf>, cargo_home: Option<PathBuf>) -> Roots {
        let home = home.filter(|p| p.is_absolute());
        let cargo_home = cargo_home
            .filter(|p| p.is_absolute())
            .or_else(|| home.as_ref().map(|h| h.join(".cargo")));
        let extra = [(Extra::Home, home), (Extra::CargoHome, cargo_home)]
            .into_iter()
            .filter_map(|(e, p)| Some((e, p?)))
            .collect();
        Roots {
            main: main.to_owned(),
            extra,
        }
    }

    pub fn dir(&self, tree: Tree) -> Option<&Path> {
        match tree {
            Tree::Main => Some(&self.main),
            Tree::Extra(e) => self
                .extra
                .iter()
                .find(|(x, _)| *x == e)
                .map(|(_, p)| p.as_path()),
        }
    }

    /// The archive name of `inner`, a path inside `tree`.
    pub fn name_in(tree: Tree, inner: &RelPath) -> RelPath {
        match tree {
            Tree::Main => inner.clone(),
            Tree::Extra(e) => {
                RelPath::from_normal(Path::new(EXTRA_DIR).join(e.name()).join(inner.as_path()))
            }
        }
    }

    /// Which tree an archive name belongs to, and the path inside it. A name inside
    /// `.bmat-root` that stops short of a tree (`.bmat-root` itself) is refused.
    pub fn split(&self, name: &RelPath) -> Result<(Tree, RelPath), TreeError> {
        let mut components = name.as_path().components();
        match components.next() {
            Some(Component::Normal(first)) if first == EXTRA_DIR => {}
            _ => return Ok((Tree::Main, name.clone())),
        }
        let Some(Component::Normal(which)) = components.next() else {
            return Err(TreeError::Reserved);
        };
        let extra = Extra::from_name(which)
            .ok_or_else(|| TreeError::Unknown(which.to_string_lossy().into_owned()))?;
        if self.dir(Tree::Extra(extra)).is_none() {
            return Err(TreeError::Unset(extra.shown()));
        }
        Ok((
            Tree::Extra(extra),
            RelPath::from_normal(components.as_path().to_owned()),
        ))
    }

    /// Where archive name `name` is on disk, with the tree's directory and the path
    /// inside it.
    pub fn locate(&self, name: &RelPath) -> Result<(&Path, RelPath), TreeError> {
        let (tree, inner) = self.split(name)?;
        let dir = self.dir(tree).ok_or(TreeError::Unset("the tree"))?;
        Ok((dir, inner))
    }
}

/// Whether a top-level name of a tree is reserved (never archived, never restored).
pub fn is_reserved_top(name: &OsStr) -> bool {
    name == EXTRA_DIR
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn names_of_extra_trees_say_what_they_are_not_where() {
        let roots = roots();
        let name = Roots::name_in(Tree::Extra(Extra::Home), &rel(".cargo/bin"));
        assert_eq!(name.to_string(), ".bmat-root/home/.cargo/bin");
        let (dir, inner) = roots.locate(&name).expect("locate");
        assert_eq!(dir.join(inner.as_path()), Path::new("/home/ci/.cargo/bin"));
        let (dir, inner) = roots
            .locate(&rel(".bmat-root/cargo-home/registry"))
            .expect("locate");
        assert_eq!(dir.join(inner.as_path()), Path::new("/opt/cargo/registry"));
        let (dir, inner) = roots.locate(&rel("target/debug")).expect("locate");
        assert_eq!(
            dir.join(inner.as_path()),
            Path::new("/work/ws/target/debug")
        );
    }

    #[test]
    fn cargo_home_defaults_under_home_and_relative_values_are_ignored() {
        let r = Roots::resolve(Path::new("/w"), Some("/home/ci".into()), Some("rel".into()));
        assert_eq!(
            r.dir(Tree::Extra(Extra::CargoHome)),
            Some(Path::new("/home/ci/.cargo"))
        );
        let none = Roots::resolve(Path::new("/w"), None, None);
        assert_eq!(
            none.split(&rel(".bmat-root/home/x")),
            Err(TreeError::Unset("$HOME"))
        );
    }

    #[test]
    fn the_reserved_directory_and_unknown_trees_are_refused() {
        assert_eq!(roots().split(&rel(".bmat-root")), Err(TreeError::Reserved));
        assert_eq!(
            roots().split(&rel(".bmat-root/etc/passwd")),
            Err(TreeError::Unknown("etc".into()))
        );
    }
}
