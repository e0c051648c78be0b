//! What several stagehooks share through Redis: the rate limit's counts and the claims that
//! make an event retried onto another instance a duplicate there.
//!
//! Each operation is one Lua script run with `EVALSHA` (the client loads it once per server,
//! and again after a restart emptied the script cache): one round trip, atomic in Redis, over
//! one multiplexed connection that the `redis` crate's `ConnectionManager` re-establishes with
//! exponential backoff. Every call is bounded by `redis.timeout`.
//!
//! Redis is either up or down here. A failed or late call marks it down at once, and then no
//! request waits on it: every call answers [`Unavailable`] at once until [`Shared::watch`],
//! which pings it (every [`UP_PING`] while up; from [`DOWN_PING_MIN`] doubling to
//! [`DOWN_PING_MAX`] while down), finds it answering again. What a request does with
//! [`Unavailable`] is `redis.on_error`'s choice, made in `http/ingest.rs`: act alone or refuse.
//! A connection that broke under a call or a ping (Redis restarted since its last use) is no
//! outage: the request is sent once more on a new one first. So up means what a claim finds:
//! while up, a claim goes to Redis, never to this instance alone because of a stale connection.
//!
//! The keys, all under `redis.key_prefix`: `rate:<client>` (a sorted set of acceptance times,
//! expiring a window after the last) and `claim:<provider>:<event id>` (`p/<instance>/<token>`
//! while pending, `c/<id>/<instance>` once committed, expiring after `dedup.pending_expiry` and
//! `retention.max_age`).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, Script, ScriptInvocation};

use crate::clock::Clock;
use crate::config::{Config, DedupBackend, LimitsBackend, OnError};
use crate::finding::{Finding, Severity};
use crate::ratelimit::{self, Decision};

pub mod testing;

/// How often a Redis that answers is pinged, so that health shows an outage with no traffic.
pub const UP_PING: Duration = Duration::from_secs(2);
/// The first wait before pinging a Redis that stopped answering; it doubles up to the next.
pub const DOWN_PING_MIN: Duration = Duration::from_millis(250);
pub const DOWN_PING_MAX: Duration = Duration::from_secs(2);
/// While Redis stays down, the warning is repeated at most this often.
const WARN_EVERY_MS: i64 = 60_000;

static LIMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("limit.lua")));
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("claim.lua")));
static COMMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("commit.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("release.lua")));

/// Redis did not answer (down, late, or an error): the caller acts alone or refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// What a claim on an event found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nobody held it: this instance does now, and must [`Shared::commit`] or
    /// [`Shared::release`] it.
    Ours(Pending),
    /// Another instance stored it, as `id`.
    Elsewhere { id: String, instance: String },
    /// This instance stored it: its own store says so, with its own id.
    Here,
    /// Another instance claimed it and has not stored it yet: retry after this long.
    InProgress { retry_after_s: u64 },
}

/// A claim this instance holds, until it is committed or released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    key: String,
    value: String,
}

/// The state shown by `/stats`, `/staging/webhooks/test` and the dashboard.
#[derive(Debug, Clone, Copy)]
pub struct Status {
    pub up: bool,
    pub on_error: OnError,
    pub limits: bool,
    pub dedup: bool,
    /// Events answered as duplicates of another instance's.
    pub duplicates_elsewhere: u64,
    /// Events answered `409 in_progress` because another instance held their claim.
    pub in_progress: u64,
    /// Calls that failed or came too late (each marks Redis down).
    pub errors: u64,
}

pub struct Shared {
    conn: ConnectionManager,
    /// The URL with its credentials masked, for log lines and findings.
    shown_url: String,
    prefix: String,
    on_error: OnError,
    timeout: Duration,
    limits: bool,
    dedup: bool,
    instance: String,
    pending_ms: u64,
    /// How long a committed claim lasts: as long as the event is kept (0: no expiry).
    committed_ms: u64,
    up: AtomicBool,
    /// When the last "Redis is down" warning was logged (ms since the epoch).
    warned_at: AtomicI64,
    /// Makes each acceptance a member of its own in the limiter's set; starts at random so that
    /// a restarted instance does not reuse the members of its previous life.
    seq: AtomicU64,
    duplicates_elsewhere: AtomicU64,
    in_progress: AtomicU64,
    errors: AtomicU64,
    clock: Clock,
}

