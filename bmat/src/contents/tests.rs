//! A contents cache gives back the archiver's tar stream byte for byte, reuses what
//! its base holds, and refuses a content whose bytes lie about their hash.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;

use super::assemble::assemble;
use super::layout::{Manifest, TRAILER_LEN, Trailer, open_index};
use super::plan::Plan;
use super::split::{Base, Split, split};
use crate::archive::ArchiveWriter;
use crate::archive::stream::Compression;
use crate::progress::Progress;

const COMPRESSION: Compression = Compression {
    level: 1,
    workers: 2,
};

fn tar_of(root: &Path) -> Vec<u8> {
    let mut w = ArchiveWriter::new(Vec::new(), root);
    for entry in fs::read_dir(root).expect("read dir") {
        let name = entry.expect("entry").file_name();
        let rel = crate::trees::paths::RelPath::from_input(name.as_encoded_bytes()).expect("name");
        w.add(&rel).expect("add");
    }
    w.finish().expect("finish").0
}

/// Incompressible bytes, so that frames are as large as the content.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn tree(root: &Path) {
    fs::create_dir_all(root.join("deps/a-very-long-directory-name-for-pax-records-to-be-needed-in-the-header-of-its-entries/and-deeper-still-past-one-hundred-bytes")).expect("mkdir");
    fs::write(root.join("deps/small.rmeta"), b"small content").expect("write");
    fs::write(root.join("deps/same-as-small"), b"small content").expect("write");
    fs::write(root.join("deps/empty"), b"").expect("write");
    fs::write(root.join("deps/libbig.rlib"), noise(3_000_000)).expect("write");
    fs::write(root.join("deps/a-very-long-directory-name-for-pax-records-to-be-needed-in-the-header-of-its-entries/and-deeper-still-past-one-hundred-bytes/file.d"), b"deep").expect("write");
    std::os::unix::fs::symlink("small.rmeta", root.join("deps/link")).expect("symlink");
    fs::hard_link(root.join("deps/small.rmeta"), root.join("deps/hard")).expect("hard link");
}

/// Saves `root` as object `id` over `base`; the objects map gains it.
fn save(
    root: &Path,
    id: &str,
    base: Option<&Base>,
    objects: &mut HashMap<String, Vec<u8>>,
) -> (Vec<u8>, Split) {
    let tar = tar_of(root);
    let progress = Progress::new("test", None);
    let (object, split) =
        split(&tar[..], Vec::new(), id, base, COMPRESSION, &progress).expect("split");
    objects.insert(id.to_owned(), object);
    (tar, split)
}

/// What a restore does: trailer, index, plan, the spans' bytes in order, reassembly.
fn restore(objects: &HashMap<String, Vec<u8>>, id: &str) -> io::Result<(Vec<u8>, Manifest)> {
    let own = &objects[id];
    let size = own.len() as u64;
    let t = Trailer::parse(&own[(size - TRAILER_LEN) as usize..], size)?;
    let (skeleton, m) = open_index(
        &own[t.skeleton_at as usize..(size - TRAILER_LEN) as usize],
        &t,
    )?;
    let plan = Plan::of(&m);
    let mut stream = Vec::new();
    for span in plan.spans(&m) {
        let bytes = &objects[&m.objects[span.object as usize]];
        stream.extend_from_slice(&bytes[span.at as usize..(span.at + span.len) as usize]);
    }
    let mut out = Vec::new();
    assemble(&stream[..], &skeleton, &m, &plan, &mut out)?;
    Ok((out, m))
}

#[test]
fn a_contents_cache_gives_back_the_tar_stream_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    tree(dir.path());
    let mut objects = HashMap::new();
    let (tar, split) = save(dir.path(), "A", None, &mut objects);
    assert_eq!(split.tar_bytes, tar.len() as u64);
    assert!(split.refs.is_empty());
    // Two files of the same content (and a hard link, which tar stores as a link).
    assert_eq!(split.new_contents, 3, "{:?}", split.manifest.contents);
    let (restored, _) = restore(&objects, "A").expect("restore");
    assert!(restored == tar, "the reassembled tar stream differs");
}

#[test]
fn a_save_over_a_base_uploads_only_the_changed_content_and_names_the_base() {
    let dir = tempfile::tempdir().expect("tempdir");
    tree(dir.path());
    let mut objects = HashMap::new();
    let (_, first) = save(dir.path(), "A", None, &mut objects);
    fs::write(dir.path().join("deps/small.rmeta"), b"changed").expect("write");
    let base = Base::new(first.manifest, |_| None);
    let (tar, second) = save(dir.path(), "B", Some(&base), &mut objects);
    assert_eq!(second.new_contents, 1, "only the changed file is new");
    assert_eq!(second.refs, ["A"]);
    assert!(
        objects["B"].len() * 10 < objects["A"].len(),
        "B stores {} bytes, A {}",
        objects["B"].len(),
        objects["A"].len()
    );
    assert!(second.logical_size > objects["A"].len() as u64 / 2);
    let (restored, _) = restore(&objects, "B").expect("restore");
    assert!(restored == tar, "the reassembled tar stream differs");
}

