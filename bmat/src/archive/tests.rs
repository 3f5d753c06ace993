//! Archive round trips and refusals, on real temporary directories (no network).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use crate::archive::Unpacked;
use crate::archive::stream::{Bounds, Compression, Expected, RestoreError, pack, unpack_into_tree};
use crate::commands::save_list::parse_list;
use crate::progress::Progress;
use crate::trees::manifest::{Manifest, Options};
use crate::trees::paths::RelPath;
use crate::trees::roots::Roots;
use crate::trees::times::Mtime;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const C: Compression = Compression {
    level: 3,
    workers: 2,
};

fn progress() -> Progress {
    Progress::new("test", None)
}

fn set_mtime(path: &Path, secs: i64, nanos: u32) -> io::Result<()> {
    Mtime { secs, nanos }.apply(path)
}

/// A tree with every kind of entry the format must carry.
fn sample_tree(root: &Path) -> Result {
    fs::create_dir_all(root.join("a/b/c"))?;
    fs::create_dir_all(root.join("empty-dir"))?;
    fs::write(root.join("a/b/c/deep.txt"), b"deep")?;
    fs::write(root.join("a/empty"), b"")?;
    fs::write(root.join("a/run.sh"), b"#!/bin/sh\necho hi\n")?;
    fs::set_permissions(root.join("a/run.sh"), fs::Permissions::from_mode(0o755))?;
    fs::write(root.join("a/readonly"), b"ro")?;
    fs::set_permissions(root.join("a/readonly"), fs::Permissions::from_mode(0o444))?;
    let long = "n".repeat(120);
    fs::create_dir_all(root.join(format!("a/{long}/{long}")))?;
    fs::write(
        root.join(format!("a/{long}/{long}/file-with-a-long-path")),
        b"long",
    )?;
    symlink("b/c/deep.txt", root.join("a/rel-link"))?;
    symlink("does/not/exist", root.join("a/dangling"))?;
    symlink(format!("{long}/{long}/{long}"), root.join("a/long-link"))?;
    for (i, p) in [
        "a/b/c/deep.txt",
        "a/empty",
        "a/run.sh",
        "a/rel-link",
        "a/dangling",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(
            &root.join(p),
            1_600_000_000 + i as i64,
            123_456_789 + i as u32,
        )?;
    }
    set_mtime(&root.join("a/b/c"), 1_500_000_000, 999_999_999)?;
    Ok(())
}

fn pack_paths(root: &Path, list: &str) -> Result<(Vec<u8>, crate::archive::WriteReport)> {
    let paths = parse_list(list.as_bytes(), false)?;
    let (out, report) = pack(&Roots::main_only(root), &paths, Vec::new(), C, &progress())?;
    Ok((out, report))
}

fn restore_bytes(archive: &[u8], root: &Path) -> std::result::Result<(), RestoreError> {
    restore_into(archive, &Roots::main_only(root)).map(|_| ())
}

/// Restores `archive` (its size and hash as registered) into the trees of `roots`.
fn restore_into(archive: &[u8], roots: &Roots) -> std::result::Result<Unpacked, RestoreError> {
    let sha = hex::encode(Sha256::digest(archive));
    let expected = Expected::unbounded(archive.len() as u64, &sha);
    unpack_into_tree(archive, roots, &expected, &progress())
}

fn manifest(root: &Path) -> Result<Manifest> {
    Ok(Manifest::of(root, Options::default(), |_| false)?)
}

#[test]
fn a_tree_round_trips_with_modes_mtimes_and_symlinks() -> Result {
    let src = tempfile::tempdir()?;
    sample_tree(src.path())?;
    let before = manifest(src.path())?;
    let (archive, report) = pack_paths(src.path(), "a\nempty-dir\n")?;
    assert!(report.warnings().is_empty(), "{:?}", report.warnings());

    let dst = tempfile::tempdir()?;
    restore_bytes(&archive, dst.path())?;
    let after = manifest(dst.path())?;
    assert_eq!(before.diff(&after), Vec::<String>::new());
    assert!(before.entries.len() > 10);
    Ok(())
}

#[test]
fn gnu_tar_reads_our_archives_with_subsecond_mtimes() -> Result {
    // Skipped quietly where GNU tar or zstd is missing; the format claim is then
    // covered by the round trip alone.
    if std::process::Command::new("tar")
        .arg("--version")
        .output()
        .is_err()
    {
        return Ok(());
    }
    let src = tempfile::tempdir()?;
    sample_tree(src.path())?;
    let paths = parse_list(b"a\n", false)?;
    let mut tar_bytes = Vec::new();
    let mut w = crate::archive::ArchiveWriter::new(&mut tar_bytes, src.path());
    for p in &paths {
        w.add(p)?;
    }
    w.finish()?;
    let file = src.path().join("out.tar");
    fs::write(&file, &tar_bytes)?;
    let out = std::process::Command::new("tar")
        .args(["--full-time", "-tvf"])
        .arg(&file)
        .output()?;
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(listing.contains("a/b/c/deep.txt"), "{listing}");
    assert!(listing.contains("file-with-a-long-path"), "{listing}");
    assert!(
        listing.contains("a/dangling -> does/not/exist"),
        "{listing}"
    );
    Ok(())
}

