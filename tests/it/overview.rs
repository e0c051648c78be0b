//! The dashboard's overview says only what is so, in real headless Chromium: the health pill
//! names a stagehook that can take no webhook, an event stored without a target is never called
//! delivered, the provider table adds up to the cards (alert notifications included), the first
//! paint holds no placeholder, an empty stagehook says what to do next, and the page asks for
//! no resource that is missing. Screenshots go to `target/screenshots/`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::fake_app::FakeApp;
use crate::support::{self, config, start, stripe_event, until};
use crate::webdriver::Browser;

/// Bounded in time and on the heap, as in `dashboard.rs`.
async fn bounded(scenario: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(240), scenario).await.expect("the browser scenario finished in 4 min");
}

/// A configuration in which no provider has its secret: every ingest endpoint answers 503.
fn no_provider(dir: &std::path::Path) -> stagehook::config::Config {
    let mut c = config(dir);
    c.providers.clear();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_when_no_provider_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(no_provider(dir.path())).await;
    assert_eq!(s.stripe(&stripe_event("evt_none")).await.code(), "provider_not_configured");
    let h = s.get("/staging/webhooks/test").await.json();
    assert_eq!(
        (h["status"].as_str(), h["reason_code"].as_str()),
        (Some("degraded"), Some("no_provider_configured")),
        "{h}"
    );
    assert!(h["reason"].as_str().unwrap_or("").starts_with("no provider configured"), "{h}");
    // The probes are about the store and shutdown: an unconfigured stagehook still runs.
    assert_eq!(s.get("/readyz").await.status, 200);
    s.stop().await;

    // One configured provider is enough: healthy, and no code.
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let h = s.get("/staging/webhooks/test").await.json();
    assert_eq!((h["status"].as_str(), &h["reason_code"]), (Some("ok"), &Value::Null), "{h}");
    s.stop().await;
}

