//! Several instances sharing one real `redis-server`: one rate limit (IPv6 clients by prefix),
//! one record of each event (two or three replicas, under one default name too) and one
//! delivery; a claim released when the commit fails, or left by a killed instance, never a false
//! duplicate; Redis `connecting` until it first answers; a second live process under a taken
//! name refused (exit 2), a restart under the same name not; Redis away under `open` and
//! `closed`, one warning while it is down, and `check-config`'s `redis.reachable`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use stagehook::config::{Config, DedupBackend, HumanDuration, LimitsBackend, OnError};
use stagehook::redis::testing::RedisServer;

use crate::fake_app::FakeApp;
use crate::support::{self, post_stripe, request, spawn_binary, start, stripe_event, until, Resp, TestServer};

/// An instance named `instance` that shares its limit and duplicates through `redis`.
fn shared_config(dir: &Path, redis: &RedisServer, instance: &str) -> Config {
    let mut c = sharing(dir, redis);
    c.server.instance_id = instance.to_string();
    c
}

/// An instance that shares its limit and duplicates through `redis` under the default name
/// (`server.instance_id` not set: the host name, as every such instance on this machine).
fn sharing(dir: &Path, redis: &RedisServer) -> Config {
    let mut c = support::config(dir);
    c.limits.backend = LimitsBackend::Redis;
    c.dedup.backend = DedupBackend::Redis;
    c.redis.url = Some(redis.url());
    // An outage here is a stopped redis-server, which refuses connections at once; a late answer
    // is never one. On two loaded cores an answer (a reconnection after a restart, a script
    // loaded again) can take longer than the default second, and must not pass for an outage.
    c.redis.timeout = HumanDuration(Duration::from_secs(10));
    c
}

/// Two instances, `a` and `b`, sharing `redis`, each with a data folder of its own (the folders
/// are returned to be kept), as `tweak` sets them up.
async fn pair(redis: &RedisServer, tweak: impl Fn(&mut Config)) -> (TestServer, TestServer, [tempfile::TempDir; 2]) {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let config = |dir: &tempfile::TempDir, name: &str| {
        let mut c = shared_config(dir.path(), redis, name);
        tweak(&mut c);
        c
    };
    let (a, b) = futures_util::future::join(start(config(&dirs[0], "a")), start(config(&dirs[1], "b"))).await;
    (a, b, dirs)
}

async fn health(s: &TestServer) -> Value {
    s.get("/staging/webhooks/test").await.json()
}

/// Posts `body` to `addr` as a provider does: a `409 in_progress` is retried (here after 20 ms,
/// not the `Retry-After` a provider would wait), up to 20 s. Returns the final answer and
/// whether a 409 came first.
async fn deliver_like_a_provider(addr: std::net::SocketAddr, body: &str) -> (Resp, bool) {
    let mut saw_409 = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = post_stripe(addr, body, &[]).await;
        if r.status != 409 {
            return (r, saw_409);
        }
        assert_eq!(r.code(), "in_progress", "{}", r.text());
        let retry_after: u64 = r.header("retry-after").expect("a 409 says when to retry").parse().unwrap();
        assert!((1..=30).contains(&retry_after), "{retry_after}");
        saw_409 = true;
        assert!(tokio::time::Instant::now() < deadline, "still in progress after 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_let_one_client_in_100_times_a_minute_between_them() {
    let redis = RedisServer::start();
    let (a, b, _dirs) = pair(&redis, |_| {}).await;
    let (mut accepted, mut refused_by) = (0u32, BTreeMap::new());
    for i in 0..150 {
        let (name, s) = if i % 2 == 0 { ("a", &a) } else { ("b", &b) };
        let r = s.stripe(&stripe_event(&format!("evt_rl_{i}"))).await;
        assert_eq!(r.header("x-ratelimit-limit"), Some("100"), "request {i}");
        match r.status {
            200 => {
                assert_eq!(
                    r.header("x-ratelimit-remaining"),
                    Some((99 - accepted).to_string().as_str()),
                    "request {i}"
                );
                accepted += 1;
            }
            429 => {
                assert_eq!(r.code(), "rate_limited");
                assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
                let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=60).contains(&retry), "Retry-After {retry}");
                *refused_by.entry(name).or_insert(0) += 1;
            }
            other => panic!("request {i}: {other} {}", r.text()),
        }
    }
    assert_eq!(accepted, 100, "one count for both instances");
    assert_eq!(refused_by, BTreeMap::from([("a", 25), ("b", 25)]), "each refuses once the shared limit is met");
    let stats = a.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["redis"]["state"], "up");
    assert_eq!((stats["redis"]["limits"].clone(), stats["redis"]["dedup"].clone()), (true.into(), true.into()));
    a.stop().await;
    b.stop().await;
}

