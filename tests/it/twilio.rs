//! `POST /staging/webhooks/sms`: Twilio's published vectors, URL reconstruction (Host header and
//! `server.public_url`), port variants, repeated names, the JSON `bodySHA256` variant, and TwiML.

use serde_json::{json, Value};
use sha2::Digest;

use crate::support::{self, config, form, start, twilio_signature, TWILIO_TOKEN};

const PATH: &str = "/staging/webhooks/sms";
const FORM: &str = "application/x-www-form-urlencoded";
const TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

fn params_of(v: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, val) in v.as_object().unwrap() {
        match val {
            Value::Array(items) => out.extend(items.iter().map(|i| (k.clone(), i.as_str().unwrap().to_string()))),
            other => out.push((k.clone(), other.as_str().unwrap().to_string())),
        }
    }
    out
}

/// Runs one vector through `/validate` on a server configured with the vector's token, at `url`.
async fn validate_vector(vector: &Value, url: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.providers.get_mut("twilio").unwrap().settings = stagehook::providers::twilio::Settings {
        auth_token: Some(stagehook::secret::Secret::new(vector["auth_token"].as_str().unwrap())),
        ..Default::default()
    }
    .into();
    let s = start(c).await;
    let (payload, content_type) = match vector.get("body") {
        Some(body) => (body.as_str().unwrap().to_string(), "application/json"),
        None => {
            let pairs = params_of(&vector["params"]);
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            (form(&pairs), FORM)
        }
    };
    let req = json!({
        "provider": "twilio",
        "payload": payload,
        "url": url,
        "headers": {"X-Twilio-Signature": vector["signature"], "Content-Type": content_type},
    });
    let r =
        s.post("/staging/webhooks/validate", &[("content-type", "application/json")], req.to_string().as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    s.stop().await;
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_vectors_verify_over_http() {
    let v = support::vectors();
    for vector in v["twilio"].as_array().unwrap() {
        let url = vector["request_url"].as_str().unwrap();
        let report = validate_vector(vector, url).await;
        assert_eq!(report["signature"]["ok"], true, "{}: {report}", vector["note"]);
        // One byte off in the signature and it fails.
        let mut wrong = vector.clone();
        let sig = vector["signature"].as_str().unwrap();
        wrong["signature"] = json!(format!("{}{}", if sig.starts_with('A') { "B" } else { "A" }, &sig[1..]));
        let report = validate_vector(&wrong, url).await;
        assert_eq!(report["signature"]["code"], "invalid_signature", "{report}");
    }
    // The first vector also validates when the request URL carried an explicit port.
    let first = &v["twilio"][0];
    let with_port = first["request_url"].as_str().unwrap().replace("mycompany.com", "mycompany.com:1234");
    assert_eq!(validate_vector(first, &with_port).await["signature"]["ok"], true);
    // The JSON vector fails when the body no longer matches bodySHA256.
    let mut json_vector = v["twilio"].as_array().unwrap().iter().find(|x| x.get("body").is_some()).unwrap().clone();
    json_vector["body"] = json!("{\"property\": \"other\", \"boolean\": true}");
    let report = validate_vector(&json_vector, json_vector["request_url"].as_str().unwrap()).await;
    assert_eq!(report["signature"]["ok"], false, "{report}");
}

fn sms(sid: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MessageSid", sid.to_string()),
        ("From", "+15005550006".into()),
        ("To", "+15005550001".into()),
        ("Body", "hello world & more".into()),
        ("SmsStatus", "received".into()),
    ]
}

async fn post_signed(
    s: &support::TestServer,
    path: &str,
    signed_url: &str,
    params: &[(&str, String)],
) -> support::Resp {
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let sig = twilio_signature(TWILIO_TOKEN, signed_url, &pairs);
    s.post(path, &[("content-type", FORM), ("x-twilio-signature", &sig)], form(&pairs).as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_sms_is_verified_against_the_host_url_and_answered_with_twiml() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    // The test client sends `Host: 127.0.0.1`, so that is the URL Twilio would have signed.
    let r = post_signed(&s, PATH, "http://127.0.0.1/staging/webhooks/sms", &sms("SM001")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), TWIML);
    assert_eq!(r.header("content-type"), Some("text/xml"));
    support::assert_security_headers(&r);

    // Signed with the default port added: also valid, as in twilio's SDKs.
    let r = post_signed(&s, PATH, "http://127.0.0.1:80/staging/webhooks/sms", &sms("SM002")).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Query strings are part of the signed URL.
    let r = post_signed(
        &s,
        "/staging/webhooks/sms?tenant=a",
        "http://127.0.0.1/staging/webhooks/sms?tenant=a",
        &sms("SM003"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_signed(
        &s,
        "/staging/webhooks/sms?tenant=b",
        "http://127.0.0.1/staging/webhooks/sms?tenant=a",
        &sms("SM004"),
    )
    .await;
    assert_eq!(r.code(), "invalid_signature");

    // Repeated names: every value counts.
    let mut repeated = sms("SM005");
    repeated.push(("MediaUrl", "https://a".into()));
    repeated.push(("MediaUrl", "https://b".into()));
    let r = post_signed(&s, PATH, "http://127.0.0.1/staging/webhooks/sms", &repeated).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // The stored record keeps the body byte for byte and the provider's id.
    let stats = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["by_provider"]["twilio"]["events"], 4, "{stats}");
    let id = s.store.find_by_event_id("twilio", "SM001").unwrap().expect("stored");
    let e = s.get(&format!("/staging/webhooks/events/{id}")).await.json();
    assert_eq!(e["event_type"], "message.received");
    let sent = sms("SM001");
    let sent: Vec<(&str, &str)> = sent.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(e["payload"], form(&sent));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_url_replaces_the_host_and_bad_signatures_fail() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.public_url = Some("https://hooks.example.test/".into());
    let s = start(c).await;
    let r = post_signed(&s, PATH, "https://hooks.example.test/staging/webhooks/sms", &sms("SM100")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_signed(&s, PATH, "https://hooks.example.test:443/staging/webhooks/sms", &sms("SM101")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Signed for the Host header, not the public URL: refused.
    let r = post_signed(&s, PATH, "http://127.0.0.1/staging/webhooks/sms", &sms("SM102")).await;
    assert_eq!((r.status, r.code().as_str()), (401, "invalid_signature"));
    // No signature at all.
    let pairs = [("MessageSid", "SM103"), ("From", "+1"), ("To", "+2")];
    let r = s.post(PATH, &[("content-type", FORM)], form(&pairs).as_bytes()).await;
    assert_eq!((r.status, r.code().as_str()), (401, "invalid_signature"));
    // Signed but missing a required parameter.
    let missing = vec![("MessageSid", "SM104".to_string()), ("From", "+1".to_string())];
    let r = post_signed(&s, PATH, "https://hooks.example.test/staging/webhooks/sms", &missing).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"));
    assert!(r.text().contains("To"), "{}", r.text());
    // Wrong media type.
    let r = s.post(PATH, &[("content-type", "text/plain")], b"MessageSid=SM1").await;
    assert_eq!((r.status, r.code().as_str()), (415, "unsupported_media_type"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_are_signed_with_body_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let body = json!({"MessageSid": "SM200", "From": "+1", "To": "+2", "Body": "json"}).to_string();
    let hash = hex::encode(sha2::Sha256::digest(body.as_bytes()));
    let path = format!("{PATH}?bodySHA256={hash}");
    let sig = twilio_signature(TWILIO_TOKEN, &format!("http://127.0.0.1{path}"), &[]);
    let r = s.post(&path, &[("content-type", "application/json"), ("x-twilio-signature", &sig)], body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Same signature, different body: the hash no longer matches.
    let other = body.replace("json", "JSON");
    let r =
        s.post(&path, &[("content-type", "application/json"), ("x-twilio-signature", &sig)], other.as_bytes()).await;
    assert_eq!(r.code(), "invalid_signature");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_callbacks_are_separate_events_and_retries_are_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let url = "http://127.0.0.1/staging/webhooks/sms";
    let status = |st: &str| {
        vec![
            ("MessageSid", "SM300".to_string()),
            ("From", "+1".into()),
            ("To", "+2".into()),
            ("MessageStatus", st.to_string()),
        ]
    };
    assert_eq!(post_signed(&s, PATH, url, &status("sent")).await.status, 200);
    assert_eq!(post_signed(&s, PATH, url, &status("delivered")).await.status, 200);
    assert_eq!(post_signed(&s, PATH, url, &status("delivered")).await.status, 200);
    let stats = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["by_provider"]["twilio"]["events"], 2, "{stats}");
    assert_eq!(stats["by_provider"]["twilio"]["duplicates"], 1, "{stats}");
    s.stop().await;
}
