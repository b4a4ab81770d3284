//! The Redis store: one Lua script (`decide.lua`) decides and charges all of
//! a request's limits that live on one node in one round trip, so every
//! replica shares the same buckets and counters. Time is Redis `TIME`: one
//! clock for all replicas.
//!
//! On Redis Cluster a request's keys can sit on several nodes (two users in
//! one request). Each node's group is decided atomically; across nodes the
//! groups run in order and, when a later group rejects, the groups already
//! charged are refunded by the same script (see README, Design decisions).
//!
//! A key known to be over limit until a time T (the bucket cannot refill
//! earlier, the month cannot end earlier) is answered from this replica's
//! memory until T, without a round trip.

mod connection;
mod shortcut;

use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use connection::Connection;
pub use connection::RedisUrl;
use shortcut::Shortcut;

use super::{BatchOutcome, Store, StoreError};
use crate::clock::Clock;
use crate::limit::{Debit, Limit, Outcome, Window};

/// The decision script; see its header for KEYS and ARGV.
pub const DECIDE_LUA: &str = include_str!("decide.lua");

/// Extra time every key lives past the moment its state stops mattering
/// (plus up to a second of jitter).
const TTL_SLACK_MS: u64 = 1000;

/// How to reach and use Redis.
#[derive(Clone)]
pub struct RedisOptions {
    /// Prepended to every key (`tollgate:`).
    pub prefix: String,
    /// Timeout of one backend call.
    pub timeout: Duration,
    /// `None`: Redis `TIME` (production). `Some`: an injected clock, for
    /// tests that move time by hand.
    pub clock: Option<Arc<dyn Clock>>,
    /// This replica's own clock: it only times the local shortcut (how long
    /// Redis said a key stays over limit), never a decision.
    pub local_clock: Arc<dyn Clock>,
    /// PEM of a private CA for `rediss://` (managed Redis); `None`: web PKI.
    pub ca_cert: Option<Vec<u8>>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "tollgate:".into(),
            timeout: Duration::from_millis(10),
            clock: None,
            local_clock: Arc::new(crate::clock::MonotonicClock::default()),
            ca_cert: None,
        }
    }
}

pub struct RedisStore {
    connection: Connection,
    script: Script,
    options: RedisOptions,
    shortcut: Shortcut,
    clustered: bool,
}

/// What the script is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Charge,
    Peek,
    Refund,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Charge => "charge",
            Mode::Peek => "peek",
            Mode::Refund => "refund",
        }
    }
}

impl RedisStore {
    /// Connects (lazily for a single node: a Redis that is down at start
    /// is retried on every call, and the failure policy answers meanwhile).
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let url = RedisUrl::parse(url).map_err(StoreError::Connection)?;
        let connection = Connection::open(&url, options.timeout, options.ca_cert.as_deref())
            .await
            .map_err(from_redis)?;
        Ok(Self {
            connection,
            script: Script::new(DECIDE_LUA),
            clustered: matches!(url, RedisUrl::Cluster(_)),
            shortcut: Shortcut::new(
                options
                    .clock
                    .clone()
                    .unwrap_or_else(|| Arc::clone(&options.local_clock)),
            ),
            options,
        })
    }

    /// Whether Redis answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        tokio::time::timeout(
            self.options.timeout.max(Duration::from_millis(100)),
            self.connection.ping(),
        )
        .await
        .map_err(|_| StoreError::Timeout(self.options.timeout))?
        .map_err(from_redis)
    }

    /// Runs the script once for debits that share a node.
    async fn run(&self, mode: Mode, debits: &[&Debit]) -> Result<BatchOutcome, StoreError> {
        let mut invocation = self.script.prepare_invoke();
        for debit in debits {
            invocation.key(format!("{}{}", self.options.prefix, debit.key));
        }
        invocation.arg(mode.as_str());
        match &self.options.clock {
            Some(clock) => invocation.arg(clock.now_us()),
            None => invocation.arg(""),
        };
        // Jitter spreads the expiry of keys written together.
        let jitter = u64::from(
            std::time::SystemTime::UNIX_EPOCH
                .elapsed()
                .map_or(0, |d| d.subsec_nanos())
                % 1000,
        );
        invocation.arg(TTL_SLACK_MS + jitter);
        for debit in debits {
            match debit.limit {
                Limit::Bucket(spec) => invocation
                    .arg("b")
                    .arg(debit.cost)
                    .arg(spec.capacity)
                    .arg(spec.per_minute)
                    .arg(debit.gate.code()),
                Limit::Window(spec) => {
                    let window = match spec.window {
                        Window::Month => 0,
                        Window::Fixed { seconds } => seconds.max(1),
                    };
                    let limit = spec
                        .limit
                        .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
                    invocation
                        .arg("w")
                        .arg(debit.cost)
                        .arg(window)
                        .arg(limit)
                        .arg(debit.gate.code())
                }
            };
        }
        let reply = self
            .connection
            .invoke(&invocation)
            .await
            .map_err(from_redis)?;
        let numbers: Vec<i64> =
            redis::from_redis_value(reply).map_err(|e| StoreError::Backend(e.to_string()))?;
        parse_reply(
            &numbers,
            if mode == Mode::Refund {
                0
            } else {
                debits.len()
            },
        )
    }

    /// Charges (or peeks at) debits that may sit on several nodes.
    async fn decide(&self, debits: &[Debit], mode: Mode) -> Result<BatchOutcome, StoreError> {
        // One node (not clustered, or one hash tag): one script call.
        let groups = if self.clustered {
            self.groups(debits)
        } else {
            Vec::new()
        };
        if groups.len() <= 1 {
            let all: Vec<&Debit> = debits.iter().collect();
            return self.run(mode, &all).await;
        }
        let mut outcomes = vec![None; debits.len()];
        let mut admitted = true;
        let mut now_us = 0;
        // Debits charged so far (allowed members of admitted groups): what a
        // later rejection or error must give back.
        let mut charged: Vec<&Debit> = Vec::new();
        for group in &groups {
            let members: Vec<&Debit> = group.iter().map(|&i| &debits[i]).collect();
            let group_mode = if admitted { mode } else { Mode::Peek };
            let result = match self.run(group_mode, &members).await {
                Ok(result) => result,
                Err(error) => {
                    self.refund(&charged).await;
                    return Err(error);
                }
            };
            now_us = result.now_us;
            if result.admitted && group_mode == Mode::Charge {
                charged.extend(
                    members
                        .iter()
                        .zip(&result.outcomes)
                        .filter(|(_, o)| o.allowed)
                        .map(|(d, _)| *d),
                );
            }
            admitted &= result.admitted;
            for (&i, outcome) in group.iter().zip(result.outcomes) {
                outcomes[i] = Some(outcome);
            }
        }
        if !admitted {
            self.refund(&charged).await;
        }
        Ok(BatchOutcome {
            outcomes: outcomes
                .into_iter()
                .map(|o| o.expect("every group ran"))
                .collect(),
            admitted,
            now_us,
        })
    }

    /// Gives charged debits back, group by group; a failure is logged (the
    /// charge then stands until its window or refill passes).
    async fn refund(&self, charged: &[&Debit]) {
        let debits: Vec<Debit> = charged.iter().map(|d| (*d).clone()).collect();
        for group in self.groups(&debits) {
            let members: Vec<&Debit> = group.iter().map(|&i| &debits[i]).collect();
            if let Err(error) = self.run(Mode::Refund, &members).await {
                tracing::warn!(%error, "refund of a cross-node request failed");
            }
        }
    }

    /// `decide` within the backend timeout, one deadline for every round trip.
    async fn decide_in_time(
        &self,
        debits: &[Debit],
        mode: Mode,
    ) -> Result<BatchOutcome, StoreError> {
        tokio::time::timeout(self.options.timeout, self.decide(debits, mode))
            .await
            .map_err(|_| StoreError::Timeout(self.options.timeout))?
    }

    /// Debit indices grouped by hash tag (Cluster only).
    fn groups(&self, debits: &[Debit]) -> Vec<Vec<usize>> {
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, debit) in debits.iter().enumerate() {
            let tag = hash_tag(&debit.key);
            match groups.iter_mut().find(|(t, _)| *t == tag) {
                Some((_, members)) => members.push(i),
                None => groups.push((tag, vec![i])),
            }
        }
        groups.into_iter().map(|(_, members)| members).collect()
    }
}

