//! Alerts end to end: `breaker_open` fires once naming the provider and resolves once;
//! `no_events` fires after its silence and resolves on the next event; refusals within a window
//! and a dead letter fire with their figures; `repeat` sends again after its interval; a notifier
//! that is down gets its message after a restart, and a restart neither fires an alert again nor
//! resolves one whose breaker is still open; through the binary, a bad rule is named
//! (`alerts[1].above`) and no output shows a notifier's URL or secret; a notifier's message
//! cannot be edited. (The dashboard's firing alerts are in `dashboard.rs`.)
//!
//! The real server, a fake app, and fake notifier endpoints (a Slack incoming webhook and a
//! Standard Webhooks receiver, checked with `sdk_standard.rs`), all real HTTP servers on
//! loopback. Time moves with `Clock::advance` where the engine and the rules read it (a frozen
//! clock where real time passing would change a rule's answer); "nothing more was sent" is said
//! after two whole evaluations (`Alerts::evaluations`), never after a length of time.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use stagehook::config::{AlertRule, Config, HumanDuration, NotifierConfig, NotifierKind, RuleKind, Strategy};
use stagehook::secret::Secret;
use stagehook::Clock;

use crate::fake_app::{FakeApp, Received};
use crate::support::{self, start, start_with_clock, stripe_event, two_evaluations, until, TestServer};

/// The webhook notifier's secret: `whsec_` and base64.
const PAGER_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn rule(when: RuleKind, notify: &[&str]) -> AlertRule {
    AlertRule {
        when,
        notify: notify.iter().map(|n| n.to_string()).collect(),
        provider: None,
        above: None,
        window: None,
        for_: None,
        code: None,
        repeat: None,
    }
}

/// `no_events` for Stripe after two seconds of silence, notifying `ops`.
fn stripe_silence() -> AlertRule {
    AlertRule {
        provider: Some("stripe".into()),
        for_: Some(HumanDuration(Duration::from_secs(2))),
        ..rule(RuleKind::NoEvents, &["ops"])
    }
}

/// Slack (`ops`) notified of a Stripe silence ([`stripe_silence`]), the only rule.
fn silence_alert(dir: &Path, slack: &FakeApp) -> Config {
    let mut c = with_notifiers(dir, slack, None);
    c.alerts.push(stripe_silence());
    c
}

/// Stripe delivers to `app`, and its breaker opens after three failures in a row and probes a
/// minute later.
fn breaker_after_three_failures(c: &mut Config, app: &FakeApp) {
    c.providers.get_mut("stripe").unwrap().forward_to = vec![app.url("/hook")];
    c.circuit_breaker.failure_threshold = 3;
    c.circuit_breaker.recovery_timeout = HumanDuration(Duration::from_secs(60));
}

/// The app comes back and, a minute on, the breaker's probe delivers `id` and closes it: the
/// second message is `breaker_open`'s resolution. Returns every message.
async fn app_back_resolves(s: &TestServer, app: &mut FakeApp, slack: &FakeApp, id: &str) -> Vec<String> {
    app.restart().await;
    s.clock.advance(61_000);
    support::wait_status(s, id, "processed").await;
    let all = wait_messages(slack, 2).await;
    assert!(all[1].starts_with("[RESOLVED] breaker_open"), "{all:?}");
    all
}

fn with_notifiers(dir: &Path, slack: &FakeApp, pager: Option<&FakeApp>) -> Config {
    let mut c = support::config(dir);
    c.retry.strategy = Strategy::Fixed;
    c.retry.base_delay = HumanDuration(Duration::from_millis(50));
    c.retry.jitter = 0.0;
    c.retry.max_attempts = 100;
    let url = Secret::new(slack.url("/services/T000/B000/XXXX"));
    c.notifiers.insert("ops".into(), NotifierConfig { kind: NotifierKind::Slack, url, secret: None });
    if let Some(pager) = pager {
        let url = Secret::new(pager.url("/stagehook"));
        let secret = Some(Secret::new(PAGER_SECRET));
        c.notifiers.insert("pager".into(), NotifierConfig { kind: NotifierKind::Webhook, url, secret });
    }
    c
}

