//! Hostile and broken clients at the connection level: idle and half-sent requests, trickled
//! bodies, oversize bodies from clients that write before they read, connection floods beyond
//! `server.max_connections`, huge headers and HTTP/2 prefaces. Each test runs the real server
//! on port 0 with the defence's number set low.

use std::net::SocketAddr;
use std::time::Duration;

use stagehook::config::HumanDuration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{self, config, start, stripe_event, stripe_header, STRIPE_SECRET};

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

#[tokio::test]
async fn beyond_max_connections_new_ones_are_refused_while_open_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.max_connections = 20;
    let server = start(c).await;
    // Twenty requests in progress: headers sent, half of each body still to come.
    let mut busy = Vec::new();
    for i in 0..20 {
        let body = stripe_event(&format!("evt_busy_{i}"));
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(stripe_head(&body, false).as_bytes()).await.unwrap();
        s.write_all(&body.as_bytes()[..body.len() / 2]).await.unwrap();
        busy.push((s, body));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..3 {
        // Answered at once, before the client has said anything.
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let raw = read_to_end(&mut s, Duration::from_secs(10)).await.expect("closed at once");
        let r = support::parse(&raw);
        assert_eq!(r.status, 503);
        assert_eq!(r.code(), "too_many_connections");
    }
    // The requests already in progress finish normally.
    for (mut s, body) in busy {
        s.write_all(&body.as_bytes()[body.len() / 2..]).await.unwrap();
        let r = read_response(&mut s, Duration::from_secs(10)).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let stats = connections(server.addr).await;
    assert_eq!(stats["refused"], 3, "{stats}");
    server.stop().await;
}

#[tokio::test]
async fn at_the_cap_a_connection_that_waited_makes_room_for_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.max_connections = 20;
    let server = start(c).await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"POST /staging/webhooks/stripe HTTP/1.1\r\n").await.unwrap();
        idle.push(s);
    }
    tokio::time::sleep(stagehook::http::server::EVICT_AFTER + Duration::from_millis(300)).await;
    for i in 0..5 {
        let r = server.stripe(&stripe_event(&format!("evt_made_room_{i}"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // The first genuine request took the place of the idle connection that waited longest; the
    // others found the room it left when it closed.
    let stats = connections(server.addr).await;
    assert_eq!(stats["evicted"], 1, "{stats}");
    assert_eq!(stats["refused"], 0, "{stats}");
    assert!(read_to_end(&mut idle[0], Duration::from_secs(10)).await.is_some(), "the oldest was closed");
    server.stop().await;
}

#[tokio::test]
async fn a_request_head_over_max_header_bytes_is_refused_431() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.max_header_bytes = 16 * 1024;
    let server = start(c).await;
    let huge = "a".repeat(20 * 1024);
    let r = support::request(server.addr, "GET", "/staging/webhooks/test", &[("x-huge", &huge)], b"").await;
    assert_eq!(r.status, 431);
    let fits = "a".repeat(8 * 1024);
    let r = support::request(server.addr, "GET", "/staging/webhooks/test", &[("x-fits", &fits)], b"").await;
    assert_eq!(r.status, 200);
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