/// Checks that `url` is one the client can connect to, without connecting; the error says why
/// not.
pub fn check_url(url: &str) -> Result<(), impl std::fmt::Display> {
    redis::Client::open(url).map(|_| ())
}

/// Why a ping got no answer, for the log.
#[derive(Debug)]
struct NoAnswer(String);

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Shared {
    /// The shared backends `config` asks for; `None` when both stay in this process. Connects
    /// lazily: a Redis that is down at startup is tried again by [`Shared::watch`]. Needs a
    /// tokio runtime (the connection's reader is a task).
    pub fn open(config: &Config, clock: Clock) -> Result<Option<Arc<Shared>>, crate::StartError> {
        let limits = config.limits.backend == LimitsBackend::Redis;
        let dedup = config.dedup.backend == DedupBackend::Redis;
        if !limits && !dedup {
            return Ok(None);
        }
        let url = config.redis.url.as_deref().ok_or("redis.url is not set")?;
        let timeout = config.redis.timeout.0;
        let client = redis::Client::open(url)?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            // Each call is bounded by `call` itself; a late answer is dropped there, and the
            // connection stays up for the calls behind it.
            .set_response_timeout(None)
            .set_min_delay(DOWN_PING_MIN)
            .set_max_delay(DOWN_PING_MAX);
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("the Redis connection needs a tokio runtime".into());
        }
        let conn = ConnectionManager::new_lazy_with_config(client, manager)?;
        Ok(Some(Arc::new(Shared {
            conn,
            shown_url: crate::redact::url(url),
            prefix: config.redis.key_prefix.clone(),
            on_error: config.redis.on_error,
            timeout,
            limits,
            dedup,
            instance: config.server.instance_id().to_string(),
            pending_ms: config.dedup.pending_expiry.0.as_millis() as u64,
            committed_ms: config.retention.max_age.0.as_millis().min(i64::MAX as u128) as u64,
            // Until a call fails: the first requests try Redis rather than wait for a ping.
            up: AtomicBool::new(true),
            warned_at: AtomicI64::new(i64::MIN),
            seq: AtomicU64::new(fastrand::u64(..)),
            duplicates_elsewhere: AtomicU64::new(0),
            in_progress: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            clock,
        })))
    }

    /// Whether the rate limit is shared.
    pub fn limits(&self) -> bool {
        self.limits
    }

    /// Whether duplicates are decided across instances.
    pub fn dedup(&self) -> bool {
        self.dedup
    }

    pub fn on_error(&self) -> OnError {
        self.on_error
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn status(&self) -> Status {
        Status {
            up: self.is_up(),
            on_error: self.on_error,
            limits: self.limits,
            dedup: self.dedup,
            duplicates_elsewhere: self.duplicates_elsewhere.load(Ordering::Relaxed),
            in_progress: self.in_progress.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    /// Counts one request from the client `bucket` names (an address, an IPv6 prefix, or a
    /// proxy's name for it, as [`ratelimit::RateLimiter`] keys it) against `limit` in any 60 s,
    /// for every instance at once, and decides as the in-memory limiter would.
    pub async fn check_limit(&self, bucket: &str, limit: u32) -> Result<Decision, Unavailable> {
        let now = self.clock.now_ms();
        if limit == 0 {
            return Ok(ratelimit::decide(0, 0, None, now));
        }
        let member = format!("{}/{}", self.instance, self.seq.fetch_add(1, Ordering::Relaxed));
        let mut call = LIMIT.key(format!("{}rate:{bucket}", self.prefix));
        call.arg(now).arg(limit).arg(ratelimit::WINDOW_MS).arg(member);
        let (_allowed, live, oldest): (i64, i64, i64) = self.call(&call).await?;
        let oldest_frees_at = (oldest >= 0).then_some(oldest + ratelimit::WINDOW_MS);
        // The script let the request in iff `live < limit`: the same rule `decide` applies.
        Ok(ratelimit::decide(limit, live.max(0) as usize, oldest_frees_at, now))
    }

    /// Claims `event_id` of `provider` for this instance, or says who holds it.
    pub async fn claim(&self, provider: &str, event_id: &str) -> Result<Claim, Unavailable> {
        let key = format!("{}claim:{provider}:{event_id}", self.prefix);
        let value = format!("p/{}/{:016x}", self.instance, fastrand::u64(..));
        let mut call = CLAIM.key(&key);
        call.arg(&value).arg(self.pending_ms);
        let (claimed, held, ttl_ms): (i64, String, i64) = self.call(&call).await?;
        // Our own value: the first send of this call was applied before its connection broke.
        if claimed == 1 || held == value {
            return Ok(Claim::Ours(Pending { key, value }));
        }
        Ok(match held.strip_prefix("c/").and_then(|rest| rest.split_once('/')) {
            Some((_, instance)) if instance == self.instance => Claim::Here,
            Some((id, instance)) => {
                self.duplicates_elsewhere.fetch_add(1, Ordering::Relaxed);
                Claim::Elsewhere { id: id.to_string(), instance: instance.to_string() }
            }
            // Pending (or a value this version does not know: never taken for a commit).
            None => {
                self.in_progress.fetch_add(1, Ordering::Relaxed);
                Claim::InProgress { retry_after_s: (ttl_ms.max(1) as u64).div_ceil(1000) }
            }
        })
    }

    /// Marks a claim committed as `id` once the event is on this instance's disk. A failure is
    /// logged, not returned: the event is stored, and the claim expires on its own.
    pub async fn commit(&self, pending: Pending, id: &str) {
        let committed = format!("c/{id}/{}", self.instance);
        let mut call = COMMIT.key(&pending.key);
        call.arg(&pending.value).arg(committed).arg(self.committed_ms);
        if self.call_anyway::<i64>(&call).await.is_err() {
            tracing::warn!(claim = %pending.key, "the claim was not marked committed; it expires in {} ms", self.pending_ms);
        }
    }

    /// Gives a claim up because its event could not be stored, so that the provider's retry is
    /// not taken for a duplicate.
    pub async fn release(&self, pending: Pending) {
        let mut call = RELEASE.key(&pending.key);
        call.arg(&pending.value);
        if self.call_anyway::<i64>(&call).await.is_err() {
            tracing::warn!(claim = %pending.key, "the claim was not released; it expires in {} ms", self.pending_ms);
        }
    }

    /// One script call, or [`Unavailable`] at once while Redis is down.
    async fn call<T: FromRedisValue>(&self, call: &ScriptInvocation<'_>) -> Result<T, Unavailable> {
        if !self.is_up() {
            return Err(Unavailable);
        }
        self.call_anyway(call).await
    }

    /// One script call, tried even while Redis is marked down: for a claim taken while it was
    /// up, whose commit or release must not be skipped (a claim left pending answers every
    /// other instance `409` until it expires).
    async fn call_anyway<T: FromRedisValue>(&self, call: &ScriptInvocation<'_>) -> Result<T, Unavailable> {
        // Every script is safe to run twice (`claim` knows its own pending value, `limit` its
        // request's member), as `resent_once` may.
        let answer = self.resent_once(|mut conn| async move { call.invoke_async(&mut conn).await }).await;
        answer.map_err(|NoAnswer(reason)| {
            self.went_down(&reason);
            Unavailable
        })
    }

    async fn ping(&self) -> Result<(), NoAnswer> {
        self.resent_once(|mut conn| async move { redis::cmd("PING").query_async::<String>(&mut conn).await })
            .await
            .map(drop)
    }

    /// Sends one request, bounded by `redis.timeout`, and once more when its connection broke:
    /// Redis restarted since the connection's last use, and the manager reconnects. Calls and
    /// the watcher's ping alike, so that neither takes a restart it slept through for an outage
    /// (a ping that did would mark Redis down while it answers, and every claim until the next
    /// ping would be this instance's alone).
    async fn resent_once<T, F, Fut>(&self, send: F) -> Result<T, NoAnswer>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let attempts = async {
            match send(self.conn.clone()).await {
                Err(e) if e.is_io_error() || e.is_connection_dropped() => send(self.conn.clone()).await,
                answer => answer,
            }
        };
        match tokio::time::timeout(self.timeout, attempts).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(NoAnswer(e.to_string())),
            Err(_) => Err(NoAnswer(format!("no answer within {} ms", self.timeout.as_millis()))),
        }
    }

    fn went_down(&self, reason: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if self.up.swap(false, Ordering::AcqRel) {
            self.warned_at.store(self.clock.now_ms(), Ordering::Relaxed);
            tracing::warn!(redis = %self.shown_url, reason, "Redis is unreachable: {} until it answers", self.on_error.meanwhile());
        }
    }

    /// Pings Redis for ever: notices an outage when there is no traffic, and a recovery. Runs
    /// for the life of the server (`App::serve` aborts it).
    pub async fn watch(self: Arc<Self>) {
        let mut wait = DOWN_PING_MIN;
        loop {
            wait = self.look(wait).await;
            tokio::time::sleep(wait).await;
        }
    }

    /// One ping of [`Shared::watch`], which marks Redis up or down; returns the wait before the
    /// next, given the wait before this one.
    async fn look(&self, wait: Duration) -> Duration {
        match self.ping().await {
            Ok(()) => {
                if !self.up.swap(true, Ordering::AcqRel) {
                    tracing::info!(redis = %self.shown_url, "Redis answers again: limits and duplicates are shared");
                }
                UP_PING
            }
            Err(reason) if self.is_up() => {
                self.went_down(&reason.0);
                DOWN_PING_MIN
            }
            Err(reason) => {
                let now = self.clock.now_ms();
                if now.saturating_sub(self.warned_at.load(Ordering::Relaxed)) >= WARN_EVERY_MS {
                    self.warned_at.store(now, Ordering::Relaxed);
                    tracing::warn!(redis = %self.shown_url, reason = %reason, "Redis is still unreachable: {} until it answers", self.on_error.meanwhile());
                }
                (wait * 2).clamp(DOWN_PING_MIN, DOWN_PING_MAX)
            }
        }
    }
}

