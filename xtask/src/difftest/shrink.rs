//! Delta debugging of a sequence that shows a difference: the shortest sequence that
//! still shows one.
//!
//! `shows(candidate)` replays a candidate from scratch on both systems (fresh root,
//! fresh sessions) and answers the index of the first op whose replies differ, if any.
//! The shrinker cuts everything after that op, then removes chunks (halves, quarters,
//! … down to single ops, ddmin's "reduce to complement"), keeping any removal after
//! which a difference still shows, and finally tries every single op once more until
//! none can go. What is left is 1-minimal: dropping any one op makes the difference
//! disappear. The number of replays is bounded by `budget`.

use anyhow::Result;

/// The outcome of a shrink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shrunk<T> {
    /// The shortest failing sequence found; its last op is the one that differs.
    pub ops: Vec<T>,
    /// Replays spent.
    pub replays: usize,
    /// Whether the budget ran out before the sequence was 1-minimal.
    pub exhausted: bool,
}

/// Shrinks `ops`, which must show a difference at `first` (the index `shows` gave).
pub fn shrink<T: Clone>(
    ops: &[T],
    first: usize,
    budget: usize,
    mut shows: impl FnMut(&[T]) -> Result<Option<usize>>,
) -> Result<Shrunk<T>> {
    let mut cur: Vec<T> = ops.iter().take(first.saturating_add(1)).cloned().collect();
    let mut replays = 0usize;
    let mut try_candidate = |cand: &[T], replays: &mut usize| -> Result<Option<Vec<T>>> {
        *replays += 1;
        Ok(shows(cand)?.map(|i| cand.iter().take(i.saturating_add(1)).cloned().collect()))
    };
    // ddmin: remove chunks of len/n, doubling n when nothing can go.
    let mut n = 2usize;
    'outer: while cur.len() >= 2 {
        let chunk = cur.len().div_ceil(n).max(1);
        let mut start = 0;
        while start < cur.len() {
            if replays >= budget {
                return Ok(Shrunk {
                    ops: cur,
                    replays,
                    exhausted: true,
                });
            }
            let end = (start + chunk).min(cur.len());
            let cand: Vec<T> = cur
                .iter()
                .take(start)
                .chain(cur.iter().skip(end))
                .cloned()
                .collect();
            if !cand.is_empty()
                && let Some(kept) = try_candidate(&cand, &mut replays)?
            {
                cur = kept;
                n = n.saturating_sub(1).max(2);
                continue 'outer;
            }
            start = end;
        }
        if chunk == 1 {
            break;
        }
        n = n.saturating_mul(2).min(cur.len());
    }
    // Single ops until a fixpoint (a removal can make an earlier op removable).
    let mut changed = true;
    while changed && cur.len() >= 2 {
        changed = false;
        let mut i = 0;
        while i < cur.len() {
            if replays >= budget {
                return Ok(Shrunk {
                    ops: cur,
                    replays,
                    exhausted: true,
                });
            }
            let cand: Vec<T> = cur
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, o)| o.clone())
                .collect();
            if !cand.is_empty()
                && let Some(kept) = try_candidate(&cand, &mut replays)?
            {
                cur = kept;
                changed = true;
            } else {
                i += 1;
            }
        }
    }
    Ok(Shrunk {
        ops: cur,
        replays,
        exhausted: false,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::difftest::exec::{Step, first_difference};

    /// Ops of a toy key-value store.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Kv {
        Put(u8, u8),
        Del(u8),
        Get(u8),
    }

    /// A toy "system": replays ops and records each reply. `buggy` answers a `Get` of
    /// key 3 wrongly after key 3 was deleted and put again (the reference says the
    /// value, the buggy one says "none").
    fn system(ops: &[Kv], buggy: bool) -> Vec<Step> {
        let mut map: HashMap<u8, u8> = HashMap::new();
        let mut deleted3 = false;
        ops.iter()
            .map(|op| {
                let reply = match op {
                    Kv::Put(k, v) => {
                        map.insert(*k, *v);
                        "ok".to_owned()
                    }
                    Kv::Del(k) => {
                        if *k == 3 && map.contains_key(k) {
                            deleted3 = true;
                        }
                        map.remove(k).map_or("none".into(), |_| "ok".into())
                    }
                    Kv::Get(k) => match map.get(k) {
                        Some(_) if buggy && *k == 3 && deleted3 => "none".to_owned(),
                        Some(v) => v.to_string(),
                        None => "none".to_owned(),
                    },
                };
                Step {
                    reply,
                    events: Vec::new(),
                }
            })
            .collect()
    }

    fn shows(ops: &[Kv]) -> Result<Option<usize>> {
        Ok(first_difference(&system(ops, false), &system(ops, true)))
    }

    #[test]
    fn shrinks_to_the_differing_op_and_its_needed_prefix() {
        use Kv::*;
        // Noise around the needed ops: Put(3,_), Del(3), Put(3,_), Get(3).
        let mut ops = Vec::new();
        for i in 0..40u8 {
            ops.push(Put(i % 5, i));
            ops.push(Get(i % 7));
            if i == 10 {
                ops.push(Put(3, 1));
            }
            if i == 20 {
                ops.push(Del(3));
            }
            if i % 9 == 0 {
                ops.push(Del(i % 4));
            }
        }
        ops.push(Put(3, 9));
        ops.push(Get(1));
        ops.push(Get(3));
        ops.push(Get(2));
        let first = shows(&ops).unwrap_or(None).unwrap_or(usize::MAX);
        assert!(first < ops.len(), "the toy systems must differ");
        let s = shrink(&ops, first, 10_000, shows).unwrap_or_else(|e| panic!("{e}"));
        assert!(!s.exhausted);
        // Exactly: some put of 3, its delete, a put of 3 again, the get.
        assert_eq!(s.ops.len(), 4, "{:?}", s.ops);
        assert!(matches!(s.ops[0], Put(3, _)), "{:?}", s.ops);
        assert_eq!(s.ops[1], Del(3));
        assert!(matches!(s.ops[2], Put(3, _)), "{:?}", s.ops);
        assert_eq!(s.ops[3], Get(3));
        assert_eq!(shows(&s.ops).unwrap_or(None), Some(3));
    }

    #[test]
    fn ops_after_the_difference_and_unneeded_ones_go() {
        let ops = vec![
            Kv::Get(1),
            Kv::Put(3, 1),
            Kv::Del(3),
            Kv::Put(3, 2),
            Kv::Get(3),
            Kv::Get(3),
            Kv::Put(4, 4),
        ];
        let s = shrink(&ops, 4, 100, shows).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.ops, ops[1..5].to_vec());
    }

    #[test]
    fn the_budget_bounds_the_replays() {
        let ops: Vec<Kv> = (0..50u8)
            .map(|i| Kv::Put(i, i))
            .chain([Kv::Put(3, 1), Kv::Del(3), Kv::Put(3, 1), Kv::Get(3)])
            .collect();
        let first = ops.len() - 1;
        let s = shrink(&ops, first, 3, shows).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.exhausted);
        assert_eq!(s.replays, 3);
        // Whatever was kept still shows the difference at its last op.
        assert_eq!(shows(&s.ops).unwrap_or(None), Some(s.ops.len() - 1));
    }
}
