//! A linearizability checker for one ZooKeeper znode used as a versioned register with
//! read, write and compare-and-set (`setData` with a version).
//!
//! The search is Wing & Gong's, with Lowe's just-in-time linearization and memoization of
//! `(linearized set, register state)` (as in Knossos and porcupine): the history becomes a
//! list of call and return events ordered by time; the search linearizes some pending call
//! whose effect is legal in the current state, and backtracks when it meets the return of
//! an operation it has not linearized yet.
//!
//! Operations whose outcome is unknown (a timeout, a lost connection) have no return
//! event: they may take effect at any point after their call, or never. Failed reads are
//! left out (they change nothing); a compare-and-set that failed with `BadVersion` is kept
//! and says the version differed at some point during the call.
//!
//! The search is bounded by [`MAX_STEPS`]-style limits given by the caller: past them the
//! answer is [`Verdict::Undecided`], never an endless run.

use std::collections::HashSet;

/// Default bound on search steps per key.
pub const MAX_STEPS: u64 = 20_000_000;

/// The register's state: the znode's data (a number written by the workload) and its
/// `stat.version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct State {
    /// The value last written.
    pub value: i64,
    /// The znode version (number of writes applied).
    pub version: i32,
}

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A read (`sync` + `getData`) that saw `value` at `version`.
    Read {
        /// Data seen.
        value: i64,
        /// Version seen.
        version: i32,
    },
    /// An unconditional `setData`; `new_version` is the version the server answered with
    /// (`None` when the outcome is unknown).
    Write {
        /// Data written.
        value: i64,
        /// The stat version in the reply.
        new_version: Option<i32>,
    },
    /// `setData` with an expected version.
    Cas {
        /// Version the caller expected.
        expected: i32,
        /// Data written on success.
        value: i64,
        /// The stat version in the reply on success.
        new_version: Option<i32>,
    },
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server acknowledged it.
    Ok,
    /// It definitely did not take effect (for a compare-and-set: `BadVersion`).
    Failed,
    /// No answer: it may or may not have taken effect.
    Unknown,
}

/// One operation of a history: invoked at `call`, completed at `ret` (timestamps on one
/// monotonic clock; `ret` is ignored for unknown outcomes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// Which client issued it (for reports).
    pub client: u32,
    /// Invocation time.
    pub call: u64,
    /// Completion time.
    pub ret: u64,
    /// What it did.
    pub op: Op,
    /// How it ended.
    pub outcome: Outcome,
}

/// The checker's answer for one history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A linearization exists.
    Linearizable,
    /// No linearization exists; `stuck_at` is the longest prefix of definite operations
    /// the search could linearize, `blocking` the operation (index into the history given)
    /// whose completion could not be explained after it.
    NotLinearizable {
        /// Definite operations linearized in the deepest attempt.
        stuck_at: usize,
        /// Index of the operation whose return the deepest attempt could not pass.
        blocking: Option<usize>,
    },
    /// The search hit its step bound.
    Undecided {
        /// Steps taken.
        steps: u64,
    },
}

impl Operation {
    /// Whether the checker must linearize it (acknowledged operations, and failed
    /// compare-and-sets).
    fn definite(&self) -> bool {
        match self.outcome {
            Outcome::Ok => true,
            Outcome::Failed => matches!(self.op, Op::Cas { .. }),
            Outcome::Unknown => false,
        }
    }

    /// Whether the checker considers it at all.
    fn relevant(&self) -> bool {
        match (self.outcome, self.op) {
            (Outcome::Ok, _) => true,
            (Outcome::Failed, Op::Cas { .. }) => true,
            (Outcome::Failed, _) => false,
            (Outcome::Unknown, Op::Read { .. }) => false,
            (Outcome::Unknown, _) => true,
        }
    }

    /// The state after this operation takes effect in `s`, or `None` if it cannot.
    fn step(&self, s: State) -> Option<State> {
        let next = |value: i64, new_version: Option<i32>| {
            let version = s.version.checked_add(1)?;
            match new_version {
                Some(v) if v != version => None,
                _ => Some(State { value, version }),
            }
        };
        match (self.outcome, self.op) {
            (_, Op::Read { value, version }) => {
                (s.value == value && s.version == version).then_some(s)
            }
            (_, Op::Write { value, new_version }) => next(value, new_version),
            (Outcome::Failed, Op::Cas { expected, .. }) => (s.version != expected).then_some(s),
            (
                _,
                Op::Cas {
                    expected,
                    value,
                    new_version,
                },
            ) => {
                if s.version == expected {
                    next(value, new_version)
                } else {
                    None
                }
            }
        }
    }
}

