//! The hot request path, part by part and whole.
//!
//! Run with `cargo bench --bench hot_path`; a filter after `--` runs one group (`-- verify/`).
//! The groups:
//!
//! - `verify`: signature verification by every provider kind (stripe, twilio, github, shopify,
//!   slack, standard, sendgrid, hmac) of a 1 KB and a 64 KB body: the provider's own fixture,
//!   brought to size and signed by the provider's own `sign_resend`.
//! - `parse`: payload validation (`Provider::parse`) by every kind, 1 KB bodies.
//! - `ratelimit`: the rate limiter from one thread, on one IP and on many; then from 2
//!   and 8 threads at once, all on one IP (one map shard, one lock) or each on IPs of its own.
//!   A contended time is one round of one check on every thread; its throughput counts every
//!   thread's checks.
//! - `record`: postcard encoding and decoding of an event record with a Stripe delivery's
//!   headers and a 1 KB body length.
//! - `dedup`: `Store::find_by_event_id` in a real sled store of 100 000 events, for an id that is
//!   there and one that is not.
//! - `redis_limit`: one client's rate-limit check, in memory (`RateLimiter::check`) against
//!   Redis on loopback (`Redis::check_limit`, one `EVALSHA` round trip), both with a limit that
//!   is never reached, so every check is let in and recorded; then 64 Redis checks in flight at
//!   once on a 2-thread runtime, counted as 64 elements.
//! - `redis_claim`: the duplicate check of a new event: the local store's lookup of an id it does
//!   not hold (`Store::find_by_event_id` in 100 000 events, as `dedup/absent`) against a Redis
//!   claim of a fresh id (`Redis::claim`, one round trip) and against the claim and its commit
//!   mark (`Redis::commit`, a second round trip), which is what a new event costs in Redis;
//!   then 64 claims with their commits in flight at once.
//!
//!   Both Redis groups start a `redis-server` of their own on a free loopback port, without
//!   persistence (`stagehook::redis::testing::RedisServer`); it competes with the bench for the
//!   cores, as it does on a host that runs both.
//! - `request`: whole in-process requests through `App::routes` into a real sled store in a temp
//!   dir. They include the group commit and the flush to disk every 2xx waits for, so they measure
//!   the disk as much as the code. `stripe_commit_and_flush` sends one request at a time, so each
//!   waits for a commit and flush of its own; `stripe_64_in_flight` sends 64 at once, spawned on
//!   the runtime as a server's connections are, and counts 64 elements per iteration, so its
//!   throughput is the per-request cost when the writer commits them in groups.
//!
//! Each group sets its own warm-up and measurement times so that the whole run stays within a
//! few minutes on two cores.

use std::net::IpAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use serde_json::Value;
use stagehook::config::{Config, DedupBackend, HumanDuration, LimitsBackend, RedisConfig};
use stagehook::providers::{self, fresh_id, stripe, Inbound, Provider};
use stagehook::providers::{twilio, KindConfig, ProviderKind};
use stagehook::ratelimit::RateLimiter;
use stagehook::redis::settings::RedisSettings;
use stagehook::redis::testing::RedisServer;
use stagehook::redis::{Claim, Redis};
use stagehook::secret::Secret;

// The allocator of the stagehook binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: stagehook::allocator::Allocator = stagehook::allocator::Allocator;
use stagehook::store::record;
use stagehook::store::{Event, NewEvent, Status, Store, StoreOptions};
use stagehook::{App, Clock};
use warp::http::header::CONTENT_TYPE;
use warp::http::{HeaderMap, HeaderName, HeaderValue};

/// The signing secret of every HMAC kind. It is valid for each: Standard Webhooks reads the part
/// after `whsec_` as base64, the others use the whole string.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The body sizes of `verify`; `parse` uses the first.
const SIZES: [usize; 2] = [1024, 64 * 1024];

/// Every P-256 SubjectPublicKeyInfo starts with these 26 bytes; the 65-byte point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// What `fit_json` adds to an object, around the padding itself.
const PAD_MEMBER: &str = r#","pad":"""#;

/// Top-level members `fit_json` never drops: some provider's parser reads each of them.
const PARSED_MEMBERS: [&str; 9] =
    ["id", "type", "created", "data", "livemode", "action", "event", "event_id", "timestamp"];

fn now_s() -> i64 {
    Clock::system().now_s()
}

/// Short runs for the cheap, steady parts.
fn quick(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(2));
}

