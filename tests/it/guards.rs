//! The guards before any expensive work: body size (declared and chunked), the per-IP sliding
//! window, client IPs behind trusted proxies, and the security headers on every response.

use std::net::IpAddr;

use crate::support::{
    self, assert_security_headers, config, request_from, start, stripe_event, stripe_header, STRIPE_SECRET,
};

const PATH: &str = "/staging/webhooks/stripe";

fn signed(id: &str) -> (String, String) {
    let body = stripe_event(id);
    let sig = stripe_header(STRIPE_SECRET, support::now_s(), body.as_bytes());
    (body, sig)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_refused_declared_or_chunked() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    // Declared: refused on the header alone, before a byte of the body is read.
    let r = s
        .post(
            PATH,
            &[("content-type", "application/json"), ("stripe-signature", "t=1,v1=00"), ("content-length", "1048577")],
            b"",
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (413, "payload_too_large"));
    assert_security_headers(&r);

    // Chunked: no Content-Length, the body grows past the limit while it streams.
    let mut raw = support::build(
        "POST",
        PATH,
        &[("content-type", "application/json"), ("stripe-signature", "t=1,v1=00"), ("transfer-encoding", "chunked")],
        b"",
    );
    let chunk = vec![b'y'; 64 * 1024];
    for _ in 0..17 {
        raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        raw.extend_from_slice(&chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let r = support::exchange(stream, &raw).await.unwrap();
    assert_eq!((r.status, r.code().as_str()), (413, "payload_too_large"));

    // A chunked body under the limit is read and verified like any other.
    let (body, sig) = signed("evt_chunked");
    let mut raw = support::build(
        "POST",
        PATH,
        &[("content-type", "application/json"), ("stripe-signature", &sig), ("transfer-encoding", "chunked")],
        b"",
    );
    let (a, b) = body.as_bytes().split_at(10);
    for part in [a, b] {
        raw.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        raw.extend_from_slice(part);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let r = support::exchange(stream, &raw).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // Exactly at the limit is allowed through the size guard (and then fails on signature).
    let exact = vec![b' '; 1024 * 1024];
    let r = s.post(PATH, &[("content-type", "application/json"), ("stripe-signature", "t=1,v1=00")], &exact).await;
    assert_eq!(r.code(), "invalid_signature");
    s.store.flush().await.unwrap();
    let stats = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["rejections"]["payload_too_large"], 2, "{stats}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_101st_request_in_a_minute_is_refused_while_another_ip_passes() {
    let dir = tempfile::tempdir().unwrap();
    // The test clock, stopped: the window's arithmetic is exact, whatever the real time.
    let s = support::start_with_clock(config(dir.path()), stagehook::Clock::frozen(support::now_s() * 1000)).await;
    let one: IpAddr = "127.0.0.1".parse().unwrap();
    let two: IpAddr = "127.0.0.2".parse().unwrap();
    for i in 0..100 {
        let (body, sig) = signed(&format!("evt_rl_{i}"));
        let r = request_from(
            one,
            s.addr,
            "POST",
            PATH,
            &[("content-type", "application/json"), ("stripe-signature", &sig)],
            body.as_bytes(),
        )
        .await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.header("x-ratelimit-limit"), Some("100"));
        assert_eq!(r.header("x-ratelimit-remaining"), Some((99 - i).to_string().as_str()));
    }
    let (body, sig) = signed("evt_rl_100");
    let headers = [("content-type", "application/json"), ("stripe-signature", sig.as_str())];
    let r = request_from(one, s.addr, "POST", PATH, &headers, body.as_bytes()).await;
    assert_eq!((r.status, r.code().as_str()), (429, "rate_limited"));
    assert_eq!(r.header("retry-after"), Some("60"), "the first of the hundred frees its slot in 60 s");
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert_security_headers(&r);
    // The refused event was not stored.
    assert!(s.store.find_by_event_id("stripe", "evt_rl_100").unwrap().is_none());

    // Another client is not affected.
    let r = request_from(two, s.addr, "POST", PATH, &headers, body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // A second before the first request is 60 s old, the client is still refused; then it passes.
    s.clock.advance(59_000);
    let r = request_from(one, s.addr, "POST", PATH, &headers, body.as_bytes()).await;
    assert_eq!((r.status, r.header("retry-after")), (429, Some("1")));
    s.clock.advance(1_000);
    let (body, sig) = signed("evt_rl_later");
    let r = request_from(
        one,
        s.addr,
        "POST",
        PATH,
        &[("content-type", "application/json"), ("stripe-signature", &sig)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    // Untrusted peer: a spoofed X-Forwarded-For per request does not escape the limit.
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.limits.rate_limit_per_minute = 3;
    let s = start(c).await;
    for i in 0..4 {
        let xff = format!("198.51.100.{i}");
        let r = support::post_stripe(s.addr, &stripe_event(&format!("evt_sp_{i}")), &[("x-forwarded-for", &xff)]).await;
        assert_eq!(r.status, if i < 3 { 200 } else { 429 }, "request {i}");
    }
    // And the audit trail records the real peer, not the claimed address.
    let id = s.store.find_by_event_id("stripe", "evt_sp_0").unwrap().unwrap();
    assert_eq!(s.get(&format!("/staging/webhooks/events/{id}")).await.json()["source_ip"], "127.0.0.1");
    s.stop().await;

    // Trusted proxy: each forwarded client has its own window.
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.limits.rate_limit_per_minute = 3;
    c.server.trusted_proxies = vec!["127.0.0.0/8".into()];
    let s = start(c).await;
    for i in 0..4 {
        let xff = format!("198.51.100.{i}");
        let r = support::post_stripe(s.addr, &stripe_event(&format!("evt_tp_{i}")), &[("x-forwarded-for", &xff)]).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    let id = s.store.find_by_event_id("stripe", "evt_tp_2").unwrap().unwrap();
    assert_eq!(s.get(&format!("/staging/webhooks/events/{id}")).await.json()["source_ip"], "198.51.100.2");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_are_on_every_response() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let (body, sig) = signed("evt_h");
    let responses = [
        s.get("/no/such/path").await,
        s.get("/staging/webhooks/stripe").await,
        s.get("/staging/webhooks/test").await,
        s.post(PATH, &[("content-type", "application/json"), ("stripe-signature", &sig)], body.as_bytes()).await,
        s.post(PATH, &[("content-type", "application/json")], body.as_bytes()).await,
        s.post("/staging/webhooks/unknown", &[], b"").await,
    ];
    let expected = [
        (404, "not_found"),
        (405, "method_not_allowed"),
        (200, ""),
        (200, ""),
        (401, "invalid_signature"),
        (404, "not_found"),
    ];
    for (r, (status, code)) in responses.iter().zip(expected) {
        assert_eq!(r.status, status, "{}", r.text());
        if !code.is_empty() {
            assert_eq!(r.code(), code);
            assert_eq!(r.header("content-type"), Some("application/json"));
        }
        assert_security_headers(r);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_turns_the_limiter_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.limits.rate_limit_per_minute = 0;
    let s = start(c).await;
    for i in 0..150 {
        let (body, sig) = signed(&format!("evt_off_{i}"));
        let r =
            s.post(PATH, &[("content-type", "application/json"), ("stripe-signature", &sig)], body.as_bytes()).await;
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.header("x-ratelimit-limit"), None);
    }
    s.stop().await;
}
