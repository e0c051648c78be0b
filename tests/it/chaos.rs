//! Chaos delivery (`[providers.<name>.chaos]`): with a seed, `duplicate = 1.0` delivers every
//! event twice and marks both attempts; `reorder_window` sends a burst out of arrival order and
//! records which event each late one went out after; `delay` holds the first attempt back by a
//! recorded amount within its range; each action is counted in `/stats` and `/metrics`. Off by
//! default; refused on a target that is not this machine unless `allow_remote`; a bad value names
//! its key; the dashboard's timeline shows it. The app is a real HTTP server and the server a
//! real one on a free port.

use std::collections::BTreeMap;

use serde_json::Value;
use stagehook::chaos::ChaosConfig;
use stagehook::config::validate::{validate, Context, Severity};
use stagehook::config::Config;

use crate::fake_app::FakeApp;
use crate::metrics::{promtool_finds_no_problem, samples};
use stagehook::Clock;

use crate::support::{self, event_json, start, start_with_clock, stripe_event, until, wait_status, TestServer};

fn chaos(toml: &str) -> ChaosConfig {
    toml::from_str(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"))
}

/// Stripe forwarded to `app` with these chaos settings.
async fn chaotic(dir: &std::path::Path, app: &FakeApp, settings: &str) -> TestServer {
    let mut c = support::forwarding(dir, "stripe", app.url("/hook"));
    c.providers.get_mut("stripe").unwrap().chaos = Some(chaos(settings));
    start(c).await
}

/// The event's attempts once it is processed.
async fn history(s: &TestServer, id: &str) -> Vec<Value> {
    wait_status(s, id, "processed").await["history"].as_array().unwrap().clone()
}

/// The event ids (ours) the app received, in the order it received them.
fn received_ids(app: &FakeApp) -> Vec<String> {
    app.received().iter().map(|r| r.header("x-stagehook-event-id").unwrap().to_string()).collect()
}

async fn chaos_stats(s: &TestServer) -> Value {
    s.get("/staging/webhooks/stats").await.json()["by_provider"]["stripe"]["chaos"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_one_delivers_every_event_twice_and_marks_both_attempts() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = chaotic(dir.path(), &app, "duplicate = 1.0\nseed = 42\n").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(s.post_stripe_event(&format!("evt_chaos_dup_{n}")).await);
    }
    app.wait_for(6).await;
    let received = received_ids(&app);
    for id in &ids {
        assert_eq!(received.iter().filter(|r| *r == id).count(), 2, "{id} twice in {received:?}");
        let attempts = until(&format!("{id}'s two attempts"), || async {
            let h = history(&s, id).await;
            (h.len() == 2).then_some(h)
        })
        .await;
        let messages: Vec<&str> = attempts.iter().map(|a| a["chaos"]["message"].as_str().unwrap()).collect();
        assert_eq!(messages, ["chaos: duplicated: a second delivery follows", "chaos: duplicate"], "{attempts:?}");
        let gap = attempts[1]["chaos"]["duplicate_after_ms"].as_i64().unwrap();
        assert!((1000..=5000).contains(&gap), "{gap}");
        let received = event_json(&s, id).await["received_at_ms"].as_i64().unwrap();
        assert!(attempts[1]["at_ms"].as_i64().unwrap() >= received + gap, "{attempts:?}");
        assert!(attempts.iter().all(|a| a["outcome"] == "delivered"), "{attempts:?}");
    }
    assert_eq!(chaos_stats(&s).await, serde_json::json!({"duplicate": 3}));
    let text = s.get("/metrics").await.text();
    promtool_finds_no_problem(&text);
    assert_eq!(
        samples(&text).get(r#"stagehook_chaos_actions_total{provider="stripe",action="duplicate"}"#),
        Some(&3.0)
    );
    s.stop().await;
}

/// The server's clock stands still while the burst arrives, so every event has the same arrival
/// time and goes out at its drawn offset alone, one delivery at a time: the order is the seed's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorder_window_sends_a_burst_out_of_arrival_order_and_says_after_which_event() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = support::forwarding(dir.path(), "stripe", app.url("/hook"));
    c.providers.get_mut("stripe").unwrap().chaos = Some(chaos("reorder_window = \"800ms\"\nseed = 7\n"));
    c.delivery.concurrency = 1;
    let clock = Clock::frozen(support::now_s() * 1000);
    let s = start_with_clock(c, clock.clone()).await;
    let mut ids = Vec::new();
    for n in 0..8 {
        let r = s.stripe_at_its_clock(&stripe_event(&format!("evt_chaos_order_{n}"))).await;
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    clock.advance(1000);
    app.wait_for(8).await;
    let received = received_ids(&app);
    assert_ne!(received, ids, "the burst went out in arrival order");
    // Each event that went out after one that arrived later names the latest-arrived of those;
    // the rest say nothing of order.
    let arrival: BTreeMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let (mut latest, mut reordered) = (None::<usize>, 0);
    for id in &received {
        let attempts = history(&s, id).await;
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        let c = &attempts[0]["chaos"];
        let offset = c["reorder_offset_ms"].as_u64().unwrap_or(0);
        assert!(offset <= 800, "{c}");
        let own = arrival[id.as_str()];
        match latest {
            Some(later) if later > own => {
                assert_eq!(c["reordered_after"], ids[later].as_str(), "{id}: {c}");
                assert_eq!(c["message"], format!("chaos: reordered after {}", ids[later]), "{c}");
                reordered += 1;
            }
            _ => {
                assert!(c["reordered_after"].is_null(), "{id} went out in order: {c}");
                latest = Some(own);
            }
        }
    }
    assert!(reordered > 0, "no attempt records its reordering: {received:?}");
    assert_eq!(chaos_stats(&s).await["reorder"], reordered);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_holds_the_first_attempt_back_within_its_range_as_recorded() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = chaotic(dir.path(), &app, "delay = \"200ms..400ms\"\nseed = 3\n").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(s.post_stripe_event(&format!("evt_chaos_delay_{n}")).await);
    }
    for id in &ids {
        let event = wait_status(&s, id, "processed").await;
        let a = &event["history"][0];
        let delay = a["chaos"]["delay_ms"].as_i64().unwrap();
        assert!((200..=400).contains(&delay), "{a}");
        assert!(a["chaos"]["message"].as_str().unwrap().starts_with("chaos: delayed 0."), "{a}");
        let received = event["received_at_ms"].as_i64().unwrap();
        assert!(a["at_ms"].as_i64().unwrap() >= received + delay, "attempted before its delay: {event}");
    }
    // The delays alone can send an event out after a later one, which is then recorded too.
    assert_eq!(chaos_stats(&s).await["delay"], 3);
    s.stop().await;
}

/// Without a chaos section nothing is marked or counted, and nothing is delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_is_off_by_default() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(support::forwarding(dir.path(), "stripe", app.url("/hook"))).await;
    let id = s.post_stripe_event("evt_chaos_off").await;
    let attempts = history(&s, &id).await;
    assert_eq!(attempts.len(), 1);
    assert!(attempts[0]["chaos"].is_null(), "{}", attempts[0]);
    assert!(event_json(&s, &id).await["delivery_pending"] == false);
    assert!(chaos_stats(&s).await.is_null());
    assert!(!s.get("/metrics").await.text().contains("stagehook_chaos_actions_total{"));
    assert_eq!(app.received().len(), 1);
    s.stop().await;
}

