//! Every provider kind end to end: `stagehook send` builds and signs a fixture, the real server
//! verifies and records it, the app receives a delivery its own SDK accepts (the `sdk_*.rs`
//! verifiers), and a repeat of the same request is a duplicate. Plus the `send` command line
//! itself and named endpoints (`[providers.<name>]` sections) side by side, each with its own
//! secret.

use stagehook::config::Config;
use stagehook::providers::{github, hmac, sendgrid, shopify, slack, standard, stripe, KindConfig};
use stagehook::secret::Secret;
use stagehook::send::{send, SendRequest};

use crate::fake_app::{stripe_sdk_verify, twilio_sdk_validate, FakeApp, Received};
use crate::support::{self, config, request, run_binary, spawn_binary, STRIPE_SECRET, TWILIO_TOKEN};

/// One endpoint under test: its name (the path), and how the app's SDK checks it.
struct Spec {
    name: &'static str,
    secret: String,
    verify: fn(&Spec, &FakeApp, &Received, i64) -> Result<(), String>,
}

fn stripe_check(spec: &Spec, _app: &FakeApp, r: &Received, now: i64) -> Result<(), String> {
    stripe_sdk_verify(&r.body, r.header("stripe-signature").ok_or("no Stripe-Signature")?, &spec.secret, 300, now)
}

fn twilio_check(spec: &Spec, app: &FakeApp, r: &Received, _now: i64) -> Result<(), String> {
    let mut url = app.url(&r.path);
    if !r.query.is_empty() {
        url = format!("{url}?{}", r.query);
    }
    let json = r.header("content-type").is_some_and(|c| c.starts_with("application/json"));
    let sig = r.header("x-twilio-signature").ok_or("no X-Twilio-Signature")?;
    twilio_sdk_validate(&url, &r.body, json, sig, &spec.secret).then_some(()).ok_or_else(|| "signature rejected".into())
}

fn headers_of(r: &Received) -> Vec<(String, String)> {
    r.headers.clone()
}

fn github_check(spec: &Spec, _app: &FakeApp, r: &Received, now: i64) -> Result<(), String> {
    crate::sdk_github::verify(&headers_of(r), &r.body, &spec.secret, now)
}

fn shopify_check(spec: &Spec, _app: &FakeApp, r: &Received, now: i64) -> Result<(), String> {
    crate::sdk_shopify::verify(&headers_of(r), &r.body, &spec.secret, now)
}

fn slack_check(spec: &Spec, _app: &FakeApp, r: &Received, now: i64) -> Result<(), String> {
    crate::sdk_slack::verify(&headers_of(r), &r.body, &spec.secret, now)
}

fn standard_check(spec: &Spec, _app: &FakeApp, r: &Received, now: i64) -> Result<(), String> {
    crate::sdk_standard::verify(&headers_of(r), &r.body, &spec.secret, now)
}

fn sendgrid_check(spec: &Spec, _app: &FakeApp, r: &Received, _now: i64) -> Result<(), String> {
    crate::sdk_sendgrid::verify(&headers_of(r), &r.body, &spec.secret)
}

fn hmac_check(spec: &Spec, _app: &FakeApp, r: &Received, _now: i64) -> Result<(), String> {
    crate::sdk_hmac::verify_github_style(&headers_of(r), &r.body, &spec.secret)
}

const EU_SECRET: &str = "whsec_test_eu_0123456789abcdef0123456789";
const GITHUB_SECRET: &str = "github-webhook-secret-0123456789";
const SHOPIFY_SECRET: &str = "shopify-app-secret-0123456789abcd";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const HMAC_SECRET: &str = "acme-shared-secret-0123456789abc";

/// A staging key pair for SendGrid (base64 SPKI public key, base64 PKCS#8 private key): the
/// real private key is SendGrid's, so `send` and deliveries sign with this one.
fn sendgrid_keys() -> &'static (String, String) {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    static KEYS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let spki = [&crate::sdk_sendgrid::P256_SPKI_PREFIX[..], pair.public_key().as_ref()].concat();
        (STANDARD.encode(spki), STANDARD.encode(pkcs8.as_ref()))
    })
}

type Check = fn(&Spec, &FakeApp, &Received, i64) -> Result<(), String>;

