//! The durable floor of the load benchmark: the least any durable receiver must do, on the same
//! stack as stagehook. Each request's Stripe signature is checked (by stagehook's own Stripe
//! verifier, so the two do the same HMAC work); its body is inserted into
//! a sled tree under a fresh key; a single writer thread commits whatever is pending as one batch
//! followed by one flush; only then is the 200 sent. Nothing else: no dedup, no JSON, no counters.
//! `scripts/loadtest.sh` runs it beside stagehook and the bare floor (`examples/floor.rs`), so
//! that stagehook's throughput reads as a share of what durability alone allows here.
//!
//! `GET /count` answers the number of stored bodies, so the script can check that every
//! answered request was stored.
//!
//! `cargo run --release --example durable_floor -- 127.0.0.1:9000 SECRET DATA_DIR`

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use stagehook::providers::stripe::Stripe;
use stagehook::providers::{Inbound, Provider};
use stagehook::secret::Secret;
use tokio::sync::oneshot;
use warp::http::{HeaderMap, StatusCode};
use warp::Filter;

// The same allocator as stagehook, so the two differ only in what they do with a request.
#[global_allocator]
static ALLOCATOR: stagehook::allocator::Allocator = stagehook::allocator::Allocator;

/// Stripe's tolerance, as stagehook's default.
const TOLERANCE_S: i64 = 300;

/// What a handler hands to the writer: the key, the body, and where to say it is on disk.
type Job = (u64, bytes::Bytes, oneshot::Sender<()>);

struct Floor {
    stripe: Stripe,
    tree: sled::Tree,
    next_key: AtomicU64,
    // Unbounded, since what is in flight is bounded by the connections: each handler waits for
    // its own answer before its connection sends another request.
    writer: mpsc::Sender<Job>,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: durable_floor ADDR SECRET DATA_DIR";
    let addr: SocketAddr = args.get(1).expect(usage).parse().expect("an address such as 127.0.0.1:9000");
    let stripe = Stripe::new("stripe", vec![Secret::new(args.get(2).expect(usage))], TOLERANCE_S);
    let db = sled::open(args.get(3).expect(usage)).expect("open the sled database");
    let tree = db.open_tree("bodies").expect("open the tree");
    // Keys are big-endian counters, so a restart on the same folder goes on after the last one.
    let first = tree.last().expect("read the last key").map_or(0, |(k, _)| key_of(&k) + 1);
    let (tx, rx) = mpsc::channel();
    let writer_tree = tree.clone();
    std::thread::spawn(move || write_groups(&db, &writer_tree, &rx));
    let floor = Arc::new(Floor { stripe, tree, next_key: AtomicU64::new(first), writer: tx });

    let count = {
        let floor = floor.clone();
        // A scan of the whole tree on the async thread: it is asked once, after the load.
        warp::get().and(warp::path!("count")).map(move || floor.tree.len().to_string())
    };
    // The same body limit as stagehook, so both read the body the same way.
    let ingest = warp::post()
        .and(warp::body::content_length_limit(1_048_576))
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .then(move |headers: HeaderMap, body: bytes::Bytes| receive(floor.clone(), headers, body));
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    println!("durable floor listening on http://{}", listener.local_addr().expect("local address"));
    warp::serve(count.or(ingest)).incoming(listener).run().await;
}

async fn receive(floor: Arc<Floor>, headers: HeaderMap, body: bytes::Bytes) -> impl warp::Reply {
    let reply = |status, text: &'static str| {
        warp::reply::with_status(warp::reply::with_header(text, "content-type", "application/json"), status)
    };
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    if floor.stripe.verify(&Inbound { headers: &headers, body: &body, url: "", now_s }).is_err() {
        return reply(StatusCode::BAD_REQUEST, r#"{"error":"signature_mismatch"}"#);
    }
    let (done, stored) = oneshot::channel();
    let key = floor.next_key.fetch_add(1, Ordering::Relaxed);
    // A writer that is gone, or one that failed to commit (it drops the sender), has not stored
    // the body: that is a 500, never a 200.
    if floor.writer.send((key, body, done)).is_err() || stored.await.is_err() {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":"not_stored"}"#);
    }
    reply(StatusCode::OK, r#"{"received":true}"#)
}

/// The one writer: whatever is pending goes into one batch and one flush, so the flush's wait for
/// the disk is shared by every request of the group, and each waiter hears only once its body is
/// on disk.
fn write_groups(db: &sled::Db, tree: &sled::Tree, jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = sled::Batch::default();
        let mut waiters = Vec::new();
        for (key, body, done) in std::iter::once(first).chain(jobs.try_iter()) {
            batch.insert(&key.to_be_bytes(), &body[..]);
            waiters.push(done);
        }
        match tree.apply_batch(batch).and_then(|()| db.flush()) {
            Ok(_) => {
                for waiter in waiters {
                    // A handler whose client has gone no longer listens; its body is stored all
                    // the same.
                    let _ = waiter.send(());
                }
            }
            // Dropping the waiters answers each of them with a 500.
            Err(e) => eprintln!("durable floor: commit failed: {e}"),
        }
    }
}

fn key_of(bytes: &[u8]) -> u64 {
    bytes.try_into().map_or(0, u64::from_be_bytes)
}
