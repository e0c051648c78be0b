//! The read endpoints and the dry-run validator.

use serde_json::json;

use crate::support::{self, config, start, stripe_event, stripe_header, STRIPE_SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_version_store_and_providers() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.providers.remove("twilio");
    let s = start(c).await;
    let h = s.get("/staging/webhooks/test").await;
    assert_eq!(h.status, 200);
    let h = h.json();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(h["store"]["writable"], true);
    assert_eq!(h["providers"]["stripe"]["configured"], true);
    assert_eq!(h["providers"]["twilio"]["configured"], false);
    assert_eq!(h["providers"]["twilio"]["path"], "/staging/webhooks/sms");
    assert!(!h.to_string().contains(STRIPE_SECRET));
    s.stop().await;
}

/// Replicas behind one load balancer are told apart by `server.instance_id`, which the health
/// check and `/stats` both carry; unset, it is the host name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_stats_name_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.instance_id = "web-7".into();
    let s = start(c).await;
    for path in ["/staging/webhooks/test", "/staging/webhooks/stats"] {
        let r = s.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.json()["instance"], "web-7", "{path}");
    }
    s.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let host = stagehook::config::host_name();
    for path in ["/staging/webhooks/test", "/staging/webhooks/stats"] {
        assert_eq!(s.get(path).await.json()["instance"], host, "{path}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_by_provider_status_and_reason_with_percentiles() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    for i in 0..10 {
        assert_eq!(s.stripe(&stripe_event(&format!("evt_s{i}"))).await.status, 200);
    }
    s.stripe(&stripe_event("evt_s0")).await;
    s.post("/staging/webhooks/stripe", &[("content-type", "application/json"), ("stripe-signature", "nope")], b"{}")
        .await;
    s.store.flush().await.unwrap();
    let st = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(st["total_events"], 10);
    assert_eq!(st["by_status"]["processed"], 10, "no targets: processed at once");
    assert_eq!(st["by_status"]["failed"], 0);
    assert_eq!(st["by_provider"]["stripe"]["events"], 10);
    assert_eq!(st["by_provider"]["stripe"]["by_status"]["processed"], 10);
    assert_eq!(st["duplicates"], 1);
    assert_eq!(st["by_status"]["duplicate"], 1);
    assert_eq!(st["rejections"]["invalid_signature"], 1);
    assert_eq!(st["rejected_total"], 1);
    assert_eq!(st["events_last_minute"], 10);
    let p = &st["processing_ms"];
    assert_eq!(p["samples"], 10);
    let (p50, p95, p99) = (p["p50"].as_f64().unwrap(), p["p95"].as_f64().unwrap(), p["p99"].as_f64().unwrap());
    assert!(p50 > 0.0 && p50 <= p95 && p95 <= p99, "{p}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reports_structure_and_signature_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let validate = |req: serde_json::Value| {
        let addr = s.addr;
        async move {
            support::request(
                addr,
                "POST",
                "/staging/webhooks/validate",
                &[("content-type", "application/json")],
                req.to_string().as_bytes(),
            )
            .await
        }
    };

    // Structure only: every failing field is named.
    let r = validate(
        json!({"provider": "stripe", "payload": {"id": "x", "type": "a", "created": "no", "data": {"object": {}}}}),
    )
    .await;
    assert_eq!(r.status, 200);
    let rep = r.json();
    assert_eq!(rep["valid"], false);
    let failed: Vec<&str> = rep["structure"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["id", "created"]);
    assert_eq!(rep["signature"]["checked"], false);

    // With headers, the signature over the exact string payload is checked.
    let body = stripe_event("evt_v");
    let sig = stripe_header(STRIPE_SECRET, support::now_s(), body.as_bytes());
    let rep =
        validate(json!({"provider": "stripe", "payload": body, "headers": {"Stripe-Signature": sig}})).await.json();
    assert_eq!(rep["valid"], true, "{rep}");
    assert_eq!(rep["signature"]["ok"], true);
    let rep = validate(json!({"provider": "stripe", "payload": body, "headers": {"Stripe-Signature": "t=1,v1=00"}}))
        .await
        .json();
    assert_eq!(rep["valid"], false);
    assert_eq!(rep["signature"]["code"], "invalid_signature");

    // Twilio by endpoint name or provider name; form fields from an object.
    let rep = validate(json!({"provider": "sms", "payload": {"MessageSid": "SM1", "From": "+1"}})).await.json();
    assert_eq!(rep["provider"], "twilio");
    assert_eq!(rep["structure"]["ok"], false);

    // Bad requests are coded errors.
    let r = validate(json!({"provider": "nobody", "payload": {}})).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"));
    let r = support::request(
        s.addr,
        "POST",
        "/staging/webhooks/validate",
        &[("content-type", "application/json")],
        b"not json",
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"));

    let st = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(st["total_events"], 0, "validate stores nothing");
    assert!(s.store.find_by_event_id("stripe", "evt_v").unwrap().is_none());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_curl_command_resends_the_exact_bytes_signed_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    // Quotes, backslashes, a newline and non-ASCII: the shell must hand over every byte.
    let body = "{\"id\":\"evt_curl\",\"type\":\"a.b\",\"created\":1,\"data\":{\"object\":{\"note\":\"it's a \\\\ \\\"test\\\" ñ\"}}}\n";
    let id = support::post_stripe(s.addr, body, &[]).await.json()["id"].as_str().unwrap().to_string();
    let params = [("MessageSid", "SM_CURL"), ("From", "+1"), ("To", "+2"), ("Body", "a & b = 'c'")];
    s.sms(&params).await;
    let sms = s.store.find_by_event_id("twilio", "SM_CURL").unwrap().unwrap().to_string();
    for (id, event_id) in [(id, "evt_curl"), (sms, "SM_CURL")] {
        let host = s.addr.to_string();
        let r =
            support::request(s.addr, "GET", &format!("/staging/webhooks/events/{id}/curl"), &[("host", &host)], b"")
                .await;
        let cmd = r.json()["command"].as_str().unwrap().to_string();
        let out = std::process::Command::new("bash").arg("-c").arg(&cmd).output().expect("bash and curl");
        let text = String::from_utf8_lossy(&out.stdout);
        // Accepted (so the signature and the bytes were right), as a repeat of the same event.
        if event_id.starts_with("evt_") {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{cmd}\n{text}"));
            assert_eq!((v["duplicate"].clone(), v["event_id"].clone()), (json!(true), json!(event_id)), "{cmd}");
        } else {
            assert!(text.contains("<Response></Response>"), "{cmd}\n{text}");
        }
    }
    s.store.flush().await.unwrap();
    let st = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(st["duplicates"], 2, "both re-sends verified and were recognised: {st}");
    assert_eq!(st["rejected_total"], 0, "{st}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_counts_events_per_minute_per_provider() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    for i in 0..4 {
        s.stripe(&stripe_event(&format!("evt_tp{i}"))).await;
    }
    let t = &s.get("/staging/webhooks/stats").await.json()["throughput"];
    let minutes = t["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 60);
    let stripe: Vec<u64> = t["providers"]["stripe"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(stripe.iter().sum::<u64>(), 4);
    assert_eq!(*stripe.last().unwrap() + stripe[58], 4, "in the latest minute (or the one before, at a boundary)");
    assert_eq!(t["providers"]["twilio"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum::<u64>(), 0);
    // An hour later the chart has moved on; the counts are gone from it.
    s.clock.advance(61 * 60 * 1000);
    let t = &s.get("/staging/webhooks/stats").await.json()["throughput"];
    assert_eq!(t["providers"]["stripe"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum::<u64>(), 0);
    s.stop().await;
}

/// A JSON object becomes the body a provider of that kind receives, whatever the endpoint is
/// called: a form for a named Twilio endpoint too, whose signature then verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_encodes_an_object_as_the_kind_receives_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    let token = "0123456789abcdef0123456789abcdef";
    c.providers.insert(
        "alerts".into(),
        stagehook::providers::KindConfig::from(stagehook::providers::twilio::Settings {
            secret: Some(stagehook::secret::Secret::new(token)),
            ..Default::default()
        })
        .with_kind(),
    );
    let s = start(c).await;
    let fields = [("AccountSid", "AC0123456789abcdef0123456789abcdef"), ("Body", "hi"), ("From", "+15550001111")];
    let url = format!("http://{}/staging/webhooks/alerts", s.addr);
    let params: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let sig = stagehook::providers::twilio::sign(token, &url, &params);
    let payload: serde_json::Map<String, serde_json::Value> =
        fields.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let req = json!({"provider": "alerts", "payload": payload, "headers": {"X-Twilio-Signature": sig}});
    let r = support::request(
        s.addr,
        "POST",
        "/staging/webhooks/validate",
        &[("content-type", "application/json")],
        req.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rep = r.json();
    assert_eq!(rep["provider"], "alerts");
    assert_eq!(rep["signature"]["ok"], true, "{rep}");
    s.stop().await;
}

/// The list shows how each event came and filters on it; an unknown source is refused with the
/// code of every bad filter, by the list, the export and a replay alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_list_shows_and_filters_by_source() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let webhook = s.stripe_id(&stripe_event("evt_src_hook")).await;
    let backfilled = s.store.ingest(crate::store::backfilled("evt_src_back", support::now_s() * 1000)).await.unwrap();
    let list = |query: &'static str| {
        let s = &s;
        async move {
            let v = s.get(&format!("/staging/webhooks/events{query}")).await.json();
            v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e["id"].as_str().unwrap().to_string(), e["source"].clone()))
                .collect::<Vec<_>>()
        }
    };
    let (b, w) = (backfilled.id.to_string(), webhook.clone());
    assert_eq!(list("").await, [(b.clone(), json!("backfill")), (w.clone(), json!("webhook"))]);
    assert_eq!(list("?source=backfill").await, [(b.clone(), json!("backfill"))]);
    assert_eq!(list("?source=webhook&provider=stripe").await, [(w, json!("webhook"))]);
    assert_eq!(list("?source=webhook&q=evt_src_back").await, []);
    assert_eq!(list("?source=backfill&q=evt_src_back").await, [(b, json!("backfill"))]);
    for path in ["/staging/webhooks/events?source=api", "/staging/webhooks/events/export?source=Backfill"] {
        let r = s.get(path).await;
        assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"), "{path}: {}", r.text());
        assert!(r.text().contains("one of webhook, backfill"), "{}", r.text());
    }
    let r = s.post_json("/staging/webhooks/replay", br#"{"source":"mail"}"#).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"), "{}", r.text());
    s.stop().await;
}