/// The `text` of each Slack message received.
fn texts(slack: &FakeApp) -> Vec<String> {
    slack
        .received()
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            v["text"].as_str().unwrap().to_string()
        })
        .collect()
}

async fn wait_messages(slack: &FakeApp, n: usize) -> Vec<String> {
    slack.wait_for(n).await;
    texts(slack)
}

/// The notifications `ops` was given, sent or still queued: the events of its lane. An
/// evaluation records its notifications before it counts as finished.
async fn notifications(s: &TestServer) -> usize {
    let page = s.get("/staging/webhooks/events?provider=notify.ops").await.json();
    page["events"].as_array().unwrap_or_else(|| panic!("{page}")).len()
}

/// Two evaluations on, `ops` has been given exactly `n` notifications, and Slack got them.
async fn no_more_than(s: &TestServer, slack: &FakeApp, n: usize) {
    two_evaluations(s).await;
    assert_eq!(notifications(s).await, n, "notifications recorded for ops: {:?}", texts(slack));
    assert_eq!(texts(slack).len(), n, "{:?}", texts(slack));
}

/// A clock that moves only when the test moves it, starting now (signatures made with the real
/// time stay within their tolerance): a silence or an interval is then exactly what was advanced.
fn still_clock() -> Clock {
    Clock::frozen(support::now_s() * 1000)
}

