//! `cargo xtask layout` finds the import cycles between files and between top-level
//! modules of a crate, and only those: on small crates written for each case, then on
//! this workspace.

use std::path::Path;

use xtask::layout::{Finding, Level, check};
use xtask::stack::bins::workspace_root;

/// A workspace of one crate named `name` whose `src/` holds `files`; its findings.
fn findings(name: &str, files: &[(&str, &str)]) -> Vec<Finding> {
    let root = tempfile::tempdir().expect("temp dir");
    let write = |rel: &Path, text: &str| {
        let path = root.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
    };
    write(
        Path::new("Cargo.toml"),
        &format!("[workspace]\nmembers = [\"{name}\"]\n"),
    );
    write(
        &Path::new(name).join("Cargo.toml"),
        &format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\n"),
    );
    for (rel, text) in files {
        write(&Path::new(name).join("src").join(rel), text);
    }
    check(root.path()).expect("check")
}

fn lines(findings: &[Finding]) -> Vec<String> {
    findings.iter().map(|f| f.to_string()).collect()
}

#[test]
fn a_cycle_through_a_re_export_is_found_in_the_defining_files() {
    let found = findings(
        "two",
        &[
            ("lib.rs", "pub mod archive;\n"),
            (
                "archive/mod.rs",
                "pub mod entries;\npub mod unpack;\npub use unpack::UnpackError;\n",
            ),
            (
                "archive/entries.rs",
                "use super::UnpackError;\n\
                 pub struct Entry;\n\
                 pub fn read() -> Result<Entry, UnpackError> { Ok(Entry) }\n",
            ),
            (
                "archive/unpack.rs",
                "use super::entries::Entry;\n\
                 pub struct UnpackError;\n\
                 pub fn unpack(_: Entry) {}\n",
            ),
        ],
    );
    assert_eq!(
        lines(&found),
        [
            "two: cycle archive/entries.rs -> archive/unpack.rs (UnpackError) -> archive/entries.rs (Entry)"
        ]
    );
    assert_eq!(found[0].level, Level::File);
    assert_eq!(
        found[0].members,
        ["archive/entries.rs", "archive/unpack.rs"]
    );
}

#[test]
fn a_chain_of_three_files_is_one_cycle_and_one_module_cycle() {
    let found = findings(
        "three",
        &[
            ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
            (
                "a.rs",
                "use crate::b::B;\npub fn f() -> u8 { 1 }\npub fn g(_: B) {}\n",
            ),
            // A module imported, then an item named through it.
            (
                "b.rs",
                "use crate::c;\npub struct B;\npub fn h() { c::C::new(); }\n",
            ),
            // A path inside a macro's arguments.
            (
                "c.rs",
                "pub struct C;\n\
                 impl C { pub fn new() -> C { println!(\"{}\", crate::a::f()); C } }\n",
            ),
        ],
    );
    assert_eq!(
        lines(&found),
        [
            "three: cycle a.rs -> b.rs (B) -> c.rs (C) -> a.rs (f)",
            "three: module cycle a -> b (B: a.rs -> b.rs) -> c (C: b.rs -> c.rs) -> a (f: c.rs -> a.rs)",
        ]
    );
    assert_eq!(found[0].members, ["a.rs", "b.rs", "c.rs"]);
    assert_eq!(found[1].level, Level::Module);
    assert_eq!(found[1].members, ["a", "b", "c"]);
}

#[test]
fn a_child_using_its_parent_that_uses_it_is_a_cycle() {
    let found = findings(
        "parent",
        &[
            ("lib.rs", "pub mod store;\n"),
            // The child's file is named by `#[path]`.
            (
                "store/mod.rs",
                "#[path = \"disk_impl.rs\"]\nmod disk;\npub struct Store { pub disk: disk::Disk }\n",
            ),
            // A glob: counts through the names the file uses.
            (
                "store/disk_impl.rs",
                "use super::*;\n\
                 pub struct Disk;\n\
                 impl Disk { pub fn owner(&self) -> Option<&Store> { None } }\n",
            ),
        ],
    );
    assert_eq!(
        lines(&found),
        ["parent: cycle store/disk_impl.rs -> store/mod.rs (Store) -> store/disk_impl.rs (Disk)"]
    );
}

