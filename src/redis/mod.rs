//! What several stagehooks share through Redis: the rate limit's counts and the claims that
//! make an event retried onto another instance a duplicate there.
//!
//! Each operation is one Lua script run with `EVALSHA` (the client loads it once per server,
//! and again after a restart emptied the script cache): one round trip, atomic in Redis, over
//! one multiplexed connection that the `redis` crate's `ConnectionManager` re-establishes with
//! exponential backoff. Every call is bounded by `redis.timeout`.
//!
//! Redis is connecting, up or down here ([`State`]): connecting until it has answered this
//! process once, so that `up` is never a guess. A failed or late call marks it down at once, and
//! then no request waits on it: every call answers [`Unavailable`] at once until [`Redis::watch`],
//! which pings it (every [`UP_PING`] while up; from [`DOWN_PING_MIN`] doubling to
//! [`DOWN_PING_MAX`] while down), finds it answering again. What a request does with
//! [`Unavailable`] is `redis.on_error`'s choice, made in `http/ingest.rs`: act alone or refuse.
//! A connection that broke under a call or a ping (Redis restarted since its last use) is no
//! outage: the request is sent once more on a new one first. So up means what a claim finds:
//! while up, a claim goes to Redis, never to this instance alone because of a stale connection.
//!
//! Claims belong to a process, not to a name: each start draws a random identity ([`Redis::process`]),
//! and a committed claim of another process is a duplicate even under this instance's own
//! `server.instance_id` (two replicas that both default to the host name). The one exception is
//! this instance before a restart: a claim committed under its name by an earlier process, for
//! an event its own store holds, is answered from that store. So that two live processes do not
//! share a name unnoticed, each holds its `instance_id` in Redis while it runs ([`Redis::join`]
//! at startup, renewed by every ping of the watcher, given back when it stops): a second live
//! process under a held name is refused at startup, and one found while running is a warning.
//!
//! The keys, all under `redis.key_prefix`: `rate:<client>` (a sorted set of acceptance times,
//! expiring a window after the last), `claim:<provider>:<event id>`
//! (`p/<instance>/<process>/<token>` while pending, `c/<id>/<instance>/<process>` once committed,
//! expiring after `dedup.pending_expiry` and `retention.max_age`) and `instance:<instance id>`
//! (`<process> <pid> <host>` of the process holding the name, expiring [`PRESENCE_TTL`] after
//! its last renewal).

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, Script, ScriptInvocation};

use crate::clock::Clock;
use crate::ratelimit::{self, Decision};
use presence::process_identity;
use settings::{LimitsBackend, OnError, RedisSettings};

mod presence;
mod probe;
pub mod settings;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use presence::NameTaken;
pub use probe::probe;

/// How often a Redis that answers is pinged, so that health shows an outage with no traffic.
pub const UP_PING: Duration = Duration::from_secs(2);
/// The first wait before pinging a Redis that stopped answering; it doubles up to the next.
pub const DOWN_PING_MIN: Duration = Duration::from_millis(250);
pub const DOWN_PING_MAX: Duration = Duration::from_secs(2);
/// While Redis stays down, the warning is repeated at most this often.
const WARN_EVERY_MS: i64 = 60_000;
/// How long a process holds its instance id without renewing it. The watcher renews it at every
/// ping while Redis answers ([`UP_PING`]): a live process would have to miss two renewals in a
/// row to lose it. A start under the name of a process that was killed (no time to give it back)
/// waits at most this long for it to expire.
pub const PRESENCE_TTL: Duration = Duration::from_secs(6);

static LIMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("limit.lua")));
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("claim.lua")));
static COMMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("commit.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("release.lua")));
static PRESENCE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("presence.lua")));

/// Redis did not answer (down, late, or an error): the caller acts alone or refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// What a claim on an event found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nobody held it: this instance does now, and must [`Redis::commit`] or
    /// [`Redis::release`] it.
    Ours(Pending),
    /// Another process stored it, as `id`: another instance, or another process under this
    /// instance's name whose record this store does not hold.
    Elsewhere { id: String, instance: String },
    /// This process stored it, or this instance before a restart (its store holds the event): its
    /// own store answers, with its own id.
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

