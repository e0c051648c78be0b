//! Export and import: `GET /staging/webhooks/events/export` (every page streamed) and
//! `stagehook export` (offline, the same bytes, with the same filters), `stagehook import` into
//! an empty data folder (the same events, bodies byte for byte, each edited copy linked to its
//! parent's new id, duplicates skipped and counted; a malformed line, an oversize body or a
//! provider that is no endpoint name refused whole, each line named), and `stagehook send
//! --from` into a second stagehook (all accepted, then all duplicates) or straight to an app
//! whose Stripe verifier accepts each.

use std::path::Path;

use base64::Engine;
use serde_json::Value;

use crate::support::{
    config, run_binary, run_binary_async, start, write_config, TestServer, STRIPE_SECRET, TWILIO_TOKEN,
};

/// A Stripe body with non-ASCII text and a trailing newline: both must survive as they came.
const UNICODE_BODY: &str = "{\"id\":\"evt_export_1\",\"object\":\"event\",\"type\":\"customer.created\",\"created\":1700000000,\"livemode\":false,\"data\":{\"object\":{\"id\":\"cus_1\",\"name\":\"Zoë Ångström ✓ 日本\"}}}\n";
const PLAIN_BODY: &str = "{\"id\":\"evt_export_2\",\"object\":\"event\",\"type\":\"payment_intent.succeeded\",\"created\":1700000000,\"livemode\":false,\"data\":{\"object\":{\"id\":\"pi_1\"}}}";
/// A Twilio form: percent-encoded UTF-8, `+` for spaces, an `&` inside a value.
const SMS: [(&str, &str); 4] =
    [("MessageSid", "SM_export_1"), ("From", "+15005550006"), ("To", "+15005550001"), ("Body", "Héllo wörld & more+1")];

/// The config file for the binary: Stripe and Twilio set up as `config(dir)` sets them, the data
/// in `dir/data`.
fn config_file(dir: &Path) -> String {
    let extra = format!("[providers.twilio]\nauth_token = \"{TWILIO_TOKEN}\"\n");
    write_config(dir, &extra).to_str().unwrap().to_string()
}

async fn post_stripe_body(s: &TestServer, body: &str) {
    let r = s.stripe(body).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Imports `file` into an empty folder, then again: all `n` lines imported, then all skipped as
/// duplicates. Returns the folder (its data in `data`, where `config` looks).
fn import_twice(file: &Path, n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let import = ["import", file.to_str().unwrap(), "--data-dir", data.to_str().unwrap()];
    let (code, text) = run_binary(&import);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("imported {n} events, skipped 0 duplicates")), "{text}");
    let (code, text) = run_binary(&import);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&format!("imported 0 events, skipped {n} duplicates")), "{text}");
    dir
}