#[test]
fn restore_merges_over_an_existing_tree() -> Result {
    let src = tempfile::tempdir()?;
    fs::create_dir_all(src.path().join("d/sub"))?;
    fs::write(src.path().join("d/new"), b"new")?;
    fs::write(src.path().join("d/sub/x"), b"x2")?;
    fs::write(src.path().join("d/was-dir"), b"now a file")?;
    let (archive, _) = pack_paths(src.path(), "d\n")?;

    let dst = tempfile::tempdir()?;
    fs::create_dir_all(dst.path().join("d/sub"))?;
    fs::write(dst.path().join("d/sub/x"), b"old")?;
    fs::write(dst.path().join("d/keep"), b"untouched")?;
    // An empty directory is replaced; a non-empty one never is (see below).
    fs::create_dir_all(dst.path().join("d/was-dir"))?;
    restore_bytes(&archive, dst.path())?;
    assert_eq!(fs::read(dst.path().join("d/sub/x"))?, b"x2");
    assert_eq!(fs::read(dst.path().join("d/new"))?, b"new");
    assert_eq!(fs::read(dst.path().join("d/keep"))?, b"untouched");
    assert_eq!(fs::read(dst.path().join("d/was-dir"))?, b"now a file");
    let leftovers: Vec<_> = fs::read_dir(dst.path())?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".bmat-restore-")
        })
        .collect();
    assert!(leftovers.is_empty(), "the staging directory is removed");
    Ok(())
}

#[test]
fn duplicates_and_overlaps_are_stored_once() -> Result {
    let src = tempfile::tempdir()?;
    fs::create_dir_all(src.path().join("d"))?;
    fs::write(src.path().join("d/f"), b"f")?;
    let (archive, report) = pack_paths(src.path(), "d/f\nd\n./d/f\nd/../d\n")?;
    assert_eq!(report.entries, 2, "d/ and d/f once each");
    let names = list_names(&archive)?;
    assert_eq!(names, ["d/f", "d/"]);
    Ok(())
}

#[test]
fn vanished_paths_and_symlinked_parents_are_reported_not_fatal() -> Result {
    let src = tempfile::tempdir()?;
    let outside = tempfile::tempdir()?;
    fs::write(outside.path().join("secret"), b"s")?;
    symlink(outside.path(), src.path().join("out"))?;
    fs::write(src.path().join("ok"), b"ok")?;
    let (archive, report) = pack_paths(src.path(), "gone\nout/secret\nok\nout\n")?;
    assert_eq!(report.vanished, ["gone"]);
    assert_eq!(
        report.through_symlink.len(),
        1,
        "{:?}",
        report.through_symlink
    );
    assert_eq!(
        list_names(&archive)?,
        ["ok", "out"],
        "the link itself is stored, not what it leads to"
    );
    Ok(())
}

fn list_names(archive: &[u8]) -> Result<Vec<String>> {
    let decoded = zstd::decode_all(archive)?;
    let mut tar = tar::Archive::new(&decoded[..]);
    let mut names = Vec::new();
    for e in tar.entries()? {
        names.push(String::from_utf8_lossy(&e?.path_bytes()).into_owned());
    }
    Ok(names)
}

/// Builds an archive entry by entry with raw header names (the tar crate's own
/// setters refuse `..` and absolute paths, which is what these tests need to send).
struct Crafted {
    builder: tar::Builder<Vec<u8>>,
}

