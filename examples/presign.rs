//! Writes uniquely signed Stripe events for the load benchmark, one per line:
//! `<Stripe-Signature value>\t<X-Hub-Signature-256 value>\t<JSON body>`. Every event has its own
//! id, so stagehook records each one (nothing is a duplicate), and all are signed now, so they stay
//! within Stripe's 300 s tolerance for the few minutes a benchmark runs. The GitHub-style signature
//! of the same body is for the peer that checks only that scheme (adnanh/webhook); stagehook and
//! the floors ignore it.
//!
//! `cargo run --release --example presign -- COUNT SECRET OUTPUT [BODY_BYTES]`

use std::io::Write;

use stagehook::providers::{github, stripe};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: presign COUNT SECRET OUTPUT [BODY_BYTES]";
    let count: usize = args.get(1).and_then(|c| c.parse().ok()).expect(usage);
    let secret = args.get(2).expect(usage);
    let output = args.get(3).expect(usage);
    let size: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("a clock after 1970").as_secs();
    let mut out = std::io::BufWriter::new(std::fs::File::create(output).expect("create the output file"));
    let run = ulid::Ulid::new();
    for i in 0..count {
        let head = format!(
            r#"{{"id":"evt_{run}_{i:08}","object":"event","api_version":"2024-06-20","created":{now},"type":"payment_intent.succeeded","livemode":false,"pending_webhooks":1,"data":{{"object":{{"id":"pi_{i:08}","object":"payment_intent","amount":2000,"currency":"usd","status":"succeeded","description":""#
        );
        let pad = "x".repeat(size.saturating_sub(head.len() + 4));
        let body = format!("{head}{pad}\"}}}}}}");
        let stripe = stripe::signature_header(secret, now as i64, body.as_bytes());
        let hub = github::signature_header(secret, body.as_bytes());
        writeln!(out, "{stripe}\t{hub}\t{body}").expect("write");
    }
    out.flush().expect("flush");
}