/// A Stripe event whose body is about `size` bytes.
fn stripe_body(id: &str, size: usize) -> String {
    let head = format!(
        r#"{{"id":"{id}","object":"event","type":"charge.succeeded","created":1700000000,"livemode":false,"data":{{"object":{{"id":"ch_1","pad":""#
    );
    let pad = "x".repeat(size.saturating_sub(head.len() + 4));
    format!("{head}{pad}\"}}}}}}")
}

/// The headers of a Stripe delivery of `body` as the store keeps them: names lowercased, in
/// arrival order.
fn stripe_headers(body: &[u8], now_s: i64) -> Vec<(String, String)> {
    [
        ("host", "hooks.example.com".to_string()),
        ("user-agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)".to_string()),
        ("content-length", body.len().to_string()),
        ("accept", "*/*; q=0.5, application/xml".to_string()),
        ("cache-control", "no-cache".to_string()),
        ("content-type", "application/json; charset=utf-8".to_string()),
        ("stripe-signature", stripe::signature_header(SECRET, now_s, body)),
        ("x-forwarded-for", "3.18.12.63".to_string()),
        ("x-forwarded-proto", "https".to_string()),
        ("accept-encoding", "gzip".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A fresh P-256 key pair for SendGrid: (base64 PKCS#8 private key, base64 SPKI public key).
fn sendgrid_key_pair() -> (String, String) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("a P-256 key");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).expect("its own key");
    let spki = [&P256_SPKI_PREFIX[..], pair.public_key().as_ref()].concat();
    (STANDARD.encode(pkcs8.as_ref()), STANDARD.encode(spki))
}

/// An endpoint of every kind, named after it and configured as in a staging config file.
fn all_providers() -> Vec<(ProviderKind, Arc<dyn Provider>)> {
    let (signing_key, public_key) = sendgrid_key_pair();
    ProviderKind::ALL
        .into_iter()
        .map(|kind| {
            let keys = match kind {
                ProviderKind::Sendgrid => format!("public_key = \"{public_key}\"\nsigning_key = \"{signing_key}\""),
                ProviderKind::Hmac => format!(
                    "secret = \"{SECRET}\"\nheader = \"x-signature\"\nprefix = \"sha256=\"\n\
                     timestamp_header = \"x-signature-timestamp\"\nsigned_content = \"{{timestamp}}.{{body}}\"\n\
                     id_pointer = \"/id\"\ntype_pointer = \"/type\""
                ),
                _ => format!("secret = \"{SECRET}\""),
            };
            let config = KindConfig::from_toml(kind.as_str(), &keys).unwrap_or_else(|e| panic!("{e}"));
            let provider = providers::build(kind.as_str(), &config).unwrap_or_else(|e| panic!("{e}"));
            (kind, provider)
        })
        .collect()
}

/// A signed request as a provider sees it.
struct Request {
    headers: HeaderMap,
    body: Vec<u8>,
    url: String,
    now_s: i64,
}

impl Request {
    fn inbound(&self) -> Inbound<'_> {
        Inbound { headers: &self.headers, body: &self.body, url: &self.url, now_s: self.now_s }
    }
}

/// The provider's default fixture with a body of exactly `size` bytes, signed as the provider
/// signs a delivery; checked to verify and parse before it is measured.
fn signed_request(kind: ProviderKind, provider: &dyn Provider, size: usize) -> Request {
    let now = now_s();
    let sample = provider.sample(None, now).expect("the default fixture");
    let body = match kind {
        ProviderKind::Twilio => pad_form(&sample.body, "Body", size),
        ProviderKind::Sendgrid => sendgrid_batch(provider, size, now),
        _ => fit_json(&sample.body, size),
    };
    assert_eq!(body.len(), size, "{} body", kind.as_str());
    let target = format!("https://hooks.example.com/staging/webhooks/{}", kind.as_str());
    let signed = provider.sign_resend(&target, Some(sample.content_type), &body, &sample.headers, now);
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(sample.content_type));
    let pairs = sample.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    for (k, v) in pairs.chain(signed.headers.iter().map(|(k, v)| (*k, v.as_str()))) {
        headers.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    let req = Request { headers, body, url: signed.url, now_s: now };
    provider.verify(&req.inbound()).unwrap_or_else(|r| panic!("{} does not verify: {r:?}", kind.as_str()));
    provider.parse(&req.inbound()).unwrap_or_else(|r| panic!("{} does not parse: {r:?}", kind.as_str()));
    req
}

/// A JSON object (or an array of them) of exactly `size` bytes: while it is too long, its largest
/// top-level members that no parser reads are dropped; then a `pad` string fills the last object.
fn fit_json(body: &[u8], size: usize) -> Vec<u8> {
    let mut body = body.to_vec();
    if body.len() + PAD_MEMBER.len() > size {
        let mut value: Value = serde_json::from_slice(&body).expect("a JSON fixture");
        let object = value.as_object_mut().expect("a JSON object fixture");
        while serde_json::to_vec(object).unwrap().len() + PAD_MEMBER.len() > size {
            let largest = object
                .iter()
                .filter(|(k, _)| !PARSED_MEMBERS.contains(&k.as_str()))
                .max_by_key(|(_, v)| v.to_string().len())
                .map(|(k, _)| k.clone())
                .expect("the fixture's parsed members fit in the size");
            object.remove(&largest);
        }
        body = serde_json::to_vec(&value).unwrap();
    }
    let end = body.iter().rposition(|&b| b == b'}').expect("a JSON object");
    let pad = format!(r#","pad":"{}""#, "x".repeat(size - body.len() - PAD_MEMBER.len()));
    body.splice(end..end, pad.into_bytes());
    body
}

/// A form body of exactly `size` bytes, `field`'s value lengthened.
fn pad_form(body: &[u8], field: &str, size: usize) -> Vec<u8> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let encode = |fill: usize| {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            let v = if k == field { format!("{v}{}", "y".repeat(fill)) } else { v.clone() };
            form.append_pair(k, &v);
        }
        form.finish().into_bytes()
    };
    encode(size.saturating_sub(encode(0).len()))
}