/// A call or return event in the doubly linked list the search walks.
#[derive(Debug, Clone, Copy)]
struct Event {
    /// Index into the relevant operations.
    op: usize,
    is_call: bool,
    /// For a call: the index of its return event (if it has one).
    matching: Option<usize>,
    prev: usize,
    next: usize,
}

/// Checks one key's history starting from `init`, within `max_steps` search steps.
pub fn check(history: &[Operation], init: State, max_steps: u64) -> Verdict {
    let mut ops: Vec<(usize, Operation)> = history
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, o)| o.relevant())
        .collect();
    let classes = interchangeable(&mut ops);
    let definite_total = ops.iter().filter(|(_, o)| o.definite()).count();
    if definite_total == 0 {
        return Verdict::Linearizable;
    }
    // Events sorted by time; at equal times calls come first (treated as concurrent).
    // Unknown operations have no return event.
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, (_, o)) in ops.iter().enumerate() {
        order.push((o.call, true, i));
        if o.definite() {
            order.push((o.ret.max(o.call), false, i));
        }
    }
    order.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
    // Node 0 is the list head sentinel; events are 1..=len.
    let len = order.len();
    let mut ev: Vec<Event> = Vec::with_capacity(len + 1);
    ev.push(Event {
        op: usize::MAX,
        is_call: false,
        matching: None,
        prev: 0,
        next: if len > 0 { 1 } else { 0 },
    });
    let mut ret_pos = vec![None; ops.len()];
    for (k, &(_, is_call, i)) in order.iter().enumerate() {
        let pos = k + 1;
        if !is_call && let Some(slot) = ret_pos.get_mut(i) {
            *slot = Some(pos);
        }
        ev.push(Event {
            op: i,
            is_call,
            matching: None,
            prev: k,
            next: if pos < len { pos + 1 } else { 0 },
        });
    }
    for e in ev.iter_mut().skip(1) {
        if e.is_call {
            e.matching = ret_pos.get(e.op).copied().flatten();
        }
    }

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    // (call event position, state before it)
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state = init;
    let mut remaining = definite_total;
    let mut steps: u64 = 0;
    let mut deepest = (0usize, None::<usize>);
    let mut cur = ev.first().map(|h| h.next).unwrap_or(0);
    // Classes of interchangeable operations passed over since the head in this scan.
    let mut passed: Vec<Class> = Vec::new();

    loop {
        if remaining == 0 {
            return Verdict::Linearizable;
        }
        steps += 1;
        if steps > max_steps {
            return Verdict::Undecided { steps };
        }
        let Some(&e) = ev.get(cur).filter(|_| cur != 0) else {
            // Past the end with definite operations left: only possible when every
            // remaining call was tried; backtrack.
            match backtrack(&mut ev, &mut stack, &mut linearized, &mut state, &ops) {
                Some((next, was_definite)) => {
                    if was_definite {
                        remaining += 1;
                    }
                    cur = next;
                    passed = passed_before(&ev, cur, &classes);
                    continue;
                }
                None => {
                    return Verdict::NotLinearizable {
                        stuck_at: deepest.0,
                        blocking: deepest.1,
                    };
                }
            }
        };
        if e.is_call {
            let Some((_, o)) = ops.get(e.op) else {
                return Verdict::Undecided { steps };
            };
            let class = classes.get(e.op).copied().flatten();
            if let Some(c) = class {
                // An earlier pending operation of the same class was tried here already;
                // this one would only give the same states (see `interchangeable`).
                if passed.contains(&c) {
                    cur = e.next;
                    continue;
                }
            }
            if let Some(next_state) = o.step(state) {
                set_bit(&mut linearized, e.op, true);
                if cache.insert((linearized.clone(), next_state)) {
                    stack.push((cur, state));
                    state = next_state;
                    if o.definite() {
                        remaining -= 1;
                    }
                    lift(&mut ev, cur);
                    let done = definite_total - remaining;
                    if done > deepest.0 {
                        deepest = (done, None);
                    }
                    cur = ev.first().map(|h| h.next).unwrap_or(0);
                    passed.clear();
                    continue;
                }
                set_bit(&mut linearized, e.op, false);
            }
            if let Some(c) = class {
                passed.push(c);
            }
            cur = e.next;
        } else {
            // The return of an operation not linearized yet: this branch fails.
            let done = definite_total - remaining;
            if done >= deepest.0 {
                deepest = (done, ops.get(e.op).map(|(orig, _)| *orig));
            }
            match backtrack(&mut ev, &mut stack, &mut linearized, &mut state, &ops) {
                Some((next, was_definite)) => {
                    if was_definite {
                        remaining += 1;
                    }
                    cur = next;
                    passed = passed_before(&ev, cur, &classes);
                }
                None => {
                    return Verdict::NotLinearizable {
                        stuck_at: deepest.0,
                        blocking: deepest.1,
                    };
                }
            }
        }
    }
}