/// The shared limit keys clients as the in-memory one does: the addresses of one IPv6 /64
/// (behind a trusted proxy) are one client across both instances; another /64 is another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_limit_keys_an_ipv6_client_by_its_prefix() {
    let redis = RedisServer::start();
    let (a, b, _dirs) = pair(&redis, |c| {
        c.server.trusted_proxies = vec!["127.0.0.1".into()];
        c.limits.rate_limit_per_minute = 3;
    })
    .await;
    let servers = [a, b];
    let mut statuses = Vec::new();
    for n in 1..=6u32 {
        let xff = format!("2001:db8:1:2::{n:x}");
        let s = &servers[n as usize % 2];
        let r = post_stripe(s.addr, &stripe_event(&format!("evt_v6_{n}")), &[("x-forwarded-for", &xff)]).await;
        if r.status == 429 {
            assert!(r.json()["error"]["message"].as_str().unwrap().contains("2001:db8:1:2::/64"), "{}", r.text());
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    let r =
        post_stripe(servers[0].addr, &stripe_event("evt_v6_other"), &[("x-forwarded-for", "2001:db8:1:3::1")]).await;
    assert_eq!(r.status, 200, "another /64 is another client: {}", r.text());
    for s in servers {
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_sent_to_both_instances_is_recorded_once() {
    let redis = RedisServer::start();
    let (a, b, _dirs) = pair(&redis, |_| {}).await;
    let body = stripe_event("evt_twice");
    let first = a.stripe(&body).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json().get("duplicate"), None);
    let id = first.json()["id"].as_str().unwrap().to_string();
    let second = b.stripe(&body).await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(second.json()["duplicate"], true);
    assert_eq!(second.json()["id"], id.as_str(), "the first instance's id");
    assert!(b.store.find_by_event_id("stripe", "evt_twice").unwrap().is_none(), "not recorded twice");
    let stats = b.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["redis"]["duplicates_elsewhere"], 1);
    assert_eq!(stats["total_events"], 0);
    // Back to the first: its own store answers, with its own id.
    let again = a.stripe(&body).await.json();
    assert_eq!((again["duplicate"].clone(), again["id"].clone()), (true.into(), id.as_str().into()));
    a.stop().await;
    b.stop().await;
}

/// Sends `event_id` to each of `servers` in turn: the first records it, every other answers it
/// as a duplicate naming the first's record and stores nothing. Returns the record's id.
async fn recorded_once(servers: &[&TestServer], event_id: &str) -> String {
    let body = stripe_event(event_id);
    let first = servers[0].stripe(&body).await;
    assert_eq!((first.status, first.json().get("duplicate")), (200, None), "{event_id}: {}", first.text());
    let id = first.json()["id"].as_str().unwrap().to_string();
    for (n, s) in servers.iter().enumerate().skip(1) {
        let r = s.stripe(&body).await;
        assert_eq!(r.status, 200, "{event_id} to replica {n}: {}", r.text());
        let answer = r.json();
        assert_eq!(answer["duplicate"], true, "{event_id} to replica {n}: recorded twice: {answer}");
        assert_eq!(answer["id"], id.as_str(), "{event_id} to replica {n}: the first replica's id");
        assert!(s.store.find_by_event_id("stripe", event_id).unwrap().is_none(), "{event_id}: stored by replica {n}");
    }
    id
}

/// Two replicas that share a name, as the host name is when `server.instance_id` is not set (a
/// blue/green pair on one machine, containers that share a host name): a claim belongs to the
/// process that took it, not to the name, so the second replica answers the first's duplicate.
/// (The binary refuses to start a second live process under a taken name, see below; these two
/// in-process replicas skip that check, as a second process started while Redis was away does.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_with_the_default_name_record_an_event_once() {
    let redis = RedisServer::start();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (a, b) =
        futures_util::future::join(start(sharing(dirs[0].path(), &redis)), start(sharing(dirs[1].path(), &redis)))
            .await;
    let (ha, hb) = (health(&a).await, health(&b).await);
    assert_eq!(ha["instance"], hb["instance"], "one name for both");
    let id = recorded_once(&[&a, &b], "evt_default_1").await;
    recorded_once(&[&b, &a], "evt_default_2").await;
    // Each replica still answers its own events from its own store.
    let again = a.stripe(&stripe_event("evt_default_1")).await.json();
    assert_eq!((again["duplicate"].clone(), again["id"].clone()), (true.into(), id.as_str().into()), "{again}");
    for s in [&a, &b] {
        let stats = s.get("/staging/webhooks/stats").await.json();
        assert_eq!(
            (stats["redis"]["duplicates_elsewhere"].as_u64(), stats["total_events"].as_u64()),
            (Some(1), Some(1))
        );
    }
    assert_eq!(a.get("/staging/webhooks/stats").await.json()["duplicates"], 1, "its own, counted as such");
    a.stop().await;
    b.stop().await;
}

