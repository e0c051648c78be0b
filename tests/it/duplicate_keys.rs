//! A JSON body that repeats a key in an object: parsers disagree on which value counts (stagehook
//! would record one event, an app that keeps the first value would act on another), and no
//! provider sends one. Every JSON kind refuses it, correctly signed, with `400 invalid_payload`;
//! nothing is stored and the rejection log says why. An edit and a dry run take the same rule.

use serde_json::{json, Value};
use stagehook::providers::Endpoint;

use crate::support::{self, config, request, start, TestServer};

const JSON: (&str, &str) = ("content-type", "application/json");

/// Every endpoint whose kind reads a JSON body, as `providers::named_endpoints` names them (the
/// generic `acme` reads its id and type by JSON pointer).
const JSON_KINDS: [&str; 7] = ["stripe", "github", "shop", "slack", "svix", "sendgrid", "acme"];

/// Posts `body` to the endpoint, signed by its provider as a delivery of `sample` would be.
async fn post_signed(s: &TestServer, i: &Endpoint, body: &[u8]) -> support::Resp {
    let now = support::now_s();
    let sample = i.provider.sample(None, now).unwrap();
    let url = format!("http://127.0.0.1/staging/webhooks/{}", i.path);
    let signed = i.provider.sign_resend(&url, Some(sample.content_type), body, &sample.headers, now);
    let path = signed.url.trim_start_matches("http://127.0.0.1");
    let mut headers = stagehook::delivery::resent_headers(&sample.headers, &signed, &[]);
    headers.push(("content-type".into(), sample.content_type.into()));
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    request(s.addr, "POST", path, &headers, body).await
}

/// The body with the first member of its first object written twice, the copy first.
fn repeat_first_member(body: &[u8]) -> (String, Vec<u8>) {
    let value: Value = serde_json::from_slice(body).unwrap();
    let object = match &value {
        Value::Array(events) => &events[0],
        other => other,
    };
    let (key, member) = object.as_object().unwrap().iter().next().unwrap();
    let open = body.iter().position(|&b| b == b'{').unwrap();
    let copy = format!("{}:{member},", Value::String(key.clone()));
    let mut out = body[..=open].to_vec();
    out.extend_from_slice(copy.as_bytes());
    out.extend_from_slice(&body[open + 1..]);
    (key.clone(), out)
}

fn message(r: &support::Resp) -> String {
    r.json()["error"]["message"].as_str().unwrap_or_default().to_string()
}

