//! The object of a cache of format "contents" (`FORMAT_CONTENTS`), and its manifest.
//!
//! ```text
//! [content frames …][skeleton: zstd][manifest: zstd JSON][trailer: 40 bytes]
//! ```
//!
//! - A **frame** is one zstd frame (no checksum: the contents' hashes check it): one
//!   large content, or several small ones back to back. Frames of this object hold only the contents this save added.
//! - The **skeleton** is the cache's tar stream (as an archive would hold it) with the
//!   bytes of every regular file cut out: headers, pax records, padding, end marker.
//!   A restore puts the contents back at the recorded offsets and gets the same tar
//!   stream, byte for byte, so every rule of an archive's restore applies unchanged.
//! - The **manifest** names, for every cut, the content that goes there: by BLAKE3
//!   hash, and where it lies (a frame of this object, or of another cache's object).
//! - The **trailer** says where the skeleton and the manifest are.

use std::io;

use serde::{Deserialize, Serialize};

use crate::archive::corruption::corruption;

/// `BMATC2` and two reserved bytes.
const MAGIC: [u8; 8] = *b"BMATC2\0\0";
pub const TRAILER_LEN: u64 = 40;
/// A skeleton or manifest larger than this (compressed) is damage, not a cache.
pub const MAX_INDEX_BYTES: u64 = 256 << 20;

/// Where the skeleton and the manifest lie in the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    pub skeleton_at: u64,
    pub skeleton_len: u64,
    pub manifest_at: u64,
    pub manifest_len: u64,
}

impl Trailer {
    pub fn to_bytes(self) -> [u8; TRAILER_LEN as usize] {
        let mut out = [0u8; TRAILER_LEN as usize];
        out[..8].copy_from_slice(&MAGIC);
        for (i, v) in [
            self.skeleton_at,
            self.skeleton_len,
            self.manifest_at,
            self.manifest_len,
        ]
        .into_iter()
        .enumerate()
        {
            out[8 + i * 8..16 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Reads a trailer of an object of `object_size` bytes, checking that what it
    /// names lies inside the object, in order, and within bounds.
    pub fn parse(bytes: &[u8], object_size: u64) -> io::Result<Trailer> {
        if bytes.len() as u64 != TRAILER_LEN || bytes[..8] != MAGIC {
            return Err(corruption("not a contents cache: no trailer"));
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[8 + i * 8..16 + i * 8]);
            u64::from_le_bytes(w)
        };
        let t = Trailer {
            skeleton_at: word(0),
            skeleton_len: word(1),
            manifest_at: word(2),
            manifest_len: word(3),
        };
        let sound = t.skeleton_at.checked_add(t.skeleton_len) == Some(t.manifest_at)
            && t.manifest_at.checked_add(t.manifest_len) == object_size.checked_sub(TRAILER_LEN)
            && t.skeleton_len <= MAX_INDEX_BYTES
            && t.manifest_len <= MAX_INDEX_BYTES;
        if !sound {
            return Err(corruption("the trailer names ranges outside the object"));
        }
        Ok(t)
    }
}

/// A frame: `len` compressed bytes at `at` in object `object`, `raw` bytes once
/// decompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    #[serde(rename = "o")]
    pub object: u32,
    pub at: u64,
    pub len: u64,
    pub raw: u64,
}

/// A content: `len` bytes at `at` in frame `frame` (decompressed), whose BLAKE3 is
/// `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    #[serde(rename = "f")]
    pub frame: u32,
    pub at: u64,
    pub len: u64,
    pub hash: String,
}

/// Content `content` goes into the skeleton at offset `at` (its tar padding is in the
/// skeleton already).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    pub at: u64,
    #[serde(rename = "c")]
    pub content: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Object ids (upload ULIDs) frames lie in; `objects[0]` is the cache's own.
    pub objects: Vec<String>,
    pub frames: Vec<Frame>,
    pub contents: Vec<Content>,
    /// In skeleton order, offsets ascending.
    pub cuts: Vec<Cut>,
    /// The skeleton's length once decompressed.
    pub skeleton_raw: u64,
}

impl Manifest {
    /// Checks every index and offset, so that a restore can follow the manifest
    /// without another bounds check: damage is found before anything is downloaded.
    pub fn check(&self) -> io::Result<()> {
        let bad = |what: &str| Err(corruption(format!("the manifest is damaged: {what}")));
        if self.objects.is_empty() {
            return bad("no objects");
        }
        for f in &self.frames {
            if f.object as usize >= self.objects.len() || f.at.checked_add(f.len).is_none() {
                return bad("a frame outside its objects");
            }
        }
        for c in &self.contents {
            let Some(f) = self.frames.get(c.frame as usize) else {
                return bad("a content in no frame");
            };
            if c.at.checked_add(c.len).is_none_or(|end| end > f.raw) || c.hash.len() != 64 {
                return bad("a content outside its frame");
            }
        }
        let mut last = 0;
        for cut in &self.cuts {
            if cut.at < last || cut.at > self.skeleton_raw {
                return bad("cuts out of order");
            }
            if cut.content as usize >= self.contents.len() {
                return bad("a cut of no content");
            }
            last = cut.at;
        }
        Ok(())
    }

