//! Cross-site requests and DNS rebinding against the admin API and the dashboard, with the
//! default loopback setup (no admin token): a page the developer opens must not replay the store
//! or read it, while providers still reach ingest under any Host; `public_url`'s host,
//! `allowed_hosts` and `allowed_origins` are ours; and every URL stagehook signs for itself is
//! its own, whatever Host a request names.

use std::time::Duration;

use serde_json::{json, Value};
use stagehook::config::{Config, HumanDuration, Strategy};

use crate::fake_app::{FakeApp, Reply};
use crate::support::{self, start, stripe_event, TestServer, TWILIO_TOKEN};

const JSON: (&str, &str) = ("content-type", "application/json");
const EVIL: (&str, &str) = ("origin", "http://evil.example");

async fn event(s: &TestServer, id: &str) -> Value {
    s.get(&format!("/staging/webhooks/events/{id}")).await.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_page_cannot_replay_the_store_and_the_dashboard_can() {
    let app = FakeApp::start().await;
    app.set_default(Reply::status(400));
    let dir = tempfile::tempdir().unwrap();
    let mut c = support::config(dir.path());
    c.providers.get_mut("stripe").unwrap().forward_to = vec![app.url("/hook")];
    c.retry.strategy = Strategy::Fixed;
    c.retry.max_attempts = 1;
    c.retry.base_delay = HumanDuration(Duration::from_millis(10));
    let s = start(c).await;
    let id = s.post_stripe_event("evt_xsite").await;
    support::until("the event to be a dead letter", || async {
        let e = event(&s, &id).await;
        (e["status"] == "failed").then_some(())
    })
    .await;

    let one = format!("/staging/webhooks/events/{id}/replay");
    let text = ("content-type", "text/plain");
    let cases = [
        // fetch(url, {method: "POST", mode: "no-cors"}) with a text body: no preflight.
        ("bulk, text/plain from another origin", "/staging/webhooks/replay", vec![text, EVIL], ""),
        ("one, text/plain from another origin", one.as_str(), vec![text, EVIL], ""),
        ("bulk, JSON from another origin", "/staging/webhooks/replay", vec![JSON, EVIL], "{}"),
        // No browser sends these (it marks a cross-site request with Origin or Sec-Fetch-Site):
        // refused all the same, as 415 unsupported_media_type.
        ("bulk, text/plain with no Origin", "/staging/webhooks/replay", vec![text], ""),
        ("bulk, no Content-Type", "/staging/webhooks/replay", vec![], ""),
        ("bulk, a cross-site fetch", "/staging/webhooks/replay", vec![JSON, ("sec-fetch-site", "cross-site")], "{}"),
        ("bulk, a sandboxed page", "/staging/webhooks/replay", vec![JSON, ("origin", "null")], "{}"),
        ("login, from another origin", "/dashboard/session", vec![JSON, EVIL], r#"{"token": ""}"#),
    ];
    for (what, path, headers, body) in &cases {
        let r = s.post(path, headers, body.as_bytes()).await;
        let want = if what.contains("with no Origin") || what.contains("no Content-Type") {
            (415, "unsupported_media_type")
        } else {
            (403, "cross_origin_refused")
        };
        assert_eq!((r.status, r.code().as_str()), want, "{what}: {}", r.text());
        support::assert_security_headers(&r);
        assert!(r.header("set-cookie").is_none(), "{what}");
        // A replay commits its status change before it answers: had this one been taken, the
        // event would be queued now, or delivered again.
        let e = event(&s, &id).await;
        assert_eq!((e["status"].clone(), e["attempts"].clone()), (json!("failed"), json!(1)), "{what}: {e}");
        assert_eq!(e["delivery_pending"], false, "{what}");
    }
    assert_eq!(app.received().len(), 1, "nothing was replayed");

    // The dashboard's own request, as Chromium sends it, and a script's (no Origin).
    let host = s.addr.to_string();
    let origin = format!("http://{}", s.addr);
    let browser = [JSON, ("host", host.as_str()), ("origin", origin.as_str()), ("sec-fetch-site", "same-origin")];
    let r = s.post("/staging/webhooks/replay", &browser, br#"{"status": "failed"}"#).await;
    assert_eq!((r.status, r.json()["replayed"].clone()), (200, json!(1)), "{}", r.text());
    support::until("the dashboard's replay", || async { (event(&s, &id).await["attempts"] == 2).then_some(()) }).await;
    let r = s.post(&one, &[JSON], b"").await;
    assert_eq!((r.status, r.json()["replayed"].clone()), (200, json!(1)), "{}", r.text());
    support::until("the script's replay", || async { (event(&s, &id).await["attempts"] == 3).then_some(()) }).await;
    assert_eq!(app.received().len(), 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebinding_page_reads_nothing_while_providers_reach_ingest_under_any_host() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(support::config(dir.path())).await;
    let id = s.post_stripe_event("evt_rebind").await;
    let port = s.addr.port().to_string();
    let evil = format!("evil.example:{port}");
    for host in ["evil.example", evil.as_str(), "localhost.evil.example", "127.0.0.1.evil.example"] {
        for path in [
            "/staging/webhooks/events".to_string(),
            format!("/staging/webhooks/events/{id}"),
            format!("/staging/webhooks/events/{id}/curl"),
            "/staging/webhooks/stats".to_string(),
            "/staging/webhooks/test".to_string(),
            "/".to_string(),
            "/dashboard/app.js".to_string(),
        ] {
            let r = support::request(s.addr, "GET", &path, &[("host", host)], b"").await;
            assert_eq!((r.status, r.code().as_str()), (403, "host_not_allowed"), "{host} {path}: {}", r.text());
            assert!(!r.text().contains("evt_rebind"), "{path}");
            support::assert_security_headers(&r);
        }
        // Unknown paths and files stay 404, whatever the Host.
        assert_eq!(support::request(s.addr, "GET", "/nope", &[("host", host)], b"").await.status, 404);
        assert_eq!(support::request(s.addr, "GET", "/dashboard/nope.js", &[("host", host)], b"").await.status, 404);
        // Ingest answers any Host: providers and tunnels name it as they like.
        let event_id = format!("evt_rebind_{}", host.len());
        let r = support::post_stripe(s.addr, &stripe_event(&event_id), &[("host", host)]).await;
        assert_eq!(r.status, 200, "ingest under Host {host}: {}", r.text());
    }
    // Our own names still answer.
    let bind = s.addr.to_string();
    for host in ["127.0.0.1", bind.as_str(), "localhost", "[::1]", "127.0.0.2:1"] {
        let r = support::request(s.addr, "GET", "/staging/webhooks/stats", &[("host", host)], b"").await;
        assert_eq!(r.status, 200, "{host}: {}", r.text());
    }
    let r = support::request(s.addr, "GET", "/", &[("host", &format!("localhost:{port}"))], b"").await;
    assert_eq!(r.status, 200);
    s.stop().await;

    // With a token, the Host is refused before the token is asked for.
    let dir = tempfile::tempdir().unwrap();
    let mut c = support::config(dir.path());
    c.server.admin_token = Some(stagehook::secret::Secret::new("admin-token-0123456789abcdef"));
    let s = start(c).await;
    let auth = [("host", "evil.example"), ("authorization", "Bearer admin-token-0123456789abcdef")];
    let r = support::request(s.addr, "GET", "/staging/webhooks/events", &auth, b"").await;
    assert_eq!((r.status, r.code().as_str()), (403, "host_not_allowed"));
    let r = support::request(s.addr, "GET", "/staging/webhooks/events", &[("host", "evil.example")], b"").await;
    assert_eq!((r.status, r.code().as_str()), (403, "host_not_allowed"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_url_host_and_allowed_hosts_and_origins_are_ours() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = support::config(dir.path());
    c.server.public_url = Some("https://abc.tunnel.example".into());
    c.server.allowed_hosts = vec!["stagehook.lan".into()];
    c.server.allowed_origins = vec!["https://ui.example".into()];
    let s = start(c).await;
    for host in ["abc.tunnel.example", "ABC.tunnel.example:443", "stagehook.lan", "stagehook.lan:8080"] {
        for path in ["/staging/webhooks/events", "/staging/webhooks/stats", "/", "/dashboard/app.js"] {
            let r = support::request(s.addr, "GET", path, &[("host", host)], b"").await;
            assert_eq!(r.status, 200, "{host} {path}: {}", r.text());
        }
    }
    let r = support::request(s.addr, "GET", "/", &[("host", "tunnel.example")], b"").await;
    assert_eq!((r.status, r.code().as_str()), (403, "host_not_allowed"));

    // The dashboard through the tunnel, and a page at an allowed origin, may change things.
    let tunnel = [
        JSON,
        ("host", "abc.tunnel.example"),
        ("origin", "https://abc.tunnel.example"),
        ("sec-fetch-site", "same-origin"),
    ];
    let r = s.post("/staging/webhooks/replay", &tunnel, b"{}").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ui = [JSON, ("host", "abc.tunnel.example"), ("origin", "https://ui.example")];
    assert_eq!(s.post("/staging/webhooks/replay", &ui, b"{}").await.status, 200);
    let lan = [JSON, ("host", "stagehook.lan:8080"), ("origin", "http://stagehook.lan:8080")];
    assert_eq!(s.post("/staging/webhooks/replay", &lan, b"{}").await.status, 200);
    for origin in ["http://evil.example", "http://abc.tunnel.example.evil", "https://ui.example:8443"] {
        let h = [JSON, ("host", "abc.tunnel.example"), ("origin", origin)];
        let r = s.post("/staging/webhooks/replay", &h, b"{}").await;
        assert_eq!((r.status, r.code().as_str()), (403, "cross_origin_refused"), "{origin}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_curl_command_is_signed_for_our_own_url_whatever_the_host() {
    // Without public_url: the bind address (with the port the listener got).
    let dir = tempfile::tempdir().unwrap();
    let mut c = support::config(dir.path());
    c.server.allowed_hosts = vec!["attacker.example".into()];
    let s = start(c).await;
    let id = s.post_stripe_event("evt_host").await;
    let own = format!("http://{}/staging/webhooks/stripe", s.addr);
    for host in ["attacker.example:9999", "127.0.0.2:1", "localhost"] {
        let r = support::request(s.addr, "GET", &format!("/staging/webhooks/events/{id}/curl"), &[("host", host)], b"")
            .await;
        let v = r.json();
        assert_eq!(v["url"], own, "Host {host}: {v}");
        let cmd = v["command"].as_str().unwrap();
        assert!(cmd.contains(&format!("'{own}'")) && !cmd.contains("attacker") && !cmd.contains(":9999"), "{cmd}");
    }
    // /validate's default Twilio URL is the same base: a signature for it verifies.
    let params = [("MessageSid", "SM_BASE"), ("From", "+1"), ("To", "+2")];
    let sig = support::twilio_signature(TWILIO_TOKEN, &format!("http://{}/staging/webhooks/sms", s.addr), &params);
    let req = json!({
        "provider": "twilio",
        "payload": support::form(&params),
        "headers": {"X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"},
    });
    let r = s.post("/staging/webhooks/validate", &[JSON], req.to_string().as_bytes()).await.json();
    assert_eq!(r["signature"]["ok"], true, "{r}");
    s.stop().await;

    // With public_url: Twilio's signature is minted for it, never for the Host the caller names.
    let dir = tempfile::tempdir().unwrap();
    let mut c: Config = support::config(dir.path());
    c.server.public_url = Some("https://abc.tunnel.example/".into());
    let s = start(c).await;
    let params = [("MessageSid", "SM_HOST"), ("From", "+1"), ("To", "+2")];
    let public = "https://abc.tunnel.example/staging/webhooks/sms";
    let sig = support::twilio_signature(TWILIO_TOKEN, public, &params);
    let r = s.sms_signed_for(public, &params).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sms = s.store.find_by_event_id("twilio", "SM_HOST").unwrap().unwrap();
    let r = support::request(
        s.addr,
        "GET",
        &format!("/staging/webhooks/events/{sms}/curl"),
        &[("host", "127.0.0.1:1")],
        b"",
    )
    .await;
    let v = r.json();
    assert_eq!(v["url"], public, "{v}");
    let cmd = v["command"].as_str().unwrap();
    assert!(cmd.contains(&sig), "the original signature, since the URL is the one Twilio called: {cmd}");
    assert!(!cmd.contains("127.0.0.1:1"), "{cmd}");
    s.stop().await;
}

/// A change sent without the JSON Content-Type by a client that is no browser (curl with `-d`,
/// which sends a form type, or no type at all) is told what to add; a browser's cross-site form
/// post, which marks itself with Origin and Sec-Fetch-Site, is still refused as cross-site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_json_says_so_and_a_cross_site_form_is_still_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(support::config(dir.path())).await;
    let form = ("content-type", "application/x-www-form-urlencoded");
    for (what, headers) in
        [("curl -d", vec![form]), ("no Content-Type", vec![]), ("text/plain", vec![("content-type", "text/plain")])]
    {
        let r = s.post("/staging/webhooks/replay", &headers, b"{}").await;
        assert_eq!((r.status, r.code().as_str()), (415, "unsupported_media_type"), "{what}: {}", r.text());
        let message = r.json()["error"]["message"].as_str().unwrap_or_default().to_string();
        assert!(message.contains("-H 'Content-Type: application/json'"), "{what}: {}", r.text());
        support::assert_security_headers(&r);
    }
    // <form method=post action=http://127.0.0.1:8080/staging/webhooks/replay> on another site,
    // as a browser sends it: with and without Sec-Fetch-Site (older browsers send only Origin).
    let cases = [
        vec![form, EVIL, ("sec-fetch-site", "cross-site")],
        vec![form, EVIL],
        vec![form, ("sec-fetch-site", "cross-site")],
        vec![("content-type", "text/plain"), EVIL, ("sec-fetch-site", "cross-site")],
    ];
    for headers in &cases {
        let r = s.post("/staging/webhooks/replay", headers, b"status=failed").await;
        assert_eq!((r.status, r.code().as_str()), (403, "cross_origin_refused"), "{headers:?}: {}", r.text());
    }
    s.stop().await;
}
