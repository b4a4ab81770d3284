//! The in-process decision (limiter + memory store), no network: a hot key,
//! and one million distinct keys. Also prints resident memory per live key.
//!
//! Run: `cargo bench --bench decision`. Figures, not assertions.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tollgate::clock::{ManualClock, SystemClock};
use tollgate::config::Config;
use tollgate::limit::{BucketSpec, Debit, Limit, Window, WindowSpec};
use tollgate::limiter::{Descriptor, Limiter, Options, Request};
use tollgate::store::{MemoryStore, Store};

/// The memory store never waits, so its futures finish on the first poll.
fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the memory store does not wait"),
    }
}

/// A domain whose free tier never runs dry, so every call is admitted and
/// charged (the full path: refill, charge, write, headers).
const ROOMY: &str = "domain: bench\ntiers:\n  free: { per_minute: 1000000000, monthly: 1000000000000 }\nendpoints: { /compare: 2 }\n";

fn call(user: &str) -> Request {
    Request {
        domain: "bench".into(),
        descriptors: vec![Descriptor::of(&[("user_id", user), ("path", "/identify")])],
        hits_addend: 0,
    }
}

fn limiter() -> Limiter<MemoryStore> {
    let config = Config::from_sources([("bench.yaml".into(), ROOMY.to_string())]).unwrap();
    Limiter::new(
        config,
        MemoryStore::new(Arc::new(SystemClock)),
        Options::default(),
    )
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn memory_per_key() {
    const USERS: usize = 1_000_000;
    let clock = ManualClock::at(1_798_761_540_000_000);
    let config = Config::from_sources([("bench.yaml".into(), ROOMY.to_string())]).unwrap();
    let limiter = Limiter::new(
        config,
        MemoryStore::new(Arc::new(clock)),
        Options::default(),
    );
    let before = rss_bytes();
    for i in 0..USERS {
        ready(limiter.should_rate_limit(&call(&format!("sk_live_{i:08}")))).unwrap();
    }
    let after = rss_bytes();
    let keys = limiter.store().len();
    println!(
        "memory: {USERS} users → {keys} live keys (bucket + monthly each); RSS {:.1} MiB → {:.1} MiB; {:.0} bytes per live key",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after - before) as f64 / keys as f64
    );
}

fn decisions(c: &mut Criterion) {
    if std::env::var_os("TOLLGATE_BENCH_SKIP_MEMORY").is_none() {
        memory_per_key();
    }
    let mut group = c.benchmark_group("decision");
    group.throughput(Throughput::Elements(1));

    let hot = limiter();
    let request = call("sk_hot");
    group.bench_function("hot_key", |b| {
        b.iter(|| black_box(ready(hot.should_rate_limit(black_box(&request))).unwrap()))
    });

    let headerless = Options {
        headers: tollgate::limiter::HeaderGroups::NONE,
        ..Options::default()
    };
    let bare = Limiter::new(
        Config::from_sources([("bench.yaml".into(), ROOMY.to_string())]).unwrap(),
        MemoryStore::new(Arc::new(SystemClock)),
        headerless,
    );
    group.bench_function("hot_key_no_headers", |b| {
        b.iter(|| black_box(ready(bare.should_rate_limit(black_box(&request))).unwrap()))
    });

    // The store's part alone: one user's bucket and monthly counter,
    // decided and charged atomically.
    let store = MemoryStore::new(Arc::new(SystemClock));
    let debits = [
        Debit {
            key: "{bench:u:sk_hot}:b".into(),
            limit: Limit::Bucket(BucketSpec::with_burst(1_000_000_000, 1.5)),
            cost: 1,
            gate: Default::default(),
        },
        Debit {
            key: "{bench:u:sk_hot}:m".into(),
            limit: Limit::Window(WindowSpec {
                window: Window::Month,
                limit: Some(u64::MAX / 2),
            }),
            cost: 1,
            gate: Default::default(),
        },
    ];
    group.bench_function("hot_key_store_only", |b| {
        b.iter(|| black_box(ready(store.charge(black_box(&debits))).unwrap()))
    });

    group.bench_function("1M_distinct_keys", |b| {
        let spread = limiter();
        let requests: Vec<Request> = (0..1_000_000)
            .map(|i| call(&format!("sk_{i:08}")))
            .collect();
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % requests.len();
            black_box(ready(spread.should_rate_limit(&requests[i])).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