/// Chaos on a target that is not this machine is an error finding and stops the server from
/// opening, unless `allow_remote = true`; on a loopback target it needs nothing.
#[test]
fn chaos_on_a_remote_target_needs_allow_remote() {
    let dir = tempfile::tempdir().unwrap();
    let with = |target: &str, settings: &str| {
        let mut c = support::forwarding(dir.path(), "stripe", target.to_string());
        c.providers.get_mut("stripe").unwrap().chaos = Some(chaos(settings));
        c
    };
    let remote = with("https://staging-app.example/hook", "duplicate = 0.5\n");
    let report = validate(&remote, &Default::default(), Context::Standalone);
    let finding = report.findings.iter().find(|f| f.id == "chaos.remote_target").expect("a chaos finding");
    assert_eq!((finding.severity, finding.key.as_str()), (Severity::Error, "providers.stripe.chaos.allow_remote"));
    assert!(finding.message.contains("staging-app.example"), "{}", finding.message);
    let e = stagehook::App::open(remote, stagehook::Clock::system()).err().expect("refused").to_string();
    assert!(e.contains("providers.stripe.chaos.allow_remote") && e.contains("allow_remote = true"), "{e}");
    assert!(!dir.path().join("data").exists(), "refused before the store opened");

    let allowed = with("https://staging-app.example/hook", "duplicate = 0.5\nallow_remote = true\n");
    let report = validate(&allowed, &Default::default(), Context::Standalone);
    assert!(report.findings.iter().all(|f| f.id != "chaos.remote_target"));
    assert_eq!(allowed.chaos().unwrap().len(), 1);
    let local = with("http://localhost:3000/hook", "duplicate = 0.5\n");
    assert!(validate(&local, &Default::default(), Context::Standalone)
        .findings
        .iter()
        .all(|f| f.id != "chaos.remote_target"));
    assert!(local.chaos().is_ok());

    // A route's target is a target too: chaos on a loopback forward_to with a remote route is
    // refused the same way.
    let mut routed = with("http://localhost:3000/hook", "duplicate = 0.5\n");
    routed.providers.get_mut("stripe").unwrap().routes = vec![stagehook::providers::registry::Route {
        types: vec!["invoice.*".into()],
        forward_to: vec!["https://billing.example/hook".into()],
        also_default: false,
    }];
    let e = routed.chaos().expect_err("refused").to_string();
    assert!(e.contains("providers.stripe.chaos.allow_remote") && e.contains("billing.example"), "{e}");
    assert!(validate(&routed, &Default::default(), Context::Standalone)
        .findings
        .iter()
        .any(|f| f.id == "chaos.remote_target" && f.message.contains("billing.example")));
}