    /// The compressed bytes of every frame the manifest needs, and of its own object's
    /// skeleton and manifest (`index_bytes`): what an archive of the cache would weigh.
    pub fn logical_size(&self, index_bytes: u64) -> u64 {
        let mut used = vec![false; self.frames.len()];
        for cut in &self.cuts {
            if let Some(c) = self.contents.get(cut.content as usize) {
                used[c.frame as usize] = true;
            }
        }
        self.frames
            .iter()
            .zip(used)
            .filter(|(_, u)| *u)
            .map(|(f, _)| f.len)
            .sum::<u64>()
            + index_bytes
    }

    pub fn encode(&self) -> io::Result<Vec<u8>> {
        let json = serde_json::to_vec(self).map_err(io::Error::other)?;
        zstd::bulk::compress(&json, 3)
    }

    pub fn decode(compressed: &[u8]) -> io::Result<Manifest> {
        let json = bounded_decompress(compressed, MAX_INDEX_BYTES * 8, "manifest")?;
        let m: Manifest = serde_json::from_slice(&json)
            .map_err(|e| corruption(format!("the manifest is damaged: {e}")))?;
        m.check()?;
        Ok(m)
    }
}

/// The skeleton (decompressed) and the manifest, from the object's bytes from the
/// skeleton's start to the trailer (`index`), checked against each other.
pub fn open_index(index: &[u8], t: &Trailer) -> io::Result<(Vec<u8>, Manifest)> {
    let split = usize::try_from(t.skeleton_len)
        .ok()
        .filter(|n| *n <= index.len())
        .ok_or_else(|| corruption("the skeleton is cut short"))?;
    let manifest = Manifest::decode(&index[split..])?;
    let skeleton = bounded_decompress(&index[..split], manifest.skeleton_raw, "skeleton")?;
    if skeleton.len() as u64 != manifest.skeleton_raw {
        return Err(corruption(
            "the skeleton is not the length its manifest says",
        ));
    }
    Ok((skeleton, manifest))
}

/// Decompresses a whole zstd frame of at most `max` bytes; more is damage.
pub fn bounded_decompress(compressed: &[u8], max: u64, what: &str) -> io::Result<Vec<u8>> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let mut decoder = zstd::stream::read::Decoder::new(compressed)
        .map_err(|e| corruption(format!("the {what} is damaged: {e}")))?;
    let read = io::Read::read_to_end(&mut io::Read::take(&mut decoder, max as u64 + 1), &mut out)
        .map_err(|e| corruption(format!("the {what} is damaged: {e}")))?;
    if read > max {
        return Err(corruption(format!(
            "the {what} unpacks to more than it may"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailer_reads_back_and_must_fit_its_object() {
        let t = Trailer {
            skeleton_at: 100,
            skeleton_len: 20,
            manifest_at: 120,
            manifest_len: 30,
        };
        let bytes = t.to_bytes();
        assert_eq!(Trailer::parse(&bytes, 190).ok(), Some(t));
        assert!(Trailer::parse(&bytes, 191).is_err(), "a byte more");
        let mut other = bytes;
        other[0] = b'X';
        assert!(Trailer::parse(&other, 190).is_err(), "no magic");
    }

    #[test]
    fn a_manifest_naming_anything_out_of_range_is_refused() {
        let good = Manifest {
            objects: vec!["A".into()],
            frames: vec![Frame {
                object: 0,
                at: 0,
                len: 10,
                raw: 8,
            }],
            contents: vec![Content {
                frame: 0,
                at: 0,
                len: 8,
                hash: "0".repeat(64),
            }],
            cuts: vec![Cut {
                at: 512,
                content: 0,
            }],
            skeleton_raw: 2048,
        };
        assert!(good.check().is_ok());
        let encoded = good.encode().expect("encode");
        assert_eq!(Manifest::decode(&encoded).expect("decode"), good);
        let mut m = good.clone();
        m.contents[0].len = 9;
        assert!(m.check().is_err(), "content past its frame");
        let mut m = good.clone();
        m.frames[0].object = 1;
        assert!(m.check().is_err(), "frame in no object");
        let mut m = good.clone();
        m.cuts[0].at = 4096;
        assert!(m.check().is_err(), "cut past the skeleton");
        let mut m = good;
        m.cuts[0].content = 1;
        assert!(m.check().is_err(), "cut of no content");
    }
}
