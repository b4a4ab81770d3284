//! What a limit is and how one request's limits are decided together.
//!
//! Pure: no I/O, no clock. Every store runs [`decide_batch`] (the Redis
//! store runs its Lua twin, tested against this) on the states it holds for
//! a request's keys, inside whatever makes the read-decide-write atomic.

pub mod bucket;
pub mod window;

pub use bucket::{BucketSpec, BucketState};
pub use window::{CounterState, Window, WindowSpec};

/// One limit to charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    Bucket(BucketSpec),
    Window(WindowSpec),
}

/// A stored state, of the kind its limit needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum State {
    Bucket(BucketState),
    Counter(CounterState),
}

/// A charge of `cost` against the limit stored under `key`.
#[derive(Debug, Clone, PartialEq)]
pub struct Debit {
    pub key: String,
    pub limit: Limit,
    pub cost: u64,
    pub gate: Gate,
}

/// How a debit's rejection weighs on the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Gate {
    /// Rejected → the request is rejected.
    #[default]
    Enforce,
    /// Never rejects the request (shadow mode); charged only when allowed.
    Shadow,
    /// Quota mode: the request is rejected only when every quota-mode
    /// debit is rejected; each is charged only when allowed.
    Quota,
}

impl Gate {
    /// The number the Lua script reads.
    pub fn code(self) -> u8 {
        match self {
            Gate::Enforce => 0,
            Gate::Shadow => 1,
            Gate::Quota => 2,
        }
    }
}

/// The answer for one debit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// Whole units left after this request (before it, when the request as
    /// a whole was rejected and so charged nothing).
    pub remaining: u64,
    /// Microseconds until the limit is whole again (bucket full, next window).
    pub reset_us: u64,
    /// Microseconds until this debit would be allowed; 0 when allowed.
    pub retry_us: u64,
}

impl Limit {
    /// Charges `cost` on `state` at `now_us`; returns the outcome and the
    /// state to store if the request is admitted.
    pub fn charge(&self, state: Option<State>, now_us: u64, cost: u64) -> (Outcome, State) {
        match self {
            Limit::Bucket(spec) => {
                let state = match state {
                    Some(State::Bucket(s)) => Some(s),
                    _ => None,
                };
                let (outcome, next) = spec.charge(state, now_us, cost);
                (outcome, State::Bucket(next))
            }
            Limit::Window(spec) => {
                let state = match state {
                    Some(State::Counter(s)) => Some(s),
                    _ => None,
                };
                let (outcome, next) = spec.charge(state, now_us, cost);
                (outcome, State::Counter(next))
            }
        }
    }

    /// When `state` becomes equal to no state (a full bucket, a finished
    /// window): after that instant a store may forget it.
    pub fn expires_at(&self, state: &State) -> u64 {
        match (self, state) {
            (Limit::Bucket(spec), State::Bucket(s)) => spec.full_at(*s),
            (Limit::Window(spec), State::Counter(s)) => spec.window.end_of(s.index),
            _ => 0,
        }
    }
}

/// Decides a request's debits together: the request is admitted when every
/// enforced debit allows it (and, if there are quota-mode debits, at least
/// one of them); then every allowed debit is charged, else none is.
///
/// `slots[i]` names the state debit `i` reads (debits on one key share a
/// slot and see each other's charges in order); `states` holds those
/// states and is updated in place only when every debit is allowed. Returns
/// one outcome per debit and whether the request was admitted.
pub fn decide_batch(
    debits: &[Debit],
    slots: &[usize],
    states: &mut [Option<State>],
    now_us: u64,
) -> (Vec<Outcome>, bool) {
    let mut working: smallvec::SmallVec<[Option<State>; 4]> = states.iter().copied().collect();
    let mut outcomes = Vec::with_capacity(debits.len());
    let (mut enforced, mut quota_seen, mut quota_allowed) = (true, false, false);
    for (debit, &slot) in debits.iter().zip(slots) {
        let (outcome, next) = debit.limit.charge(working[slot], now_us, debit.cost);
        if outcome.allowed {
            working[slot] = Some(next);
        }
        match debit.gate {
            Gate::Enforce => enforced &= outcome.allowed,
            Gate::Shadow => {}
            Gate::Quota => {
                quota_seen = true;
                quota_allowed |= outcome.allowed;
            }
        }
        outcomes.push(outcome);
    }
    let admitted = enforced && (!quota_seen || quota_allowed);
    if admitted {
        states.copy_from_slice(&working);
    } else {
        // Nothing is charged: what an allowed debit reports is what it had
        // before this request.
        for ((outcome, debit), &slot) in outcomes.iter_mut().zip(debits).zip(slots) {
            if outcome.allowed {
                *outcome = debit.limit.charge(states[slot], now_us, 0).0;
            }
        }
    }
    (outcomes, admitted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(key: &str, capacity: u64, cost: u64) -> Debit {
        Debit {
            key: key.into(),
            limit: Limit::Bucket(BucketSpec {
                capacity,
                per_minute: 60,
            }),
            cost,
            gate: Default::default(),
        }
    }

    #[test]
    fn all_or_nothing() {
        let debits = [bucket("a", 10, 3), bucket("b", 2, 3)];
        let mut states = [None, None];
        let (outcomes, admitted) = decide_batch(&debits, &[0, 1], &mut states, 0);
        assert!(!admitted);
        assert!(outcomes[0].allowed && !outcomes[1].allowed);
        assert_eq!(outcomes[0].remaining, 10, "reports the uncharged balance");
        assert_eq!(states, [None, None], "nothing charged");
    }

    #[test]
    fn debits_on_one_key_add_up() {
        let debits = [bucket("a", 5, 3), bucket("a", 5, 3)];
        let mut states = [None];
        let (outcomes, admitted) = decide_batch(&debits, &[0, 0], &mut states, 0);
        assert!(!admitted);
        assert!(outcomes[0].allowed && !outcomes[1].allowed);
        let (_, admitted) = decide_batch(&debits[..1], &[0], &mut states, 0);
        assert!(admitted);
        assert!(matches!(states[0], Some(State::Bucket(s)) if s.tokens == 2.0));
    }

    #[test]
    fn expiry_of_a_monthly_counter_is_its_month_end() {
        let spec = WindowSpec {
            window: Window::Month,
            limit: Some(5),
        };
        let (_, state) = Limit::Window(spec).charge(None, 0, 1);
        assert_eq!(Limit::Window(spec).expires_at(&state), 31 * 86_400_000_000);
    }
}
