//! `stagehook listen`: the real binary follows a staging stagehook (in-process, or the binary
//! itself for the README's setup) and delivers to a fake app, each event signed afresh with the
//! laptop's own secrets (never staging's), verified by the SDK-style checks; it resumes from the
//! store after a kill, filters by type, retries an app that is down, reports outcomes, and
//! refuses plain http to another machine.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;
use stagehook::providers::github;
use stagehook::secret::Secret;
use stagehook::send::{send, SendRequest};
use tokio::io::AsyncBufReadExt;

use crate::fake_app::{stripe_sdk_verify, twilio_sdk_validate, FakeApp, Received};
use crate::support::{self, config, run_binary, until, TestServer, STRIPE_SECRET, TWILIO_TOKEN};

/// Staging's admin token, which no laptop holds, and the team's read token, which each does.
const ADMIN: &str = "admin-token-0123456789abcdef0123";
const TOKEN: &str = "team-token-0123456789abcdef0123";
const GITHUB_STAGING: &str = "github-staging-secret";
/// The laptop's own secrets: what the app verifies with, unlike staging's.
const LOCAL_STRIPE: &str = "whsec_local_laptop_secret_00000000000000";
const LOCAL_TWILIO: &str = "fedcba9876543210fedcba9876543210";
const LOCAL_GITHUB: &str = "github-local-secret";

/// The real `stagehook listen`, its output gathered as it comes.
struct Listener {
    child: tokio::process::Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Listener {
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Listener {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_stagehook"));
        cmd.args(args).env_clear().stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn stagehook listen");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        gather(child.stdout.take().unwrap(), stdout.clone());
        gather(child.stderr.take().unwrap(), stderr.clone());
        Listener { child, stdout, stderr }
    }

    /// The `--json` lines printed so far.
    fn json_lines(&self) -> Vec<Value> {
        self.stdout.lock().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

fn gather<R: tokio::io::AsyncRead + Unpin + Send + 'static>(from: R, into: Arc<Mutex<String>>) {
    let mut lines = tokio::io::BufReader::new(from).lines();
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            let mut s = into.lock();
            s.push_str(&l);
            s.push('\n');
        }
    });
}

/// Staging: Stripe, Twilio and GitHub with staging's secrets, behind the admin token, with a
/// read token for the team's listeners.
fn staging(dir: &Path) -> stagehook::config::Config {
    let mut c = config(dir);
    c.server.admin_token = Some(Secret::new(ADMIN));
    c.server.read_tokens = vec![Secret::new(TOKEN)];
    c.providers
        .insert("github".into(), github::Settings { secret: Some(Secret::new(GITHUB_STAGING)), ..Default::default() });
    c
}

