//! Save: the cache's tar stream, split into a skeleton and contents. Each regular
//! file's bytes are hashed (BLAKE3); a content the base cache (or this save, earlier)
//! already holds is named where it lies, any other is compressed into a frame of this
//! save's object. Small contents share frames, so that a cache of many small files is
//! not as many ranges to fetch.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};

use super::layout::{Content, Cut, Frame, Manifest, TRAILER_LEN, Trailer};
use super::repack::stale_frames;
use crate::archive::stream::Compression;
use crate::progress::Progress;

/// Contents up to this size are grouped into shared frames.
const SMALL: u64 = 256 << 10;
/// A shared frame is closed once it holds this much.
const GROUP: usize = 4 << 20;
/// Contents up to this size are read whole before they are hashed, so that a reused
/// one costs no compression and no upload. A larger one is compressed and uploaded as
/// it is read (memory stays bounded), and so is stored again by every save.
const BUFFERED: u64 = 64 << 20;
/// zstd runs its worker threads only for frames at least this large.
const MULTITHREAD_FROM: usize = 1 << 20;

/// Where a base cache's contents lie: its manifest, indexed by hash, and which of
/// its frames are stored again rather than named (see [`super::repack`]).
pub struct Base {
    manifest: Manifest,
    by_hash: HashMap<String, usize>,
    /// The stored size of each of the manifest's objects, when known.
    sizes: Vec<Option<u64>>,
    stale: HashSet<u32>,
}

impl Base {
    /// `size_of` gives an object's stored size (the signer's hit lists them).
    pub fn new(manifest: Manifest, size_of: impl Fn(&str) -> Option<u64>) -> Base {
        let by_hash = manifest
            .contents
            .iter()
            .enumerate()
            .map(|(i, c)| (c.hash.clone(), i))
            .collect();
        let sizes: Vec<Option<u64>> = manifest.objects.iter().map(|o| size_of(o)).collect();
        let stale = stale_frames(&manifest, &sizes);
        Base {
            manifest,
            by_hash,
            sizes,
            stale,
        }
    }

    pub fn objects(&self) -> &[String] {
        &self.manifest.objects
    }
}

/// What a split wrote.
#[derive(Debug)]
pub struct Split {
    pub manifest: Manifest,
    /// Bytes of the tar stream (what a restore unpacks).
    pub tar_bytes: u64,
    /// The other objects the manifest reads from.
    pub refs: Vec<String>,
    /// Their stored bytes (as far as known).
    pub refs_bytes: u64,
    /// What an archive of the cache would about weigh (see [`Manifest::logical_size`]).
    pub logical_size: u64,
    pub reused_contents: u64,
    /// Contents new to this save, and of them those the base held in a frame it
    /// repacks.
    pub new_contents: u64,
    pub repacked_contents: u64,
}

/// Reads the tar stream `tar` to its end and writes this save's object to `out`:
/// new contents' frames, the skeleton, the manifest and the trailer. `own_id` is the
/// object's id (the upload's).
pub fn split<W: Write>(
    tar: impl Read,
    out: W,
    own_id: &str,
    base: Option<&Base>,
    compression: Compression,
    progress: &Progress,
) -> io::Result<(W, Split)> {
    let mut s = Splitter {
        out: Counted { inner: out, at: 0 },
        compression,
        manifest: Manifest {
            objects: vec![own_id.to_owned()],
            ..Manifest::default()
        },
        skeleton: zstd::stream::write::Encoder::new(Vec::new(), 3)?,
        skeleton_raw: 0,
        by_hash: HashMap::new(),
        base,
        base_frames: HashMap::new(),
        group: Vec::new(),
        group_frame: None,
        reused: 0,
        added: 0,
        repacked: 0,
    };
    s.skeleton.include_checksum(true)?;
    let mut tar = Tally {
        inner: tar,
        count: 0,
        progress,
    };
    s.walk(&mut tar)?;
    s.close_group()?;
    let skeleton = s.skeleton.finish()?;
    let skeleton_at = s.out.at;
    s.out.write_all(&skeleton)?;
    s.manifest.skeleton_raw = s.skeleton_raw;
    let encoded = s.manifest.encode()?;
    let manifest_at = s.out.at;
    s.out.write_all(&encoded)?;
    let trailer = Trailer {
        skeleton_at,
        skeleton_len: skeleton.len() as u64,
        manifest_at,
        manifest_len: encoded.len() as u64,
    };
    s.out.write_all(&trailer.to_bytes())?;
    let index_bytes = skeleton.len() as u64 + encoded.len() as u64 + TRAILER_LEN;
    let refs = s.manifest.objects[1..].to_vec();
    let refs_bytes = base.map_or(0, |b| {
        b.manifest
            .objects
            .iter()
            .zip(&b.sizes)
            .filter(|(o, _)| refs.contains(o))
            .filter_map(|(_, size)| *size)
            .sum()
    });
    let split = Split {
        logical_size: s.manifest.logical_size(index_bytes),
        refs,
        refs_bytes,
        manifest: s.manifest,
        tar_bytes: tar.count,
        reused_contents: s.reused,
        new_contents: s.added,
        repacked_contents: s.repacked,
    };
    Ok((s.out.inner, split))
}

