//! The live stream, `GET /staging/webhooks/events/stream`: new events and every change of
//! status as they happen, filters, resume with `Last-Event-ID`, a `reset` for what it cannot
//! resume, a cap on open streams, a stream outliving the idle timeout, and `stagehook tail
//! --json` reading it. A message is waited for with a generous bound; that a message did not
//! come is shown by what came instead.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::fake_app::FakeApp;
use crate::support::{self, config, start, stripe_event};

/// One message: its `event`, `id` and `data`.
#[derive(Debug, Clone)]
pub struct Message {
    pub event: String,
    pub id: String,
    pub data: Value,
}

/// An open stream, read by a task of its own; dropped, it closes.
pub struct Stream {
    pub status: u16,
    /// The id of the last message `next` gave.
    pub last_id: String,
    messages: mpsc::UnboundedReceiver<Message>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Stream {
    pub async fn open(addr: SocketAddr, query: &str, last_event_id: Option<&str>) -> Stream {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let mut req = hyper::Request::get(format!("http://{addr}/staging/webhooks/events/stream{query}"));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let res = client.request(req.body(Empty::new()).unwrap()).await.unwrap();
        let status = res.status().as_u16();
        let (tx, messages) = mpsc::unbounded_channel();
        let mut body = res.into_body();
        let reader = tokio::spawn(async move {
            let mut text = String::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(chunk) = frame.into_data() else { continue };
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = text.find("\n\n") {
                    let block: String = text.drain(..end + 2).collect();
                    let field = |name: &str| {
                        block.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim_start().to_string()))
                    };
                    // A comment (the keep-alive) has no data.
                    if let Some(data) = field("data:") {
                        let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                        let message = Message {
                            event: field("event:").unwrap_or_else(|| "message".into()),
                            id: field("id:").unwrap_or_default(),
                            data,
                        };
                        let _ = tx.send(message);
                    }
                }
            }
        });
        Stream { status, last_id: String::new(), messages, reader }
    }

    /// The next message. The bound is far above the moment it takes, so that a loaded machine
    /// does not fail the test; a stream that says nothing still does.
    pub async fn next(&mut self) -> Message {
        let m = tokio::time::timeout(Duration::from_secs(15), self.messages.recv())
            .await
            .expect("a message within 15 s")
            .expect("the stream is open");
        self.last_id = m.id.clone();
        m
    }
}