/// Events without a target are counted apart, per provider and in all, and the count survives a
/// restart; an event with a target is not among them, and a replay with a target takes an
/// event out of the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_events_stored_without_a_target() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = support::forwarding(dir.path(), "stripe", app.url("/stripe"));
    c.providers.get_mut("stripe").unwrap().forward_to.clear();
    let s = start(c).await;
    assert_eq!(s.stripe(&stripe_event("evt_kept_1")).await.status, 200);
    assert_eq!(s.stripe(&stripe_event("evt_kept_2")).await.status, 200);
    s.store.flush().await.unwrap();
    let st = s.get("/staging/webhooks/stats").await.json();
    assert_eq!((&st["stored_only"], &st["by_provider"]["stripe"]["stored_only"]), (&json!(2), &json!(2)), "{st}");
    assert_eq!(st["by_status"]["processed"], 2, "still processed: stored is all there was to do");
    s.stop().await;

    // After a restart, with a target now: the count is still there, and a delivered event is
    // not in it.
    let s = start(support::forwarding(dir.path(), "stripe", app.url("/stripe"))).await;
    assert_eq!(s.get("/staging/webhooks/stats").await.json()["stored_only"], 2);
    let id = s.post_stripe_event("evt_sent").await;
    support::wait_status(&s, &id, "processed").await;
    let st = s.get("/staging/webhooks/stats").await.json();
    assert_eq!((&st["stored_only"], &st["by_status"]["processed"]), (&json!(2), &json!(3)), "{st}");
    // Replayed to the target it now has, a kept event is delivered: no longer stored only.
    let kept = s.store.find_by_event_id("stripe", "evt_kept_1").unwrap().unwrap().to_string();
    let r = s.post_json(&format!("/staging/webhooks/events/{kept}/replay"), b"{}").await;
    assert_eq!(r.status, 200, "{}", r.text());
    support::wait_status(&s, &kept, "processed").await;
    until("the replayed event to leave the count", || async {
        (s.get("/staging/webhooks/stats").await.json()["stored_only"] == 1).then_some(())
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_pill_says_no_provider_is_configured() {
    bounded(Box::pin(async {
        let dir = tempfile::tempdir().unwrap();
        let s = start(no_provider(dir.path())).await;
        let browser = Browser::start().await;
        browser.goto(&format!("http://{}/?poll=300", s.addr)).await;
        let word = browser
            .wait("the health pill", || async {
                browser.text("#health-status").await.filter(|t| !t.is_empty() && !t.contains("loading") && t != "…")
            })
            .await;
        assert!(word.contains("no provider configured"), "{word}");
        let class = browser.eval("return document.querySelector('#health').className;", json!([])).await;
        assert!(class.as_str().unwrap_or("").contains("bad"), "red, not green: {class}");
        browser.screenshot("overview-no-provider").await;
        browser.quit().await;
        s.stop().await;
    }))
    .await;
}

/// One event kept without a target: "stored (no target)", never "delivered", and no success
/// rate while nothing had a target to succeed at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stored_without_a_target_is_not_called_delivered() {
    bounded(Box::pin(async {
        let dir = tempfile::tempdir().unwrap();
        let s = start(config(dir.path())).await;
        assert_eq!(s.stripe(&stripe_event("evt_stored")).await.status, 200);
        let browser = Browser::start().await;
        browser.goto(&format!("http://{}/?poll=300", s.addr)).await;
        browser
            .wait("the event counted", || async {
                browser.text("[data-card=\"received\"] .value").await.filter(|t| t == "1")
            })
            .await;
        let rate = browser.text("[data-card=\"success-rate\"]").await.unwrap_or_default();
        assert!(!rate.contains("delivered") || rate.contains("0 of 0"), "{rate}");
        assert!(!rate.contains("100"), "{rate}");
        assert!(rate.contains("1 stored (no target)"), "{rate}");
        assert_eq!(browser.text("[data-card=\"stored\"] .value").await.as_deref(), Some("1"));
        assert_eq!(browser.text("[data-card=\"processed\"] .value").await.as_deref(), Some("0"));
        browser.quit().await;
        s.stop().await;
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_table_adds_up_to_the_cards() {
    bounded(Box::pin(table_adds_up())).await;
}

/// A stored-only Stripe event and the alert notification it leads to (a `no_events` rule fires
/// once the clock moves past its silence): the cards count both, and so does the table.
async fn table_adds_up() {
    let slack = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    crate::dashboard::no_events_alert(&mut c, &slack);
    let s = start(c).await;
    assert_eq!(s.stripe(&stripe_event("evt_sum")).await.status, 200);
    support::two_evaluations(&s).await;
    s.clock.advance(61_000);
    slack.wait_for(1).await;
    until("the notification delivered", || async {
        let st = s.get("/staging/webhooks/stats").await.json();
        let by = &st["by_status"];
        (st["total_events"] == 2 && by["processed"] == 2).then_some(())
    })
    .await;

    let browser = Browser::start().await;
    browser.goto(&format!("http://{}/?poll=300", s.addr)).await;
    browser
        .wait("the overview", || async { browser.text("[data-card=\"received\"] .value").await.filter(|t| t == "2") })
        .await;
    // Each card against the sum of its column: the table's cells are read in the page.
    let sums = "const col = (c) => [...document.querySelectorAll(`#provider-table tbody td.${c}`)] \
                .reduce((a, td) => a + Number(td.textContent), 0); \
                const card = (c) => { const v = document.querySelector(`[data-card=\"${c}\"] .value`); \
                  return v ? Number(v.textContent) : null; }; \
                return [['received', 'events'], ['processed', 'processed'], ['stored', 'stored'], \
                        ['pending', 'pending'], ['retrying', 'retrying'], ['failed', 'failed'], \
                        ['duplicates', 'duplicates']].map(([k, c]) => [k, card(k), col(c)]);";
    let rows = browser.eval(sums, json!([])).await;
    for row in rows.as_array().unwrap() {
        assert_eq!(row[1], row[2], "card {} against its column: {rows}", row[0]);
    }
    assert_eq!(rows[0][1], 2, "{rows}");
    let lane = browser.text("#provider-table tr[data-provider=\"notify.ops\"]").await.unwrap_or_default();
    assert!(lane.contains("notifier"), "the notifier's row says what it is: {lane}");
    browser.eval("window.scrollTo(0, 0); return true;", json!([])).await;
    browser.screenshot("overview-adds-up").await;
    browser.quit().await;
    s.stop().await;
}

/// What the browser shows at `DOMContentLoaded`, before the page's own script has fetched
/// anything: a script registered before the page's records it (its listener runs first).
const FIRST_PAINT: &str = "document.addEventListener('DOMContentLoaded', () => { \
     const visible = (e) => e.getClientRects().length > 0; \
     window.firstPaint = [...document.querySelectorAll('header *, main *')] \
       .filter((e) => e.children.length === 0 && visible(e)).map((e) => e.textContent.trim()); \
     window.firstPaintText = document.body.innerText; });";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_paint_shows_no_placeholder() {
    bounded(Box::pin(async {
        let dir = tempfile::tempdir().unwrap();
        let s = start(config(dir.path())).await;
        assert_eq!(s.stripe(&stripe_event("evt_paint")).await.status, 200);
        let browser = Browser::start().await;
        browser.on_new_document(FIRST_PAINT).await;
        browser.goto(&format!("http://{}/?poll=300", s.addr)).await;
        let first = browser.eval("return window.firstPaint;", json!([])).await;
        let texts: Vec<String> = serde_json::from_value(first).unwrap();
        assert!(!texts.is_empty(), "the first paint was recorded");
        let placeholders: Vec<&String> = texts.iter().filter(|t| t.as_str() == "–" || t.as_str() == "…").collect();
        assert!(placeholders.is_empty(), "placeholders at first paint: {placeholders:?} in {texts:?}");
        let text = browser.eval("return window.firstPaintText;", json!([])).await;
        assert!(!text.as_str().unwrap_or("").contains("instance …"), "{text}");
        // The loading state is explicit, and replaced once the data is in.
        assert!(text.as_str().unwrap_or("").contains("loading"), "{text}");
        browser
            .wait("the loading state replaced", || async {
                let t = browser.eval("return document.querySelector('header').innerText + document.querySelector('#overview-title').parentElement.innerText;", json!([])).await;
                let t = t.as_str().unwrap_or("").to_string();
                (!t.contains("loading") && t.contains("instance ")).then_some(())
            })
            .await;
        browser.quit().await;
        s.stop().await;
    }))
    .await;
}

/// No event yet: the table and the chart say so, and what to do next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_stagehook_says_what_to_do_next() {
    bounded(Box::pin(async {
        let dir = tempfile::tempdir().unwrap();
        let s = start(config(dir.path())).await;
        let browser = Browser::start().await;
        browser.goto(&format!("http://{}/?poll=300", s.addr)).await;
        let empty = browser
            .wait("the events table's empty state", || async {
                browser.text("#events-table tbody").await.filter(|t| !t.is_empty())
            })
            .await;
        assert!(empty.starts_with("No events yet"), "{empty}");
        assert!(empty.contains("stagehook send stripe"), "{empty}");
        let chart = browser
            .wait("the chart's empty state", || async { browser.text("#chart-max").await.filter(|t| !t.is_empty()) })
            .await;
        assert!(!chart.contains("peak"), "{chart}");
        assert!(chart.contains("no events"), "{chart}");
        let refused = browser
            .wait("the rejection log's empty state", || async {
                browser.text("#rejections tbody").await.filter(|t| !t.is_empty())
            })
            .await;
        assert!(refused.starts_with("No request refused yet"), "{refused}");
        browser.screenshot("overview-empty").await;
        browser.eval("document.querySelector('#events-title').scrollIntoView(); return true;", json!([])).await;
        browser.screenshot("overview-empty-events").await;
        // The first event replaces both.
        assert_eq!(s.stripe(&stripe_event("evt_first")).await.status, 200);
        browser
            .wait("the peak", || async { browser.text("#chart-max").await.filter(|t| t == "(peak 1/min)").map(|_| ()) })
            .await;
        assert!(!browser.text("#events-table tbody").await.unwrap_or_default().contains("No events yet"));
        browser.quit().await;
        s.stop().await;
    }))
    .await;
}

/// Every resource the page asks for is there: the favicon too, which the browser asks for by
/// itself; its console reports no failed load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_requests_no_missing_resource() {
    bounded(Box::pin(async {
        let dir = tempfile::tempdir().unwrap();
        let s = start(config(dir.path())).await;
        let browser = Browser::start().await;
        browser.goto(&format!("http://{}/?poll=300", s.addr)).await;
        browser
            .wait("the overview", || async {
                browser.text("[data-card=\"received\"] .value").await.filter(|t| t == "0")
            })
            .await;
        // The favicon is fetched after the load, on its own: wait until the browser has it, as
        // the page's own icon or as the failed load of /favicon.ico.
        let icon = "const l = document.querySelector('link[rel~=\"icon\"]'); return l ? l.href : null;";
        let href = browser.eval(icon, json!([])).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut console = Vec::new();
        let failed = loop {
            console.extend(browser.console().await);
            let failed: Vec<&String> = console.iter().filter(|m| m.contains("Failed to load resource")).collect();
            if !failed.is_empty() || href.is_string() {
                break failed;
            }
            assert!(std::time::Instant::now() < deadline, "no icon, and no failed load either: {console:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(failed.is_empty(), "{failed:#?}");
        let href = href.as_str().unwrap().to_string();
        let loaded = browser
            .eval(
                "return new Promise((ok) => { const i = new Image(); i.onload = () => ok(i.naturalWidth > 0); \
                 i.onerror = () => ok(false); i.src = arguments[0]; });",
                json!([href]),
            )
            .await;
        assert_eq!(loaded, json!(true), "the icon {href} loads");
        let console = browser.console().await;
        assert!(console.iter().all(|m| !m.contains("Failed to load resource")), "{console:#?}");
        browser.quit().await;
        s.stop().await;
    }))
    .await;
}
