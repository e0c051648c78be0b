//! What leaves the store in place of credentials: every provider kind's signature headers
//! shortened and the generic credential headers replaced, in `/events/{id}` and in
//! `/rejections`, while the stored record keeps them whole; and a `forward_to` URL's userinfo
//! and query masked in every report of it (and in every debug log line), while deliveries
//! (retries included) still go to the whole URL, its userinfo as `Authorization: Basic`; and the
//! credentials of the hop to stagehook kept out of deliveries and `curl` commands.

use std::time::Duration;

use serde_json::Value;
use stagehook::config::{HumanDuration, Strategy};
use ulid::Ulid;

use crate::fake_app::{FakeApp, Reply};
use crate::support::{self, config, request, run_binary, spawn_binary, stripe_event, write_config};

/// Replaced whole, whatever the provider.
const CREDENTIALS: [(&str, &str); 4] = [
    ("authorization", "Basic ZGVsaXZlcnl1c2VyOnBhNTV3b3JkLXh5eg=="),
    ("proxy-authorization", "Bearer proxy-token-0123456789"),
    ("cookie", "stagehook_session=cookie-value-0123456789"),
    ("set-cookie", "id=set-cookie-value-0123456789"),
];

/// A header's value in the API's `[[name, value], ...]` list.
fn shown<'a>(headers: &'a Value, name: &str) -> Option<&'a str> {
    headers.as_array()?.iter().find(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))?[1].as_str()
}

/// `shown` is `full` cut to a few characters: no eight characters of the signature in a row
/// survive, and the length is said.
fn assert_shortened(shown: &str, full: &str, what: &str) {
    assert!(full.len() >= 16, "{what}: {full}");
    let chars: Vec<char> = full.chars().collect();
    for window in chars.windows(8) {
        let piece: String = window.iter().collect();
        assert!(!shown.contains(&piece), "{what}: `{shown}` shows `{piece}` of `{full}`");
    }
    assert!(shown.ends_with(&format!("(redacted, {} bytes)", full.len())), "{what}: {shown}");
}

fn assert_credentials_replaced(headers: &Value, what: &str) {
    for (name, _) in CREDENTIALS {
        assert_eq!(shown(headers, name), Some("[redacted]"), "{what}: {name} in {headers}");
    }
}

/// Every kind, through the real server: each endpoint's own sample, signed by the endpoint for
/// the URL the server rebuilds, with the generic credentials added; then the same request with
/// one byte more in the body, which is refused and lands in the rejection log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kinds_signature_headers_are_shortened_in_events_and_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    crate::providers::named_endpoints(&mut c);
    let s = support::start(c.clone()).await;
    let host = s.addr.to_string();
    let now = support::now_s();
    let all = c.build().unwrap();
    assert_eq!(all.len(), 9);
    let mut kinds = std::collections::BTreeSet::new();
    for endpoint in &all {
        let p = &endpoint.provider;
        let what = endpoint.path.as_str();
        kinds.insert(endpoint.kind.as_str());
        let path = format!("/staging/webhooks/{}", endpoint.path);
        let sample = p.sample(None, now).unwrap();
        let signed = p.sign_resend(
            &format!("http://{host}{path}"),
            Some(sample.content_type),
            &sample.body,
            &sample.headers,
            now,
        );
        assert_eq!(signed.url, format!("http://{host}{path}"), "{what}: a form or an HMAC body signs no query");
        let mut headers: Vec<(String, String)> =
            vec![("host".into(), host.clone()), ("content-type".into(), sample.content_type.into())];
        // The sample's own headers, minus those the signature replaces, then the signature.
        headers.extend(stagehook::delivery::resent_headers(&sample.headers, &signed, &[]));
        headers.extend(CREDENTIALS.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let secret: Vec<(&str, &str)> = signed
            .headers
            .iter()
            .filter(|(k, _)| p.secret_headers().contains(k))
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        assert!(!secret.is_empty(), "{what}: signs no header it lists");

        let r = request(s.addr, "POST", &path, &pairs, &sample.body).await;
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        let page = s.get(&format!("/staging/webhooks/events?provider={}", p.name())).await.json();
        let id = page["events"][0]["id"].as_str().unwrap_or_else(|| panic!("{what}: {page}")).to_string();
        let e = s.get(&format!("/staging/webhooks/events/{id}")).await.json();
        assert_eq!(e["signature_verified"], true, "{what}");
        for (name, full) in &secret {
            assert_shortened(shown(&e["headers"], name).unwrap_or_else(|| panic!("{what}: no {name}")), full, what);
        }
        assert_credentials_replaced(&e["headers"], what);
        assert_eq!(shown(&e["headers"], "content-type"), Some(sample.content_type), "{what}: the rest is shown");
        // The record keeps them whole: deliveries re-sign from it.
        let (stored, _) = s.store.get_event(Ulid::from_string(&id).unwrap()).unwrap().unwrap();
        for (name, full) in secret.iter().chain(&CREDENTIALS) {
            assert!(stored.headers.iter().any(|(k, v)| k == name && v == full), "{what}: {name} stored whole");
        }

        let mut tampered = sample.body.clone();
        tampered.push(b' ');
        let r = request(s.addr, "POST", &path, &pairs, &tampered).await;
        assert_eq!(r.code(), "invalid_signature", "{what}: {}", r.text());
        // The rejection log is written without waiting for it.
        let entry = support::until("the rejection", || async {
            let log = s.get("/staging/webhooks/rejections?limit=1").await.json();
            let entry = log["rejections"][0].clone();
            (entry["provider"] == p.name()).then_some(entry)
        })
        .await;
        for (name, full) in &secret {
            assert_shortened(shown(&entry["headers"], name).unwrap_or_else(|| panic!("{what}: no {name}")), full, what);
        }
        assert_credentials_replaced(&entry["headers"], what);
    }
    assert_eq!(kinds.len(), 8, "every kind: {kinds:?}");
    s.stop().await;
}