impl Store for RedisStore {
    async fn charge(&self, debits: &[Debit]) -> Result<BatchOutcome, StoreError> {
        if let Some(known) = self.shortcut.answer(debits) {
            return Ok(known);
        }
        let outcome = self.decide_in_time(debits, Mode::Charge).await?;
        if !outcome.admitted {
            self.shortcut.remember(debits, &outcome);
        }
        Ok(outcome)
    }

    async fn peek(&self, debits: &[Debit]) -> Result<BatchOutcome, StoreError> {
        self.decide_in_time(debits, Mode::Peek).await
    }

    fn name(&self) -> &'static str {
        "redis"
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.ping().await
    }
}

/// The part of a key Redis Cluster hashes: the first `{…}`, as Redis reads it.
fn hash_tag(key: &str) -> &str {
    key.find('{')
        .and_then(|open| {
            key[open + 1..]
                .find('}')
                .map(|len| &key[open + 1..open + 1 + len])
        })
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key)
}

fn parse_reply(numbers: &[i64], debits: usize) -> Result<BatchOutcome, StoreError> {
    if numbers.len() != 2 + 4 * debits {
        return Err(StoreError::Backend(format!(
            "script replied with {} numbers for {debits} debits",
            numbers.len()
        )));
    }
    let unsigned = |n: i64| u64::try_from(n).unwrap_or(0);
    let outcomes = numbers[2..]
        .chunks_exact(4)
        .map(|o| Outcome {
            allowed: o[0] == 1,
            remaining: if o[1] < 0 { u64::MAX } else { unsigned(o[1]) },
            reset_us: unsigned(o[2]),
            retry_us: unsigned(o[3]),
        })
        .collect();
    Ok(BatchOutcome {
        outcomes,
        admitted: numbers[0] == 1,
        now_us: unsigned(numbers[1]),
    })
}

fn from_redis(error: redis::RedisError) -> StoreError {
    if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
    {
        StoreError::Connection(error.to_string())
    } else {
        StoreError::Backend(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_as_redis_reads_them() {
        assert_eq!(hash_tag("tollgate:{api:u:sk}:b"), "api:u:sk");
        assert_eq!(hash_tag("tollgate:{api:u:sk}:m"), "api:u:sk");
        assert_eq!(hash_tag("plain"), "plain");
        assert_eq!(hash_tag("{}x"), "{}x");
    }

    #[test]
    fn replies_are_checked() {
        let ok = parse_reply(&[1, 5, 1, -1, 7, 0], 1).unwrap();
        assert!(ok.admitted);
        assert_eq!(ok.outcomes[0].remaining, u64::MAX, "-1 = unlimited");
        assert!(parse_reply(&[1, 5], 1).is_err());
    }
}
