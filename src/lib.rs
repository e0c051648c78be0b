//! stagehook: a staging webhook receiver in one binary.
//!
//! The major components:
//!
//! - [`config`]: settings, their defaults, and layering (file, then environment, then flags).
//! - [`http`]: the warp routes, guards, security headers and JSON errors; the only place that
//!   knows HTTP.
//! - [`providers`]: one file per provider behind the [`providers::Provider`] trait: pure
//!   verification, parsing and answers.
//! - [`ratelimit`]: the per-IP sliding-window limiter.
//! - [`store`]: the sled audit trail and its single group-commit writer.
//! - [`clock`], [`secret`]: the time source and the credential type.
//!
//! [`App::open`] builds everything from a [`Config`]; [`App::serve`] takes an already-bound
//! listener and a shutdown future, so tests bind port 0 and run the real server in-process.

pub mod cli;
pub mod clock;
pub mod config;
pub mod http;
pub mod providers;
pub mod ratelimit;
pub mod secret;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

pub use clock::Clock;
pub use config::Config;
use http::{AppState, Endpoint};
use providers::stripe::Stripe;
use providers::twilio::Twilio;
use ratelimit::RateLimiter;
use secret::Secret;
use store::{Store, StoreError, StoreOptions};

/// How often idle IPs leave the rate limiter.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// A ready-to-serve stagehook: configuration checked, store open.
pub struct App {
    state: Arc<AppState>,
}

impl App {
    pub fn open(config: Config, clock: Clock) -> Result<App, StoreError> {
        let store = Store::open(
            &config.server.data_dir,
            StoreOptions {
                cache_bytes: config.store.cache_mb * 1024 * 1024,
                rejection_log_size: config.store.rejection_log_size,
            },
            clock.clone(),
        )?;
        let stripe = config.providers.stripe.clone().unwrap_or_default();
        let twilio = config.providers.twilio.clone().unwrap_or_default();
        let endpoints = vec![
            Endpoint {
                path: "stripe",
                configured: stripe.secret.is_some(),
                provider: Arc::new(Stripe {
                    secret: stripe.secret.unwrap_or_else(|| Secret::new("")),
                    tolerance_s: stripe.tolerance_seconds as i64,
                }),
            },
            Endpoint {
                path: "sms",
                configured: twilio.auth_token.is_some(),
                provider: Arc::new(Twilio { auth_token: twilio.auth_token.unwrap_or_else(|| Secret::new("")) }),
            },
        ];
        let limiter =
            RateLimiter::new(config.limits.rate_limit_per_minute, config.limits.rate_limit_max_ips, clock.clone());
        let trusted_proxies = config.trusted_proxies();
        let state = AppState { config, endpoints, limiter, store, clock, started: Instant::now(), trusted_proxies };
        Ok(App { state: Arc::new(state) })
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// The whole HTTP surface as a warp filter, for in-process use (benchmarks, `warp::test`).
    pub fn routes(
        &self,
    ) -> impl warp::Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
        http::routes(self.state.clone())
    }

    /// `(provider name, path, configured)` for each ingest endpoint.
    pub fn endpoints(&self) -> Vec<(String, String, bool)> {
        self.state
            .endpoints
            .iter()
            .map(|e| (e.provider.name().to_string(), format!("/staging/webhooks/{}", e.path), e.configured))
            .collect()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish,
    /// and flushes the store.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) {
        let state = self.state;
        let sweeper = {
            let state = state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(SWEEP_EVERY);
                loop {
                    tick.tick().await;
                    state.limiter.sweep();
                }
            })
        };
        // The server stops accepting when `shutdown` fires and then waits for open connections;
        // a client that never finishes its request must not hold the store open forever.
        let stopping = Arc::new(tokio::sync::Notify::new());
        let signal = {
            let stopping = stopping.clone();
            async move {
                shutdown.await;
                stopping.notify_one();
            }
        };
        let grace = Duration::from_secs(state.config.server.shutdown_grace_seconds);
        let server = warp::serve(http::routes(state.clone())).incoming(listener).graceful(signal).run();
        tokio::select! {
            () = server => {}
            () = async { stopping.notified().await; tokio::time::sleep(grace).await } => {
                tracing::warn!("requests still open after {grace:?}; closing them");
            }
        }
        sweeper.abort();
        if let Err(e) = state.store.shutdown().await {
            tracing::error!(error = %e, "store shutdown failed");
        }
    }
}
