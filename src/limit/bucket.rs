//! Token bucket math: capacity, continuous refill, charge. Pure; time is an
//! argument in microseconds.
//!
//! Tokens are `f64` and every step is written so that the Redis Lua script
//! (`store/redis/decide.lua`, Lua numbers are doubles) can repeat it
//! operation for operation: refill is `elapsed_us * per_minute / 60e6`, one
//! correctly rounded division of exact integers, so 0.6 s at 100/min refills
//! exactly 1 token. A charge is allowed when `tokens + EPSILON >= cost`, so a
//! rounding error of a few ulps never turns an exact refill into a rejection.

use super::Outcome;

/// Microseconds in a minute, the unit `per_minute` is expressed in.
const MINUTE_US: f64 = 60_000_000.0;

/// Slack for the comparison of a refilled `f64` balance with an integer cost.
pub const EPSILON: f64 = 1e-9;

/// "Never", in microseconds: the largest integer a Lua double holds exactly,
/// so the Lua script answers the same number.
pub const NEVER_US: u64 = (1 << 53) - 1;

/// A token bucket's shape: it holds at most `capacity` tokens and refills
/// continuously at `per_minute / 60` tokens a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BucketSpec {
    pub capacity: u64,
    pub per_minute: u64,
}

/// A bucket's stored state: its balance at the instant `at_us`.
/// A bucket with no state is full.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketState {
    pub tokens: f64,
    pub at_us: u64,
}

impl BucketSpec {
    /// Capacity for a rate and a burst factor: `floor(per_minute × burst)`.
    pub fn with_burst(per_minute: u64, burst: f64) -> Self {
        Self {
            capacity: (per_minute as f64 * burst).floor() as u64,
            per_minute,
        }
    }

    /// The balance at `now_us`, refilled since the state was written.
    pub fn tokens_at(&self, state: Option<BucketState>, now_us: u64) -> f64 {
        let capacity = self.capacity as f64;
        match state {
            None => capacity,
            Some(s) => {
                let elapsed = now_us.saturating_sub(s.at_us) as f64;
                capacity.min(s.tokens + elapsed * self.per_minute as f64 / MINUTE_US)
            }
        }
    }

    /// Microseconds until `deficit` tokens have been refilled.
    pub fn refill_us(&self, deficit: f64) -> u64 {
        if deficit <= 0.0 {
            0
        } else if self.per_minute == 0 {
            NEVER_US
        } else {
            // Rounded to the nanosecond before the ceiling, so an exact
            // answer a few ulps high does not gain a microsecond.
            let us = deficit * MINUTE_US / self.per_minute as f64;
            ((us * 1000.0 + 0.5).floor() / 1000.0).ceil() as u64
        }
    }

    /// Charges `cost` tokens at `now_us` if the balance allows it.
    ///
    /// Returns the outcome and the state to store when the charge is
    /// committed. On a rejection the returned state equals the refilled
    /// balance, so storing it changes nothing observable.
    pub fn charge(
        &self,
        state: Option<BucketState>,
        now_us: u64,
        cost: u64,
    ) -> (Outcome, BucketState) {
        let tokens = self.tokens_at(state, now_us);
        let cost_f = cost as f64;
        let allowed = tokens + EPSILON >= cost_f;
        let after = if allowed {
            (tokens - cost_f).max(0.0)
        } else {
            tokens
        };
        let retry_us = if allowed {
            0
        } else if cost > self.capacity {
            // Never affordable: the best answer is "when the bucket is full".
            self.refill_us(self.capacity as f64 - tokens)
        } else {
            self.refill_us(cost_f - tokens)
        };
        let outcome = Outcome {
            allowed,
            remaining: (after + EPSILON).floor() as u64,
            reset_us: self.refill_us(self.capacity as f64 - after),
            retry_us,
        };
        // Time never moves a state backwards, so a clock step back cannot
        // refill the same interval twice.
        let at_us = state.map_or(now_us, |s| s.at_us.max(now_us));
        (
            outcome,
            BucketState {
                tokens: after,
                at_us,
            },
        )
    }

