//! Restore: the download's frames, decompressed on a thread of their own.
//!
//! Putting a content back is two jobs: zstd (the larger) and BLAKE3 plus the copy into
//! the tar stream. On one thread they take turns; here zstd decodes the next frames
//! while the assembler checks and writes the last one. Decoded frames travel through
//! a bounded channel (memory stays at `DEPTH` frames of at most `WHOLE` bytes) and
//! their buffers come back to be reused: a fresh multi-MiB allocation per frame is an
//! mmap and a page fault per 4 KiB, which cost as much as the hashing.

use std::cell::Cell;
use std::io::{self, BufReader, Read};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::Scope;

use super::layout::{Frame, Manifest};
use super::plan::Plan;
use crate::archive::corruption::corruption;
use crate::archive::stream::Watched;

/// Frames up to this size (decompressed) are decoded whole, in one call with one
/// reused zstd context: most frames are small, and a context per frame costs more
/// than their bytes. A larger one (a single large file) comes in parts of `PART`.
pub const WHOLE: u64 = 16 << 20;
// A held frame is a whole one.
const _: () = assert!(super::plan::KEEP_FRAME <= WHOLE);
const PART: usize = 1 << 20;
/// Decoded frames queued for the assembler.
const DEPTH: usize = 2;

/// One message per fetched frame of at most [`WHOLE`] bytes; a larger one's bytes in
/// parts, in order. Buffers go back through [`Frames::recycle`].
pub enum Decoded {
    Whole(Vec<u8>),
    Part(Vec<u8>),
}

/// The assembler's end: the plan's fetches, decoded, in order.
pub struct Frames {
    from: Receiver<io::Result<Decoded>>,
    spare: Sender<Vec<u8>>,
}

impl Frames {
    /// The next decoded frame (or part). A read error is the download's; an error zstd
    /// or the recorded sizes raise is damage. The stream never ends early without one.
    pub fn next(&mut self) -> io::Result<Decoded> {
        self.from.recv().unwrap_or_else(|_| {
            Err(io::Error::other(
                "the frame decoder stopped before the plan's end",
            ))
        })
    }

    pub fn recycle(&self, buf: Vec<u8>) {
        // The decoder may have finished: then the buffer is simply freed.
        let _ = self.spare.send(buf);
    }
}

/// Starts decoding `plan.fetches` from `input` (the download of `plan.spans`) on a
/// thread of `scope`. It stops at the first error (sent on) or when [`Frames`] is
/// dropped.
pub fn start<'scope, R: Read + Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    input: R,
    m: &'scope Manifest,
    plan: &'scope Plan,
) -> Frames {
    let (to, from) = sync_channel(DEPTH);
    let (spare, spares) = channel();
    scope.spawn(move || {
        let mut decoder = Decoder {
            input,
            to,
            spares,
            compressed: Vec::new(),
        };
        if let Err(e) = decoder.run(m, plan) {
            // Nobody listens when the assembler has stopped: nothing to report then.
            let _ = decoder.to.send(Err(e));
        }
    });
    Frames { from, spare }
}

struct Decoder<R> {
    input: R,
    to: SyncSender<io::Result<Decoded>>,
    spares: Receiver<Vec<u8>>,
    compressed: Vec<u8>,
}

/// The assembler stopped (it returns its own error): stop quietly.
fn stopped() -> io::Error {
    io::Error::from(io::ErrorKind::BrokenPipe)
}

impl<R: Read> Decoder<R> {
    fn run(&mut self, m: &Manifest, plan: &Plan) -> io::Result<()> {
        let mut context = zstd::bulk::Decompressor::new()?;
        for (i, &f) in plan.fetches.iter().enumerate() {
            // The bytes between this frame and the last one of the same range.
            let gap = plan.gaps.get(i).copied().unwrap_or(0);
            if io::copy(&mut self.input.by_ref().take(gap), &mut io::sink())? != gap {
                return Err(interrupted());
            }
            let frame = &m.frames[f as usize];
            if frame.raw <= WHOLE {
                let raw = self.whole(&mut context, frame)?;
                self.to
                    .send(Ok(Decoded::Whole(raw)))
                    .map_err(|_| stopped())?;
            } else {
                self.parts(frame)?;
            }
        }
        Ok(())
    }

    fn buffer(&self) -> Vec<u8> {
        let mut buf = self.spares.try_recv().unwrap_or_default();
        buf.clear();
        buf
    }

    /// Reads the next frame (exactly `frame.len` bytes) and decompresses it to exactly
    /// `frame.raw` bytes (anything else is damage).
    fn whole(
        &mut self,
        context: &mut zstd::bulk::Decompressor<'static>,
        frame: &Frame,
    ) -> io::Result<Vec<u8>> {
        self.compressed.clear();
        let read = self
            .input
            .by_ref()
            .take(frame.len)
            .read_to_end(&mut self.compressed)?;
        if read as u64 != frame.len {
            return Err(interrupted());
        }
        let mut raw = self.buffer();
        raw.reserve(frame.raw as usize);
        let n = context
            .decompress_to_buffer(&self.compressed[..], &mut raw)
            .map_err(|e| corruption(format!("a frame does not decompress: {e}")))?;
        if n as u64 != frame.raw {
            return Err(not_recorded(n as u64, frame.raw, 0));
        }
        Ok(raw)
    }

    /// Decompresses the next frame (exactly `frame.len` bytes, exactly `frame.raw`
    /// once decompressed) as a stream, sending its bytes in parts.
    fn parts(&mut self, frame: &Frame) -> io::Result<()> {
        let failed = Cell::new(None);
        let watched = Watched {
            inner: self.input.by_ref().take(frame.len),
            failed: &failed,
        };
        let damaged = |e: io::Error, failed: &Cell<Option<io::Error>>| {
            failed
                .take()
                .unwrap_or_else(|| corruption(format!("a frame does not decompress: {e}")))
        };
        let mut decoder = zstd::stream::read::Decoder::with_buffer(BufReader::new(watched))
            .map_err(|e| damaged(e, &failed))?
            .single_frame();
        let mut total = 0u64;
        loop {
            let mut part = self.spares.try_recv().unwrap_or_default();
            part.resize(PART, 0);
            let mut filled = 0;
            while filled < PART {
                match decoder.read(&mut part[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(damaged(e, &failed)),
                }
            }
            if filled == 0 {
                break;
            }
            total += filled as u64;
            if total > frame.raw {
                return Err(corruption("a frame decompresses to more than recorded"));
            }
            part.truncate(filled);
            self.to
                .send(Ok(Decoded::Part(part)))
                .map_err(|_| stopped())?;
        }
        let mut rest = decoder.finish();
        let left = rest.buffer().len() as u64 + io::copy(rest.get_mut(), &mut io::sink())?;
        if let Some(e) = failed.take() {
            return Err(e);
        }
        if total != frame.raw || left != 0 {
            return Err(not_recorded(total, frame.raw, left));
        }
        Ok(())
    }
}

fn interrupted() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "download interrupted")
}

fn not_recorded(got: u64, recorded: u64, left: u64) -> io::Error {
    corruption(format!(
        "a frame is not the size recorded ({got} bytes from it, {recorded} recorded; {left} compressed bytes after it)"
    ))
}