/// A rejection whose provider is no longer configured: the generic credentials are still
/// replaced, with no provider to say more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_of_a_provider_gone_since_still_hides_the_generic_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    crate::providers::named_endpoints(&mut c);
    let s = support::start(c.clone()).await;
    let mut headers = vec![("content-type", "application/json"), ("x-hub-signature-256", "sha256=00")];
    headers.extend(CREDENTIALS);
    let r = s.post("/staging/webhooks/github", &headers, b"{}").await;
    assert_eq!(r.code(), "invalid_signature", "{}", r.text());
    support::until("the rejection", || async {
        let log = s.get("/staging/webhooks/rejections?limit=1").await.json();
        (log["rejections"][0]["provider"] == "github").then_some(())
    })
    .await;
    s.stop().await;

    c.providers.remove("github");
    let s = support::start(c).await;
    let log = s.get("/staging/webhooks/rejections?limit=1").await.json();
    let entry = &log["rejections"][0];
    assert_eq!(entry["provider"], "github", "{log}");
    assert_credentials_replaced(&entry["headers"], "github, gone");
    s.stop().await;
}

const USER: &str = "deliveryuser";
const PASSWORD: &str = "pa55word-xyz";
const TOKEN: &str = "t0ken-value-xyz";

fn assert_no_credentials(text: &str, what: &str) {
    for secret in [PASSWORD, TOKEN] {
        assert!(!text.contains(secret), "{what} shows `{secret}`: {text}");
    }
}

