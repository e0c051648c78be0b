//! The hot request path, part by part and whole.
//!
//! Run with `cargo bench`. Parts: signature verification (Stripe and Twilio, 1 KB and 64 KB
//! bodies), payload parsing, the rate limiter (one IP and many), record encoding, and the whole
//! in-process request through the warp filter into a real sled store in a temp dir, group commit
//! and flush included.

use std::net::IpAddr;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use stagehook::config::{Config, StripeConfig, TwilioConfig};
use stagehook::providers::stripe::{self, Stripe};
use stagehook::providers::twilio::{self, Twilio};
use stagehook::providers::{Inbound, Provider};
use stagehook::ratelimit::RateLimiter;
use stagehook::secret::Secret;
use stagehook::{App, Clock};
use warp::http::HeaderMap;

const SECRET: &str = "whsec_bench_0123456789abcdef";

/// A Stripe event whose body is about `size` bytes.
fn stripe_body(id: &str, size: usize) -> String {
    let head = format!(
        r#"{{"id":"{id}","object":"event","type":"charge.succeeded","created":1700000000,"livemode":false,"data":{{"object":{{"id":"ch_1","pad":""#
    );
    let pad = "x".repeat(size.saturating_sub(head.len() + 4));
    format!("{head}{pad}\"}}}}}}")
}

fn now_s() -> i64 {
    Clock::system().now_s()
}

fn verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify");
    let stripe = Stripe::new("stripe", vec![Secret::new(SECRET)], 300);
    let twilio = Twilio::new("twilio", vec![Secret::new("0123456789abcdef0123456789abcdef")]);
    for size in [1024usize, 64 * 1024] {
        g.throughput(Throughput::Bytes(size as u64));
        let body = stripe_body("evt_1", size);
        let mut headers = HeaderMap::new();
        headers.insert("stripe-signature", stripe::signature_header(SECRET, now_s(), body.as_bytes()).parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        let req = Inbound { headers: &headers, body: body.as_bytes(), url: "", now_s: now_s() };
        g.bench_with_input(BenchmarkId::new("stripe", size), &req, |b, req| {
            b.iter(|| stripe.verify(black_box(req)).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("stripe_parse", size), &req, |b, req| {
            b.iter(|| stripe.parse(black_box(req)).unwrap())
        });

        let text = "y".repeat(size.saturating_sub(80));
        let params = vec![
            ("MessageSid".to_string(), "SM1".to_string()),
            ("From".to_string(), "+15005550006".to_string()),
            ("To".to_string(), "+15005550001".to_string()),
            ("Body".to_string(), text),
        ];
        let url = "https://hooks.example.com/staging/webhooks/sms";
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &params {
            form.append_pair(k, v);
        }
        let form = form.finish();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-twilio-signature",
            twilio::sign("0123456789abcdef0123456789abcdef", url, &params).parse().unwrap(),
        );
        headers.insert("content-type", "application/x-www-form-urlencoded".parse().unwrap());
        let req = Inbound { headers: &headers, body: form.as_bytes(), url, now_s: 0 };
        g.bench_with_input(BenchmarkId::new("twilio", size), &req, |b, req| {
            b.iter(|| twilio.verify(black_box(req)).unwrap())
        });
    }
    g.finish();
}

fn rate_limiter(c: &mut Criterion) {
    let mut g = c.benchmark_group("rate_limiter");
    let rl = RateLimiter::new(u32::MAX, 1_000_000, Clock::system());
    let one: IpAddr = "10.0.0.1".parse().unwrap();
    g.bench_function("one_ip", |b| b.iter(|| rl.check(black_box(one))));
    let mut n = 0u32;
    g.bench_function("many_ips", |b| {
        b.iter(|| {
            n = n.wrapping_add(1) % 100_000;
            rl.check(black_box(IpAddr::from(n.to_be_bytes())))
        })
    });
    g.finish();
}

fn whole_request(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.data_dir = dir.path().join("data");
    config.limits.rate_limit_per_minute = 0;
    config.providers.stripe = Some(StripeConfig { secret: Some(Secret::new(SECRET)), ..Default::default() });
    config.providers.twilio = Some(TwilioConfig::default());
    let app = rt.block_on(async { App::open(config, Clock::system()) }).unwrap();
    let routes = app.routes();
    let mut n = 0u64;
    let mut g = c.benchmark_group("request");
    g.sample_size(30);
    g.bench_function("stripe_1k_durable", |b| {
        b.iter(|| {
            n += 1;
            let body = stripe_body(&format!("evt_bench_{n}"), 1024);
            let sig = stripe::signature_header(SECRET, now_s(), body.as_bytes());
            let res = rt.block_on(
                warp::test::request()
                    .method("POST")
                    .path("/staging/webhooks/stripe")
                    .header("content-type", "application/json")
                    .header("stripe-signature", sig)
                    .body(body)
                    .reply(&routes),
            );
            assert_eq!(res.status(), 200);
        })
    });
    g.finish();
}

criterion_group!(benches, verify, rate_limiter, whole_request);
criterion_main!(benches);