#[test]
fn a_bad_chaos_value_names_its_key() {
    for (settings, key, words) in [
        ("duplicate = 2.0", "providers.stripe.chaos.duplicate", "between 0.0 and 1.0"),
        ("duplicate = \"often\"", "providers.stripe.chaos.duplicate", "invalid type"),
        ("delay = \"20s..0s\"", "providers.stripe.chaos.delay", "starts after it ends"),
        ("delay = \"0s..2h\"", "providers.stripe.chaos.delay", "longer than 1h"),
        ("reorder_window = \"2h\"", "providers.stripe.chaos.reorder_window", "longer than 1h"),
        ("seed = -1", "providers.stripe.chaos.seed", "invalid value"),
        ("shuffle = true", "providers.stripe.chaos.shuffle", "unknown field `shuffle`"),
    ] {
        let toml = format!("[providers.stripe]\nsecret = \"whsec_x\"\n[providers.stripe.chaos]\n{settings}\n");
        let e = Config::from_toml(&toml).expect_err(&toml);
        assert_eq!(e.key, key, "{toml}: {e}");
        assert!(e.message.contains(words), "{toml}: {e}");
    }
}

/// Every chaos example of the README and the docs is a configuration stagehook loads, with
/// chaos on for the endpoint it shows.
#[test]
fn the_documented_chaos_examples_load() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, heading) in [
        ("README.md", "### Chaos delivery"),
        ("docs/delivery.md", "### Chaos delivery"),
        ("docs/configuration.md", "### Chaos delivery"),
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let section = &text[text.find(heading).unwrap_or_else(|| panic!("{file} has {heading}"))..];
        let toml = section.split("```toml\n").nth(1).unwrap().split("```").next().unwrap();
        let c = Config::from_toml(toml).unwrap_or_else(|e| panic!("{file}: {e}\n{toml}"));
        c.check().unwrap_or_else(|e| panic!("{file}: {e}"));
        let chaos = c.chaos().unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!chaos.is_empty(), "{file}'s example turns chaos on");
    }
    // staging.toml.example's commented table, uncommented under a Stripe section.
    let example = std::fs::read_to_string(root.join("staging.toml.example")).unwrap();
    let table = &example[example.find("# [providers.stripe.chaos]").unwrap()..];
    let table: Vec<&str> =
        table.lines().take_while(|l| !l.is_empty()).map(|l| l.strip_prefix("# ").unwrap_or(l)).collect();
    let toml = format!(
        "[providers.stripe]\nsecret = \"whsec_x\"\nforward_to = [\"http://127.0.0.1:3000/h\"]\n{}\n",
        table.join("\n")
    );
    let c = Config::from_toml(&toml).unwrap_or_else(|e| panic!("staging.toml.example: {e}\n{toml}"));
    let chaos = c.chaos().unwrap();
    assert_eq!(chaos["stripe"].seed, Some(42), "{toml}");
}

/// The dashboard's attempt timeline shows what chaos did to each attempt, as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_timeline_says_what_chaos_did() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = chaotic(dir.path(), &app, "duplicate = 1.0\nseed = 5\n").await;
    let id = s.post_stripe_event("evt_chaos_dash").await;
    until("both deliveries recorded", || async { (history(&s, &id).await.len() == 2).then_some(()) }).await;

    let browser = crate::webdriver::Browser::start().await;
    browser.goto(&format!("http://{}/?poll=300", s.addr)).await;
    let row = format!("#events-table tbody tr[data-id=\"{id}\"]");
    browser.wait("the event's row", || async { (browser.count(&row).await == 1).then_some(()) }).await;
    browser.click(&row).await;
    let said = browser
        .wait("the chaos of both attempts", || async {
            let said = browser
                .eval(
                    "return [...document.querySelectorAll('#detail-history .attempt-chaos')].map((e) => e.textContent);",
                    serde_json::json!([]),
                )
                .await;
            (said.as_array().is_some_and(|a| a.len() == 2)).then_some(said)
        })
        .await;
    assert_eq!(said, serde_json::json!(["chaos: duplicated: a second delivery follows", "chaos: duplicate"]));
    browser.quit().await;
    s.stop().await;
}