/// Three replicas, two under the default name and one named: whichever receives an event first
/// records it, and the other two answer its duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_record_an_event_once_whichever_receives_it_first() {
    let redis = RedisServer::start();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = start(sharing(dirs[0].path(), &redis)).await;
    let b = start(sharing(dirs[1].path(), &redis)).await;
    let c = start(shared_config(dirs[2].path(), &redis, "c")).await;
    recorded_once(&[&a, &b, &c], "evt_three_a").await;
    recorded_once(&[&b, &c, &a], "evt_three_b").await;
    recorded_once(&[&c, &a, &b], "evt_three_c").await;
    let total: u64 = futures_util::future::join_all([&a, &b, &c].map(|s| s.get("/staging/webhooks/stats")))
        .await
        .iter()
        .map(|r| r.json()["total_events"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 3, "each event recorded by one replica");
    for s in [a, b, c] {
        s.stop().await;
    }
}

/// A door in front of a Redis: connections are accepted at once and their bytes held until it
/// opens, as a Redis that has not answered yet.
struct Door {
    port: u16,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    open: tokio::sync::watch::Sender<bool>,
}

async fn door(to: u16) -> Door {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (open, opened) = tokio::sync::watch::channel(false);
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut opened = opened.clone();
            tokio::spawn(async move {
                if opened.wait_for(|open| *open).await.is_ok() {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }
            });
        }
    });
    Door { port, accepted, open }
}

