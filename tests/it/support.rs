//! Test support: start the server, speak raw HTTP/1.1 to it, and sign requests the way each
//! provider does (written here independently of the code under test).

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use stagehook::config::Config;
use stagehook::providers::{stripe, twilio};
use stagehook::secret::Secret;
use stagehook::store::Store;
use stagehook::{App, Clock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const STRIPE_SECRET: &str = "whsec_test_0123456789abcdef0123456789abcdef";
pub const TWILIO_TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// A config with both providers set up and its data in `dir`.
pub fn config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.server.data_dir = dir.join("data");
    c.server.bind = "127.0.0.1:0".parse().unwrap();
    c.providers
        .insert("stripe".into(), stripe::Settings { secret: Some(Secret::new(STRIPE_SECRET)), ..Default::default() });
    c.providers.insert(
        "twilio".into(),
        twilio::Settings { auth_token: Some(Secret::new(TWILIO_TOKEN)), ..Default::default() },
    );
    c
}

/// [`config`], with `provider`'s events forwarded to `target` (a fake app's URL).
pub fn forwarding(dir: &Path, provider: &str, target: String) -> Config {
    let mut c = config(dir);
    c.providers.get_mut(provider).unwrap().forward_to = vec![target];
    c
}

/// The real server, in-process, on a free port.
pub struct TestServer {
    pub addr: SocketAddr,
    pub store: Store,
    pub clock: Clock,
    /// The engine and the evaluator, for their counts of passes and evaluations: what a test
    /// waits for before it says that nothing more happened.
    pub engine: Arc<stagehook::delivery::Engine>,
    pub alerts: Arc<stagehook::alerts::Alerts>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

pub async fn start(config: Config) -> TestServer {
    start_with_clock(config, Clock::system()).await
}

pub async fn start_with_clock(config: Config, clock: Clock) -> TestServer {
    let app = App::open(config, clock.clone()).expect("open app");
    let store = app.store().clone();
    let (engine, alerts) = (app.engine().clone(), app.alerts().clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.serve(listener, async move {
        let _ = rx.await;
    }));
    TestServer { addr, store, clock, engine, alerts, shutdown: Some(tx), handle: Some(handle) }
}

impl TestServer {
    /// Graceful stop: in-flight requests finish and the store is flushed and closed.
    pub async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        self.handle.take().unwrap().await.unwrap();
    }

    pub async fn get(&self, path: &str) -> Resp {
        request(self.addr, "GET", path, &[], b"").await
    }

    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        request(self.addr, "POST", path, headers, body).await
    }

    /// Posts a correctly signed Stripe event.
    pub async fn stripe(&self, body: &str) -> Resp {
        post_stripe(self.addr, body, &[]).await
    }

    /// Posts a Stripe event signed at the server's own clock, which the test may have moved
    /// away from the wall clock [`TestServer::stripe`] signs at.
    pub async fn stripe_at_its_clock(&self, body: &str) -> Resp {
        let sig = stripe_header(STRIPE_SECRET, self.clock.now_s(), body.as_bytes());
        let headers = [("content-type", "application/json"), ("stripe-signature", sig.as_str())];
        self.post("/staging/webhooks/stripe", &headers, body.as_bytes()).await
    }

    /// Posts the minimal Stripe event `event_id` and returns the id it is stored under.
    pub async fn post_stripe_event(&self, event_id: &str) -> String {
        self.stripe_id(&stripe_event(event_id)).await
    }

    /// Posts a correctly signed Stripe `body` and returns the id it is stored under.
    pub async fn stripe_id(&self, body: &str) -> String {
        self.stripe(body).await.json()["id"].as_str().unwrap().to_string()
    }

    /// Posts a JSON body (or none) to `path`.
    pub async fn post_json(&self, path: &str, body: &[u8]) -> Resp {
        self.post(path, &[("content-type", "application/json")], body).await
    }

    /// `GET /staging/webhooks/recovery/stats`, as JSON.
    pub async fn recovery(&self) -> Value {
        self.get("/staging/webhooks/recovery/stats").await.json()
    }

    /// Posts a Twilio form to `/sms`, signed for the URL Twilio would have called as these
    /// requests arrive (`Host: 127.0.0.1`, no `public_url`).
    pub async fn sms(&self, params: &[(&str, &str)]) -> Resp {
        self.sms_signed_for("http://127.0.0.1/staging/webhooks/sms", params).await
    }

    /// Posts a Twilio form to `/sms`, signed for `url` (a `public_url`'s).
    pub async fn sms_signed_for(&self, url: &str, params: &[(&str, &str)]) -> Resp {
        let sig = twilio_signature(TWILIO_TOKEN, url, params);
        let headers = [("content-type", "application/x-www-form-urlencoded"), ("x-twilio-signature", sig.as_str())];
        self.post("/staging/webhooks/sms", &headers, form(params).as_bytes()).await
    }
}

