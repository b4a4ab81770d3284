//! The local over-limit cache: after Redis rejects a request, each key
//! that rejects *any* cost until a known time (a bucket refused a cost of 1;
//! a window with nothing left) is answered from memory until then, with no
//! round trip. Deadlines are measured on this process's monotonic clock
//! (or a test's injected clock), from durations Redis computed, so skewed
//! wall clocks do not matter.

use std::sync::Arc;

use dashmap::DashMap;

use super::BatchOutcome;
use crate::clock::Clock;
use crate::limit::{Debit, Gate, Limit, Outcome};

/// Entries kept before expired ones are swept.
const SWEEP_ABOVE: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Known {
    /// The limit the outcome was decided under: a changed tier or config
    /// makes the entry irrelevant.
    limit: Limit,
    outcome: Outcome,
    now_us: u64,
    decided: u64,
    /// Until when this key rejects any cost.
    over_until: Option<u64>,
}

pub struct Shortcut {
    known: DashMap<String, Known, foldhash::fast::RandomState>,
    clock: Arc<dyn Clock>,
    /// When expired entries were last swept (clock microseconds).
    swept_us: std::sync::atomic::AtomicU64,
}

impl Shortcut {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            known: DashMap::default(),
            clock,
            swept_us: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A rejection known without asking Redis, if every debit's last
    /// outcome is known and one of them still rejects any cost.
    pub fn answer(&self, debits: &[Debit]) -> Option<BatchOutcome> {
        if self.known.is_empty() {
            return None;
        }
        let now = self.clock.now_us();
        let known: Vec<Known> = debits
            .iter()
            .map(|d| {
                self.known
                    .get(&d.key)
                    .map(|k| *k)
                    .filter(|k| k.limit == d.limit)
            })
            .collect::<Option<_>>()?;
        // Only an enforced debit rejects a request on its own (shadow never
        // rejects; quota mode needs every quota debit to reject).
        let blocks = |d: &Debit, k: &Known| {
            d.gate == Gate::Enforce && d.cost > 0 && k.over_until.is_some_and(|until| until > now)
        };
        let blocking = debits.iter().zip(&known).any(|(d, k)| blocks(d, k));
        if !blocking {
            return None;
        }
        let mut batch_now = 0;
        let outcomes = debits
            .iter()
            .zip(&known)
            .map(|(d, k)| {
                let elapsed = now.saturating_sub(k.decided);
                batch_now = batch_now.max(k.now_us + elapsed);
                let blocked = blocks(d, k);
                Outcome {
                    allowed: !blocked && k.outcome.allowed,
                    remaining: k.outcome.remaining,
                    reset_us: k.outcome.reset_us.saturating_sub(elapsed),
                    retry_us: if blocked {
                        k.outcome.retry_us.saturating_sub(elapsed).max(1)
                    } else {
                        0
                    },
                }
            })
            .collect();
        Some(BatchOutcome {
            outcomes,
            admitted: false,
            now_us: batch_now,
        })
    }

    /// Records a rejected request's outcomes.
    pub fn remember(&self, debits: &[Debit], batch: &BatchOutcome) {
        let now = self.clock.now_us();
        for (debit, outcome) in debits.iter().zip(&batch.outcomes) {
            let rejects_any_cost = !outcome.allowed
                && match debit.limit {
                    Limit::Bucket(_) => debit.cost == 1,
                    Limit::Window(_) => outcome.remaining == 0,
                };
            let over_until = rejects_any_cost.then(|| now.saturating_add(outcome.retry_us));
            self.known.insert(
                debit.key.clone(),
                Known {
                    limit: debit.limit,
                    outcome: *outcome,
                    now_us: batch.now_us,
                    decided: now,
                    over_until,
                },
            );
        }
        // Sweep expired entries at most once a second, not per rejection.
        let swept = self.swept_us.load(std::sync::atomic::Ordering::Relaxed);
        if self.known.len() > SWEEP_ABOVE
            && now.saturating_sub(swept) > 1_000_000
            && self
                .swept_us
                .compare_exchange(
                    swept,
                    now,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_ok()
        {
            self.known
                .retain(|_, k| k.over_until.is_some_and(|until| until > now));
        }
    }
}
