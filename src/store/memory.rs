//! The in-process store: a sharded concurrent map (`DashMap`) of small
//! mutex-guarded slots, for a single replica.
//!
//! Atomicity: a request locks the slots of all its keys, in key order (so
//! two requests never wait on each other in a cycle), decides, writes, and
//! unlocks. The map's shard locks are held only to find or insert a slot,
//! never while deciding, so requests on different keys do not contend.
//!
//! Memory stays bounded: a slot whose state equals no state (a full bucket,
//! a finished window) is removed by a sweeper. A request that raced the
//! sweeper and locked a removed slot sees its `dead` flag and looks the key
//! up again, so no charge is ever written to a slot that left the map.

use std::sync::{Arc, Weak};
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::{Mutex, MutexGuard};
use smallvec::SmallVec;

use super::{BatchOutcome, Store, StoreError};
use crate::clock::{Clock, SystemClock};
use crate::limit::{Debit, State, decide_batch};

#[derive(Debug, Default)]
struct Slot {
    state: Option<State>,
    /// When `state` becomes equal to no state; the sweeper removes the slot
    /// after that.
    expires_us: u64,
    /// Set by the sweeper under the slot's lock when it removes the slot.
    dead: bool,
}

type SlotRef = Arc<Mutex<Slot>>;

/// Scratch space for one request: requests touch a handful of keys, so it
/// lives on the stack.
type Few<T> = SmallVec<[T; 4]>;

/// Limit state in this process.
pub struct MemoryStore {
    /// foldhash: keys are hashed on every decision, and SipHash's
    /// flooding resistance buys little here (keys come from the auth layer).
    slots: DashMap<Box<str>, SlotRef, foldhash::fast::RandomState>,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

impl MemoryStore {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            slots: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            clock,
        }
    }

    /// Number of live entries (for the `tollgate_memory_entries` gauge).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Removes every slot whose state has become equal to no state; returns
    /// how many were removed. A slot busy right now is left for next time.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now_us();
        let before = self.slots.len();
        self.slots.retain(|_, slot| match slot.try_lock() {
            Some(mut slot) if slot.expires_us <= now => {
                slot.dead = true;
                false
            }
            _ => true,
        });
        before.saturating_sub(self.slots.len())
    }

    /// Sweeps every `every` until the store is dropped.
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let store: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(store) = store.upgrade() else { return };
                let removed = store.sweep();
                tracing::trace!(removed, live = store.len(), "memory store swept");
            }
        })
    }

    fn slot(&self, key: &str, create: bool) -> Option<SlotRef> {
        if let Some(slot) = self.slots.get(key) {
            return Some(Arc::clone(&slot));
        }
        create.then(|| Arc::clone(&self.slots.entry(key.into()).or_default()))
    }

    /// Decides `debits` under their slots' locks; writes only if `commit`.
    fn decide(&self, debits: &[Debit], commit: bool) -> BatchOutcome {
        // Distinct keys, and which one each debit reads.
        let mut keys: Few<&str> = SmallVec::new();
        let slots: Few<usize> = debits
            .iter()
            .map(|d| match keys.iter().position(|k| *k == d.key) {
                Some(i) => i,
                None => {
                    keys.push(&d.key);
                    keys.len() - 1
                }
            })
            .collect();
        // Lock order: by key. Insertion sort: requests touch a few keys (a
        // handful in practice; at most two per descriptor).
        let mut order: Few<usize> = (0..keys.len()).collect();
        for i in 1..order.len() {
            let mut j = i;
            while j > 0 && keys[order[j]] < keys[order[j - 1]] {
                order.swap(j, j - 1);
                j -= 1;
            }
        }

        loop {
            let refs: Few<Option<SlotRef>> = keys.iter().map(|k| self.slot(k, commit)).collect();
            let mut guards: Few<Option<MutexGuard<'_, Slot>>> = refs.iter().map(|_| None).collect();
            for &i in &order {
                guards[i] = refs[i].as_ref().map(|slot| slot.lock());
            }
            if guards.iter().flatten().any(|g| g.dead) {
                continue; // raced the sweeper: look the keys up again
            }
            let now_us = self.clock.now_us();
            let mut states: Few<Option<State>> = guards
                .iter()
                .map(|g| g.as_ref().and_then(|g| g.state))
                .collect();
            let (outcomes, admitted) = decide_batch(debits, &slots, &mut states, now_us);
            if admitted && commit {
                for (debit, &i) in debits.iter().zip(&slots) {
                    if let (Some(guard), Some(state)) = (guards[i].as_mut(), states[i]) {
                        guard.state = Some(state);
                        guard.expires_us = guard.expires_us.max(debit.limit.expires_at(&state));
                    }
                }
            }
            return BatchOutcome {
                outcomes,
                admitted,
                now_us,
            };
        }
    }
}

impl Store for MemoryStore {
    async fn charge(&self, debits: &[Debit]) -> Result<BatchOutcome, StoreError> {
        Ok(self.decide(debits, true))
    }

    async fn peek(&self, debits: &[Debit]) -> Result<BatchOutcome, StoreError> {
        Ok(self.decide(debits, false))
    }

    fn name(&self) -> &'static str {
        "memory"
    }

    fn entries(&self) -> usize {
        self.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::limit::{BucketSpec, Limit};

    const SEC: u64 = 1_000_000;

    fn debit(key: &str, capacity: u64) -> Debit {
        Debit {
            key: key.into(),
            limit: Limit::Bucket(BucketSpec {
                capacity,
                per_minute: 60,
            }),
            cost: 1,
            gate: Default::default(),
        }
    }

    #[test]
    fn sweeper_forgets_only_what_equals_no_entry() {
        let clock = ManualClock::at(1000 * SEC);
        let store = MemoryStore::new(Arc::new(clock.clone()));
        assert!(store.decide(&[debit("a", 2)], true).admitted);
        assert!(store.decide(&[debit("b", 2)], true).admitted);
        assert!(store.decide(&[debit("b", 2)], true).admitted);
        assert_eq!(store.len(), 2);
        clock.advance(SEC); // "a" is full again (1 token/s), "b" lacks one token
        assert_eq!(store.sweep(), 1);
        assert_eq!(store.len(), 1);
        let look = Debit {
            cost: 0,
            ..debit("b", 2)
        };
        let out = store.decide(&[look], false);
        assert_eq!(out.outcomes[0].remaining, 1, "b's state survived the sweep");
        clock.advance(SEC);
        assert_eq!(store.sweep(), 1);
        assert!(store.is_empty());
    }

    #[test]
    fn peek_charges_nothing_and_creates_nothing() {
        let store = MemoryStore::new(Arc::new(ManualClock::at(0)));
        let out = store.decide(&[debit("a", 2)], false);
        assert!(out.admitted);
        assert_eq!(out.outcomes[0].remaining, 1, "what the call would leave");
        assert!(store.is_empty());
    }

    #[test]
    fn a_slot_removed_under_a_waiting_request_is_not_charged() {
        let clock = ManualClock::at(0);
        let store = MemoryStore::new(Arc::new(clock.clone()));
        store.decide(&[debit("a", 5)], true);
        // Simulate the race: the request holds the old slot, the sweeper
        // marks it dead and removes it.
        let stale = store.slot("a", false).unwrap();
        clock.advance(10 * SEC);
        assert_eq!(store.sweep(), 1);
        assert!(stale.lock().dead);
        assert!(store.decide(&[debit("a", 5)], true).admitted);
        assert_eq!(store.len(), 1, "the charge went to a fresh slot in the map");
    }
}