/// Stripe delivers to a URL with a password and a token; Twilio's target has no host (the
/// configuration check would refuse it at startup; the report still quotes it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_to_credentials_are_masked_in_reports_and_used_whole_to_deliver() {
    let app = FakeApp::start().await;
    app.script([Reply::status(503)]);
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.retry.strategy = Strategy::Fixed;
    c.retry.max_attempts = 3;
    c.retry.base_delay = HumanDuration(Duration::from_millis(50));
    c.retry.jitter = 0.0;
    let target = format!("http://{USER}:{PASSWORD}@{}/hook?token={TOKEN}&empty=", app.addr);
    let masked = format!("http://{USER}:***@{}/hook?token=***&empty=", app.addr);
    c.providers.get_mut("stripe").unwrap().forward_to = vec![target];
    c.providers.get_mut("twilio").unwrap().forward_to = vec![format!("http://{USER}:{PASSWORD}@/hook?token={TOKEN}")];
    let s = support::start(c).await;

    let id = s.stripe(&stripe_event("evt_masked")).await.json()["id"].as_str().unwrap().to_string();
    // The first attempt is refused and retried from the stored job: both reach the app with the
    // token, so neither was sent to the masked URL.
    let got = app.wait_for(2).await;
    let basic = format!("Basic {}", base64_of(&format!("{USER}:{PASSWORD}")));
    for r in &got {
        assert_eq!((r.path.as_str(), r.query.as_str()), ("/hook", format!("token={TOKEN}&empty=").as_str()));
        // The userinfo is the target's own credential: sent as `Authorization: Basic`.
        assert_eq!(r.header("authorization"), Some(basic.as_str()));
    }

    let e = support::until("the delivered event", || async {
        let e = s.get(&format!("/staging/webhooks/events/{id}")).await.json();
        (e["status"] == "processed").then_some(e)
    })
    .await;
    let history = e["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{e}");
    for a in history {
        assert_eq!(a["target"], masked.as_str(), "{a}");
    }
    assert_no_credentials(&e.to_string(), "/events/{id}");

    let recovery = s.get("/staging/webhooks/recovery/stats").await;
    assert_eq!(recovery.json()["providers"]["stripe"]["targets"][0], masked.as_str());
    assert_no_credentials(&recovery.text(), "/recovery/stats");

    let report = s.get("/staging/webhooks/config/validate").await;
    let bad = report.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "target.url")
        .cloned()
        .unwrap_or_else(|| panic!("{}", report.text()));
    assert_eq!(bad["key"], "providers.twilio.forward_to[0]");
    assert!(bad["message"].as_str().unwrap().contains(&format!("`http://{USER}:***@/hook?token=***`")), "{bad}");
    assert_no_credentials(&report.text(), "/config/validate");
    s.stop().await;
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The real binary: `check-config --show` (text and JSON), a configuration error at startup,
/// and every log line, at debug level for every crate (hyper-util's pool names the URI it
/// connects to): the password never shows, and the app gets it as `Authorization: Basic`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_to_credentials_are_masked_in_the_cli_and_the_delivery_log() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let target = format!("http://{USER}:{PASSWORD}@{}/hook?token={TOKEN}", app.addr);
    let path = write_config(dir.path(), &format!("forward_to = [\"{target}\"]\n"));
    let path = path.to_str().unwrap();

    for args in
        [&["check-config", "--config", path, "--show"][..], &["check-config", "--config", path, "--show", "--json"]]
    {
        let (code, out) = run_binary(args);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(&format!("{USER}:***@")) && out.contains("token=***"), "{args:?}: {out}");
        assert_no_credentials(&out, &format!("{args:?}"));
    }

    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    let bad = write_config(&broken, &format!("forward_to = [\"http://{USER}:{PASSWORD}@/hook?token={TOKEN}\"]\n"));
    let (code, out) = run_binary(&["check-config", "--config", bad.to_str().unwrap()]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("forward_to[0]") && out.contains(&format!("{USER}:***@")), "{out}");
    assert_no_credentials(&out, "a configuration error");

    let mut server = spawn_binary(&["serve", "--config", path], &[("RUST_LOG", "debug")]).await;
    assert_eq!(server.stripe(&stripe_event("evt_logged")).await.status, 200);
    let got = app.wait_for(1).await;
    assert_eq!(got[0].query, format!("token={TOKEN}"));
    let basic = format!("Basic {}", base64_of(&format!("{USER}:{PASSWORD}")));
    assert_eq!(got[0].header("authorization"), Some(basic.as_str()));
    let line = support::until("the delivery log line", || async {
        let logs = format!("{}{}", server.stdout.lock(), server.stderr.lock());
        logs.lines().find(|l| l.contains("delivery attempt")).map(str::to_string)
    })
    .await;
    assert!(line.contains(&format!("{USER}:***@")), "{line}");
    server.signal("TERM");
    server.wait().await;
    let logs = format!("{}{}", server.stdout.lock(), server.stderr.lock());
    // The debug log is on: hyper-util's pool lines are there, and none names the password.
    assert!(logs.contains("hyper_util"), "{logs}");
    assert_no_credentials(&logs, "the log");
    assert!(!logs.contains(&basic[6..]), "the Basic credential in the log: {logs}");
}