/// The laptop's configuration: its own Stripe and Twilio secrets.
fn app_toml(dir: &Path) -> PathBuf {
    let path = dir.join("app.toml");
    let text = format!(
        "[providers.stripe]\nsecret = \"{LOCAL_STRIPE}\"\n\n[providers.twilio]\nauth_token = \"{LOCAL_TWILIO}\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn url(s: &TestServer) -> String {
    format!("http://{}", s.addr)
}

/// A Stripe event of `event_type`, posted to staging; its stored id.
async fn stripe(s: &TestServer, event_id: &str, event_type: &str) -> String {
    let body = support::stripe_event(event_id).replace("payment_intent.succeeded", event_type);
    let r = s.stripe(&body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}

/// The cursor in a state file, once there is one.
fn cursor(state: &Path) -> Option<String> {
    let v: Value = serde_json::from_slice(&std::fs::read(state).ok()?).ok()?;
    v["cursor"].as_str().map(str::to_string)
}

async fn wait_cursor(state: &Path, id: &str) {
    until(&format!("the cursor at {id}"), || async { (cursor(state).as_deref() == Some(id)).then_some(()) }).await;
}

/// One event's detail, read with the admin token.
async fn detail(s: &TestServer, id: &str) -> Value {
    let path = format!("/staging/webhooks/events/{id}");
    let bearer = format!("Bearer {ADMIN}");
    support::request(s.addr, "GET", &path, &[("authorization", &bearer)], b"").await.json()
}

fn event_id(r: &Received) -> String {
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_twilio_and_github_events_verify_at_the_app_with_the_local_secrets() {
    let (dir, app) = (tempfile::tempdir().unwrap(), FakeApp::start().await);
    let mut c = staging(dir.path());
    let s = support::start(c.clone()).await;
    let (config_path, state) = (app_toml(dir.path()), dir.path().join("state.json"));
    let (hooks, sms) = (app.url("/hooks"), app.url("/sms"));
    let secret = format!("github={LOCAL_GITHUB}");
    let twilio = format!("twilio={sms}");
    let args = [
        "listen",
        &url(&s),
        "--config",
        config_path.to_str().unwrap(),
        "--secret",
        &secret,
        "--forward-to",
        &hooks,
        "--forward-to",
        &twilio,
        "--state",
        state.to_str().unwrap(),
        "--token",
        TOKEN,
        "--json",
    ];
    let listener = Listener::spawn(&args, &[]);
    until("the first run's state", || async { state.exists().then_some(()) }).await;

    stripe(&s, "evt_local_1", "invoice.paid").await;
    let r = s.sms(&[("MessageSid", "SM1"), ("From", "+15550001"), ("To", "+15550002"), ("Body", "hi")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    c.server.bind = s.addr;
    let endpoints = c.build().unwrap();
    let req = SendRequest { provider: "github".into(), event: None, payload: None, to: None, server: None, count: 1 };
    let sent = send(&c, &endpoints, &req, support::now_s).await.unwrap();
    assert_eq!(sent[0].status, 200, "{}", sent[0].body);

    let got = app.wait_for(3).await;
    let now = support::now_s();
    let by_path = |p: &str| got.iter().find(|r| r.path == p).unwrap_or_else(|| panic!("nothing at {p}"));
    let stripe_req = got.iter().find(|r| r.path == "/hooks" && r.header("stripe-signature").is_some()).unwrap();
    let sig = stripe_req.header("stripe-signature").unwrap();
    assert_eq!(stripe_sdk_verify(&stripe_req.body, sig, LOCAL_STRIPE, 300, now), Ok(()));
    assert!(stripe_sdk_verify(&stripe_req.body, sig, STRIPE_SECRET, 300, now).is_err(), "signed afresh");

    let sms_req = by_path("/sms");
    let called = match sms_req.query.as_str() {
        "" => app.url("/sms"),
        q => format!("{}?{q}", app.url("/sms")),
    };
    let sig = sms_req.header("x-twilio-signature").unwrap();
    assert!(twilio_sdk_validate(&called, &sms_req.body, false, sig, LOCAL_TWILIO), "signed for the app's URL");
    assert!(!twilio_sdk_validate(&called, &sms_req.body, false, sig, TWILIO_TOKEN));

    let gh = got.iter().find(|r| r.header("x-hub-signature-256").is_some()).expect("the GitHub event");
    crate::sdk_github::verify(&gh.headers, &gh.body, LOCAL_GITHUB, now).unwrap();
    assert!(crate::sdk_github::verify(&gh.headers, &gh.body, GITHUB_STAGING, now).is_err());

    let lines = until("three lines", || async {
        let l = listener.json_lines();
        (l.len() >= 3).then_some(l)
    })
    .await;
    let providers: Vec<&str> = lines.iter().map(|l| l["provider"].as_str().unwrap()).collect();
    assert_eq!(providers, ["stripe", "twilio", "github"]);
    assert!(lines.iter().all(|l| l["ok"] == true && l["status"] == 200 && l["attempts"] == 1), "{lines:?}");
    assert!(lines.iter().all(|l| l["body"] == "fake app says 200"), "the app's answer: {lines:?}");
    // Each line says when staging stored the event and when the app answered: the listener's lag.
    for l in &lines {
        let stored = detail(&s, l["id"].as_str().unwrap()).await;
        assert_eq!(l["received_at_ms"], stored["received_at_ms"], "{l}");
        assert!(l["answered_at_ms"].as_i64().unwrap() >= l["received_at_ms"].as_i64().unwrap(), "{l}");
    }
    let output = format!("{}{}", listener.stdout.lock(), listener.stderr.lock());
    assert!(!output.contains(TOKEN), "the token is never printed:\n{output}");
    listener.kill().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_listener_gets_exactly_the_events_stored_while_it_was_away_in_order() {
    let (dir, app) = (tempfile::tempdir().unwrap(), FakeApp::start().await);
    let s = support::start(staging(dir.path())).await;
    let (config_path, state) = (app_toml(dir.path()), dir.path().join("state.json"));
    let staging_url = url(&s);
    let target = app.url("/hooks");
    let args = [
        "listen",
        &staging_url,
        "--config",
        config_path.to_str().unwrap(),
        "--forward-to",
        &target,
        "--state",
        state.to_str().unwrap(),
        "--token",
        TOKEN,
    ];
    let listener = Listener::spawn(&args, &[]);
    until("the first run's state", || async { state.exists().then_some(()) }).await;
    let first = stripe(&s, "evt_before", "invoice.paid").await;
    app.wait_for(1).await;
    wait_cursor(&state, &first).await;
    listener.kill().await;

    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(stripe(&s, &format!("evt_away_{i:02}"), "invoice.paid").await);
    }
    let listener = Listener::spawn(&args, &[]);
    wait_cursor(&state, ids.last().unwrap()).await;
    let got: Vec<String> = app.received().iter().skip(1).map(event_id).collect();
    let want: Vec<String> = (0..50).map(|i| format!("evt_away_{i:02}")).collect();
    assert_eq!(got, want, "exactly those 50, in arrival order, none twice");

    // The same across a restart of staging in between (its store kept, its address new).
    listener.kill().await;
    s.stop().await;
    let s = support::start(staging(dir.path())).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(stripe(&s, &format!("evt_restarted_{i:02}"), "invoice.paid").await);
    }
    let staging_url = url(&s);
    let mut args = args;
    args[1] = &staging_url;
    let listener = Listener::spawn(&args, &[]);
    wait_cursor(&state, ids.last().unwrap()).await;
    let got: Vec<String> = app.received().iter().skip(51).map(event_id).collect();
    let want: Vec<String> = (0..10).map(|i| format!("evt_restarted_{i:02}")).collect();
    assert_eq!(got, want, "after staging's restart too");
    listener.kill().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_listeners_with_different_type_filters_each_get_only_theirs() {
    let (dir, invoices, charges) = (tempfile::tempdir().unwrap(), FakeApp::start().await, FakeApp::start().await);
    let s = support::start(staging(dir.path())).await;
    let config_path = app_toml(dir.path());
    let staging_url = url(&s);
    let spawn = |name: &str, glob: &str, to: String| {
        let state = dir.path().join(format!("{name}.json"));
        let args = [
            "listen",
            &staging_url,
            "--config",
            config_path.to_str().unwrap(),
            "--forward-to",
            &to,
            "--state",
            state.to_str().unwrap(),
            "--name",
            name,
            "--type",
            glob,
        ];
        (Listener::spawn(&args, &[("STAGEHOOK_TOKEN", TOKEN)]), state)
    };
    let (a, a_state) = spawn("ann", "invoice.*", invoices.url("/"));
    let (b, b_state) = spawn("bob", "charge.succeeded", charges.url("/"));
    until("both first states", || async { (a_state.exists() && b_state.exists()).then_some(()) }).await;
    stripe(&s, "evt_inv_1", "invoice.paid").await;
    stripe(&s, "evt_chg_1", "charge.succeeded").await;
    stripe(&s, "evt_inv_2", "invoice.created").await;
    let last = stripe(&s, "evt_other", "customer.created").await;
    // Both have read past every event: what they delivered is all they will.
    wait_cursor(&a_state, &last).await;
    wait_cursor(&b_state, &last).await;
    let a_got: Vec<String> = invoices.received().iter().map(event_id).collect();
    let b_got: Vec<String> = charges.received().iter().map(event_id).collect();
    assert_eq!(a_got, ["evt_inv_1", "evt_inv_2"]);
    assert_eq!(b_got, ["evt_chg_1"]);
    // Staging knows both, each with its own filters, while they follow it.
    let bearer = format!("Bearer {ADMIN}");
    let listening = until("both listeners listed", || async {
        let r =
            support::request(s.addr, "GET", "/staging/webhooks/listeners", &[("authorization", &bearer)], b"").await;
        let mut l: Vec<(String, String)> = r.json()["listeners"]
            .as_array()?
            .iter()
            .map(|l| (l["name"].as_str().unwrap().to_string(), l["filters"].as_str().unwrap().to_string()))
            .collect();
        l.sort();
        (l.len() == 2).then_some(l)
    })
    .await;
    assert_eq!(
        listening,
        [("ann".to_string(), "type=invoice.*".to_string()), ("bob".to_string(), "type=charge.succeeded".to_string())]
    );
    a.kill().await;
    b.kill().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_is_down_is_retried_reported_failed_and_the_next_events_still_go() {
    let (dir, mut app) = (tempfile::tempdir().unwrap(), FakeApp::start().await);
    let s = support::start(staging(dir.path())).await;
    let (config_path, state) = (app_toml(dir.path()), dir.path().join("state.json"));
    let (staging_url, target) = (url(&s), app.url("/hooks"));
    let args = [
        "listen",
        &staging_url,
        "--config",
        config_path.to_str().unwrap(),
        "--forward-to",
        &target,
        "--state",
        state.to_str().unwrap(),
        "--token",
        TOKEN,
        "--json",
        "--retries",
        "2",
        "--report",
        "--name",
        "laptop-1",
    ];
    let listener = Listener::spawn(&args, &[]);
    until("the first run's state", || async { state.exists().then_some(()) }).await;
    app.go_down().await;
    let lost = stripe(&s, "evt_while_down", "invoice.paid").await;
    let failed = until("the failure line", || async { listener.json_lines().into_iter().next() }).await;
    assert_eq!(failed["id"], lost.as_str());
    assert_eq!(
        (failed["ok"].clone(), failed["attempts"].clone(), failed["status"].clone()),
        (false.into(), 3.into(), Value::Null)
    );
    assert!(failed["error"].as_str().unwrap().contains("connect"), "{failed}");
    // Staging heard of it: the event's detail shows the listener's failure beside its own attempts.
    let reported = until("the failure's report", || async {
        let detail = detail(&s, &lost).await;
        detail["listeners"].as_array().and_then(|l| l.first().cloned())
    })
    .await;
    assert_eq!((reported["name"].as_str(), reported["status"].clone()), (Some("laptop-1"), Value::Null), "{reported}");
    assert!(reported["error"].as_str().unwrap().contains("connect"), "{reported}");

    app.restart().await;
    let next = stripe(&s, "evt_after", "invoice.paid").await;
    let lines = until("the next event's line", || async {
        let l = listener.json_lines();
        (l.len() >= 2).then_some(l)
    })
    .await;
    assert_eq!((lines[1]["id"].as_str(), lines[1]["ok"].as_bool()), (Some(next.as_str()), Some(true)), "{lines:?}");
    let got: Vec<String> = app.received().iter().map(event_id).collect();
    assert_eq!(got, ["evt_after"]);
    let reported = until("the delivery's report", || async {
        detail(&s, &next).await["listeners"].as_array().and_then(|l| l.first().cloned())
    })
    .await;
    assert_eq!((reported["name"].as_str(), reported["status"].as_u64()), (Some("laptop-1"), Some(200)), "{reported}");
    assert!(!listener.stderr.lock().contains("warning"), "{}", listener.stderr.lock());
    listener.kill().await;
    s.stop().await;
}

#[test]
fn plain_http_to_another_machine_and_bad_flags_are_refused_with_exit_2() {
    let cases: [(&[&str], &str); 6] = [
        (&["listen", "http://staging.example.com", "--forward-to", "http://127.0.0.1:3000/"], "--insecure-http"),
        (&["listen", "ftp://127.0.0.1", "--forward-to", "http://127.0.0.1:3000/"], "not an http(s) URL"),
        (&["listen", "http://127.0.0.1:1", "--forward-to", "ftp://127.0.0.1/"], "--forward-to ftp://127.0.0.1/"),
        (
            &["listen", "http://127.0.0.1:1", "--forward-to", "http://127.0.0.1:3/", "--secret", "nokind=x"],
            "no [providers.nokind]",
        ),
        (
            &["listen", "http://127.0.0.1:1", "--forward-to", "http://127.0.0.1:3/", "--timeout", "soon"],
            "--timeout soon",
        ),
        (
            &["listen", "http://127.0.0.1:1", "--forward-to", "http://127.0.0.1:3/", "--type", "invoice.[paid"],
            "--type `invoice.[paid`",
        ),
    ];
    for (args, says) in cases {
        let (code, out) = run_binary(args);
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(out.contains(says), "{args:?} should say {says}: {out}");
    }
}

/// The README's team setup, run as written: `serve` with the token from the environment, and
/// `listen` with the token, the app's configuration and its one target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_team_setup_runs_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("## Webhooks on your own machine").nth(1).unwrap();
    let block = section.split("```sh\n").nth(1).unwrap().split("```").next().unwrap();
    let commands: Vec<&str> = block.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    assert_eq!(commands.len(), 2, "{block}");

    let (dir, app) = (tempfile::tempdir().unwrap(), FakeApp::start().await);
    let staging_toml = support::write_config(dir.path(), "");
    let app_path = app_toml(dir.path());
    let state_home = dir.path().join("state");
    let words = |line: &str, staging_url: &str| -> (Vec<(String, String)>, Vec<String>) {
        let line = line
            .replace("\"$TEAM_TOKEN\"", TOKEN)
            .replace("\"$ADMIN_TOKEN\"", ADMIN)
            .replace("staging.toml", staging_toml.to_str().unwrap())
            .replace("app.toml", app_path.to_str().unwrap())
            .replace("https://staging.example.com", staging_url)
            .replace("http://localhost:3000/webhooks", &app.url("/webhooks"));
        let mut parts = line.split_whitespace().map(str::to_string);
        let mut env = Vec::new();
        let mut args = Vec::new();
        for p in parts.by_ref() {
            match p.split_once('=') {
                Some((k, v)) if args.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_') => {
                    env.push((k.to_string(), v.to_string()))
                }
                _ => args.push(p),
            }
        }
        assert_eq!(args.first().map(String::as_str), Some("stagehook"), "{line}");
        (env, args.split_off(1))
    };
    let (env, args) = words(commands[0], "");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = support::spawn_binary(&args, &env).await;
    let staging_url = format!("http://{}", server.addr);
    let (env, args) = words(commands[1], &staging_url);
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("XDG_STATE_HOME", state_home.to_str().unwrap()));
    env.push(("USER", "dev"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let listener = Listener::spawn(&args, &env);
    until("the first run's state", || async {
        std::fs::read_dir(state_home.join("stagehook")).ok()?.next().map(|_| ())
    })
    .await;
    let r = server.stripe(&support::stripe_event("evt_readme")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = app.wait_for(1).await;
    let sig = got[0].header("stripe-signature").unwrap();
    assert_eq!(stripe_sdk_verify(&got[0].body, sig, LOCAL_STRIPE, 300, support::now_s()), Ok(()));
    assert_eq!(got[0].path, "/webhooks");
    until("the line", || async { listener.stdout.lock().contains("evt_readme").then_some(()) }).await;
    assert!(listener.stdout.lock().contains("-> 200"), "{}", listener.stdout.lock());
    listener.kill().await;
}

/// Beyond the stream cap (32), a listener says so and retries with backoff; once a stream is
/// free it follows again, and staging lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_beyond_the_stream_cap_says_so_and_retries() {
    let (dir, app) = (tempfile::tempdir().unwrap(), FakeApp::start().await);
    let s = support::start(config(dir.path())).await;
    let mut open = Vec::new();
    for _ in 0..32 {
        let st = crate::stream::Stream::open(s.addr, "", None).await;
        assert_eq!(st.status, 200);
        open.push(st);
    }
    let (config_path, state) = (app_toml(dir.path()), dir.path().join("state.json"));
    let (staging_url, target) = (url(&s), app.url("/hooks"));
    let args = [
        "listen",
        &staging_url,
        "--config",
        config_path.to_str().unwrap(),
        "--forward-to",
        &target,
        "--state",
        state.to_str().unwrap(),
        "--name",
        "late",
    ];
    let listener = Listener::spawn(&args, &[]);
    until("the listener to say the streams are full", || async {
        listener.stderr.lock().contains("too many open streams").then_some(())
    })
    .await;
    drop(open.pop());
    until("the listener listed once a stream is free", || async {
        let r = s.get("/staging/webhooks/listeners").await;
        r.json()["listeners"].as_array()?.iter().any(|l| l["name"] == "late").then_some(())
    })
    .await;
    stripe(&s, "evt_after_the_wait", "invoice.paid").await;
    let got = app.wait_for(1).await;
    assert_eq!(event_id(&got[0]), "evt_after_the_wait");
    drop(open);
    listener.kill().await;
    s.stop().await;
}