/// `redis.reachable`, for `check-config` and `/config/validate`: whether the configured Redis
/// answers a PING within `redis.timeout` (and, for `rediss://`, completes the TLS handshake).
/// `None` when no backend uses Redis. Unreachable is an error under `on_error = "closed"`
/// (ingest would refuse everything) and a warning under `"open"`.
pub async fn probe(config: &Config) -> Option<Finding> {
    let used = config.limits.backend == LimitsBackend::Redis || config.dedup.backend == DedupBackend::Redis;
    let url = config.redis.url.as_deref().filter(|_| used)?;
    let shown = crate::redact::url(url);
    let timeout = config.redis.timeout.0.max(Duration::from_secs(1));
    let answer = async {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let mut conn = client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
        redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(|e| e.to_string())
    };
    let (severity, message) = match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(_)) => (Severity::Ok, format!("{shown} answers")),
        Ok(Err(e)) => (unreachable(config.redis.on_error), format!("{shown}: unreachable: {e}")),
        Err(_) => (unreachable(config.redis.on_error), format!("{shown}: no answer within {} ms", timeout.as_millis())),
    };
    Some(Finding::new("redis.reachable", severity, "redis.url", message))
}

fn unreachable(on_error: OnError) -> Severity {
    match on_error {
        OnError::Open => Severity::Warning,
        OnError::Closed => Severity::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::testing::RedisServer;
    use super::*;
    use crate::config::RedisConfig;
    use crate::ratelimit::tests::{drive, T0, WINDOW_CASES};

    fn config(redis: &RedisServer, instance: &str) -> Config {
        let mut c = Config::default();
        c.limits.backend = LimitsBackend::Redis;
        c.dedup.backend = DedupBackend::Redis;
        c.redis = RedisConfig { url: Some(redis.url()), ..Default::default() };
        c.server.instance_id = instance.to_string();
        c
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// The table the in-memory limiter answers (`ratelimit.rs`), answered alike through Redis.
    #[test]
    fn the_shared_limiter_answers_the_window_table_as_the_memory_one() {
        let redis = RedisServer::start();
        let rt = runtime();
        let _in_runtime = rt.enter();
        for (i, (name, limit, steps)) in WINDOW_CASES.iter().enumerate() {
            let clock = Clock::frozen(T0);
            let shared = Shared::open(&config(&redis, "a"), clock.clone()).unwrap().unwrap();
            let bucket = format!("192.0.2.{i}");
            drive(name, *limit, steps, &clock, &mut || rt.block_on(shared.check_limit(&bucket, *limit)).unwrap());
            if *limit == 0 {
                let keys: Vec<String> = redis.query(&["KEYS", &format!("stagehook:rate:{bucket}")]);
                assert!(keys.is_empty(), "{name}: a limiter that is off tracks nobody: {keys:?}");
            }
        }
    }

    /// A limit call sent again after its connection broke, which Redis had run the first time:
    /// the request is let in once and counted once, below the limit and at it.
    #[test]
    fn a_limit_call_run_twice_counts_its_request_once() {
        let redis = RedisServer::start();
        let rt = runtime();
        let _in_runtime = rt.enter();
        let a = Shared::open(&config(&redis, "a"), Clock::frozen(T0)).unwrap().unwrap();
        let run = |member: &str| -> (i64, i64, i64) {
            let mut call = LIMIT.key("stagehook:rate:10.0.0.1");
            call.arg(T0).arg(2).arg(ratelimit::WINDOW_MS).arg(member);
            rt.block_on(call.invoke_async(&mut a.conn.clone())).unwrap()
        };
        assert_eq!(run("a/1"), (1, 0, -1));
        assert_eq!(run("a/1"), (1, 0, -1), "sent again below the limit");
        assert_eq!(run("a/2"), (1, 1, -1));
        assert_eq!(run("a/2"), (1, 1, -1), "sent again at the limit");
        assert_eq!(run("a/3"), (0, 2, T0), "two counted, not three or four");
    }

    /// Two instances' acceptances count in one window: what one let in, the other refuses.
    #[test]
    fn two_instances_share_one_count_per_client() {
        let redis = RedisServer::start();
        let rt = runtime();
        let _in_runtime = rt.enter();
        let clock = Clock::frozen(T0);
        let a = Shared::open(&config(&redis, "a"), clock.clone()).unwrap().unwrap();
        let b = Shared::open(&config(&redis, "b"), clock.clone()).unwrap().unwrap();
        for i in 0..10 {
            let who = if i % 2 == 0 { &a } else { &b };
            let d = rt.block_on(who.check_limit("10.0.0.1", 10)).unwrap();
            assert!(d.allowed && d.remaining == 9 - i, "request {i}: {d:?}");
        }
        clock.advance(30_000);
        let d = rt.block_on(b.check_limit("10.0.0.1", 10)).unwrap();
        assert_eq!((d.allowed, d.retry_after_s), (false, 30), "{d:?}");
        assert!(rt.block_on(a.check_limit("10.0.0.2", 10)).unwrap().allowed, "another client has its own count");
    }

    /// A claim, as another instance sees it while pending, once committed, and once released.
    #[test]
    fn a_claim_is_in_progress_then_a_duplicate_elsewhere_and_released_when_not_stored() {
        let redis = RedisServer::start();
        let rt = runtime();
        let _in_runtime = rt.enter();
        let clock = Clock::system();
        let a = Shared::open(&config(&redis, "a"), clock.clone()).unwrap().unwrap();
        let b = Shared::open(&config(&redis, "b"), clock.clone()).unwrap().unwrap();

        let Claim::Ours(pending) = rt.block_on(a.claim("stripe", "evt_1")).unwrap() else { panic!("first claim") };
        // Pending: the other instance is told to retry within the pending expiry (30 s).
        match rt.block_on(b.claim("stripe", "evt_1")).unwrap() {
            Claim::InProgress { retry_after_s } => assert!((1..=30).contains(&retry_after_s), "{retry_after_s}"),
            other => panic!("pending claim seen as {other:?}"),
        }
        rt.block_on(a.commit(pending, "01ID"));
        assert_eq!(
            rt.block_on(b.claim("stripe", "evt_1")).unwrap(),
            Claim::Elsewhere { id: "01ID".into(), instance: "a".into() }
        );
        assert_eq!(rt.block_on(a.claim("stripe", "evt_1")).unwrap(), Claim::Here, "its own store decides");
        // Committed for as long as events are kept (retention.max_age, 30 days by default).
        let ttl: i64 = redis.query(&["PTTL", "stagehook:claim:stripe:evt_1"]);
        assert!(ttl > 29 * 86_400_000, "{ttl}");
        assert_eq!((b.status().duplicates_elsewhere, b.status().in_progress), (2 - 1, 1));

        // Released when the event could not be stored: the retry is recorded, not a duplicate.
        let Claim::Ours(pending) = rt.block_on(a.claim("stripe", "evt_2")).unwrap() else { panic!("claim evt_2") };
        rt.block_on(a.release(pending));
        assert!(matches!(rt.block_on(b.claim("stripe", "evt_2")).unwrap(), Claim::Ours(_)));
        // The same event id of another provider is another event.
        assert!(matches!(rt.block_on(b.claim("github", "evt_1")).unwrap(), Claim::Ours(_)));
    }

    /// A claim whose instance died before committing expires: the retry is then claimed anew.
    #[test]
    fn an_abandoned_claim_expires_after_the_pending_expiry() {
        let redis = RedisServer::start();
        let rt = runtime();
        let _in_runtime = rt.enter();
        let mut c = config(&redis, "a");
        c.dedup.pending_expiry = crate::config::HumanDuration(Duration::from_secs(1));
        let a = Shared::open(&c, Clock::system()).unwrap().unwrap();
        let b = Shared::open(&config(&redis, "b"), Clock::system()).unwrap().unwrap();
        assert!(matches!(rt.block_on(a.claim("stripe", "evt_1")).unwrap(), Claim::Ours(_)));
        assert!(matches!(rt.block_on(b.claim("stripe", "evt_1")).unwrap(), Claim::InProgress { retry_after_s: 1 }));
        std::thread::sleep(Duration::from_millis(1100));
        assert!(matches!(rt.block_on(b.claim("stripe", "evt_1")).unwrap(), Claim::Ours(_)));
    }

    /// Down: every call answers `Unavailable` at once, without waiting on Redis; the watcher
    /// notices the restart and calls go to Redis again (its script cache emptied by the restart).
    #[test]
    fn an_outage_is_noticed_and_so_is_the_recovery() {
        let mut redis = RedisServer::start();
        let rt = runtime();
        let _in_runtime = rt.enter();
        let mut c = config(&redis, "a");
        // Long, so that a call that waited for Redis could not pass for one that did not.
        c.redis.timeout = crate::config::HumanDuration(Duration::from_secs(3));
        let a = Shared::open(&c, Clock::system()).unwrap().unwrap();
        rt.block_on(async {
            assert!(a.check_limit("10.0.0.1", 5).await.is_ok());
            let watcher = tokio::spawn(a.clone().watch());
            redis.stop();
            assert_eq!(a.check_limit("10.0.0.1", 5).await, Err(Unavailable));
            assert!(!a.is_up());
            let started = std::time::Instant::now();
            assert_eq!(a.claim("stripe", "evt_1").await, Err(Unavailable));
            assert!(started.elapsed() < a.timeout, "a call while down does not wait for Redis");
            redis.restart();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !a.is_up() {
                assert!(std::time::Instant::now() < deadline, "the watcher did not notice the recovery");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(a.check_limit("10.0.0.1", 5).await.unwrap().allowed);
            assert!(matches!(a.claim("stripe", "evt_1").await, Ok(Claim::Ours(_))));
            watcher.abort();
        });
    }

    /// A restart between two calls breaks the connection under them: the next call is sent
    /// again on a new one, not taken for an outage (the watcher may never have seen one).
    #[test]
    fn a_restart_between_calls_is_not_an_outage() {
        let mut redis = RedisServer::start();
        let rt = runtime();
        let _in_runtime = rt.enter();
        let a = Shared::open(&config(&redis, "a"), Clock::system()).unwrap().unwrap();
        rt.block_on(async {
            assert!(a.check_limit("10.0.0.1", 5).await.unwrap().allowed);
            redis.restart();
            assert!(matches!(a.claim("stripe", "evt_1").await, Ok(Claim::Ours(_))));
            assert!(a.check_limit("10.0.0.1", 5).await.unwrap().allowed);
            assert_eq!((a.is_up(), a.status().errors), (true, 0));
        });
    }

    /// A restart between two of the watcher's pings breaks the connection under the next one,
    /// as it does under a call: not an outage either. Redis stays up, and a claim right after
    /// the ping is shared, not this instance's alone.
    #[test]
    fn a_restart_between_pings_is_not_an_outage() {
        let mut redis = RedisServer::start();
        let rt = runtime();
        let _in_runtime = rt.enter();
        let a = Shared::open(&config(&redis, "a"), Clock::system()).unwrap().unwrap();
        let b = Shared::open(&config(&redis, "b"), Clock::system()).unwrap().unwrap();
        rt.block_on(async {
            assert_eq!(a.look(UP_PING).await, UP_PING, "connected");
            redis.restart();
            assert_eq!(a.look(UP_PING).await, UP_PING, "the ping was sent again on a new connection");
            assert_eq!((a.is_up(), a.status().errors), (true, 0));
            assert!(matches!(a.claim("stripe", "evt_1").await, Ok(Claim::Ours(_))));
            assert!(matches!(b.claim("stripe", "evt_1").await, Ok(Claim::InProgress { .. })), "shared");
        });
    }

    #[test]
    fn probe_reports_a_reachable_and_an_unreachable_redis() {
        let mut redis = RedisServer::start();
        let rt = runtime();
        let mut c = config(&redis, "a");
        let f = rt.block_on(probe(&c)).unwrap();
        assert_eq!((f.id, f.severity, f.key.as_str()), ("redis.reachable", Severity::Ok, "redis.url"), "{f:?}");
        redis.stop();
        let f = rt.block_on(probe(&c)).unwrap();
        assert_eq!(f.severity, Severity::Warning, "{f:?}");
        assert!(f.message.contains(&format!("127.0.0.1:{}", redis.port())), "{f:?}");
        c.redis.on_error = OnError::Closed;
        assert_eq!(rt.block_on(probe(&c)).unwrap().severity, Severity::Error);
        c.limits.backend = LimitsBackend::Memory;
        c.dedup.backend = DedupBackend::Local;
        assert!(rt.block_on(probe(&c)).is_none(), "no backend uses Redis: nothing to probe");
    }
}