/// The credentials of the hop to stagehook (a tunnel's basic auth, a proxy's, a browser's
/// session cookie) that reach the ingest endpoint: kept whole in the record, redacted in the
/// API, and neither delivered to the app nor printed by the `curl` command; unless the
/// provider's `forward_headers` names them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hops_credentials_reach_neither_the_app_nor_the_curl_command() {
    let hop = [
        ("authorization", "Basic dHVubmVsdXNlcjp0dW5uZWwtcGFzc3dvcmQ="),
        ("cookie", "tunnel_session=tunnel-cookie-0123456789"),
        ("proxy-authorization", "Bearer proxy-token-0123456789"),
    ];
    let mut extra: Vec<(&str, &str)> = hop.to_vec();
    extra.push(("x-request-id", "req-42"));
    // (forward_headers, the hop's headers the app and the command get)
    let cases: [(&[&str], &[&str]); 2] = [(&[], &[]), (&["Authorization", "COOKIE"], &["authorization", "cookie"])];
    for (forward_headers, kept) in cases {
        let app = FakeApp::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        let stripe = c.providers.get_mut("stripe").unwrap();
        stripe.forward_to = vec![app.url("/hook")];
        stripe.forward_headers = forward_headers.iter().map(|h| h.to_ascii_lowercase()).collect();
        let s = support::start(c).await;
        let what = format!("forward_headers {forward_headers:?}");

        let r = support::post_stripe(s.addr, &stripe_event("evt_hop"), &extra).await;
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        let id = r.json()["id"].as_str().unwrap().to_string();
        let got = app.wait_for(1).await;
        assert_eq!(got[0].header("x-request-id"), Some("req-42"), "{what}: other headers go on");
        for (name, value) in hop {
            let want = kept.contains(&name).then_some(value);
            assert_eq!(got[0].header(name), want, "{what}: {name} delivered");
        }

        let r = s.get(&format!("/staging/webhooks/events/{id}/curl")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let command = r.json()["command"].as_str().unwrap().to_string();
        assert!(command.contains("x-request-id: req-42"), "{what}: {command}");
        for (name, value) in hop {
            let printed = command.contains(value);
            assert_eq!(printed, kept.contains(&name), "{what}: {name} in {command}");
            assert_eq!(command.contains(&format!("'{name}: ")), kept.contains(&name), "{what}: {command}");
        }

        // The record keeps them for the audit trail; the API shows them redacted.
        let (stored, _) = s.store.get_event(Ulid::from_string(&id).unwrap()).unwrap().unwrap();
        for (name, value) in hop {
            assert!(stored.headers.iter().any(|(k, v)| k == name && v == value), "{what}: {name} stored");
        }
        let e = s.get(&format!("/staging/webhooks/events/{id}")).await.json();
        for (name, _) in hop {
            assert_eq!(shown(&e["headers"], name), Some("[redacted]"), "{what}: {name} in {e}");
        }
        s.stop().await;
    }
}

/// `forward_headers` names headers: not one that describes the hop (it never reaches the app),
/// nor something that is no header name.
#[test]
fn forward_headers_refuses_hop_headers_and_bad_names() {
    for (value, key) in [
        ("[\"Host\"]", "providers.stripe.forward_headers[0]"),
        ("[\"cookie\", \"x-stagehook-attempt\"]", "providers.stripe.forward_headers[1]"),
        ("[\"bad name\"]", "providers.stripe.forward_headers[0]"),
    ] {
        let text = format!("[providers.stripe]\nforward_headers = {value}\n");
        let c = stagehook::Config::from_toml(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let e = c.check().expect_err(&text);
        assert_eq!(e.key, key, "{text}: {e}");
    }
    let c = stagehook::Config::from_toml("[providers.stripe]\nforward_headers = [\"Authorization\"]\n").unwrap();
    c.check().unwrap();
    assert_eq!(c.providers["stripe"].forward_headers, ["authorization"]);
}