impl Crafted {
    fn new() -> Self {
        Crafted {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn entry(
        mut self,
        name: &str,
        kind: EntryType,
        link: Option<&str>,
        data: &[u8],
    ) -> Result<Self> {
        let mut h = Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.builder.append(&h, data)?;
        Ok(self)
    }

    fn finish(self) -> Result<Vec<u8>> {
        let tar = self.builder.into_inner()?;
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3)?;
        enc.include_checksum(true)?;
        enc.write_all(&tar)?;
        Ok(enc.finish()?)
    }
}

fn assert_refused(archive: &[u8], what: &str) -> Result<tempfile::TempDir> {
    let dst = tempfile::tempdir()?;
    fs::create_dir_all(dst.path().join("tree"))?;
    fs::write(dst.path().join("tree/existing"), b"as before")?;
    let before = manifest(dst.path())?;
    let err = restore_bytes(archive, &dst.path().join("tree"));
    match err {
        Err(RestoreError::Refused(e)) => assert!(e.to_string().contains(what), "{e}"),
        other => panic!("expected a refusal mentioning {what:?}, got {other:?}"),
    }
    assert_eq!(
        before.diff(&manifest(dst.path())?),
        Vec::<String>::new(),
        "the tree is untouched"
    );
    Ok(dst)
}

#[test]
fn dotdot_entries_are_refused() -> Result {
    let archive = Crafted::new()
        .entry("fine", EntryType::Regular, None, b"x")?
        .entry("../escape", EntryType::Regular, None, b"evil")?
        .finish()?;
    let dst = assert_refused(&archive, "../escape")?;
    assert!(!dst.path().join("escape").exists());
    Ok(())
}

#[test]
fn absolute_entries_are_refused() -> Result {
    let target = tempfile::tempdir()?;
    let name = format!("{}/abs", target.path().display());
    let archive = Crafted::new()
        .entry(&name, EntryType::Regular, None, b"evil")?
        .finish()?;
    assert_refused(&archive, "absolute")?;
    assert!(!target.path().join("abs").exists());
    Ok(())
}

#[test]
fn writing_through_an_archived_symlink_is_refused() -> Result {
    let outside = tempfile::tempdir()?;
    let target = outside.path().display().to_string();
    let archive = Crafted::new()
        .entry("link", EntryType::Symlink, Some(&target), b"")?
        .entry("link/planted", EntryType::Regular, None, b"evil")?
        .finish()?;
    assert_refused(&archive, "through the symlink link")?;
    assert!(!outside.path().join("planted").exists());
    Ok(())
}

#[test]
fn writing_through_a_symlink_on_disk_is_refused() -> Result {
    let outside = tempfile::tempdir()?;
    let archive = Crafted::new()
        .entry("dir/planted", EntryType::Regular, None, b"evil")?
        .finish()?;
    let dst = tempfile::tempdir()?;
    symlink(outside.path(), dst.path().join("dir"))?;
    let err = restore_bytes(&archive, dst.path());
    assert!(
        matches!(&err, Err(RestoreError::Blocked(e)) if e.to_string().contains("on disk")),
        "{err:?}"
    );
    assert!(!outside.path().join("planted").exists());
    Ok(())
}

#[test]
fn hard_links_outside_the_archive_and_devices_are_refused() -> Result {
    for (target, why) in [
        ("/etc/passwd", "absolute"),
        ("../f", ".."),
        ("later", "not a file restored before it"),
        ("link", "not a file restored before it"),
        ("d", "not a file restored before it"),
    ] {
        let hard = Crafted::new()
            .entry("f", EntryType::Regular, None, b"x")?
            .entry("d", EntryType::Directory, None, b"")?
            .entry("link", EntryType::Symlink, Some("f"), b"")?
            .entry("h", EntryType::Link, Some(target), b"")?
            .entry("later", EntryType::Regular, None, b"y")?
            .finish()?;
        assert_refused(&hard, why)?;
    }
    let dev = Crafted::new()
        .entry("null", EntryType::Char, None, b"")?
        .finish()?;
    assert_refused(&dev, "device")?;
    Ok(())
}

#[test]
fn hard_links_are_stored_once_and_restored_as_links() -> Result {
    use std::os::unix::fs::MetadataExt;
    let src = tempfile::tempdir()?;
    let tree = src.path().join("tree");
    fs::create_dir_all(tree.join("deps"))?;
    fs::create_dir_all(tree.join("build"))?;
    let mut body = vec![0u8; 3_000_000];
    rand::Rng::fill(&mut rand::rng(), &mut body[..]);
    fs::write(tree.join("deps/tool-1234"), &body)?;
    fs::hard_link(tree.join("deps/tool-1234"), tree.join("build/tool"))?;
    fs::write(tree.join("deps/small"), b"small")?;
    fs::hard_link(tree.join("deps/small"), tree.join("small-link"))?;
    let (archive, _) = pack_paths(src.path(), "tree\n")?;
    assert!(
        archive.len() < body.len() + body.len() / 2,
        "the big file is stored once: {} bytes",
        archive.len()
    );
    let dst = tempfile::tempdir()?;
    restore_bytes(&archive, dst.path())?;
    let t = dst.path().join("tree");
    assert_eq!(fs::read(t.join("build/tool"))?, body);
    assert_eq!(fs::read(t.join("small-link"))?, b"small");
    let ino = |p: &str| fs::metadata(t.join(p)).map(|m| m.ino());
    assert_eq!(ino("deps/tool-1234")?, ino("build/tool")?);
    assert_eq!(ino("deps/small")?, ino("small-link")?);
    assert_eq!(
        manifest(src.path())?.diff(&manifest(dst.path())?),
        Vec::<String>::new()
    );
    Ok(())
}

#[test]
fn a_flipped_byte_or_a_short_archive_is_refused_and_leaves_nothing() -> Result {
    let src = tempfile::tempdir()?;
    sample_tree(src.path())?;
    let (archive, _) = pack_paths(src.path(), "a\n")?;
    let sha = hex::encode(Sha256::digest(&archive));

    for (what, bytes) in [
        ("flipped", {
            let mut b = archive.clone();
            let mid = b.len() / 2;
            b[mid] ^= 0x01;
            b
        }),
        ("truncated", archive[..archive.len() - 10].to_vec()),
    ] {
        let dst = tempfile::tempdir()?;
        fs::write(dst.path().join("existing"), b"as before")?;
        let before = manifest(dst.path())?;
        // The registry's size and hash are those of the good archive.
        let expected = Expected::unbounded(archive.len() as u64, &sha);
        let res = unpack_into_tree(
            &bytes[..],
            &Roots::main_only(dst.path()),
            &expected,
            &progress(),
        );
        assert!(res.is_err(), "{what}: accepted");
        assert_eq!(
            before.diff(&manifest(dst.path())?),
            Vec::<String>::new(),
            "{what}: tree changed"
        );
    }
    Ok(())
}

#[test]
fn entries_in_the_staging_namespace_are_refused() -> Result {
    let archive = Crafted::new()
        .entry(".bmat-restore-x/f", EntryType::Regular, None, b"x")?
        .finish()?;
    assert_refused(&archive, "reserved")?;
    Ok(())
}

#[test]
fn the_root_itself_can_be_listed() -> Result {
    let src = tempfile::tempdir()?;
    fs::write(src.path().join("top"), b"t")?;
    fs::create_dir(src.path().join("d"))?;
    let paths = vec![RelPath::from_input(b".")?];
    let (archive, _) = pack(
        &Roots::main_only(src.path()),
        &paths,
        Vec::new(),
        C,
        &progress(),
    )?;
    assert_eq!(list_names(&archive)?, ["d/", "top"]);
    Ok(())
}

#[test]
fn a_repeated_name_ends_as_its_last_entry_whatever_the_types() -> Result {
    // Small files go to the writer threads and big ones are written inline: the
    // last entry must win in every mix, as with tar.
    let big = vec![7u8; 2 << 20];
    let mut crafted = Crafted::new()
        .entry("a", EntryType::Regular, None, b"one")?
        .entry("a", EntryType::Regular, None, b"two")?
        .entry("d", EntryType::Directory, None, b"")?
        .entry("d/x", EntryType::Regular, None, b"inside")?
        .entry("d", EntryType::Regular, None, b"now a file")?
        .entry("f", EntryType::Regular, None, b"was a file")?
        .entry("f", EntryType::Directory, None, b"")?
        .entry("f/y", EntryType::Regular, None, b"y")?
        .entry("s", EntryType::Symlink, Some("a"), b"")?
        .entry("s", EntryType::Regular, None, b"not a link")?
        .entry("big", EntryType::Regular, None, &big)?
        .entry("big", EntryType::Regular, None, b"small")?
        .entry("small-then-big", EntryType::Regular, None, b"small")?
        .entry("small-then-big", EntryType::Regular, None, &big)?;
    for i in 0..300 {
        let body = format!("file {i}");
        crafted = crafted.entry(
            &format!("many/{i}"),
            EntryType::Regular,
            None,
            body.as_bytes(),
        )?;
    }
    let dst = tempfile::tempdir()?;
    restore_bytes(&crafted.finish()?, dst.path())?;
    let read = |p: &str| fs::read(dst.path().join(p));
    assert_eq!(read("a")?, b"two");
    assert_eq!(read("d")?, b"now a file");
    assert!(dst.path().join("f").is_dir());
    assert_eq!(read("f/y")?, b"y");
    assert!(!fs::symlink_metadata(dst.path().join("s"))?.is_symlink());
    assert_eq!(read("s")?, b"not a link");
    assert_eq!(read("big")?, b"small");
    assert!(read("small-then-big")? == big);
    for i in 0..300 {
        assert_eq!(read(&format!("many/{i}"))?, format!("file {i}").as_bytes());
    }
    Ok(())
}

/// A tar stream whose first entry is an extension header of type `kind` claiming
/// `claimed` bytes but carrying only `body` bytes before the stream ends.
fn lying_extension_header(kind: EntryType, claimed: u64, body: usize) -> Vec<u8> {
    let mut h = Header::new_ustar();
    h.as_old_mut().name[..4].copy_from_slice(b"huge");
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(claimed);
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.resize(tar.len() + body, b'a');
    tar
}

fn compress(tar: &[u8]) -> Result<Vec<u8>> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3)?;
    enc.include_checksum(true)?;
    enc.write_all(tar)?;
    Ok(enc.finish()?)
}

