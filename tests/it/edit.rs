//! Edit and replay: `POST /staging/webhooks/events/{id}/replay` with an edited body or headers
//! stores a new event whose `parent_id` is the original, and the app gets it signed afresh, as
//! the provider would have signed it (a Twilio form for the target URL); the original's
//! payload, history and dedup claim stay as they were. What the provider could not send, bad
//! headers, an oversize body, no target and an unknown id are refused with their codes and store
//! nothing; a provider that cannot sign here refuses with `cannot_sign`; header overrides are
//! bounded as an arriving head is (64 of them, each within `server.max_header_bytes`).

use serde_json::{json, Value};

use crate::fake_app::{stripe_sdk_verify, twilio_sdk_validate, FakeApp};
use crate::support::{self, config, form, start, twilio_signature, Resp, TestServer, STRIPE_SECRET, TWILIO_TOKEN};

const JSON: (&str, &str) = ("content-type", "application/json");

fn charge(id: &str, amount: u64) -> Value {
    json!({
        "id": id,
        "object": "event",
        "type": "charge.succeeded",
        "created": support::now_s(),
        "data": {"object": {"id": "ch_1", "object": "charge", "amount": amount, "currency": "usd"}},
    })
}

/// Asks for a copy of the event `id` edited as `ask` says.
async fn replay_edited(s: &TestServer, id: &str, ask: &Value) -> Resp {
    s.post(&format!("/staging/webhooks/events/{id}/replay"), &[JSON], ask.to_string().as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_copy_reaches_the_app_signed_afresh_and_the_original_stays() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(support::forwarding(dir.path(), "stripe", app.url("/hook"))).await;
    let original = serde_json::to_string_pretty(&charge("evt_edit", 2000)).unwrap();
    let r = s.stripe(&original).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    app.wait_for(1).await;
    support::wait_status(&s, &id, "processed").await;

    // A JSON value: the edited field, a new one, and a header added.
    let mut edited = charge("evt_edit", 2500);
    edited["data"]["object"]["metadata"] = json!({"order": "A-17"});
    let ask = json!({"body": edited, "headers": {"x-debug-run": "7"}});
    let r = replay_edited(&s, &id, &ask).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    let copy = answer["id"].as_str().unwrap().to_string();
    assert_ne!(copy, id, "a new event");
    assert_eq!((answer["parent_id"].as_str(), answer["event_id"].as_str()), (Some(id.as_str()), Some("evt_edit")));

    let got = app.wait_for(2).await;
    let d = &got[1];
    let sent: Value = serde_json::from_slice(&d.body).unwrap();
    assert_eq!(sent["data"]["object"]["amount"], 2500, "the edited field");
    assert_eq!(sent["data"]["object"]["metadata"]["order"], "A-17", "the added field");
    assert_eq!(d.header("x-debug-run"), Some("7"));
    assert_eq!(d.header("x-stagehook-event-id"), Some(copy.as_str()));
    stripe_sdk_verify(&d.body, d.header("stripe-signature").unwrap(), STRIPE_SECRET, 300, support::now_s())
        .expect("the app's Stripe SDK accepts the edited copy");

    let e = support::wait_status(&s, &copy, "processed").await;
    assert_eq!(e["parent_id"].as_str(), Some(id.as_str()));
    assert_eq!(e["signature_verified"], false, "made here, not verified from the provider");
    assert_eq!(e["payload"], serde_json::to_string(&edited).unwrap());
    assert!(e["headers"].as_array().unwrap().contains(&json!(["x-debug-run", "7"])), "{}", e["headers"]);
    let listed = s.get("/staging/webhooks/events?limit=5").await.json();
    assert_eq!(listed["events"][0]["parent_id"].as_str(), Some(id.as_str()), "{listed}");

    // The original: its payload, history and standing as the first copy, untouched.
    let o = support::event_json(&s, &id).await;
    assert_eq!(o["payload"], original);
    assert_eq!(o["parent_id"], Value::Null);
    assert_eq!(o["history"].as_array().unwrap().len(), 1);
    let again = s.stripe(&original).await.json();
    assert_eq!((again["id"].as_str(), again["duplicate"].clone()), (Some(id.as_str()), json!(true)));

    // A string is the body's exact bytes: a pretty body with its own formatting arrives as typed.
    let typed = format!("{}\n", serde_json::to_string_pretty(&charge("evt_typed", 1)).unwrap());
    let ask = json!({"body": typed});
    let r = replay_edited(&s, &id, &ask).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["event_id"], "evt_typed", "parsed from the edited body");
    let d = &app.wait_for(3).await[2];
    assert_eq!(d.body, typed.as_bytes());
    stripe_sdk_verify(&d.body, d.header("stripe-signature").unwrap(), STRIPE_SECRET, 300, support::now_s())
        .expect("the SDK accepts the typed body");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_form_is_signed_for_the_target_url() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let target = app.url("/twilio/sms");
    let s = start(support::forwarding(dir.path(), "twilio", target.clone())).await;
    let params = [("MessageSid", "SM100"), ("From", "+15005550006"), ("To", "+15005550001"), ("Body", "hello")];
    let r = s.sms(&params).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = s.store.find_by_event_id("twilio", "SM100").unwrap().unwrap().to_string();
    app.wait_for(1).await;

    let edited = form(&[("MessageSid", "SM101"), ("From", "+15005550006"), ("To", "+15005550001"), ("Body", "STOP")]);
    let ask = json!({"body": edited});
    let r = replay_edited(&s, &id, &ask).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["event_id"], "SM101");
    let d = &app.wait_for(2).await[1];
    assert_eq!(d.body, edited.as_bytes());
    assert!(
        twilio_sdk_validate(&target, &d.body, false, d.header("x-twilio-signature").unwrap(), TWILIO_TOKEN),
        "Twilio's validator accepts the edited form at the app's URL"
    );
    // Not the signature of the original request, nor one for stagehook's own URL.
    let own = twilio_signature(TWILIO_TOKEN, &target, &params);
    assert_ne!(d.header("x-twilio-signature"), Some(own.as_str()));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_the_provider_could_not_send_are_refused_with_codes() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = support::forwarding(dir.path(), "stripe", app.url("/hook"));
    c.limits.max_body_bytes = 4096;
    let s = start(c).await;
    let id = s.stripe_id(&charge("evt_bad", 1).to_string()).await;
    assert_eq!(s.sms(&[("MessageSid", "SM1"), ("From", "+1"), ("To", "+2")]).await.status, 200);
    let sms = s.store.find_by_event_id("twilio", "SM1").unwrap().unwrap();
    let path = format!("/staging/webhooks/events/{id}/replay");
    let cases: [(&str, &[u8], u16, &str); 6] = [
        ("a body Stripe's parse refuses", br#"{"body": "not json"}"#, 400, "invalid_payload"),
        ("an event without its id", br#"{"body": {"type": "charge.succeeded"}}"#, 400, "invalid_payload"),
        ("an unknown key", br#"{"bdy": {}}"#, 400, "invalid_payload"),
        ("a header name with a space", br#"{"headers": {"x a": "1"}}"#, 400, "invalid_payload"),
        ("not JSON at all", b"{", 400, "invalid_payload"),
        ("a body over max_body_bytes", &[], 413, "payload_too_large"),
    ];
    let big = json!({"body": "x".repeat(5000)}).to_string();
    for (what, body, status, code) in cases {
        let body = if body.is_empty() { big.as_bytes() } else { body };
        let r = s.post(&path, &[JSON], body).await;
        assert_eq!((r.status, r.code()), (status, code.to_string()), "{what}: {}", r.text());
    }
    let r = s.post(&format!("/staging/webhooks/events/{sms}/replay"), &[JSON], br#"{"body": "MessageSid=SM2"}"#).await;
    assert_eq!((r.status, r.code()), (409, "no_target".to_string()), "{}", r.text());
    let r = s
        .post("/staging/webhooks/events/01ARZ3NDEKTSV4RRFFQ69G5FAV/replay", &[JSON], br#"{"body": {"id": "evt_x"}}"#)
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    // Nothing refused was stored, and the first delivery was the only one.
    s.store.flush().await.unwrap();
    let listed = s.get("/staging/webhooks/events?limit=10").await.json();
    assert_eq!(listed["events"].as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(app.wait_for(1).await.len(), 1);
    s.stop().await;
}

/// SendGrid without a staging `signing_key`: its deliveries carry SendGrid's own signature, which
/// an edited body would not match, so the edit is refused; a plain replay still goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_is_refused_where_the_provider_cannot_sign() {
    use stagehook::providers::sendgrid;
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let v = support::vectors()["sendgrid"][0].clone();
    let mut c = config(dir.path());
    c.providers.insert(
        "sendgrid".into(),
        sendgrid::Settings { public_key: Some(v["public_key"].as_str().unwrap().to_string()), ..Default::default() },
    );
    c.providers.get_mut("sendgrid").unwrap().forward_to = vec![app.url("/sendgrid")];
    let s = start(c).await;
    let headers = [
        JSON,
        (sendgrid::SIGNATURE_HEADER, v["signature"].as_str().unwrap()),
        (sendgrid::TIMESTAMP_HEADER, v["timestamp"].as_str().unwrap()),
    ];
    let r = s.post("/staging/webhooks/sendgrid", &headers, v["payload"].as_str().unwrap().as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    app.wait_for(1).await;
    s.store.flush().await.unwrap();
    let listed = s.get("/staging/webhooks/events?provider=sendgrid").await.json();
    let id = listed["events"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/staging/webhooks/events/{id}/replay");
    let r = s.post(&path, &[JSON], br#"{"headers": {"x-debug-run": "1"}}"#).await;
    assert_eq!((r.status, r.code()), (409, "cannot_sign".to_string()), "{}", r.text());
    let r = s.post(&path, &[JSON], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(app.wait_for(2).await.len(), 2, "the plain replay went out");
    s.stop().await;
}

/// An edit's headers are bounded as an arriving request's head is: at most 64 overrides, each
/// name and value and the whole edited head within `server.max_header_bytes`. Beyond, `400
/// invalid_payload` naming the bound, before anything is stored; within, every override reaches
/// the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_overrides_are_bounded_as_an_arriving_head_is() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c = support::forwarding(dir.path(), "stripe", app.url("/hook"));
    let head = c.server.max_header_bytes;
    let s = start(c).await;
    let id = s.stripe_id(&charge("evt_heads", 1).to_string()).await;
    app.wait_for(1).await;
    let path = format!("/staging/webhooks/events/{id}/replay");
    let overrides = |n: usize, value: &str| {
        let headers: serde_json::Map<String, Value> = (0..n).map(|i| (format!("x-h{i}"), json!(value))).collect();
        json!({ "headers": headers }).to_string()
    };
    let long = "v".repeat(head + 1);
    let cases: [(&str, String, &str); 6] = [
        ("65 overrides", overrides(65, "1"), "at most 64"),
        ("40 000 overrides", overrides(40_000, "1"), "at most 64"),
        ("a value longer than a head", json!({"headers": {"x-long": long}}).to_string(), "server.max_header_bytes"),
        ("a name longer than a head", json!({"headers": {long.clone(): "1"}}).to_string(), "server.max_header_bytes"),
        ("a head made too long", overrides(40, &"w".repeat(head / 32)), "server.max_header_bytes"),
        ("a value that is no header value", json!({"headers": {"x-a": "a\u{7f}b"}}).to_string(), "not a header value"),
    ];
    for (what, body, said) in cases {
        let r = s.post(&path, &[JSON], body.as_bytes()).await;
        assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"), "{what}: {}", r.text());
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(said), "{what}: {message}");
        assert!(message.len() < 300, "{what}: the message is short: {}", message.len());
    }
    s.store.flush().await.unwrap();
    let listed = s.get("/staging/webhooks/events?limit=10").await.json();
    assert_eq!(listed["events"].as_array().unwrap().len(), 1, "nothing refused was stored: {listed}");

    // 64 overrides, within the head: all of them reach the app.
    let r = s.post(&path, &[JSON], overrides(64, "set").as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let d = &app.wait_for(2).await[1];
    for i in 0..64 {
        assert_eq!(d.header(&format!("x-h{i}")), Some("set"), "x-h{i}");
    }
    s.stop().await;
}
