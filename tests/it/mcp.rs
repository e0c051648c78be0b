//! `stagehook mcp`, driven over stdio by the official Python MCP client (`mcp` on PyPI, pinned in
//! .ci/run) exactly as README's "Use from an AI agent" configures it, against the real server on
//! port 0 that delivers to a fake app: the client lists the tools, reads events, diagnoses a
//! refused signature, and replays, refused without `--allow-write` and delivered with it.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use stagehook::secret::Secret;

use crate::fake_app::FakeApp;
use crate::support::{self, post_badly_signed, start, stripe_event};

const TOKEN: &str = "mcp-admin-token-0123456789";

/// The Python that has the `mcp` package: `STAGEHOOK_TEST_MCP_PYTHON` (.ci/run sets it), else the
/// virtual environment .ci/run makes under the target folder. Without either the test fails and
/// says how to make it: a skipped test would pass a check nobody ran.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("STAGEHOOK_TEST_MCP_PYTHON").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.exists(), "STAGEHOOK_TEST_MCP_PYTHON names {}, which does not exist", p.display());
        return p;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let venv = target.join("mcp-venv");
    let p = venv.join("bin/python");
    assert!(
        p.exists(),
        "the MCP test needs the Python MCP client: `python3 -m venv {0} && {0}/bin/pip install mcp==2.3.0` \
         (as `bash .ci/run` does), or STAGEHOOK_TEST_MCP_PYTHON set to a python that has it",
        venv.display()
    );
    p
}

/// README's client configuration of stdio servers: the `stagehook` entry of its JSON example.
fn readme_entry() -> Value {
    let readme = include_str!("../../README.md");
    let section = &readme[readme.find("## Use from an AI agent").expect("README has the section")..];
    let start = section.find("```json\n").expect("the section has a JSON example") + "```json\n".len();
    let end = start + section[start..].find("```").unwrap();
    let config: Value = serde_json::from_str(&section[start..end]).expect("README's example is JSON");
    config["mcpServers"]["stagehook"].clone()
}