/// Interchangeable operations: unknown-outcome writes (or compare-and-sets expecting
/// the same version) whose value no read ever saw. Their values are replaced by one
/// value no read saw, so each has the same effect in every state; none has a return
/// event. Whenever a linearization applies one of them while an earlier-called one of
/// the same class is pending, swapping the two gives a linearization too, so the search
/// only tries the earliest pending one of each class. Without this, every subset of the
/// writes that timed out at a fault would be searched.
type Class = (bool, i32);

fn interchangeable(ops: &mut [(usize, Operation)]) -> Vec<Option<Class>> {
    let seen: HashSet<i64> = ops
        .iter()
        .filter_map(|(_, o)| match (o.outcome, o.op) {
            (Outcome::Ok, Op::Read { value, .. }) => Some(value),
            _ => None,
        })
        .collect();
    // A value nobody read (at most seen.len() candidates are taken).
    let mut unseen = i64::MIN;
    while seen.contains(&unseen) {
        unseen = unseen.wrapping_add(1);
    }
    ops.iter_mut()
        .map(|(_, o)| {
            if o.outcome != Outcome::Unknown {
                return None;
            }
            match &mut o.op {
                Op::Write { value, .. } if !seen.contains(value) => {
                    *value = unseen;
                    Some((false, 0))
                }
                Op::Cas {
                    expected, value, ..
                } if !seen.contains(value) => {
                    *value = unseen;
                    Some((true, *expected))
                }
                _ => None,
            }
        })
        .collect()
}

/// The classes of the pending calls between the list head and `cur`.
fn passed_before(ev: &[Event], cur: usize, classes: &[Option<Class>]) -> Vec<Class> {
    let mut out = Vec::new();
    let mut p = ev.first().map(|h| h.next).unwrap_or(0);
    while p != 0 && p != cur {
        let Some(e) = ev.get(p) else { break };
        if e.is_call
            && let Some(c) = classes.get(e.op).copied().flatten()
            && !out.contains(&c)
        {
            out.push(c);
        }
        p = e.next;
    }
    out
}

fn set_bit(bits: &mut [u64], i: usize, on: bool) {
    if let Some(w) = bits.get_mut(i / 64) {
        if on {
            *w |= 1 << (i % 64);
        } else {
            *w &= !(1 << (i % 64));
        }
    }
}

/// Removes a call event (and its return) from the list.
fn lift(ev: &mut [Event], pos: usize) {
    unlink(ev, pos);
    if let Some(r) = ev.get(pos).and_then(|e| e.matching) {
        unlink(ev, r);
    }
}

fn unlink(ev: &mut [Event], pos: usize) {
    let Some(&e) = ev.get(pos) else { return };
    if let Some(p) = ev.get_mut(e.prev) {
        p.next = e.next;
    }
    if let Some(n) = ev.get_mut(e.next) {
        n.prev = e.prev;
    }
}

fn relink(ev: &mut [Event], pos: usize) {
    let Some(&e) = ev.get(pos) else { return };
    if let Some(p) = ev.get_mut(e.prev) {
        p.next = pos;
    }
    if let Some(n) = ev.get_mut(e.next) {
        n.prev = pos;
    }
}

