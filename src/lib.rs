//! stagehook: a staging webhook receiver in one binary.
//!
//! The major components:
//!
//! - [`config`]: settings, their defaults, and layering (file, then environment, then flags).
//! - [`http`]: the warp routes, guards, security headers and JSON errors; the only place that
//!   knows HTTP.
//! - [`providers`]: one file per provider behind the [`providers::Provider`] trait: pure
//!   verification, parsing and answers.
//! - [`ratelimit`]: the per-client limiter, exact over any 60 s (IPv6 clients by prefix).
//! - [`redis`]: the rate limit and duplicate claims shared with other instances through Redis.
//! - [`store`]: the sled audit trail, the delivery queue and its single group-commit writer.
//! - [`delivery`]: the engine that hands each event to the app under test, with retries and a
//!   circuit breaker per provider.
//! - [`retention`]: the background clean-up of old events.
//! - [`alerts`]: the `[[alerts]]` rules, evaluated every second, and their notifiers, whose
//!   messages are delivered through the engine like events.
//! - [`cli`]: the command layer: a module per command (its flags, its run, how it ended), the
//!   exit codes and the one reporter of failures, as text or JSON.
//! - [`send`]: `stagehook send`, signed test events from the providers' own fixtures (or from
//!   an export).
//! - [`tail`]: `stagehook tail`, the live stream printed a line a change.
//! - [`listen`]: `stagehook listen`, a shared staging stagehook's events delivered to the app on
//!   this machine, signed afresh with its local secret, resuming from the store.
//! - [`mcp`]: `stagehook mcp`, a Model Context Protocol server over stdio whose tools read and
//!   act on a running stagehook through its HTTP API.
//! - [`filter`]: the event list's filters read from a query string or flags, for every caller.
//! - [`export`]: events as NDJSON lines out of a store (`/events/export`, `stagehook export`)
//!   and back in (`stagehook import`).
//! - [`clock`], [`secret`], [`duration`]: the time source, the credential type and durations as
//!   settings write them.
//! - [`finding`]: what a check of a configuration finds, shared by the validator and the
//!   providers' own checks.
//! - [`redact`]: what stands in for credentials in stored headers and URLs when they are shown.
//!
//! [`App::open`] builds everything from a [`Config`] ([`App::open_built`] from the providers its
//! check built, as `serve` does); [`App::serve`] takes an already-bound
//! listener and a shutdown future, so tests bind port 0 and run the real server in-process.

pub mod alerts;
pub mod allocator;
pub mod backfill;
pub mod chaos;
pub mod check_app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod duration;
pub mod export;
pub mod filter;
pub mod finding;
pub mod http;
pub mod listen;
pub mod mcp;
pub mod providers;
pub mod ratelimit;
pub mod redact;
pub mod redis;
pub mod retention;
pub mod secret;
pub mod send;
pub mod store;
pub mod tail;
pub mod text;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

pub use clock::Clock;
pub use config::Config;
use delivery::breaker::Breaker;
use delivery::{Engine, Lane};
use http::AppState;
use ratelimit::RateLimiter;
use store::{Store, StoreOptions};

/// The store's options as the configuration sets them: for `serve`, and for the commands that
/// open a stopped stagehook's data folder (`export`, `import`).
pub fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        cache_bytes: config.store.cache_mb * 1024 * 1024,
        rejection_log_size: config.store.rejection_log_size,
        log_segment_bytes: store::DEFAULT_SEGMENT_BYTES,
        tree_flush_every_ms: Some(store::TREE_FLUSH_EVERY_MS),
    }
}

/// The run of a property test beside the code: `cases` random inputs (or `PROPTEST_CASES`, to
/// search longer), and nothing written to disk when one fails (see tests/it/fuzz.rs).
#[cfg(test)]
pub(crate) fn proptest_cases(cases: u32) -> proptest::test_runner::Config {
    let default = proptest::test_runner::Config::default();
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() { default.cases } else { cases };
    proptest::test_runner::Config { cases, failure_persistence: None, ..default }
}

/// Why stagehook could not start.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// How often a serving stagehook records that it is alive ([`store::Store::heartbeat`]): the
/// next start knows within this much when the previous run stopped.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// How often idle IPs leave the rate limiters, and expired sessions the session table.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// A ready-to-serve stagehook: configuration checked, store open.
pub struct App {
    state: Arc<AppState>,
    /// Where `GET /metrics` is also served, alone and without the token (`server.metrics_bind`).
    metrics: Option<TcpListener>,
}

impl App {
    /// Builds the providers (see [`Config::build`]) and opens the app; for a configuration whose
    /// providers are built already, [`App::open_built`].
    pub fn open(config: Config, clock: Clock) -> Result<App, StartError> {
        let endpoints = config.build()?;
        let origins = config::Origins::new(&config.server)?;
        App::open_built(config, endpoints, origins, clock)
    }

