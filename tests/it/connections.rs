//! Hostile and broken clients at the connection level: idle and half-sent requests closed at
//! `header_timeout` while a genuine event is answered, a kept-alive connection closed at
//! `idle_timeout`, trickled bodies (`408`, and `408 body_too_slow` behind `min_body_rate`),
//! oversize and rate-limited bodies from clients that write before they read, connection floods
//! beyond `server.max_connections` (the connection that waited longest, or the slowest body,
//! making room), bodies past `max_inflight_body_bytes` (`503`), heads over `max_header_bytes`
//! (`431` however they arrive), HTTP/2 prefaces, and floods of refusals writing a bounded log.
//! Each test runs the real server on port 0 with the defence's number set low.

use std::net::SocketAddr;
use std::time::Duration;

use stagehook::config::HumanDuration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{self, config, start, stripe_event, stripe_header, STRIPE_SECRET};

/// What the server charges a body still arriving beside its bytes (`server.rs`).
const BODY_OVERHEAD: u64 = 16 * 1024;

fn secs(s: f64) -> HumanDuration {
    HumanDuration(Duration::from_secs_f64(s))
}

/// The head of a signed Stripe request for `body`, without the body.
fn stripe_head(body: &str, keep_alive: bool) -> String {
    let sig = stripe_header(STRIPE_SECRET, support::now_s(), body.as_bytes());
    format!(
        "POST /staging/webhooks/stripe HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         stripe-signature: {sig}\r\ncontent-length: {}\r\n{}\r\n",
        body.len(),
        if keep_alive { "" } else { "connection: close\r\n" }
    )
}

/// Reads until the connection ends (EOF or reset), at most `within`; what was read, or `None`
/// when it stayed open that long.
async fn read_to_end(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().map(|()| buf)
}

/// Reads one response (head and Content-Length body) without waiting for the connection to end.
async fn read_response(stream: &mut TcpStream, within: Duration) -> support::Resp {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let resp = support::parse(&buf);
                let len = resp.header("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return resp;
                }
            }
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed before a whole response: {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(within, read).await.expect("a response in time")
}

async fn connections(addr: SocketAddr) -> serde_json::Value {
    support::request(addr, "GET", "/staging/webhooks/stats", &[], b"").await.json()["connections"].clone()
}

#[tokio::test]
async fn idle_half_sent_requests_neither_starve_a_genuine_event_nor_stay_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.header_timeout = secs(1.0);
    let server = start(c).await;
    let mut idle = Vec::new();
    for _ in 0..3000 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"POST /staging/webhooks/stripe HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        idle.push(s);
    }
    let r = server.stripe(&stripe_event("evt_amid_idle")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Every idle one is closed by the server once its header time is up, without an answer.
    for (i, s) in idle.iter_mut().enumerate() {
        let got = read_to_end(s, Duration::from_secs(20)).await;
        assert!(got.is_some(), "idle connection {i} still open");
    }
    let stats = connections(server.addr).await;
    assert!(stats["header_timeouts"].as_u64().unwrap() >= 3000, "{stats}");
    server.stop().await;
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.header_timeout = secs(60.0);
    c.server.idle_timeout = secs(1.0);
    let server = start(c).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let body = stripe_event("evt_keep_alive");
    s.write_all(format!("{}{body}", stripe_head(&body, true)).as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s, Duration::from_secs(10)).await.status, 200);
    // Well before the header timeout could close it.
    assert!(read_to_end(&mut s, Duration::from_secs(30)).await.is_some(), "still open");
    assert_eq!(connections(server.addr).await["idle_timeouts"], 1);
    server.stop().await;
}

