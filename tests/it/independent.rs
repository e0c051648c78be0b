//! Each kind receives, over HTTP, a request signed by someone other than stagehook: the
//! providers' published vectors where they have no time window, else a signer written here from
//! the providers' docs. The real server must answer 200 and record the id and type the provider
//! means, verified.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use stagehook::providers::{KindConfig, ProviderKind};

use crate::support::{self, now_s, request, Resp};

const HMAC_SECRET: &str = "acme-shared-secret-0123456789abc";

fn vector(kind: &str) -> Value {
    support::vectors()[kind][0].clone()
}

fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// A section of `kind` under `secret`, with `more` of its keys (TOML).
fn endpoint(kind: ProviderKind, secret: &str, more: &str) -> KindConfig {
    let text = format!("kind = \"{}\"\nsecret = {}\n{more}", kind.as_str(), toml::Value::String(secret.into()));
    KindConfig::from_toml(kind.as_str(), &text).unwrap()
}

/// Checks the answer and what was recorded for it.
async fn assert_recorded(s: &support::TestServer, name: &str, r: Resp, event_id: &str, event_type: &str) {
    assert_eq!(r.status, 200, "{name}: {}", r.text());
    let page = s.get(&format!("/staging/webhooks/events?provider={name}")).await.json();
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{name}: {page}");
    let e = s.get(&format!("/staging/webhooks/events/{}", events[0]["id"].as_str().unwrap())).await.json();
    assert_eq!(
        (e["event_id"].as_str(), e["event_type"].as_str(), &e["signature_verified"]),
        (Some(event_id), Some(event_type), &Value::Bool(true)),
        "{name}: {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_accepts_a_request_signed_independently() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = support::config(dir.path());
    let (shopify, slack, standard, sendgrid) =
        (vector("shopify"), vector("slack"), vector("standard_webhooks"), vector("sendgrid"));
    // The octokit vector: a JSON object, as GitHub sends.
    let github = support::vectors()["github"][1].clone();
    let s_ = |v: &Value, k: &str| v[k].as_str().unwrap().to_string();
    let named = &mut c.providers;
    named.insert("github".into(), endpoint(ProviderKind::Github, &s_(&github, "secret"), ""));
    named.insert("shop".into(), endpoint(ProviderKind::Shopify, &s_(&shopify, "secret"), ""));
    named.insert("slack".into(), endpoint(ProviderKind::Slack, &s_(&slack, "secret"), ""));
    named.insert("svix".into(), endpoint(ProviderKind::Standard, &s_(&standard, "secret"), ""));
    named.insert(
        "sendgrid".into(),
        stagehook::providers::sendgrid::Settings {
            public_key: Some(s_(&sendgrid, "public_key")),
            ..Default::default()
        },
    );
    named.insert(
        "acme".into(),
        endpoint(
            ProviderKind::Hmac,
            HMAC_SECRET,
            "header = \"x-acme-signature\"\nprefix = \"sha256=\"\nid_pointer = \"/id\"\ntype_pointer = \"/type\"",
        ),
    );
    let s = support::start(c).await;
    const JSON: (&str, &str) = ("content-type", "application/json");

    // GitHub: the published vector as it is, with the delivery's headers.
    let body = s_(&github, "payload");
    let sig = s_(&github, "header");
    let headers =
        [JSON, ("x-hub-signature-256", &sig), ("x-github-event", "push"), ("x-github-delivery", "72d3162e-cc78")];
    let r = request(s.addr, "POST", "/staging/webhooks/github", &headers, body.as_bytes()).await;
    assert_recorded(&s, "github", r, "72d3162e-cc78", "push").await;

    // Shopify: the published vector, with the headers Shopify's libraries require.
    let (body, sig) = (s_(&shopify, "payload"), s_(&shopify, "header"));
    let headers = [
        JSON,
        ("x-shopify-hmac-sha256", sig.as_str()),
        ("x-shopify-topic", "orders/create"),
        ("x-shopify-shop-domain", "example.myshopify.com"),
        ("x-shopify-api-version", "2024-07"),
        ("x-shopify-webhook-id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"),
    ];
    let r = request(s.addr, "POST", "/staging/webhooks/shop", &headers, body.as_bytes()).await;
    assert_recorded(&s, "shop", r, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", "orders/create").await;

    // Slack's vector is years old, past any tolerance: signed now, as slack_sdk's docs sign.
    let body = r#"{"token":"t","team_id":"T1","type":"event_callback","event_id":"Ev08MFMKH6","event_time":1,"event":{"type":"app_mention","text":"hi"}}"#;
    let ts = now_s().to_string();
    let sig = format!(
        "v0={}",
        hex::encode(hmac256(s_(&slack, "secret").as_bytes(), &[b"v0:", ts.as_bytes(), b":", body.as_bytes()]))
    );
    let headers = [JSON, ("x-slack-request-timestamp", ts.as_str()), ("x-slack-signature", &sig)];
    let r = request(s.addr, "POST", "/staging/webhooks/slack", &headers, body.as_bytes()).await;
    assert_recorded(&s, "slack", r, "Ev08MFMKH6", "app_mention").await;

    // Standard Webhooks: the key is the base64 after `whsec_`; `{id}.{timestamp}.{body}`.
    let key = B64.decode(s_(&standard, "secret").trim_start_matches("whsec_")).unwrap();
    let body = r#"{"type":"user.created","data":{"id":"u_1"}}"#;
    let ts = now_s().to_string();
    let sig = format!("v1,{}", B64.encode(hmac256(&key, &[b"msg_2LJZ8vq1.", ts.as_bytes(), b".", body.as_bytes()])));
    let headers =
        [JSON, ("webhook-id", "msg_2LJZ8vq1"), ("webhook-timestamp", ts.as_str()), ("webhook-signature", &sig)];
    let r = request(s.addr, "POST", "/staging/webhooks/svix", &headers, body.as_bytes()).await;
    assert_recorded(&s, "svix", r, "msg_2LJZ8vq1", "user.created").await;

    // SendGrid: the published vector (an ECDSA signature; SendGrid has no time window).
    let body = s_(&sendgrid, "payload");
    let (sig, ts) = (s_(&sendgrid, "signature"), s_(&sendgrid, "timestamp"));
    let headers = [
        JSON,
        ("x-twilio-email-event-webhook-signature", sig.as_str()),
        ("x-twilio-email-event-webhook-timestamp", ts.as_str()),
    ];
    let batch: Value = serde_json::from_str(&body).unwrap();
    let batch = batch.as_array().unwrap();
    let first = batch[0]["sg_event_id"].as_str().unwrap();
    let (id, kind) = match batch.len() {
        1 => (first.to_string(), batch[0]["event"].as_str().unwrap().to_string()),
        n => (format!("{first}:{n}"), "batch".to_string()),
    };
    let r = request(s.addr, "POST", "/staging/webhooks/sendgrid", &headers, body.as_bytes()).await;
    assert_recorded(&s, "sendgrid", r, &id, &kind).await;

    // A scheme configured by hand: prefix + hex HMAC-SHA256 of the body, in its header.
    let body = r#"{"id":"acme_evt_1","type":"thing.happened"}"#;
    let sig = format!("sha256={}", hex::encode(hmac256(HMAC_SECRET.as_bytes(), &[body.as_bytes()])));
    let r =
        request(s.addr, "POST", "/staging/webhooks/acme", &[JSON, ("x-acme-signature", &sig)], body.as_bytes()).await;
    assert_recorded(&s, "acme", r, "acme_evt_1", "thing.happened").await;
    s.stop().await;
}
