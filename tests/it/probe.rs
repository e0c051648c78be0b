//! The probe of the `forward_to` targets (`target.reachable`), by `check-config` and
//! `/config/validate`, against real local listeners only (reachable, refused, an https target
//! answering plain bytes), and none with `--offline` or `?offline=true`: nothing here leaves
//! loopback (an unknown host is a unit test in `config/validate.rs`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};

use serde_json::Value;

use crate::support::{self, run_binary, write_config};

const USER: &str = "probeuser";
const PASSWORD: &str = "probe-password-SECRET";
const TOKEN: &str = "probe-token-SECRET";

/// A listening port: the connection is accepted by the kernel whether or not anyone reads.
fn listening() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// A port nobody listens on: bound, then released.
fn closed() -> SocketAddr {
    listening().1
}

/// A plain-TCP listener that answers every connection with bytes that are not TLS.
fn garbage() -> SocketAddr {
    let (l, addr) = listening();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { return };
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nnot tls at all");
        }
    });
    addr
}

/// The three targets, in order: reachable (with credentials in the URL), refused, TLS error.
fn targets(up: SocketAddr, down: SocketAddr, plain: SocketAddr) -> Vec<String> {
    vec![
        format!("http://{USER}:{PASSWORD}@{up}/hook?token={TOKEN}"),
        format!("http://{down}/hook"),
        format!("https://{plain}/hook"),
    ]
}

/// The `target.reachable` findings of a report, as (key, severity, message).
fn probed(report: &Value) -> Vec<(String, String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == "target.reachable")
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap().to_string();
            (s("key"), s("severity"), s("message"))
        })
        .collect()
}

fn assert_three(report: &Value, up: SocketAddr) {
    let got = probed(report);
    assert_eq!(got.len(), 3, "{report:#}");
    let (key, severity, message) = &got[0];
    assert_eq!((key.as_str(), severity.as_str()), ("providers.stripe.forward_to[0]", "ok"), "{message}");
    assert!(message.contains(&format!("http://{USER}:***@{up}/hook?token=***")), "{message}");
    assert!(message.contains("reachable"), "{message}");
    let (key, severity, message) = &got[1];
    assert_eq!((key.as_str(), severity.as_str()), ("providers.stripe.forward_to[1]", "warning"), "{message}");
    assert!(message.contains("connection refused"), "{message}");
    let (key, severity, message) = &got[2];
    assert_eq!((key.as_str(), severity.as_str()), ("providers.stripe.forward_to[2]", "warning"), "{message}");
    assert!(message.contains("TLS error"), "{message}");
    let text = report.to_string();
    assert!(!text.contains(PASSWORD) && !text.contains(TOKEN), "{text}");
}

#[test]
fn check_config_probes_each_target_unless_offline() {
    let (_up, up) = listening();
    let targets = targets(up, closed(), garbage());
    let dir = tempfile::tempdir().unwrap();
    let list = targets.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ");
    let config = write_config(dir.path(), &format!("forward_to = [{list}]\n"));
    let config = config.to_str().unwrap();

    let (code, out) = run_binary(&["check-config", "--config", config, "--json"]);
    assert_eq!(code, 0, "warnings only: {out}");
    assert_three(&serde_json::from_str(&out).unwrap(), up);

    let (code, out) = run_binary(&["check-config", "--config", config]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("target.reachable") && !out.contains(PASSWORD), "{out}");

    let (code, out) = run_binary(&["check-config", "--config", config, "--json", "--offline"]);
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert!(probed(&report).is_empty(), "--offline probes nothing: {report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_validate_probes_each_target_unless_offline() {
    let (_up, up) = listening();
    let dir = tempfile::tempdir().unwrap();
    let mut c = support::config(dir.path());
    c.providers.get_mut("stripe").unwrap().forward_to = targets(up, closed(), garbage());
    let s = support::start(c).await;
    let r = s.get("/staging/webhooks/config/validate").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_three(&r.json(), up);
    let r = s.get("/staging/webhooks/config/validate?offline=true").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(probed(&r.json()).is_empty(), "{}", r.text());
    s.stop().await;
}
