//! Cuts a byte stream into upload parts and hashes it on the way.
//!
//! The archive is written here as it is compressed; every `part_size` bytes become a
//! [`Part`] handed to a sink (in `save`, a bounded channel to the uploader, so a slow
//! network slows the compressor down instead of growing memory). The last part may be
//! short, and an empty stream still yields one (empty) part, because S3 cannot
//! complete a multipart upload with none.

use std::io::{self, Write};

use bytes::Bytes;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct Part {
    /// 1-based, as S3 numbers parts.
    pub number: u32,
    pub data: Bytes,
}

/// What the whole stream came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    pub size: u64,
    /// Lower-case hex SHA-256 of every byte written.
    pub sha256: String,
    pub parts: u32,
}

pub struct PartWriter<S: FnMut(Part) -> io::Result<()>> {
    sink: S,
    part_size: usize,
    max_size: u64,
    buf: Vec<u8>,
    next: u32,
    size: u64,
    hasher: Sha256,
}

impl<S: FnMut(Part) -> io::Result<()>> PartWriter<S> {
    /// `max_size`: writing past it fails (the signer would refuse the part URLs).
    pub fn new(part_size: usize, max_size: u64, sink: S) -> Self {
        let part_size = part_size.max(1);
        PartWriter {
            sink,
            part_size,
            max_size,
            buf: Vec::with_capacity(part_size),
            next: 1,
            size: 0,
            hasher: Sha256::new(),
        }
    }

    fn emit(&mut self) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(self.part_size));
        let number = self.next;
        self.next += 1;
        (self.sink)(Part {
            number,
            data: Bytes::from(data),
        })
    }

    /// Sends the last part and returns the totals.
    pub fn finish(mut self) -> io::Result<StreamSummary> {
        if !self.buf.is_empty() || self.next == 1 {
            self.emit()?;
        }
        Ok(StreamSummary {
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
            parts: self.next - 1,
        })
    }
}

impl<S: FnMut(Part) -> io::Result<()>> Write for PartWriter<S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.size + data.len() as u64 > self.max_size {
            return Err(io::Error::other(format!(
                "the archive is larger than the cache size limit of {}",
                crate::progress::human_bytes(self.max_size)
            )));
        }
        let room = self.part_size - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        self.hasher.update(&data[..n]);
        self.size += n as u64;
        if self.buf.len() == self.part_size {
            self.emit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(part_size: usize, chunks: &[&[u8]]) -> (Vec<Part>, StreamSummary) {
        let mut parts = Vec::new();
        let mut w = PartWriter::new(part_size, u64::MAX, |p| {
            parts.push(p);
            Ok(())
        });
        for c in chunks {
            w.write_all(c).ok();
        }
        let summary = w.finish().ok();
        (
            parts,
            summary.unwrap_or(StreamSummary {
                size: 0,
                sha256: String::new(),
                parts: 0,
            }),
        )
    }

    #[test]
    fn parts_are_exactly_part_size_but_the_last() {
        let data: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let (parts, summary) = cut(1000, &[&data[..1], &data[1..1700], &data[1700..]]);
        let sizes: Vec<usize> = parts.iter().map(|p| p.data.len()).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        assert_eq!(
            parts.iter().map(|p| p.number).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        let joined: Vec<u8> = parts.iter().flat_map(|p| p.data.to_vec()).collect();
        assert_eq!(joined, data);
        assert_eq!(summary.size, 2500);
        assert_eq!(summary.parts, 3);
        assert_eq!(summary.sha256, hex::encode(Sha256::digest(&data)));
    }

    #[test]
    fn an_exact_multiple_has_no_empty_tail() {
        let (parts, summary) = cut(4, &[b"abcdefgh"]);
        assert_eq!(parts.len(), 2);
        assert_eq!(summary.parts, 2);
    }

    #[test]
    fn an_empty_stream_still_makes_one_part() {
        let (parts, summary) = cut(4, &[]);
        assert_eq!(parts.len(), 1);
        assert!(parts[0].data.is_empty());
        assert_eq!(summary.sha256, hex::encode(Sha256::digest(b"")));
    }

    #[test]
    fn writing_past_the_cap_fails() {
        let mut w = PartWriter::new(4, 10, |_| Ok(()));
        assert!(w.write_all(b"0123456789").is_ok());
        assert!(w.write_all(b"x").is_err());
    }

    #[test]
    fn a_sink_failure_stops_the_writer() {
        let mut w = PartWriter::new(2, u64::MAX, |_| Err(io::Error::other("gone")));
        assert!(w.write_all(b"abc").is_err());
    }
}