/// Counts the bytes read through it.
struct Counted<'a> {
    inner: &'a [u8],
    read: usize,
}

impl io::Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n;
        Ok(n)
    }
}

#[test]
fn an_oversized_extension_header_is_refused_before_it_is_read() -> Result {
    // The tar crate's own walk read such a header whole into memory: 1 GiB of zeros
    // compresses to 33 KB. Here the body is short; the claim is what counts.
    for kind in [
        EntryType::XHeader,
        EntryType::GNULongName,
        EntryType::GNULongLink,
    ] {
        let tar = lying_extension_header(kind, 1 << 30, 32 << 10);
        assert_refused(&compress(&tar)?, "extension header too large")?;

        // Not one byte of its body is read: the header alone decides.
        let staging = tempfile::tempdir()?;
        let mut counted = Counted {
            inner: &tar,
            read: 0,
        };
        let err = crate::archive::unpack(&mut counted, staging.path(), None);
        assert!(
            matches!(&err, Err(e) if e.to_string().contains("extension header too large")),
            "{kind:?}: {err:?}"
        );
        assert_eq!(counted.read, 512, "{kind:?}: only the header was read");
    }
    // Just past the limit with the whole body there: refused all the same.
    let limit = crate::archive::entries::MAX_EXTENSION;
    let tar = lying_extension_header(EntryType::XHeader, limit + 1, limit as usize + 1);
    assert_refused(&compress(&tar)?, "extension header too large")?;
    Ok(())
}

