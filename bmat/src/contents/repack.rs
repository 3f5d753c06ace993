//! Save: which of the base's frames a save stores again instead of naming.
//!
//! An object lives while any cache reads a frame of it, so a chain of saves that each
//! reuse a little of every object before it keeps all of them: S3 holds their dead
//! frames, and a restore reads more objects (and more of each shared frame) than its
//! contents need. Objects cannot be rewritten, so repacking is done by the saves
//! themselves: a save stores again the contents it would read from an object or a
//! shared frame the base itself mostly does not use. Its successors read the new
//! copies, and the old object goes once the caches that still read it are evicted.
//! Each save repacks at most `BUDGET_SHARE` of the base, the least used first, so
//! that no save uploads much more than what changed.

use std::collections::HashSet;

use super::layout::Manifest;

/// An object whose frames the base reads are less than this share of its stored
/// bytes (the rest: frames no longer used, the index of the cache that made it) …
const OBJECT_MIN_USE: f64 = 0.5;
/// … or a shared frame of which the base uses less than this share, is repacked.
const FRAME_MIN_USE: f64 = 0.5;
/// A save repacks at most this share of the base's bytes.
const BUDGET_SHARE: f64 = 0.1;

/// One choice: these frames, so used, costing about `cost` compressed bytes again.
struct Candidate {
    frames: Vec<u32>,
    use_share: f64,
    cost: u64,
}

/// The base frames whose contents a save over `base` stores again. `sizes` holds
/// the stored size of each of the base's objects (`base.objects` order); an object
/// of unknown size is not repacked.
pub fn stale_frames(base: &Manifest, sizes: &[Option<u64>]) -> HashSet<u32> {
    let mut used = vec![0u64; base.frames.len()];
    for c in &base.contents {
        if let Some(u) = used.get_mut(c.frame as usize) {
            *u += c.len;
        }
    }
    // A frame's compressed bytes that hold used contents, about.
    let live = |f: usize| {
        let frame = &base.frames[f];
        let share = used[f] as f64 / frame.raw.max(1) as f64;
        (frame.len as f64 * share.min(1.0)) as u64
    };
    let mut read_of = vec![0u64; base.objects.len()];
    for f in &base.frames {
        if let Some(r) = read_of.get_mut(f.object as usize) {
            *r += f.len;
        }
    }
    let mut candidates = Vec::new();
    let mut in_object = vec![false; base.objects.len()];
    for (o, read) in read_of.iter().enumerate() {
        let Some(Some(size)) = sizes.get(o) else {
            continue;
        };
        let use_share = *read as f64 / (*size).max(1) as f64;
        if use_share < OBJECT_MIN_USE {
            in_object[o] = true;
            let frames: Vec<u32> = (0..base.frames.len())
                .filter(|&f| base.frames[f].object as usize == o)
                .map(|f| f as u32)
                .collect();
            let cost = frames.iter().map(|&f| live(f as usize)).sum();
            candidates.push(Candidate {
                frames,
                use_share,
                cost,
            });
        }
    }
    for (f, frame) in base.frames.iter().enumerate() {
        let use_share = used[f] as f64 / frame.raw.max(1) as f64;
        if !in_object[frame.object as usize] && use_share < FRAME_MIN_USE {
            candidates.push(Candidate {
                frames: vec![f as u32],
                use_share,
                cost: live(f),
            });
        }
    }
    candidates.sort_by(|a, b| a.use_share.total_cmp(&b.use_share));
    let total: u64 = base.frames.iter().map(|f| f.len).sum();
    let mut budget = (total as f64 * BUDGET_SHARE) as u64;
    let mut stale = HashSet::new();
    for c in candidates {
        if c.cost > budget {
            continue;
        }
        budget -= c.cost;
        stale.extend(c.frames);
    }
    stale
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contents::layout::{Content, Frame};

    fn frame(object: u32, len: u64, raw: u64) -> Frame {
        Frame {
            object,
            at: 0,
            len,
            raw,
        }
    }

    fn content(frame: u32, len: u64) -> Content {
        Content {
            frame,
            at: 0,
            len,
            hash: String::new(),
        }
    }

    /// Object 0: one frame, fully used, 100 bytes stored. Object 1: a frame of 40 bytes
    /// of a 1000-byte object. Object 2: a shared frame a tenth used, object full.
    fn base() -> Manifest {
        Manifest {
            objects: vec!["own".into(), "old".into(), "shared".into()],
            frames: vec![
                frame(0, 100, 300),
                frame(1, 40, 120),
                frame(2, 100, 400),
                frame(0, 900, 2000),
            ],
            contents: vec![
                content(0, 300),
                content(1, 120),
                content(2, 40),
                content(3, 2000),
            ],
            ..Manifest::default()
        }
    }

    #[test]
    fn the_least_used_objects_and_frames_are_repacked_within_the_budget() {
        let m = base();
        let stale = stale_frames(&m, &[Some(1050), Some(1000), Some(100)]);
        assert_eq!(stale, HashSet::from([1, 2]));
    }

    #[test]
    fn nothing_is_repacked_past_the_budget_or_of_an_object_of_unknown_size() {
        let mut m = base();
        // The old object's frame is now a third of the base: repacking it costs too
        // much. The shared frame is fully used, its object of unknown size.
        m.frames[1].len = 600;
        m.contents[2].len = 400;
        let stale = stale_frames(&m, &[Some(1050), Some(6000), None]);
        assert!(stale.is_empty(), "{stale:?}");
    }

    #[test]
    fn a_base_that_uses_all_it_reads_repacks_nothing() {
        let m = base();
        let stale = stale_frames(&m, &[Some(1050), Some(40), Some(100)]);
        assert_eq!(
            stale,
            HashSet::from([2]),
            "only the shared frame a tenth used"
        );
        let mut m = base();
        m.contents[2].len = 400;
        assert!(stale_frames(&m, &[Some(1050), Some(40), Some(100)]).is_empty());
    }
}
