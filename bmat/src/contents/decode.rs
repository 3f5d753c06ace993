//! Restore: the download's frames, decompressed on a thread of their own.
//!
//! Putting a content back is two jobs: zstd (the larger) and BLAKE3 plus the copy into
//! the tar stream. On one thread they take turns; here zstd decodes the next frames
//! while the assembler checks and writes the last one. Decoded frames travel through
//! a bounded channel (memory stays at `DEPTH` messages of at most `WHOLE` bytes) and
//! their buffers come back to be reused: a fresh multi-MiB allocation per frame is an
//! mmap and a page fault per 4 KiB, which cost as much as the hashing.

use std::io::{self, Read};
use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::Scope;

use zstd::zstd_safe::{DCtx, InBuffer, OutBuffer, ResetDirective};

use super::layout::{Frame, Manifest};
use super::plan::{Plan, Step};
use crate::archive::corruption::corruption;
use crate::archive::handoff::{self, Lent};

/// Frames held for a later use are decoded whole, in one call: at most this large.
pub const WHOLE: u64 = 16 << 20;
// A held frame is a whole one.
const _: () = assert!(super::plan::KEEP_FRAME <= WHOLE);
/// Any other frame larger than this (a large file's, most bytes of a cache) streams
/// through in parts of this size: a few reused buffers instead of one as large as the
/// largest file, and each part is checked and written while it is still in cache.
const PART: usize = 1 << 20;
/// Compressed bytes read at a time for a frame decoded in parts.
const PART_INPUT: usize = 128 << 10;
/// Decoded frames (or parts) queued for the assembler.
const DEPTH: usize = 2;

/// Whether the fetch of `step` (a step that fetches) comes in parts.
pub fn in_parts(step: &Step, frame: &Frame) -> bool {
    !step.keep && frame.raw > PART as u64
}

/// One message per fetched frame decoded whole; a frame [`in_parts`] as its bytes in
/// parts, in order. Buffers go back through [`Frames::release`].
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

    /// Lets go of a decoded buffer: back to the decoder to be reused if this was its
    /// last hold (the decoder may have finished: then it is simply freed).
    pub fn release(&self, buf: Arc<Vec<u8>>) {
        handoff::give_back(buf, &self.spare);
    }

    /// `range` of `buf`, lent to the tar stream: the buffer comes back once read.
    pub fn lender(&self) -> impl Fn(&Arc<Vec<u8>>, Range<usize>) -> Lent + use<> {
        let back = self.spare.clone();
        move |buf, range| Lent {
            buf: buf.clone(),
            range,
            back: back.clone(),
        }
    }
}

/// Starts decoding `plan.fetches()` from `input` (the download of `plan.spans`) on a
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
        // One context for every frame: a context per frame costs more than the bytes
        // of most.
        let mut context =
            DCtx::try_create().ok_or_else(|| io::Error::other("cannot create a zstd context"))?;
        for step in plan.steps.iter().filter(|s| s.fetch) {
            let frame = &m.frames[step.frame as usize];
            if in_parts(step, frame) {
                self.parts(&mut context, frame)?;
            } else {
                let raw = self.whole(&mut context, frame)?;
                self.to
                    .send(Ok(Decoded::Whole(raw)))
                    .map_err(|_| stopped())?;
            }
        }
        Ok(())
    }

    /// A buffer from the ones given back, else a new one; empty.
    fn buffer(&self) -> Vec<u8> {
        let mut buf = self.spares.try_recv().unwrap_or_default();
        buf.clear();
        buf
    }

    /// Reads the next frame (exactly `frame.len` bytes) and decompresses it to exactly
    /// `frame.raw` bytes (anything else is damage).
    fn whole(&mut self, context: &mut DCtx<'static>, frame: &Frame) -> io::Result<Vec<u8>> {
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
            .decompress(&mut raw, &self.compressed[..])
            .map_err(undecodable)?;
        if n as u64 != frame.raw {
            return Err(not_recorded(n as u64, frame.raw, 0));
        }
        Ok(raw)
    }

    /// Decompresses the next frame (exactly `frame.len` bytes, exactly `frame.raw`
    /// once decompressed) as a stream, sending its bytes in parts of [`PART`].
    fn parts(&mut self, context: &mut DCtx<'static>, frame: &Frame) -> io::Result<()> {
        context
            .reset(ResetDirective::SessionOnly)
            .map_err(undecodable)?;
        let mut unread = frame.len;
        let mut taken = 0;
        self.compressed.clear();
        let mut total = 0u64;
        loop {
            let mut part = self.spares.try_recv().unwrap_or_default();
            // Zeroed only where it never held bytes: a part given back is full.
            part.resize(PART, 0);
            let mut filled = 0;
            let mut ended = false;
            while filled < PART && !ended {
                if taken == self.compressed.len() {
                    if unread == 0 {
                        return Err(corruption("a frame ends before its last block"));
                    }
                    let want = unread.min(PART_INPUT as u64);
                    self.compressed.clear();
                    let read = self
                        .input
                        .by_ref()
                        .take(want)
                        .read_to_end(&mut self.compressed)?;
                    if read as u64 != want {
                        return Err(interrupted());
                    }
                    unread -= want;
                    taken = 0;
                }
                let mut input = InBuffer::around(&self.compressed[..]);
                input.set_pos(taken);
                let mut output = OutBuffer::around_pos(&mut part[..], filled);
                // 0: the frame is whole.
                ended = context
                    .decompress_stream(&mut output, &mut input)
                    .map_err(undecodable)?
                    == 0;
                taken = input.pos();
                filled = output.pos();
            }
            total += filled as u64;
            if total > frame.raw {
                return Err(corruption("a frame decompresses to more than recorded"));
            }
            if filled > 0 {
                part.truncate(filled);
                self.to
                    .send(Ok(Decoded::Part(part)))
                    .map_err(|_| stopped())?;
            }
            if ended {
                break;
            }
        }
        let left = unread + (self.compressed.len() - taken) as u64;
        if total != frame.raw || left != 0 {
            return Err(not_recorded(total, frame.raw, left));
        }
        Ok(())
    }
}

/// zstd refused a frame's bytes: damage.
fn undecodable(code: usize) -> io::Error {
    corruption(format!(
        "a frame does not decompress: {}",
        zstd::zstd_safe::get_error_name(code)
    ))
}

fn interrupted() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "download interrupted")
}

fn not_recorded(got: u64, recorded: u64, left: u64) -> io::Error {
    corruption(format!(
        "a frame is not the size recorded ({got} bytes from it, {recorded} recorded; {left} compressed bytes after it)"
    ))
}
