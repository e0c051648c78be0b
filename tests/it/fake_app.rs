//! A stand-in for the app under test: a real HTTP server on loopback that records every request
//! and answers from a script (status, `Retry-After`, delay), can hold every answer until the
//! test releases them, and can go down and come back on the same port.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};
use warp::Filter;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply { status, retry_after: None, delay: Duration::ZERO }
    }
}

struct Shared {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Option<Reply>>,
    /// True while answers are held (see [`FakeApp::hold`]).
    held: watch::Sender<bool>,
}

impl Default for Shared {
    fn default() -> Shared {
        Shared {
            received: Mutex::default(),
            script: Mutex::default(),
            default: Mutex::default(),
            held: watch::channel(false).0,
        }
    }
}

pub struct FakeApp {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// While down: the port, bound but not listening, so connections are refused and nothing
    /// else on the machine can take it before `restart`.
    held: Option<tokio::net::TcpSocket>,
}

impl FakeApp {
    pub async fn start() -> FakeApp {
        let shared = Arc::new(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut app = FakeApp { addr, shared, stop: None, task: None, held: None };
        app.serve(listener);
        app
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let shared = self.shared.clone();
        let route = warp::any()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(move |path: warp::path::FullPath, query: String, headers: warp::http::HeaderMap, body: Bytes| {
                let shared = shared.clone();
                async move {
                    let headers = headers
                        .iter()
                        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                        .collect();
                    shared.received.lock().push(Received {
                        path: path.as_str().to_string(),
                        query,
                        headers,
                        body: body.to_vec(),
                        at: Instant::now(),
                    });
                    let reply =
                        shared.script.lock().pop_front().or(*shared.default.lock()).unwrap_or(Reply::status(200));
                    // A closed channel cannot happen: `shared` holds the sender.
                    let _ = shared.held.subscribe().wait_for(|held| !held).await;
                    tokio::time::sleep(reply.delay).await;
                    let mut res = warp::http::Response::builder().status(reply.status);
                    if let Some(secs) = reply.retry_after {
                        res = res.header("retry-after", secs.to_string());
                    }
                    res.body(format!("fake app says {}", reply.status)).unwrap()
                }
            });
        let (tx, rx) = oneshot::channel::<()>();
        let server = warp::serve(route).incoming(listener).graceful(async {
            let _ = rx.await;
        });
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(server.run()));
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests with these replies, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().extend(replies);
    }

    /// Answers with this once the script runs out.
    pub fn set_default(&self, reply: Reply) {
        *self.shared.default.lock() = Some(reply);
    }

    /// Holds every answer, to requests already waiting and to those that come, until
    /// [`FakeApp::release`]: the deliveries stay in flight for as long as the test needs.
    pub fn hold(&self) {
        self.shared.held.send_replace(true);
    }

    /// Lets the held answers go, each after its reply's delay.
    pub fn release(&self) {
        self.shared.held.send_replace(false);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().clone()
    }

    /// Stops listening: connections are refused until [`FakeApp::restart`].
    pub async fn go_down(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        // Without SO_REUSEADDR first, so that no other socket can share the port while it is
        // held; the listener's old connections in TIME_WAIT can refuse that, and then with it,
        // as the listener had it (only a socket that asks for SO_REUSEADDR and this very port
        // could then share it).
        let hold = |reuse: bool| {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_reuseaddr(reuse)?;
            socket.bind(self.addr).map(|()| socket)
        };
        let socket = hold(false)
            .or_else(|_| hold(true))
            .unwrap_or_else(|e| panic!("the fake app cannot hold {} while down: {e}", self.addr));
        self.held = Some(socket);
    }

    /// Listens again on the same port, which it held while down.
    pub async fn restart(&mut self) {
        let socket = self.held.take().expect("restart after go_down");
        let listener = socket.listen(1024).unwrap();
        self.serve(listener);
    }