#[tokio::test]
async fn a_trickled_body_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.body_timeout = secs(1.0);
    let server = start(c).await;
    let body = stripe_event("evt_trickled");
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(stripe_head(&body, false).as_bytes()).await.unwrap();
    s.write_all(&body.as_bytes()[..10]).await.unwrap();
    let mut sent = 10;
    let answer = async {
        // A byte every 200 ms: alive, never done in time.
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if s.write_all(&body.as_bytes()[sent..sent + 1]).await.is_err() {
                break;
            }
            sent += 1;
            if sent + 1 >= body.len() {
                break;
            }
        }
        read_to_end(&mut s, Duration::from_secs(10)).await.expect("closed")
    };
    let raw = tokio::time::timeout(Duration::from_secs(30), answer).await.expect("answered");
    let r = support::parse(&raw);
    assert_eq!(r.status, 408, "{}", r.text());
    assert_eq!(r.code(), "request_timeout");
    assert!(sent + 1 < body.len(), "the body must not have been complete");
    assert_eq!(connections(server.addr).await["body_timeouts"], 1);
    server.stop().await;
}

/// Writes the whole request before reading anything, as Python's urllib and many HTTP libraries
/// do; the answer must arrive whole, not as a reset.
async fn write_first(addr: SocketAddr, raw: &[u8]) -> std::io::Result<support::Resp> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(raw).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    Ok(support::parse(&buf))
}

#[tokio::test]
async fn early_refusals_reach_clients_that_write_their_whole_body_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.limits.max_body_bytes = 20 * 1024 * 1024;
    c.limits.rate_limit_per_minute = 1;
    // More than the socket buffers on both sides hold, so the client is still writing when the
    // answer is ready.
    c.server.refusal_drain_bytes = 32 * 1024 * 1024;
    let server = start(c).await;
    let big = vec![b'x'; 24 * 1024 * 1024];
    for i in 0..3 {
        let raw = support::build("POST", "/staging/webhooks/stripe", &[("content-type", "application/json")], &big);
        let r = write_first(server.addr, &raw).await.unwrap_or_else(|e| panic!("try {i}: {e}"));
        assert_eq!(r.status, 413, "{}", r.text());
        assert_eq!(r.code(), "payload_too_large");
    }
    // Rate limited before the body is read: one request passes, the next is refused, and both
    // bodies are read to the end first.
    let half = vec![b'x'; 16 * 1024 * 1024];
    let raw = support::build("POST", "/staging/webhooks/stripe", &[("content-type", "application/json")], &half);
    let first = write_first(server.addr, &raw).await.unwrap();
    assert_ne!(first.status, 429, "{}", first.text());
    for _ in 0..3 {
        let r = write_first(server.addr, &raw).await.unwrap();
        assert_eq!(r.status, 429, "{}", r.text());
    }
    server.stop().await;
}

/// Opens an event stream and reads its head: from then on, its connection is handling a request.
async fn open_stream(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /staging/webhooks/events/stream HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut chunk)).await.expect("a head").unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(buf.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&buf));
    s
}

