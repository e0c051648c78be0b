//! The dashboard in real headless Chromium (through `webdriver.rs`): numbers equal to the API's,
//! live rows from the event stream, the detail view, copy curl, filters, the config report and
//! rejection log, replay with a click (one, and all failed after a confirm step), the admin-token
//! prompt (sign in, replay, log out, the old session refused), firing alerts at the top, edit
//! and replay of a copy, two events' payloads compared, missed events recovered with a click
//! and marked, and no CSP violation. Screenshots go to
//! `target/screenshots/` (`STAGEHOOK_UPDATE_DOCS=1` also writes the ones in `docs/`).

use std::time::Duration;

use serde_json::json;
use stagehook::config::{HumanDuration, Strategy};

use crate::fake_app::{FakeApp, Reply};
use crate::support::{self, config, start, stripe_event};
use crate::webdriver::Browser;

/// Runs a browser scenario on the heap (its future is too large for a test thread's stack in
/// debug builds) and bounded in time, so a wedged browser fails the test instead of the run.
async fn bounded(scenario: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(240), scenario).await.expect("the browser scenario finished in 4 min");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_the_api_says_and_replays_with_a_click() {
    bounded(Box::pin(overview_detail_and_actions())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_signs_in_with_the_token_replays_and_logs_out() {
    bounded(Box::pin(admin_token_prompt())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_updates_through_the_event_stream() {
    bounded(Box::pin(live_update())).await;
}

/// Polling every ten minutes: only the event stream can bring the new event and its delivery.
async fn live_update() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(support::forwarding(dir.path(), "stripe", app.url("/stripe"))).await;
    let browser = Browser::start().await;
    browser.goto(&format!("http://{}/?poll=600000", s.addr)).await;
    browser
        .wait("the stream open", || async {
            (browser.eval("return live;", json!([])).await == json!(true)).then_some(())
        })
        .await;
    assert_eq!(s.stripe(&stripe_event("evt_dash_live")).await.status, 200);
    let id = s.store.find_by_event_id("stripe", "evt_dash_live").unwrap().unwrap().to_string();
    let row = format!("#events-table tbody tr[data-id=\"{id}\"]");
    browser.wait("the new event's row", || async { (browser.count(&row).await == 1).then_some(()) }).await;
    browser
        .wait("its delivery, processed", || async {
            browser.text(&row).await.filter(|t| t.contains("processed")).map(|_| ())
        })
        .await;
    no_policy_violations(&browser).await;
    browser.quit().await;
    s.stop().await;
}

/// A Slack notifier `ops` at `slack` and a `no_events` rule on Stripe that notifies it after a
/// minute of silence, which only a test clock's advance can reach: a browser slow to start on a
/// loaded machine must not see the alert before the page first shows the event.
pub(crate) fn no_events_alert(c: &mut stagehook::config::Config, slack: &FakeApp) {
    use stagehook::config::{AlertRule, NotifierConfig, NotifierKind, RuleKind};
    let url = stagehook::secret::Secret::new(slack.url("/services/T0/B0/X"));
    c.notifiers.insert("ops".into(), NotifierConfig { kind: NotifierKind::Slack, url, secret: None });
    c.alerts.push(AlertRule {
        when: RuleKind::NoEvents,
        notify: vec!["ops".into()],
        provider: Some("stripe".into()),
        above: None,
        window: None,
        for_: Some(HumanDuration(Duration::from_secs(60))),
        code: None,
        repeat: None,
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_firing_alerts_at_the_top() {
    bounded(Box::pin(firing_alerts())).await;
}

/// A `no_events` alert fires (the clock moved past its silence) and shows above everything
/// else; the next event resolves it and the section goes away.
async fn firing_alerts() {
    let slack = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    no_events_alert(&mut c, &slack);
    let s = start(c).await;
    assert_eq!(s.stripe(&stripe_event("evt_dash_alert")).await.status, 200);
    let browser = Browser::start().await;
    browser.goto(&format!("http://{}/?poll=300", s.addr)).await;
    browser
        .wait("the overview", || async { browser.text("[data-card=\"received\"] .value").await.filter(|t| t == "1") })
        .await;
    assert!(!browser.visible("#alerts").await, "no alert fires yet");

    // The evaluator has seen the event before the clock moves on, so the silence starts there.
    support::two_evaluations(&s).await;
    s.clock.advance(61_000);
    let shown = browser
        .wait("the firing alert", || async {
            let visible = browser.visible("#alerts li[data-provider=\"stripe\"]").await;
            if visible {
                browser.text("#alerts-list").await
            } else {
                None
            }
        })
        .await;
    assert!(shown.contains("no_events on provider stripe since"), "{shown}");
    assert!(shown.contains("nothing received for"), "{shown}");
    assert!(shown.contains("alerts[0], notifies ops"), "{shown}");
    let first = browser.eval("return document.querySelector('main').firstElementChild.id;", json!([])).await;
    assert_eq!(first, "alerts", "the firing alerts are at the top");
    browser.eval("window.scrollTo(0, 0); return true;", json!([])).await;
    let shot = browser.screenshot("dashboard-alert").await;
    // README's picture of a firing alert: written only with STAGEHOOK_UPDATE_DOCS, as below.
    if std::env::var_os("STAGEHOOK_UPDATE_DOCS").is_some() {
        std::fs::copy(&shot, concat!(env!("CARGO_MANIFEST_DIR"), "/docs/alerts.png")).unwrap();
    }

    assert_eq!(s.stripe(&stripe_event("evt_dash_alert_2")).await.status, 200);
    browser.wait("the alert to resolve", || async { (!browser.visible("#alerts").await).then_some(()) }).await;
    no_policy_violations(&browser).await;
    browser.quit().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_recovers_missed_events_with_a_click_and_marks_them() {
    bounded(Box::pin(backfill_with_a_click())).await;
}

/// Stripe's API lists four events, one of which came by webhook: the button for stripe adds the
/// other three, the report's counts show, and the three are listed with the backfill badge (the
/// webhook's without); the detail says where a backfilled one came from. Twilio, whose provider
/// offers no events API, shows why instead of a button.
async fn backfill_with_a_click() {
    use crate::fake_provider_api::{FakeProviderApi, StripeEvent, STRIPE_KEY};
    use stagehook::secret::Secret;
    let api = FakeProviderApi::start().await;
    let t0 = support::now_s() - 600;
    let events: Vec<StripeEvent> = (0..4)
        .map(|i| StripeEvent { id: format!("evt_dash_bf{i}"), created: t0 + i, kind: "invoice.paid".into() })
        .collect();
    api.set_stripe_events(events.clone());
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.providers.insert(
        "stripe".into(),
        stagehook::providers::stripe::Settings {
            secret: Some(Secret::new(support::STRIPE_SECRET)),
            api_key: Some(Secret::new(STRIPE_KEY)),
            api_base: Some(api.base()),
            ..Default::default()
        },
    );
    let s = start(c).await;
    assert_eq!(s.stripe(&events[0].json()).await.status, 200);

    let browser = Browser::start().await;
    browser.goto(&format!("http://{}/?poll=300", s.addr)).await;
    let button = "#backfill-table tr[data-endpoint=\"stripe\"] button.backfill-run";
    browser.wait("the stripe backfill button", || async { (browser.count(button).await == 1).then_some(()) }).await;
    let twilio = browser.text("#backfill-table tr[data-endpoint=\"twilio\"]").await.unwrap_or_default();
    assert_eq!(browser.count("#backfill-table tr[data-endpoint=\"twilio\"] button").await, 0, "{twilio}");
    assert!(twilio.contains("API"), "twilio says why it has no button: {twilio}");
    assert!(!browser.visible("#backfill-downtime").await, "a first start finds no downtime");

    browser.click(button).await;
    let shown = browser
        .wait("the run's counts", || async {
            browser.text("#backfill-table tr[data-endpoint=\"stripe\"] .run").await.filter(|t| t.contains("added"))
        })
        .await;
    assert!(shown.contains("listed 4, already stored 1, added 3, refused 0"), "{shown}");

    let mut backfilled = Vec::new();
    for e in &events {
        let id = s.store.find_by_event_id("stripe", &e.id).unwrap().expect("stored").to_string();
        let badge = format!("#events-table tbody tr[data-id=\"{id}\"] .badge.backfill");
        if e.id == events[0].id {
            let row = format!("#events-table tbody tr[data-id=\"{id}\"]");
            browser.wait("the webhook's row", || async { (browser.count(&row).await == 1).then_some(()) }).await;
            assert_eq!(browser.count(&badge).await, 0, "a webhook's event carries no badge");
        } else {
            browser
                .wait("a backfilled row's badge", || async { (browser.count(&badge).await == 1).then_some(()) })
                .await;
            backfilled.push(id);
        }
    }
    assert_eq!(backfilled.len(), 3);

    browser.click(&format!("#events-table tbody tr[data-id=\"{}\"] .event-type", backfilled[0])).await;
    let line = browser
        .wait("the detail's source line", || async {
            if browser.visible("#detail-source").await {
                browser.text("#detail-source").await
            } else {
                None
            }
        })
        .await;
    assert!(line.contains("provider's API"), "{line}");
    browser.screenshot("dashboard-backfill").await;
    no_policy_violations(&browser).await;
    browser.quit().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_edits_an_event_and_replays_the_copy() {
    bounded(Box::pin(edit_and_replay())).await;
}

/// The editor refuses invalid JSON as it is typed and sends nothing; once valid, the copy is
/// stored with its parent, opened, and reaches the app signed afresh with the edited field.
async fn edit_and_replay() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(support::forwarding(dir.path(), "stripe", app.url("/stripe"))).await;
    let original = serde_json::to_string_pretty(&json!({
        "id": "evt_dash_edit", "object": "event", "type": "charge.succeeded", "created": 1700000000,
        "data": {"object": {"id": "ch_1", "amount": 2000}},
    }))
    .unwrap();
    assert_eq!(s.stripe(&original).await.status, 200);
    let id = s.store.find_by_event_id("stripe", "evt_dash_edit").unwrap().unwrap().to_string();
    app.wait_for(1).await;
    let browser = Browser::start().await;
    browser.goto(&format!("http://{}/?poll=300", s.addr)).await;
    let row = format!("#events-table tbody tr[data-id=\"{id}\"]");
    browser.wait("the event's row", || async { (browser.count(&row).await == 1).then_some(()) }).await;
    browser.click(&row).await;
    browser.wait("the detail", || async { browser.visible("#edit-open").await.then_some(()) }).await;
    browser.click("#edit-open").await;
    browser.wait("the editor", || async { browser.visible("#edit-body").await.then_some(()) }).await;
    let held = browser.eval("return document.querySelector('#edit-body').value;", json!([])).await;
    assert_eq!(held, json!(original), "the editor holds the payload's exact text");

    // Typed by keystrokes: half an object is refused before anything is sent.
    browser.eval("document.querySelector('#edit-body').value = ''; return true;", json!([])).await;
    browser
        .type_into(
            "#edit-body",
            r#"{"id": "evt_dash_edit", "object": "event", "type": "charge.succeeded", "created": 1700000000,"#,
        )
        .await;
    let error = browser
        .wait("the JSON error", || async { browser.text("#edit-error").await.filter(|t| t.contains("invalid JSON")) })
        .await;
    assert!(!error.is_empty());
    let disabled = browser.eval("return document.querySelector('#edit-send').disabled;", json!([])).await;
    assert_eq!(disabled, json!(true), "no send while the JSON is invalid");
    browser.click("#edit-send").await;
    browser.type_into("#edit-body", r#" "data": {"object": {"id": "ch_1", "amount": 2500}}}"#).await;
    browser
        .wait("the error cleared", || async { browser.text("#edit-error").await.filter(|t| t.is_empty()).map(|_| ()) })
        .await;
    assert_eq!(app.received().len(), 1, "nothing was sent while the JSON was invalid");
    browser.click("#edit-send").await;
    let copy = browser
        .wait("the copy's detail", || async {
            let shown = browser.eval("return document.querySelector('#detail').dataset.id;", json!([])).await;
            let parent = browser.visible("#detail-parent").await;
            shown.as_str().filter(|c| *c != id && parent).map(str::to_string)
        })
        .await;
    assert_eq!(browser.text("#detail-parent-link").await.as_deref(), Some(id.as_str()));
    let sent = app.wait_for(2).await[1].clone();
    let body: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body["data"]["object"]["amount"], 2500, "the edited field reached the app");
    crate::fake_app::stripe_sdk_verify(
        &sent.body,
        sent.header("stripe-signature").unwrap(),
        support::STRIPE_SECRET,
        300,
        support::now_s(),
    )
    .expect("signed afresh for the app");
    let e = s.get(&format!("/staging/webhooks/events/{copy}")).await.json();
    assert_eq!(e["parent_id"].as_str(), Some(id.as_str()));
    assert_eq!(s.get(&format!("/staging/webhooks/events/{id}")).await.json()["payload"], json!(original));
    // The parent is a click away.
    browser.click("#detail-parent-link").await;
    browser
        .wait("the original's detail", || async {
            let shown = browser.eval("return document.querySelector('#detail').dataset.id;", json!([])).await;
            (shown == json!(id) && !browser.visible("#detail-parent").await).then_some(())
        })
        .await;
    no_policy_violations(&browser).await;
    browser.quit().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_compares_the_payloads_of_two_events() {
    bounded(Box::pin(compare_two_events())).await;
}

/// The older of the two Stripe events compared; the newer differs from it in every way the diff
/// tells apart (a changed leaf, a nested key added and one removed, array elements changed, added
/// and removed, a type change, a key with a dot, a value long enough to be cut).
fn compare_before() -> String {
    let long = "x".repeat(200);
    format!(
        r#"{{"id":"evt_cmp_1","object":"event","type":"payment_intent.succeeded","created":1700000000,"livemode":false,"data":{{"object":{{"id":"pi_1","amount":2000,"currency":"usd","metadata":{{"coupon":"SPRING"}},"charges":[{{"id":"ch_1","paid":false}},{{"id":"ch_2"}}],"refunds":[],"shipping":{{"carrier":"UPS"}},"a.b":1,"description":"{long}"}}}}}}"#
    )
}

fn compare_after() -> String {
    let long = "y".repeat(200);
    format!(
        r#"{{"id":"evt_cmp_2","object":"event","type":"payment_intent.succeeded","created":1700000060,"livemode":false,"data":{{"object":{{"id":"pi_1","amount":2500,"currency":"usd","metadata":{{"order":"A-17"}},"charges":[{{"id":"ch_1","paid":true}}],"refunds":["re_1"],"shipping":"none","a.b":2,"description":"{long}"}}}}}}"#
    )
}

/// One row of the diff, as `diff_rows` reads it.
fn diff_row(path: &str, kind: &str, before: &str, after: &str) -> Vec<String> {
    vec![path.into(), kind.into(), before.into(), after.into()]
}

/// The diff's rows as the page shows them: path, change, before, after.
async fn diff_rows(browser: &Browser) -> Vec<Vec<String>> {
    let rows = browser
        .eval(
            "return [...document.querySelectorAll('#compare-diff tbody tr')].map(r => [...r.cells].map(c => c.textContent));",
            json!([]),
        )
        .await;
    serde_json::from_value(rows).unwrap()
}

/// Two Stripe events and two Twilio forms; the older is "before" whatever the order of the ticks.
async fn compare_two_events() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    assert_eq!(s.stripe(&compare_before()).await.status, 200);
    s.clock.advance(60_000);
    assert_eq!(s.stripe(&compare_after()).await.status, 200);
    let sms = |sid: &'static str, body: &'static str| {
        [("MessageSid", sid), ("From", "+15005550006"), ("To", "+15005550001"), ("Body", body)]
    };
    let first = sms("SM_CMP_1", "hello");
    assert_eq!(s.sms(&[&first[..], &[("SmsStatus", "received")]].concat()).await.status, 200);
    s.clock.advance(60_000);
    assert_eq!(s.sms(&[&sms("SM_CMP_2", "hello again")[..], &[("NumMedia", "1")]].concat()).await.status, 200);
    let id = |provider: &str, event: &str| s.store.find_by_event_id(provider, event).unwrap().unwrap().to_string();
    let ids =
        [id("stripe", "evt_cmp_1"), id("stripe", "evt_cmp_2"), id("twilio", "SM_CMP_1"), id("twilio", "SM_CMP_2")];

    let browser = Browser::start().await;
    browser.goto(&format!("http://{}/?poll=300", s.addr)).await;
    browser
        .wait("the four rows", || async {
            (browser.count("#events-table tbody input.compare-pick").await == 4).then_some(())
        })
        .await;
    picks_within_one_provider(&browser, &ids).await;
    stripe_diff(&browser, &ids).await;
    form_diff(&browser, &ids).await;
    diff_edge_cases(&browser).await;
    no_policy_violations(&browser).await;
    browser.quit().await;
    s.stop().await;
}

fn pick(id: &str) -> String {
    format!("#events-table tbody tr[data-id=\"{id}\"] input.compare-pick")
}

async fn compare_enabled(browser: &Browser) -> bool {
    browser.eval("return !document.querySelector('#compare-open').disabled;", json!([])).await == json!(true)
}

/// The newer Stripe event is ticked first; a Twilio event is refused beside it, with the reason.
async fn picks_within_one_provider(browser: &Browser, ids: &[String; 4]) {
    browser.click(&pick(&ids[1])).await;
    browser
        .wait("the first pick", || async {
            browser
                .text("#compare-message")
                .await
                .filter(|t| t == "evt_cmp_2 (stripe) picked: tick one more stripe event")
        })
        .await;
    assert!(!browser.visible("#detail").await, "ticking a row does not open its detail");
    assert!(!compare_enabled(browser).await, "one event does not compare");

    browser.click(&pick(&ids[2])).await;
    let refusal = browser
        .wait("the refusal", || async {
            browser.text("#compare-message").await.filter(|t| t.starts_with("Not picked"))
        })
        .await;
    assert_eq!(
        refusal,
        "Not picked: SM_CMP_1 is a twilio event and evt_cmp_2 a stripe one; only events of one provider compare."
    );
    let checked = browser.eval("return document.querySelector(arguments[0]).checked;", json!([pick(&ids[2])])).await;
    assert_eq!(checked, json!(false), "the Twilio event is not ticked");
    assert!(!compare_enabled(browser).await);
}

/// Compared, the two Stripe payloads differ in exactly these paths, the older one "before".
async fn stripe_diff(browser: &Browser, ids: &[String; 4]) {
    browser.click(&pick(&ids[0])).await;
    browser.wait("Compare enabled", || async { compare_enabled(browser).await.then_some(()) }).await;
    browser.click("#compare-open").await;
    let summary = browser
        .wait("the comparison", || async {
            let shown = browser.visible("#compare").await;
            browser.text("#compare-summary").await.filter(|t| shown && !t.is_empty())
        })
        .await;
    assert_eq!(summary, "11 differences: 7 changed, 2 added, 2 removed");
    let before = browser.text("#compare-before").await.unwrap_or_default();
    let after = browser.text("#compare-after").await.unwrap_or_default();
    assert!(before.starts_with(&format!("evt_cmp_1 ({}) · payment_intent.succeeded · received ", ids[0])), "{before}");
    assert!(after.starts_with(&format!("evt_cmp_2 ({}) · payment_intent.succeeded · received ", ids[1])), "{after}");

    let mut rows = diff_rows(browser).await;
    // A long value is cut to 120 characters, the last an ellipsis.
    let description = rows.pop().unwrap();
    assert_eq!(description[..2], ["data.object.description", "changed"]);
    for (cut, letter) in [(&description[2], 'x'), (&description[3], 'y')] {
        assert_eq!(*cut, format!("\"{}…", letter.to_string().repeat(118)));
    }
    let expected = vec![
        diff_row("id", "changed", "\"evt_cmp_1\"", "\"evt_cmp_2\""),
        diff_row("created", "changed", "1700000000", "1700000060"),
        diff_row("data.object.amount", "changed", "2000", "2500"),
        diff_row("data.object.metadata.coupon", "removed", "\"SPRING\"", "—"),
        diff_row("data.object.metadata.order", "added", "—", "\"A-17\""),
        diff_row("data.object.charges[0].paid", "changed", "false", "true"),
        diff_row("data.object.charges[1]", "removed", "{\"id\":\"ch_2\"}", "—"),
        diff_row("data.object.refunds[0]", "added", "—", "\"re_1\""),
        diff_row("data.object.shipping", "changed", "{\"carrier\":\"UPS\"}", "\"none\""),
        diff_row("data.object[\"a.b\"]", "changed", "1", "2"),
    ];
    assert_eq!(rows, expected);

    // README's picture of the diff view: the ticked rows above the comparison.
    browser.eval("document.querySelector('#events-title').scrollIntoView(); return true;", json!([])).await;
    let shot = browser.screenshot("dashboard-diff").await;
    if std::env::var_os("STAGEHOOK_UPDATE_DOCS").is_some() {
        std::fs::copy(&shot, concat!(env!("CARGO_MANIFEST_DIR"), "/docs/diff.png")).unwrap();
    }
}

/// Two Twilio forms, picked with the keyboard, compare field by field.
async fn form_diff(browser: &Browser, ids: &[String; 4]) {
    browser.click("#compare-clear").await;
    assert!(!compare_enabled(browser).await);
    for id in &ids[2..] {
        browser.type_into(&pick(id), " ").await;
    }
    browser.wait("Compare enabled", || async { compare_enabled(browser).await.then_some(()) }).await;
    assert!(!browser.visible("#detail").await, "the space bar on a box does not open its row");
    browser.click("#compare-open").await;
    browser
        .wait("the form comparison", || async {
            browser.text("#compare-before").await.filter(|t| t.starts_with("SM_CMP_1")).map(|_| ())
        })
        .await;
    assert_eq!(browser.text("#compare-summary").await.as_deref(), Some("4 differences: 2 changed, 1 added, 1 removed"));
    let expected = vec![
        diff_row("MessageSid", "changed", "\"SM_CMP_1\"", "\"SM_CMP_2\""),
        diff_row("Body", "changed", "\"hello\"", "\"hello again\""),
        diff_row("SmsStatus", "removed", "\"received\"", "—"),
        diff_row("NumMedia", "added", "—", "\"1\""),
    ];
    assert_eq!(diff_rows(browser).await, expected);
}

/// What no two stored events here show: the same payload, a body that is neither JSON nor a
/// form, a changed root type, a `__proto__` key, and markup in a value (text, never HTML).
async fn diff_edge_cases(browser: &Browser) {
    let compare = "const ev = (id, at, payload, encoding) => ({id, event_id: id, event_type: 't', received_at_ms: at, \
                   payload, payload_encoding: encoding || 'utf8', headers: [['content-type', 'application/json']]}); \
                   showComparison(ev('a', 1, arguments[0], arguments[2]), ev('b', 2, arguments[1], arguments[3])); \
                   const rows = [...document.querySelectorAll('#compare-diff tbody tr')].map(r => [...r.cells].map(c => c.textContent)); \
                   return [document.querySelector('#compare-summary').textContent, \
                           getComputedStyle(document.querySelector('#compare-diff')).display === 'none' ? null : rows, \
                           document.querySelectorAll('#compare-diff img').length];";
    let same = r#"{"x":[1,{"y":null}]}"#;
    assert_eq!(browser.eval(compare, json!([same, same])).await, json!(["no differences", null, 0]));
    assert_eq!(
        browser.eval(compare, json!([same, "AAEC", null, "base64"])).await,
        json!(["Not comparable: b has a binary body, neither JSON nor a form.", null, 0])
    );
    assert_eq!(
        browser.eval(compare, json!(["plain text", same])).await,
        json!(["Not comparable: the body of a is neither JSON nor a form.", null, 0])
    );
    assert_eq!(
        browser.eval(compare, json!(["[1]", same])).await,
        json!(["1 difference: 1 changed, 0 added, 0 removed", [["(the whole payload)", "changed", "[1]", same]], 0])
    );
    let (a, b) = (r#"{"__proto__":{"x":1}}"#, r#"{"__proto__":{"x":"<img src=x>"}}"#);
    assert_eq!(
        browser.eval(compare, json!([a, b])).await,
        json!(["1 difference: 1 changed, 0 added, 0 removed", [["__proto__.x", "changed", "1", "\"<img src=x>\""]], 0])
    );
}

/// The scenario in phases, one async fn each: a debug build gives one async fn's poll a stack
/// frame for every temporary of its body, and the whole scenario in one fn overflows the test
/// thread's stack.
async fn overview_detail_and_actions() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = seeded_server(&app, dir.path()).await;
    let failed = s.store.find_by_event_id("stripe", "evt_refused").unwrap().unwrap().to_string();
    let browser = Browser::start().await;
    browser.goto(&format!("http://{}/?poll=300", s.addr)).await;
    overview_equals_the_api(&s, &browser).await;
    a_new_event_appears(&s, &browser).await;
    let attempts = detail_view(&s, &browser, &failed).await;
    copy_curl_filters_config_and_rejections(&s, &browser).await;
    replays(&s, &browser, &app, &failed, attempts).await;
    // The page obeys its own Content-Security-Policy.
    no_policy_violations(&browser).await;
    browser.quit().await;
    s.stop().await;
}

/// A server with events in several states: processed, failed (the app refuses), a duplicate, a
/// rejection, and a Twilio event held behind an open breaker.
async fn seeded_server(app: &FakeApp, dir: &std::path::Path) -> support::TestServer {
    let mut c = config(dir);
    c.server.instance_id = "dash-1".into();
    c.providers.get_mut("stripe").unwrap().forward_to = vec![app.url("/stripe")];
    // Twilio delivers to a port nobody listens on: its breaker opens after one failure. The
    // socket is bound and never listens, so connections are refused and no one else takes it.
    let dead_socket = tokio::net::TcpSocket::new_v4().unwrap();
    dead_socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead = dead_socket.local_addr().unwrap();
    // Held for the rest of the test process: the server is used until the test ends.
    std::mem::forget(dead_socket);
    c.providers.get_mut("twilio").unwrap().forward_to = vec![format!("http://{dead}/sms")];
    c.retry.strategy = Strategy::Fixed;
    c.retry.max_attempts = 2;
    c.retry.base_delay = HumanDuration(Duration::from_millis(20));
    c.retry.jitter = 0.0;
    c.circuit_breaker.failure_threshold = 1;
    c.circuit_breaker.recovery_timeout = HumanDuration(Duration::from_secs(600));
    // A named endpoint shows by its name, with its own breaker.
    c.providers.insert(
        "github".into(),
        stagehook::providers::github::Settings {
            secret: Some(stagehook::secret::Secret::new("github-secret-0123456789")),
            ..Default::default()
        },
    );
    let s = start(c).await;

    // Seed events in several states: processed, failed (app refuses), a duplicate, a rejection,
    // and a Twilio event stuck behind an open breaker.
    for i in 0..3 {
        assert_eq!(s.stripe(&stripe_event(&format!("evt_ok{i}"))).await.status, 200);
    }
    // Deliveries run concurrently: the scripted refusal must meet evt_refused, not a late evt_ok.
    let processed = |st: serde_json::Value| st["by_status"]["processed"] == 3;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !processed(s.get("/staging/webhooks/stats").await.json()) {
        assert!(std::time::Instant::now() < deadline, "the first events were not delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.script([Reply::status(400)]);
    s.stripe(&stripe_event("evt_refused")).await;
    s.stripe(&stripe_event("evt_ok0")).await;
    s.post(
        "/staging/webhooks/stripe",
        &[("content-type", "application/json"), ("stripe-signature", "t=1,v1=00")],
        b"{}",
    )
    .await;
    let params = [("MessageSid", "SM_DASH"), ("From", "+15005550006"), ("To", "+15005550001"), ("Body", "hello")];
    s.sms(&params).await;
    let settled = |st: serde_json::Value| st["by_status"]["processed"] == 3 && st["by_status"]["failed"] == 1;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !settled(s.get("/staging/webhooks/stats").await.json()) {
        assert!(std::time::Instant::now() < deadline, "events did not settle");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.store.flush().await.unwrap();
    s
}

/// The cards, the breakers and the queue show the API's numbers.
async fn overview_equals_the_api(s: &support::TestServer, browser: &Browser) {
    let stats = s.get("/staging/webhooks/stats").await.json();
    let expected = [
        ("received", stats["total_events"].to_string()),
        // Delivered: processed, less the events stored without a target (none here).
        (
            "processed",
            (stats["by_status"]["processed"].as_u64().unwrap() - stats["stored_only"].as_u64().unwrap()).to_string(),
        ),
        ("failed", stats["by_status"]["failed"].to_string()),
        ("duplicates", stats["duplicates"].to_string()),
        ("rejected", stats["rejected_total"].to_string()),
    ];
    for (card, value) in &expected {
        let sel = format!("[data-card=\"{card}\"] .value");
        browser
            .wait(&format!("card {card} = {value}"), || async {
                (browser.text(&sel).await.as_deref() == Some(value.as_str())).then_some(())
            })
            .await;
    }
    // The store is healthy, but a breaker is open, an event is retrying and one is a dead letter:
    // the pill does not say "ok", it says what needs a look.
    browser
        .wait("the health pill to ask for attention", || async {
            let text = browser.text("#health-status").await.unwrap_or_default();
            (text == "attention: breaker open: twilio · 1 retrying · 1 dead letter").then_some(())
        })
        .await;
    // The header names the instance, as /stats does. This stagehook shares nothing through
    // Redis (`redis` absent or null): no Redis pill. With Redis, the pill says whether it
    // answers; down is a warning while ingest goes on alone, bad when it refuses without it.
    assert_eq!(stats["instance"], "dash-1");
    browser
        .wait("the header to name the instance", || async {
            (browser.text("#instance-label").await.as_deref() == Some("instance dash-1")).then_some(())
        })
        .await;
    assert!(!browser.visible("#redis").await, "no Redis, no pill");
    let pill = "const p = document.querySelector('#redis'); renderInstance(arguments[0]); \
                return [getComputedStyle(p).display !== 'none', p.textContent, p.className];";
    let redis = |state: &str, on_error: &str| {
        let redis = json!({"state": state, "on_error": on_error, "limits": true, "dedup": true});
        json!([{"instance": "dash-1", "redis": redis}])
    };
    assert_eq!(browser.eval(pill, redis("up", "open")).await, json!([true, "redis: up", "pill"]));
    assert_eq!(browser.eval(pill, redis("down", "open")).await, json!([true, "redis: down", "pill warn"]));
    assert_eq!(browser.eval(pill, redis("down", "closed")).await, json!([true, "redis: down", "pill bad"]));
    // Before Redis first answers, the pill waits in the warning style whatever `on_error` says.
    let connecting = json!([true, "redis: connecting", "pill warn"]);
    assert_eq!(browser.eval(pill, redis("connecting", "closed")).await, connecting);
    assert_eq!(browser.eval(pill, redis("connecting", "open")).await, connecting);
    assert_eq!(browser.eval(pill, json!([{"instance": "dash-1", "redis": null}])).await[0], json!(false));
    // The success rate says what it leaves out.
    let note = browser.text("[data-card=\"success-rate\"] .note").await.unwrap_or_default();
    assert!(note.contains("not settled yet"), "{note}");
    // The open breaker, in words.
    browser
        .wait("the twilio breaker open", || async {
            (browser.text(".breaker[data-provider=\"twilio\"] .state").await.as_deref() == Some("open")).then_some(())
        })
        .await;
    assert_eq!(browser.text(".breaker[data-provider=\"stripe\"] .state").await.as_deref(), Some("closed"));
    assert_eq!(browser.text(".breaker[data-provider=\"github\"] .state").await.as_deref(), Some("closed"));
    let row = browser.text("#provider-table tr[data-provider=\"github\"]").await.unwrap_or_default();
    assert!(row.contains("/staging/webhooks/github"), "{row}");
    assert_eq!(
        browser.text("#provider-table tr[data-provider=\"stripe\"] .events").await,
        Some(stats["by_provider"]["stripe"]["events"].to_string())
    );
    let rec = s.get("/staging/webhooks/recovery/stats").await.json();
    assert_eq!(browser.text("#queue-depth").await, Some(rec["queue_depth"].to_string()));
    assert!(browser.count("#throughput-chart *").await > 0, "the chart is drawn");
    // The chart's axes are labelled: events per minute up to the peak, the last hour to now.
    let peak = browser.text("#chart-max").await.unwrap_or_default();
    assert_eq!(peak, format!("(peak {}/min)", browser.text("#chart-ymax").await.unwrap_or_default()));
    assert!(browser.text("#chart-y-axis").await.unwrap_or_default().contains("events / min"));
    assert!(browser.text("#chart-x-end").await.unwrap_or_default().starts_with("now ("));
    // Every rejection code shows whole: the card does not cut it off.
    let rejected = browser.text("[data-card=\"rejected\"] .detail").await.unwrap_or_default();
    assert!(rejected.contains("invalid_signature: 1"), "{rejected}");
    let fits = "const d = document.querySelector('[data-card=\"rejected\"]'); return d.scrollWidth <= d.clientWidth;";
    assert_eq!(browser.eval(fits, json!([])).await, json!(true));
    events_table_says_why_and_when(s, browser).await;
    // The overview is the top of the page: the health pill, the counts, the chart, the breakers.
    browser.eval("window.scrollTo(0, 0); return true;", json!([])).await;
    let shot = browser.screenshot("dashboard-overview").await;
    // README's picture is this one: `STAGEHOOK_UPDATE_DOCS=1 cargo test --test it dashboard`
    // writes it to docs/dashboard.png (never by default: a test run leaves the tree as it was).
    if std::env::var_os("STAGEHOOK_UPDATE_DOCS").is_some() {
        std::fs::copy(&shot, concat!(env!("CARGO_MANIFEST_DIR"), "/docs/dashboard.png")).unwrap();
    }
}

/// The events table shows each event's last error and when its next attempt goes out (for an
/// event held by an open breaker, the probe's time), with the time zone on every time.
async fn events_table_says_why_and_when(s: &support::TestServer, browser: &Browser) {
    let sms = s.store.find_by_event_id("twilio", "SM_DASH").unwrap().unwrap().to_string();
    let refused = s.store.find_by_event_id("stripe", "evt_refused").unwrap().unwrap().to_string();
    let cell = |id: &str, class: &str| format!("#events-table tbody tr[data-id=\"{id}\"] td.{class}");
    let next = browser
        .wait("the held event's next attempt", || async {
            browser.text(&cell(&sms, "next-attempt")).await.filter(|t| t.contains("twilio breaker's probe"))
        })
        .await;
    let zone = browser
        .eval(
            "return new Intl.DateTimeFormat(undefined, {timeZoneName: 'short'}).formatToParts(new Date()).find(p => p.type === 'timeZoneName').value;",
            json!([]),
        )
        .await;
    let zone = zone.as_str().unwrap().to_string();
    assert!(next.ends_with(&zone), "{next} names the zone {zone}");
    let received = browser.text(&cell(&refused, "received-at")).await.unwrap_or_default();
    assert!(received.ends_with(&zone), "{received} names the zone {zone}");
    let error = browser.text(&cell(&refused, "last-error")).await.unwrap_or_default();
    assert!(error.starts_with("HTTP 400"), "{error}");
    assert_eq!(browser.text(&cell(&refused, "next-attempt")).await.as_deref(), Some("—"));
    // The detail says it too.
    browser.click(&format!("#events-table tbody tr[data-id=\"{sms}\"]")).await;
    browser
        .wait("the held event's detail", || async {
            let timings = browser.text("#detail-timings").await.unwrap_or_default();
            timings.contains("next attempt: waits for the twilio breaker's probe").then_some(())
        })
        .await;
}

/// A new event appears without a reload.
async fn a_new_event_appears(s: &support::TestServer, browser: &Browser) {
    let fresh = s.post_stripe_event("evt_live_row").await;
    let row = format!("#events-table tbody tr[data-id=\"{fresh}\"]");
    browser.wait("the new row", || async { (browser.count(&row).await == 1).then_some(()) }).await;
}

/// The detail of the failed event; returns its number of attempts.
async fn detail_view(s: &support::TestServer, browser: &Browser, failed: &str) -> usize {
    let e = s.get(&format!("/staging/webhooks/events/{failed}")).await.json();
    let row = format!("#events-table tbody tr[data-id=\"{failed}\"]");
    browser.wait("the failed row", || async { (browser.count(&row).await == 1).then_some(()) }).await;
    browser.click(&row).await;
    browser
        .wait("the detail view", || async {
            let id =
                browser.eval("const d = document.querySelector('#detail'); return d && d.dataset.id;", json!([])).await;
            let status = browser.text("#detail-status").await.unwrap_or_default();
            (id == json!(failed) && browser.visible("#detail").await && status.contains("failed")).then_some(())
        })
        .await;
    let attempts = e["history"].as_array().unwrap().len();
    assert_eq!(browser.count("#detail-history li").await, attempts);
    assert!(browser.text("#detail-payload").await.unwrap().contains("evt_refused"));
    browser.screenshot("dashboard-detail").await;
    attempts
}

async fn copy_curl_filters_config_and_rejections(s: &support::TestServer, browser: &Browser) {
    // Copy curl shows the command that re-sends the event, signed afresh.
    browser.click("#copy-curl").await;
    browser
        .wait("the curl command", || async {
            let text = browser.text("#curl-command").await.unwrap_or_default();
            (browser.visible("#curl-command").await && text.contains("/staging/webhooks/stripe")).then_some(text)
        })
        .await;
    assert!(browser.text("#curl-command").await.unwrap().starts_with("curl"));

    // Filters narrow the list through the API: by status, and by event id.
    browser.click("#filter-status option[value=\"failed\"]").await;
    let only = |n: usize, status: &'static str| {
        let browser = &browser;
        async move {
            let statuses = browser
                .eval(
                    "return [...document.querySelectorAll('#events-table tbody tr td.status')].map(e => e.textContent.trim());",
                    json!([]),
                )
                .await;
            let statuses: Vec<String> = serde_json::from_value(statuses).unwrap_or_default();
            (statuses.len() == n && statuses.iter().all(|s| s == status || status.is_empty())).then_some(())
        }
    };
    browser.wait("only the failed event", || only(1, "failed")).await;
    browser.click("#filter-status option[value=\"\"]").await;
    browser.type_into("#filter-search", "evt_ok1").await;
    browser.wait("only evt_ok1", || only(1, "processed")).await;
    browser
        .eval(
            "const e = document.querySelector('#filter-search'); e.value = ''; e.dispatchEvent(new Event('input'));",
            json!([]),
        )
        .await;
    browser.wait("every event again", || only(6, "")).await;
    // The status counts are filters too.
    browser.click("[data-card=\"failed\"]").await;
    browser.wait("only the failed event, from its count", || only(1, "failed")).await;
    browser.click("[data-card=\"received\"]").await;
    browser.wait("every event, from the total", || only(6, "")).await;

    // The configuration report and the rejection log, as the API gives them.
    let report = s.get("/staging/webhooks/config/validate").await.json();
    let findings = report["findings"].as_array().unwrap().len();
    browser
        .wait("the config report", || async { (browser.count("#config-report li").await == findings).then_some(()) })
        .await;
    let rejections = s.get("/staging/webhooks/rejections").await.json()["rejections"].as_array().unwrap().len();
    assert_eq!(rejections, 1);
    browser
        .wait("the rejection log", || async { (browser.count("#rejections tbody tr").await == 1).then_some(()) })
        .await;
    assert!(browser.text("#rejections tbody tr").await.unwrap().contains("invalid_signature"));
    // The likely cause, as the log keeps it: the seeded request's secret is nobody's.
    let cause = browser.text("#rejections tbody tr td.diagnosis").await.unwrap_or_default();
    assert!(cause.starts_with("secret_mismatch") && cause.contains("sha256:"), "{cause}");
    browser.eval("document.querySelector('#rejections-title').scrollIntoView(); return true;", json!([])).await;
    let shot = browser.screenshot("dashboard-rejections").await;
    // README's picture of a diagnosis: written only with STAGEHOOK_UPDATE_DOCS, as above.
    if std::env::var_os("STAGEHOOK_UPDATE_DOCS").is_some() {
        std::fs::copy(&shot, concat!(env!("CARGO_MANIFEST_DIR"), "/docs/rejections.png")).unwrap();
    }
}

async fn replays(s: &support::TestServer, browser: &Browser, app: &FakeApp, failed: &str, attempts: usize) {
    // Replay all failed asks first, with the count; cancelling sends nothing.
    browser.click("#replay-failed").await;
    browser.wait("the confirm step", || async { browser.visible("#confirm").await.then_some(()) }).await;
    assert_eq!(browser.text("#confirm-count").await.as_deref(), Some("1"));
    browser.click("#confirm-no").await;
    assert!(!browser.visible("#confirm").await);
    let unchanged = s.get(&format!("/staging/webhooks/events/{failed}")).await.json();
    assert_eq!(unchanged["history"].as_array().unwrap().len(), attempts);

    app.set_default(Reply::status(200));
    browser.click("#replay-one").await;
    browser
        .wait("the replayed attempt in the timeline", || async {
            (browser.count("#detail-history li").await == attempts + 1).then_some(())
        })
        .await;
    let after = s.get(&format!("/staging/webhooks/events/{failed}")).await.json();
    assert_eq!(after["history"].as_array().unwrap().len(), attempts + 1);
    browser
        .wait("the detail to say processed", || async {
            browser.text("#detail-status").await.filter(|t| t.contains("processed")).map(|_| ())
        })
        .await;

    // Replay all failed, confirmed: another refused event is delivered again.
    app.script([Reply::status(400)]);
    let second = s.post_stripe_event("evt_refused_too").await;
    browser
        .wait("the failed count", || async {
            let n = browser.eval("return document.querySelector('#confirm-count').dataset.failed;", json!([])).await;
            (n == json!("1")).then_some(())
        })
        .await;
    browser.click("#replay-failed").await;
    browser.wait("the confirm step", || async { browser.visible("#confirm").await.then_some(()) }).await;
    browser.click("#confirm-yes").await;
    browser
        .wait("the bulk replay result", || async {
            browser.text("#replay-result").await.filter(|t| t.contains("replayed 1")).map(|_| ())
        })
        .await;
    let mut delivered = false;
    for _ in 0..200 {
        let e = s.get(&format!("/staging/webhooks/events/{second}")).await.json();
        if e["status"] == "processed" && e["history"].as_array().unwrap().len() == 2 {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(delivered, "the confirmed bulk replay delivered the dead letter");
}

const DASHBOARD_TOKEN: &str = "dashboard-token-0123456789";

async fn admin_token_prompt() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = support::forwarding(dir.path(), "stripe", app.url("/stripe"));
    c.server.admin_token = Some(stagehook::secret::Secret::new(DASHBOARD_TOKEN));
    let s = start(c).await;
    let id = s.post_stripe_event("evt_tok").await;
    app.wait_for(1).await;
    // The page itself carries its own policy and no data.
    let page = s.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-security-policy").unwrap().starts_with("default-src 'self'"));
    assert!(page.text().contains("/dashboard/app.js"));
    support::assert_security_headers_except_csp(&page);

    let browser = Browser::start().await;
    browser.goto(&format!("http://{}/?poll=300", s.addr)).await;
    sign_in(&browser).await;
    let session = signed_in_and_replaying(&s, &browser, &id).await;
    logs_out(&s, &browser, &session).await;
    no_policy_violations(&browser).await;
    browser.quit().await;
    s.stop().await;
}

/// The prompt refuses a wrong token, takes the right one, and shows the data behind it.
async fn sign_in(browser: &Browser) {
    browser.wait("the token prompt", || async { browser.visible("#login").await.then_some(()) }).await;
    assert!(!browser.visible("#logout").await, "no session yet");
    browser.type_into("#login-token", "not-the-token").await;
    browser.click("#login-submit").await;
    browser
        .wait("the refusal", || async { browser.text("#login-error").await.filter(|t| !t.is_empty()).map(|_| ()) })
        .await;
    browser.eval("document.querySelector('#login-token').value = '';", json!([])).await;
    browser.type_into("#login-token", DASHBOARD_TOKEN).await;
    browser.click("#login-submit").await;
    browser
        .wait("the data behind the prompt", || async {
            (browser.text("[data-card=\"received\"] .value").await.as_deref() == Some("1")).then_some(())
        })
        .await;
    assert!(!browser.visible("#login").await);
    browser.wait("the log-out control", || async { browser.visible("#logout").await.then_some(()) }).await;
    browser.screenshot("dashboard-signed-in").await;
}

/// Signed in, a replay goes through; returns the session cookie (`name=value`), which is a
/// random id, not the token, and which scripts cannot read.
async fn signed_in_and_replaying(s: &support::TestServer, browser: &Browser, id: &str) -> String {
    let row = format!("#events-table tbody tr[data-id=\"{id}\"]");
    browser.wait("the event's row", || async { (browser.count(&row).await == 1).then_some(()) }).await;
    browser.click(&row).await;
    browser
        .wait("one attempt in the detail", || async { (browser.count("#detail-history li").await == 1).then_some(()) })
        .await;
    browser.click("#replay-one").await;
    browser
        .wait("the replayed attempt", || async { (browser.count("#detail-history li").await == 2).then_some(()) })
        .await;
    assert_eq!(browser.text("#detail-message").await.as_deref(), Some("replayed (1)"));

    let cookies = browser.eval("return document.cookie;", json!([])).await;
    assert!(!cookies.as_str().unwrap_or("").contains("stagehook_session"), "HttpOnly: {cookies}");
    let all = browser.cookies().await;
    let cookie = all.iter().find(|c| c["name"] == "stagehook_session").unwrap_or_else(|| panic!("{all:?}"));
    assert_eq!((cookie["httpOnly"].as_bool(), cookie["sameSite"].as_str()), (Some(true), Some("Strict")), "{cookie}");
    let value = cookie["value"].as_str().unwrap();
    assert!(!value.is_empty() && !value.contains(DASHBOARD_TOKEN), "{cookie}");
    let session = format!("stagehook_session={value}");
    let r = support::request(s.addr, "GET", "/staging/webhooks/events", &[("cookie", &session)], b"").await;
    assert_eq!(r.status, 200, "the browser's session lets the API in");
    session
}

/// "Log out" ends the session on the server and brings the prompt back.
async fn logs_out(s: &support::TestServer, browser: &Browser, session: &str) {
    browser.click("#logout").await;
    browser.wait("the prompt after logout", || async { browser.visible("#login").await.then_some(()) }).await;
    assert!(!browser.visible("#logout").await);
    assert!(!browser.visible("#app").await, "no data shows after logout");
    let r = support::request(s.addr, "GET", "/staging/webhooks/events", &[("cookie", session)], b"").await;
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"), "the old session is refused");
    let all = browser.cookies().await;
    assert!(all.iter().all(|c| c["name"] != "stagehook_session"), "the browser forgot it: {all:?}");
    browser.screenshot("dashboard-logged-out").await;
}

/// The page obeyed its own Content-Security-Policy: the browser reported no refusal.
async fn no_policy_violations(browser: &Browser) {
    let console = browser.console().await;
    let violations: Vec<&String> =
        console.iter().filter(|m| m.contains("Content Security Policy") || m.contains("Refused to")).collect();
    assert!(violations.is_empty(), "{violations:#?}");
}
