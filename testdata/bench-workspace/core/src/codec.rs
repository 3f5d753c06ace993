//! A compact binary encoding of manifests, for manifests stored as blobs.
//!
//! Layout: magic `BMF`, version byte, entry count (varint), then per entry in path
//! order: bytes shared with the previous path (varint), the rest of the path
//! (varint length + bytes), size (varint), flags (1 byte), SHA-256 (32 bytes).
//! Sorted paths share long prefixes, so front coding halves a typical manifest.

use crate::{DecodeError, Entry, Error, Manifest};

const MAGIC: &[u8; 3] = b"BMF";
const VERSION: u8 = 1;
const FLAG_EXECUTABLE: u8 = 1;

pub fn encode(manifest: &Manifest) -> Result<Vec<u8>, Error> {
    manifest.validate()?;
    let mut out = Vec::with_capacity(16 + manifest.len() * 48);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    put_varint(&mut out, manifest.len() as u64);
    let mut previous = "";
    for (path, entry) in &manifest.entries {
        let shared = common_prefix(previous, path);
        put_varint(&mut out, shared as u64);
        put_varint(&mut out, (path.len() - shared) as u64);
        out.extend_from_slice(&path.as_bytes()[shared..]);
        put_varint(&mut out, entry.size);
        out.push(if entry.executable { FLAG_EXECUTABLE } else { 0 });
        // validate() checked the hash is hex.
        let hash = hex::decode(&entry.sha256).map_err(|_| Error::Hash {
            path: path.clone(),
            hash: entry.sha256.clone(),
        })?;
        out.extend_from_slice(&hash);
        previous = path;
    }
    Ok(out)
}

pub fn decode(bytes: &[u8]) -> Result<Manifest, DecodeError> {
    let mut r = Reader { bytes, pos: 0 };
    let head = r.take(4)?;
    if &head[..3] != MAGIC {
        return Err(DecodeError::Magic([head[0], head[1], head[2], head[3]]));
    }
    if head[3] != VERSION {
        return Err(DecodeError::Version(head[3]));
    }
    let count = r.varint()?;
    let mut manifest = Manifest::default();
    let mut previous = String::new();
    for index in 0..count as usize {
        let shared = r.varint()? as usize;
        if shared > previous.len() || !previous.is_char_boundary(shared) {
            return Err(DecodeError::Prefix { index, shared });
        }
        let len = r.varint()? as usize;
        let rest = std::str::from_utf8(r.take(len)?).map_err(|_| DecodeError::Utf8(index))?;
        let path = format!("{}{rest}", &previous[..shared]);
        if index > 0 && path <= previous {
            return Err(DecodeError::Order(index));
        }
        let size = r.varint()?;
        let flags = r.take(1)?[0];
        let sha256 = hex::encode(r.take(32)?);
        let entry = Entry {
            size,
            sha256,
            executable: flags & FLAG_EXECUTABLE != 0,
        };
        manifest.entries.insert(path.clone(), entry);
        previous = path;
    }
    match bytes.len() - r.pos {
        0 => Ok(manifest),
        n => Err(DecodeError::Trailing(n)),
    }
}

fn common_prefix(a: &str, b: &str) -> usize {
    let mut n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    // Cut on a character boundary so both halves stay UTF-8.
    while !b.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// LEB128: 7 bits a byte, low bits first, high bit set on all but the last byte.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(DecodeError::Truncated(self.pos))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Varint(start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut m = Manifest::default();
        m.add("src/bin/main.rs", b"fn main() {}");
        m.add("src/lib.rs", b"pub fn f() {}");
        m.add("src/lib\u{e9}.rs", &[0; 300]);
        m.entries.get_mut("src/lib.rs").expect("entry").executable = true;
        m
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let bytes = encode(&m).expect("encode");
        assert_eq!(decode(&bytes).expect("decode"), m);
        assert!(bytes.len() < m.to_json().expect("json").len() / 2);
    }

    #[test]
    fn rejects_damage() {
        let bytes = encode(&sample()).expect("encode");
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Truncated(bytes.len() - 32))
        );
        assert!(matches!(decode(b"JSON{}"), Err(DecodeError::Magic(_))));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(DecodeError::Trailing(1)));
        let mut big = Vec::new();
        put_varint(&mut big, u64::MAX);
        let mut r = Reader {
            bytes: &big,
            pos: 0,
        };
        assert_eq!(r.varint(), Ok(u64::MAX));
    }
}
