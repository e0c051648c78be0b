//! What `serve` prints before its `listening` line, read from the real binary's output, and what
//! `check-config` reports: the shared Redis and its state, and who is told of what (each notifier,
//! each alert rule, or that there are none).

use stagehook::redis::testing::RedisServer;

use crate::support::{self, run_binary};

const ALERTING: &str = "\n[notifiers.ops]\nkind = \"slack\"\nurl = \"https://hooks.slack.com/services/T0/B0/XYZ\"\n\n\
[[alerts]]\nwhen = \"no_events\"\nprovider = \"stripe\"\nfor = \"30m\"\nnotify = [\"ops\"]\n\n\
[[alerts]]\nwhen = \"breaker_open\"\nnotify = [\"ops\"]\n";

/// `serve`'s standard output up to (and with) its `listening` line.
async fn startup(path: &std::path::Path) -> String {
    let mut server = support::spawn_binary(&["serve", "--config", path.to_str().unwrap()], &[]).await;
    let out = server.stdout.lock().clone();
    server.signal("TERM");
    assert!(server.wait().await.success());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_names_redis_and_its_state_and_the_alert_rules_and_notifiers() {
    let dir = tempfile::tempdir().unwrap();
    let out = startup(&support::write_config(dir.path(), "")).await;
    assert!(out.contains("\nredis: not used (limits.backend and dedup.backend are local)\n"), "{out}");
    assert!(out.contains("\nalerts: none"), "{out}");
    assert!(!out.contains("notifier "), "{out}");
    // README's Quick start shows these two lines as they are.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let shown = readme.split("```text\n").nth(1).unwrap().split("```").next().unwrap();
    for start in ["redis: ", "alerts: "] {
        let line = shown.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("README shows {start}"));
        assert!(out.lines().any(|l| l == line), "README's `{line}` is not in:\n{out}");
    }

    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("{ALERTING}\n[redis]\nurl = \"{}\"\n\n[dedup]\nbackend = \"redis\"\n", redis.url());
    let out = startup(&support::write_config(dir.path(), &extra)).await;
    let line = |start: &str| out.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("{start}: {out}"));
    assert_eq!(line("redis: "), format!("redis: {} up, shares duplicates (on_error = \"open\")", redis.url()));
    let notifier = line("notifier ops: ");
    assert!(notifier.starts_with("notifier ops: slack, url ") && notifier.contains("sha256:"), "{notifier}");
    assert!(!notifier.contains("/services/"), "the URL is a credential: {notifier}");
    let alerts: Vec<&str> = out.lines().filter(|l| l.starts_with("alert: ")).collect();
    assert_eq!(alerts, ["alert: no_events (provider stripe, for 30m) → ops", "alert: breaker_open → ops"], "{out}");
    assert!(!out.contains("alerts: none"), "{out}");
    // Before the listening line, which a script waits for.
    assert!(out.trim_end().lines().last().unwrap().contains("listening on http://"), "{out}");
}

#[test]
fn check_config_reports_the_alert_rules_and_notifiers() {
    let dir = tempfile::tempdir().unwrap();
    let path = support::write_config(dir.path(), ALERTING);
    let (code, out) = run_binary(&["check-config", "--config", path.to_str().unwrap(), "--offline", "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let found: Vec<(String, String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["id"].as_str().unwrap().starts_with("alerts.") || f["id"].as_str().unwrap().starts_with("notifiers.")
        })
        .map(|f| {
            (f["id"].as_str().unwrap().into(), f["key"].as_str().unwrap().into(), f["message"].as_str().unwrap().into())
        })
        .collect();
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!((found[0].0.as_str(), found[0].1.as_str()), ("notifiers.declared", "notifiers.ops"));
    assert!(found[0].2.starts_with("slack, url ") && !found[0].2.contains("/services/"), "{found:?}");
    assert_eq!(
        found[1],
        ("alerts.rule".into(), "alerts[0]".into(), "no_events (provider stripe, for 30m) → ops".into())
    );
    assert_eq!(found[2], ("alerts.rule".into(), "alerts[1]".into(), "breaker_open → ops".into()));

    let bare = support::write_config(dir.path(), "");
    let (code, out) = run_binary(&["check-config", "--config", bare.to_str().unwrap(), "--offline"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().any(|l| l.contains("alerts.none") && l.contains("nothing is notified")), "{out}");
}