/// Whether Redis answers this process, as `/stats`, `/staging/webhooks/test` and the dashboard
/// show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// It has not answered yet: calls are still tried.
    Connecting,
    /// Its last answer came in time.
    Up,
    /// A call or a ping failed or came too late: calls answer [`Unavailable`] at once.
    Down,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Up => "up",
            State::Down => "down",
        }
    }

    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Connecting,
            1 => State::Up,
            _ => State::Down,
        }
    }
}

/// The state shown by `/stats`, `/staging/webhooks/test` and the dashboard.
#[derive(Debug, Clone, Copy)]
pub struct Status {
    pub state: State,
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

pub struct Redis {
    conn: ConnectionManager,
    /// The URL with its credentials masked, for log lines and findings.
    shown_url: String,
    prefix: String,
    on_error: OnError,
    timeout: Duration,
    limits: bool,
    dedup: bool,
    instance: String,
    /// This process: a random identity drawn at each start, which owns its claims.
    process: String,
    /// This machine's name: `instance` is it when `server.instance_id` is not set.
    host: String,
    /// `<process> <pid> <host>`: what this process holds its instance id with.
    presence: String,
    /// The presence key of `instance`.
    presence_key: String,
    /// Another live process found holding this instance's id while running (its presence), so
    /// that the warning comes once per holder.
    other_holder: parking_lot::Mutex<Option<String>>,
    pending_ms: u64,
    /// How long a committed claim lasts: as long as the event is kept (0: no expiry).
    committed_ms: u64,
    /// A [`State`], as its number.
    state: AtomicU8,
    /// When the last "Redis is down" warning was logged (ms since the epoch).
    warned_at: AtomicI64,
    /// With `process`, makes each acceptance a member of its own in the limiter's set.
    seq: AtomicU64,
    duplicates_elsewhere: AtomicU64,
    in_progress: AtomicU64,
    errors: AtomicU64,
    clock: Clock,
}

/// Why a ping got no answer, for the log.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NoAnswer(String);

impl Redis {
    /// The shared backends `config` asks for; `None` when both stay in this process. Connects
    /// lazily: a Redis that is down at startup is tried again by [`Redis::watch`]. Needs a
    /// tokio runtime (the connection's reader is a task).
    pub fn open(config: &RedisSettings, clock: Clock) -> Result<Option<Arc<Redis>>, crate::StartError> {
        let limits = config.limits == LimitsBackend::Redis;
        let dedup = config.dedup.backend == settings::DedupBackend::Redis;
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
        let instance = config.instance_id.clone();
        let process = process_identity();
        let presence = format!("{process} {} {}", std::process::id(), config.host);
        Ok(Some(Arc::new(Redis {
            conn,
            shown_url: crate::redact::url(url),
            prefix: config.redis.key_prefix.clone(),
            on_error: config.redis.on_error,
            timeout,
            limits,
            dedup,
            presence_key: format!("{}instance:{instance}", config.redis.key_prefix),
            instance,
            process,
            presence,
            host: config.host.clone(),
            other_holder: parking_lot::Mutex::new(None),
            pending_ms: config.dedup.pending_expiry.0.as_millis() as u64,
            committed_ms: config.committed_for.as_millis().min(i64::MAX as u128) as u64,
            // Until Redis answers; calls are tried meanwhile, rather than wait for a ping.
            state: AtomicU8::new(State::Connecting as u8),
            warned_at: AtomicI64::new(i64::MIN),
            seq: AtomicU64::new(0),
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

    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn is_up(&self) -> bool {
        self.state() == State::Up
    }

    /// This process's identity, which owns its claims: random, drawn at each start.
    pub fn process(&self) -> &str {
        &self.process
    }

    pub fn status(&self) -> Status {
        Status {
            state: self.state(),
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
        let member = format!("{}/{}", self.process, self.seq.fetch_add(1, Ordering::Relaxed));
        let mut call = LIMIT.key(format!("{}rate:{bucket}", self.prefix));
        call.arg(now).arg(limit).arg(ratelimit::WINDOW_MS).arg(member);
        let (_allowed, live, oldest): (i64, i64, i64) = self.call(&call).await?;
        let oldest_frees_at = (oldest >= 0).then_some(oldest + ratelimit::WINDOW_MS);
        // The script let the request in iff `live < limit`: the same rule `decide` applies.
        Ok(ratelimit::decide(limit, live.max(0) as usize, oldest_frees_at, now))
    }

    /// Claims `event_id` of `provider` for this process, or says who holds it. `held_here` says
    /// whether this instance's store holds the event; it is asked only about a claim committed
    /// by another process under this instance's name (this instance before a restart, or another
    /// live process wrongly given the same name, whose store is not this one).
    pub async fn claim(
        &self,
        provider: &str,
        event_id: &str,
        held_here: impl FnOnce() -> bool,
    ) -> Result<Claim, Unavailable> {
        let key = format!("{}claim:{provider}:{event_id}", self.prefix);
        let value = format!("p/{}/{}/{:016x}", self.instance, self.process, fastrand::u64(..));
        let mut call = CLAIM.key(&key);
        call.arg(&value).arg(self.pending_ms);
        let (claimed, held, ttl_ms): (i64, String, i64) = self.call(&call).await?;
        // Our own value: the first send of this call was applied before its connection broke.
        if claimed == 1 || held == value {
            return Ok(Claim::Ours(Pending { key, value }));
        }
        Ok(match committed(&held) {
            Some((_, _, Some(process))) if process == self.process => Claim::Here,
            Some((_, instance, _)) if instance == self.instance && held_here() => Claim::Here,
            Some((id, instance, _)) => {
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
        let committed = format!("c/{id}/{}/{}", self.instance, self.process);
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
        if self.state() == State::Down {
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
        match answer {
            Ok(v) => {
                // The first answer: up from now on. Back up from down is the watcher's to say.
                if self
                    .state
                    .compare_exchange(State::Connecting as u8, State::Up as u8, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    tracing::info!(redis = %self.shown_url, "Redis answers: limits and duplicates are shared");
                }
                Ok(v)
            }
            Err(NoAnswer(reason)) => {
                self.went_down(&reason);
                Err(Unavailable)
            }
        }
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
        if self.state.swap(State::Down as u8, Ordering::AcqRel) != State::Down as u8 {
            self.warned_at.store(self.clock.now_ms(), Ordering::Relaxed);
            tracing::warn!(redis = %self.shown_url, reason, "Redis is unreachable: {} until it answers", self.on_error.meanwhile());
        }
    }

    /// Pings Redis for ever: notices an outage when there is no traffic, and a recovery. Runs
    /// for the life of the server (`App::serve` aborts it).
    pub async fn watch(self: Arc<Self>) {
        let mut wait = DOWN_PING_MIN;
        loop {
            wait = self.ping(wait).await;
            tokio::time::sleep(wait).await;
        }
    }

    /// One ping of [`Redis::watch`], which marks Redis up or down; returns the wait before the
    /// next, given the wait before this one.
    async fn ping(&self, wait: Duration) -> Duration {
        match self.renew_presence().await {
            Ok(holder) => {
                match State::from_u8(self.state.swap(State::Up as u8, Ordering::AcqRel)) {
                    State::Down => {
                        tracing::info!(redis = %self.shown_url, "Redis answers again: limits and duplicates are shared")
                    }
                    State::Connecting => {
                        tracing::info!(redis = %self.shown_url, "Redis answers: limits and duplicates are shared")
                    }
                    State::Up => {}
                }
                self.note_holder(holder);
                UP_PING
            }
            Err(reason) if self.state() != State::Down => {
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

/// A committed claim's `(id, instance, process)`; the process is absent from a claim an earlier
/// version committed (`c/<id>/<instance>`), which no live process owns.
fn committed(held: &str) -> Option<(&str, &str, Option<&str>)> {
    let mut parts = held.strip_prefix("c/")?.splitn(3, '/');
    Some((parts.next()?, parts.next()?, parts.next()))
}

#[cfg(test)]
mod tests {
    use super::settings::{DedupBackend, DedupConfig, RedisConfig};
    use super::testing::RedisServer;
    use super::*;
    use crate::duration::HumanDuration;
    use crate::finding::Severity;
    use crate::ratelimit::tests::{drive, T0, WINDOW_CASES};

    /// The machine's name the processes of these tests run on.
    const HOST: &str = "test-host";

    /// Both backends in `redis`, the rest at their defaults.
    fn config(redis: &RedisServer, instance: &str) -> RedisSettings {
        RedisSettings {
            redis: RedisConfig { url: Some(redis.url()), ..Default::default() },
            limits: LimitsBackend::Redis,
            dedup: DedupConfig { backend: DedupBackend::Redis, ..Default::default() },
            instance_id: instance.to_string(),
            host: HOST.to_string(),
            // retention.max_age's default.
            committed_for: Duration::from_secs(30 * 86_400),
        }
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
            let shared = Redis::open(&config(&redis, "a"), clock.clone()).unwrap().unwrap();
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
        let a = Redis::open(&config(&redis, "a"), Clock::frozen(T0)).unwrap().unwrap();
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
        let a = Redis::open(&config(&redis, "a"), clock.clone()).unwrap().unwrap();
        let b = Redis::open(&config(&redis, "b"), clock.clone()).unwrap().unwrap();
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
        let a = Redis::open(&config(&redis, "a"), clock.clone()).unwrap().unwrap();
        let b = Redis::open(&config(&redis, "b"), clock.clone()).unwrap().unwrap();

        let Claim::Ours(pending) = rt.block_on(a.claim("stripe", "evt_1", || false)).unwrap() else {
            panic!("first claim")
        };
        // Pending: the other instance is told to retry within the pending expiry (30 s).
        match rt.block_on(b.claim("stripe", "evt_1", || false)).unwrap() {
            Claim::InProgress { retry_after_s } => assert!((1..=30).contains(&retry_after_s), "{retry_after_s}"),
            other => panic!("pending claim seen as {other:?}"),
        }
        rt.block_on(a.commit(pending, "01ID"));
        assert_eq!(
            rt.block_on(b.claim("stripe", "evt_1", || false)).unwrap(),
            Claim::Elsewhere { id: "01ID".into(), instance: "a".into() }
        );
        let unasked = || panic!("its own claim: the store is not asked");
        assert_eq!(rt.block_on(a.claim("stripe", "evt_1", unasked)).unwrap(), Claim::Here, "its own store decides");
        // Committed for as long as events are kept (retention.max_age, 30 days by default).
        let ttl: i64 = redis.query(&["PTTL", "stagehook:claim:stripe:evt_1"]);
        assert!(ttl > 29 * 86_400_000, "{ttl}");
        assert_eq!((b.status().duplicates_elsewhere, b.status().in_progress), (2 - 1, 1));

        // Released when the event could not be stored: the retry is recorded, not a duplicate.
        let Claim::Ours(pending) = rt.block_on(a.claim("stripe", "evt_2", || false)).unwrap() else {
            panic!("claim evt_2")
        };
        rt.block_on(a.release(pending));
        assert!(matches!(rt.block_on(b.claim("stripe", "evt_2", || false)).unwrap(), Claim::Ours(_)));
        // The same event id of another provider is another event.
        assert!(matches!(rt.block_on(b.claim("github", "evt_1", || false)).unwrap(), Claim::Ours(_)));
    }

    /// A claim belongs to the process that took it, not to its instance's name: another process
    /// under the same name (two replicas that default to one host name) finds a duplicate, unless
    /// its store holds the event (the instance before a restart, with its own store).
    #[test]
    fn a_claim_belongs_to_its_process_not_to_its_name() {
        let redis = RedisServer::start();
        let rt = runtime();
        let _in_runtime = rt.enter();
        let a = Redis::open(&config(&redis, "web-1"), Clock::system()).unwrap().unwrap();
        let twin = Redis::open(&config(&redis, "web-1"), Clock::system()).unwrap().unwrap();
        assert_ne!(a.process(), twin.process(), "one identity per start");
        assert_eq!(a.process().len(), 32);

        let Claim::Ours(pending) = rt.block_on(a.claim("stripe", "evt_1", || false)).unwrap() else { panic!("claim") };
        assert!(matches!(rt.block_on(twin.claim("stripe", "evt_1", || false)).unwrap(), Claim::InProgress { .. }));
        rt.block_on(a.commit(pending, "01ID"));
        let held: String = redis.query(&["GET", "stagehook:claim:stripe:evt_1"]);
        assert_eq!(held, format!("c/01ID/web-1/{}", a.process()));
        let elsewhere = Claim::Elsewhere { id: "01ID".into(), instance: "web-1".into() };
        assert_eq!(rt.block_on(twin.claim("stripe", "evt_1", || false)).unwrap(), elsewhere, "a duplicate");
        assert_eq!(rt.block_on(twin.claim("stripe", "evt_1", || true)).unwrap(), Claim::Here, "a restart's own store");
        assert_eq!(twin.status().duplicates_elsewhere, 1);

        // Committed by an earlier version, without a process: no live process owns it.
        let _: () = redis.query(&["SET", "stagehook:claim:stripe:evt_old", "c/01OLD/web-1"]);
        let old = Claim::Elsewhere { id: "01OLD".into(), instance: "web-1".into() };
        assert_eq!(rt.block_on(a.claim("stripe", "evt_old", || false)).unwrap(), old);
        assert_eq!(rt.block_on(a.claim("stripe", "evt_old", || true)).unwrap(), Claim::Here);
        // Another name is never asked about this store.
        let b = Redis::open(&config(&redis, "web-2"), Clock::system()).unwrap().unwrap();
        let unasked = || panic!("another instance's claim: the store is not asked");
        assert!(matches!(rt.block_on(b.claim("stripe", "evt_1", unasked)).unwrap(), Claim::Elsewhere { .. }));
    }

    /// Connecting until Redis answers this process (calls are tried meanwhile), up after its
    /// first answer; and connecting until a call that fails marks it down.
    #[test]
    fn the_state_is_connecting_until_redis_answers() {
        let mut redis = RedisServer::start();
        let rt = runtime();
        let _in_runtime = rt.enter();
        let a = Redis::open(&config(&redis, "a"), Clock::system()).unwrap().unwrap();
        assert_eq!((a.state(), a.status().state.as_str()), (State::Connecting, "connecting"));
        assert!(!a.is_up());
        assert!(rt.block_on(a.check_limit("10.0.0.1", 5)).unwrap().allowed, "tried while connecting");
        assert_eq!(a.state(), State::Up);

        redis.stop();
        let b = Redis::open(&config(&redis, "b"), Clock::system()).unwrap().unwrap();
        assert_eq!(b.state(), State::Connecting);
        assert_eq!(rt.block_on(b.claim("stripe", "evt_1", || false)), Err(Unavailable));
        assert_eq!(b.state(), State::Down, "never up");
    }

    /// A process holds its instance id while it runs: a second process under that name is refused
    /// while the first renews it, takes it at once once the first gave it back, and after a
    /// holder that was killed (it gave nothing back) once its presence expires.
    #[test]
    fn a_second_live_process_cannot_join_under_a_taken_name() {
        let redis = RedisServer::start();
        let rt = runtime();
        let _in_runtime = rt.enter();
        let first = Redis::open(&config(&redis, "web-1"), Clock::system()).unwrap().unwrap();
        let second = Redis::open(&config(&redis, "web-1"), Clock::system()).unwrap().unwrap();
        rt.block_on(async {
            first.join().await.unwrap();
            assert_eq!(first.state(), State::Up, "its first answer");
            let held: String = redis.query(&["GET", "stagehook:instance:web-1"]);
            assert_eq!(held, first.presence);
            let watcher = tokio::spawn(first.clone().watch());
            let taken = second.join().await.unwrap_err();
            let pid = std::process::id();
            assert_eq!((taken.instance.as_str(), taken.holder.clone()), ("web-1", format!("host {HOST}, pid {pid}")));
            let message = taken.to_string();
            for part in [
                "instance id `web-1`",
                &format!("pid {pid}"),
                "server.instance_id",
                "STAGEHOOK_SERVER_INSTANCE_ID",
                "127.0.0.1",
            ] {
                assert!(message.contains(part), "{part}: {message}");
            }
            // Found while running (the second skipped the startup check): one warning, and
            // the first keeps the name.
            second.ping(UP_PING).await;
            assert_eq!(second.other_holder.lock().as_deref(), Some(first.presence.as_str()));

            watcher.abort();
            first.leave().await;
            let keys: Vec<String> = redis.query(&["KEYS", "stagehook:instance:*"]);
            assert!(keys.is_empty(), "given back: {keys:?}");
            second.join().await.unwrap();
            second.ping(UP_PING).await;
            assert_eq!(*second.other_holder.lock(), None, "its own again");

            // Killed: nothing given back, and nothing renews it. The next start waits for it.
            let third = Redis::open(&config(&redis, "web-1"), Clock::system()).unwrap().unwrap();
            third.join().await.unwrap();
            let held: String = redis.query(&["GET", "stagehook:instance:web-1"]);
            assert_eq!(held, third.presence, "the second's expired, unrenewed, while the third waited");
        });
    }

    /// A claim whose instance died before committing expires: the retry is then claimed anew.
    #[test]
    fn an_abandoned_claim_expires_after_the_pending_expiry() {
        let redis = RedisServer::start();
        let rt = runtime();
        let _in_runtime = rt.enter();
        let mut c = config(&redis, "a");
        c.dedup.pending_expiry = HumanDuration(Duration::from_secs(1));
        let a = Redis::open(&c, Clock::system()).unwrap().unwrap();
        let b = Redis::open(&config(&redis, "b"), Clock::system()).unwrap().unwrap();
        assert!(matches!(rt.block_on(a.claim("stripe", "evt_1", || false)).unwrap(), Claim::Ours(_)));
        assert!(matches!(
            rt.block_on(b.claim("stripe", "evt_1", || false)).unwrap(),
            Claim::InProgress { retry_after_s: 1 }
        ));
        std::thread::sleep(Duration::from_millis(1100));
        assert!(matches!(rt.block_on(b.claim("stripe", "evt_1", || false)).unwrap(), Claim::Ours(_)));
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
        c.redis.timeout = HumanDuration(Duration::from_secs(3));
        let a = Redis::open(&c, Clock::system()).unwrap().unwrap();
        rt.block_on(async {
            assert!(a.check_limit("10.0.0.1", 5).await.is_ok());
            let watcher = tokio::spawn(a.clone().watch());
            redis.stop();
            assert_eq!(a.check_limit("10.0.0.1", 5).await, Err(Unavailable));
            assert!(!a.is_up());
            let started = std::time::Instant::now();
            assert_eq!(a.claim("stripe", "evt_1", || false).await, Err(Unavailable));
            assert!(started.elapsed() < a.timeout, "a call while down does not wait for Redis");
            redis.restart();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !a.is_up() {
                assert!(std::time::Instant::now() < deadline, "the watcher did not notice the recovery");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(a.check_limit("10.0.0.1", 5).await.unwrap().allowed);
            assert!(matches!(a.claim("stripe", "evt_1", || false).await, Ok(Claim::Ours(_))));
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
        let a = Redis::open(&config(&redis, "a"), Clock::system()).unwrap().unwrap();
        rt.block_on(async {
            assert!(a.check_limit("10.0.0.1", 5).await.unwrap().allowed);
            redis.restart();
            assert!(matches!(a.claim("stripe", "evt_1", || false).await, Ok(Claim::Ours(_))));
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
        let a = Redis::open(&config(&redis, "a"), Clock::system()).unwrap().unwrap();
        let b = Redis::open(&config(&redis, "b"), Clock::system()).unwrap().unwrap();
        rt.block_on(async {
            assert_eq!(a.ping(UP_PING).await, UP_PING, "connected");
            redis.restart();
            assert_eq!(a.ping(UP_PING).await, UP_PING, "the ping was sent again on a new connection");
            assert_eq!((a.is_up(), a.status().errors), (true, 0));
            assert!(matches!(a.claim("stripe", "evt_1", || false).await, Ok(Claim::Ours(_))));
            assert!(matches!(b.claim("stripe", "evt_1", || false).await, Ok(Claim::InProgress { .. })), "shared");
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
        c.limits = LimitsBackend::Memory;
        c.dedup.backend = DedupBackend::Local;
        assert!(rt.block_on(probe(&c)).is_none(), "no backend uses Redis: nothing to probe");
    }
}