/// Asks for a copy of the event `parent` edited as `edit` says, waits for its delivery, and
/// returns its id.
async fn edit_and_deliver(s: &TestServer, parent: &str, edit: &Value) -> String {
    let path = format!("/staging/webhooks/events/{parent}/replay");
    let r = s.post_json(&path, edit.to_string().as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let copy = r.json()["id"].as_str().unwrap().to_string();
    crate::support::wait_status(s, &copy, "processed").await;
    copy
}

/// Three events: two Stripe, one Twilio form.
async fn capture(s: &TestServer) {
    post_stripe_body(s, UNICODE_BODY).await;
    post_stripe_body(s, PLAIN_BODY).await;
    assert_eq!(s.sms(&SMS).await.status, 200);
}

/// `GET /events/export` with `query`: (status, content type, body).
async fn export_route(s: &TestServer, query: &str) -> (u16, String, Vec<u8>) {
    let r = s.get(&format!("/staging/webhooks/events/export{query}")).await;
    (r.status, r.header("content-type").unwrap_or_default().to_string(), r.body)
}

fn parse_lines(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).expect("an export is UTF-8");
    assert!(text.is_empty() || text.ends_with('\n'), "every line ends with a newline: {text}");
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// A line's body bytes, whichever way it carries them.
fn body_of(line: &Value) -> Vec<u8> {
    match (line.get("body"), line.get("body_base64")) {
        (Some(Value::String(t)), None) => t.as_bytes().to_vec(),
        (None, Some(Value::String(b))) => base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
        other => panic!("exactly one body field: {other:?} in {line}"),
    }
}

/// A line without the store-local `id`: what must be equal across stores.
fn without_id(mut line: Value) -> Value {
    line.as_object_mut().unwrap().remove("id");
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_into_an_empty_folder_gives_the_same_events_byte_for_byte() {
    let a_dir = tempfile::tempdir().unwrap();
    let a = start(config(a_dir.path())).await;
    capture(&a).await;

    let (status, content_type, exported) = export_route(&a, "").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&exported));
    assert_eq!(content_type, "application/x-ndjson");
    let lines = parse_lines(&exported);
    assert_eq!(lines.len(), 3, "{lines:?}");
    // Oldest first, every field, and each body exactly as it was posted.
    let want: [(&str, &str, &str, Vec<u8>); 3] = [
        ("stripe", "evt_export_1", "customer.created", UNICODE_BODY.as_bytes().to_vec()),
        ("stripe", "evt_export_2", "payment_intent.succeeded", PLAIN_BODY.as_bytes().to_vec()),
        ("twilio", "SM_export_1", "message.received", crate::support::form(&SMS).into_bytes()),
    ];
    for (line, (provider, event_id, event_type, body)) in lines.iter().zip(want) {
        assert_eq!(line["v"], 1);
        assert_eq!(line["provider"], provider);
        assert_eq!(line["event_id"], event_id);
        assert_eq!(line["event_type"], event_type);
        assert!(line["received_at_ms"].as_i64().unwrap() > 1_700_000_000_000, "{line}");
        assert_eq!(body_of(line), body, "{line}");
        // The headers are exactly those the event's own page shows, redactions included.
        let shown = crate::support::event_json(&a, line["id"].as_str().unwrap()).await;
        assert_eq!(line["headers"], shown["headers"], "{line}");
    }
    let stripe_sig = lines[0]["headers"].as_array().unwrap().iter().find(|h| h[0] == "stripe-signature").unwrap();
    assert!(stripe_sig[1].as_str().unwrap().contains("(redacted,"), "{stripe_sig}");
    assert!(!stripe_sig[1].as_str().unwrap().contains("v1="), "the signature is cut short: {stripe_sig}");
    let twilio_sig = lines[2]["headers"].as_array().unwrap().iter().find(|h| h[0] == "x-twilio-signature").unwrap();
    assert!(twilio_sig[1].as_str().unwrap().contains("(redacted,"), "{twilio_sig}");

    // While the server runs, the offline export says why it cannot open the folder.
    let cfg = config_file(a_dir.path());
    let out = a_dir.path().join("offline.ndjson");
    let args = ["export", "--config", cfg.as_str(), "--out", out.to_str().unwrap()];
    let (code, text) = run_binary_async(&args).await;
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("in use by a running stagehook"), "{text}");
    assert!(!out.exists());
    a.stop().await;

    // Offline, the same bytes as the route.
    let (code, text) = run_binary(&args);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("exported 3 events"), "{text}");
    assert_eq!(std::fs::read(&out).unwrap(), exported, "offline export equals the route's");

    // A body that is not UTF-8 travels as base64: add one to the file.
    let raw: &[u8] = b"MessageSid=SM_export_2&Body=caf\xe9";
    let mut file = exported.clone();
    file.extend_from_slice(
        serde_json::json!({
            "v": 1, "provider": "twilio", "event_id": "SM_export_2", "event_type": "message.received",
            "received_at_ms": 1_764_000_000_000i64, "headers": [["content-type", "application/x-www-form-urlencoded"]],
            "body_base64": base64::engine::general_purpose::STANDARD.encode(raw),
        })
        .to_string()
        .as_bytes(),
    );
    file.push(b'\n');
    let import_file = a_dir.path().join("import.ndjson");
    std::fs::write(&import_file, &file).unwrap();

    // Into an empty folder: everything imported; again: everything skipped as duplicates.
    let b_dir = import_twice(&import_file, 4);

    let b = start(config(b_dir.path())).await;
    let (status, _, again) = export_route(&b, "").await;
    assert_eq!(status, 200);
    let again = parse_lines(&again);
    assert_eq!(again.len(), 4);
    let first: Vec<Value> = parse_lines(&file).into_iter().map(without_id).collect();
    let second: Vec<Value> = again.iter().cloned().map(without_id).collect();
    assert_eq!(first, second, "the same events, in the same order, bodies and headers alike");
    assert_eq!(body_of(&again[3]), raw);
    assert!(again[3].get("body").is_none(), "{}", again[3]);
    // Recorded as processed, with nothing queued for delivery, from the source `import`.
    let listed = b.get("/staging/webhooks/events").await.json();
    for e in listed["events"].as_array().unwrap() {
        let shown = crate::support::event_json(&b, e["id"].as_str().unwrap()).await;
        assert_eq!(shown["source_ip"], "import", "{shown}");
        assert_eq!(e["status"], "processed", "{e}");
        assert_eq!(e["attempts"], 0, "{e}");
        assert_eq!(e["next_attempt_at_ms"], Value::Null, "{e}");
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_takes_the_lists_filters() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    capture(&s).await;
    let ids = |bytes: Vec<u8>| -> Vec<String> {
        parse_lines(&bytes).iter().map(|l| l["event_id"].as_str().unwrap().to_string()).collect()
    };
    let cases: [(&str, &[&str]); 5] = [
        ("?provider=twilio", &["SM_export_1"]),
        ("?provider=stripe", &["evt_export_1", "evt_export_2"]),
        ("?type=customer.created", &["evt_export_1"]),
        ("?status=processed&provider=stripe&type=payment_intent.succeeded", &["evt_export_2"]),
        ("?until=1000", &[]),
    ];
    for (query, want) in cases {
        let (status, _, body) = export_route(&s, query).await;
        assert_eq!(status, 200, "{query}");
        assert_eq!(ids(body), want, "{query}");
    }
    let (status, _, body) = export_route(&s, &format!("?since={}", crate::support::now_s() * 1000 + 60_000)).await;
    assert_eq!((status, ids(body)), (200, vec![]), "nothing stored after a minute from now");
    // `after=<id>` resumes behind an event, in arrival order, with the other filters too.
    let (_, _, all) = export_route(&s, "").await;
    let all = parse_lines(&all);
    let first = all[0]["id"].as_str().unwrap();
    let (_, _, body) = export_route(&s, &format!("?after={first}")).await;
    let arrived: Vec<String> = all[1..].iter().map(|l| l["event_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids(body), arrived);
    let (_, _, body) = export_route(&s, &format!("?after={first}&provider=stripe")).await;
    let stripe: Vec<&String> = arrived.iter().filter(|id| id.starts_with("evt_")).collect();
    assert_eq!(ids(body).iter().collect::<Vec<_>>(), stripe);
    let last = all.last().unwrap()["id"].as_str().unwrap();
    assert_eq!(ids(export_route(&s, &format!("?after={last}")).await.2), Vec::<String>::new());
    // The list's own refusals, and the list's paging parameters are not export filters.
    for query in ["?status=duplicate", "?since=yesterday", "?limit=1", "?q=evt_export_1", "?after=evt_export_1"] {
        let (status, _, body) = export_route(&s, query).await;
        assert_eq!(status, 400, "{query}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "invalid_payload", "{query}: {v}");
    }
    // An import into the folder the server holds is refused, saying why.
    let cfg = config_file(dir.path());
    let (_, _, all) = export_route(&s, "").await;
    let file = dir.path().join("all.ndjson");
    std::fs::write(&file, all).unwrap();
    let (code, text) = run_binary_async(&["import", file.to_str().unwrap(), "--config", &cfg]).await;
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("in use by a running stagehook"), "{text}");
    s.stop().await;
    // The offline export takes the same filters, as flags, with the same refusals.
    let out = dir.path().join("twilio.ndjson");
    let (code, text) =
        run_binary(&["export", "--config", &cfg, "--provider", "twilio", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(ids(std::fs::read(&out).unwrap()), ["SM_export_1"]);
    // Without `--out`, the same lines on stdout, and the count on stderr only.
    let stdout = std::process::Command::new(env!("CARGO_BIN_EXE_stagehook"))
        .args(["export", "--config", &cfg, "--provider", "twilio"])
        .env_clear()
        .output()
        .unwrap();
    assert!(stdout.status.success(), "{stdout:?}");
    assert_eq!(stdout.stdout, std::fs::read(&out).unwrap());
    assert!(String::from_utf8_lossy(&stdout.stderr).contains("exported 1 events"), "{stdout:?}");
    let (code, text) = run_binary(&["export", "--config", &cfg, "--status", "duplicate"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("duplicates are counted, never stored as events"), "{text}");
    let empty = dir.path().join("nothing");
    let (code, text) = run_binary(&["export", "--data-dir", empty.to_str().unwrap()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("no stagehook data in"), "{text}");
}

#[test]
fn a_malformed_line_is_named_and_nothing_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let good = |id: &str| {
        serde_json::json!({
            "v": 1, "provider": "stripe", "event_id": id, "event_type": "x", "received_at_ms": 1,
            "headers": [], "body": "{}",
        })
        .to_string()
    };
    let file = dir.path().join("bad.ndjson");
    std::fs::write(&file, format!("{}\n{}\n{{\"v\":1,\"provider\":\"stripe\"\n{}\n", good("a"), good("b"), good("c")))
        .unwrap();
    let data = dir.path().join("data");
    let (code, text) = run_binary(&["import", file.to_str().unwrap(), "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("line 3:"), "{text}");
    assert!(text.contains("nothing was imported"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    // Nothing was stored: the folder was not even created.
    assert!(!data.join("db").exists(), "{text}");
    // `send --from` reads the whole file first too: nothing is sent (nothing listens at port 9).
    let cfg = config_file(dir.path());
    let (code, text) =
        run_binary(&["send", "--from", file.to_str().unwrap(), "--config", &cfg, "--server", "http://127.0.0.1:9"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("line 3:") && text.contains("nothing was sent"), "{text}");
    assert!(!text.contains("-> "), "{text}");
    let (code, text) = run_binary(&["import", "/nonexistent/export.ndjson", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("cannot read the file"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_from_an_export_reaches_a_second_stagehook_and_then_only_duplicates() {
    let a_dir = tempfile::tempdir().unwrap();
    let a = start(config(a_dir.path())).await;
    capture(&a).await;
    let (_, _, exported) = export_route(&a, "").await;
    a.stop().await;
    let file = a_dir.path().join("capture.ndjson");
    std::fs::write(&file, &exported).unwrap();

    let c_dir = tempfile::tempdir().unwrap();
    let c = start(config(c_dir.path())).await;
    let cfg = config_file(c_dir.path());
    let server = format!("http://{}", c.addr);
    let send = || run_binary_async(&["send", "--from", file.to_str().unwrap(), "--config", &cfg, "--server", &server]);
    let (code, text) = send().await;
    assert_eq!(code, 0, "{text}");
    for id in ["stripe evt_export_1", "stripe evt_export_2", "twilio SM_export_1"] {
        let line = text.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{id}: {text}"));
        assert!(line.ends_with("-> 200"), "{line}");
    }
    assert!(text.contains("sent 3: 3 accepted, 0 failed"), "{text}");
    // The second stagehook holds the same events, bodies byte for byte.
    let (_, _, received) = export_route(&c, "").await;
    let bodies = |b: &[u8]| parse_lines(b).iter().map(body_of).collect::<Vec<_>>();
    assert_eq!(bodies(&received), bodies(&exported));

    // Again: each answered as a duplicate (Stripe's receipt says so; all are counted).
    let (code, text) = send().await;
    assert_eq!(code, 0, "{text}");
    for id in ["stripe evt_export_1", "stripe evt_export_2"] {
        let line = text.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{id}: {text}"));
        assert!(line.ends_with("-> 200 duplicate"), "{line}");
    }
    let stats = c.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["duplicates"], 3, "{stats}");
    assert_eq!(stats["total_events"], 3, "{stats}");
    c.stop().await;

    // A provider the configuration cannot sign for fails that event, and the exit says so.
    let e_dir = tempfile::tempdir().unwrap();
    let e = start(config(e_dir.path())).await;
    let only_stripe = write_config(e_dir.path(), "").to_str().unwrap().to_string();
    let server = format!("http://{}", e.addr);
    let (code, text) =
        run_binary_async(&["send", "--from", file.to_str().unwrap(), "--config", &only_stripe, "--server", &server])
            .await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("twilio SM_export_1: failed:"), "{text}");
    assert!(text.contains("sent 3: 2 accepted, 1 failed"), "{text}");
    e.stop().await;
}

/// More events than one page of the store (100): the route streams them all, in the file's
/// order, each line as it was imported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_streams_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let mut file = String::new();
    for i in 0..250 {
        let line = serde_json::json!({
            "v": 1, "provider": "stripe", "event_id": format!("evt_page_{i:03}"), "event_type": "invoice.paid",
            "received_at_ms": 1_764_000_000_000i64 + i, "headers": [["content-type", "application/json"]],
            "body": format!("{{\"n\":{i}}}"),
        });
        file.push_str(&format!("{line}\n"));
    }
    let path = dir.path().join("many.ndjson");
    std::fs::write(&path, &file).unwrap();
    let data = dir.path().join("data");
    let (code, text) = run_binary(&["import", path.to_str().unwrap(), "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("imported 250 events"), "{text}");

    let s = start(config(dir.path())).await;
    let (status, _, body) = export_route(&s, "").await;
    assert_eq!(status, 200);
    let got: Vec<Value> = parse_lines(&body).into_iter().map(without_id).collect();
    let want: Vec<Value> = parse_lines(file.as_bytes());
    assert_eq!(got.len(), 250);
    assert!(got == want, "every line, in order");
    s.stop().await;
}

/// `send --from --to`: straight to the app, whose Stripe SDK accepts each event as signed now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_from_to_the_app_is_accepted_by_its_stripe_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    capture(&s).await;
    let (_, _, exported) = export_route(&s, "?provider=stripe").await;
    s.stop().await;
    let file = dir.path().join("stripe.ndjson");
    std::fs::write(&file, &exported).unwrap();

    let app = crate::fake_app::FakeApp::start().await;
    let cfg = config_file(dir.path());
    let to = app.url("/hooks/stripe");
    let (code, text) =
        run_binary_async(&["send", "--from", file.to_str().unwrap(), "--config", &cfg, "--to", &to]).await;
    assert_eq!(code, 0, "{text}");
    let received = app.wait_for(2).await;
    let bodies: Vec<Vec<u8>> = parse_lines(&exported).iter().map(body_of).collect();
    for (r, body) in received.iter().zip(&bodies) {
        assert_eq!(r.path, "/hooks/stripe");
        assert_eq!(&r.body, body, "the body byte for byte");
        let sig = r.header("stripe-signature").expect("signed");
        crate::fake_app::stripe_sdk_verify(&r.body, sig, STRIPE_SECRET, 300, crate::support::now_s())
            .unwrap_or_else(|e| panic!("{e}: {sig}"));
    }
}

/// A store with originals, edited copies of a Stripe event and of a Twilio form (each sharing its
/// parent's event id), and a body that is not UTF-8: exported, imported into an empty folder, the
/// same events, each copy linked to its parent's new id; imported again, every line a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_copies_survive_export_and_import_linked_to_their_parents() {
    let app = crate::fake_app::FakeApp::start().await;
    let a_dir = tempfile::tempdir().unwrap();
    let mut c = config(a_dir.path());
    for provider in ["stripe", "twilio"] {
        c.providers.get_mut(provider).unwrap().forward_to = vec![app.url("/hook")];
    }
    // A body that is not UTF-8, put in the store the one way one gets there: an import.
    let raw: &[u8] = b"MessageSid=SM_raw&Body=caf\xe9";
    let seed = a_dir.path().join("seed.ndjson");
    let seed_line = serde_json::json!({
        "v": 1, "provider": "twilio", "event_id": "SM_raw", "event_type": "message.received",
        "received_at_ms": 1_764_000_000_000i64, "headers": [["content-type", "application/x-www-form-urlencoded"]],
        "body_base64": base64::engine::general_purpose::STANDARD.encode(raw),
    });
    std::fs::write(&seed, format!("{seed_line}\n")).unwrap();
    let (code, text) =
        run_binary(&["import", seed.to_str().unwrap(), "--data-dir", c.server.data_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");

    let a = start(c).await;
    capture(&a).await;
    let listed = a.get("/staging/webhooks/events").await.json();
    let id_of = |event_id: &str| {
        let e = listed["events"].as_array().unwrap().iter().find(|e| e["event_id"] == event_id).unwrap();
        e["id"].as_str().unwrap().to_string()
    };
    let (stripe, sms) = (id_of("evt_export_1"), id_of("SM_export_1"));
    let edited = UNICODE_BODY.replace("Zoë", "Zoé");
    let edits = [
        (stripe.clone(), serde_json::json!({"body": edited})),
        (stripe.clone(), serde_json::json!({"body": UNICODE_BODY, "headers": {"x-run": "2"}})),
        (sms.clone(), serde_json::json!({"body": crate::support::form(&[SMS[0], SMS[1], SMS[2], ("Body", "édité")])})),
    ];
    let mut copies = Vec::new();
    for (parent, edit) in &edits {
        copies.push(edit_and_deliver(&a, parent, edit).await);
    }
    // An edit of an edited copy: a copy whose parent is a copy.
    let again = serde_json::json!({"body": UNICODE_BODY.replace("Zoë", "Zoè")});
    edit_and_deliver(&a, &copies[0], &again).await;
    let (status, _, exported) = export_route(&a, "").await;
    assert_eq!(status, 200);
    a.stop().await;
    let lines = parse_lines(&exported);
    assert_eq!(lines.len(), 8, "{lines:?}");
    let parents: Vec<Option<&str>> = lines.iter().map(|l| l.get("parent_id").and_then(Value::as_str)).collect();
    let of = [Some(stripe.as_str()), Some(stripe.as_str()), Some(sms.as_str()), Some(copies[0].as_str())];
    assert_eq!(parents, [&[None; 4][..], &of[..]].concat(), "{lines:?}");
    let file = a_dir.path().join("copies.ndjson");
    std::fs::write(&file, &exported).unwrap();

    // Originals and copies alike: all imported, then all duplicates.
    let b_dir = import_twice(&file, 8);

    let b = start(config(b_dir.path())).await;
    let (_, _, again) = export_route(&b, "").await;
    let again = parse_lines(&again);
    assert_eq!(again.len(), 8);
    // Each copy names its parent's id in this store, the line at the same place.
    let a_ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    let b_ids: Vec<&str> = again.iter().map(|l| l["id"].as_str().unwrap()).collect();
    for (a_line, b_line) in lines.iter().zip(&again) {
        let mapped = a_line.get("parent_id").map(|p| {
            let at = a_ids.iter().position(|id| p == id).unwrap();
            Value::from(b_ids[at])
        });
        assert_eq!(b_line.get("parent_id"), mapped.as_ref(), "{b_line}");
    }
    let strip = |l: &Value| {
        let mut l = l.clone();
        l.as_object_mut().unwrap().retain(|k, _| k != "id" && k != "parent_id");
        l
    };
    let (first, second): (Vec<Value>, Vec<Value>) =
        (lines.iter().map(strip).collect(), again.iter().map(strip).collect());
    assert_eq!(first, second, "the same events, bodies byte for byte, in the same order");
    assert_eq!(body_of(&again[0]), raw);
    assert_eq!(body_of(&again[4]), edited.as_bytes());
    // Copies as their page shows them: processed, nothing queued, from the import.
    for (at, parent) in [(4, 1), (5, 1), (6, 3), (7, 4)] {
        let shown = crate::support::event_json(&b, b_ids[at]).await;
        assert_eq!(shown["parent_id"], b_ids[parent], "{shown}");
        assert_eq!((shown["status"].as_str(), shown["source_ip"].as_str()), (Some("processed"), Some("import")));
        assert_eq!(shown["delivery_pending"], false, "{shown}");
    }
    b.stop().await;

    // Back into the store it came from (stopped): everything there already.
    let a_data = a_dir.path().join("data");
    let (code, text) = run_binary(&["import", file.to_str().unwrap(), "--data-dir", a_data.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("imported 0 events, skipped 8 duplicates"), "{text}");
}

/// Each line an import refuses is named, the body limit from the configuration or the flag, a
/// provider name no endpoint could have; and then nothing is imported.
#[test]
fn an_import_refuses_large_bodies_and_bad_provider_names_naming_each_line() {
    let dir = tempfile::tempdir().unwrap();
    let line = |provider: &str, event_id: &str, body: &str| {
        serde_json::json!({
            "v": 1, "provider": provider, "event_id": event_id, "event_type": "x", "received_at_ms": 1,
            "headers": [], "body": body,
        })
        .to_string()
    };
    let big = "x".repeat(100);
    let lines = [
        line("stripe", "evt_1", "{}"),
        line("stripe", "evt_big", &big),
        line("Bad/Name", "evt_2", "{}"),
        line("notify.ops", "n_1", "{}"),
        line("events", "evt_3", "{}"),
        line("stripe", "evt_4", "{}"),
    ];
    let file = dir.path().join("refused.ndjson");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("small.toml");
    std::fs::write(&cfg, format!("[server]\ndata_dir = \"{}\"\n\n[limits]\nmax_body_bytes = 64\n", data.display()))
        .unwrap();

    let (code, text) = run_binary(&["import", file.to_str().unwrap(), "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("line 2: the body is 100 bytes, over the 64-byte limit"), "{text}");
    assert!(text.contains("line 3: provider `Bad/Name` is not an endpoint name"), "{text}");
    assert!(text.contains("line 5: provider `events` is not an endpoint name"), "{text}");
    for fine in ["line 1:", "line 4:", "line 6:"] {
        assert!(!text.contains(fine), "{fine} is not refused: {text}");
    }
    assert!(text.contains("nothing was imported") && !text.contains("panicked"), "{text}");
    assert!(!data.join("db").exists(), "nothing stored: {text}");

    // The flag over the configuration: the large body fits, the names are still refused.
    let import = ["import", file.to_str().unwrap(), "--config", cfg.to_str().unwrap(), "--max-body-bytes", "100"];
    let (code, text) = run_binary(&import);
    assert_eq!(code, 1, "{text}");
    assert!(!text.contains("line 2:") && text.contains("line 3:") && text.contains("line 5:"), "{text}");
    // Below the flag's limit, and without the bad names: all of it.
    let kept: Vec<&String> = lines.iter().enumerate().filter(|(i, _)| ![2, 4].contains(i)).map(|(_, l)| l).collect();
    std::fs::write(&file, kept.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let (code, text) = run_binary(&import);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("imported 4 events, skipped 0 duplicates"), "{text}");
    let (code, text) =
        run_binary(&["import", file.to_str().unwrap(), "--data-dir", data.to_str().unwrap(), "--max-body-bytes", "0"]);
    assert_eq!(code, 2, "{text}");
}

/// A backfilled event's line says `"source":"backfill"` (a webhook's line says nothing, as
/// before); `source=` filters the export; an import keeps the source, so the event is still a
/// backfill and still not `signature_verified` in the new store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfilled_event_stays_one_through_export_and_import() {
    let a_dir = tempfile::tempdir().unwrap();
    let a = start(config(a_dir.path())).await;
    post_stripe_body(&a, PLAIN_BODY).await;
    a.store.ingest(crate::store::backfilled("evt_backfilled", crate::support::now_s() * 1000)).await.unwrap();
    let (status, _, file) = export_route(&a, "").await;
    assert_eq!(status, 200);
    let lines = parse_lines(&file);
    assert_eq!(lines.len(), 2);
    assert!(lines[0].get("source").is_none(), "a webhook's line is unchanged: {}", lines[0]);
    assert_eq!(
        (&lines[1]["event_id"], &lines[1]["source"]),
        (&Value::from("evt_backfilled"), &Value::from("backfill"))
    );
    let (_, _, only) = export_route(&a, "?source=backfill").await;
    assert_eq!(parse_lines(&only), lines[1..]);
    a.stop().await;
    // `stagehook export` takes the filter too, from the stopped folder, and writes the same line.
    let out = a_dir.path().join("backfilled.ndjson");
    let cfg = config_file(a_dir.path());
    let (code, text) =
        run_binary(&["export", "--config", &cfg, "--source", "backfill", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(parse_lines(&std::fs::read(&out).unwrap()), lines[1..]);

    let import_file = a_dir.path().join("import.ndjson");
    std::fs::write(&import_file, &file).unwrap();
    let b_dir = import_twice(&import_file, 2);
    let b = start(config(b_dir.path())).await;
    let listed = b.get("/staging/webhooks/events?source=backfill").await.json();
    let events = listed["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{listed}");
    assert_eq!(
        (&events[0]["event_id"], &events[0]["source"]),
        (&Value::from("evt_backfilled"), &Value::from("backfill"))
    );
    let shown = crate::support::event_json(&b, events[0]["id"].as_str().unwrap()).await;
    assert_eq!((&shown["source"], &shown["signature_verified"]), (&Value::from("backfill"), &Value::from(false)));
    let stats = b.get("/staging/webhooks/stats").await.json();
    assert_eq!(stats["by_provider"]["stripe"]["backfilled"], 1, "{stats}");
    let (_, _, again) = export_route(&b, "").await;
    let again: Vec<Value> = parse_lines(&again).into_iter().map(without_id).collect();
    assert_eq!(again, lines.into_iter().map(without_id).collect::<Vec<_>>(), "the same lines, source included");
    b.stop().await;
}
