//! Restore: which frames to download, in which order, and which to hold in memory.
//!
//! Contents are put back in skeleton order. A frame is downloaded when a content in it
//! is first needed; a small frame needed again later is held decompressed until its
//! last use (within a memory budget), any other is downloaded again. The download is
//! one ordered stream of the frames in this order (the downloader fetches frames of
//! one object close to each other in one GET: `transfer::download`).

use std::collections::HashMap;

use super::layout::Manifest;

/// Frames held for a later use: each at most this large (decompressed) …
pub const KEEP_FRAME: u64 = 16 << 20;
/// … and all of them together at most this.
const KEEP_BUDGET: u64 = 256 << 20;

/// How the content of one cut is had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub frame: u32,
    /// The frame is the next one in the download stream (else it is held).
    pub fetch: bool,
    /// Hold the frame (decompressed) after this step.
    pub keep: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// One per cut.
    pub steps: Vec<Step>,
}

/// A byte range of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub object: u32,
    pub at: u64,
    pub len: u64,
}

impl Plan {
    /// The plan of a checked manifest ([`Manifest::check`]).
    pub fn of(m: &Manifest) -> Plan {
        let frame_of = |i: usize| m.contents[m.cuts[i].content as usize].frame;
        let mut last_use = HashMap::new();
        for i in 0..m.cuts.len() {
            last_use.insert(frame_of(i), i);
        }
        let mut held: HashMap<u32, u64> = HashMap::new();
        let mut held_bytes = 0u64;
        let mut plan = Plan::default();
        for i in 0..m.cuts.len() {
            let frame = frame_of(i);
            let raw = m.frames[frame as usize].raw;
            let fetch = !held.contains_key(&frame);
            let used_again = last_use[&frame] > i;
            let keep =
                used_again && (!fetch || (raw <= KEEP_FRAME && held_bytes + raw <= KEEP_BUDGET));
            if fetch && keep {
                held.insert(frame, raw);
                held_bytes += raw;
            }
            if !keep && let Some(raw) = held.remove(&frame) {
                held_bytes -= raw;
            }
            plan.steps.push(Step { frame, fetch, keep });
        }
        plan
    }

    /// The frames in download order (a frame may come more than once).
    pub fn fetches(&self) -> impl Iterator<Item = u32> + '_ {
        self.steps.iter().filter(|s| s.fetch).map(|s| s.frame)
    }

    /// The download: the fetched frames' bytes in order, adjacent ones as one span.
    pub fn spans(&self, m: &Manifest) -> Vec<Span> {
        let mut spans: Vec<Span> = Vec::new();
        for f in self.fetches() {
            let frame = m.frames[f as usize];
            match spans.last_mut() {
                Some(last) if last.object == frame.object && frame.at == last.at + last.len => {
                    last.len += frame.len;
                }
                _ => spans.push(Span {
                    object: frame.object,
                    at: frame.at,
                    len: frame.len,
                }),
            }
        }
        spans
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contents::layout::{Content, Cut, Frame};

    /// Frames 0 and 1 adjacent in object 0, frame 2 in object 1; cuts use 0, 2, 0, 1.
    fn manifest() -> Manifest {
        let frame = |object, at, len| Frame {
            object,
            at,
            len,
            raw: 100,
        };
        let content = |frame| Content {
            frame,
            at: 0,
            len: 10,
            hash: "0".repeat(64),
        };
        Manifest {
            objects: vec!["A".into(), "B".into()],
            frames: vec![frame(0, 0, 50), frame(0, 50, 30), frame(1, 500, 20)],
            contents: vec![content(0), content(2), content(1)],
            cuts: [0, 1, 0, 2]
                .iter()
                .enumerate()
                .map(|(i, c)| Cut {
                    at: i as u64 * 1024,
                    content: *c,
                })
                .collect(),
            skeleton_raw: 8192,
        }
    }

    #[test]
    fn a_frame_used_again_is_held_until_its_last_use_and_fetched_once() {
        let m = manifest();
        let plan = Plan::of(&m);
        assert_eq!(plan.fetches().collect::<Vec<_>>(), [0, 2, 1]);
        let fetched: Vec<(bool, bool)> = plan.steps.iter().map(|s| (s.fetch, s.keep)).collect();
        assert_eq!(
            fetched,
            [(true, true), (true, false), (false, false), (true, false)]
        );
        assert_eq!(
            plan.spans(&m),
            [
                Span {
                    object: 0,
                    at: 0,
                    len: 50
                },
                Span {
                    object: 1,
                    at: 500,
                    len: 20
                },
                Span {
                    object: 0,
                    at: 50,
                    len: 30
                },
            ]
        );
    }

    #[test]
    fn adjacent_frames_are_one_span_and_apart_two() {
        let mut m = manifest();
        m.cuts = vec![
            Cut { at: 0, content: 0 },
            Cut {
                at: 1024,
                content: 2,
            },
        ];
        let plan = Plan::of(&m);
        assert_eq!(
            plan.spans(&m),
            [Span {
                object: 0,
                at: 0,
                len: 80
            }]
        );
        // A byte between them: two spans (the downloader may still fetch them in one).
        m.frames[1].at = 51;
        assert_eq!(plan.spans(&m).len(), 2);
    }

    #[test]
    fn a_frame_too_large_to_hold_is_fetched_again() {
        let mut m = manifest();
        m.frames[0].raw = KEEP_FRAME + 1;
        m.contents[0].len = 10;
        let plan = Plan::of(&m);
        assert_eq!(plan.fetches().collect::<Vec<_>>(), [0, 2, 0, 1]);
        assert!(plan.steps.iter().all(|s| s.fetch && !s.keep));
    }
}