/// Waits until the server counts `n` connections open (the one asking included).
async fn until_open(addr: SocketAddr, n: u64) {
    support::until(&format!("{n} connections open"), || async {
        (connections(addr).await["open"].as_u64() == Some(n)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn beyond_max_connections_new_ones_are_refused_while_open_requests_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.max_connections = 20;
    let server = start(c).await;
    // Twenty requests being handled: event streams, which hold their connection while open.
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(open_stream(server.addr).await);
    }
    for _ in 0..3 {
        // Answered at once, before the client has said anything.
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let raw = read_to_end(&mut s, Duration::from_secs(10)).await.expect("closed at once");
        let r = support::parse(&raw);
        assert_eq!(r.status, 503);
        assert_eq!(r.code(), "too_many_connections");
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    drop(streams);
    let r = support::until("room once the streams closed", || async {
        let r = server.stripe(&stripe_event("evt_after_the_streams")).await;
        (r.status != 503).then_some(r)
    })
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let stats = connections(server.addr).await;
    assert!(stats["refused"].as_u64().unwrap() >= 3, "{stats}");
    assert_eq!(stats["evicted"], 0, "{stats}");
    server.stop().await;
}

#[tokio::test]
async fn at_the_cap_a_connection_that_waited_makes_room_for_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.max_connections = 22;
    let server = start(c).await;
    let mut idle = Vec::new();
    for _ in 0..19 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"POST /staging/webhooks/stripe HTTP/1.1\r\n").await.unwrap();
        idle.push(s);
    }
    // The server has taken all nineteen (and this question) in: their waits have begun. Below
    // the cap, with room for a question that has not closed yet, so nothing is evicted early.
    until_open(server.addr, 20).await;
    for _ in 0..3 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"POST /staging/webhooks/stripe HTTP/1.1\r\n").await.unwrap();
        idle.push(s);
    }
    // Long enough for the nineteen to be candidates, whenever the last three were taken in.
    tokio::time::sleep(stagehook::http::server::EVICT_AFTER + Duration::from_millis(100)).await;
    for i in 0..5 {
        let r = server.stripe(&stripe_event(&format!("evt_made_room_{i}"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Each genuine request took the place of an idle connection, or the room one left: none
    // was refused, and the first to go was the one that had waited longest.
    let stats = connections(server.addr).await;
    assert!((1..=6).contains(&stats["evicted"].as_u64().unwrap()), "{stats}");
    assert_eq!(stats["refused"], 0, "{stats}");
    assert!(read_to_end(&mut idle[0], Duration::from_secs(10)).await.is_some(), "the oldest was closed");
    server.stop().await;
}

/// Sends the head of a POST to the Stripe endpoint declaring `declared` bytes, and the first
/// `sent` of them.
async fn slow_body(addr: SocketAddr, declared: usize, sent: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /staging/webhooks/stripe HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         stripe-signature: t=1,v1=00\r\ncontent-length: {declared}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&vec![b' '; sent]).await.unwrap();
    s
}

#[tokio::test]
async fn a_body_slower_than_the_minimum_rate_is_cut_408() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.min_body_rate = 10;
    c.server.body_rate_grace = secs(0.5);
    // Far off: only the rate can end the slow body within the test.
    c.server.body_timeout = secs(300.0);
    let server = start(c).await;

    // Five bytes of a thousand: behind the rate half a second after the grace.
    let mut slow = slow_body(server.addr, 1000, 5).await;
    let raw = read_to_end(&mut slow, Duration::from_secs(60)).await.expect("cut and closed");
    let r = support::parse(&raw);
    assert_eq!(r.status, 408, "{}", r.text());
    assert_eq!(r.code(), "body_too_slow");
    assert_eq!(r.header("connection"), Some("close"));

    // A body that keeps ahead of the rate arrives whole, however many pieces it comes in: each
    // piece of 100 bytes buys it ten seconds.
    let body = stripe_event("evt_in_pieces");
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(stripe_head(&body, false).as_bytes()).await.unwrap();
    for piece in body.as_bytes().chunks(100) {
        s.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = read_response(&mut s, Duration::from_secs(30)).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let stats = connections(server.addr).await;
    assert_eq!(stats["body_too_slow"], 1, "{stats}");
    assert_eq!(stats["body_timeouts"], 0, "{stats}");
    assert_eq!(stats["inflight_body_bytes"], 0, "every charge given back: {stats}");
    let rejections = server.get("/staging/webhooks/stats").await.json()["rejections"].clone();
    assert_eq!(rejections["body_too_slow"], 1, "{rejections}");
    server.stop().await;
}

#[tokio::test]
async fn at_the_cap_the_slowest_body_makes_room_for_an_event_and_the_stats() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.max_connections = 22;
    // Neither the rate nor the timeout cuts a body here: only the cap does.
    c.server.min_body_rate = 100;
    c.server.body_rate_grace = secs(300.0);
    c.server.body_timeout = secs(300.0);
    let server = start(c).await;
    // Eighteen bodies with 500 bytes each (five seconds ahead of the rate), then one with a
    // single byte: the slowest, though not the oldest.
    let mut bodies = Vec::new();
    for _ in 0..18 {
        bodies.push(slow_body(server.addr, 1000, 500).await);
    }
    let mut slowest = slow_body(server.addr, 1000, 1).await;
    // All nineteen are arriving (each charges the budget with what it declared and the state of
    // its request): the server has them, and this question makes twenty, below the cap.
    support::until("nineteen bodies in flight", || async {
        let stats = connections(server.addr).await;
        (stats["inflight_body_bytes"] == 19 * (1000 + BODY_OVERHEAD) && stats["open"] == 20).then_some(())
    })
    .await;
    for _ in 0..3 {
        bodies.push(slow_body(server.addr, 1000, 500).await);
    }
    tokio::time::sleep(stagehook::http::server::EVICT_AFTER + Duration::from_millis(100)).await;

    let r = server.stripe(&stripe_event("evt_past_the_slow_bodies")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let raw = read_to_end(&mut slowest, Duration::from_secs(30)).await.expect("the slowest was closed");
    let cut = support::parse(&raw);
    assert_eq!(cut.status, 408, "{}", cut.text());
    assert_eq!(cut.code(), "body_too_slow");
    let stats = support::until("the stats", || async {
        let r = support::request(server.addr, "GET", "/staging/webhooks/stats", &[], b"").await;
        (r.status == 200).then(|| r.json())
    })
    .await;
    assert!(stats["connections"]["evicted"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["connections"]["refused"], 0, "{stats}");

    // The bodies not evicted are still being read, and end normally.
    let mut finished = 0;
    for mut s in bodies {
        if s.write_all(&[b' '; 500]).await.is_err() {
            continue;
        }
        let r = read_response(&mut s, Duration::from_secs(30)).await;
        if r.status == 408 {
            assert_eq!(r.code(), "body_too_slow");
            continue;
        }
        assert_eq!(r.code(), "invalid_signature", "{}", r.text());
        finished += 1;
    }
    assert!(finished >= 18, "{finished} of 21 finished");
    server.stop().await;
}

/// Opens an event stream, retrying while the server refuses it at the cap (a connection that
/// has just closed may not be counted out yet).
async fn open_stream_when_room(addr: SocketAddr) -> TcpStream {
    support::until("room for an event stream", || async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /staging/webhooks/events/stream HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await.ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut chunk)).await.ok()?.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.starts_with(b"HTTP/1.1 200").then_some(s)
    })
    .await
}

