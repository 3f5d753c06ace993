//! Hands a byte stream from one thread to another in large chunks.
//!
//! The pack and unpack pipelines each have two CPU-heavy halves (file reading and
//! tar on one side, zstd and hashing on the other). On one thread they take turns;
//! split across two threads with a few chunks between them, each half runs while
//! the other waits on the kernel. Chunks travel through a bounded channel (so memory
//! stays at `depth` chunks) and go back through a second one to be reused: a fresh
//! 1 MiB allocation would be an mmap and page faults every time. A producer that
//! already holds large runs of the stream in buffers of its own (a contents restore's
//! decoded frames) lends them instead of copying them into chunks.

use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

/// Bytes per chunk.
pub const CHUNK: usize = 1 << 20;
/// Chunks (or lent runs) queued between the two threads.
pub const DEPTH: usize = 4;

/// A run of the stream lent by the writing side: `range` of a buffer it shares. The
/// buffer goes back through `back` from whichever side lets go of it last.
pub struct Lent {
    pub buf: Arc<Vec<u8>>,
    pub range: Range<usize>,
    pub back: Sender<Vec<u8>>,
}

impl Lent {
    fn bytes(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }

    /// Lets go of the buffer: back to its owner if this was the last hold on it.
    pub fn give_back(self) {
        give_back(self.buf, &self.back);
    }
}

/// Sends `buf` back through `back` if this was the last hold on it (else the last
/// holder will). A gone receiver means nobody reuses buffers any more.
pub fn give_back(buf: Arc<Vec<u8>>, back: &Sender<Vec<u8>>) {
    if let Some(buf) = Arc::into_inner(buf) {
        let _ = back.send(buf);
    }
}

/// What crosses: a chunk and how many of its bytes are filled (chunks always have
/// `CHUNK` bytes of length, so a recycled one is never zeroed again), or a lent run.
enum Piece {
    Chunk(Vec<u8>, usize),
    Lent(Lent),
}

impl Piece {
    fn bytes(&self) -> &[u8] {
        match self {
            Piece::Chunk(buf, filled) => &buf[..*filled],
            Piece::Lent(lent) => lent.bytes(),
        }
    }
}

/// A piece, or the error that ended the stream on the writing side.
type Message = io::Result<Piece>;

/// The writing end: buffers writes into chunks and sends each full one.
pub struct ChunkWriter {
    to: SyncSender<Message>,
    spare: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    filled: usize,
}

/// The reading end: reads the chunks back as one stream; EOF when the writer is
/// dropped (or finished), the writer's error if it sent one.
pub struct ChunkReader {
    from: Receiver<Message>,
    spare: Sender<Vec<u8>>,
    current: Piece,
    pos: usize,
}

/// A connected pair.
pub fn pipe() -> (ChunkWriter, ChunkReader) {
    let (to, from) = sync_channel(DEPTH);
    let (give_back, spare) = channel();
    (
        ChunkWriter {
            to,
            spare,
            buf: vec![0; CHUNK],
            filled: 0,
        },
        ChunkReader {
            from,
            spare: give_back,
            current: Piece::Chunk(Vec::new(), 0),
            pos: 0,
        },
    )
}