/// A SendGrid batch of exactly `size` bytes: the fixture's events, each with its own id, as many
/// as fit, the last one padded.
fn sendgrid_batch(provider: &dyn Provider, size: usize, now: i64) -> Vec<u8> {
    let mut events = Vec::new();
    let mut len = "[]\r\n".len();
    'fill: loop {
        let sample = provider.sample(None, now).expect("the default fixture");
        let fixture: Vec<Value> = serde_json::from_slice(&sample.body).expect("a JSON batch");
        for event in fixture {
            let added = serde_json::to_vec(&event).unwrap().len() + usize::from(!events.is_empty());
            if len + added + PAD_MEMBER.len() > size {
                break 'fill;
            }
            len += added;
            events.push(event);
        }
    }
    let mut body = serde_json::to_vec(&events).unwrap();
    body.extend_from_slice(b"\r\n");
    fit_json(&body, size)
}

fn verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify");
    quick(&mut g);
    for (kind, provider) in all_providers() {
        for size in SIZES {
            let req = signed_request(kind, provider.as_ref(), size);
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_with_input(BenchmarkId::new(kind.as_str(), size), &req.inbound(), |b, req| {
                b.iter(|| provider.verify(black_box(req)).unwrap())
            });
        }
    }
    g.finish();
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    quick(&mut g);
    let size = SIZES[0];
    g.throughput(Throughput::Bytes(size as u64));
    for (kind, provider) in all_providers() {
        let req = signed_request(kind, provider.as_ref(), size);
        g.bench_with_input(BenchmarkId::new(kind.as_str(), size), &req.inbound(), |b, req| {
            b.iter(|| provider.parse(black_box(req)).unwrap())
        });
    }
    g.finish();
}

/// `threads` threads each make `rounds` checks at once, on the IPs `ip(thread, round)` gives;
/// the time runs from their common start until the last one is done.
fn hammer(limiter: &RateLimiter, threads: u32, rounds: u64, ip: impl Fn(u32, u64) -> IpAddr + Sync) -> Duration {
    let start = Barrier::new(threads as usize + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (start, ip) = (&start, &ip);
            s.spawn(move || {
                start.wait();
                for i in 0..rounds {
                    black_box(limiter.check(ip(t, i)));
                }
            });
        }
        start.wait();
        let began = Instant::now();
        // Leaving the scope joins every thread.
        began
    })
    .elapsed()
}