#[tokio::test]
async fn at_the_cap_a_body_behind_the_rate_goes_at_once_and_one_that_keeps_up_never() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.max_connections = 23;
    // The rate's grace and the timeout are far off: only the cap cuts a body here, and whether a
    // body may go is measured from the end of its head, without the grace.
    c.server.min_body_rate = 10;
    c.server.body_rate_grace = secs(300.0);
    c.server.body_timeout = secs(300.0);
    let server = start(c).await;
    // Twenty bodies with 500 bytes each (fifty seconds ahead of the rate), then one with none
    // yet (behind it a millisecond after its head).
    let mut ahead = Vec::new();
    for _ in 0..20 {
        ahead.push(slow_body(server.addr, 1000, 500).await);
    }
    let mut behind = slow_body(server.addr, 1000, 0).await;
    support::until("twenty-one bodies in flight", || async {
        let stats = connections(server.addr).await;
        (stats["inflight_body_bytes"] == 21 * (1000 + BODY_OVERHEAD) && stats["open"] == 22).then_some(())
    })
    .await;
    // Two event streams fill the cap: they handle their requests, and are never evicted.
    let streams = [open_stream_when_room(server.addr).await, open_stream_when_room(server.addr).await];

    // At the cap, straight away: the body behind the rate makes room, however young it is.
    let r = server.stripe(&stripe_event("evt_past_a_young_slow_body")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let raw = read_to_end(&mut behind, Duration::from_secs(30)).await.expect("the body behind was closed");
    let cut = support::parse(&raw);
    assert_eq!(cut.status, 408, "{}", cut.text());
    assert_eq!(cut.code(), "body_too_slow");

    // The cap full again, of bodies that keep up with the rate, however old they grow: none is
    // evicted, and the new connection is refused.
    let third = open_stream_when_room(server.addr).await;
    tokio::time::sleep(stagehook::http::server::EVICT_AFTER + Duration::from_millis(100)).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let raw = read_to_end(&mut s, Duration::from_secs(10)).await.expect("refused at once");
    let r = support::parse(&raw);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.code(), "too_many_connections");
    drop((streams, third));
    for (i, mut s) in ahead.into_iter().enumerate() {
        s.write_all(&[b' '; 500]).await.unwrap();
        let r = read_response(&mut s, Duration::from_secs(30)).await;
        assert_eq!(r.code(), "invalid_signature", "body {i}: {}", r.text());
    }
    let stats = connections(server.addr).await;
    assert_eq!(stats["evicted"], 1, "{stats}");
    assert_eq!(stats["body_too_slow"], 1, "{stats}");
    server.stop().await;
}

