//! `stagehook check-app` against real fake apps on loopback: one that verifies Stripe, Twilio
//! and GitHub signatures as their SDKs do (on the raw body) and is idempotent, one that answers
//! 200 to everything, one that fails on a repeated event id, and a slow one. The binary is run
//! as a user runs it, for its exit codes, its text and its `--json`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::Value;
use warp::Filter;

use crate::support::{self, now_s, run_binary_async, STRIPE_SECRET, TWILIO_TOKEN};

const GITHUB_SECRET: &str = "github-check-app-secret";

/// How a fake app answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Habit {
    /// Verifies as the providers' SDKs do, and answers 200 to an event it has seen.
    Verifies,
    /// 200 to everything.
    AcceptsAll,
    /// Verifies, but answers 500 to an event id it has seen.
    FailsOnRepeat,
}

struct App {
    addr: SocketAddr,
    /// Every `X-Stagehook-Check` received, in order.
    checks: Arc<Mutex<Vec<String>>>,
}

impl App {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// stripe-node's `constructEvent`: the `t` and every `v1` of `Stripe-Signature`, HMAC-SHA256 of
/// `t.body` compared in constant time, and `t` within 300 s of now.
fn verify_stripe(headers: &[(String, String)], body: &[u8]) -> Result<String, String> {
    let sig = header(headers, "stripe-signature").ok_or("No stripe-signature header value was provided.")?;
    let mut t = None;
    let mut v1 = Vec::new();
    for part in sig.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1.push(v.to_string()),
            _ => {}
        }
    }
    let t = t.ok_or("Unable to extract timestamp and signatures from header")?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(STRIPE_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let ok = v1
        .iter()
        .filter_map(|s| hex::decode(s).ok())
        .any(|s| s.len() == expected.len() && s.iter().zip(expected.iter()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0);
    if !ok {
        return Err("No signatures found matching the expected signature for payload".into());
    }
    if (now_s() - t).abs() > 300 {
        return Err("Timestamp outside the tolerance zone".into());
    }
    let event: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(event["id"].as_str().unwrap_or_default().to_string())
}

/// twilio-node's `validateRequest`: the URL the request reached and its sorted form parameters.
fn verify_twilio(url: &str, headers: &[(String, String)], body: &[u8]) -> Result<String, String> {
    let sig = header(headers, "x-twilio-signature").ok_or("missing X-Twilio-Signature")?;
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if support::twilio_signature(TWILIO_TOKEN, url, &pairs) != sig {
        return Err("invalid Twilio signature".into());
    }
    Ok(params.iter().find(|(k, _)| k == "MessageSid").map(|(_, v)| v.clone()).unwrap_or_default())
}

/// @octokit/webhooks-methods' `verify`, with the delivery id as the event's id.
fn verify_github(headers: &[(String, String)], body: &[u8]) -> Result<String, String> {
    crate::sdk_github::verify(headers, body, GITHUB_SECRET, now_s())?;
    Ok(header(headers, "x-github-delivery").unwrap_or_default().to_string())
}

/// A fake app at `/stripe`, `/sms` and `/github`; each answer waits `delay`.
async fn start_app(habit: Habit, delay: Duration) -> App {
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let checks: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let marks = checks.clone();
    let route = warp::post().and(warp::path::full()).and(warp::header::headers_cloned()).and(warp::body::bytes()).then(
        move |path: warp::path::FullPath, headers: warp::http::HeaderMap, body: Bytes| {
            let (seen, marks) = (seen.clone(), marks.clone());
            async move {
                let headers: Vec<(String, String)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                    .collect();
                marks.lock().push(header(&headers, "x-stagehook-check").unwrap_or("").to_string());
                tokio::time::sleep(delay).await;
                let reply =
                    |status: u16, text: String| warp::http::Response::builder().status(status).body(text).unwrap();
                if habit == Habit::AcceptsAll {
                    // Markup in its answer: the dashboard shows it as text.
                    return reply(200, "<b>ok</b>".into());
                }
                let host = header(&headers, "host").unwrap_or_default().to_string();
                let verified = match path.as_str() {
                    "/stripe" => verify_stripe(&headers, &body),
                    "/sms" => verify_twilio(&format!("http://{host}/sms"), &headers, &body),
                    "/github" => verify_github(&headers, &body),
                    other => Err(format!("no route {other}")),
                };
                match verified {
                    Err(e) => reply(400, e),
                    Ok(id) if !seen.lock().insert(id.clone()) && habit == Habit::FailsOnRepeat => {
                        reply(500, format!("duplicate key value violates unique constraint: {id}"))
                    }
                    Ok(id) => reply(200, format!("handled {id}")),
                }
            }
        },
    );
    tokio::spawn(warp::serve(route).incoming(listener).run());
    App { addr, checks }
}

/// A configuration with Stripe forwarding to the app, Twilio's built-in endpoint and a GitHub
/// endpoint `gh` (reached with `--target`).
fn write_config(dir: &std::path::Path, app: &App) -> String {
    let extra = format!(
        "forward_to = [\"{}\"]\n\n[providers.twilio]\nauth_token = \"{TWILIO_TOKEN}\"\n\n[providers.gh]\nkind = \"github\"\nsecret = \"{GITHUB_SECRET}\"\n\n[providers.team]\nkind = \"slack\"\nsecret = \"8f742231b10e8888abcd99yyyzzz85a5\"\n",
        app.url("/stripe")
    );
    support::write_config(dir, &extra).display().to_string()
}

async fn check_app(config: &str, args: &[&str]) -> (i32, String) {
    let mut all = vec!["check-app", "--config", config];
    all.extend_from_slice(args);
    run_binary_async(&all).await
}

fn outcomes(report: &Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["outcome"].as_str().unwrap().to_string()))
        .collect()
}

