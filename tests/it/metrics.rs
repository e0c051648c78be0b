//! `GET /metrics`: the Prometheus text format, its values equal to `/stats` and
//! `/recovery/stats` after a scripted session (a duplicate, a refused signature, a dead letter,
//! an open breaker), checked by `promtool`; behind the admin token, and alone without it on
//! `server.metrics_bind`.

use std::collections::BTreeMap;

use stagehook::secret::Secret;

use crate::fake_app::{FakeApp, Reply};
use crate::support::{self, config, post_badly_signed, start, stripe_event, until, TestServer};

/// `name{labels}` → value, for every sample of a scrape.
pub(crate) fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("a sample line: {l}"));
            (name.to_string(), value.parse().unwrap_or_else(|_| panic!("a number: {l}")))
        })
        .collect()
}

async fn scrape(s: &TestServer) -> (String, BTreeMap<String, f64>) {
    let r = s.get("/metrics").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = r.text();
    let parsed = samples(&text);
    (text, parsed)
}

/// `promtool check metrics` finds no problem in `text`. Debian's `prometheus` package has it;
/// `.ci/run` installs it.
pub(crate) fn promtool_finds_no_problem(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian's prometheus package; .ci/run installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool: {said}\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_agree_with_stats_after_a_session_and_pass_promtool() {
    let app = FakeApp::start().await;
    app.set_default(Reply::status(500));
    let dir = tempfile::tempdir().unwrap();
    let mut c = support::forwarding(dir.path(), "stripe", app.url("/hook"));
    c.retry.max_attempts = 1;
    c.circuit_breaker.failure_threshold = 1;
    let s = start(c).await;
    // Two events (one sent twice), a refused signature, a Twilio message; the app answers 500:
    // a dead letter, and the breaker opens.
    for id in ["evt_m1", "evt_m2", "evt_m1"] {
        assert_eq!(s.stripe(&stripe_event(id)).await.status, 200);
    }
    assert_eq!(post_badly_signed(s.addr).await.status, 401);
    assert_eq!(s.sms(&[("MessageSid", "SM101"), ("From", "+1"), ("To", "+2")]).await.status, 200);
    s.store.ingest(crate::store::backfilled("evt_mb", support::now_s() * 1000)).await.unwrap();
    until("a dead letter and an open breaker", || async {
        let r = s.get("/staging/webhooks/recovery/stats").await.json();
        (r["dead_letters"].as_u64() >= Some(1) && r["providers"]["stripe"]["breaker"]["state"] == "open").then_some(())
    })
    .await;
    s.store.flush().await.unwrap();
    let stats = s.get("/staging/webhooks/stats").await.json();
    let recovery = s.get("/staging/webhooks/recovery/stats").await.json();
    let (text, m) = scrape(&s).await;

    let get = |k: &str| m.get(k).copied().unwrap_or_else(|| panic!("no {k} in\n{text}"));
    for (provider, by) in stats["by_provider"].as_object().unwrap() {
        for (status, n) in by["by_status"].as_object().into_iter().flatten() {
            let key = format!("stagehook_events{{provider=\"{provider}\",status=\"{status}\"}}");
            assert_eq!(get(&key), n.as_f64().unwrap(), "{key}");
        }
        if let Some(n) = by.get("duplicates") {
            assert_eq!(get(&format!("stagehook_duplicates_total{{provider=\"{provider}\"}}")), n.as_f64().unwrap());
        }
        let stored_only = format!("stagehook_events_stored_only{{provider=\"{provider}\"}}");
        assert_eq!(get(&stored_only), by["stored_only"].as_f64().unwrap(), "{stored_only}");
        let backfilled = format!("stagehook_events_backfilled_total{{provider=\"{provider}\"}}");
        assert_eq!(get(&backfilled), by.get("backfilled").map_or(0.0, |n| n.as_f64().unwrap()), "{backfilled}");
        if let Some(n) = by.get("items_received") {
            assert_eq!(
                get(&format!("stagehook_events_received_total{{provider=\"{provider}\"}}")),
                n.as_f64().unwrap()
            );
        }
    }
    assert_eq!(get("stagehook_duplicates_total{provider=\"stripe\"}"), 1.0);
    assert_eq!(get("stagehook_events_backfilled_total{provider=\"stripe\"}"), 1.0);
    assert!(get("stagehook_events_stored_only{provider=\"stripe\"}") >= 1.0, "{text}");
    assert_eq!(stats["backfilled"], 1, "{stats}");
    for (code, n) in stats["rejections"].as_object().unwrap() {
        assert_eq!(get(&format!("stagehook_rejections_total{{code=\"{code}\"}}")), n.as_f64().unwrap(), "{code}");
    }
    assert_eq!(get("stagehook_rejections_total{code=\"invalid_signature\"}"), 1.0);
    for (provider, p) in recovery["providers"].as_object().unwrap() {
        let state = match p["breaker"]["state"].as_str().unwrap() {
            "closed" => 0.0,
            "half_open" => 1.0,
            _ => 2.0,
        };
        assert_eq!(get(&format!("stagehook_breaker_state{{provider=\"{provider}\"}}")), state, "{provider}");
        assert_eq!(
            get(&format!("stagehook_dead_letters{{provider=\"{provider}\"}}")),
            p["dead_letters"].as_f64().unwrap(),
            "{provider}"
        );
    }
    assert_eq!(get("stagehook_breaker_state{provider=\"stripe\"}"), 2.0);
    assert_eq!(get("stagehook_queue_depth"), recovery["queue_depth"].as_f64().unwrap());
    for (reason, n) in recovery["failure_reasons"].as_object().unwrap() {
        assert_eq!(get(&format!("stagehook_delivery_failures_total{{reason=\"{reason}\"}}")), n.as_f64().unwrap());
    }
    let sum = |v: &serde_json::Value| v.as_object().unwrap().values().map(|n| n.as_f64().unwrap()).sum::<f64>();
    assert_eq!(get("stagehook_delivery_attempts_total{outcome=\"failed\"}"), sum(&recovery["failure_reasons"]));
    assert!(get("stagehook_delivery_attempts_total{outcome=\"failed\"}") >= 1.0);
    assert_eq!(
        get("stagehook_delivery_attempts_total{outcome=\"delivered\"}"),
        sum(&recovery["delivered_after_attempts"])
    );
    // The processing histogram counts what /stats' percentiles count; its buckets only grow.
    let samples = stats["processing_ms"]["samples"].as_f64().unwrap();
    assert_eq!(get("stagehook_ingest_processing_seconds_count"), samples);
    assert_eq!(get("stagehook_ingest_processing_seconds_bucket{le=\"+Inf\"}"), samples);
    let buckets: Vec<f64> = m
        .iter()
        .filter(|(k, _)| k.starts_with("stagehook_ingest_processing_seconds_bucket"))
        .map(|(_, v)| *v)
        .collect();
    assert!(buckets.len() > 10 && buckets.iter().all(|v| *v <= samples), "{buckets:?}");
    // One delivery duration per attempt recorded, delivered or failed.
    let attempts = sum(&recovery["failure_reasons"]) + sum(&recovery["delivered_after_attempts"]);
    assert_eq!(get("stagehook_delivery_duration_seconds_count"), attempts);
    assert!(attempts >= 1.0 && get("stagehook_delivery_duration_seconds_sum") > 0.0);
    // Every commit someone waited for, this life: the events' among them.
    let commits = get("stagehook_store_commit_duration_seconds_count");
    assert!(commits >= 1.0 && get("stagehook_store_commit_duration_seconds_sum") > 0.0, "{commits}");
    assert_eq!(get("stagehook_store_commit_duration_seconds_bucket{le=\"+Inf\"}"), commits);
    let sum = get("stagehook_ingest_processing_seconds_sum");
    assert!(sum > 0.0 && sum < samples * 10.0, "{sum}");
    assert_eq!(get(&format!("stagehook_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))), 1.0);
    assert!(get("stagehook_store_size_bytes") > 0.0);
    assert!(get("process_resident_memory_bytes") > 1e6);
    assert!(get("process_open_fds") >= 3.0);
    let started = get("process_start_time_seconds");
    let now = support::now_s() as f64;
    assert!(started > now - 3600.0 && started <= now + 1.0, "{started} vs {now}");
    promtool_finds_no_problem(&text);
    s.stop().await;
}

/// Like every admin route: the token (a Bearer header, as Prometheus sends it), and a `Host`
/// of ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_admin_token_when_one_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.admin_token = Some(Secret::new("metrics-token-0123456789"));
    let s = start(c).await;
    let r = s.get("/metrics").await;
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"), "{}", r.text());
    let r =
        support::request(s.addr, "GET", "/metrics", &[("authorization", "Bearer metrics-token-0123456789")], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("stagehook_build_info"));
    let r = support::request(
        s.addr,
        "GET",
        "/metrics",
        &[("authorization", "Bearer metrics-token-0123456789"), ("host", "evil.example")],
        b"",
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (403, "host_not_allowed"));
    s.stop().await;
}

/// `server.metrics_bind`: `/metrics` alone on its own address, without the token or the `Host`
/// check; the main address still wants the token for it, and serves nothing else there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_bind_serves_metrics_alone_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_config(dir.path(), "");
    let env = [
        ("RUST_LOG", "warn"),
        ("STAGEHOOK_SERVER_ADMIN_TOKEN", "metrics-token-0123456789"),
        ("STAGEHOOK_SERVER_METRICS_BIND", "127.0.0.1:0"),
    ];
    let mut server = support::spawn_binary(&["serve", "--config", config.to_str().unwrap()], &env).await;
    let stdout = server.stdout.lock().clone();
    let at: std::net::SocketAddr = stdout
        .lines()
        .find_map(|l| l.strip_prefix("metrics: GET http://")?.strip_suffix("/metrics (no token)")?.parse().ok())
        .unwrap_or_else(|| panic!("no metrics line in\n{stdout}"));
    assert_ne!(at, server.addr);
    let r = support::request(at, "GET", "/metrics", &[("host", "prometheus.internal")], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("stagehook_build_info"));
    support::assert_security_headers(&r);
    for path in ["/staging/webhooks/stats", "/"] {
        assert_eq!(support::request(at, "GET", path, &[], b"").await.status, 404, "{path} is not served there");
    }
    assert_eq!(support::request(server.addr, "GET", "/metrics", &[], b"").await.status, 401);
    server.signal("TERM");
    assert!(server.wait().await.success());
}