fn ratelimit(c: &mut Criterion) {
    // A limit that is never reached, so every check is let in and recorded, and room
    // for every IP used below, so none is evicted.
    const LIMIT: u32 = u32::MAX;
    const MAX_IPS: usize = 1_000_000;
    /// Distinct IPs per thread in the `many_ips` cases.
    const IPS: u64 = 100_000;
    let one: IpAddr = "10.0.0.1".parse().unwrap();
    let many = |thread: u32, i: u64| IpAddr::from(((thread << 24) | (i % IPS) as u32).to_be_bytes());

    let mut g = c.benchmark_group("ratelimit");
    quick(&mut g);
    let limiter = RateLimiter::new(LIMIT, MAX_IPS, 64, Clock::system());
    g.bench_function("one_ip", |b| b.iter(|| limiter.check(black_box(one))));
    let limiter = RateLimiter::new(LIMIT, MAX_IPS, 64, Clock::system());
    let mut i = 0u64;
    g.bench_function("many_ips", |b| {
        b.iter(|| {
            i += 1;
            limiter.check(black_box(many(0, i)))
        })
    });
    for threads in [2u32, 8] {
        g.throughput(Throughput::Elements(threads.into()));
        let limiter = RateLimiter::new(LIMIT, MAX_IPS, 64, Clock::system());
        g.bench_function(BenchmarkId::new("contended_one_ip", threads), |b| {
            b.iter_custom(|rounds| hammer(&limiter, threads, rounds, |_, _| one))
        });
        let limiter = RateLimiter::new(LIMIT, MAX_IPS, 64, Clock::system());
        g.bench_function(BenchmarkId::new("contended_many_ips", threads), |b| {
            b.iter_custom(|rounds| hammer(&limiter, threads, rounds, many))
        });
    }
    g.finish();
}

fn record(c: &mut Criterion) {
    let body = stripe_body("evt_1", 1024);
    let now = Clock::system().now_ms();
    let event = Event {
        provider: "stripe".into(),
        event_id: fresh_id("evt_"),
        event_type: "payment_intent.succeeded".into(),
        received_at_ms: now,
        source_ip: "3.18.12.63".into(),
        headers: stripe_headers(body.as_bytes(), now / 1000),
        body_len: body.len() as u64,
        signature_verified: true,
        status: Status::Received,
        processing_us: 42,
        attempts: 0,
        last_error: None,
        errors: Vec::new(),
        parent: None,
        source: Default::default(),
    };
    let bytes = record::encode_event(event.clone(), None);
    assert_eq!(record::decode_event(&bytes).unwrap(), (event.clone(), None));

    let mut g = c.benchmark_group("record");
    quick(&mut g);
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    // The writer hands the encoder an event it owns and is done with, so the encoding consumes
    // it: the clone is set-up, not measured, but the event's drop is (as it is in the writer).
    g.bench_function("encode_event", |b| {
        b.iter_batched(|| event.clone(), |e| record::encode_event(black_box(e), None), BatchSize::SmallInput)
    });
    g.bench_function("decode_event", |b| b.iter(|| record::decode_event(black_box(&bytes)).unwrap()));
    g.finish();
}