fn reader_gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the other half of the pipeline stopped",
    )
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        let next = self.spare.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
        let full = std::mem::replace(&mut self.buf, next);
        let filled = std::mem::take(&mut self.filled);
        self.to
            .send(Ok(Piece::Chunk(full, filled)))
            .map_err(|_| reader_gone())
    }

    /// Sends what is buffered, then `lent` as it is: the next bytes of the stream,
    /// not copied.
    pub fn lend(&mut self, lent: Lent) -> io::Result<()> {
        if self.filled > 0 {
            self.send()?;
        }
        self.to
            .send(Ok(Piece::Lent(lent)))
            .map_err(|_| reader_gone())
    }

    /// Sends what is buffered; the reader sees EOF after it once this is dropped.
    pub fn finish(mut self) -> io::Result<()> {
        if self.filled > 0 {
            self.send()?;
        }
        Ok(())
    }

    /// Fills the chunk being built from `src` (reading until it is full or `src`
    /// ends) and sends it; the bytes go from `src` into the chunk with no copy in
    /// between. Returns how many bytes were read: 0 at the end of `src`.
    pub fn fill_from(&mut self, src: &mut impl Read) -> io::Result<usize> {
        let start = self.filled;
        while self.filled < CHUNK {
            match src.read(&mut self.buf[self.filled..]) {
                Ok(0) => break,
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let read = self.filled - start;
        if read > 0 {
            self.send()?;
        }
        Ok(read)
    }

    /// Ends the stream with an error the reader will return.
    pub fn fail(self, error: io::Error) {
        // If the reader is gone it does not need to know.
        let _ = self.to.send(Err(error));
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.filled);
        self.buf[self.filled..self.filled + n].copy_from_slice(&data[..n]);
        self.filled += n;
        if self.filled == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ChunkReader {
    fn next_chunk(&mut self) -> io::Result<bool> {
        match self.from.recv() {
            Ok(Ok(next)) => {
                match std::mem::replace(&mut self.current, next) {
                    Piece::Chunk(used, _) if used.len() == CHUNK => {
                        let _ = self.spare.send(used);
                    }
                    Piece::Chunk(..) => {}
                    Piece::Lent(lent) => lent.give_back(),
                }
                self.pos = 0;
                Ok(true)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(false),
        }
    }

    /// Writes the rest of the stream to `out`, a whole chunk (or lent run) per
    /// `write_all`.
    pub fn copy_to(&mut self, out: &mut impl Write) -> io::Result<u64> {
        let mut total = 0;
        loop {
            let rest = &self.current.bytes()[self.pos..];
            out.write_all(rest)?;
            total += rest.len() as u64;
            self.pos += rest.len();
            if !self.next_chunk()? {
                return Ok(total);
            }
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.bytes().len() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        let rest = &self.current.bytes()[self.pos..];
        let n = out.len().min(rest.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_whole_and_in_order() -> io::Result<()> {
        let data: Vec<u8> = (0..3 * CHUNK + 12345).map(|i| (i % 251) as u8).collect();
        let (mut w, mut r) = pipe();
        let got = std::thread::scope(|s| {
            let reader = s.spawn(move || {
                let mut got = vec![0u8; 10];
                r.read_exact(&mut got)?;
                r.copy_to(&mut got).map(|_| got)
            });
            let mut src = &data[..CHUNK + 7];
            while w.fill_from(&mut src)? > 0 {}
            for piece in data[CHUNK + 7..].chunks(70_000) {
                w.write_all(piece)?;
            }
            w.finish()?;
            reader
                .join()
                .map_err(|_| io::Error::other("reader panicked"))?
        })?;
        assert_eq!(got.len(), data.len());
        assert!(got == data);
        Ok(())
    }

    #[test]
    fn lent_runs_arrive_in_place_and_their_buffers_come_back() -> io::Result<()> {
        let (back, returned) = channel();
        let buf = Arc::new(b"0123456789".to_vec());
        let (mut w, mut r) = pipe();
        w.write_all(b"head ")?;
        w.lend(Lent {
            buf: buf.clone(),
            range: 2..6,
            back,
        })?;
        w.write_all(b" tail")?;
        w.finish()?;
        // The writer lets go first: the reader's hold is the last.
        drop(buf);
        let mut got = Vec::new();
        r.read_to_end(&mut got)?;
        assert_eq!(got, b"head 2345 tail");
        assert_eq!(returned.try_recv().ok(), Some(b"0123456789".to_vec()));
        Ok(())
    }

    #[test]
    fn the_writers_error_reaches_the_reader() {
        let (mut w, mut r) = pipe();
        assert!(w.write_all(b"some bytes").is_ok());
        assert!(w.send().is_ok());
        w.fail(io::Error::new(io::ErrorKind::InvalidData, "bad frame"));
        let mut got = Vec::new();
        let e = r.read_to_end(&mut got).err();
        assert_eq!(got, b"some bytes");
        assert_eq!(e.map(|e| e.kind()), Some(io::ErrorKind::InvalidData));
    }

    #[test]
    fn a_gone_reader_stops_the_writer() {
        let (mut w, r) = pipe();
        drop(r);
        let e = w.write_all(&vec![0u8; CHUNK + 1]).err();
        assert_eq!(e.map(|e| e.kind()), Some(io::ErrorKind::BrokenPipe));
    }
}