fn specs() -> Vec<Spec> {
    let spec = |name, secret: &str, verify: Check| Spec { name, secret: secret.to_string(), verify };
    vec![
        spec("stripe", STRIPE_SECRET, stripe_check),
        spec("twilio", TWILIO_TOKEN, twilio_check),
        spec("stripe_eu", EU_SECRET, stripe_check),
        spec("github", GITHUB_SECRET, github_check),
        spec("shop", SHOPIFY_SECRET, shopify_check),
        spec("slack", SLACK_SECRET, slack_check),
        spec("svix", STANDARD_SECRET, standard_check),
        spec("sendgrid", &sendgrid_keys().0, sendgrid_check),
        spec("acme", HMAC_SECRET, hmac_check),
    ]
}

/// The endpoints of `specs()` that are not the built-in two, as configuration.
pub(crate) fn named_endpoints(c: &mut Config) {
    let secret = |s: &str| Some(Secret::new(s));
    let named = |s: KindConfig| s.with_kind();
    c.providers
        .insert("stripe_eu".into(), named(stripe::Settings { secret: secret(EU_SECRET), ..Default::default() }.into()));
    // Named after its kind: no `kind` key needed.
    c.providers.insert("github".into(), github::Settings { secret: secret(GITHUB_SECRET), ..Default::default() });
    c.providers.insert(
        "shop".into(),
        named(shopify::Settings { secret: secret(SHOPIFY_SECRET), ..Default::default() }.into()),
    );
    c.providers
        .insert("slack".into(), named(slack::Settings { secret: secret(SLACK_SECRET), ..Default::default() }.into()));
    c.providers.insert(
        "svix".into(),
        named(standard::Settings { secret: secret(STANDARD_SECRET), ..Default::default() }.into()),
    );
    let (public, private) = sendgrid_keys();
    c.providers.insert(
        "sendgrid".into(),
        sendgrid::Settings {
            public_key: Some(public.clone()),
            signing_key: Some(Secret::new(private.clone())),
            ..Default::default()
        },
    );
    // A scheme configured by hand: GitHub's, so GitHub's own check applies to it.
    let acme = hmac::Settings {
        secret: secret(HMAC_SECRET),
        header: Some("x-hub-signature-256".into()),
        prefix: "sha256=".into(),
        id_pointer: Some("/id".into()),
        type_pointer: Some("/type".into()),
        ..Default::default()
    };
    c.providers.insert("acme".into(), named(acme.into()));
}

