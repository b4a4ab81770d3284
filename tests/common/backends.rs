//! The backends every shared suite runs against, each built empty on an
//! injected clock.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;

use tollgate::clock::ManualClock;
use tollgate::limit::Debit;
use tollgate::store::{BatchOutcome, MemoryStore, RedisOptions, RedisStore, Store, StoreError};

/// Builds a fresh, empty store of one backend on a given clock.
pub trait MakeStore {
    type Store: Store;
    fn make(&self, clock: ManualClock) -> impl Future<Output = Self::Store>;
}

pub struct Memory;

impl MakeStore for Memory {
    type Store = MemoryStore;
    async fn make(&self, clock: ManualClock) -> MemoryStore {
        MemoryStore::new(Arc::new(clock))
    }
}

/// A Redis store with its own redis-server, on the injected clock (Redis
/// TIME is replaced so the suite can move time by hand).
pub struct Redis;

pub struct RedisWithServer {
    store: RedisStore,
    _server: super::redis::RedisServer,
}

impl Store for RedisWithServer {
    async fn charge(&self, debits: &[Debit]) -> Result<BatchOutcome, StoreError> {
        self.store.charge(debits).await
    }
    async fn peek(&self, debits: &[Debit]) -> Result<BatchOutcome, StoreError> {
        self.store.peek(debits).await
    }
    fn name(&self) -> &'static str {
        "redis"
    }
}

impl MakeStore for Redis {
    type Store = RedisWithServer;
    async fn make(&self, clock: ManualClock) -> RedisWithServer {
        let server = super::redis::RedisServer::start();
        let options = RedisOptions {
            timeout: std::time::Duration::from_secs(2),
            clock: Some(Arc::new(clock)),
            ..RedisOptions::default()
        };
        let store = RedisStore::connect(&server.url(), options).await.unwrap();
        RedisWithServer {
            store,
            _server: server,
        }
    }
}

/// Runs every listed case of a suite's `cases` module against one backend:
/// `backend_suite!(memory, Memory; case_a, case_b);`
#[macro_export]
macro_rules! backend_suite {
    ($backend:ident, $make:expr; $($case:ident),* $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    cases::$case($make).await;
                }
            )*
        }
    };
}