    /// Waits (at most 20 s) until at least `n` requests have arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "the app received {} of {n} requests", got.len());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Verifies a Stripe signature the way stripe-python's `WebhookSignature.verify_header` does.
pub fn stripe_sdk_verify(payload: &[u8], header: &str, secret: &str, tolerance: i64, now: i64) -> Result<(), String> {
    use hmac::{Hmac, Mac};
    let items: Vec<Vec<&str>> = header.split(',').map(|i| i.splitn(2, '=').collect()).collect();
    let timestamp: i64 = items
        .iter()
        .find(|i| i[0] == "t")
        .and_then(|i| i.get(1))
        .and_then(|t| t.parse().ok())
        .ok_or("Unable to extract timestamp and signatures from header")?;
    let signatures: Vec<&str> = items.iter().filter(|i| i[0] == "v1").filter_map(|i| i.get(1).copied()).collect();
    if signatures.is_empty() {
        return Err("No signatures found with expected scheme".into());
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(payload);
    let expected = hex::encode(mac.finalize().into_bytes());
    if !signatures.iter().any(|s| *s == expected) {
        return Err("No signatures found matching the expected signature for payload".into());
    }
    if timestamp < now - tolerance {
        return Err("Timestamp outside the tolerance zone".into());
    }
    Ok(())
}

/// Validates like twilio-python's `RequestValidator.validate`: the URL with and without its
/// port, form parameters sorted, and `bodySHA256` for JSON bodies.
pub fn twilio_sdk_validate(uri: &str, body: &[u8], is_json: bool, signature: &str, token: &str) -> bool {
    use sha2::Digest;
    let params: Vec<(String, String)> =
        if is_json { Vec::new() } else { form_urlencoded::parse(body).into_owned().collect() };
    if is_json {
        let query = uri.split_once('?').map(|(_, q)| q).unwrap_or("");
        let Some((_, hash)) = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "bodySHA256") else {
            return false;
        };
        if hex::encode(sha2::Sha256::digest(body)) != hash {
            return false;
        }
    }
    let (scheme, rest) = uri.split_once("://").unwrap();
    let split = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    let host = authority.split(':').next().unwrap();
    let default_port = if scheme == "https" { 443 } else { 80 };
    let with_port =
        if authority.contains(':') { uri.to_string() } else { format!("{scheme}://{host}:{default_port}{tail}") };
    let without_port = format!("{scheme}://{host}{tail}");
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    [with_port, without_port].iter().any(|u| crate::support::twilio_signature(token, u, &pairs) == signature)
}

/// The app's own checks are judges of what stagehook delivers, so they must agree with the
/// providers' published vectors: accept what they accept, refuse what they refuse.
#[test]
fn the_sdk_style_checks_agree_with_the_published_vectors() {
    let v = crate::support::vectors();
    let stripe = v["stripe"].as_array().unwrap();
    let mut checked = 0;
    for e in stripe.iter().filter(|e| e.get("header").is_some()) {
        let (secret, payload, header) =
            (e["secret"].as_str().unwrap(), e["payload"].as_str().unwrap().as_bytes(), e["header"].as_str().unwrap());
        let tolerance = e["tolerance_s"].as_i64().unwrap();
        let (valid_at, invalid_at) = (e["valid_at"].as_i64().unwrap(), e["invalid_at"].as_i64().unwrap());
        assert_eq!(stripe_sdk_verify(payload, header, secret, tolerance, valid_at), Ok(()));
        assert!(stripe_sdk_verify(payload, header, secret, tolerance, invalid_at).is_err(), "too old");
        assert!(stripe_sdk_verify(&[payload, b" "].concat(), header, secret, tolerance, valid_at).is_err());
        assert!(stripe_sdk_verify(payload, header, "whsec_other", tolerance, valid_at).is_err());
        checked += 1;
    }
    for bad in stripe.iter().filter_map(|e| e.get("must_reject_headers")).flat_map(|h| h.as_array().unwrap()) {
        let payload = stripe[0]["payload"].as_str().unwrap().as_bytes();
        let secret = stripe[0]["secret"].as_str().unwrap();
        assert!(stripe_sdk_verify(payload, bad.as_str().unwrap(), secret, 300, 1_533_204_620).is_err(), "{bad}");
        checked += 1;
    }
    assert_eq!(checked, 8, "one signed Stripe vector and seven malformed headers");

    let twilio = v["twilio"].as_array().unwrap();
    assert_eq!(twilio.len(), 5);
    for e in twilio {
        let (url, token, signature) =
            (e["request_url"].as_str().unwrap(), e["auth_token"].as_str().unwrap(), e["signature"].as_str().unwrap());
        let (body, is_json) = match e.get("body") {
            Some(b) => (b.as_str().unwrap().to_string(), true),
            None => {
                let mut pairs = Vec::new();
                for (k, value) in e["params"].as_object().unwrap() {
                    match value {
                        serde_json::Value::Array(vs) => {
                            pairs.extend(vs.iter().map(|v| (k.clone(), v.as_str().unwrap())))
                        }
                        v => pairs.push((k.clone(), v.as_str().unwrap())),
                    }
                }
                let mut s = form_urlencoded::Serializer::new(String::new());
                for (k, v) in &pairs {
                    s.append_pair(k, v);
                }
                (s.finish(), false)
            }
        };
        assert!(twilio_sdk_validate(url, body.as_bytes(), is_json, signature, token), "{e}");
        assert!(!twilio_sdk_validate(url, body.as_bytes(), is_json, signature, "54321"), "{e}");
        let moved = url.replace("/myapp.php", "/other.php");
        assert!(!twilio_sdk_validate(&moved, body.as_bytes(), is_json, signature, token), "{e}");
    }
    // The port is stripped before comparing, as twilio-python does.
    let first = &twilio[0];
    let with_port = first["request_url"].as_str().unwrap().replace("mycompany.com", "mycompany.com:1234");
    let params: Vec<(String, String)> = first["params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();
    assert!(twilio_sdk_validate(&with_port, body.as_bytes(), false, first["signature"].as_str().unwrap(), "12345"));
}

/// Down means refused, and the port stays the app's: nothing else can take it before `restart`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_down_the_port_refuses_connections_and_stays_held() {
    let mut app = FakeApp::start().await;
    app.go_down().await;
    assert!(tokio::net::TcpStream::connect(app.addr).await.is_err(), "refused while down");
    assert!(std::net::TcpListener::bind(app.addr).is_err(), "the port is held while down");
    app.restart().await;
    let r = crate::support::request(app.addr, "POST", "/up", &[], b"x").await;
    assert_eq!(r.status, 200);
    assert_eq!(app.received().len(), 1);
}
