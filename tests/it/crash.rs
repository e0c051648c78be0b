//! Durability: a 2xx means the event survives `kill -9`.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::support::{request, run_binary, spawn_binary, stripe_event, write_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_sigkill_mid_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let mut server = spawn_binary(&["serve", "--config", config.to_str().unwrap()], &[("RUST_LOG", "warn")]).await;
    let addr = server.addr;
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();

    let mut workers = Vec::new();
    for w in 0..16 {
        let acked = acked.clone();
        workers.push(tokio::spawn(async move {
            for i in 0.. {
                let event_id = format!("evt_crash_{w}_{i}");
                let body = stripe_event(&event_id);
                let raw = crate::support::stripe_request(&body, &[]);
                let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                    return;
                };
                match crate::support::exchange(stream, &raw).await {
                    Ok(r) if r.status == 200 => {
                        acked.lock().push((event_id, r.json()["id"].as_str().unwrap().to_string()))
                    }
                    Ok(r) => panic!("unexpected {}: {}", r.status, r.text()),
                    Err(_) => return,
                }
            }
        }));
    }
    // Kill once a good number of events has been acknowledged, while requests are in flight.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while acked.lock().len() < 300 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.signal("KILL");
    server.wait().await;
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().clone();
    assert!(acked.len() >= 300, "only {} acknowledged before the deadline", acked.len());

    // The folder as the kill left it is sound once the log's tail is applied, counters included.
    let data = dir.path().join("data");
    let (code, out) = run_binary(&["store", "verify", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");

    let mut server = spawn_binary(&["serve", "--config", config.to_str().unwrap()], &[("RUST_LOG", "warn")]).await;
    for (event_id, id) in &acked {
        let r = request(server.addr, "GET", &format!("/staging/webhooks/events/{id}"), &[], b"").await;
        assert_eq!(r.status, 200, "{event_id} was acknowledged as {id} but is gone");
        assert_eq!(r.json()["event_id"], event_id.as_str());
    }
    let stats = request(server.addr, "GET", "/staging/webhooks/stats", &[], b"").await.json();
    let total = stats["total_events"].as_u64().unwrap();
    assert!(total >= acked.len() as u64, "counters are durable with their events: {total} < {}", acked.len());
    server.signal("TERM");
    assert_eq!(server.wait().await.code(), Some(0));
    // And they count exactly the events there are.
    let (code, out) = run_binary(&["store", "verify", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("checked {total} events, {total} bodies")), "{total} counted: {out}");
}

/// A delivery's outcome is recorded only once the app has answered: `kill -9` while the app is
/// still holding the request leaves the job queued, and the restarted server sends the same
/// attempt again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_cut_by_sigkill_is_attempted_again_after_the_restart() {
    use std::time::Duration;

    use crate::fake_app::{FakeApp, Reply};

    let app = FakeApp::start().await;
    // The first request is held far longer than the test lives; later ones are answered at once.
    app.script([Reply { status: 200, retry_after: None, delay: Duration::from_secs(600) }]);
    let dir = tempfile::tempdir().unwrap();
    let target = app.url("/hook");
    let config = write_config(dir.path(), &format!("forward_to = [\"{target}\"]\ntimeout = \"60s\"\n"));
    let args = ["serve", "--config", config.to_str().unwrap()];
    let mut server = spawn_binary(&args, &[("RUST_LOG", "warn")]).await;
    let r = server.stripe(&stripe_event("evt_cut")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    app.wait_for(1).await;
    server.signal("KILL");
    server.wait().await;

    let mut server = spawn_binary(&args, &[("RUST_LOG", "warn")]).await;
    let got = app.wait_for(2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    for d in &got {
        assert_eq!(d.header("x-stagehook-event-id"), Some(id.as_str()));
        assert_eq!(d.header("x-stagehook-attempt"), Some("1"), "the cut attempt was not recorded");
        assert_eq!(d.body, got[0].body);
    }
    let e = crate::support::until("the event to be processed", || async {
        let e = request(server.addr, "GET", &format!("/staging/webhooks/events/{id}"), &[], b"").await.json();
        (e["status"] == "processed").then_some(e)
    })
    .await;
    assert_eq!(e["attempts"], 1, "{e}");
    assert_eq!(e["history"].as_array().unwrap().len(), 1, "{e}");
    server.signal("TERM");
    assert_eq!(server.wait().await.code(), Some(0));
}
