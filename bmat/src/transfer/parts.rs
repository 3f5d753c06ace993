//! Cuts the compressed stream into upload parts, spooled to an unlinked temp file,
//! and hashes it on the way.
//!
//! Every `part_size` bytes become a [`Part`]: a range of the spool file handed to a
//! sink (in `save`, a bounded channel to the uploader, so a slow network slows the
//! compressor down instead of growing the spool). Parts live on disk, not in memory:
//! with the 64 MiB parts S3 clients like, a few parts in flight would otherwise cost
//! hundreds of MiB of RSS; the page cache holds them at no cost to the job's memory.
//! A part is read back from the spool for each attempt, and its range is punched out
//! of the file once uploaded. The spool is created unlinked (`O_TMPFILE`), so nothing
//! is left in the temp directory whatever happens to the process.
//!
//! The last part may be short, and an empty stream still yields one (empty) part,
//! because S3 cannot complete a multipart upload with none.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct Part {
    /// 1-based, as S3 numbers parts.
    pub number: u32,
    spool: Arc<File>,
    offset: u64,
    pub len: u64,
}

impl Part {
    /// Bytes `start .. start + len` of the part (clamped to its end), read from the
    /// spool. A page-cache read of at most a slice: cheap enough for an async task.
    pub fn read(&self, start: u64, len: usize) -> io::Result<Bytes> {
        let len = len.min(self.len.saturating_sub(start) as usize);
        let mut buf = vec![0; len];
        self.spool.read_exact_at(&mut buf, self.offset + start)?;
        Ok(Bytes::from(buf))
    }

    /// Gives the part's disk space back once it is uploaded (best effort: a file
    /// system without hole punching keeps it until the spool is closed).
    pub fn release(&self) {
        let (Ok(offset), Ok(len)) = (i64::try_from(self.offset), i64::try_from(self.len)) else {
            return;
        };
        // SAFETY: fallocate only reads its integer arguments; the fd is open.
        unsafe {
            libc::fallocate(
                self.spool.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            );
        }
    }
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
    spool: Arc<File>,
    part_size: u64,
    max_size: u64,
    /// Where the part being written starts in the spool.
    part_start: u64,
    next: u32,
    size: u64,
    hasher: Sha256,
}

impl<S: FnMut(Part) -> io::Result<()>> PartWriter<S> {
    /// Spools in a new unlinked file in the temp directory. `max_size`: writing past
    /// it fails (the signer would refuse the part URLs).
    pub fn new(part_size: u64, max_size: u64, sink: S) -> io::Result<Self> {
        let spool = tempfile::tempfile().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot create a spool file in {}: {e}",
                    std::env::temp_dir().display()
                ),
            )
        })?;
        Ok(PartWriter {
            sink,
            spool: Arc::new(spool),
            part_size: part_size.max(1),
            max_size,
            part_start: 0,
            next: 1,
            size: 0,
            hasher: Sha256::new(),
        })
    }

    fn emit(&mut self) -> io::Result<()> {
        let part = Part {
            number: self.next,
            spool: self.spool.clone(),
            offset: self.part_start,
            len: self.size - self.part_start,
        };
        self.next += 1;
        self.part_start = self.size;
        (self.sink)(part)
    }

    /// Sends the last part and returns the totals.
    pub fn finish(mut self) -> io::Result<StreamSummary> {
        if self.size > self.part_start || self.next == 1 {
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
        let room = self.part_start + self.part_size - self.size;
        let n = data.len().min(room.min(usize::MAX as u64) as usize);
        self.spool
            .write_all_at(&data[..n], self.size)
            .map_err(|e| io::Error::new(e.kind(), format!("writing to the spool file: {e}")))?;
        self.hasher.update(&data[..n]);
        self.size += n as u64;
        if self.size - self.part_start == self.part_size {
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

    fn bytes_of(p: &Part) -> Vec<u8> {
        p.read(0, p.len as usize)
            .map(|b| b.to_vec())
            .unwrap_or_default()
    }

    fn cut(part_size: u64, chunks: &[&[u8]]) -> io::Result<(Vec<Part>, StreamSummary)> {
        let mut parts = Vec::new();
        let mut w = PartWriter::new(part_size, u64::MAX, |p| {
            parts.push(p);
            Ok(())
        })?;
        for c in chunks {
            w.write_all(c)?;
        }
        let summary = w.finish()?;
        Ok((parts, summary))
    }

    #[test]
    fn parts_are_exactly_part_size_but_the_last() -> io::Result<()> {
        let data: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let (parts, summary) = cut(1000, &[&data[..1], &data[1..1700], &data[1700..]])?;
        let sizes: Vec<u64> = parts.iter().map(|p| p.len).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        assert_eq!(
            parts.iter().map(|p| p.number).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        let joined: Vec<u8> = parts.iter().flat_map(bytes_of).collect();
        assert_eq!(joined, data);
        assert_eq!(
            parts[1].read(990, 100)?.len(),
            10,
            "reads stop at the part's end"
        );
        assert_eq!(summary.size, 2500);
        assert_eq!(summary.parts, 3);
        assert_eq!(summary.sha256, hex::encode(Sha256::digest(&data)));
        Ok(())
    }

    #[test]
    fn a_released_part_reads_as_zeros_and_the_others_are_intact() -> io::Result<()> {
        // Punching works in 4 KiB blocks: parts of 8 KiB.
        let data: Vec<u8> = (0..3 * 8192u32).map(|i| (i % 255) as u8 + 1).collect();
        let (parts, _) = cut(8192, &[&data])?;
        parts[1].release();
        assert!(bytes_of(&parts[1]).iter().all(|b| *b == 0));
        assert_eq!(bytes_of(&parts[0]), data[..8192]);
        assert_eq!(bytes_of(&parts[2]), data[16384..]);
        Ok(())
    }

    #[test]
    fn an_exact_multiple_has_no_empty_tail() -> io::Result<()> {
        let (parts, summary) = cut(4, &[b"abcdefgh"])?;
        assert_eq!(parts.len(), 2);
        assert_eq!(summary.parts, 2);
        Ok(())
    }

    #[test]
    fn an_empty_stream_still_makes_one_part() -> io::Result<()> {
        let (parts, summary) = cut(4, &[])?;
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].len, 0);
        assert_eq!(summary.sha256, hex::encode(Sha256::digest(b"")));
        Ok(())
    }

    #[test]
    fn writing_past_the_cap_fails() -> io::Result<()> {
        let mut w = PartWriter::new(4, 10, |_| Ok(()))?;
        assert!(w.write_all(b"0123456789").is_ok());
        assert!(w.write_all(b"x").is_err());
        Ok(())
    }

    #[test]
    fn a_sink_failure_stops_the_writer() -> io::Result<()> {
        let mut w = PartWriter::new(2, u64::MAX, |_| Err(io::Error::other("gone")))?;
        assert!(w.write_all(b"abc").is_err());
        Ok(())
    }
}
