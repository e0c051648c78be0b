//! Recovering missed events end to end: the real server (in-process) reads fake Stripe and
//! GitHub APIs (`fake_provider_api.rs`), records what it lacks as backfilled events and delivers
//! them to a fake app whose SDK-style verifiers check the fresh signatures; `stagehook backfill`
//! (the binary) prints the report and exits by it; a restart with `backfill.on_start` recovers
//! the downtime without a command.

use serde_json::{json, Value};
use stagehook::providers::{github, stripe};
use stagehook::secret::Secret;
use stagehook::store::EventFilter;

use crate::fake_app::{stripe_sdk_verify, FakeApp};
use crate::fake_provider_api::{FakeProviderApi, Fault, GithubDelivery, StripeEvent, GITHUB_TOKEN, STRIPE_KEY};
use crate::support::{self, run_binary_async, start, until, TestServer, STRIPE_SECRET};

const GITHUB_SECRET: &str = "github-staging-secret";

/// `n` Stripe invoice events created a second apart, the last a minute ago.
fn stripe_events(prefix: &str, n: usize) -> Vec<StripeEvent> {
    let t0 = support::now_s() - 60 - n as i64;
    (0..n)
        .map(|i| StripeEvent { id: format!("evt_{prefix}{i:04}"), created: t0 + i as i64, kind: "invoice.paid".into() })
        .collect()
}

/// Stripe forwarding to `app`, reading its events from `api`.
fn stripe_config(dir: &std::path::Path, app: &FakeApp, api: &FakeProviderApi) -> stagehook::config::Config {
    let mut c = support::config(dir);
    c.providers.insert(
        "stripe".into(),
        stripe::Settings {
            secret: Some(Secret::new(STRIPE_SECRET)),
            api_key: Some(Secret::new(STRIPE_KEY)),
            api_base: Some(api.base()),
            ..Default::default()
        },
    );
    c.providers.get_mut("stripe").unwrap().forward_to = vec![app.url("/stripe")];
    c
}

async fn backfill(s: &TestServer, ask: Value) -> support::Resp {
    s.post_json("/staging/webhooks/backfill", ask.to_string().as_bytes()).await
}

/// The event ids of the stored events of `source`, in the order they were stored.
async fn stored(s: &TestServer, source: &str) -> Vec<String> {
    let filter = EventFilter { source: Some(stagehook::filter::source(source).unwrap()), ..EventFilter::default() };
    let page = s.store.events_after(&filter, None, 1000, 100_000).unwrap();
    page.events.into_iter().map(|(_, e)| e.unwrap().event_id).collect()
}

/// 250 Stripe events, 100 of which came by webhook: a run adds the other 150 in the order
/// Stripe created them, marked as backfilled and unverified, and the app gets every one signed
/// afresh so that Stripe's SDK check accepts it. A second run adds nothing.
#[tokio::test]
async fn stripe_events_missed_are_added_in_order_and_reach_the_app_signed() {
    let dir = tempfile::tempdir().unwrap();
    let (api, app) = (FakeProviderApi::start().await, FakeApp::start().await);
    let events = stripe_events("a", 250);
    api.set_stripe_events(events.clone());
    let s = start(stripe_config(dir.path(), &app, &api)).await;
    let by_webhook: Vec<&StripeEvent> = events.iter().enumerate().filter(|(i, _)| i % 5 < 2).map(|(_, e)| e).collect();
    assert_eq!(by_webhook.len(), 100);
    for e in &by_webhook {
        assert_eq!(s.stripe(&e.json()).await.status, 200);
    }

    let r = backfill(&s, json!({"endpoint": "stripe", "since": "2h"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json();
    assert_eq!(report["state"], "done", "{report}");
    assert_eq!(
        (&report["listed"], &report["already_stored"], &report["added"]),
        (&json!(250), &json!(100), &json!(150))
    );

    let missed: Vec<String> =
        events.iter().enumerate().filter(|(i, _)| i % 5 >= 2).map(|(_, e)| e.id.clone()).collect();
    assert_eq!(stored(&s, "backfill").await, missed, "in Stripe's creation order");
    let received = app.wait_for(250).await;
    for r in &received {
        let header = r.header("stripe-signature").expect("signed");
        stripe_sdk_verify(&r.body, header, STRIPE_SECRET, 300, support::now_s()).expect("Stripe's SDK check passes");
    }
    let backfilled_bodies: Vec<String> = received
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["id"].as_str().unwrap().to_string())
        .filter(|id| missed.contains(id))
        .collect();
    assert_eq!(backfilled_bodies.len(), 150);

    let id = s.store.find_by_event_id("stripe", &missed[0]).unwrap().unwrap();
    let detail = support::event_json(&s, &id.to_string()).await;
    assert_eq!((&detail["source"], &detail["signature_verified"]), (&json!("backfill"), &json!(false)));
    let stats = s.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["backfilled"], 150, "{stats}");

    let again = backfill(&s, json!({"endpoint": "stripe", "since": "2h"})).await.json();
    assert_eq!((&again["added"], &again["already_stored"]), (&json!(0), &json!(250)), "{again}");
    let runs = s.get("/staging/webhooks/backfill").await.json();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2);
    assert_eq!(runs["endpoints"][0]["api"], "ready", "{runs}");
    s.stop().await;
}