async fn events_of(s: &TestServer, provider: &str) -> usize {
    s.get(&format!("/staging/webhooks/events?provider={provider}")).await.json()["events"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_kind_refuses_a_signed_body_with_a_repeated_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    crate::providers::named_endpoints(&mut c);
    let s = start(c.clone()).await;
    let endpoints = c.build().unwrap();
    for name in JSON_KINDS {
        let i = endpoints.iter().find(|i| i.provider.name() == name).unwrap();
        let sample = i.provider.sample(None, support::now_s()).unwrap();
        let (key, body) = repeat_first_member(&sample.body);
        let r = post_signed(&s, i, &body).await;
        assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"), "{name}: {}", r.text());
        assert!(message(&r).contains(&format!("duplicate key `{key}` at $")), "{name}: {}", r.text());
    }
    s.store.flush().await.unwrap();
    for name in JSON_KINDS {
        assert_eq!(events_of(&s, name).await, 0, "{name}: nothing stored");
    }
    let logged = support::until("every refusal in the rejection log", || async {
        let list = s.get("/staging/webhooks/rejections").await.json();
        let found: Vec<String> = list["rejections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["code"] == "invalid_payload" && r["message"].as_str().unwrap().contains("duplicate key `"))
            .map(|r| r["provider"].as_str().unwrap().to_string())
            .collect();
        (found.len() == JSON_KINDS.len()).then_some(found)
    })
    .await;
    for name in JSON_KINDS {
        assert!(logged.iter().any(|p| p == name), "{name}: {logged:?}");
    }
    // The same bodies without the repeat are taken: the refusal was the repeat's.
    for name in JSON_KINDS {
        let i = endpoints.iter().find(|i| i.provider.name() == name).unwrap();
        let sample = i.provider.sample(None, support::now_s()).unwrap();
        let r = post_signed(&s, i, &sample.body).await;
        assert_eq!(r.status, 200, "{name}: {}", r.text());
    }
    s.stop().await;
}

fn stripe_body(members: &str, object: &str) -> String {
    format!(
        r#"{{{members}"object":"event","type":"charge.succeeded","created":{},"data":{{"object":{object}}}}}"#,
        support::now_s()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_ids_and_livemode_cannot_be_said_twice_and_siblings_may_share_keys() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let obj = r#"{"id":"ch_1","amount":100}"#;
    let refused = [
        (stripe_body(r#""id":"evt_A","id":"evt_B","#, obj), "duplicate key `id` at $"),
        (stripe_body(r#""id":"evt_L","livemode":true,"livemode":false,"#, obj), "duplicate key `livemode` at $"),
        (
            stripe_body(r#""id":"evt_N","#, r#"{"id":"ch_1","amount":100,"metadata":{},"amount":1}"#),
            "duplicate key `amount` at $.data.object",
        ),
        (
            stripe_body(r#""id":"evt_M","#, r#"{"id":"ch_1","lines":[{"a":1},{"a":2,"b":{"c":1,"c":1}}]}"#),
            "duplicate key `c` at $.data.object.lines[1].b",
        ),
    ];
    for (body, said) in &refused {
        let r = s.stripe(body).await;
        assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"), "{body}: {}", r.text());
        assert_eq!(message(&r), *said, "{body}");
    }
    s.store.flush().await.unwrap();
    assert_eq!(events_of(&s, "stripe").await, 0);
    // The same key in sibling and nested objects is no repeat.
    let body = stripe_body(
        r#""id":"evt_S","livemode":false,"a":{"x":1,"id":"i"},"b":{"x":2,"a":{"x":3}},"#,
        r#"{"id":"ch_1","lines":[{"id":1},{"id":2}]}"#,
    );
    let r = s.stripe(&body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["event_id"], "evt_S");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_and_a_dry_run_take_the_same_rule() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.providers.get_mut("stripe").unwrap().forward_to = vec!["http://127.0.0.1:9/hook".into()];
    let s = start(c).await;
    let r = s.stripe(&stripe_body(r#""id":"evt_O","#, "{}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let path = format!("/staging/webhooks/events/{id}/replay");

    // A JSON value: the repeat would vanish when it is written out again, so it is refused here.
    let edit = format!(r#"{{"body": {}}}"#, stripe_body(r#""id":"evt_A","id":"evt_B","#, "{}"));
    let r = s.post(&path, &[JSON], edit.as_bytes()).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"), "{}", r.text());
    assert!(message(&r).contains("duplicate key `id` at $"), "{}", r.text());
    // A string is the body's bytes, parsed by the provider as an arrival.
    let edit = json!({"body": stripe_body(r#""id":"evt_C","#, r#"{"a":1,"a":2}"#)}).to_string();
    let r = s.post(&path, &[JSON], edit.as_bytes()).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"), "{}", r.text());
    assert_eq!(message(&r), "duplicate key `a` at $.data.object");
    // One header named twice (names are case-insensitive).
    let r = s.post(&path, &[JSON], br#"{"headers": {"X-Run": "1", "x-run": "2"}}"#).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"), "{}", r.text());
    assert!(message(&r).contains("`x-run` twice"), "{}", r.text());
    s.store.flush().await.unwrap();
    assert_eq!(events_of(&s, "stripe").await, 1, "no copy stored");

    // A dry run: a JSON value with a repeat is refused; a string is judged by the checks.
    let ask = format!(r#"{{"provider": "stripe", "payload": {}}}"#, stripe_body(r#""id":"evt_A","id":"evt_B","#, "{}"));
    let r = s.post("/staging/webhooks/validate", &[JSON], ask.as_bytes()).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"), "{}", r.text());
    assert!(message(&r).contains("duplicate key `id` at $"), "{}", r.text());
    let ask = json!({"provider": "stripe", "payload": stripe_body(r#""id":"evt_A","id":"evt_B","#, "{}")});
    let r = s.post("/staging/webhooks/validate", &[JSON], ask.to_string().as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json();
    assert_eq!(report["valid"], false, "{report}");
    let checks = report["structure"]["checks"].as_array().unwrap();
    assert!(checks.iter().any(|c| c["ok"] == false && c["message"] == "duplicate key `id` at $"), "{report}");
    s.stop().await;
}