/// Waits (at most 20 s) until the server closes `conn`, reading and dropping whatever it sends.
async fn closed_by_server(mut conn: tokio::net::TcpStream, what: &str) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let read_all = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_all)
        .await
        .unwrap_or_else(|_| panic!("the server did not close {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_events_and_status_changes_arrive_and_resume_after_a_reconnect() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(support::forwarding(dir.path(), "stripe", app.url("/stripe"))).await;

    let mut stream = Stream::open(s.addr, "", None).await;
    assert_eq!(stream.status, 200);
    assert_eq!(s.stripe(&stripe_event("evt_live_1")).await.status, 200);
    let new = stream.next().await;
    assert_eq!((new.event.as_str(), new.data["event_id"].as_str()), ("event", Some("evt_live_1")), "{new:?}");
    assert_eq!(new.data["provider"], "stripe");
    assert_eq!(new.data["status"], "received");
    // Its delivery, change by change.
    let mut statuses = Vec::new();
    while statuses.last().map(String::as_str) != Some("processed") {
        let m = stream.next().await;
        assert_eq!((m.event.as_str(), &m.data["id"]), ("status", &new.data["id"]), "{m:?}");
        statuses.push(m.data["status"].as_str().unwrap().to_string());
    }
    assert_eq!(statuses, ["processing", "processed"]);
    let last_seen = stream.last_id.clone();
    drop(stream);

    // Missed while away, given on reconnect with the last id seen.
    assert_eq!(s.stripe(&stripe_event("evt_live_2")).await.status, 200);
    let mut again = Stream::open(s.addr, "", Some(&last_seen)).await;
    let m = again.next().await;
    assert_eq!((m.event.as_str(), m.data["event_id"].as_str()), ("event", Some("evt_live_2")), "{m:?}");

    // An id this stagehook never gave (another life's): a reset, then what comes next.
    let mut other = Stream::open(s.addr, "", Some("0000beef.3")).await;
    assert_eq!(other.next().await.event, "reset");
    assert_eq!(s.stripe(&stripe_event("evt_live_3")).await.status, 200);
    // evt_live_2's delivery may still be going on: its changes come too.
    let mut m = other.next().await;
    while m.event != "event" {
        m = other.next().await;
    }
    assert_eq!(m.data["event_id"], "evt_live_3");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_narrow_the_stream_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let mut sms = Stream::open(s.addr, "?provider=twilio", None).await;
    let mut all = Stream::open(s.addr, "?status=processed", None).await;
    assert_eq!(s.stripe(&stripe_event("evt_filtered")).await.status, 200);
    // Without a target, an event is recorded processed: the status filter passes it.
    assert_eq!(all.next().await.data["event_id"], "evt_filtered");
    assert_eq!(s.sms(&[("MessageSid", "SM_LIVE"), ("From", "+1555"), ("To", "+1666")]).await.status, 200);
    // The stream gives messages in the feed's order: had the stripe event passed the filter, it
    // would come first.
    assert_eq!(sms.next().await.data["event_id"], "SM_LIVE", "a stripe event on a twilio stream");
    assert_eq!(all.next().await.data["event_id"], "SM_LIVE");
    let bad = s.get("/staging/webhooks/events/stream?status=nope").await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_payload".to_string()), "{}", bad.text());
    s.stop().await;
}

/// At most MAX_STREAMS open at once; one closed makes room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let mut open = Vec::new();
    for _ in 0..32 {
        let st = Stream::open(s.addr, "", None).await;
        assert_eq!(st.status, 200);
        open.push(st);
    }
    // Bounded: a stream let in would never end.
    let refused = tokio::time::timeout(Duration::from_secs(5), s.get("/staging/webhooks/events/stream"))
        .await
        .expect("refused at once, not streamed");
    assert_eq!((refused.status, refused.code()), (503, "too_many_streams".to_string()), "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("5"));
    drop(open.pop());
    crate::support::until("a slot freed", || async {
        let st = Stream::open(s.addr, "", None).await;
        (st.status == 200).then_some(())
    })
    .await;
    drop(open);
    s.stop().await;
}

/// A stream is a response still being written: the idle timeout (which bounds the wait between
/// requests) does not end it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_outlives_the_idle_and_header_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.idle_timeout = stagehook::config::HumanDuration(Duration::from_millis(500));
    c.server.header_timeout = stagehook::config::HumanDuration(Duration::from_millis(500));
    let s = start(c).await;
    let mut stream = Stream::open(s.addr, "", None).await;
    // Two connections the timeouts do end, opened after the stream: one idle after its request,
    // one whose head never ends. Once the server has closed both, both timeouts have passed for
    // the stream too.
    use tokio::io::AsyncWriteExt;
    let mut idle = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    idle.write_all(b"GET /staging/webhooks/stats HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut headless = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    headless.write_all(b"GET /staging/webhooks/stats HTTP/1.1\r\nhost: 127.0.0.1\r\n").await.unwrap();
    closed_by_server(idle, "an idle connection").await;
    closed_by_server(headless, "a connection whose head never ends").await;
    assert_eq!(s.stripe(&stripe_event("evt_after_quiet")).await.status, 200);
    assert_eq!(stream.next().await.data["event_id"], "evt_after_quiet");
    s.stop().await;
}

/// `stagehook tail --json`: one parseable line per event, as it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_json_prints_one_parseable_line_per_event() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_stagehook"))
        .args(["tail", "--json", "--server", &format!("http://{}", s.addr)])
        .env_remove("STAGEHOOK_CONFIG")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        let line = tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await.ok()?;
        let line = line.unwrap().expect("tail runs");
        Some(serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("{line}: {e}")))
    };
    // The tail connects on its own time: events until one shows it is listening.
    let mut first = None;
    for i in 0..40 {
        assert_eq!(s.stripe(&stripe_event(&format!("evt_tail_wait_{i}"))).await.status, 200);
        if let Some(line) = next_line().await {
            first = Some(line);
            break;
        }
    }
    let first = first.expect("the tail printed the event it saw");
    assert_eq!((first["kind"].as_str(), first["provider"].as_str()), (Some("event"), Some("stripe")), "{first}");
    for id in ["evt_tail_1", "evt_tail_2"] {
        assert_eq!(s.stripe(&stripe_event(id)).await.status, 200);
        let line = next_line().await.expect("a line per event");
        assert_eq!(line["event_id"], id, "{line}");
    }
    child.kill().await.unwrap();
    s.stop().await;
}