fn delivery(id: u64, minutes_ago: i64) -> GithubDelivery {
    let at = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs((support::now_s() - minutes_ago * 60) as u64),
    )
    .to_string();
    let guid = format!("00000000-0000-4000-8000-{id:012}");
    GithubDelivery {
        id,
        guid: guid.clone(),
        event: "issues".into(),
        action: Some("opened".into()),
        delivered_at: at,
        redelivery: false,
        headers: vec![
            ("User-Agent".into(), "GitHub-Hookshot/5a9b2c1".into()),
            ("X-GitHub-Event".into(), "issues".into()),
            ("X-GitHub-Delivery".into(), guid),
            ("X-GitHub-Hook-ID".into(), "7".into()),
            ("X-Hub-Signature-256".into(), "sha256=0000".into()),
            ("Content-Type".into(), "application/json".into()),
        ],
        payload: format!(r#"{{"action":"opened","issue":{{"number":{id}}},"repository":{{"full_name":"acme/shop"}}}}"#),
    }
}

/// 40 GitHub deliveries, 10 of which came by webhook: the other 30 are added with their
/// original event and delivery headers, and the app's octokit-style check accepts the fresh
/// `X-Hub-Signature-256`.
#[tokio::test]
async fn github_deliveries_missed_are_added_with_their_headers_and_a_fresh_signature() {
    let dir = tempfile::tempdir().unwrap();
    let (api, app) = (FakeProviderApi::start().await, FakeApp::start().await);
    // Newest first, as GitHub lists them.
    let deliveries: Vec<GithubDelivery> = (1..=40).rev().map(|i| delivery(i, 100 - i as i64)).collect();
    api.set_github_deliveries(deliveries.clone());
    let mut c = support::config(dir.path());
    c.providers.insert(
        "github".into(),
        github::Settings {
            secret: Some(Secret::new(GITHUB_SECRET)),
            api_token: Some(Secret::new(GITHUB_TOKEN)),
            api_base: Some(api.base()),
            repository: Some("acme/shop".into()),
            hook_id: Some(7),
            ..Default::default()
        },
    );
    c.providers.get_mut("github").unwrap().forward_to = vec![app.url("/github")];
    let s = start(c).await;
    for d in deliveries.iter().filter(|d| d.id % 4 == 0) {
        let sig = github::signature_header(GITHUB_SECRET, d.payload.as_bytes());
        let headers = [
            ("content-type", "application/json"),
            ("x-github-event", "issues"),
            ("x-github-delivery", d.guid.as_str()),
            ("x-hub-signature-256", sig.as_str()),
        ];
        assert_eq!(s.post("/staging/webhooks/github", &headers, d.payload.as_bytes()).await.status, 200);
    }
    let report = backfill(&s, json!({"endpoint": "github", "since": "3h"})).await.json();
    assert_eq!((&report["added"], &report["already_stored"]), (&json!(30), &json!(10)), "{report}");
    let received = app.wait_for(40).await;
    for r in &received {
        crate::sdk_github::verify(&r.headers, &r.body, GITHUB_SECRET, 0).expect("octokit's check passes");
        assert_eq!(r.header("x-github-event"), Some("issues"));
    }
    let guids: Vec<String> =
        (1..=40).filter(|i| i % 4 != 0).map(|i| format!("00000000-0000-4000-8000-{i:012}")).collect();
    assert_eq!(stored(&s, "backfill").await, guids, "oldest first");
    s.stop().await;
}