#[tokio::test]
async fn near_the_cap_an_early_refusal_is_answered_without_waiting_for_its_body() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.limits.max_body_bytes = 1000;
    c.server.max_connections = 10;
    // Far off: a drain of the unsent body would hold the answer for the whole test.
    c.server.refusal_drain_timeout = secs(300.0);
    c.server.body_timeout = secs(300.0);
    let server = start(c).await;
    // Eight streams and the request below: 90 % of the cap, where a draining connection, which
    // no eviction can take, would hold a place that a genuine event may need.
    let mut streams = Vec::new();
    for _ in 0..8 {
        streams.push(open_stream(server.addr).await);
    }
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(
        b"POST /staging/webhooks/stripe HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
          content-length: 2000\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let raw = read_to_end(&mut s, Duration::from_secs(30)).await.expect("answered and closed, not drained");
    let r = support::parse(&raw);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
    drop(streams);
    server.stop().await;
}

#[tokio::test]
async fn bodies_past_the_inflight_budget_are_refused_503() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.limits.max_body_bytes = 200_000;
    c.server.max_inflight_body_bytes = 200_000;
    c.server.body_timeout = secs(300.0);
    c.server.body_rate_grace = secs(300.0);
    let server = start(c).await;

    // One body holds 150 000 bytes of the budget while it waits for its last byte.
    let mut holder = slow_body(server.addr, 150_001, 150_000).await;
    support::until("the body's bytes counted", || async {
        (connections(server.addr).await["inflight_body_bytes"] == 150_000 + BODY_OVERHEAD).then_some(())
    })
    .await;

    // Another, which would need 64 KiB more (its declared length, up to what a reader
    // reserves), finds no room.
    let mut refused = slow_body(server.addr, 100_000, 10).await;
    let raw = read_to_end(&mut refused, Duration::from_secs(30)).await.expect("refused and closed");
    let r = support::parse(&raw);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.code(), "too_many_body_bytes");
    assert_eq!(r.header("retry-after"), Some("5"));

    // An event that arrives whole at once holds nothing while it waits: it passes.
    let ok = server.stripe(&stripe_event("evt_whole_at_once")).await;
    assert_eq!(ok.status, 200, "{}", ok.text());

    // The holder's last byte: its bytes go back to the budget, and a body in pieces fits again.
    holder.write_all(b" ").await.unwrap();
    let r = read_response(&mut holder, Duration::from_secs(30)).await;
    assert_eq!(r.code(), "invalid_signature", "{}", r.text());
    let body = stripe_event("evt_in_pieces_again");
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(stripe_head(&body, false).as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(body.as_bytes()).await.unwrap();
    let r = read_response(&mut s, Duration::from_secs(30)).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let stats = connections(server.addr).await;
    assert_eq!(stats["body_bytes_refused"], 1, "{stats}");
    assert_eq!(stats["inflight_body_bytes"], 0, "{stats}");
    server.stop().await;
}

/// A request head of exactly `size` bytes, request line and final blank line included.
fn head_of(size: usize) -> Vec<u8> {
    let start = "GET /staging/webhooks/test HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n";
    let mut head = start.to_string();
    // Headers of 1 000 bytes each (`x-pad-NNNN: ` and its value and CRLF), then one that fills up.
    let mut i = 0;
    while size - head.len() - 2 > 2000 {
        head.push_str(&format!("x-pad-{i:04}: {}\r\n", "a".repeat(1000 - 14)));
        i += 1;
    }
    let rest = size - head.len() - 2 - "x-last: \r\n".len();
    head.push_str(&format!("x-last: {}\r\n\r\n", "b".repeat(rest)));
    assert_eq!(head.len(), size);
    head.into_bytes()
}

