//! Durability: a 2xx means the event survives `kill -9`.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::support::{request, spawn_binary, stripe_event, write_config};

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
}