struct Splitter<'b, W: Write> {
    out: Counted<W>,
    compression: Compression,
    manifest: Manifest,
    skeleton: zstd::stream::write::Encoder<'static, Vec<u8>>,
    skeleton_raw: u64,
    /// Contents already in the manifest, by hash.
    by_hash: HashMap<[u8; 32], u32>,
    base: Option<&'b Base>,
    /// Base frames already copied into the manifest: base index → this one's.
    base_frames: HashMap<u32, u32>,
    /// The shared frame being filled, and its index in the manifest.
    group: Vec<u8>,
    group_frame: Option<u32>,
    reused: u64,
    added: u64,
    repacked: u64,
}

impl<W: Write> Splitter<'_, W> {
    /// Walks the tar stream header by header. Our writer's stream: ustar headers, pax
    /// extension headers (`x`) whose `size` record overrides the next header's, file
    /// data padded to 512 bytes, two zero blocks and zero padding at the end.
    fn walk(&mut self, tar: &mut impl Read) -> io::Result<()> {
        let mut pax_size: Option<u64> = None;
        let mut block = [0u8; 512];
        loop {
            tar.read_exact(&mut block)
                .map_err(|e| io::Error::new(e.kind(), format!("reading the tar stream: {e}")))?;
            self.skeleton_write(&block)?;
            if block.iter().all(|b| *b == 0) {
                // The end marker: the rest (the second zero block, padding) as it is.
                let mut rest = Vec::new();
                tar.read_to_end(&mut rest)?;
                return self.skeleton_write(&rest);
            }
            let header = tar::Header::from_byte_slice(&block);
            let size = match pax_size.take() {
                Some(size) => size,
                None => header.entry_size()?,
            };
            let pad = (512 - size % 512) % 512;
            let kind = header.entry_type();
            if (kind.is_file() || kind.is_contiguous()) && size > 0 {
                self.content(tar, size)?;
                copy_exact(tar, pad, |b| self.skeleton_write(b))?;
                continue;
            }
            let mut data = Vec::new();
            tar.by_ref().take(size + pad).read_to_end(&mut data)?;
            if data.len() as u64 != size + pad {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "tar stream cut short",
                ));
            }
            if kind.is_pax_local_extensions() {
                pax_size = pax_record(&data[..size as usize], "size");
            }
            self.skeleton_write(&data)?;
        }
    }

    fn skeleton_write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.skeleton.write_all(bytes)?;
        self.skeleton_raw += bytes.len() as u64;
        Ok(())
    }

    /// One regular file's `size` bytes: named where they already lie, or added.
    fn content(&mut self, tar: &mut impl Read, size: u64) -> io::Result<()> {
        let at = self.skeleton_raw;
        let content = if size <= BUFFERED {
            let mut data = Vec::with_capacity(size as usize);
            tar.by_ref().take(size).read_to_end(&mut data)?;
            if data.len() as u64 != size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "tar stream cut short",
                ));
            }
            let hash = *blake3::hash(&data).as_bytes();
            match self.known(&hash) {
                Some(c) => c,
                None => self.add(&data, hash)?,
            }
        } else {
            self.add_streamed(tar, size)?
        };
        self.manifest.cuts.push(Cut { at, content });
        Ok(())
    }

    /// A content this save has named already, or one of the base's.
    fn known(&mut self, hash: &[u8; 32]) -> Option<u32> {
        if let Some(c) = self.by_hash.get(hash) {
            return Some(*c);
        }
        let base = self.base?;
        let &i = base.by_hash.get(&hex::encode(hash))?;
        let found = &base.manifest.contents[i];
        if base.stale.contains(&found.frame) {
            self.repacked += 1;
            return None;
        }
        let frame = self.base_frame(base, found.frame)?;
        self.reused += 1;
        Some(self.push_content(frame, found.at, found.len, *hash))
    }

    /// The manifest's index of the base's frame `i`, copied over (with its object) the
    /// first time.
    fn base_frame(&mut self, base: &Base, i: u32) -> Option<u32> {
        if let Some(f) = self.base_frames.get(&i) {
            return Some(*f);
        }
        let mut frame = *base.manifest.frames.get(i as usize)?;
        let id = base.manifest.objects.get(frame.object as usize)?;
        frame.object = match self.manifest.objects.iter().position(|o| o == id) {
            Some(o) => o as u32,
            None => {
                self.manifest.objects.push(id.clone());
                (self.manifest.objects.len() - 1) as u32
            }
        };
        self.manifest.frames.push(frame);
        let f = (self.manifest.frames.len() - 1) as u32;
        self.base_frames.insert(i, f);
        Some(f)
    }

    fn push_content(&mut self, frame: u32, at: u64, len: u64, hash: [u8; 32]) -> u32 {
        self.manifest.contents.push(Content {
            frame,
            at,
            len,
            hash: hex::encode(hash),
        });
        let c = (self.manifest.contents.len() - 1) as u32;
        self.by_hash.insert(hash, c);
        c
    }

    /// A new content: into the shared frame when small, else into a frame of its own.
    fn add(&mut self, data: &[u8], hash: [u8; 32]) -> io::Result<u32> {
        self.added += 1;
        if data.len() as u64 <= SMALL {
            let frame = match self.group_frame {
                Some(f) => f,
                None => {
                    let f = self.reserve_frame();
                    self.group_frame = Some(f);
                    f
                }
            };
            let at = self.group.len() as u64;
            self.group.extend_from_slice(data);
            let c = self.push_content(frame, at, data.len() as u64, hash);
            if self.group.len() >= GROUP {
                self.close_group()?;
            }
            return Ok(c);
        }
        let frame = self.reserve_frame();
        self.write_frame(frame, data)?;
        Ok(self.push_content(frame, 0, data.len() as u64, hash))
    }

    /// A content too large to hold: compressed as it is read, hashed on the way.
    fn add_streamed(&mut self, tar: &mut impl Read, size: u64) -> io::Result<u32> {
        self.added += 1;
        let frame = self.reserve_frame();
        let start = self.out.at;
        let mut hasher = blake3::Hasher::new();
        let mut encoder = self.encoder(usize::MAX)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = tar.read(&mut buf[..left.min(1 << 20) as usize])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "tar stream cut short",
                ));
            }
            hasher.update(&buf[..n]);
            encoder.write_all(&buf[..n])?;
            left -= n as u64;
        }
        encoder.finish()?;
        self.manifest.frames[frame as usize] = Frame {
            object: 0,
            at: start,
            len: self.out.at - start,
            raw: size,
        };
        Ok(self.push_content(frame, 0, size, *hasher.finalize().as_bytes()))
    }

    fn reserve_frame(&mut self) -> u32 {
        self.manifest.frames.push(Frame {
            object: 0,
            at: 0,
            len: 0,
            raw: 0,
        });
        (self.manifest.frames.len() - 1) as u32
    }

    fn close_group(&mut self) -> io::Result<()> {
        let Some(frame) = self.group_frame.take() else {
            return Ok(());
        };
        let group = std::mem::take(&mut self.group);
        self.write_frame(frame, &group)
    }

    fn write_frame(&mut self, frame: u32, data: &[u8]) -> io::Result<()> {
        let start = self.out.at;
        let mut encoder = self.encoder(data.len())?;
        encoder.write_all(data)?;
        encoder.finish()?;
        self.manifest.frames[frame as usize] = Frame {
            object: 0,
            at: start,
            len: self.out.at - start,
            raw: data.len() as u64,
        };
        Ok(())
    }

    fn encoder(
        &mut self,
        raw: usize,
    ) -> io::Result<zstd::stream::write::Encoder<'static, &mut Counted<W>>> {
        let mut encoder = zstd::stream::write::Encoder::new(&mut self.out, self.compression.level)?;
        // No frame checksum: a restore checks every content against its BLAKE3 hash,
        // so zstd's XXH64 would check the same bytes a second time.
        encoder.include_checksum(false)?;
        if raw >= MULTITHREAD_FROM && self.compression.workers > 1 {
            encoder.multithread(self.compression.workers)?;
        }
        Ok(encoder)
    }
}