#[test]
fn gnu_long_names_and_link_targets_are_read() -> Result {
    let long = format!("{}/{}", "d".repeat(90), "f".repeat(90));
    let target = "t".repeat(150);
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o640);
    h.set_size(4);
    builder.append_data(&mut h, &long, &b"body"[..])?;
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    builder.append_link(&mut h, "link", &target)?;
    let tar = builder.into_inner()?;
    let kinds: Vec<u8> = tar::Archive::new(&tar[..])
        .entries()?
        .raw(true)
        .map(|e| e.map(|e| e.header().entry_type().as_byte()))
        .collect::<io::Result<_>>()?;
    assert_eq!(kinds, b"L0K2", "the archive uses GNU long names and links");

    let dst = tempfile::tempdir()?;
    restore_bytes(&compress(&tar)?, dst.path())?;
    assert_eq!(fs::read(dst.path().join(&long))?, b"body");
    assert_eq!(fs::read_link(dst.path().join("link"))?, Path::new(&target));
    Ok(())
}

#[test]
fn a_non_empty_directory_on_disk_is_never_replaced() -> Result {
    for (name, archive) in [
        (
            "file",
            Crafted::new()
                .entry("fresh", EntryType::Regular, None, b"new")?
                .entry("a/d", EntryType::Regular, None, b"a file")?
                .finish()?,
        ),
        (
            "symlink",
            Crafted::new()
                .entry("a/d", EntryType::Symlink, Some("elsewhere"), b"")?
                .finish()?,
        ),
        (
            "hard link",
            Crafted::new()
                .entry("f", EntryType::Regular, None, b"x")?
                .entry("a/d", EntryType::Link, Some("f"), b"")?
                .finish()?,
        ),
        (
            "a directory's contents replaced by a later file",
            Crafted::new()
                .entry("a/d", EntryType::Directory, None, b"")?
                .entry("a/d/inner/x", EntryType::Regular, None, b"x")?
                .entry("a/d", EntryType::Regular, None, b"a file")?
                .finish()?,
        ),
    ] {
        let dst = tempfile::tempdir()?;
        fs::create_dir_all(dst.path().join("a/d/inner"))?;
        fs::write(dst.path().join("a/d/inner/precious"), b"the user's")?;
        let before = manifest(dst.path())?;
        let err = restore_bytes(&archive, dst.path());
        assert!(
            matches!(&err, Err(RestoreError::Blocked(e))
                if e.to_string().contains("a/d: it would replace a non-empty directory")),
            "{name}: {err:?}"
        );
        assert_eq!(
            before.diff(&manifest(dst.path())?),
            Vec::<String>::new(),
            "{name}: the tree is untouched"
        );
    }
    // A directory of the archive merges into the one on disk, as always.
    let archive = Crafted::new()
        .entry("a/d/new", EntryType::Regular, None, b"new")?
        .finish()?;
    let dst = tempfile::tempdir()?;
    fs::create_dir_all(dst.path().join("a/d/inner"))?;
    fs::write(dst.path().join("a/d/inner/precious"), b"the user's")?;
    restore_bytes(&archive, dst.path())?;
    assert_eq!(
        fs::read(dst.path().join("a/d/inner/precious"))?,
        b"the user's"
    );
    assert_eq!(fs::read(dst.path().join("a/d/new"))?, b"new");
    Ok(())
}

#[test]
fn staging_directories_of_dead_restores_are_removed_and_live_ones_left() -> Result {
    let root = tempfile::tempdir()?;
    fs::write(root.path().join("mine"), b"the user's")?;
    // What a restore killed with SIGKILL leaves (its flock went with it).
    let dead = root.path().join(".bmat-restore-dead000000");
    fs::create_dir_all(dead.join("tree/half"))?;
    fs::write(dead.join("locked"), b"")?;
    fs::write(dead.join("tree/half/f"), b"partial")?;
    // One a restore is creating this very moment: not locked yet, not marked.
    let fresh = root.path().join(".bmat-restore-fresh00000");
    fs::create_dir(&fresh)?;
    // A symlink with a staging name is not followed.
    let outside = tempfile::tempdir()?;
    fs::write(outside.path().join("locked"), b"")?;
    fs::write(outside.path().join("keep"), b"k")?;
    symlink(outside.path(), root.path().join(".bmat-restore-link000000"))?;

    // A live restore, holding its lock.
    let live = crate::archive::Staging::create(root.path())?;
    fs::write(live.path().join("being-restored"), b"x")?;
    assert!(!dead.exists(), "the dead restore's directory is removed");

    // Another restore while the first one lives.
    let archive = Crafted::new()
        .entry("restored", EntryType::Regular, None, b"r")?
        .finish()?;
    restore_bytes(&archive, root.path())?;
    assert_eq!(fs::read(root.path().join("restored"))?, b"r");
    assert_eq!(
        fs::read(live.path().join("being-restored"))?,
        b"x",
        "the live restore's directory is left alone"
    );
    assert!(fresh.is_dir(), "an unmarked directory is left alone");
    assert_eq!(fs::read(outside.path().join("keep"))?, b"k");
    assert!(fs::symlink_metadata(root.path().join(".bmat-restore-link000000")).is_ok());
    assert_eq!(fs::read(root.path().join("mine"))?, b"the user's");
    drop(live);
    let mut left: Vec<String> = fs::read_dir(root.path())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".bmat-restore-"))
        .collect();
    left.sort();
    assert_eq!(
        left,
        [".bmat-restore-fresh00000", ".bmat-restore-link000000"]
    );
    Ok(())
}

