//! A stand-in for Stripe's events API on loopback, for `scripts/backfill-bench.sh`: serves
//! `GET /v1/events` (the same fake the integration tests read, `tests/it/fake_provider_api.rs`)
//! with N test-mode events created a second apart up to a minute ago, and prints its base URL.
//!
//! `cargo run --release --example fake_stripe_api -- 10000`

#[path = "../tests/it/fake_provider_api.rs"]
mod fake_provider_api;

use fake_provider_api::{FakeProviderApi, StripeEvent};

#[tokio::main]
async fn main() {
    let n: i64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let api = FakeProviderApi::start().await;
    api.set_stripe_events(
        (0..n)
            .map(|i| StripeEvent {
                id: format!("evt_bench{i:08}"),
                created: now - 60 - n + i,
                kind: "invoice.paid".into(),
            })
            .collect(),
    );
    println!("{}", api.base());
    std::future::pending::<()>().await;
}