/// A real sled store in a temp dir holding `events` Stripe events, and their ids.
fn filled_store(rt: &tokio::runtime::Runtime, events: usize) -> (tempfile::TempDir, Store, Arc<Vec<String>>) {
    /// Ingests in flight at once, so the writer commits full batches.
    const WORKERS: usize = 1024;
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        cache_bytes: 64 * 1024 * 1024,
        rejection_log_size: 1000,
        log_segment_bytes: stagehook::store::DEFAULT_SEGMENT_BYTES,
        tree_flush_every_ms: Some(stagehook::store::TREE_FLUSH_EVERY_MS),
    };
    let store = rt.block_on(async { Store::open(dir.path(), options, Clock::system()) }).unwrap();
    let ids: Arc<Vec<String>> = Arc::new((0..events).map(|_| fresh_id("evt_")).collect());

    let began = Instant::now();
    rt.block_on(async {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (store, ids) = (store.clone(), ids.clone());
                tokio::spawn(async move {
                    for id in ids.iter().skip(w).step_by(WORKERS) {
                        let body = stripe_body(id, 1024);
                        let now = Clock::system().now_ms();
                        let event = NewEvent {
                            provider: "stripe".into(),
                            event_id: id.clone(),
                            event_type: "charge.succeeded".into(),
                            received_at_ms: now,
                            source_ip: "3.18.12.63".into(),
                            headers: stripe_headers(body.as_bytes(), now / 1000).into(),
                            body: Bytes::from(body),
                            processing_us: 42,
                            targets: Vec::new(),
                            items: 1,
                            parent: None,
                            source: Default::default(),
                        };
                        assert!(!store.ingest(event).await.expect("ingest").duplicate);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.expect("an ingest worker");
        }
    });
    eprintln!("{events} events ingested in {:.1?}", began.elapsed());
    (dir, store, ids)
}

fn dedup(c: &mut Criterion) {
    const EVENTS: usize = 100_000;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (_dir, store, ids) = filled_store(&rt, EVENTS);
    let absent: Vec<String> = (0..1024).map(|_| fresh_id("evt_")).collect();

    let mut g = c.benchmark_group("dedup");
    quick(&mut g);
    // A prime stride: consecutive lookups land far apart in the key space.
    let mut i = 0;
    g.bench_function("present", |b| {
        b.iter(|| {
            i = (i + 7919) % EVENTS;
            store.find_by_event_id("stripe", black_box(&ids[i])).unwrap().expect("a recorded event")
        })
    });
    let mut i = 0;
    g.bench_function("absent", |b| {
        b.iter(|| {
            i = (i + 1) % absent.len();
            assert!(store.find_by_event_id("stripe", black_box(&absent[i])).unwrap().is_none())
        })
    });
    g.finish();
    rt.block_on(store.shutdown()).unwrap();
}

/// Both shared backends on `redis`, under a timeout long enough that a slow answer on a busy
/// machine fails the bench (through `Unavailable`) rather than passes for a fast one.
fn redis_config(redis: &RedisServer) -> RedisSettings {
    let mut config = Config::default();
    config.limits.backend = LimitsBackend::Redis;
    config.dedup.backend = DedupBackend::Redis;
    config.redis =
        RedisConfig { url: Some(redis.url()), timeout: HumanDuration(Duration::from_secs(5)), ..Default::default() };
    config.server.instance_id = "bench".into();
    config.redis_settings()
}

/// Every in-flight iteration sends this many calls at once, as 64 connections would.
const REDIS_IN_FLIGHT: u64 = 64;

/// Runs `REDIS_IN_FLIGHT` calls of `op` at once on `rt`, the `n`th numbered from `*n`.
fn in_flight<F, Fut>(rt: &tokio::runtime::Runtime, n: &mut u64, op: F)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let calls: Vec<_> = (0..REDIS_IN_FLIGHT)
        .map(|_| {
            *n += 1;
            rt.spawn(op(*n))
        })
        .collect();
    rt.block_on(async {
        for call in calls {
            call.await.expect("a call task");
        }
    })
}

fn redis_limit(c: &mut Criterion) {
    // Never reached: every check is let in and recorded, in both backends.
    const LIMIT: u32 = u32::MAX;
    let one: IpAddr = "10.0.0.1".parse().unwrap();
    let redis = RedisServer::start();
    // One call at a time: the round trip, not a hand-off between threads, is what is measured.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let shared = rt.block_on(async { Redis::open(&redis_config(&redis), Clock::system()) }).unwrap().unwrap();
    let limiter = RateLimiter::new(LIMIT, 1000, 64, Clock::system());
    let bucket = limiter.bucket_of(one);
    assert!(rt.block_on(shared.check_limit(&bucket, LIMIT)).expect("Redis answers").allowed);

    let mut g = c.benchmark_group("redis_limit");
    quick(&mut g);
    g.throughput(Throughput::Elements(1));
    g.bench_function("memory", |b| b.iter(|| assert!(limiter.check(black_box(one)).allowed)));
    g.bench_function("redis", |b| {
        b.iter(|| assert!(rt.block_on(shared.check_limit(black_box(&bucket), LIMIT)).expect("Redis answers").allowed))
    });
    drop(shared);
    drop(rt);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let shared = rt.block_on(async { Redis::open(&redis_config(&redis), Clock::system()) }).unwrap().unwrap();
    let bucket: Arc<str> = bucket.into();
    let mut n = 0;
    g.throughput(Throughput::Elements(REDIS_IN_FLIGHT));
    g.bench_function("redis_64_in_flight", |b| {
        b.iter(|| {
            in_flight(&rt, &mut n, |_| {
                let (shared, bucket) = (shared.clone(), bucket.clone());
                async move { assert!(shared.check_limit(&bucket, LIMIT).await.expect("Redis answers").allowed) }
            })
        })
    });
    g.finish();
}