#[test]
fn staging_directories_are_never_archived() -> Result {
    let src = tempfile::tempdir()?;
    fs::create_dir_all(src.path().join(".bmat-restore-abc/tree/d"))?;
    fs::write(src.path().join(".bmat-restore-abc/locked"), b"")?;
    fs::write(src.path().join(".bmat-restore-abc/tree/d/f"), b"half")?;
    fs::create_dir_all(src.path().join("sub/.bmat-restore-xyz/tree"))?;
    fs::write(src.path().join("sub/.bmat-restore-xyz/tree/g"), b"half")?;
    fs::write(src.path().join("sub/kept"), b"k")?;
    fs::write(src.path().join("top"), b"t")?;
    let (archive, report) = pack_paths(
        src.path(),
        ".\n.bmat-restore-abc/tree/d/f\n./.bmat-restore-abc\nsub/.bmat-restore-xyz/tree/g\n",
    )?;
    assert!(report.warnings().is_empty(), "{:?}", report.warnings());
    assert_eq!(list_names(&archive)?, ["sub/", "sub/kept", "top"]);
    Ok(())
}

#[test]
fn a_file_that_changes_while_it_is_read_fails_the_archive() -> Result {
    type Change = fn(&Path) -> io::Result<()>;
    let cases: [(&str, Change); 3] = [
        ("it shrank", |p| {
            fs::OpenOptions::new().write(true).open(p)?.set_len(1000)
        }),
        ("its size changed", |p| {
            fs::OpenOptions::new()
                .append(true)
                .open(p)?
                .write_all(b"more")
        }),
        ("its mtime changed", |p| {
            fs::OpenOptions::new()
                .write(true)
                .open(p)?
                .write_all(b"same size, new bytes")?;
            set_mtime(p, 1_600_000_001, 0)
        }),
    ];
    for (what, change) in cases {
        let src = tempfile::tempdir()?;
        fs::write(src.path().join("f"), vec![7u8; 600_000])?;
        set_mtime(&src.path().join("f"), 1_600_000_000, 0)?;
        let mut tar = Vec::new();
        let mut writer = crate::archive::ArchiveWriter::new(&mut tar, src.path());
        // A test-only injected fault: the file changes after the writer stat'ed it
        // and before it reads it, as a build writing it meanwhile would.
        writer.before_read = Some(Box::new(move |p| change(p).expect("change the file")));
        let err = writer.add(&RelPath::from_input(b"f")?).err();
        assert!(
            err.as_ref().is_some_and(
                |e| e.to_string() == format!("f changed while it was being archived ({what})")
            ),
            "{what}: {err:?}"
        );
    }
    // Unchanged, the same file is archived.
    let src = tempfile::tempdir()?;
    fs::write(src.path().join("f"), vec![7u8; 600_000])?;
    let mut tar = Vec::new();
    let mut writer = crate::archive::ArchiveWriter::new(&mut tar, src.path());
    writer.before_read = Some(Box::new(|_| {}));
    writer.add(&RelPath::from_input(b"f")?)?;
    Ok(())
}