/// Undoes the last linearization; returns where to resume (the event after the undone
/// call) and whether the undone operation was definite.
fn backtrack(
    ev: &mut [Event],
    stack: &mut Vec<(usize, State)>,
    linearized: &mut [u64],
    state: &mut State,
    ops: &[(usize, Operation)],
) -> Option<(usize, bool)> {
    let (pos, before) = stack.pop()?;
    let e = *ev.get(pos)?;
    // Re-link in reverse order of removal: the return first, then the call.
    if let Some(r) = e.matching {
        relink(ev, r);
    }
    relink(ev, pos);
    set_bit(linearized, e.op, false);
    *state = before;
    let definite = ops.get(e.op).map(|(_, o)| o.definite()).unwrap_or(false);
    Some((e.next, definite))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INIT: State = State {
        value: 0,
        version: 0,
    };

    fn op(client: u32, call: u64, ret: u64, op: Op, outcome: Outcome) -> Operation {
        Operation {
            client,
            call,
            ret,
            op,
            outcome,
        }
    }
    fn read(c: u32, call: u64, ret: u64, value: i64, version: i32) -> Operation {
        op(c, call, ret, Op::Read { value, version }, Outcome::Ok)
    }
    fn write(c: u32, call: u64, ret: u64, value: i64, v: i32) -> Operation {
        let o = Op::Write {
            value,
            new_version: Some(v),
        };
        op(c, call, ret, o, Outcome::Ok)
    }
    fn write_unknown(c: u32, call: u64, value: i64) -> Operation {
        let o = Op::Write {
            value,
            new_version: None,
        };
        op(c, call, u64::MAX, o, Outcome::Unknown)
    }
    fn cas(c: u32, call: u64, ret: u64, expected: i32, value: i64, out: Outcome) -> Operation {
        let o = Op::Cas {
            expected,
            value,
            new_version: (out == Outcome::Ok).then_some(expected + 1),
        };
        op(c, call, ret, o, out)
    }
    fn is_bad(v: &Verdict) -> bool {
        matches!(v, Verdict::NotLinearizable { .. })
    }

    #[test]
    fn empty_and_sequential_histories_are_linearizable() {
        assert_eq!(check(&[], INIT, 1000), Verdict::Linearizable);
        let h = [
            read(1, 0, 1, 0, 0),
            write(1, 2, 3, 10, 1),
            read(2, 4, 5, 10, 1),
            cas(2, 6, 7, 1, 11, Outcome::Ok),
            cas(1, 8, 9, 1, 12, Outcome::Failed),
            read(1, 10, 11, 11, 2),
        ];
        assert_eq!(check(&h, INIT, 1000), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_reads_may_see_either_side_of_a_write() {
        // The write spans both reads: one sees the old value, the other the new one, in
        // the order that is consistent.
        let h = [
            write(1, 0, 10, 5, 1),
            read(2, 1, 3, 0, 0),
            read(3, 4, 6, 5, 1),
        ];
        assert_eq!(check(&h, INIT, 1000), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_acknowledged_write_is_rejected() {
        let h = [write(1, 0, 1, 5, 1), read(2, 2, 3, 0, 0)];
        assert!(is_bad(&check(&h, INIT, 1000)));
    }

    #[test]
    fn reads_going_back_in_time_are_rejected() {
        // Both reads overlap the write, but the second starts after the first ended: once
        // a read saw the new value, a later read must not see the old one.
        let h = [
            write(1, 0, 100, 5, 1),
            read(2, 1, 2, 5, 1),
            read(3, 3, 4, 0, 0),
        ];
        assert!(is_bad(&check(&h, INIT, 1000)));
    }

    #[test]
    fn a_value_never_written_is_rejected() {
        let h = [write(1, 0, 1, 5, 1), read(2, 2, 3, 7, 1)];
        assert!(is_bad(&check(&h, INIT, 1000)));
    }

    #[test]
    fn two_successful_cas_from_the_same_version_are_rejected() {
        let h = [
            cas(1, 0, 10, 0, 1, Outcome::Ok),
            cas(2, 0, 10, 0, 2, Outcome::Ok),
        ];
        assert!(is_bad(&check(&h, INIT, 1000)));
    }

    #[test]
    fn failed_cas_needs_a_different_version_during_its_call() {
        // BadVersion while nothing else ran: impossible.
        let h = [cas(1, 0, 1, 0, 1, Outcome::Failed)];
        assert!(is_bad(&check(&h, INIT, 1000)));
        // BadVersion concurrent with a write that moved the version: fine.
        let h = [
            write(2, 0, 5, 9, 1),
            cas(1, 1, 6, 0, 1, Outcome::Failed),
            read(1, 7, 8, 9, 1),
        ];
        assert_eq!(check(&h, INIT, 1000), Verdict::Linearizable);
    }

    #[test]
    fn a_reply_with_the_wrong_version_is_rejected() {
        let h = [write(1, 0, 1, 5, 1), write(1, 2, 3, 6, 3)];
        assert!(is_bad(&check(&h, INIT, 1000)));
    }

    #[test]
    fn unknown_writes_may_apply_late_or_never() {
        // Seen long after the call returned nothing: it took effect late.
        let h = [
            write_unknown(1, 0, 5),
            read(2, 10, 11, 0, 0),
            read(2, 20, 21, 5, 1),
        ];
        assert_eq!(check(&h, INIT, 1000), Verdict::Linearizable);
        // Never seen: it may never have applied.
        let h = [write_unknown(1, 0, 5), read(2, 10, 11, 0, 0)];
        assert_eq!(check(&h, INIT, 1000), Verdict::Linearizable);
        // But it cannot apply before it was called.
        let h = [read(2, 0, 1, 5, 1), write_unknown(1, 5, 5)];
        assert!(is_bad(&check(&h, INIT, 1000)));
        // Nor un-apply: once seen, the old value is gone.
        let h = [
            write_unknown(1, 0, 5),
            read(2, 10, 11, 5, 1),
            read(2, 20, 21, 0, 0),
        ];
        assert!(is_bad(&check(&h, INIT, 1000)));
    }

    #[test]
    fn unknown_cas_applies_only_when_its_version_matches() {
        let unknown = |c, call, expected, value| {
            let o = Op::Cas {
                expected,
                value,
                new_version: None,
            };
            op(c, call, u64::MAX, o, Outcome::Unknown)
        };
        let h = [unknown(1, 0, 0, 4), read(2, 5, 6, 4, 1)];
        assert_eq!(check(&h, INIT, 1000), Verdict::Linearizable);
        let h = [
            write(2, 0, 1, 3, 1),
            unknown(1, 2, 0, 4),
            read(2, 5, 6, 4, 2),
        ];
        assert!(is_bad(&check(&h, INIT, 1000)));
    }

    #[test]
    fn failed_reads_and_writes_are_ignored() {
        let h = [
            op(
                1,
                0,
                1,
                Op::Write {
                    value: 5,
                    new_version: None,
                },
                Outcome::Failed,
            ),
            op(
                1,
                0,
                1,
                Op::Read {
                    value: 99,
                    version: 9,
                },
                Outcome::Unknown,
            ),
            read(2, 2, 3, 0, 0),
        ];
        assert_eq!(check(&h, INIT, 1000), Verdict::Linearizable);
    }

    #[test]
    fn many_unobserved_unknown_writes_are_searched_quickly() {
        // Ten faults, each leaving eight writes with no answer, none of them seen; reads
        // in between show two of each batch applied. Without the symmetry reduction
        // every subset of the pending writes would be a search state.
        let mut h = Vec::new();
        let mut t = 0;
        let mut version = 0;
        for round in 0..10i64 {
            for c in 0..8u32 {
                h.push(write_unknown(
                    c,
                    t + u64::from(c),
                    round * 100 + i64::from(c),
                ));
            }
            version += 2;
            h.push(write(9, t + 20, t + 21, 50_000 + round, version + 1));
            version += 1;
            h.push(read(9, t + 22, t + 23, 50_000 + round, version));
            t += 100;
        }
        assert_eq!(check(&h, INIT, 200_000), Verdict::Linearizable);
        // A version jump that not enough unknown writes can explain is still caught.
        h.push(read(9, t + 1, t + 2, 50_009, version + 100));
        assert!(is_bad(&check(&h, INIT, 2_000_000)));
    }

    #[test]
    fn an_observed_unknown_write_keeps_its_value() {
        // Two unknown writes; the read sees the second one's value at version 1, so the
        // first must not have applied before it (values of seen writes stay distinct).
        let h = [
            write_unknown(1, 0, 5),
            write_unknown(2, 1, 6),
            read(3, 10, 11, 6, 1),
            read(3, 12, 13, 5, 2),
        ];
        assert_eq!(check(&h, INIT, 1000), Verdict::Linearizable);
        let h = [
            write_unknown(1, 0, 5),
            write_unknown(2, 1, 6),
            read(3, 10, 11, 6, 2),
            read(3, 12, 13, 5, 2),
        ];
        assert!(is_bad(&check(&h, INIT, 1000)));
    }

    #[test]
    fn long_concurrent_history_is_decided_and_the_bound_gives_undecided() {
        // 8 clients, 400 rounds: each round, every client writes concurrently and then
        // one read sees the last of them.
        let mut h = Vec::new();
        let mut version = 0;
        let mut t = 0;
        for round in 0..400i64 {
            for c in 0..8u32 {
                version += 1;
                let value = round * 100 + i64::from(c);
                h.push(write(c, t, t + 10, value, version));
            }
            h.push(read(9, t + 11, t + 12, round * 100 + 7, version));
            t += 20;
        }
        assert_eq!(check(&h, INIT, MAX_STEPS), Verdict::Linearizable);
        assert!(matches!(check(&h, INIT, 50), Verdict::Undecided { .. }));
        // The same history with one stale read in the middle is caught.
        let mut bad = h.clone();
        bad.push(read(9, 4001, 4002, 0, 0));
        assert!(is_bad(&check(&bad, INIT, MAX_STEPS)));
    }
}
