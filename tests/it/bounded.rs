//! What an unauthenticated client can make the server hold is bounded: the rejection log in
//! bytes whatever the headers, the rate limiter's buckets whatever the IPv6 address, and a
//! Twilio form's parameters before its signature is checked.

use std::path::Path;

use stagehook::providers::twilio::MAX_FORM_PARAMS;
use stagehook::store::rejection::{
    OMITTED_HEADERS, REJECTION_ENTRY_BYTES, REJECTION_HEADER_BYTES, REJECTION_HEADER_VALUE_BYTES,
};

use stagehook::Clock;

use crate::support::{self, config, form, start, start_with_clock, stripe_event, twilio_signature, TWILIO_TOKEN};

const FORM: &str = "application/x-www-form-urlencoded";

/// Bytes of every file under `dir`.
fn folder_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() { folder_bytes(&entry.path()) } else { meta.len() };
    }
    total
}

/// A thousand refused requests with 53 KB of headers each (thirteen of 4 KB): the data folder
/// grows by what a thousand bounded entries take, not by the 53 MB the headers weigh, and
/// each entry reads back cut, with the cut shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_headers_on_refused_requests_are_stored_bounded() {
    const REQUESTS: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.limits.rate_limit_per_minute = 0;
    let data = c.server.data_dir.clone();
    let s = start(c).await;
    s.store.flush().await.unwrap();
    let before = folder_bytes(&data);

    let pad: Vec<(String, String)> = (0..13).map(|i| (format!("x-pad-{i}"), "p".repeat(4096))).collect();
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json"), ("stripe-signature", "t=1,v1=00")];
    headers.extend(pad.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let raw = support::build("POST", "/staging/webhooks/stripe", &headers, stripe_event("evt_bad").as_bytes());
    let sent_header_bytes: usize = pad.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(sent_header_bytes > 53_000 && raw.len() < 60 * 1024, "{sent_header_bytes} {}", raw.len());

    // Eight connections at a time, so the thousand take seconds, not minutes.
    let raw = std::sync::Arc::new(raw);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (raw, addr) = (raw.clone(), s.addr);
        tasks.spawn(async move {
            for _ in (worker..REQUESTS).step_by(8) {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                let r = support::exchange(stream, &raw).await.unwrap();
                assert_eq!(r.code(), "invalid_signature", "{}", r.text());
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    s.store.flush().await.unwrap();
    let grown = folder_bytes(&data).saturating_sub(before);

    // sled writes each entry into its log and later into rewritten pages: allow it three times
    // the encoded bound. Unbounded, the same requests keep 53 MB of headers.
    let bound = (3 * REQUESTS * REJECTION_ENTRY_BYTES) as u64;
    assert!(grown <= bound, "the data folder grew by {grown} bytes, more than {bound}");
    assert!(bound < (REQUESTS * sent_header_bytes) as u64 / 2);

    let log = s.get("/staging/webhooks/rejections?limit=1000").await.json();
    let entries = log["rejections"].as_array().unwrap();
    assert_eq!(entries.len(), REQUESTS);
    assert_eq!(s.get("/staging/webhooks/stats").await.json()["rejections"]["invalid_signature"], REQUESTS);
    for e in entries {
        let headers = e["headers"].as_array().unwrap();
        let pads: Vec<&str> = headers
            .iter()
            .filter(|h| h[0].as_str().unwrap().starts_with("x-pad-"))
            .map(|h| h[1].as_str().unwrap())
            .collect();
        assert!(!pads.is_empty());
        for v in &pads {
            assert!(v.len() <= REJECTION_HEADER_VALUE_BYTES, "{}", v.len());
            assert!(v.ends_with("…(truncated, 4096 bytes)"), "{v}");
        }
        let kept: usize = headers
            .iter()
            .filter(|h| h[0] != OMITTED_HEADERS)
            .map(|h| h[0].as_str().unwrap().len() + h[1].as_str().unwrap().len())
            .sum();
        assert!(kept <= REJECTION_HEADER_BYTES, "{kept}");
        let omitted = headers.last().unwrap();
        assert_eq!(omitted[0], OMITTED_HEADERS, "{e}");
        assert!(omitted[1].as_str().unwrap().contains("more headers"), "{omitted}");
        assert_eq!(e["body_prefix"], stripe_event("evt_bad"));
    }
    s.stop().await;
}

/// One host rotating through its /64 behind a trusted proxy is one client: the default limit
/// of 100 a minute holds across 500 different addresses, and another /64 is another client.
/// The clock stands still, so the window is exact: the first 100 pass, and not one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_addresses_of_one_prefix_share_one_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.trusted_proxies = vec!["127.0.0.1".into()];
    assert_eq!((c.limits.rate_limit_per_minute, c.limits.ipv6_prefix), (100, 64));
    // Now, as the events' signatures say.
    let s = start_with_clock(c, Clock::frozen(support::now_s() * 1000)).await;
    let mut statuses = Vec::new();
    for n in 1..=500 {
        let xff = format!("2001:db8:1:2::{n:x}");
        let r = support::post_stripe(s.addr, &stripe_event(&format!("evt_v6_{n}")), &[("x-forwarded-for", &xff)]).await;
        if r.status == 429 {
            assert_eq!(r.code(), "rate_limited");
            assert!(r.json()["error"]["message"].as_str().unwrap().contains("2001:db8:1:2::/64"), "{}", r.text());
        }
        statuses.push(r.status);
    }
    assert!(statuses[..100].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses[100..].iter().all(|s| *s == 429), "{statuses:?}");

    let r = support::post_stripe(s.addr, &stripe_event("evt_other"), &[("x-forwarded-for", "2001:db8:1:3::1")]).await;
    assert_eq!(r.status, 200, "another /64 is another client: {}", r.text());
    s.stop().await;
}

/// A form with far more parameters than Twilio sends is refused with `invalid_payload` before
/// it is parsed or its signature checked; a real one on the same server still passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilio_form_with_too_many_parameters_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let url = "http://127.0.0.1/staging/webhooks/sms";

    // Just under 1 MiB of `a&a&…`: 400 000 parameters.
    let flood = "a&".repeat(400_000);
    let r =
        s.post("/staging/webhooks/sms", &[("content-type", FORM), ("x-twilio-signature", "x")], flood.as_bytes()).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"), "{}", r.text());
    assert!(r.text().contains("400001 parameters"), "{}", r.text());

    // One over the cap, correctly signed: refused all the same.
    let names: Vec<String> = (0..=MAX_FORM_PARAMS).map(|i| format!("P{i}")).collect();
    let mut pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let sig = twilio_signature(TWILIO_TOKEN, url, &pairs);
    let r = s
        .post("/staging/webhooks/sms", &[("content-type", FORM), ("x-twilio-signature", &sig)], form(&pairs).as_bytes())
        .await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"), "{}", r.text());

    // At the cap, with the fields a message has, it passes.
    pairs.truncate(MAX_FORM_PARAMS - 3);
    pairs.extend([("MessageSid", "SM_many"), ("From", "+15005550006"), ("To", "+15005550001")]);
    let sig = twilio_signature(TWILIO_TOKEN, url, &pairs);
    let r = s
        .post("/staging/webhooks/sms", &[("content-type", FORM), ("x-twilio-signature", &sig)], form(&pairs).as_bytes())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // And so does an ordinary message.
    let sms = [("MessageSid", "SM_plain"), ("From", "+15005550006"), ("To", "+15005550001"), ("Body", "hi")];
    let sig = twilio_signature(TWILIO_TOKEN, url, &sms);
    let r = s
        .post("/staging/webhooks/sms", &[("content-type", FORM), ("x-twilio-signature", &sig)], form(&sms).as_bytes())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    s.stop().await;
}