#[test]
fn a_module_reaching_up_to_its_caller_is_a_module_cycle() {
    let found = findings(
        "four",
        &[
            ("lib.rs", "pub mod api;\npub mod transfer;\n"),
            ("api/mod.rs", "mod client;\npub struct Token;\n"),
            (
                "api/client.rs",
                "pub fn send(_: &crate::transfer::Upload) {}\n",
            ),
            (
                "transfer.rs",
                "use crate::api::Token;\npub struct Upload { pub token: Token }\n",
            ),
        ],
    );
    assert_eq!(
        lines(&found),
        [
            "four: module cycle api -> transfer (Upload: api/client.rs -> transfer.rs) -> api (Token: transfer.rs -> api/mod.rs)"
        ]
    );
}

#[test]
fn an_acyclic_tree_reports_nothing() {
    let found = findings(
        "acyclic",
        &[
            (
                "lib.rs",
                "pub mod archive;\npub mod util;\npub mod report;\n\
                 pub use archive::Entry;\n\
                 pub const NAME: &str = \"acyclic\";\n",
            ),
            // The binary uses the library by its crate name.
            (
                "main.rs",
                "use acyclic::archive::entries;\n\
                 fn main() { let _ = entries::read(); acyclic::report::report(); }\n",
            ),
            // Re-exports of children and an item of its own used by a child: no cycle.
            (
                "archive/mod.rs",
                "pub mod entries;\npub mod unpack;\n\
                 pub use entries::Entry;\npub use unpack::UnpackError;\n\
                 pub(crate) const LIMIT: usize = 8;\n",
            ),
            // A sibling's item through the parent's re-export.
            (
                "archive/entries.rs",
                "use super::UnpackError;\n\
                 pub struct Entry;\n\
                 pub fn read() -> Result<Entry, UnpackError> { Err(UnpackError) }\n",
            ),
            (
                "archive/unpack.rs",
                "use crate::util::fmt::pretty;\n\
                 pub struct UnpackError;\n\
                 pub fn limit() -> usize { pretty(super::LIMIT) }\n\
                 #[cfg(test)]\nfn test_only(_: super::Entry) {}\n\
                 #[cfg(test)]\nmod tests;\n",
            ),
            // Only a test module: left out, though it uses anything.
            (
                "archive/unpack/tests.rs",
                "use crate::archive::*;\nfn t(_: Entry) { crate::report::report(); }\n",
            ),
            (
                "util/mod.rs",
                "pub mod fmt;\npub fn unrelated() {}\n\
                 pub fn both() -> usize { fmt::pretty(1) }\n",
            ),
            // A glob of the parent, naming none of its items.
            (
                "util/fmt.rs",
                "use super::*;\npub fn pretty(n: usize) -> usize { n }\n\
                 fn _twice(s: &str) -> String { format!(\"{s}{s}\") }\n",
            ),
            // `report` is both a module (here) and a function in it; a local named like
            // a module; a test item using the archive.
            (
                "report.rs",
                "pub fn report() { let archive = 1; let _ = archive + crate::util::both(); }\n\
                 #[cfg(test)]\nmod tests { use crate::archive::Entry; fn t(_: Entry) {} }\n",
            ),
        ],
    );
    assert_eq!(lines(&found), Vec::<String>::new());
}

/// No file of a crate uses an item of a file that uses one of its own, and no top-level
/// module uses one that uses it back (a module never reaches up to its caller).
#[test]
fn this_workspace_has_no_import_cycle() {
    let found = check(&workspace_root()).expect("check the workspace");
    assert!(
        found.is_empty(),
        "import cycles:\n{}",
        lines(&found).join("\n")
    );
}
