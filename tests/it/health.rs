//! `/healthz` and `/readyz`: the probes answer any `Host` without the token, and `/readyz`
//! answers 503 with its reason: `store_commit_failed` while the store cannot commit,
//! `store_writer_stopped` once the writer has stopped, `shutting_down` once shutdown has begun.

use serde_json::{json, Value};
use stagehook::secret::Secret;
use stagehook::{App, Clock};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::support::{config, request, start, stripe_event, until};

/// The status and JSON body of a probe, sent with a load balancer's own `Host`.
async fn probe(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let r = request(addr, "GET", path, &[("host", "10.1.2.3:8080")], b"").await;
    assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}: the security headers too");
    (r.status, r.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_any_host_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.admin_token = Some(Secret::new("probe-test-token-0123456789"));
    let s = start(c).await;
    assert_eq!(probe(s.addr, "/healthz").await, (200, json!({"status": "ok"})));
    assert_eq!(probe(s.addr, "/readyz").await, (200, json!({"status": "ok"})));
    // The same Host and no token is refused everywhere else.
    let r = request(s.addr, "GET", "/staging/webhooks/test", &[("host", "10.1.2.3:8080")], b"").await;
    assert_eq!(r.status, 403, "{}", r.text());
    // A probe takes GET only.
    let r = s.post("/readyz", &[("content-type", "application/json")], b"{}").await;
    assert_eq!((r.status, r.code().as_str()), (405, "method_not_allowed"), "{}", r.text());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_the_store_cannot_commit() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    assert_eq!(probe(s.addr, "/readyz").await.0, 200);

    // Every flush of one commit fails, as on a full disk: not ready, though alive.
    s.store.inject_flush_failures(4);
    let r = s.stripe(&stripe_event("evt_probe_disk_full")).await;
    assert_eq!(r.status, 503, "{}", r.text());
    let unavailable = json!({"status": "unavailable", "reason": "store_commit_failed"});
    assert_eq!(probe(s.addr, "/readyz").await, (503, unavailable));
    assert_eq!(probe(s.addr, "/healthz").await, (200, json!({"status": "ok"})));

    // The provider's retry commits: ready again.
    let r = s.stripe(&stripe_event("evt_probe_disk_full")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    until("readyz to recover", || async { (probe(s.addr, "/readyz").await.0 == 200).then_some(()) }).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_once_the_store_writer_has_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    assert_eq!(probe(s.addr, "/readyz").await.0, 200);
    // The writer alone stops, the server serving on.
    s.store.shutdown().await.unwrap();
    let unavailable = json!({"status": "unavailable", "reason": "store_writer_stopped"});
    assert_eq!(probe(s.addr, "/readyz").await, (503, unavailable));
    assert_eq!(probe(s.addr, "/healthz").await.0, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_once_shutdown_has_begun() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(config(dir.path()), Clock::system()).expect("open app");
    // The same state as the server's, to ask once the listener is gone.
    let routes = app.routes();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let served = tokio::spawn(app.serve(listener, async move {
        let _ = rx.await;
    }));
    assert_eq!(probe(addr, "/readyz").await.0, 200);
    tx.send(()).unwrap();
    served.await.unwrap();
    let r = warp::test::request().path("/readyz").reply(&routes).await;
    let body: Value = serde_json::from_slice(r.body()).unwrap();
    // The store is closed by now too: the reason says which came first.
    assert_eq!((r.status().as_u16(), body), (503, json!({"status": "unavailable", "reason": "shutting_down"})));
}