pub fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A minimal valid Stripe event.
pub fn stripe_event(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","object":"event","type":"payment_intent.succeeded","created":1700000000,"livemode":false,"data":{{"object":{{"id":"pi_1","object":"payment_intent","amount":2000}}}}}}"#
    )
}

/// The raw bytes of a Stripe request signed now with the test secret, plus `extra` headers.
pub fn stripe_request(body: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let sig = stripe_header(STRIPE_SECRET, now_s(), body.as_bytes());
    let mut headers = vec![("content-type", "application/json"), ("stripe-signature", sig.as_str())];
    headers.extend_from_slice(extra);
    build("POST", "/staging/webhooks/stripe", &headers, body.as_bytes())
}

/// Sends a correctly signed Stripe event to `addr`.
pub async fn post_stripe(addr: SocketAddr, body: &str, extra: &[(&str, &str)]) -> Resp {
    send(addr, &stripe_request(body, extra)).await
}

pub fn stripe_header(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Twilio's signature: base64 HMAC-SHA1 over the URL and the sorted name+value pairs.
pub fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub fn form(params: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The stable error code of a refusal.
    pub fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or("").to_string()
    }
}

pub async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    send(addr, &build(method, path, headers, body)).await
}

/// Sends raw request bytes on a new connection to `addr` and reads the response.
async fn send(addr: SocketAddr, raw: &[u8]) -> Resp {
    let stream = TcpStream::connect(addr).await.expect("connect");
    exchange(stream, raw).await.expect("exchange")
}

/// The same request from another loopback source address (127.0.0.2, ...): a different client IP.
pub async fn request_from(
    src: IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(src, 0)).unwrap();
    let stream = socket.connect(addr).await.expect("connect");
    exchange(stream, &build(method, path, headers, body)).await.expect("exchange")
}

pub fn build(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("host: 127.0.0.1\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding") || k.eq_ignore_ascii_case("content-length"))
    {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Writes raw request bytes and reads the response: up to its Content-Length when it has one
/// (chromedriver says `Connection: close` but keeps the socket open), else to EOF. A server may
/// answer (e.g. 413) and close before it has read all of a large body, so a failed write is not an
/// error here.
pub async fn exchange(mut stream: TcpStream, raw: &[u8]) -> std::io::Result<Resp> {
    let _ = stream.write_all(raw).await;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let read = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if let Some(len) = content_length(&buf[..end]) {
                if buf.len() >= end + 4 + len {
                    break Ok(());
                }
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) => break Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => break Err(e),
        }
    };
    if buf.is_empty() {
        read?;
        return Err(std::io::Error::other("empty response"));
    }
    Ok(parse(&buf))
}

fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head).split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok()).flatten()
    })
}

pub fn parse(buf: &[u8]) -> Resp {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Resp { status, headers, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[nl + 2 + size + 2..];
    }
    out
}

/// The security headers every response must carry.
const SECURITY_HEADERS: [(&str, &str); 6] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("x-xss-protection", "1; mode=block"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("content-security-policy", "default-src 'none'"),
    ("cache-control", "no-cache, no-store, must-revalidate"),
];

/// Asserts the security headers every response must carry.
pub fn assert_security_headers(r: &Resp) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(r.header(name), Some(value), "{name} on a {} response", r.status);
    }
}

/// The security headers of a page that sets its own Content-Security-Policy.
pub fn assert_security_headers_except_csp(r: &Resp) {
    for (name, value) in SECURITY_HEADERS.into_iter().filter(|(name, _)| *name != "content-security-policy") {
        assert_eq!(r.header(name), Some(value), "{name} on a {} response", r.status);
    }
}

/// The published signature vectors, copied from the providers' SDK test suites.
pub fn vectors() -> Value {
    let text = include_str!("../vectors/signatures.json");
    serde_json::from_str(text).unwrap()
}

/// The (secret, payload, header) of each of `kind`'s published signature vectors.
pub fn signed_vectors(kind: &str) -> Vec<(String, String, String)> {
    let v = vectors();
    let s = |e: &Value, k: &str| e[k].as_str().unwrap().to_string();
    v[kind].as_array().unwrap().iter().map(|e| (s(e, "secret"), s(e, "payload"), s(e, "header"))).collect()
}

