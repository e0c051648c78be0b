//! The bare floor of the load benchmark: a warp server on the same stack as stagehook that reads
//! each request's body and answers 200, doing nothing else. `scripts/loadtest.sh` runs it side
//! by side with stagehook so that stagehook's throughput reads as a share of what the HTTP stack
//! alone allows on this machine.
//!
//! `cargo run --release --example floor -- 127.0.0.1:9000`

use std::net::SocketAddr;

use warp::Filter;

// The same allocator as stagehook, so the two differ only in what they do with a request.
#[global_allocator]
static ALLOCATOR: stagehook::allocator::Allocator = stagehook::allocator::Allocator;

#[tokio::main]
async fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()
        .expect("an address such as 127.0.0.1:9000");
    // The same body limit as stagehook, so both read the body the same way.
    let route = warp::post().and(warp::body::content_length_limit(1_048_576)).and(warp::body::bytes()).map(
        |body: bytes::Bytes| {
            std::hint::black_box(body.len());
            warp::reply::with_header(r#"{"received":true}"#, "content-type", "application/json")
        },
    );
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    println!("floor listening on http://{}", listener.local_addr().expect("local address"));
    warp::serve(route).incoming(listener).run().await;
}
