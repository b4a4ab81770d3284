//! Where limit state lives. One trait, one hot method: a whole request's
//! debits go in, every outcome comes out, decided atomically (all charged or
//! none). Nothing above this module knows which store it talks to.
//!
//! - [`memory`]: a sharded map in this process, for a single replica.
//! - [`redis`]: Redis (single node, Cluster, Sentinel), shared by replicas.

pub mod memory;
pub mod redis;

use std::future::Future;

use crate::limit::{Debit, Outcome};

pub use memory::MemoryStore;
pub use redis::{RedisOptions, RedisStore};

/// A store's answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// One outcome per debit, in order.
    pub outcomes: Vec<Outcome>,
    /// Whether every debit was allowed and so charged.
    pub admitted: bool,
    /// The store's time of decision, microseconds since the Unix epoch.
    pub now_us: u64,
}

/// Why a store could not decide.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("backend timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("backend connection: {0}")]
    Connection(String),
    #[error("backend answered with an error: {0}")]
    Backend(String),
}

impl StoreError {
    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Timeout(_) => "timeout",
            StoreError::Connection(_) => "connection",
            StoreError::Backend(_) => "backend",
        }
    }
}

/// Limit state storage.
pub trait Store: Send + Sync + 'static {
    /// Decides and charges a request's debits atomically: either every
    /// debit is allowed and all are charged, or none is charged.
    fn charge(
        &self,
        debits: &[Debit],
    ) -> impl Future<Output = Result<BatchOutcome, StoreError>> + Send;

    /// Reads what `debits` would be told, charging nothing.
    fn peek(
        &self,
        debits: &[Debit],
    ) -> impl Future<Output = Result<BatchOutcome, StoreError>> + Send;

    /// A short name for logs and `/status`.
    fn name(&self) -> &'static str;

    /// Whether the store answers (readiness).
    fn ready(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(Ok(()))
    }

    /// Live entries held in this process (0 for a remote store).
    fn entries(&self) -> usize {
        0
    }
}

/// A shared store is a store (the sweeper and admin reads hold clones).
impl<S: Store> Store for std::sync::Arc<S> {
    fn charge(
        &self,
        debits: &[Debit],
    ) -> impl Future<Output = Result<BatchOutcome, StoreError>> + Send {
        (**self).charge(debits)
    }

    fn peek(
        &self,
        debits: &[Debit],
    ) -> impl Future<Output = Result<BatchOutcome, StoreError>> + Send {
        (**self).peek(debits)
    }

    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn ready(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).ready()
    }

    fn entries(&self) -> usize {
        (**self).entries()
    }
}

/// The store chosen at start-up.
pub enum AnyStore {
    Memory(std::sync::Arc<MemoryStore>),
    Redis(Box<RedisStore>),
}

impl Store for AnyStore {
    async fn charge(&self, debits: &[Debit]) -> Result<BatchOutcome, StoreError> {
        match self {
            AnyStore::Memory(store) => store.charge(debits).await,
            AnyStore::Redis(store) => store.charge(debits).await,
        }
    }

    async fn peek(&self, debits: &[Debit]) -> Result<BatchOutcome, StoreError> {
        match self {
            AnyStore::Memory(store) => store.peek(debits).await,
            AnyStore::Redis(store) => store.peek(debits).await,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            AnyStore::Memory(store) => store.name(),
            AnyStore::Redis(store) => store.name(),
        }
    }

    async fn ready(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(store) => store.ready().await,
            AnyStore::Redis(store) => store.ready().await,
        }
    }

    fn entries(&self) -> usize {
        match self {
            AnyStore::Memory(store) => store.entries(),
            AnyStore::Redis(store) => store.entries(),
        }
    }
}