/// The real `stagehook` binary as a child process.
pub struct ChildServer {
    pub addr: SocketAddr,
    pub child: tokio::process::Child,
    pub stdout: std::sync::Arc<parking_lot::Mutex<String>>,
    pub stderr: std::sync::Arc<parking_lot::Mutex<String>>,
    /// The tasks that read stdout and stderr; they end at end of file, after the exit.
    readers: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts `stagehook <args>` and waits for its "listening on" line.
pub async fn spawn_binary(args: &[&str], env: &[(&str, &str)]) -> ChildServer {
    use std::process::Stdio;
    use tokio::io::AsyncBufReadExt;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_stagehook"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    // A clean environment: a `STAGEHOOK_*` or secret variable in the developer's shell must not
    // change what a test sees.
    cmd.env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn stagehook");
    let stdout = std::sync::Arc::new(parking_lot::Mutex::new(String::new()));
    let stderr = std::sync::Arc::new(parking_lot::Mutex::new(String::new()));
    let mut out_lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let err_lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut readers = vec![keep_reading(err_lines, stderr.clone())];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let addr = loop {
        let line = tokio::time::timeout_at(deadline, out_lines.next_line()).await;
        match line {
            Ok(Ok(Some(l))) => {
                stdout.lock().push_str(&format!("{l}\n"));
                if let Some(a) = l.split("listening on http://").nth(1) {
                    break a.trim().parse().unwrap();
                }
            }
            other => panic!("stagehook did not start ({other:?}); stderr: {}", stderr.lock()),
        }
    };
    readers.push(keep_reading(out_lines, stdout.clone()));
    ChildServer { addr, child, stdout, stderr, readers }
}

/// Appends each line the child writes to `into`, until end of file.
fn keep_reading<R>(
    mut lines: tokio::io::Lines<tokio::io::BufReader<R>>,
    into: std::sync::Arc<parking_lot::Mutex<String>>,
) -> tokio::task::JoinHandle<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            let mut s = into.lock();
            s.push_str(&l);
            s.push('\n');
        }
    })
}

impl ChildServer {
    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running") as libc::pid_t;
        let signo = match sig {
            "TERM" => libc::SIGTERM,
            "INT" => libc::SIGINT,
            "KILL" => libc::SIGKILL,
            "STOP" => libc::SIGSTOP,
            "CONT" => libc::SIGCONT,
            other => panic!("unknown signal {other}"),
        };
        // SAFETY: kill(2) with a pid we spawned and still own; it touches no memory of ours.
        let rc = unsafe { libc::kill(pid, signo) };
        assert_eq!(rc, 0, "kill -{sig} {pid}");
    }

    /// Waits for the exit, at most 30 s, and for its last output to be read: the readers may
    /// still be taking in the final lines when the process is gone.
    pub async fn wait(&mut self) -> std::process::ExitStatus {
        let status = tokio::time::timeout(std::time::Duration::from_secs(30), self.child.wait())
            .await
            .expect("exit in time")
            .unwrap();
        for reader in self.readers.drain(..) {
            // A grandchild holding the pipes open must not hang the test: 5 s, then go on.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), reader).await;
        }
        status
    }

    pub async fn stripe(&self, body: &str) -> Resp {
        post_stripe(self.addr, body, &[]).await
    }
}

/// Writes a config file for the binary: free port, the data dir, limiter off, Stripe set up.
pub fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("staging.toml");
    let text = format!(
        "[server]\nbind = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n[limits]\nrate_limit_per_minute = 0\n\n[providers.stripe]\nsecret = \"{STRIPE_SECRET}\"\n{extra}",
        dir.join("data").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the binary to completion and returns (exit code, stdout + stderr).
pub fn run_binary(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stagehook")).args(args).env_clear().output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// [`run_binary`] on a blocking thread, for a test whose runtime must go on serving meanwhile
/// (the binary talks to a server or a fake app in this process).
/// The arguments are copied at the call, so the future borrows nothing.
pub fn run_binary_async(args: &[&str]) -> impl std::future::Future<Output = (i32, String)> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    async move {
        tokio::task::spawn_blocking(move || run_binary(&args.iter().map(String::as_str).collect::<Vec<_>>()))
            .await
            .unwrap()
    }
}

/// Polls `check` until it yields a value (at most 20 s).
pub async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `GET /staging/webhooks/events/{id}`, as JSON.
pub async fn event_json(s: &TestServer, id: &str) -> Value {
    s.get(&format!("/staging/webhooks/events/{id}")).await.json()
}

/// Polls the event until its status is `status` (at most 20 s), and returns it.
pub async fn wait_status(s: &TestServer, id: &str, status: &str) -> Value {
    until(&format!("{id} to be {status}"), || async {
        let e = event_json(s, id).await;
        (e["status"] == status).then_some(e)
    })
    .await
}

/// A Stripe request whose signature cannot match: refused `invalid_signature`, counted and kept
/// in the rejection log.
pub async fn post_badly_signed(addr: SocketAddr) -> Resp {
    request(
        addr,
        "POST",
        "/staging/webhooks/stripe",
        &[("content-type", "application/json"), ("stripe-signature", "t=1,v1=00")],
        b"{}",
    )
    .await
}

/// Waits until the evaluator has finished two evaluations since the call. The second began after
/// the call, so whatever it had to say about what happened before the call is recorded by then.
pub async fn two_evaluations(s: &TestServer) {
    let from = s.alerts.evaluations();
    until("two evaluations of the rules", || async { (s.alerts.evaluations() >= from + 2).then_some(()) }).await;
}