    /// Opens the store and assembles the app around providers built from `config` once, at
    /// startup, by [`Config::build`], and the hosts and origins read with them
    /// ([`Config::checked`]).
    pub fn open_built(
        config: Config,
        endpoints: Vec<providers::Endpoint>,
        origin: config::Origins,
        clock: Clock,
    ) -> Result<App, StartError> {
        let chaos = config.chaos()?;
        let store =
            Store::open_with_chaos(&config.server.data_dir, store_options(&config), clock.clone(), chaos.clone())?;
        // Before this run's first heartbeat overwrites it: when the previous run was last alive.
        // One that cannot be read is not worth refusing to start over: it is then unknown.
        let down_since_ms = store.last_heartbeat().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the previous run's last heartbeat");
            None
        });
        let mut lanes = Vec::new();
        for endpoint in &endpoints {
            let provider = endpoint.provider.clone();
            let targets = config.targets(provider.name()).expect("every built provider has a section");
            let breaker = Breaker::new(
                provider.name(),
                config.circuit_breaker.failure_threshold,
                config.circuit_breaker.recovery_timeout.0.as_millis() as i64,
            );
            let chaotic = chaos.contains_key(provider.name());
            lanes.push(Lane::new(provider, targets, breaker).of_kind(endpoint.kind).with_chaos(chaotic));
        }
        // A lane per notifier, after the providers', with its own breaker and the global retry
        // policy: notifications wait out an outage of their receiver like deliveries do.
        for (name, notifier) in &config.notifiers {
            let lane = alerts::notify::lane_name(name);
            let targets = config::Targets {
                urls: vec![alerts::notify::job_target(name)],
                routes: Vec::new(),
                timeout: alerts::notify::TIMEOUT,
                retry: config.retry.clone(),
                forward_headers: Vec::new(),
            };
            let breaker = Breaker::new(
                &lane,
                config.circuit_breaker.failure_threshold,
                config.circuit_breaker.recovery_timeout.0.as_millis() as i64,
            );
            lanes.push(Lane::notifier(lane, alerts::notify::Signer::new(notifier), targets, breaker));
        }
        let engine = Arc::new(
            Engine::new(store.clone(), clock.clone(), lanes, config.delivery.concurrency)?
                .capturing(config.delivery.capture_body_bytes),
        );
        let alerts = Arc::new(alerts::Alerts::new(&config, store.clone(), engine.clone(), clock.clone()));
        let limiter = RateLimiter::new(
            config.limits.rate_limit_per_minute,
            config.limits.rate_limit_max_ips,
            config.limits.ipv6_prefix,
            clock.clone(),
        );
        let auth_failures = RateLimiter::new(
            http::auth::AUTH_FAILURES_PER_MINUTE,
            config.limits.rate_limit_max_ips,
            config.limits.ipv6_prefix,
            clock.clone(),
        );
        let redis = crate::redis::Redis::open(&config.redis_settings(), clock.clone())?;
        let sessions = http::session::Sessions::new(config.server.session_ttl.0, clock.clone());
        let trusted_proxies = config.trusted_proxies();
        let env = config::validate::isolation_env()
            .into_iter()
            .filter_map(|name| std::env::var(name).ok().map(|v| (name.to_string(), v)))
            .collect();
        let state = AppState {
            config,
            endpoints,
            limiter,
            redis,
            auth_failures,
            sessions,
            diagnoses: Default::default(),
            streams: Default::default(),
            listeners: Default::default(),
            backfills: Default::default(),
            check_runs: Default::default(),
            stopping: tokio::sync::watch::Sender::new(false),
            store,
            engine,
            alerts,
            clock,
            started: Instant::now(),
            trusted_proxies,
            env,
            connections: Default::default(),
            origin,
            listening: Default::default(),
            shutting_down: Default::default(),
            down_since_ms,
        };
        Ok(App { state: Arc::new(state), metrics: None })
    }

    /// Serves `GET /metrics` on `listener` too, without the admin token (`server.metrics_bind`,
    /// bound by the caller like the main listener).
    pub fn with_metrics_listener(mut self, listener: TcpListener) -> App {
        self.metrics = Some(listener);
        self
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// When the previous run of this data folder was last alive (its last heartbeat, in Unix
    /// ms), read at open; `None` when no run ever served from it.
    pub fn down_since_ms(&self) -> Option<i64> {
        self.state.down_since_ms
    }

    /// The delivery engine, whose [`delivery::Engine::passes`] lets an in-process caller wait
    /// for the engine to have looked at the queue rather than for a length of time.
    pub fn engine(&self) -> &Arc<delivery::Engine> {
        &self.state.engine
    }

    /// The alerts' evaluator, whose [`alerts::Alerts::evaluations`] lets an in-process caller
    /// wait for the rules to have been evaluated rather than for a length of time.
    pub fn alerts(&self) -> &Arc<alerts::Alerts> {
        &self.state.alerts
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

    /// Takes this instance's `server.instance_id` among the instances sharing Redis, before
    /// serving; refused while another running stagehook holds it (see [`redis::Redis::join`]).
    /// An app that skips this takes the id when its Redis watcher first pings.
    pub async fn join_redis(&self) -> Result<(), crate::redis::NameTaken> {
        match &self.state.redis {
            Some(shared) => shared.join().await,
            None => Ok(()),
        }
    }

    /// The shared Redis's state (`up` once a call after [`App::join_redis`] was answered), or
    /// `None` when neither the rate limit nor duplicates use it.
    pub fn redis_state(&self) -> Option<&'static str> {
        self.state.redis.as_ref().map(|r| r.state().as_str())
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish,
    /// and flushes the store.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) {
        let state = self.state;
        // Read-only: stopped with the rest, without a grace of its own.
        let metrics = self.metrics.map(|l| {
            let limits = http::server::Limits::from_config(&state.config.server);
            let routes = http::metrics_routes(state.clone());
            tokio::spawn(http::server::serve(l, routes, limits, Arc::default(), std::future::pending()))
        });
        if let Ok(addr) = listener.local_addr() {
            let _ = state.listening.set(addr);
        }
        let sweeper = {
            let state = state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(SWEEP_EVERY);
                loop {
                    tick.tick().await;
                    state.limiter.sweep();
                    state.auth_failures.sweep();
                    state.sessions.sweep();
                }
            })
        };
        // A small unflushed write every few seconds, off the request path: a failed one is
        // logged and the next tries again.
        let heartbeat = {
            let (store, clock) = (state.store.clone(), state.clock.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
                loop {
                    tick.tick().await;
                    if let Err(e) = store.heartbeat(clock.now_ms()).await {
                        tracing::warn!(error = %e, "could not record the heartbeat");
                    }
                }
            })
        };
        let watcher = state.redis.clone().map(|redis| tokio::spawn(redis.watch()));
        let (stop_delivery, stop_rx) = tokio::sync::watch::channel(false);
        let grace = Duration::from_secs(state.config.server.shutdown_grace_seconds);
        let delivery = tokio::spawn(state.engine.clone().run(stop_rx.clone(), grace));
        let retention =
            tokio::spawn(retention::run(state.store.clone(), state.config.retention.clone(), state.clock.clone()));
        state.alerts.mark_start();
        // The messages link to the dashboard, at stagehook's own base URL.
        let alerting = tokio::spawn(state.alerts.clone().run(format!("{}/", state.base_url()), stop_rx.clone()));
        // Recovering what the providers sent while stagehook was down, then periodically, in
        // the background: ingest never waits for it.
        let reconcile = {
            let (backfills, store, clock) = (state.backfills.clone(), state.store.clone(), state.clock.clone());
            let endpoints: Arc<[providers::Endpoint]> = state.endpoints.clone().into();
            let (down_since_ms, settings, stop) = (state.down_since_ms, state.config.backfill.clone(), stop_rx.clone());
            tokio::spawn(async move {
                use backfill::schedule;
                if let Some(from_ms) = down_since_ms {
                    let (b, e, s, c) = (backfills.clone(), endpoints.clone(), store.clone(), clock.clone());
                    schedule::after_downtime(b, e, s, c, from_ms, settings.on_start).await;
                }
                if let Some(every) = settings.every() {
                    schedule::every(backfills, endpoints, store, clock, every, stop).await;
                }
            })
        };
        // The server stops accepting when `shutdown` fires and then waits for open requests
        // for at most `grace`: a client that never finishes its request must not hold the store
        // open for ever.
        let mut limits = http::server::Limits::from_config(&state.config.server);
        limits.max_connections =
            http::server::fit_to_fd_limit(limits.max_connections, state.config.delivery.concurrency);
        let shutdown = {
            let state = state.clone();
            async move {
                shutdown.await;
                state.shutting_down.store(true, std::sync::atomic::Ordering::Release);
                state.stopping.send_replace(true);
            }
        };
        http::server::serve(listener, http::routes(state.clone()), limits, state.connections.clone(), shutdown).await;
        sweeper.abort();
        heartbeat.abort();
        reconcile.abort();
        retention.abort();
        if let Some(m) = metrics {
            m.abort();
        }
        if let Some(w) = watcher {
            w.abort();
        }
        // A restart under this name need not wait for it to expire.
        if let Some(redis) = &state.redis {
            redis.leave().await;
        }
        // Deliveries get the same grace as requests; unfinished ones stay queued.
        let _ = stop_delivery.send(true);
        let _ = alerting.await;
        let _ = delivery.await;
        // The last sign of life is the stop itself, so the next start knows it to the moment.
        if let Err(e) = state.store.heartbeat(state.clock.now_ms()).await {
            tracing::warn!(error = %e, "could not record the last heartbeat");
        }
        if let Err(e) = state.store.shutdown().await {
            tracing::error!(error = %e, "store shutdown failed");
        }
    }
}
