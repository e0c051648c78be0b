//! Stripe thin events (`object: "v2.core.event"`, from event destinations) at the Stripe
//! endpoint: accepted and stored by `id` and `type`, their related object shown, delivered,
//! replayed and edited signed so that the app's `parse_event_notification` accepts them; a live
//! one refused; a malformed one refused naming the field; `send`'s thin fixtures accepted by a
//! running stagehook; the dashboard's detail showing the related object as text.

use serde_json::{json, Value};

use crate::fake_app::{stripe_sdk_verify, FakeApp, Received};
use crate::support::{self, config, start, write_config, Resp, TestServer, STRIPE_SECRET};

const JSON: (&str, &str) = ("content-type", "application/json");

/// A thin event as Stripe's documentation shows one (event destinations, the thin payload).
fn thin(id: &str) -> Value {
    json!({
        "id": id,
        "object": "v2.core.event",
        "type": "v1.billing.meter.error_report_triggered",
        "livemode": false,
        "created": "2024-09-17T06:20:52.246Z",
        "context": null,
        "related_object": {
            "id": "mtr_test_61R9IeFMpqpONhnCv41HbrAb4tLTL3aK",
            "type": "billing.meter",
            "url": "/v1/billing/meters/mtr_test_61R9IeFMpqpONhnCv41HbrAb4tLTL3aK",
        },
    })
}

/// What stripe-python's `StripeClient.parse_event_notification` does with a request, written
/// here independently: `WebhookSignature.verify_header` (HMAC-SHA256 over `{t}.{body}`, any
/// `v1`, the 300 s default tolerance), then `EventNotification.from_json`: a snapshot
/// (`object: "event"`) is refused, then `id`, `type`, `created` are read, `livemode` as a
/// boolean, a `context` split on `/`, a `reason` of type `request` with its `request.id` and
/// `request.idempotency_key`, and a `related_object` with `id`, `type` and `url`. Returns the
/// notification's (id, type, related object's id).
fn parse_event_notification(d: &Received) -> Result<(String, String, Option<String>), String> {
    let header = d.header("stripe-signature").ok_or("no Stripe-Signature")?;
    stripe_sdk_verify(&d.body, header, STRIPE_SECRET, 300, support::now_s())?;
    let text = std::str::from_utf8(&d.body).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if v["object"] == "event" {
        return Err("You passed a webhook payload to StripeClient.parse_event_notification".into());
    }
    if v["object"] != "v2.core.event" {
        return Err(format!("not an event notification: object {}", v["object"]));
    }
    let field = |k: &str| v.get(k).ok_or(format!("KeyError: '{k}'"));
    let id = field("id")?.as_str().ok_or("id is not a string")?.to_string();
    let kind = field("type")?.as_str().ok_or("type is not a string")?.to_string();
    field("created")?.as_str().ok_or("created is not a string")?;
    if let Some(context) = v.get("context").filter(|c| !c.is_null()) {
        context.as_str().ok_or("context.split: not a string")?;
    }
    if let Some(reason) = v.get("reason").filter(|r| !r.is_null()) {
        if reason["type"] == "request" {
            let request = reason.get("request").ok_or("KeyError: 'request'")?;
            for k in ["id", "idempotency_key"] {
                request.get(k).ok_or(format!("KeyError: '{k}'"))?;
            }
        }
    }
    let related = match v.get("related_object").filter(|r| !r.is_null()) {
        Some(r) => {
            for k in ["id", "type", "url"] {
                r.get(k).ok_or(format!("KeyError: '{k}'"))?;
            }
            Some(r["id"].as_str().ok_or("related_object.id is not a string")?.to_string())
        }
        None => None,
    };
    Ok((id, kind, related))
}