/// Runs the Python client with `spec` and returns what it saw.
async fn client(spec: &Value) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/mcp_client.py");
    let run = tokio::process::Command::new(python()).arg(script).arg(spec.to_string()).kill_on_drop(true).output();
    let out = tokio::time::timeout(Duration::from_secs(120), run).await.expect("the client ends").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the client failed: {stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reads_diagnoses_and_replays_through_readmes_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let app = FakeApp::start().await;
    let mut config = support::forwarding(dir.path(), "stripe", app.url("/hook"));
    config.server.admin_token = Some(Secret::new(TOKEN));
    config.limits.rate_limit_per_minute = 0;
    let s = start(config).await;
    let first = s.stripe_id(&stripe_event("evt_mcp_1")).await;
    let other = s.stripe_id(&stripe_event("evt_mcp_2")).await;
    app.wait_for(2).await;
    assert_eq!(post_badly_signed(s.addr).await.status, 401);
    // This machine's configuration, whose Stripe secret `send_fixture` signs with.
    std::fs::create_dir_all(dir.path().join("here")).unwrap();
    let here = support::write_config(&dir.path().join("here"), "");

    // README's entry as it is, but for the binary, the server's URL and the two values to fill.
    let mut entry = readme_entry();
    assert_eq!(entry["command"], "stagehook");
    entry["command"] = env!("CARGO_BIN_EXE_stagehook").into();
    let args = entry["args"].as_array_mut().unwrap();
    let url = args.iter().position(|a| a == "--server").expect("README passes --server") + 1;
    args[url] = format!("http://{}", s.addr).into();
    let env = entry["env"].as_object_mut().unwrap();
    assert_eq!(env.keys().collect::<Vec<_>>(), ["STAGEHOOK_CONFIG", "STAGEHOOK_TOKEN"]);
    env.insert("STAGEHOOK_CONFIG".into(), here.display().to_string().into());
    env.insert("STAGEHOOK_TOKEN".into(), TOKEN.into());
    let mut writer = entry.clone();
    writer["args"].as_array_mut().unwrap().push("--allow-write".into());
    let mut wrong_token = entry.clone();
    wrong_token["env"]["STAGEHOOK_TOKEN"] = "not-the-token".into();
    // A port nothing listens on any more.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let mut nothing_there = entry.clone();
    nothing_there["args"][url] = format!("http://{closed}").into();
    let edited: Value = serde_json::from_str(&stripe_event("evt_mcp_edit")).unwrap();
    let spec = json!({"read_only": entry, "writer": writer, "wrong_token": wrong_token, "nothing_there": nothing_there,
                      "edited": edited, "event": first, "other": other, "provider_event": "evt_mcp_2"});
    let seen = client(&spec).await;
    let ro = &seen["read_only"];
    assert_eq!(ro["protocol"], "2025-11-25");

    // Offered: the read tools only, each with an object schema.
    let tools: Vec<&String> = ro["tools"].as_object().unwrap().keys().collect();
    assert_eq!(
        tools,
        ["compare_events", "get_event", "last_app_check", "list_events", "stats_and_breakers", "why_signature_failed"]
    );
    assert!(ro["tools"].as_object().unwrap().values().all(|schema| schema["type"] == "object"));

    let listed = &ro["list_events"]["structured"]["events"];
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{ro:#}");
    let event = &ro["get_event"]["structured"];
    assert_eq!((event["id"].as_str(), event["event_id"].as_str()), (Some(first.as_str()), Some("evt_mcp_1")));
    assert!(event["payload"].as_str().unwrap().contains("evt_mcp_1"));
    let signature = event["headers"].as_array().unwrap().iter().find(|h| h[0] == "stripe-signature").unwrap();
    assert!(signature[1].as_str().unwrap().contains("redacted"), "{signature}");
    assert_eq!(ro["get_by_provider_id"]["structured"]["id"], other.as_str());

    // The refused signature, with its diagnosis.
    let why = &ro["why"]["structured"];
    assert_eq!(why["count"], 1, "{why:#}");
    assert_eq!(why["rejections"][0]["code"], "invalid_signature");
    assert!(why["rejections"][0]["diagnosis"]["code"].as_str().is_some_and(|c| !c.is_empty()), "{why:#}");

    let diff = &ro["compare"]["structured"];
    assert_eq!(diff["before"]["id"], first.as_str());
    let changed: Vec<&Value> = diff["payload"]["entries"].as_array().unwrap().iter().map(|e| &e["path"]).collect();
    assert!(changed.contains(&&json!("id")), "{diff:#}");
    let stats = &ro["stats"]["structured"];
    assert!(stats["stats"].is_object() && stats["recovery"].is_object(), "{stats:#}");
    assert_eq!(ro["bad_arguments"]["is_error"], true);
    assert_eq!(ro["bad_arguments"]["structured"]["error"]["code"], "invalid_arguments");

    // A write tool without --allow-write: refused, and nothing was delivered again.
    assert_eq!(ro["replay"]["rpc_error"]["code"], -32602, "{ro:#}");
    assert_eq!(ro["replay"]["rpc_error"]["data"]["code"], "write_not_allowed");
    assert!(ro["replay"]["rpc_error"]["message"].as_str().unwrap().contains("--allow-write"));
    assert_eq!(ro["check_app"]["rpc_error"]["data"]["code"], "write_not_allowed", "{ro:#}");

    // The resources: README's kinds table, and the configuration report with secrets masked.
    let resources = ro["resources"].as_object().unwrap();
    assert!(resources["stagehook://providers"].as_str().unwrap().contains("| `stripe` |"));
    let report = resources["stagehook://config"].as_str().unwrap();
    assert!(!report.contains(support::STRIPE_SECRET) && !report.contains(TOKEN), "a secret shows: {report}");
    let report: Value = serde_json::from_str(report).unwrap();
    assert!(report["server"]["findings"].is_array(), "{report:#}");
    assert!(report["effective_here"]["providers.stripe.secret"]["value"].is_string(), "{report:#}");

    // With --allow-write: offered, and the replay reaches the app.
    let w = &seen["writer"];
    for name in ["check_app", "edit_and_replay", "replay", "send_fixture"] {
        assert!(w["tools"].as_array().unwrap().contains(&json!(name)), "{w:#}");
    }
    assert_eq!(w["replay"]["is_error"], false, "{w:#}");
    assert_eq!(w["replay"]["structured"]["replayed"], 1);
    assert_eq!(w["replay_missing"]["is_error"], true);
    assert_eq!(
        w["replay_missing"]["structured"]["error"],
        json!({"code": "not_found", "message": "no event `01KB0000000000000000000000` is stored", "status": 404})
    );
    assert_eq!(w["send"]["is_error"], false, "{w:#}");
    assert_eq!(w["send"]["structured"]["sent"][0]["status"], 200);
    assert_eq!(w["edit"]["is_error"], false, "{w:#}");
    assert_eq!(w["edit"]["structured"]["parent_id"], first.as_str());
    assert_eq!(w["edit_nothing"]["structured"]["error"]["code"], "invalid_arguments");
    // An app check through the API: its scorecard, then kept as the endpoint's last one.
    let check = &w["check_app"]["structured"];
    assert_eq!((&w["check_app"]["is_error"], &check["ok"]), (&json!(false), &json!(false)), "{w:#}");
    assert_eq!(check["checks"][0]["name"], "refuses_unsigned", "{check:#}");
    assert_eq!(w["last_check"]["structured"]["checks"][0]["name"], "refuses_unsigned", "{w:#}");
    // The two first deliveries, the replay of the first, the event sent and the edited copy.
    let received = app.wait_for(5).await;
    let bodies: Vec<String> = received.iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect();
    assert_eq!(bodies.iter().filter(|b| b.contains("evt_mcp_1")).count(), 2, "{bodies:#?}");
    let copy = received.iter().find(|r| String::from_utf8_lossy(&r.body).contains("evt_mcp_edit")).expect("the copy");
    assert_eq!(copy.header("x-debug-run"), Some("7"));

    // A wrong token: the API's refusal, as a failed tool call.
    let refused = &seen["wrong_token"]["list_events"];
    assert_eq!(refused["is_error"], true, "{refused:#}");
    assert_eq!(refused["structured"]["error"]["code"], "unauthorized");
    assert_eq!(refused["structured"]["error"]["status"], 401);
    // Nothing at the URL: a failed tool call that says so, and the server goes on.
    let unreachable = &seen["nothing_there"]["stats"];
    assert_eq!(unreachable["is_error"], true, "{unreachable:#}");
    assert_eq!(unreachable["structured"]["error"]["code"], "unreachable");
    assert!(unreachable["text"].as_str().unwrap().contains("give its URL with --server"), "{unreachable:#}");
    s.stop().await;
}