/// Each webhook notifier message verified as a Standard Webhooks receiver would, and its JSON.
fn verified(received: &[Received], now_s: i64) -> Vec<Value> {
    received
        .iter()
        .map(|r| {
            crate::sdk_standard::verify(&r.headers, &r.body, PAGER_SECRET, now_s)
                .unwrap_or_else(|e| panic!("the webhook notifier's message does not verify: {e}"));
            serde_json::from_slice(&r.body).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn breaker_open_fires_once_and_resolves_once() {
    let mut app = FakeApp::start().await;
    let (slack, pager) = (FakeApp::start().await, FakeApp::start().await);
    let dir = tempfile::tempdir().unwrap();
    let mut c = with_notifiers(dir.path(), &slack, Some(&pager));
    breaker_after_three_failures(&mut c, &app);
    c.server.public_url = Some("https://stagehook.example.com".into());
    c.alerts.push(rule(RuleKind::BreakerOpen, &["ops", "pager"]));
    let s = start(c).await;
    app.go_down().await;

    let id = s.post_stripe_event("evt_alert_breaker").await;
    let fired = wait_messages(&slack, 1).await;
    assert!(fired[0].starts_with("[FIRING] breaker_open"), "{fired:?}");
    assert!(fired[0].contains("provider stripe"), "{fired:?}");
    assert!(fired[0].contains("3 consecutive failed attempts"), "{fired:?}");
    assert!(fired[0].contains("Dashboard: https://stagehook.example.com/"), "{fired:?}");
    let alerts = s.get("/staging/webhooks/alerts").await.json();
    assert_eq!(alerts["rules"][0]["state"], "firing", "{alerts}");
    assert_eq!(alerts["rules"][0]["firing"][0]["provider"], "stripe", "{alerts}");

    // The half-open probe fails and the breaker opens again: the same alert, nothing new.
    s.clock.advance(61_000);
    until("the failed probe", || async { (support::event_json(&s, &id).await["attempts"] == 4).then_some(()) }).await;
    no_more_than(&s, &slack, 1).await;

    // The app comes back; the next probe closes the breaker: one `resolved`.
    let all = app_back_resolves(&s, &mut app, &slack, &id).await;
    assert!(all[1].contains("provider stripe"), "{all:?}");
    no_more_than(&s, &slack, 2).await;
    let alerts = s.get("/staging/webhooks/alerts").await.json();
    assert_eq!(alerts["rules"][0]["state"], "ok", "{alerts}");
    let ops = &alerts["notifiers"][0];
    assert_eq!((&ops["name"], &ops["kind"]), (&"ops".into(), &"slack".into()), "{alerts}");
    assert_eq!(ops["last_notification"]["type"], "alert.resolved", "{alerts}");
    assert_eq!(ops["last_notification"]["status"], "processed", "{alerts}");

    // The webhook notifier got the same two, signed the Standard Webhooks way, each its own id.
    let got = pager.wait_for(2).await;
    let bodies = verified(&got, s.clock.now_s());
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["type"], "alert.firing");
    assert_eq!(bodies[1]["type"], "alert.resolved");
    for b in &bodies {
        assert_eq!(b["data"]["when"], "breaker_open");
        assert_eq!(b["data"]["provider"], "stripe");
    }
    assert_ne!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    s.stop().await;
}

#[tokio::test]
async fn no_events_fires_after_the_silence_and_resolves_on_the_next_event() {
    let (slack, dir) = (FakeApp::start().await, tempfile::tempdir().unwrap());
    let c = silence_alert(dir.path(), &slack);
    let s = start_with_clock(c, still_clock()).await;
    assert_eq!(s.stripe(&stripe_event("evt_quiet_1")).await.status, 200);
    // A millisecond short of two seconds of silence: nothing.
    two_evaluations(&s).await;
    s.clock.advance(1_999);
    no_more_than(&s, &slack, 0).await;

    s.clock.advance(1);
    let fired = wait_messages(&slack, 1).await;
    assert!(fired[0].starts_with("[FIRING] no_events"), "{fired:?}");
    assert!(fired[0].contains("provider stripe"), "{fired:?}");
    assert!(fired[0].contains("nothing received for"), "{fired:?}");

    assert_eq!(s.stripe(&stripe_event("evt_quiet_2")).await.status, 200);
    let all = wait_messages(&slack, 2).await;
    assert!(all[1].starts_with("[RESOLVED] no_events"), "{all:?}");
    no_more_than(&s, &slack, 2).await;
    s.stop().await;
}

#[tokio::test]
async fn a_notifier_that_is_down_gets_its_message_after_a_restart() {
    let mut slack = FakeApp::start().await;
    slack.go_down().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = silence_alert(dir.path(), &slack);
    // The notifier's own lane failing is no provider's: these must stay quiet.
    c.alerts.push(rule(RuleKind::BreakerOpen, &["ops"]));
    c.alerts.push(AlertRule {
        for_: Some(HumanDuration(Duration::from_millis(500))),
        ..rule(RuleKind::QueueLag, &["ops"])
    });
    c.circuit_breaker.failure_threshold = 2;
    let s = start(c.clone()).await;
    s.clock.advance(3_000);
    let alerts = until("a failed attempt to notify", || async {
        let a = s.get("/staging/webhooks/alerts").await.json();
        (a["notifiers"][0]["last_notification"]["attempts"].as_u64() >= Some(1)).then_some(a)
    })
    .await;
    assert_eq!(alerts["notifiers"][0]["last_notification"]["status"], "retrying", "{alerts}");
    // The notification is an event of the notifier's lane; its history names the notifier,
    // never its URL, whose path is the Slack token.
    let note = alerts["notifiers"][0]["last_notification"]["id"].as_str().unwrap().to_string();
    let shown = s.get(&format!("/staging/webhooks/events/{note}")).await.text();
    assert!(shown.contains("notify.ops") && shown.contains("notifier:ops"), "{shown}");
    assert!(!shown.contains("XXXX"), "{shown}");
    let alerts = until("the notifier's breaker to open", || async {
        let a = s.get("/staging/webhooks/alerts").await.json();
        (a["notifiers"][0]["breaker"] == "open").then_some(a)
    })
    .await;
    s.clock.advance(1_000);
    two_evaluations(&s).await;
    let alerts_now = s.get("/staging/webhooks/alerts").await.json();
    for i in [1, 2] {
        assert_eq!(alerts_now["rules"][i]["state"], "ok", "{alerts_now}");
    }
    assert_eq!(alerts["rules"][0]["state"], "firing", "{alerts}");
    let since = alerts["rules"][0]["firing"][0]["since_ms"].clone();
    let clock = s.clock.clone();
    s.stop().await;

    // Back up, and stagehook restarted: the queued message goes out, and the alert, which
    // still holds, is not fired a second time.
    slack.restart().await;
    let s = start_with_clock(c, clock).await;
    let fired = wait_messages(&slack, 1).await;
    assert!(fired[0].starts_with("[FIRING] no_events"), "{fired:?}");
    two_evaluations(&s).await;
    s.clock.advance(3_000);
    no_more_than(&s, &slack, 1).await;
    let alerts = s.get("/staging/webhooks/alerts").await.json();
    assert_eq!(alerts["rules"][0]["state"], "firing", "{alerts}");
    assert_eq!(alerts["rules"][0]["firing"][0]["since_ms"], since, "{alerts}");
    assert_eq!(alerts["notifiers"][0]["last_notification"]["status"], "processed", "{alerts}");
    s.stop().await;
}

#[tokio::test]
async fn a_restart_while_the_breaker_is_open_neither_resolves_nor_fires_again() {
    let mut app = FakeApp::start().await;
    let slack = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = with_notifiers(dir.path(), &slack, None);
    breaker_after_three_failures(&mut c, &app);
    c.alerts.push(rule(RuleKind::BreakerOpen, &["ops"]));
    app.go_down().await;
    let s = start(c.clone()).await;
    let id = s.post_stripe_event("evt_alert_restart").await;
    let fired = wait_messages(&slack, 1).await;
    assert!(fired[0].starts_with("[FIRING] breaker_open"), "{fired:?}");
    let clock = s.clock.clone();
    s.stop().await;

    // A new process: its breaker starts closed, which says nothing about the app; the queued
    // retries fail and open it again, which is the same alert.
    let s = start_with_clock(c, clock).await;
    until("the breaker to open again", || async {
        (support::event_json(&s, &id).await["attempts"] == 6).then_some(())
    })
    .await;
    no_more_than(&s, &slack, 1).await;

    app_back_resolves(&s, &mut app, &slack, &id).await;
    s.stop().await;
}

/// The real binary: a bad rule stops `check-config` (exit 2) naming its key, and a notifier's
/// URL (a credential) and secret appear in no output of a run: `check-config --show`, the
/// startup lines and logs, `/alerts`, `/config/validate`.
#[tokio::test]
async fn the_binary_names_a_bad_rule_and_never_shows_a_notifier_credential() {
    let dir = tempfile::tempdir().unwrap();
    let slack_token = "T0SLACK/B0SLACK/slackTOKEN0123456789";
    let notifiers = format!(
        "[notifiers.ops]\nkind = \"slack\"\nurl = \"http://127.0.0.1:9/services/{slack_token}\"\n\n\
         [notifiers.pager]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"{PAGER_SECRET}\"\n\n"
    );
    let bad = support::write_config(
        dir.path(),
        &format!("{notifiers}[[alerts]]\nwhen = \"breaker_open\"\nnotify = [\"ops\"]\n\n[[alerts]]\nwhen = \"dead_letters\"\nnotify = [\"ops\"]\n"),
    );
    let (code, out) = support::run_binary(&["check-config", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("alerts[1].above") && out.contains("needs `above`"), "{out}");

    let good = support::write_config(
        dir.path(),
        &format!("{notifiers}[[alerts]]\nwhen = \"breaker_open\"\nnotify = [\"ops\", \"pager\"]\n"),
    );
    let (code, show) = support::run_binary(&["check-config", "--config", good.to_str().unwrap(), "--show"]);
    assert_eq!(code, 0, "{show}");
    assert!(show.contains("notifiers.ops.url"), "{show}");
    let mut s = support::spawn_binary(&["serve", "--config", good.to_str().unwrap()], &[("RUST_LOG", "debug")]).await;
    let mut outputs = vec![show];
    for path in ["/staging/webhooks/alerts", "/staging/webhooks/config/validate?offline=true"] {
        let r = support::request(s.addr, "GET", path, &[], b"").await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        outputs.push(r.text());
    }
    s.signal("TERM");
    assert_eq!(s.wait().await.code(), Some(0));
    outputs.push(s.stdout.lock().clone());
    outputs.push(s.stderr.lock().clone());
    let all = outputs.join("\n");
    assert!(all.contains("\"name\":\"pager\""), "{all}");
    for secret in ["slackTOKEN0123456789", &PAGER_SECRET[6..]] {
        assert!(!all.contains(secret), "a notifier credential leaked into the output");
    }
}

/// A wrong secret's refusals (`rejections` over a window) and a dead letter (`dead_letters`
/// above 0): each fires once naming its figure; the refusals' alert resolves once the window has
/// passed them by.
#[tokio::test]
async fn refusals_within_a_window_and_a_dead_letter_fire_with_their_figures() {
    let app = FakeApp::start().await;
    app.set_default(crate::fake_app::Reply::status(400));
    let slack = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = with_notifiers(dir.path(), &slack, None);
    c.providers.get_mut("stripe").unwrap().forward_to = vec![app.url("/hook")];
    c.alerts.push(AlertRule {
        code: Some("invalid_signature".into()),
        above: Some(2.0),
        window: Some(HumanDuration(Duration::from_secs(60))),
        ..rule(RuleKind::Rejections, &["ops"])
    });
    c.alerts.push(AlertRule { above: Some(0.0), ..rule(RuleKind::DeadLetters, &["ops"]) });
    let s = start(c).await;
    for _ in 0..3 {
        assert_eq!(support::post_badly_signed(s.addr).await.status, 401);
    }
    let id = s.post_stripe_event("evt_alert_dead").await;
    support::wait_status(&s, &id, "failed").await;
    let fired = wait_messages(&slack, 2).await;
    let find = |what: &str| fired.iter().find(|t| t.contains(what)).cloned().unwrap_or_else(|| panic!("{fired:?}"));
    let refused = find("[FIRING] rejections");
    assert!(refused.contains("3 requests refused with `invalid_signature` in the last 1m (above 2)"), "{refused}");
    assert!(refused.contains("on all providers"), "{refused}");
    let dead = find("[FIRING] dead_letters");
    assert!(dead.contains("1 dead letter (above 0)"), "{dead}");

    // A minute on, the refusals are out of the window; the dead letter is still there.
    s.clock.advance(61_000);
    let all = wait_messages(&slack, 3).await;
    assert!(all[2].starts_with("[RESOLVED] rejections"), "{all:?}");
    no_more_than(&s, &slack, 3).await;
    s.stop().await;
}

/// With `repeat`, a firing alert is sent again each time the interval has passed, and only then.
#[tokio::test]
async fn repeat_sends_the_firing_message_again_after_its_interval() {
    let (slack, dir) = (FakeApp::start().await, tempfile::tempdir().unwrap());
    let mut c = silence_alert(dir.path(), &slack);
    c.alerts[0].repeat = Some(HumanDuration(Duration::from_secs(600)));
    let s = start_with_clock(c, still_clock()).await;
    // The silence starts when the evaluator first looks, which must come before the clock moves.
    two_evaluations(&s).await;
    s.clock.advance(3_000);
    wait_messages(&slack, 1).await;
    // A millisecond short of the interval, nothing.
    s.clock.advance(599_999);
    no_more_than(&s, &slack, 1).await;
    s.clock.advance(1);
    let all = wait_messages(&slack, 2).await;
    assert!(all.iter().all(|t| t.starts_with("[FIRING] no_events")), "{all:?}");
    no_more_than(&s, &slack, 2).await;
    s.stop().await;
}

/// A notification is an event of its notifier's lane, not a provider's: an edit, which needs a
/// provider to parse and sign it, is refused with `not_editable`.
#[tokio::test]
async fn a_notifiers_message_cannot_be_edited() {
    let (slack, dir) = (FakeApp::start().await, tempfile::tempdir().unwrap());
    let c = silence_alert(dir.path(), &slack);
    let s = start(c).await;
    assert_eq!(s.stripe(&stripe_event("evt_note_1")).await.status, 200);
    s.clock.advance(2_000);
    wait_messages(&slack, 1).await;
    s.store.flush().await.unwrap();
    let listed = s.get("/staging/webhooks/events?provider=notify.ops").await.json();
    let id = listed["events"][0]["id"].as_str().unwrap_or_else(|| panic!("{listed}")).to_string();
    let path = format!("/staging/webhooks/events/{id}/replay");
    let json = [("content-type", "application/json")];
    let r = s.post(&path, &json, br#"{"body": {"text": "edited"}}"#).await;
    assert_eq!((r.status, r.code()), (409, "not_editable".to_string()), "{}", r.text());
    assert_eq!(texts(&slack).len(), 1, "nothing more was sent");
    s.stop().await;
}