async fn replay(s: &TestServer, id: &str, ask: Option<&Value>) -> Resp {
    let body = ask.map(Value::to_string).unwrap_or_default();
    s.post(&format!("/staging/webhooks/events/{id}/replay"), &[JSON], body.as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thin_event_is_stored_delivered_replayed_and_edited_for_the_sdk() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(support::forwarding(dir.path(), "stripe", app.url("/hook"))).await;
    let body = serde_json::to_string_pretty(&thin("evt_test_65R9Ijk8d6mv91ZtUdp16R3pr8HLSQJ6tVqKrukd9WSEFd")).unwrap();
    let r = s.stripe(&body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["event_id"], "evt_test_65R9Ijk8d6mv91ZtUdp16R3pr8HLSQJ6tVqKrukd9WSEFd");

    // The same event again is a duplicate of the first, by its id.
    let again = s.stripe(&body).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!((again.json()["id"].as_str(), again.json()["duplicate"].clone()), (Some(id.as_str()), json!(true)));

    // Forwarded byte for byte, signed so that the SDK parses it as an event notification.
    let got = app.wait_for(1).await;
    assert_eq!(got[0].body, body.as_bytes());
    let parsed = parse_event_notification(&got[0]).expect("the SDK accepts the delivery");
    assert_eq!(
        parsed,
        (
            "evt_test_65R9Ijk8d6mv91ZtUdp16R3pr8HLSQJ6tVqKrukd9WSEFd".to_string(),
            "v1.billing.meter.error_report_triggered".to_string(),
            Some("mtr_test_61R9IeFMpqpONhnCv41HbrAb4tLTL3aK".to_string())
        )
    );
    let e = support::wait_status(&s, &id, "processed").await;
    assert_eq!(e["event_type"], "v1.billing.meter.error_report_triggered");
    assert_eq!(
        e["related_object"],
        json!({"id": "mtr_test_61R9IeFMpqpONhnCv41HbrAb4tLTL3aK", "type": "billing.meter",
               "url": "/v1/billing/meters/mtr_test_61R9IeFMpqpONhnCv41HbrAb4tLTL3aK"})
    );
    let listed = s.get("/staging/webhooks/events?type=v1.billing.meter.error_report_triggered").await.json();
    assert_eq!(listed["events"].as_array().unwrap().len(), 1, "{listed}");

    // Replayed: signed afresh, parsed again.
    let r = replay(&s, &id, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = app.wait_for(2).await;
    assert_eq!(got[1].body, body.as_bytes());
    parse_event_notification(&got[1]).expect("the SDK accepts the replay");

    // Edited: another related object, parsed by the endpoint as an arrival is, then delivered.
    let mut edited = thin("evt_test_edited");
    edited["type"] = json!("v2.core.account.updated");
    edited["related_object"] =
        json!({"id": "acct_test_1", "type": "v2.core.account", "url": "/v2/core/accounts/acct_test_1"});
    edited["reason"] = json!({"type": "request", "request": {"id": "req_v2abc", "idempotency_key": "k-1"}});
    let r = replay(&s, &id, Some(&json!({"body": edited}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let copy = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        (r.json()["event_id"].as_str(), r.json()["event_type"].as_str()),
        (Some("evt_test_edited"), Some("v2.core.account.updated"))
    );
    let got = app.wait_for(3).await;
    let parsed = parse_event_notification(&got[2]).expect("the SDK accepts the edited copy");
    assert_eq!(parsed.2.as_deref(), Some("acct_test_1"));
    let e = support::wait_status(&s, &copy, "processed").await;
    assert_eq!(e["parent_id"].as_str(), Some(id.as_str()));
    assert_eq!(e["related_object"]["type"], "v2.core.account");

    // An edit the endpoint could not have received is refused as the arrival would be.
    let mut broken = thin("evt_test_broken");
    broken["created"] = json!(1726554052);
    let r = replay(&s, &id, Some(&json!({"body": broken}))).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"), "{}", r.text());
    // As the README words it.
    let said = "created: missing or not a string: a thin event's is an RFC 3339 time";
    assert_eq!(r.json()["error"]["message"], said, "{}", r.text());

    // A snapshot event has no related object.
    let snapshot = s.post_stripe_event("evt_snapshot_1").await;
    assert_eq!(support::event_json(&s, &snapshot).await["related_object"], Value::Null);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_thin_event_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let mut live = thin("evt_65R9Ijk8d6mv91ZtUdp16R3pr8HLSQJ6tVqKrukd9WSEFd");
    live["livemode"] = json!(true);
    let r = s.stripe(&live.to_string()).await;
    assert_eq!((r.status, r.code().as_str()), (400, "livemode_event"), "{}", r.text());
    s.store.flush().await.unwrap();
    assert_eq!(s.get("/staging/webhooks/stats").await.json()["total_events"], 0);
    // Refused for being live, and for nothing else: the same event in test mode is taken.
    live["livemode"] = json!(false);
    let r = s.stripe(&live.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_thin_events_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    // Each case: what to change of a valid thin event (a member set, or removed as null
    // pointer), and the field the refusal names.
    let set = |key: &str, v: Value| {
        let mut e = thin("evt_test_bad");
        match key.split_once('.') {
            Some((outer, inner)) => e[outer][inner] = v,
            None => e[key] = v,
        }
        e
    };
    let without = |key: &str| {
        let mut e = thin("evt_test_bad");
        match key.split_once('.') {
            Some((outer, inner)) => e[outer].as_object_mut().unwrap().remove(inner),
            None => e.as_object_mut().unwrap().remove(key),
        };
        e
    };
    let cases = [
        (without("id"), "id"),
        (set("id", json!(17)), "id"),
        (set("id", json!("")), "id"),
        (without("type"), "type"),
        (set("type", json!(["v1.billing.meter.error_report_triggered"])), "type"),
        (without("created"), "created"),
        (set("created", json!(1726554052)), "created"),
        (set("created", json!("yesterday")), "created"),
        (set("created", json!("2024-09-17 06:20:52")), "created"),
        (set("created", json!("2024-13-17T06:20:52Z")), "created"),
        (set("related_object", json!("mtr_test_1")), "related_object"),
        (set("related_object", json!([])), "related_object"),
        (without("related_object.url"), "related_object.url"),
        (set("related_object.id", json!(5)), "related_object.id"),
        (set("related_object.type", Value::Null), "related_object.type"),
        (without("livemode"), "livemode"),
        (set("livemode", json!("false")), "livemode"),
        (set("context", json!(12)), "context"),
        (set("reason", json!("request")), "reason"),
        (set("reason", json!({"type": "request"})), "reason.request"),
        (set("reason", json!({"type": "request", "request": {"id": 1, "idempotency_key": "k"}})), "reason.request.id"),
    ];
    for (body, field) in &cases {
        let r = s.stripe(&body.to_string()).await;
        assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"), "{body}: {}", r.text());
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.split("; ").any(|m| m.starts_with(&format!("{field}: "))), "{field} in {message}");
    }
    // What stays valid: a null related object, a context, an offset, another precision.
    for body in [
        set("related_object", Value::Null),
        set("context", json!("acct_123/ctx_456")),
        set("created", json!("2024-09-17T08:20:52+02:00")),
        set("created", json!("2024-09-17T06:20:52Z")),
    ] {
        let mut body = body;
        body["id"] = json!(format!("evt_test_{}", ulid::Ulid::new()));
        let r = s.stripe(&body.to_string()).await;
        assert_eq!(r.status, 200, "{body}: {}", r.text());
    }
    s.store.flush().await.unwrap();
    let stats = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(
        (stats["total_events"].as_u64(), stats["rejections"]["invalid_payload"].as_u64()),
        (Some(4), Some(cases.len() as u64))
    );

    // `/validate` says the same, check by check.
    let ask = json!({"provider": "stripe", "payload": set("created", json!(1726554052)).to_string()});
    let v = s.post("/staging/webhooks/validate", &[JSON], ask.to_string().as_bytes()).await.json();
    assert_eq!(v["valid"], false, "{v}");
    let failed: Vec<&str> = v["structure"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["created"], "{v}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_fires_thin_fixtures_that_a_running_stagehook_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = write_config(cfg_dir.path(), "");
    let (cfg, server) = (cfg.to_str().unwrap().to_string(), format!("http://{}", s.addr));
    let (code, out) = support::run_binary_async(&["send", "--list", "--config", &cfg]).await;
    assert_eq!(code, 0, "{out}");
    let kinds = ["v1.billing.meter.error_report_triggered", "v2.core.account.updated"];
    for kind in kinds {
        assert!(out.contains(kind), "{kind} in {out}");
        let (code, out) =
            support::run_binary_async(&["send", "stripe", "--event", kind, "--config", &cfg, "--server", &server])
                .await;
        assert_eq!(code, 0, "{kind}: {out}");
        assert!(out.contains("-> 200"), "{kind}: {out}");
    }
    let listed = s.get("/staging/webhooks/events?provider=stripe").await.json();
    let mut types: Vec<&str> =
        listed["events"].as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    types.sort();
    assert_eq!(types, kinds, "{listed}");
    for e in listed["events"].as_array().unwrap() {
        let detail = support::event_json(&s, e["id"].as_str().unwrap()).await;
        let payload: Value = serde_json::from_str(detail["payload"].as_str().unwrap()).unwrap();
        assert_eq!(payload["object"], "v2.core.event");
        assert!(payload["id"].as_str().unwrap().starts_with("evt_test_"), "{payload}");
        assert_eq!(detail["related_object"], payload["related_object"], "{detail}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_thin_events_related_object_as_text() {
    let scenario = Box::pin(dashboard_detail());
    tokio::time::timeout(std::time::Duration::from_secs(240), scenario).await.expect("the browser scenario finished");
}

/// The detail of a thin event says what it refers to, the provider's strings as text (markup in
/// them is not rendered); a snapshot event's detail says nothing of the kind.
async fn dashboard_detail() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let mut event = thin("evt_test_dash");
    event["related_object"]["id"] = json!("mtr_<img src=x id=injected>");
    let r = s.stripe(&event.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let snapshot = s.post_stripe_event("evt_dash_snapshot").await;
    let mut later = thin("evt_test_dash_2");
    later["created"] = json!("2024-09-17T06:25:52.246Z");
    later["related_object"]["id"] = json!("mtr_test_2");
    let r = s.stripe(&later.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let later = r.json()["id"].as_str().unwrap().to_string();
    let browser = crate::webdriver::Browser::start().await;
    browser.goto(&format!("http://{}/?poll=300", s.addr)).await;
    for (event, thin) in [(&id, true), (&snapshot, false)] {
        let row = format!("#events-table tbody tr[data-id=\"{event}\"]");
        browser.wait("the event's row", || async { (browser.count(&row).await == 1).then_some(()) }).await;
        browser.click(&row).await;
        browser
            .wait("its detail", || async {
                // `#detail-id` is written from the event's own detail, once it has been fetched
                // (the previous event's timings stay until then).
                let shown = browser.text("#detail-id").await.unwrap_or_default();
                shown.contains(event.as_str()).then_some(())
            })
            .await;
        assert_eq!(browser.visible("#detail-related").await, thin, "{event}");
    }
    browser.click(&format!("#events-table tbody tr[data-id=\"{id}\"]")).await;
    let text = browser
        .wait("the related object", || async {
            browser.text("#detail-related").await.filter(|t| t.contains("billing.meter"))
        })
        .await;
    assert!(text.starts_with("thin event created "), "{text}");
    assert!(text.contains("mtr_<img src=x id=injected>"), "{text}");
    assert!(text.contains("/v1/billing/meters/mtr_test_61R9IeFMpqpONhnCv41HbrAb4tLTL3aK"), "{text}");
    assert_eq!(browser.count("#injected").await, 0, "markup in the provider's strings is not rendered");

    // Two thin events compare member by member, as snapshot events do.
    for event in [&id, &later] {
        browser.click(&format!("#events-table tbody tr[data-id=\"{event}\"] input.compare-pick")).await;
    }
    let enabled = || async {
        let on = browser.eval("return !document.querySelector('#compare-open').disabled;", json!([])).await;
        (on == json!(true)).then_some(())
    };
    browser.wait("Compare enabled", enabled).await;
    browser.click("#compare-open").await;
    browser
        .wait("the comparison", || async {
            browser.text("#compare-summary").await.filter(|t| t.starts_with("3 differences"))
        })
        .await;
    let rows = browser
        .eval(
            "return [...document.querySelectorAll('#compare-diff tbody tr')].map(r => r.cells[0].textContent);",
            json!([]),
        )
        .await;
    assert_eq!(rows, json!(["created", "id", "related_object.id"]));
    browser.quit().await;
    s.stop().await;
}