#[test]
fn an_archive_is_bounded_by_its_recorded_size_and_entries() -> Result {
    let src = tempfile::tempdir()?;
    sample_tree(&src.path().join("tree"))?;
    fs::hard_link(
        src.path().join("tree/a/b/c/deep.txt"),
        src.path().join("tree/hard"),
    )?;
    fs::write(src.path().join("tree/big"), vec![7u8; 1 << 20])?;
    let counted = progress();
    let paths = parse_list(b"tree\n", false)?;
    let (archive, report) = pack(
        &Roots::main_only(src.path()),
        &paths,
        Vec::new(),
        C,
        &counted,
    )?;
    let (raw, entries) = (counted.raw(), report.entries);
    let sha = hex::encode(Sha256::digest(&archive));
    let bounded = |max_unpacked, max_entries| Expected {
        size: archive.len() as u64,
        sha256: &sha,
        bounds: Bounds {
            max_unpacked,
            unpacked_recorded: true,
            max_entries,
        },
    };
    // What the saver recorded is exactly what the restore meets.
    let dst = tempfile::tempdir()?;
    unpack_into_tree(
        &archive[..],
        &Roots::main_only(dst.path()),
        &bounded(raw, Some(entries)),
        &progress(),
    )?;
    assert_eq!(
        manifest(&src.path().join("tree"))?.diff(&manifest(&dst.path().join("tree"))?),
        Vec::<String>::new()
    );
    // One byte or one entry fewer recorded: refused, nothing left behind.
    for (expected, what) in [
        (bounded(raw - 1, Some(entries)), "bytes recorded"),
        (bounded(raw, Some(entries - 1)), "entries recorded"),
    ] {
        let dst = tempfile::tempdir()?;
        let err = unpack_into_tree(
            &archive[..],
            &Roots::main_only(dst.path()),
            &expected,
            &progress(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains(what), "{what}: {err}");
        assert_eq!(fs::read_dir(dst.path())?.count(), 0, "{what}: leftovers");
    }
    Ok(())
}

/// `chattr +i` / `-i` on `path`; false where it cannot be done (not root, no chattr,
/// a filesystem without the flag).
fn set_immutable(path: &Path, on: bool) -> bool {
    std::process::Command::new("chattr")
        .arg(if on { "+i" } else { "-i" })
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
#[allow(clippy::print_stderr)] // says why it was skipped
fn a_placement_that_fails_half_way_is_undone() -> Result {
    let src = tempfile::tempdir()?;
    let dst = tempfile::tempdir()?;
    for root in [src.path(), dst.path()] {
        fs::create_dir_all(root.join("tree/sub"))?;
    }
    // Twenty files the archive replaces, new ones beside them, and one file on disk
    // that cannot be replaced: an immutable file refuses rename, even to root (EPERM).
    for i in 0..20 {
        fs::write(src.path().join(format!("tree/f{i:02}")), "new")?;
        fs::write(dst.path().join(format!("tree/f{i:02}")), format!("old {i}"))?;
        fs::write(src.path().join(format!("tree/sub/n{i:02}")), "new")?;
    }
    fs::write(src.path().join("tree/stuck"), "new")?;
    fs::write(dst.path().join("tree/stuck"), "old")?;
    set_mtime(&dst.path().join("tree"), 1_500_000_000, 5)?;
    let (archive, _) = pack_paths(src.path(), "tree\n")?;
    let before = manifest(dst.path())?;
    if !set_immutable(&dst.path().join("tree/stuck"), true) {
        eprintln!("skipped: chattr +i is not available here");
        return Ok(());
    }
    let res = restore_bytes(&archive, dst.path());
    set_immutable(&dst.path().join("tree/stuck"), false);
    let err = res.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("moving the files into place"), "{err}");
    assert_eq!(before.diff(&manifest(dst.path())?), Vec::<String>::new());
    assert_eq!(fs::read_dir(dst.path())?.count(), 1, "staging left behind");
    Ok(())
}

#[test]
fn only_damage_found_in_the_archive_is_called_corrupt() -> Result {
    use crate::archive::corruption::corruption;
    // A failure of the machine (a writer thread that died, a full disk) is not the
    // cache's fault: never "corrupt", so never reported to the signer as such.
    for e in [
        io::Error::other("a file writer panicked"),
        io::Error::new(
            io::ErrorKind::InvalidData,
            "an error of no particular origin",
        ),
        io::Error::from_raw_os_error(libc::ENOSPC),
    ] {
        assert!(matches!(RestoreError::from(e), RestoreError::Io(_)));
    }
    assert!(matches!(
        RestoreError::from(corruption("zstd: bad block")),
        RestoreError::Corrupt(_)
    ));
    // And damage is found where it is: by zstd, and by tar.
    let sha = hex::encode(Sha256::digest(b"not zstd"));
    let err = unpack_into_tree(
        &b"not zstd"[..],
        &Roots::main_only(tempfile::tempdir()?.path()),
        &Expected::unbounded(8, &sha),
        &progress(),
    );
    assert!(matches!(err, Err(RestoreError::Corrupt(_))), "{err:?}");
    let garbage_tar = zstd::encode_all(&vec![0x41u8; 4096][..], 1)?;
    let sha = hex::encode(Sha256::digest(&garbage_tar));
    let err = unpack_into_tree(
        &garbage_tar[..],
        &Roots::main_only(tempfile::tempdir()?.path()),
        &Expected::unbounded(garbage_tar.len() as u64, &sha),
        &progress(),
    );
    assert!(matches!(err, Err(RestoreError::Corrupt(_))), "{err:?}");
    Ok(())
}

/// The trees of a job: a working tree and a home, under `base`.
fn two_trees(base: &Path) -> Roots {
    Roots::resolve(&base.join("work"), Some(base.join("home")), None)
}

#[test]
fn a_cache_of_two_trees_lands_in_the_restoring_jobs_trees() -> Result {
    let (src, dst) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (from, to) = (two_trees(src.path()), two_trees(dst.path()));
    sample_tree(&from.main.join("tree"))?;
    sample_tree(&src.path().join("home/.cargo/registry"))?;
    fs::create_dir_all(&to.main)?;
    let list = parse_list(b"tree\n~/.cargo/registry\n", false)?;
    let (archive, _) = pack(&from, &list, Vec::new(), C, &progress())?;
    let names = list_names(&archive)?;
    assert!(
        names
            .iter()
            .any(|n| n.starts_with(".bmat-root/home/.cargo/registry/")),
        "{names:?}"
    );
    let sha = hex::encode(Sha256::digest(&archive));
    unpack_into_tree(
        &archive[..],
        &to,
        &Expected::unbounded(archive.len() as u64, &sha),
        &progress(),
    )?;
    for (a, b) in [
        (from.main.join("tree"), to.main.join("tree")),
        (
            src.path().join("home/.cargo"),
            dst.path().join("home/.cargo"),
        ),
    ] {
        assert_eq!(manifest(&a)?.diff(&manifest(&b)?), Vec::<String>::new());
    }
    assert!(!to.main.join(".bmat-root").exists());
    Ok(())
}

#[test]
#[allow(clippy::print_stderr)] // says why it was skipped
fn a_failed_placement_in_one_tree_puts_the_other_back() -> Result {
    let (src, dst) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (from, to) = (two_trees(src.path()), two_trees(dst.path()));
    for roots in [&from, &to] {
        fs::create_dir_all(&roots.main)?;
        fs::create_dir_all(
            roots
                .main
                .parent()
                .map(|p| p.join("home/cfg"))
                .unwrap_or_default(),
        )?;
    }
    fs::write(src.path().join("home/cfg/settings"), "new")?;
    fs::write(dst.path().join("home/cfg/settings"), "old")?;
    fs::write(from.main.join("stuck"), "new")?;
    fs::write(to.main.join("stuck"), "old")?;
    let list = parse_list(b"~/cfg\nstuck\n", false)?;
    let (archive, _) = pack(&from, &list, Vec::new(), C, &progress())?;
    let home_before = manifest(&dst.path().join("home"))?;
    // The home is placed first, then the working tree fails: an immutable file
    // refuses rename, even to root.
    if !set_immutable(&to.main.join("stuck"), true) {
        eprintln!("skipped: chattr +i is not available here");
        return Ok(());
    }
    let sha = hex::encode(Sha256::digest(&archive));
    let res = unpack_into_tree(
        &archive[..],
        &to,
        &Expected::unbounded(archive.len() as u64, &sha),
        &progress(),
    );
    set_immutable(&to.main.join("stuck"), false);
    assert!(res.is_err());
    assert_eq!(
        fs::read_to_string(dst.path().join("home/cfg/settings"))?,
        "old"
    );
    assert_eq!(
        home_before.diff(&manifest(&dst.path().join("home"))?),
        Vec::<String>::new()
    );
    Ok(())
}

#[test]
fn an_entry_naming_a_tree_root_itself_is_refused_and_home_keeps_its_mode() -> Result {
    for root in [
        ".bmat-root/home",
        ".bmat-root/home/",
        ".bmat-root/cargo-home",
    ] {
        let dst = tempfile::tempdir()?;
        let roots = Roots::resolve(
            &dst.path().join("work"),
            Some(dst.path().join("home")),
            Some(dst.path().join("cargo")),
        );
        for dir in [
            &roots.main,
            &dst.path().join("home"),
            &dst.path().join("cargo"),
        ] {
            fs::create_dir_all(dir)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        }
        // Crafted entries have mode 644: the roots' 755 would change.
        let archive = Crafted::new()
            .entry(root, EntryType::Directory, None, b"")?
            .finish()?;
        let err = restore_into(&archive, &roots);
        assert!(
            matches!(&err, Err(RestoreError::Refused(e)) if e.to_string().contains("itself")),
            "{root}: {err:?}"
        );
        assert_eq!(
            err.map(|_| ()).err().and_then(|e| e.defect()),
            Some(bmat_wire::api::CacheProblem::Undecodable)
        );
        for dir in ["home", "cargo"] {
            let mode = fs::metadata(dst.path().join(dir))?.permissions().mode() & 0o777;
            assert_eq!(mode, 0o755, "{root}: the mode of {dir} changed");
        }
    }
    Ok(())
}

#[test]
fn refusals_of_the_jobs_own_tree_are_no_defect_of_the_archive() -> Result {
    // A symlink on disk, a non-empty directory where the archive has a file, and a
    // tree this job lacks: the archive is sound, the signer must not hear of it.
    let archive = Crafted::new()
        .entry("target/x", EntryType::Regular, None, b"x")?
        .finish()?;
    let outside = tempfile::tempdir()?;
    let linked = tempfile::tempdir()?;
    symlink(outside.path(), linked.path().join("target"))?;
    let full = tempfile::tempdir()?;
    fs::create_dir_all(full.path().join("target/x/inner"))?;
    for dst in [linked.path(), full.path()] {
        let err = restore_bytes(&archive, dst);
        assert!(matches!(&err, Err(RestoreError::Blocked(_))), "{err:?}");
        assert_eq!(err.err().and_then(|e| e.defect()), None);
    }
    let homeless = tempfile::tempdir()?;
    let archive = Crafted::new()
        .entry(".bmat-root/home/cfg", EntryType::Regular, None, b"x")?
        .finish()?;
    let err = restore_into(&archive, &Roots::resolve(homeless.path(), None, None));
    assert!(matches!(&err, Err(RestoreError::Blocked(_))), "{err:?}");
    assert_eq!(err.err().and_then(|e| e.defect()), None);
    Ok(())
}