    /// When a stored state becomes equal to no state at all (a full bucket),
    /// so the entry may be forgotten.
    pub fn full_at(&self, state: BucketState) -> u64 {
        state
            .at_us
            .saturating_add(self.refill_us(self.capacity as f64 - state.tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000;

    fn free() -> BucketSpec {
        BucketSpec::with_burst(100, 1.5)
    }

    #[test]
    fn burst_sets_capacity_by_floor() {
        assert_eq!(free().capacity, 150);
        assert_eq!(BucketSpec::with_burst(7, 1.5).capacity, 10);
        assert_eq!(BucketSpec::with_burst(30, 1.0).capacity, 30);
    }

    #[test]
    fn starts_full_and_drains_to_zero() {
        let spec = free();
        let mut state = None;
        for i in 0..150 {
            let (out, next) = spec.charge(state, 0, 1);
            assert!(out.allowed, "call {i}");
            assert_eq!(out.remaining, 149 - i);
            state = Some(next);
        }
        let (out, _) = spec.charge(state, 0, 1);
        assert!(!out.allowed);
        assert_eq!(out.remaining, 0);
        // 100/min = one token every 0.6 s.
        assert_eq!(out.retry_us, 600_000);
        assert_eq!(out.reset_us, 90 * SEC);
    }

    #[test]
    fn refills_continuously_and_exactly() {
        let spec = free();
        let empty = Some(BucketState {
            tokens: 0.0,
            at_us: 0,
        });
        assert_eq!(spec.tokens_at(empty, 600_000), 1.0);
        assert_eq!(spec.tokens_at(empty, 30 * SEC), 50.0);
        assert_eq!(
            spec.tokens_at(empty, 3600 * SEC),
            150.0,
            "capped at capacity"
        );
        let (out, _) = spec.charge(empty, 600_000, 1);
        assert!(
            out.allowed,
            "an exact refill of one token pays a cost of one"
        );
        let (out, _) = spec.charge(empty, 599_999, 1);
        assert!(!out.allowed);
        assert_eq!(out.retry_us, 1);
    }

    #[test]
    fn rejection_leaves_balance() {
        let spec = free();
        let state = Some(BucketState {
            tokens: 1.0,
            at_us: 0,
        });
        let (out, next) = spec.charge(state, 0, 2);
        assert!(!out.allowed);
        assert_eq!(next.tokens, 1.0);
        assert_eq!(out.remaining, 1);
        assert_eq!(out.retry_us, 600_000);
    }

    #[test]
    fn cost_above_capacity_is_never_allowed() {
        let spec = BucketSpec::with_burst(10, 1.0);
        let (out, _) = spec.charge(None, 0, 11);
        assert!(!out.allowed);
        assert_eq!(out.retry_us, 0, "already full: waiting does not help");
    }

    #[test]
    fn clock_going_backwards_refills_nothing() {
        let spec = free();
        let state = Some(BucketState {
            tokens: 3.0,
            at_us: 10 * SEC,
        });
        assert_eq!(spec.tokens_at(state, 5 * SEC), 3.0);
    }

    #[test]
    fn full_at_is_when_state_equals_none() {
        let spec = free();
        let state = BucketState {
            tokens: 149.0,
            at_us: SEC,
        };
        assert_eq!(spec.full_at(state), SEC + 600_000);
        assert_eq!(spec.tokens_at(Some(state), spec.full_at(state)), 150.0);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Over any sequence of calls, the balance stays in [0, capacity]
            /// and the admitted cost over any interval is at most
            /// capacity + rate × elapsed.
            #[test]
            fn never_negative_never_over_capacity_never_over_admits(
                per_minute in 1u64..5_000,
                burst in 1.0f64..3.0,
                calls in proptest::collection::vec((0u64..2_000_000, 0u64..8), 1..300),
            ) {
                let spec = BucketSpec::with_burst(per_minute, burst);
                prop_assume!(spec.capacity > 0);
                let mut state = None;
                let mut now = 0u64;
                let mut admitted: Vec<(u64, u64)> = Vec::new();
                for (gap, cost) in calls {
                    now += gap;
                    let (out, next) = spec.charge(state, now, cost);
                    prop_assert!(next.tokens >= 0.0);
                    prop_assert!(next.tokens <= spec.capacity as f64);
                    if out.allowed {
                        state = Some(next);
                        admitted.push((now, cost));
                    }
                }
                // Every window [t_i, t_j] of admitted calls.
                for i in 0..admitted.len() {
                    let mut sum = 0u64;
                    for &(t, cost) in &admitted[i..] {
                        sum += cost;
                        let elapsed_min = (t - admitted[i].0) as f64 / 60e6;
                        let bound = spec.capacity as f64 + per_minute as f64 * elapsed_min;
                        prop_assert!(sum as f64 <= bound + 1e-6,
                            "admitted {sum} > bound {bound}");
                    }
                }
            }
        }
    }
}