#[test]
fn a_content_whose_bytes_lie_about_its_hash_fails_the_restore_as_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    tree(dir.path());
    let mut objects = HashMap::new();
    let (_, first) = save(dir.path(), "A", None, &mut objects);
    // A saver that names another content's hash for the big file's bytes: the frame is
    // sound zstd, only the hash is a lie.
    let mut lying = first.manifest.clone();
    let big = lying
        .contents
        .iter()
        .position(|c| c.len == 3_000_000)
        .expect("the big content");
    lying.contents[big].hash = blake3::hash(b"something else").to_hex().to_string();
    let own = objects.get_mut("A").expect("A");
    let size = own.len() as u64;
    let t = Trailer::parse(&own[(size - TRAILER_LEN) as usize..], size).expect("trailer");
    let skeleton = own[t.skeleton_at as usize..t.manifest_at as usize].to_vec();
    own.truncate(t.skeleton_at as usize);
    own.extend_from_slice(&skeleton);
    let encoded = lying.encode().expect("encode");
    let manifest_at = own.len() as u64;
    own.extend_from_slice(&encoded);
    own.extend_from_slice(
        &Trailer {
            manifest_at,
            manifest_len: encoded.len() as u64,
            ..t
        }
        .to_bytes(),
    );
    let Err(err) = restore(&objects, "A") else {
        panic!("a lying content was restored");
    };
    assert!(
        crate::archive::corruption::is_corruption(&err),
        "damage, not a local failure: {err}"
    );
    assert!(err.to_string().contains("do not match its hash"), "{err}");
}

#[test]
fn a_damaged_frame_is_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    tree(dir.path());
    let mut objects = HashMap::new();
    let (_, first) = save(dir.path(), "A", None, &mut objects);
    let big = first
        .manifest
        .frames
        .iter()
        .find(|f| f.raw == 3_000_000)
        .expect("the big frame");
    let own = objects.get_mut("A").expect("A");
    own[(big.at + big.len / 2) as usize] ^= 0x40;
    let Err(err) = restore(&objects, "A") else {
        panic!("a damaged frame was restored");
    };
    assert!(crate::archive::corruption::is_corruption(&err), "{err}");
}

#[test]
fn a_content_too_large_to_hold_comes_through_in_parts_and_damage_in_it_is_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    tree(dir.path());
    let len = super::decode::WHOLE as usize + 1_500_000;
    fs::write(dir.path().join("deps/huge.so"), noise(len)).expect("write");
    let mut objects = HashMap::new();
    let (tar, first) = save(dir.path(), "A", None, &mut objects);
    let (restored, _) = restore(&objects, "A").expect("restore");
    assert!(restored == tar, "the reassembled tar stream differs");
    let huge = first
        .manifest
        .frames
        .iter()
        .find(|f| f.raw == len as u64)
        .expect("the huge frame");
    let own = objects.get_mut("A").expect("A");
    own[(huge.at + huge.len - 100) as usize] ^= 0x40;
    let Err(err) = restore(&objects, "A") else {
        panic!("a damaged frame was restored");
    };
    assert!(crate::archive::corruption::is_corruption(&err), "{err}");
}

#[test]
fn a_save_stores_again_what_it_would_read_from_a_shared_frame_its_base_mostly_does_not_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    tree(dir.path());
    let small = |i: u8| dir.path().join(format!("deps/small-{i}.rmeta"));
    for i in 0..10 {
        let mut bytes = noise(10_000);
        bytes[0] = i;
        fs::write(small(i), bytes).expect("write");
    }
    let mut objects = HashMap::new();
    let (_, a) = save(dir.path(), "A", None, &mut objects);
    for i in 2..10 {
        fs::remove_file(small(i)).expect("remove");
    }
    // B reads two of the ten small files from A's shared frame (and the tree's two
    // tiny ones): the frame is about a fifth used by B. C, over B, stores those four
    // again, nothing else new.
    let (_, b) = save(
        dir.path(),
        "B",
        Some(&Base::new(a.manifest, |_| None)),
        &mut objects,
    );
    assert_eq!((b.new_contents, b.repacked_contents), (0, 0));
    let (tar, c) = save(
        dir.path(),
        "C",
        Some(&Base::new(b.manifest, |_| None)),
        &mut objects,
    );
    assert_eq!((c.new_contents, c.repacked_contents), (4, 4));
    let a_shared = |m: &Manifest| {
        m.frames
            .iter()
            .filter(|f| m.objects[f.object as usize] == "A" && f.raw > 50_000 && f.raw < 200_000)
            .count()
    };
    assert_eq!(a_shared(&c.manifest), 0, "C still reads A's shared frame");
    let (restored, _) = restore(&objects, "C").expect("restore");
    assert!(restored == tar, "the reassembled tar stream differs");
}