/// The value of pax record `key` in `records`, as a number.
fn pax_record(records: &[u8], key: &str) -> Option<u64> {
    let mut rest = records;
    while !rest.is_empty() {
        let space = rest.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        let record = rest.get(space + 1..len)?;
        let record = record.strip_suffix(b"\n")?;
        if let Some(value) = record.strip_prefix(format!("{key}=").as_bytes()) {
            return std::str::from_utf8(value).ok()?.parse().ok();
        }
        rest = &rest[len..];
    }
    None
}

fn copy_exact(
    from: &mut impl Read,
    len: u64,
    mut to: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut buf = [0u8; 512];
    let mut left = len;
    while left > 0 {
        let n = left.min(512) as usize;
        from.read_exact(&mut buf[..n])?;
        to(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Counts what is written, so that frames know their offsets in the object.
struct Counted<W> {
    inner: W,
    at: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.at += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts the tar stream's bytes, for the extent and the progress line.
struct Tally<'p, R> {
    inner: R,
    count: u64,
    progress: &'p Progress,
}

impl<R: Read> Read for Tally<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        self.progress.add_raw(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::pax_record;

    #[test]
    fn pax_records_are_read_by_key() {
        let records = b"20 path=a/long/name\n17 size=12345678\n";
        assert_eq!(pax_record(records, "size"), Some(12345678));
        assert_eq!(pax_record(records, "mtime"), None);
        assert_eq!(pax_record(b"9 size=x\n", "size"), None);
    }
}