/// `redis: up` only once Redis has answered this instance: until then it is `connecting`, and
/// the health check says so, however long the first answer takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_is_connecting_until_it_first_answers() {
    let redis = RedisServer::start();
    let door = door(redis.port()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = shared_config(dir.path(), &redis, "a");
    c.redis.url = Some(format!("redis://127.0.0.1:{}/0", door.port));
    // Far longer than the test: the first ping waits at the door, it is not cut short.
    c.redis.timeout = HumanDuration(Duration::from_secs(600));
    let s = start(c).await;
    until("the watcher to reach Redis", || async {
        (door.accepted.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    let h = health(&s).await;
    assert_eq!(
        (h["redis"].as_str(), h["status"].as_str(), h["reason"].as_str()),
        (Some("connecting"), Some("degraded"), Some("Redis has not answered yet")),
        "{h}"
    );
    let stats = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["redis"]["state"], "connecting");

    door.open.send_replace(true);
    until("Redis to answer", || async { (health(&s).await["redis"] == "up").then_some(()) }).await;
    assert_eq!(health(&s).await["status"], "ok");
    s.stop().await;
}

/// Runs `stagehook serve` that must refuse to start: its exit code and stderr. One that starts
/// serving instead never exits, and fails the test after a minute.
async fn refused_start(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_stagehook"));
    cmd.args(args).env_clear().envs(env.iter().copied()).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("it refused to start, rather than serve")
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The config of a binary whose duplicates are shared through `redis`.
fn binary_config(dir: &Path, redis: &RedisServer) -> String {
    let extra = format!("\n[dedup]\nbackend = \"redis\"\n\n[redis]\nurl = \"{}\"\n", redis.url());
    support::write_config(dir, &extra).to_str().unwrap().to_string()
}

/// Two running processes under one `server.instance_id` on one Redis: the second refuses to
/// start (exit 2), naming the id, the process that holds it and how to fix it; the first goes on,
/// and a second under its own name starts beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_running_process_under_a_taken_name_refuses_to_start() {
    let redis = RedisServer::start();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (c1, c2) = (binary_config(d1.path(), &redis), binary_config(d2.path(), &redis));
    let env = |id| [("RUST_LOG", "warn"), ("STAGEHOOK_SERVER_INSTANCE_ID", id)];
    let mut first = spawn_binary(&["serve", "--config", &c1], &env("web-1")).await;
    let pid = first.child.id().unwrap();

    let (code, stderr) = refused_start(&["serve", "--config", &c2], &env("web-1")).await;
    assert_eq!(code, Some(2), "{stderr}");
    for part in ["instance id `web-1`", &format!("pid {pid}"), "server.instance_id", "STAGEHOOK_SERVER_INSTANCE_ID"] {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }
    assert!(!stderr.contains("listening"), "{stderr}");

    let r = first.stripe(&stripe_event("evt_first")).await;
    assert_eq!(r.status, 200, "the first goes on: {}", r.text());
    let mut second = spawn_binary(&["serve", "--config", &c2], &env("web-2")).await;
    let r = second.stripe(&stripe_event("evt_first")).await.json();
    assert_eq!(r["duplicate"], true, "{r}");
    for s in [&mut first, &mut second] {
        s.signal("TERM");
        assert!(s.wait().await.success());
    }
}

/// A restart under the same name is no conflict: after a kill (the name is not given back), the
/// new process waits for the old one's presence to expire and starts; after a clean stop (given
/// back) it takes the name at once. The events the instance stored stay duplicates, on it and
/// on the other replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_under_the_same_name_is_no_conflict_and_duplicates_stay_found() {
    let redis = RedisServer::start();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = binary_config(d1.path(), &redis);
    let (args, env) =
        (["serve", "--config", &config], [("RUST_LOG", "warn"), ("STAGEHOOK_SERVER_INSTANCE_ID", "web-1")]);
    let other = start(shared_config(d2.path(), &redis, "web-2")).await;
    let body = stripe_event("evt_restart");
    let presence = || redis.query::<Option<String>>(&["GET", "stagehook:instance:web-1"]);

    let mut first = spawn_binary(&args, &env).await;
    let r = first.stripe(&body).await;
    assert_eq!((r.status, r.json().get("duplicate")), (200, None), "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let pid = first.child.id().unwrap();
    assert!(presence().is_some_and(|p| p.contains(&format!(" {pid} "))), "{:?}", presence());
    first.signal("KILL");
    first.wait().await;
    assert!(presence().is_some_and(|p| p.contains(&format!(" {pid} "))), "a killed process gives nothing back");

    let mut second = spawn_binary(&args, &env).await;
    let stderr = second.stderr.clone();
    until("the wait to be logged", || async { stderr.lock().contains("waiting up to").then_some(()) }).await;
    let pid = second.child.id().unwrap();
    assert!(presence().is_some_and(|p| p.contains(&format!(" {pid} "))), "{:?}", presence());
    for (who, addr) in [("the restarted instance", second.addr), ("the other replica", other.addr)] {
        let r = post_stripe(addr, &body, &[]).await.json();
        assert_eq!((r["duplicate"].clone(), r["id"].clone()), (true.into(), id.as_str().into()), "{who}: {r}");
    }
    assert!(second.stripe(&stripe_event("evt_restart_2")).await.json().get("duplicate").is_none());

    second.signal("TERM");
    assert!(second.wait().await.success());
    assert_eq!(presence(), None, "given back on a clean stop");
    let mut third = spawn_binary(&args, &env).await;
    let pid = third.child.id().unwrap();
    assert!(presence().is_some_and(|p| p.contains(&format!(" {pid} "))), "{:?}", presence());
    let r = third.stripe(&body).await.json();
    assert_eq!((r["duplicate"].clone(), r["id"].clone()), (true.into(), id.as_str().into()), "{r}");
    third.signal("TERM");
    third.wait().await;
    other.stop().await;
}

/// A claim whose event could not be stored (the store's commit failed) is released: the
/// provider's retry onto another instance is recorded there at once, neither `409` nor a
/// duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_is_released_when_the_commit_fails() {
    let redis = RedisServer::start();
    let (a, b, _dirs) = pair(&redis, |_| {}).await;
    let body = stripe_event("evt_not_stored");
    // Every retry of the writer fails: the event is not acknowledged.
    a.store.inject_flush_failures(4);
    let r = a.stripe(&body).await;
    assert_eq!((r.status, r.code().as_str()), (503, "storage_unavailable"), "{}", r.text());
    let keys: Vec<String> = redis.query(&["KEYS", "stagehook:claim:*"]);
    assert!(keys.is_empty(), "released: {keys:?}");
    let r = b.stripe(&body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().get("duplicate"), None, "recorded by the instance that could: {}", r.text());
    assert!(b.store.find_by_event_id("stripe", "evt_not_stored").unwrap().is_some());
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_to_both_instances_at_once_are_delivered_exactly_once() {
    let redis = RedisServer::start();
    let app = FakeApp::start().await;
    let (a, b, _dirs) = pair(&redis, |c| {
        c.limits.rate_limit_per_minute = 0;
        // 400 requests at once on two shared cores: a call may wait long for a turn, and this
        // test is about sharing while Redis answers, not about an outage.
        c.redis.timeout = HumanDuration(Duration::from_secs(5));
        c.providers.get_mut("stripe").unwrap().forward_to = vec![app.url("/hook")];
    })
    .await;
    let servers = [a, b];
    let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
    let answers: Arc<Mutex<BTreeMap<String, Vec<Value>>>> = Arc::default();
    let mut tasks = Vec::new();
    for n in 0..200 {
        let event_id = format!("evt_both_{n}");
        let body = stripe_event(&event_id);
        for &addr in &addrs {
            let (body, event_id, answers) = (body.clone(), event_id.clone(), answers.clone());
            tasks.push(tokio::spawn(async move {
                let (r, _) = deliver_like_a_provider(addr, &body).await;
                assert_eq!(r.status, 200, "{event_id}: {}", r.text());
                answers.lock().entry(event_id).or_default().push(r.json());
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let answers = answers.lock().clone();
    assert_eq!(answers.len(), 200);
    for s in &servers {
        let redis = &s.get("/staging/webhooks/stats").await.json()["redis"];
        assert_eq!(
            (redis["state"].as_str(), redis["errors"].as_u64()),
            (Some("up"), Some(0)),
            "Redis answered every call"
        );
    }
    for (event_id, pair) in &answers {
        let fresh = pair.iter().filter(|a| a.get("duplicate").is_none()).count();
        assert_eq!(fresh, 1, "{event_id}: recorded exactly once: {pair:?}");
        assert_eq!(pair[0]["id"], pair[1]["id"], "{event_id}: both answers name one record");
    }
    let received = app.wait_for(200).await;
    // Both instances' queues are empty once every event is processed, so no late delivery can
    // still come.
    for s in &servers {
        until("the queue to drain", || async {
            let stats = s.get("/staging/webhooks/stats").await.json();
            let by = &stats["by_status"];
            (by["received"] == 0 && by["processing"] == 0).then_some(())
        })
        .await;
    }
    let received = if app.received().len() > received.len() { app.received() } else { received };
    let delivered: Vec<String> =
        received.iter().map(|r| r.header("x-stagehook-event-id").unwrap_or_default().to_string()).collect();
    let distinct: BTreeSet<&String> = delivered.iter().collect();
    assert_eq!((delivered.len(), distinct.len()), (200, 200), "each event delivered exactly once");
    let total: u64 = futures_util::future::join_all(servers.iter().map(|s| s.get("/staging/webhooks/stats")))
        .await
        .iter()
        .map(|r| r.json()["total_events"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 200, "each event recorded by one instance");
    for s in servers {
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_away_open_acts_alone_closed_refuses_and_both_resume() {
    let mut redis = RedisServer::start();
    let (d1, d2, d3) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let open = start(shared_config(d1.path(), &redis, "open")).await;
    let other = start(shared_config(d2.path(), &redis, "other")).await;
    let mut c = shared_config(d3.path(), &redis, "closed");
    c.redis.on_error = OnError::Closed;
    let closed = start(c).await;
    // Up once Redis has answered each (it starts `connecting`).
    for s in [&open, &other, &closed] {
        until("Redis to answer", || async { (health(s).await["redis"] == "up").then_some(()) }).await;
    }
    assert_eq!(health(&open).await["status"], "ok");

    redis.stop();
    let r = open.stripe(&stripe_event("evt_alone")).await;
    assert_eq!(r.status, 200, "open: acts alone: {}", r.text());
    assert!(open.store.find_by_event_id("stripe", "evt_alone").unwrap().is_some());
    let h = health(&open).await;
    assert_eq!((h["status"].as_str(), h["redis"].as_str()), (Some("degraded"), Some("down")), "{h}");
    assert_eq!(open.get("/readyz").await.status, 200, "open: still ready");
    let r = closed.stripe(&stripe_event("evt_refused")).await;
    assert_eq!((r.status, r.code().as_str()), (503, "redis_unavailable"), "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("5"));
    support::assert_security_headers(&r);
    until("the closed instance to notice", || async { (closed.get("/readyz").await.status == 503).then_some(()) })
        .await;
    assert_eq!(closed.get("/readyz").await.json()["reason"], "redis_unavailable");
    let stats = closed.get("/staging/webhooks/stats").await.json();
    assert_eq!((stats["redis"]["state"].as_str(), stats["redis"]["on_error"].as_str()), (Some("down"), Some("closed")));

    redis.restart();
    for s in [&open, &other, &closed] {
        until("sharing to resume", || async { (health(s).await["redis"] == "up").then_some(()) }).await;
    }
    assert_eq!(health(&open).await["status"], "ok");
    assert_eq!(closed.get("/readyz").await.status, 200);
    let r = closed.stripe(&stripe_event("evt_back")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["id"].clone();
    let r = other.stripe(&stripe_event("evt_back")).await.json();
    assert_eq!((r["duplicate"].clone(), r["id"].clone()), (true.into(), id), "shared again, without a restart");
    for s in [open, other, closed] {
        s.stop().await;
    }
}

/// An instance killed between claim and commit leaves pending claims; the provider's retries
/// of those events onto another instance are answered `409 in_progress` until the claims
/// expire, then recorded, never taken for duplicates; and every event that instance did store
/// is a duplicate there, naming the record the killed instance holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_left_by_a_killed_instance_never_turns_a_retry_into_a_false_duplicate() {
    let redis = RedisServer::start();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let extra =
        format!("\n[dedup]\nbackend = \"redis\"\npending_expiry = \"5s\"\n\n[redis]\nurl = \"{}\"\n", redis.url());
    let config = support::write_config(d1.path(), &extra);
    let args = ["serve", "--config", config.to_str().unwrap()];
    let env = [("RUST_LOG", "warn"), ("STAGEHOOK_SERVER_INSTANCE_ID", "killed")];
    let mut killed = spawn_binary(&args, &env).await;
    let mut c = shared_config(d2.path(), &redis, "survivor");
    c.limits.rate_limit_per_minute = 0;
    let survivor = start(c).await;

    let (addr, sent, acked) = (killed.addr, Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(BTreeMap::new())));
    let mut workers = Vec::new();
    for w in 0..16 {
        let (sent, acked) = (sent.clone(), acked.clone());
        workers.push(tokio::spawn(async move {
            for i in 0.. {
                let event_id = format!("evt_kill_{w}_{i}");
                sent.lock().push(event_id.clone());
                let raw = support::stripe_request(&stripe_event(&event_id), &[]);
                let Ok(stream) = tokio::net::TcpStream::connect(addr).await else { return };
                match support::exchange(stream, &raw).await {
                    Ok(r) if r.status == 200 => {
                        acked.lock().insert(event_id, r.json()["id"].as_str().unwrap().to_string());
                    }
                    Ok(r) => panic!("unexpected {}: {}", r.status, r.text()),
                    Err(_) => return,
                }
            }
        }));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().len() < 200 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Frozen mid-load, the instance's claims in Redis are what it would leave if killed now:
    // killed once some are pending, so that the kill comes between their claim and commit.
    let pending_now = || -> BTreeSet<String> {
        let keys: Vec<String> = redis.query(&["KEYS", "stagehook:claim:stripe:*"]);
        keys.iter()
            .filter(|k| redis.query::<Option<String>>(&["GET", k]).is_some_and(|v| v.starts_with("p/killed/")))
            .map(|k| k.trim_start_matches("stagehook:claim:stripe:").to_string())
            .collect()
    };
    let mut pending = BTreeSet::new();
    for _ in 0..100 {
        killed.signal("STOP");
        // Calls it sent just before are done by Redis meanwhile.
        tokio::time::sleep(Duration::from_millis(20)).await;
        pending = pending_now();
        if !pending.is_empty() {
            break;
        }
        killed.signal("CONT");
        tokio::time::sleep(Duration::from_millis(fastrand::u64(1..30))).await;
    }
    assert!(!pending.is_empty(), "no claim was ever pending in 100 looks");
    killed.signal("KILL");
    killed.wait().await;
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(pending_now(), pending, "what a dead instance left stays until it expires");
    // The provider's retries of those events, onto the survivor, while the claims last (5 s):
    // in progress, to be retried, not duplicates.
    for event_id in &pending {
        let r = post_stripe(survivor.addr, &stripe_event(event_id), &[]).await;
        assert_eq!((r.status, r.code().as_str()), (409, "in_progress"), "{event_id}: {}", r.text());
        let retry_after: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=5).contains(&retry_after), "{retry_after}");
    }
    let (sent, acked) = (sent.lock().clone(), acked.lock().clone());
    assert!(acked.len() >= 200, "only {} acknowledged", acked.len());

    // Then every event the provider sent is retried onto the survivor until it is answered.
    let mut duplicates = BTreeMap::new();
    for event_id in &sent {
        let (r, _) = deliver_like_a_provider(survivor.addr, &stripe_event(event_id)).await;
        assert_eq!(r.status, 200, "{event_id}: {}", r.text());
        let answer = r.json();
        if pending.contains(event_id) {
            assert_eq!(answer.get("duplicate"), None, "{event_id}: never stored, so not a duplicate: {answer}");
            assert!(survivor.store.find_by_event_id("stripe", event_id).unwrap().is_some(), "{event_id}");
        }
        if let Some(id) = acked.get(event_id) {
            assert_eq!(answer["duplicate"], true, "{event_id} was acknowledged by the killed instance");
            assert_eq!(answer["id"], id.as_str());
        }
        if answer["duplicate"] == true {
            duplicates.insert(event_id.clone(), answer["id"].as_str().unwrap().to_string());
        }
    }
    // A duplicate names a record the killed instance really holds: restart it and look.
    let restarted = spawn_binary(&args, &env).await;
    for (event_id, id) in &duplicates {
        let r = request(restarted.addr, "GET", &format!("/staging/webhooks/events/{id}"), &[], b"").await;
        assert_eq!(r.status, 200, "{event_id} was answered as a duplicate of {id}, which is not stored");
        assert_eq!(r.json()["event_id"], event_id.as_str());
    }
    restarted.signal("TERM");
    survivor.stop().await;
}

/// `check-config` says whether the Redis a backend uses answers: a warning under
/// `on_error = "open"`, an error (exit 1) under `"closed"`, its password never shown.
#[test]
fn check_config_reports_an_unreachable_redis() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let write = |url: &str, on_error: &str| {
        let extra = format!("\n[dedup]\nbackend = \"redis\"\n\n[redis]\nurl = \"{url}\"\non_error = \"{on_error}\"\n");
        support::write_config(dir.path(), &extra).to_str().unwrap().to_string()
    };
    let finding = |out: &str| -> Value {
        let report: Value = serde_json::from_str(out).unwrap();
        let found = report["findings"].as_array().unwrap().iter().find(|f| f["id"] == "redis.reachable").cloned();
        found.unwrap_or_else(|| panic!("no redis.reachable finding: {report:#}"))
    };
    let up = redis.url();
    let (code, out) = support::run_binary(&["check-config", "--config", &write(&up, "open"), "--json"]);
    assert_eq!((code, finding(&out)["severity"].as_str()), (0, Some("ok")), "{out}");

    redis.stop();
    let with_password = up.replace("redis://", "redis://:hunter2@");
    let (code, out) = support::run_binary(&["check-config", "--config", &write(&with_password, "open"), "--json"]);
    let f = finding(&out);
    assert_eq!((code, f["severity"].as_str(), f["key"].as_str()), (0, Some("warning"), Some("redis.url")), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
    let (code, out) = support::run_binary(&["check-config", "--config", &write(&up, "closed"), "--json"]);
    assert_eq!((code, finding(&out)["severity"].as_str()), (1, Some("error")), "{out}");
    let (code, out) = support::run_binary(&["check-config", "--config", &write(&up, "closed"), "--json", "--offline"]);
    assert_eq!(code, 0, "--offline contacts nothing: {out}");
}

/// A Redis that is down at startup: the binary starts, acts alone under `on_error = "open"`,
/// and warns once, not once per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_one_warning_not_one_per_request() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.stop();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("\n[dedup]\nbackend = \"redis\"\n\n[redis]\nurl = \"{url}\"\n");
    let config = support::write_config(dir.path(), &extra);
    let mut server = spawn_binary(&["serve", "--config", config.to_str().unwrap()], &[("RUST_LOG", "warn")]).await;
    for n in 0..5 {
        let r = server.stripe(&stripe_event(&format!("evt_alone_{n}"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    server.signal("TERM");
    server.wait().await;
    let stderr = server.stderr.lock().clone();
    assert_eq!(stderr.matches("Redis is unreachable").count(), 1, "{stderr}");
    assert!(stderr.contains("alone until it answers"), "{stderr}");
}