/// Ways to send a head: every one must get the same answer.
#[derive(Debug, Clone, Copy)]
enum Delivery {
    OneWrite,
    /// 1 KiB at a time, each written on its own.
    Trickled,
    /// A write per line, the blank line last.
    LineByLine,
    /// All but the final CRLF, then it.
    LastTwoBytesApart,
}

async fn send_head(addr: SocketAddr, head: &[u8], how: Delivery) -> support::Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let pieces: Vec<&[u8]> = match how {
        Delivery::OneWrite => vec![head],
        Delivery::Trickled => head.chunks(1024).collect(),
        Delivery::LineByLine => head.split_inclusive(|&b| b == b'\n').collect(),
        Delivery::LastTwoBytesApart => vec![&head[..head.len() - 2], &head[head.len() - 2..]],
    };
    for piece in pieces {
        // The server may answer and close before the last piece: the answer is what counts.
        if s.write_all(piece).await.is_err() {
            break;
        }
        if !matches!(how, Delivery::OneWrite) {
            // Give each piece its own read on the server's side.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let raw = read_to_end(&mut s, Duration::from_secs(30)).await.expect("answered and closed");
    support::parse(&raw)
}

#[tokio::test]
async fn a_request_head_over_max_header_bytes_is_refused_431_however_it_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.max_header_bytes = 16 * 1024;
    let server = start(c).await;
    let limit = 16 * 1024;
    for how in [Delivery::OneWrite, Delivery::Trickled, Delivery::LineByLine, Delivery::LastTwoBytesApart] {
        for (size, want) in [(limit, 200), (limit + 1, 431), (limit + 1000, 431), (7 * limit, 431), (8000, 200)] {
            let r = send_head(server.addr, &head_of(size), how).await;
            assert_eq!(r.status, want, "a head of {size} bytes sent {how:?}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_head_larger_than_the_default_limit_in_one_write_is_refused_431() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    assert_eq!(stagehook::config::Config::default().server.max_header_bytes, 65_536);
    let r = send_head(server.addr, &head_of(114 * 1024), Delivery::OneWrite).await;
    assert_eq!(r.status, 431);
    assert_eq!(send_head(server.addr, &head_of(65_536), Delivery::OneWrite).await.status, 200);
    assert_eq!(send_head(server.addr, &head_of(65_537), Delivery::OneWrite).await.status, 431);
    server.stop().await;
}

#[tokio::test]
async fn http2_over_cleartext_is_not_spoken() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    // The HTTP/2 connection preface, then an empty SETTINGS frame.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let raw = read_to_end(&mut s, Duration::from_secs(10)).await.expect("closed");
    // An HTTP/2 server would answer with its own SETTINGS frame (type 4 in the fourth byte).
    assert!(raw.is_empty() || raw.starts_with(b"HTTP/1.1 "), "{:?}", String::from_utf8_lossy(&raw));
    let r = server.stripe(&stripe_event("evt_after_h2")).await;
    assert_eq!(r.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn floods_of_refusals_and_broken_connections_write_a_bounded_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = support::write_config(dir.path(), "");
    let mut server = support::spawn_binary(&["serve", "--config", path.to_str().unwrap()], &[]).await;
    // Half-sent requests dropped by the client: each was an ERROR line under warp's own server.
    for _ in 0..200 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"POST /staging/webhooks/stripe HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")
            .await
            .unwrap();
        drop(s);
    }
    for _ in 0..300 {
        assert_eq!(support::request(server.addr, "GET", "/no/such/path", &[], b"").await.status, 404);
    }
    let r = server.stripe(&stripe_event("evt_after_the_flood")).await;
    assert_eq!(r.status, 200);
    server.signal("TERM");
    assert!(server.wait().await.success());
    let log = server.stderr.lock().clone();
    let refusals = log.lines().filter(|l| l.contains("stagehook::request") && l.contains("404")).count();
    assert!(refusals <= stagehook::http::server::REFUSAL_LINES_PER_MINUTE as usize, "{refusals} lines of 404s");
    assert!(log.lines().any(|l| l.contains("evt_after_the_flood")), "accepted events are always logged");
    assert!(!log.contains("ERROR"), "{log}");
    assert!(log.lines().count() < 100, "{}", log.lines().count());
}