fn redis_claim(c: &mut Criterion) {
    const EVENTS: usize = 100_000;
    let redis = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (_dir, store, _ids) = filled_store(&rt, EVENTS);
    // A new event's id, which the store does not hold: what the local check of a new event does.
    let absent: Vec<String> = (0..1024).map(|_| fresh_id("evt_")).collect();
    // Fresh ids for every claim: a claim of an id seen before is a duplicate, answered otherwise.
    let run = fresh_id("evt_");
    let id = move |n: u64| format!("{run}_{n}");

    let mut g = c.benchmark_group("redis_claim");
    quick(&mut g);
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("local_lookup", |b| {
        b.iter(|| {
            i = (i + 1) % absent.len();
            assert!(store.find_by_event_id("stripe", black_box(&absent[i])).unwrap().is_none())
        })
    });

    // One call at a time on a runtime of its own thread, as in `redis_limit`.
    let single = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let shared = single.block_on(async { Redis::open(&redis_config(&redis), Clock::system()) }).unwrap().unwrap();
    let mut n = 0;
    g.bench_function("redis_claim", |b| {
        b.iter(|| {
            n += 1;
            let claim = single.block_on(shared.claim("stripe", black_box(&id(n)), || false)).expect("Redis answers");
            assert!(matches!(claim, Claim::Ours(_)), "{claim:?}");
        })
    });
    g.bench_function("redis_claim_commit", |b| {
        b.iter(|| {
            n += 1;
            single.block_on(async {
                let Claim::Ours(pending) =
                    shared.claim("stripe", black_box(&id(n)), || false).await.expect("Redis answers")
                else {
                    panic!("a fresh id is claimed")
                };
                shared.commit(pending, "01BENCH").await;
            })
        })
    });
    drop(shared);
    drop(single);

    let shared = rt.block_on(async { Redis::open(&redis_config(&redis), Clock::system()) }).unwrap().unwrap();
    g.throughput(Throughput::Elements(REDIS_IN_FLIGHT));
    g.bench_function("redis_claim_commit_64_in_flight", |b| {
        b.iter(|| {
            in_flight(&rt, &mut n, |n| {
                let (shared, event_id) = (shared.clone(), id(n));
                async move {
                    let Claim::Ours(pending) =
                        shared.claim("stripe", &event_id, || false).await.expect("Redis answers")
                    else {
                        panic!("a fresh id is claimed")
                    };
                    shared.commit(pending, "01BENCH").await;
                }
            })
        })
    });
    g.finish();
    // A commit that failed only logs: Redis must still be up for the figures to be its own.
    assert!(shared.is_up(), "Redis stopped answering during the bench");
    rt.block_on(store.shutdown()).unwrap();
}

/// A signed Stripe delivery of a new 1 KB event, as `POST /staging/webhooks/stripe`.
fn stripe_request(n: u64) -> warp::test::RequestBuilder {
    let body = stripe_body(&format!("evt_bench_{n}"), 1024);
    let sig = stripe::signature_header(SECRET, now_s(), body.as_bytes());
    warp::test::request()
        .method("POST")
        .path("/staging/webhooks/stripe")
        .header("content-type", "application/json")
        .header("stripe-signature", sig)
        .body(body)
}

/// The whole request, answered only once the event is durable: the store's writer commits it in
/// a group with whatever else is pending and flushes to disk before the 200, and that wait is
/// part of every iteration. One request at a time, then `IN_FLIGHT` at once.
fn request(c: &mut Criterion) {
    const IN_FLIGHT: u64 = 64;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.data_dir = dir.path().join("data");
    config.limits.rate_limit_per_minute = 0;
    config
        .providers
        .insert("stripe".into(), stripe::Settings { secret: Some(Secret::new(SECRET)), ..Default::default() });
    config.providers.insert("twilio".into(), twilio::Settings::default());
    let app = rt.block_on(async { App::open(config, Clock::system()) }).unwrap();
    let routes = app.routes();
    let mut n = 0u64;
    let mut g = c.benchmark_group("request");
    g.sample_size(30);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("stripe_commit_and_flush", 1024), |b| {
        b.iter(|| {
            n += 1;
            let res = rt.block_on(stripe_request(n).reply(&routes));
            assert_eq!(res.status(), 200);
        })
    });
    g.throughput(Throughput::Elements(IN_FLIGHT));
    g.bench_function(BenchmarkId::new("stripe_64_in_flight", 1024), |b| {
        b.iter(|| {
            let requests: Vec<_> = (0..IN_FLIGHT)
                .map(|_| {
                    n += 1;
                    let (req, routes) = (stripe_request(n), routes.clone());
                    rt.spawn(async move { req.reply(&routes).await })
                })
                .collect();
            rt.block_on(async {
                for r in requests {
                    assert_eq!(r.await.expect("a request task").status(), 200);
                }
            })
        })
    });
    g.finish();
    rt.block_on(app.store().shutdown()).unwrap();
}

criterion_group!(benches, verify, parse, ratelimit, record, dedup, redis_limit, redis_claim, request);
criterion_main!(benches);