/// Where each endpoint's deliveries go on the fake app.
fn forward_everything(c: &mut Config, app: &FakeApp) {
    c.providers.get_mut("stripe").unwrap().forward_to = vec![app.url("/stripe")];
    c.providers.get_mut("twilio").unwrap().forward_to = vec![app.url("/twilio")];
    for (name, endpoint) in c.providers.iter_mut() {
        endpoint.forward_to = vec![app.url(&format!("/{name}"))];
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn req(name: &str) -> SendRequest {
    SendRequest { provider: name.to_string(), event: None, payload: None, to: None, server: None, count: 1 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_round_trips_and_deliveries_verify_with_each_sdk() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    named_endpoints(&mut c);
    forward_everything(&mut c, &app);
    let s = support::start(c.clone()).await;
    c.server.bind = s.addr;
    let endpoints = c.build().unwrap();

    let mut delivered = 0;
    for spec in specs() {
        let sent = send(&c, &endpoints, &req(spec.name), now_s).await.unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].status, 200, "{}: {}", spec.name, sent[0].body);
        // Stored under the endpoint's name, verified.
        let page = s.get(&format!("/staging/webhooks/events?provider={}", spec.name)).await.json();
        let events = page["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{}: {page}", spec.name);
        let e = s.get(&format!("/staging/webhooks/events/{}", events[0]["id"].as_str().unwrap())).await.json();
        assert_eq!(e["signature_verified"], true, "{}", spec.name);

        // The delivery reaches the app signed afresh, and the app's SDK accepts it.
        delivered += 1;
        let got = app.wait_for(delivered).await;
        let r = got.iter().find(|r| r.path == format!("/{}", spec.name)).unwrap_or_else(|| panic!("{}", spec.name));
        (spec.verify)(&spec, &app, r, now_s())
            .unwrap_or_else(|e| panic!("{}: the SDK refused the delivery: {e}", spec.name));
        // Standard Webhooks: the app sees the message id the sender gave, the one stored.
        if spec.name == "svix" {
            assert_eq!(r.header("webhook-id"), e["event_id"].as_str(), "the webhook-id is kept");
        }
    }

    // Slack's URL check is answered with its challenge, over HTTP.
    let sent = send(&c, &endpoints, &SendRequest { event: Some("url_verification".into()), ..req("slack") }, now_s)
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_str(&sent[0].body).unwrap();
    assert!(answer["challenge"].as_str().is_some_and(|c| !c.is_empty()), "{answer}");
    // And the challenge that comes back is the one sent: signed here, independently of `send`.
    let body = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let ts = now_s().to_string();
    let sig = crate::sdk_slack::generate_signature(SLACK_SECRET, &ts, body);
    let headers =
        [("content-type", "application/json"), ("x-slack-request-timestamp", ts.as_str()), ("x-slack-signature", &sig)];
    let r = request(s.addr, "POST", "/staging/webhooks/slack", &headers, body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}));

    // Straight to the app with --to: signed for that URL, accepted by the SDK.
    for spec in specs() {
        let to = app.url(&format!("/direct-{}", spec.name));
        let sent = send(&c, &endpoints, &SendRequest { to: Some(to.clone()), ..req(spec.name) }, now_s).await.unwrap();
        assert_eq!(sent[0].status, 200);
        delivered += 1;
        let got = app.wait_for(delivered).await;
        let r = got.iter().find(|r| r.path == format!("/direct-{}", spec.name)).unwrap();
        (spec.verify)(&spec, &app, r, now_s()).unwrap_or_else(|e| panic!("{} --to: {e}", spec.name));
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_request_twice_is_one_event_and_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    named_endpoints(&mut c);
    let s = support::start(c.clone()).await;
    let endpoints = c.build().unwrap();
    for spec in specs() {
        let i = endpoints.iter().find(|i| i.provider.name() == spec.name).unwrap();
        let url = format!("http://127.0.0.1/staging/webhooks/{}", i.path);
        let sample = i.provider.sample(None, now_s()).unwrap();
        let signed = i.provider.sign_resend(&url, Some(sample.content_type), &sample.body, &sample.headers, now_s());
        let path = signed.url.trim_start_matches("http://127.0.0.1");
        let mut headers = stagehook::delivery::resent_headers(&sample.headers, &signed, &[]);
        headers.push(("content-type".into(), sample.content_type.into()));
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        for attempt in 0..2 {
            let r = request(s.addr, "POST", path, &headers, &sample.body).await;
            assert_eq!(r.status, 200, "{} attempt {attempt}: {}", spec.name, r.text());
        }
        s.store.flush().await.unwrap();
        let stats = s.get("/staging/webhooks/stats").await.json();
        assert_eq!(stats["by_provider"][spec.name]["events"], 1, "{}: {stats}", spec.name);
    }
    let stats = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["duplicates"], specs().len());
    // A SendGrid batch is one record whose events are counted one by one.
    let batch: serde_json::Value = {
        let i = endpoints.iter().find(|i| i.provider.name() == "sendgrid").unwrap();
        serde_json::from_slice(&i.provider.sample(None, now_s()).unwrap().body).unwrap()
    };
    assert!(batch.as_array().unwrap().len() > 1);
    assert_eq!(stats["by_provider"]["sendgrid"]["items_received"], batch.as_array().unwrap().len(), "{stats}");
    assert_eq!(stats["by_provider"]["stripe"]["items_received"], 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_send_command_lists_fires_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    // `send` finds stagehook through the config: the server starts on a free port, and the
    // file then names the port it took (a port found free and bound later could be taken).
    let path = dir.path().join("staging.toml");
    let text = format!(
        "[server]\nbind = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[limits]\nrate_limit_per_minute = 0\n\
         [providers.stripe]\nsecret = \"{STRIPE_SECRET}\"\n[providers.twilio]\nauth_token = \"{TWILIO_TOKEN}\"\n\
         [providers.stripe_eu]\nkind = \"stripe\"\nsecret = \"{EU_SECRET}\"\n",
        dir.path().join("data").display()
    );
    std::fs::write(&path, &text).unwrap();
    let cfg = path.to_str().unwrap().to_string();
    let mut server = spawn_binary(&["serve", "--config", &cfg], &[]).await;
    std::fs::write(&path, text.replace("127.0.0.1:0", &server.addr.to_string())).unwrap();

    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_binary(&args)
        })
    };
    let (code, out) = run(vec!["send".into(), "--list".into(), "--config".into(), cfg.clone()]).await.unwrap();
    assert_eq!(code, 0, "{out}");
    for needle in ["stripe_eu", "/staging/webhooks/sms", "invoice.paid", "message.received"] {
        assert!(out.contains(needle), "{needle} in {out}");
    }
    let (code, out) = run(["send", "stripe", "--event", "charge.failed", "--count", "3", "--config", &cfg]
        .map(String::from)
        .to_vec())
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("-> 200").count(), 3, "{out}");
    let (code, out) = run(["send", "twilio", "--config", &cfg].map(String::from).to_vec()).await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("<Response></Response>"), "{out}");
    let body_file = dir.path().join("evt.json");
    std::fs::write(&body_file, crate::support::stripe_event("evt_from_a_file")).unwrap();
    let (code, out) =
        run(["send", "stripe_eu", "--file", body_file.to_str().unwrap(), "--config", &cfg].map(String::from).to_vec())
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("evt_from_a_file"), "{out}");

    // Mistakes say what is wrong, with exit code 1, and send nothing.
    let (code, out) =
        run(["send", "stripe", "--event", "nope", "--config", &cfg].map(String::from).to_vec()).await.unwrap();
    assert_eq!(code, 1);
    assert!(out.contains("no fixture `nope`") && out.contains("invoice.paid"), "{out}");
    let (code, out) = run(["send", "paypal", "--config", &cfg].map(String::from).to_vec()).await.unwrap();
    assert_eq!(code, 1);
    assert!(out.contains("no provider `paypal`"), "{out}");

    let stats = request(server.addr, "GET", "/staging/webhooks/stats", &[], b"").await.json();
    assert_eq!(stats["by_provider"]["stripe"]["events"], 3, "{stats}");
    assert_eq!(stats["by_provider"]["stripe"]["by_status"]["processed"], 3, "{stats}");
    assert_eq!(stats["by_provider"]["twilio"]["events"], 1, "{stats}");
    assert_eq!(stats["by_provider"]["stripe_eu"]["events"], 1, "{stats}");
    assert_eq!(stats["total_events"], 5, "{stats}");
    server.signal("TERM");
    assert!(server.wait().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_endpoints_are_separate_with_their_own_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    named_endpoints(&mut c);
    let s = support::start(c).await;
    let body = crate::support::stripe_event("evt_two_accounts");
    // The main Stripe secret does not open the EU endpoint, and the other way round.
    let main_signed = crate::support::stripe_header(STRIPE_SECRET, now_s(), body.as_bytes());
    let eu_signed = crate::support::stripe_header(EU_SECRET, now_s(), body.as_bytes());
    let post = |path: &'static str, sig: String| {
        let body = body.clone();
        let addr = s.addr;
        async move {
            request(
                addr,
                "POST",
                path,
                &[("content-type", "application/json"), ("stripe-signature", &sig)],
                body.as_bytes(),
            )
            .await
        }
    };
    assert_eq!(post("/staging/webhooks/stripe_eu", main_signed.clone()).await.status, 401);
    assert_eq!(post("/staging/webhooks/stripe", eu_signed.clone()).await.status, 401);
    assert_eq!(post("/staging/webhooks/stripe_eu", eu_signed).await.status, 200);
    // The same event id in two accounts is two events: dedup is per endpoint.
    assert_eq!(post("/staging/webhooks/stripe", main_signed).await.json()["duplicate"], serde_json::Value::Null);
    s.store.flush().await.unwrap();
    let stats = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["duplicates"], 0);
    assert_eq!(stats["by_provider"]["stripe_eu"]["events"], 1);
    assert_eq!(stats["by_provider"]["stripe"]["events"], 1);
    let health = s.get("/staging/webhooks/test").await.json();
    assert_eq!(health["providers"]["stripe_eu"]["path"], "/staging/webhooks/stripe_eu", "{health}");
    s.stop().await;
}