/// A 429 mid-paging is waited out and the run completes; a refused key fails the run with a
/// clear error and adds nothing, and `stagehook backfill` says so and exits 1; an endpoint
/// whose provider has no events API is refused with its own code, and the command exits 2.
#[tokio::test]
async fn rate_limits_are_waited_out_and_refusals_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (api, app) = (FakeProviderApi::start().await, FakeApp::start().await);
    api.set_stripe_events(stripe_events("b", 250));
    let s = start(stripe_config(dir.path(), &app, &api)).await;
    api.fault_on(2, Fault::RateLimit(1));
    let report = backfill(&s, json!({"endpoint": "stripe", "since": "1h"})).await.json();
    assert_eq!((&report["state"], &report["added"]), (&json!("done"), &json!(250)), "{report}");

    // A class is stagehook's pattern, not Stripe's (whose `type` reads `[` as itself): it is
    // matched here, over the listing of every type; a malformed one is refused before any call.
    let r =
        backfill(&s, json!({"endpoint": "stripe", "since": "1h", "types": ["invoice.[p]aid"], "dry_run": true})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let last = api.got().last().cloned().unwrap();
    assert_eq!(last.param("type"), None, "{last:?}");
    assert_eq!(r.json()["already_stored"], json!(250), "{}", r.text());
    let calls = api.got().len();
    let r = backfill(&s, json!({"endpoint": "stripe", "types": ["invoice.[paid"]})).await;
    assert_eq!((r.status, r.code()), (400, "bad_window".to_string()), "{}", r.text());
    assert!(r.text().contains("never closed"), "{}", r.text());
    assert_eq!(api.got().len(), calls);

    api.refuse_all();
    let server = format!("http://{}", s.addr);
    let (code, out) = run_binary_async(&["backfill", "stripe", "--since", "1h", "--server", &server]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("api_key") && out.contains("401"), "{out}");
    assert!(!out.contains(STRIPE_KEY), "the key is never printed: {out}");
    let failed = s.get("/staging/webhooks/backfill").await.json()["runs"][0].clone();
    assert_eq!((&failed["state"], &failed["added"]), (&json!("failed"), &json!(0)), "{failed}");
    assert_eq!(failed["error"]["code"], "api_unauthorized");

    let r = backfill(&s, json!({"endpoint": "twilio"})).await;
    assert_eq!((r.status, r.code()), (422, "no_events_api".to_string()), "{}", r.text());
    let (code, out) = run_binary_async(&["backfill", "twilio", "--server", &server, "--json"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("\"no_events_api\""), "{out}");
    s.stop().await;
}

/// `stagehook backfill --dry-run` lists what it would add and adds nothing; the real run then
/// prints the counts.
#[tokio::test]
async fn the_command_prints_a_dry_run_then_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (api, app) = (FakeProviderApi::start().await, FakeApp::start().await);
    api.set_stripe_events(stripe_events("c", 3));
    let s = start(stripe_config(dir.path(), &app, &api)).await;
    let server = format!("http://{}", s.addr);
    let (code, out) = run_binary_async(&["backfill", "stripe", "--server", &server, "--dry-run"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("would add 3") && out.contains("would add evt_c0002 invoice.paid"), "{out}");
    assert!(stored(&s, "backfill").await.is_empty());
    let (code, out) = run_binary_async(&["backfill", "stripe", "--server", &server, "--type", "invoice.*"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("listed 3, already stored 0, added 3, refused 0"), "{out}");
    assert_eq!(stored(&s, "backfill").await.len(), 3);
    s.stop().await;
}

/// With `backfill.on_start`, a restart recovers what the provider sent while stagehook was
/// stopped, without a command, and says which window it was down.
#[tokio::test]
async fn a_restart_recovers_the_downtime_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (api, app) = (FakeProviderApi::start().await, FakeApp::start().await);
    let mut c = stripe_config(dir.path(), &app, &api);
    c.backfill.on_start = true;
    let s = start(c.clone()).await;
    s.stop().await;
    // While it is down, Stripe creates 20 events it cannot deliver.
    let t = support::now_s();
    api.set_stripe_events(
        (0..20)
            .map(|i| StripeEvent { id: format!("evt_down{i:02}"), created: t, kind: "invoice.paid".into() })
            .collect(),
    );
    let s = start(c).await;
    let state = until("the start's backfill", || async {
        let b = s.get("/staging/webhooks/backfill").await.json();
        (b["downtime"]["backfilled"] == 20).then_some(b)
    })
    .await;
    // Down from the first run's last heartbeat, at its stop, to this start.
    let (from, to) = (state["downtime"]["from_ms"].as_i64().unwrap(), state["downtime"]["to_ms"].as_i64().unwrap());
    assert!(from <= to && to - from < 60_000, "{state}");
    assert!(state["runs"][0]["window"]["since_ms"].as_i64().unwrap() <= t * 1000, "{state}");
    assert_eq!(state["runs"][0]["trigger"], "start");
    assert_eq!(stored(&s, "backfill").await.len(), 20);
    app.wait_for(20).await;
    s.stop().await;
}

/// README's configuration of "Never miss an event", its placeholders filled in, passes
/// `check-config` and gives both endpoints API access.
#[tokio::test]
async fn the_readmes_configuration_is_accepted() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("## Never miss an event").unwrap()..];
    let toml = section.split("```toml\n").nth(1).unwrap().split("```").next().unwrap();
    let toml = toml
        .replace("\"whsec_...\"", &format!("\"{STRIPE_SECRET}\""))
        .replace("\"rk_test_...\"", &format!("\"{STRIPE_KEY}\""))
        .replace("secret = \"...\"", "secret = \"github-webhook-secret-0123456789\"")
        .replace("\"github_pat_...\"", &format!("\"{GITHUB_TOKEN}\""));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staging.toml");
    let server = format!("[server]\nbind = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n", dir.path().join("data").display());
    std::fs::write(&path, server + &toml).unwrap();
    let (code, out) = run_binary_async(&["check-config", "--config", path.to_str().unwrap(), "--offline"]).await;
    assert_eq!(code, 0, "{out}");
    let config = stagehook::config::Config::load(Some(path.as_path()), &Default::default()).unwrap();
    assert!(config.backfill.on_start);
    let endpoints = config.build().unwrap();
    for name in ["stripe", "github"] {
        let e = endpoints.iter().find(|e| e.provider.name() == name).unwrap();
        assert!(e.provider.api_access().is_ok(), "{name}");
    }
}