fn outcome<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name}: {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_verifies_properly_passes_every_check_that_applies() {
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(Habit::Verifies, Duration::ZERO).await;
    let config = write_config(dir.path(), &app);

    let (code, out) = check_app(&config, &["stripe", "--json"]).await;
    let stripe: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(code, 0, "{out}");
    assert_eq!((stripe["ok"].as_bool(), stripe["failed"].as_u64()), (Some(true), Some(0)), "{out}");
    let expected = [
        ("accepts_valid", "pass"),
        ("refuses_wrong_secret", "pass"),
        ("refuses_unsigned", "pass"),
        ("refuses_modified_body", "pass"),
        ("accepts_exact_bytes", "pass"),
        ("refuses_stale", "pass"),
        ("refuses_wrong_url", "not_applicable"),
        ("idempotent_duplicate", "pass"),
        ("tolerates_order", "pass"),
        ("answers_in_time", "not_applicable"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(outcomes(&stripe), expected, "{out}");
    // Where no timeout is published, the check says so rather than pass.
    assert_eq!(outcome(&stripe, "answers_in_time")["reason"], "Stripe publishes no delivery timeout");
    assert_eq!(outcome(&stripe, "refuses_wrong_url")["reason"], "Stripe's signature does not cover the URL");
    // The order check sent one subscription's deleted, updated and created events, in that order.
    let order = outcome(&stripe, "tolerates_order");
    let notes: Vec<&str> =
        order["exchanges"].as_array().unwrap().iter().map(|e| e["sent"]["note"].as_str().unwrap()).collect();
    assert_eq!(notes.len(), 3, "{order}");
    let sub = notes[0].rsplit(' ').next().unwrap();
    assert!(sub.starts_with("sub_"), "{notes:?}");
    for (note, kind) in notes.iter().zip(["deleted", "updated", "created"]) {
        assert_eq!(*note, format!("customer.subscription.{kind} for {sub}"));
    }
    // What was sent is redacted: the signature shortened, never whole.
    let sent = &outcome(&stripe, "accepts_valid")["exchanges"][0]["sent"];
    let signature = sent["headers"].as_array().unwrap().iter().find(|h| h[0] == "stripe-signature").unwrap();
    assert!(signature[1].as_str().unwrap().contains("(redacted, "), "{sent}");
    assert!(!signature[1].as_str().unwrap().contains("v1="), "{sent}");
    assert_eq!(outcome(&stripe, "accepts_valid")["exchanges"][0]["answered"]["status"], 200);
    // Every request named its check.
    assert!(app.checks.lock().iter().all(|c| !c.is_empty()), "{:?}", app.checks.lock());
    assert!(app.checks.lock().contains(&"refuses_stale".to_string()));

    let (code, out) = check_app(&config, &["twilio", "--target", &app.url("/sms"), "--json"]).await;
    let twilio: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(code, 0, "{out}");
    assert_eq!(outcome(&twilio, "refuses_wrong_url")["outcome"], "pass", "{out}");
    assert_eq!(outcome(&twilio, "accepts_exact_bytes")["outcome"], "pass", "{out}");
    assert_eq!(outcome(&twilio, "refuses_stale")["outcome"], "not_applicable", "{out}");

    let (code, out) = check_app(&config, &["gh", "--target", &app.url("/github")]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("pass  answers_in_time"), "{out}");
    assert!(out.contains("n/a   refuses_stale          GitHub signs no timestamp"), "{out}");
    assert!(out.contains("0 failed"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_accepts_everything_fails_the_refusals_with_their_fix() {
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(Habit::AcceptsAll, Duration::ZERO).await;
    let config = write_config(dir.path(), &app);
    let (code, out) = check_app(&config, &["stripe", "--json"]).await;
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], false);
    let failed: Vec<String> = outcomes(&report).into_iter().filter(|(_, o)| o == "fail").map(|(n, _)| n).collect();
    assert_eq!(failed, ["refuses_wrong_secret", "refuses_unsigned", "refuses_modified_body", "refuses_stale"], "{out}");
    assert_eq!(
        outcome(&report, "refuses_unsigned")["fix"],
        "your handler accepts requests without a valid signature: verify with the raw body and the endpoint secret"
    );
    assert_eq!(outcome(&report, "refuses_unsigned")["exchanges"][0]["answered"]["body"], "<b>ok</b>");

    let (code, text) = check_app(&config, &["stripe"]).await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("FAIL  refuses_unsigned"), "{text}");
    assert!(text.contains("fix: your handler accepts requests without a valid signature"), "{text}");
    assert!(text.contains("4 failed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_fails_on_a_repeated_event_fails_idempotent_duplicate_alone() {
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(Habit::FailsOnRepeat, Duration::ZERO).await;
    let config = write_config(dir.path(), &app);
    let (code, out) = check_app(&config, &["stripe", "--json"]).await;
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let failed: Vec<String> = outcomes(&report).into_iter().filter(|(_, o)| o == "fail").map(|(n, _)| n).collect();
    assert_eq!(failed, ["idempotent_duplicate"], "{out}");
    let check = outcome(&report, "idempotent_duplicate");
    let statuses: Vec<&Value> =
        check["exchanges"].as_array().unwrap().iter().map(|e| &e["answered"]["status"]).collect();
    assert_eq!(statuses, [200, 500], "{check}");
    assert!(check["exchanges"][1]["answered"]["body"].as_str().unwrap().starts_with("duplicate key value"), "{check}");
}

/// Slack publishes 3 s: an app answering after 3.5 s fails; Stripe publishes none, so the same
/// app is not graded on time there. (GitHub's 10 s is graded by the same code, unit-tested
/// without waiting.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_fails_answers_in_time_where_the_provider_publishes_a_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(Habit::AcceptsAll, Duration::from_millis(3500)).await;
    let config = write_config(dir.path(), &app);
    let only = ["--only", "answers_in_time", "--json"];
    let target = app.url("/slack");
    let (code, out) = check_app(&config, &[&["team", "--target", &target][..], &only[..]].concat()).await;
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(outcomes(&report), [("answers_in_time".to_string(), "fail".to_string())], "{out}");
    let check = outcome(&report, "answers_in_time");
    assert!(check["exchanges"][0]["answered"]["time_ms"].as_u64().unwrap() >= 3500, "{check}");
    assert!(check["fix"].as_str().unwrap().contains("Slack's 3 s timeout"), "{check}");

    let (code, out) = check_app(&config, &[&["stripe"][..], &only[..]].concat()).await;
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(outcomes(&report), [("answers_in_time".to_string(), "not_applicable".to_string())], "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_exit_2_with_a_code() {
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(Habit::Verifies, Duration::ZERO).await;
    let config = write_config(dir.path(), &app);
    for (args, code) in [
        (&["nowhere", "--json"][..], "unknown_endpoint"),
        (&["stripe", "--only", "refuses_nothing", "--json"][..], "unknown_check"),
        (&["twilio", "--json"][..], "no_target"),
    ] {
        let (exit, out) = check_app(&config, args).await;
        assert_eq!(exit, 2, "{args:?}: {out}");
        let error: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(error["error"]["code"], code, "{out}");
    }
    // Twilio's built-in endpoint without its auth token: nothing to sign with.
    let bare = tempfile::tempdir().unwrap();
    let bare = support::write_config(bare.path(), "").display().to_string();
    let (exit, out) = check_app(&bare, &["twilio", "--target", &app.url("/sms"), "--json"]).await;
    assert_eq!(exit, 2, "{out}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["error"]["code"], "nothing_to_sign", "{out}");
    // Nothing listening is a failed check (exit 1) whose fix names the target, not the handler.
    let (exit, out) =
        check_app(&config, &["stripe", "--target", "http://127.0.0.1:1/hook", "--only", "accepts_valid"]).await;
    assert_eq!(exit, 1, "{out}");
    assert!(out.contains("fix: nothing answered at http://127.0.0.1:1/hook: start the app there"), "{out}");
    let (_, out) = check_app(&config, &["stripe", "--only", "refuses_nothing"]).await;
    assert!(out.contains("known: accepts_valid, refuses_wrong_secret,"), "{out}");
    assert!(app.checks.lock().is_empty(), "nothing was sent: {:?}", app.checks.lock());
}

/// The API runs the checks, keeps the last report per endpoint and answers it; a target must be
/// what a `forward_to` may be; one run per endpoint at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_runs_a_check_keeps_the_last_report_and_runs_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(Habit::Verifies, Duration::ZERO).await;
    let s = support::start(support::forwarding(dir.path(), "stripe", app.url("/stripe"))).await;
    const PATH: &str = "/staging/webhooks/check-app";

    let r = s.get(&format!("{PATH}?endpoint=stripe")).await;
    assert_eq!((r.status, r.code()), (404, "no_check_report".to_string()), "{}", r.text());

    let r = s.post_json(PATH, br#"{"endpoint": "stripe", "only": ["accepts_valid", "refuses_unsigned"]}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(outcomes(&report).len(), 2, "{report}");
    // The checks' requests went to the app, not through ingest: nothing was stored.
    let events = s.get("/staging/webhooks/events").await.json();
    assert_eq!(events["events"].as_array().unwrap().len(), 0, "{events}");
    let r = s.get(&format!("{PATH}?endpoint=stripe")).await;
    assert_eq!((r.status, r.json()), (200, report.clone()));
    // Every endpoint's at once, `null` for one never checked: what the dashboard reads.
    let all = s.get(PATH).await;
    assert_eq!(all.status, 200, "{}", all.text());
    assert_eq!(all.json()["reports"], serde_json::json!({"stripe": report.clone(), "twilio": null}));

    for (body, status, code) in [
        (r#"{"endpoint": "stripe", "target": "https://api.stripe.com/v1/hook"}"#, 400, "bad_target"),
        (r#"{"endpoint": "stripe", "target": "ftp://127.0.0.1/"}"#, 400, "bad_target"),
        (r#"{"endpoint": "stripe", "only": ["accepts_nothing"]}"#, 400, "unknown_check"),
        (r#"{"endpoint": "nowhere"}"#, 404, "unknown_endpoint"),
        (r#"{"endpoint": "twilio"}"#, 409, "no_target"),
        (r#"{"endpoint": "stripe", "targets": []}"#, 400, "invalid_payload"),
    ] {
        let r = s.post_json(PATH, body.as_bytes()).await;
        assert_eq!((r.status, r.code()), (status, code.to_string()), "{body}: {}", r.text());
    }

    // A run waits on an app that holds its answers; a second one of the same endpoint is refused.
    let held = crate::fake_app::FakeApp::start().await;
    held.hold();
    let addr = s.addr;
    let target = held.url("/hook");
    let ask = format!(r#"{{"endpoint": "stripe", "target": "{target}", "only": ["accepts_valid"]}}"#);
    let first = tokio::spawn({
        let ask = ask.clone();
        async move {
            let headers = [("content-type", "application/json")];
            support::request(addr, "POST", PATH, &headers, ask.as_bytes()).await
        }
    });
    support::until("the first run's request", || async { (!held.received().is_empty()).then_some(()) }).await;
    let r = s.post_json(PATH, ask.as_bytes()).await;
    assert_eq!((r.status, r.code()), (409, "check_running".to_string()), "{}", r.text());
    held.release();
    let r = first.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(held.received()[0].header("x-stagehook-check"), Some("accepts_valid"));
    // The last report is the newest one.
    let last = s.get(&format!("{PATH}?endpoint=stripe")).await.json();
    assert_eq!(outcomes(&last), [("accepts_valid".to_string(), "pass".to_string())]);
    assert!(last["target"].as_str().unwrap().ends_with("/hook"), "{last}");
    s.stop().await;
}

/// The dashboard's "App check" panel in Chromium: a click runs the checks against an app that
/// accepts everything, the scorecard shows the failed refusals with their fix, and the app's
/// answer (markup) is shown as text, never rendered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_runs_a_check_and_shows_the_scorecard() {
    let scenario = async {
        let dir = tempfile::tempdir().unwrap();
        let app = start_app(Habit::AcceptsAll, Duration::ZERO).await;
        let s = support::start(support::forwarding(dir.path(), "stripe", app.url("/stripe"))).await;
        let browser = crate::webdriver::Browser::start().await;
        browser.goto(&format!("http://{}/", s.addr)).await;
        let block = "#app-check-list div[data-endpoint=\"stripe\"]";
        let button = format!("{block} button.app-check-run");
        browser.wait("the stripe check button", || async { (browser.count(&button).await == 1).then_some(()) }).await;
        let summary = browser.text(&format!("{block} .app-check-summary")).await.unwrap_or_default();
        assert_eq!(summary, "Not checked yet.");

        browser.click(&button).await;
        let row = format!("{block} tr[data-check=\"refuses_unsigned\"]");
        let shown =
            browser.wait("the scorecard", || async { browser.text(&row).await.filter(|t| t.contains("fail")) }).await;
        assert!(shown.contains("your handler accepts requests without a valid signature"), "{shown}");
        assert!(shown.contains("200 in"), "{shown}");
        let said = browser.text(&format!("{row} .app-body")).await.unwrap_or_default();
        assert_eq!(said, "<b>ok</b>");
        assert_eq!(browser.count(&format!("{block} .app-check-card b")).await, 0, "the app's markup is not rendered");
        let summary = browser.text(&format!("{block} .app-check-summary")).await.unwrap_or_default();
        assert!(summary.starts_with("4 failed: 4 passed, 4 failed, 2 not applicable"), "{summary}");
        assert_eq!(browser.count(&format!("{block} tr.check-fail")).await, 4);
        // A new page shows the report the store kept.
        browser.goto(&format!("http://{}/", s.addr)).await;
        browser
            .wait("the kept scorecard", || async {
                (browser.count(&format!("{block} tr.check-fail")).await == 4).then_some(())
            })
            .await;
        browser.screenshot("dashboard-app-check").await;
        let console = browser.console().await;
        assert!(!console.iter().any(|m| m.contains("Content Security Policy")), "{console:#?}");
        browser.quit().await;
        s.stop().await;
    };
    tokio::time::timeout(Duration::from_secs(240), Box::pin(scenario)).await.expect("the browser scenario finished");
}

/// Every command of the README's `check-app` section, run as written against a handler that
/// verifies properly: each exits 0, and the CI example's file holds the scorecard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_examples_run_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("### `stagehook check-app`").nth(1).unwrap().split("\n## ").next().unwrap();
    let commands: Vec<&str> = section
        .split("```sh\n")
        .skip(1)
        .flat_map(|block| block.split("```").next().unwrap().lines())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands.len(), 4, "{commands:?}");
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(Habit::Verifies, Duration::ZERO).await;
    let config = write_config(dir.path(), &app);
    for line in commands {
        let line = line
            .replace("staging.toml", &config)
            .replace("http://localhost:3000/webhooks/github", &app.url("/github"))
            .replace("http://localhost:3000/webhooks/stripe", &app.url("/stripe"));
        let (command, into) = match line.split_once(" > ") {
            Some((command, file)) => (command.to_string(), Some(dir.path().join(file.trim()))),
            None => (line.clone(), None),
        };
        let words: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(words[0], "stagehook", "{line}");
        let out = tokio::task::spawn_blocking({
            let words: Vec<String> = words[1..].iter().map(|w| w.to_string()).collect();
            move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_stagehook")).args(words).env_clear().output().unwrap()
            }
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(0), "{line}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        if let Some(file) = into {
            std::fs::write(&file, &stdout).unwrap();
            let report: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
            assert_eq!((report["ok"].as_bool(), report["checks"].as_array().map(Vec::len)), (Some(true), Some(10)));
        }
    }
}

/// A read token reads the last report but cannot run a check; the admin token can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_token_reads_the_last_report_and_cannot_run_one() {
    const ADMIN: &str = "check-app-admin-token-0123456789";
    const READER: &str = "check-app-read-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(Habit::Verifies, Duration::ZERO).await;
    let mut c = support::forwarding(dir.path(), "stripe", app.url("/stripe"));
    c.server.admin_token = Some(stagehook::secret::Secret::new(ADMIN));
    c.server.read_tokens = vec![stagehook::secret::Secret::new(READER)];
    let s = support::start(c).await;
    let (admin, reader) = (format!("Bearer {ADMIN}"), format!("Bearer {READER}"));
    let json = ("content-type", "application/json");
    let ask = br#"{"endpoint": "stripe", "only": ["accepts_valid"]}"#;
    const PATH: &str = "/staging/webhooks/check-app";
    let r = s.post(PATH, &[json, ("authorization", &reader)], ask).await;
    assert_eq!((r.status, r.code()), (403, "read_only_token".to_string()), "{}", r.text());
    let r = s.post(PATH, &[json, ("authorization", &admin)], ask).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r =
        support::request(s.addr, "GET", &format!("{PATH}?endpoint=stripe"), &[("authorization", &reader)], b"").await;
    assert_eq!((r.status, r.json()["ok"].as_bool()), (200, Some(true)), "{}", r.text());
    let r = s.get(&format!("{PATH}?endpoint=stripe")).await;
    assert_eq!(r.status, 401, "{}", r.text());
    s.stop().await;
}

/// Without `--target`, the app is where the endpoint sends its default fixture now: an endpoint
/// whose events all go through a route (no `forward_to`) is checked at the route's target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_endpoint_is_checked_at_its_routes_target() {
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(Habit::Verifies, Duration::ZERO).await;
    let extra = format!(
        "\n[providers.gh]\nkind = \"github\"\nsecret = \"{GITHUB_SECRET}\"\n\n[[providers.gh.routes]]\ntypes = [\"*\"]\nforward_to = [\"{}\"]\n",
        app.url("/github")
    );
    let config = support::write_config(dir.path(), &extra).display().to_string();
    let (exit, out) = check_app(&config, &["gh", "--only", "accepts_valid", "--json"]).await;
    assert_eq!(exit, 0, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["target"], app.url("/github"), "{out}");
    assert_eq!(*app.checks.lock(), vec!["accepts_valid".to_string()]);
}
