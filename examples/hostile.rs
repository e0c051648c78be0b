//! Hostile clients against a running stagehook, with genuine signed Stripe events sent beside
//! them, one phase per attack. For each phase it prints one Markdown table row: the genuine
//! requests' success rate, p50 and p99, stagehook's peak RSS and open descriptors, and what the
//! server counted (evicted, refused, timed out).
//!
//! `cargo run --release --example hostile -- ADDR PID SECRET [PHASE_SECONDS] [IDLE]`
//!
//! stagehook must trust 127.0.0.1 as a proxy (`server.trusted_proxies`): genuine events come
//! through it from 64 provider addresses (`X-Forwarded-For`), and the spoofing attacks use it too.
//! The idle-connection attack opens IDLE (20 000) connections from 127.0.0.2 and up, half of
//! them from a child process, since one process may hold only so many descriptors.
//!
//! `PHASES=slow-body-flood,none` runs only the phases whose names (spaces as `-`) start so.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stagehook::providers::stripe::signature_header;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Genuine events a second, as a busy provider sends them, each on a new connection.
const GENUINE_PER_SECOND: u64 = 50;
/// A genuine request not answered within this is a failure.
const GENUINE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an idle attacker sends another header line, and looks for closed connections.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(5);
/// Source addresses for the connection attacks: 127.0.0.2 to 127.0.0.51.
const ATTACK_SOURCES: u32 = 50;
/// Source addresses of the slow-body flood: 127.0.0.2 to 127.0.0.201.
const FLOOD_SOURCES: u32 = 200;
/// Slow bodies in the flood: twice the default `server.max_connections` (6 000).
const FLOOD_BODIES: usize = 12_000;
/// How long after the flood its memory is measured again.
const SETTLE: Duration = Duration::from_secs(30);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    if args.get(1).map(String::as_str) == Some("--idle-worker") {
        let addr: SocketAddr = args[2].parse().expect("ADDR");
        let count: usize = args[3].parse().expect("COUNT");
        let seconds: u64 = args[4].parse().expect("SECONDS");
        let opened = runtime.block_on(idle_connections(addr, count, 1, Duration::from_secs(seconds)));
        println!("{opened}");
        return;
    }
    let usage = "usage: hostile ADDR PID SECRET [PHASE_SECONDS] [IDLE]";
    let addr: SocketAddr = args.get(1).and_then(|a| a.parse().ok()).expect(usage);
    let pid: u32 = args.get(2).and_then(|a| a.parse().ok()).expect(usage);
    let secret = args.get(3).expect(usage).clone();
    let phase_s: u64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(20);
    let idle: usize = args.get(5).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    runtime.block_on(run(addr, pid, secret, Duration::from_secs(phase_s), idle));
}

async fn run(addr: SocketAddr, pid: u32, secret: String, phase: Duration, idle: usize) {
    println!(
        "| attack | attack load | genuine sent | genuine ok | success | p50 ms | p99 ms | RSS before MB | peak RSS MB | RSS 30 s after MB | peak fds | evicted | refused | timeouts (head/idle/body) | body too slow / refused for bytes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let phases: [(&str, Attack); 6] = [
        ("none", Attack::None),
        ("idle half-sent requests", Attack::Idle(idle)),
        ("slow bodies", Attack::SlowBodies(2000)),
        ("slow-body flood past max_connections", Attack::SlowFlood(FLOOD_BODIES)),
        ("huge headers", Attack::HugeHeaders(64)),
        ("spoofed-IP flood via proxy", Attack::Spoofed(64)),
    ];
    let only = std::env::var("PHASES").ok().filter(|p| !p.is_empty());
    for (name, attack) in phases {
        if only.as_ref().is_some_and(|o| !o.split(',').any(|p| name.replace(' ', "-").starts_with(p))) {
            continue;
        }
        let rss_before = rss_kb(pid);
        let before = server_counters(addr).await;
        let monitor = Monitor::start(pid);
        let stop = Arc::new(AtomicBool::new(false));
        let load = Arc::new(AtomicU64::new(0));
        let attacking =
            tokio::spawn(attack.clone().run(addr, phase + Duration::from_secs(3), stop.clone(), load.clone()));
        // Let the attack build up before the genuine traffic starts.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let latencies = genuine(addr, &secret, phase).await;
        stop.store(true, Ordering::Relaxed);
        let attack_load = attacking.await.unwrap_or(0).max(load.load(Ordering::Relaxed));
        let (peak_kb, fds) = monitor.stop();
        let after = server_counters(addr).await;
        // What the server keeps once the attack is over: only for the flood, which is about it.
        let settled = if matches!(attack, Attack::SlowFlood(_)) {
            tokio::time::sleep(SETTLE).await;
            format!("{}", rss_kb(pid) / 1024)
        } else {
            "-".to_string()
        };
        let delta = |k: &str| after[k].as_u64().unwrap_or(0) - before[k].as_u64().unwrap_or(0);
        let sent = latencies.len();
        let mut ok: Vec<f64> = latencies.iter().flatten().map(|d| d.as_secs_f64() * 1000.0).collect();
        ok.sort_by(f64::total_cmp);
        let pct = |p: f64| if ok.is_empty() { f64::NAN } else { ok[((ok.len() - 1) as f64 * p).round() as usize] };
        println!(
            "| {name} | {} | {sent} | {} | {:.2} % | {:.2} | {:.2} | {} | {} | {settled} | {fds} | {} | {} | {}/{}/{} | {}/{} |",
            attack.describe(attack_load),
            ok.len(),
            100.0 * ok.len() as f64 / sent.max(1) as f64,
            pct(0.5),
            pct(0.99),
            rss_before / 1024,
            peak_kb / 1024,
            delta("evicted"),
            delta("refused"),
            delta("header_timeouts"),
            delta("idle_timeouts"),
            delta("body_timeouts"),
            delta("body_too_slow"),
            delta("body_bytes_refused"),
        );
        // Let the server close what the attack left before the next phase.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[derive(Clone)]
enum Attack {
    None,
    /// Connections that send half a request head and then a header line every few seconds.
    Idle(usize),
    /// Requests that declare 1 MiB and send a byte a second, each from a spoofed address.
    SlowBodies(usize),
    /// This many slow bodies at a time, more than `max_connections`, from 200 addresses: half
    /// declare 1 000 bytes and send one (they hold connections), half declare 1 MiB and send
    /// 16 KiB at once (they hold memory); then a byte a second. One that is closed or refused
    /// starts again a second later.
    SlowFlood(usize),
    /// This many connections sending requests with ~60 KB of headers, and some over the limit.
    HugeHeaders(usize),
    /// This many connections sending badly signed requests, each from a new spoofed address.
    Spoofed(usize),
}

impl Attack {
    /// Runs until `stop`, or `max` at the latest; returns what it counts in `load`.
    async fn run(self, addr: SocketAddr, max: Duration, stop: Arc<AtomicBool>, load: Arc<AtomicU64>) -> u64 {
        let until = Instant::now() + max;
        match self {
            Attack::None => 0,
            Attack::Idle(n) => {
                // Half here, half in a child process: each process has its own descriptor limit.
                let child = std::process::Command::new(std::env::current_exe().expect("own path"))
                    .args(["--idle-worker", &addr.to_string(), &(n / 2).to_string(), &max.as_secs().to_string()])
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("start the idle worker");
                let here = idle_connections(addr, n - n / 2, ATTACK_SOURCES / 2 + 1, max).await;
                let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
                here + String::from_utf8_lossy(&out.stdout).trim().parse::<u64>().unwrap_or(0)
            }
            Attack::SlowBodies(n) => {
                let tasks: Vec<_> = (0..n)
                    .map(|i| {
                        let (stop, load) = (stop.clone(), load.clone());
                        tokio::spawn(async move {
                            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                                load.fetch_add(1, Ordering::Relaxed);
                                let Ok(mut s) = connect_from(addr, source(i as u32)).await else {
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                    continue;
                                };
                                let head = format!(
                                    "POST /staging/webhooks/stripe HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                                     x-forwarded-for: {}\r\nstripe-signature: t=1,v1=00\r\ncontent-length: 1048576\r\n\r\n",
                                    spoofed(fastrand::u64(..))
                                );
                                if s.write_all(head.as_bytes()).await.is_err() {
                                    continue;
                                }
                                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                                    tokio::time::sleep(Duration::from_secs(1)).await;
                                    if s.write_all(b"x").await.is_err() {
                                        break;
                                    }
                                }
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    let _ = t.await;
                }
                load.load(Ordering::Relaxed)
            }
            Attack::SlowFlood(n) => {
                let tasks: Vec<_> = (0..n)
                    .map(|i| {
                        let (stop, load) = (stop.clone(), load.clone());
                        tokio::spawn(async move {
                            let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i as u32 % FLOOD_SOURCES) as u8));
                            let (declared, first) = if i % 2 == 0 { (1000, 1) } else { (1 << 20, 16 * 1024) };
                            let head = format!(
                                "POST /staging/webhooks/stripe HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                                 stripe-signature: t=1,v1=00\r\ncontent-length: {declared}\r\n\r\n"
                            );
                            let mut request = head.into_bytes();
                            request.resize(request.len() + first, b' ');
                            // Spread over the first second, as a real flood ramps up.
                            tokio::time::sleep(Duration::from_millis(fastrand::u64(..1000))).await;
                            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                                load.fetch_add(1, Ordering::Relaxed);
                                if let Ok(mut s) = connect_from(addr, src).await {
                                    if s.write_all(&request).await.is_ok() {
                                        let mut buf = [0u8; 512];
                                        loop {
                                            tokio::select! {
                                                // Answered (408, 503) or closed: start again.
                                                _ = s.read(&mut buf) => break,
                                                () = tokio::time::sleep(Duration::from_secs(1)) => {
                                                    if stop.load(Ordering::Relaxed) || Instant::now() >= until
                                                        || s.write_all(b" ").await.is_err() {
                                                        break;
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    let _ = t.await;
                }
                load.load(Ordering::Relaxed)
            }
            Attack::HugeHeaders(n) | Attack::Spoofed(n) => {
                let huge = matches!(self, Attack::HugeHeaders(_));
                let tasks: Vec<_> = (0..n)
                    .map(|i| {
                        let (stop, load) = (stop.clone(), load.clone());
                        tokio::spawn(async move {
                            let filler = "a".repeat(4000);
                            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                                let mut req = format!(
                                    "POST /staging/webhooks/stripe HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
                                     content-type: application/json\r\nstripe-signature: t=1,v1=00\r\n\
                                     x-forwarded-for: {}\r\ncontent-length: 2\r\n",
                                    spoofed(fastrand::u64(..))
                                );
                                if huge {
                                    // 15 headers of 4 KB fit under 64 KiB; every tenth request has 20.
                                    let count = if fastrand::u8(..10) == 0 { 20 } else { 15 };
                                    for h in 0..count {
                                        req.push_str(&format!("x-filler-{h}: {filler}\r\n"));
                                    }
                                }
                                req.push_str("\r\n{}");
                                load.fetch_add(1, Ordering::Relaxed);
                                let _ = tokio::time::timeout(
                                    Duration::from_secs(5),
                                    exchange(addr, source(i as u32), &req),
                                )
                                .await;
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    let _ = t.await;
                }
                load.load(Ordering::Relaxed)
            }
        }
    }

    fn describe(&self, load: u64) -> String {
        match self {
            Attack::None => "-".into(),
            Attack::Idle(n) => format!("{n} connections, {load} opened"),
            Attack::SlowBodies(n) => format!("{n} at a time, {load} started"),
            Attack::SlowFlood(n) => format!("{n} at a time from {FLOOD_SOURCES} addresses, {load} started"),
            Attack::HugeHeaders(n) => format!("{n} at a time, {load} sent"),
            Attack::Spoofed(n) => format!("{n} at a time, {load} sent"),
        }
    }
}

/// Opens `count` connections that each send half a request head and a header line every 5 s,
/// opening another in the next round when the server closes one; returns how many connections were opened.
async fn idle_connections(addr: SocketAddr, count: usize, first_source: u32, max: Duration) -> u64 {
    let opened = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + max;
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let opened = opened.clone();
            tokio::spawn(async move {
                let src = source(first_source + i as u32 % (ATTACK_SOURCES / 2));
                let mut first = true;
                while Instant::now() < until {
                    // Like slowloris, a closed connection is noticed and opened again at the
                    // next keep-alive round, not at once.
                    if !first {
                        tokio::time::sleep(KEEP_ALIVE_EVERY).await;
                    }
                    first = false;
                    let Ok(mut s) = connect_from(addr, src).await else { continue };
                    opened.fetch_add(1, Ordering::Relaxed);
                    if s.write_all(b"POST /staging/webhooks/stripe HTTP/1.1\r\nHost: x\r\n").await.is_err() {
                        continue;
                    }
                    let mut buf = [0u8; 512];
                    loop {
                        tokio::select! {
                            read = s.read(&mut buf) => if matches!(read, Ok(0) | Err(_)) { break },
                            () = tokio::time::sleep(KEEP_ALIVE_EVERY) => {
                                if Instant::now() >= until || s.write_all(b"X-Keep: going\r\n").await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    opened.load(Ordering::Relaxed)
}

/// Sends genuine signed events for `phase`, each on a new connection from 127.0.0.1 with one of
/// 64 provider addresses in `X-Forwarded-For`; the latency of each, or `None` when it failed.
async fn genuine(addr: SocketAddr, secret: &str, phase: Duration) -> Vec<Option<Duration>> {
    let run = ulid::Ulid::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / GENUINE_PER_SECOND));
    let end = Instant::now() + phase;
    let mut tasks = Vec::new();
    let mut i = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let body = format!(
            r#"{{"id":"evt_{run}_{i}","object":"event","type":"payment_intent.succeeded","created":{now},"livemode":false,"data":{{"object":{{"id":"pi_{i}","object":"payment_intent","amount":2000}}}}}}"#
        );
        let req = format!(
            "POST /staging/webhooks/stripe HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\n\
             stripe-signature: {}\r\nx-forwarded-for: 198.51.100.{}\r\ncontent-length: {}\r\n\r\n{body}",
            signature_header(secret, now, body.as_bytes()),
            i % 64,
            body.len()
        );
        i += 1;
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            match tokio::time::timeout(GENUINE_TIMEOUT, exchange(addr, IpAddr::V4(Ipv4Addr::LOCALHOST), &req)).await {
                Ok(Ok(200)) => Ok(started.elapsed()),
                Ok(Ok(status)) => Err(format!("status {status}")),
                Ok(Err(e)) => Err(format!("error: {}", e.kind())),
                Err(_) => Err("no answer within 5 s".to_string()),
            }
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    let mut failures = std::collections::BTreeMap::<String, u64>::new();
    for t in tasks {
        match t.await.unwrap_or_else(|e| Err(e.to_string())) {
            Ok(d) => out.push(Some(d)),
            Err(why) => {
                *failures.entry(why).or_default() += 1;
                out.push(None);
            }
        }
    }
    // Why the genuine requests that failed did, beside the table (on stderr).
    if !failures.is_empty() {
        eprintln!("genuine failures: {failures:?}");
    }
    out
}

/// Sends one request and returns the answer's status.
async fn exchange(addr: SocketAddr, src: IpAddr, req: &str) -> std::io::Result<u16> {
    let mut s = connect_from(addr, src).await?;
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let status = std::str::from_utf8(buf.get(9..12).unwrap_or_default()).ok().and_then(|s| s.parse().ok());
    status.ok_or_else(|| std::io::Error::other("no status line"))
}

async fn connect_from(addr: SocketAddr, src: IpAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(src, 0))?;
    socket.connect(addr).await
}

fn source(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % ATTACK_SOURCES) as u8))
}

/// A spoofed client address: IPv4 or IPv6, from the documentation ranges and beyond.
fn spoofed(r: u64) -> String {
    if r.is_multiple_of(2) {
        Ipv4Addr::from((r >> 8) as u32).to_string()
    } else {
        std::net::Ipv6Addr::from(((r as u128) << 64) | r as u128).to_string()
    }
}

/// The server's resident memory now, in KiB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Samples the server's resident memory and open descriptors every 100 ms.
struct Monitor {
    stop: Arc<AtomicBool>,
    rss_kb: Arc<AtomicU64>,
    fds: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Monitor {
    fn start(pid: u32) -> Monitor {
        let (stop, rss_kb, fds) =
            (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let thread = {
            let (stop, rss_kb, fds) = (stop.clone(), rss_kb.clone(), fds.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    rss_kb.fetch_max(crate::rss_kb(pid), Ordering::Relaxed);
                    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0);
                    fds.fetch_max(open, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Monitor { stop, rss_kb, fds, thread }
    }

    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        (self.rss_kb.load(Ordering::Relaxed), self.fds.load(Ordering::Relaxed))
    }
}

async fn server_counters(addr: SocketAddr) -> serde_json::Value {
    let req = "GET /staging/webhooks/stats HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n";
    let read = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = read.await.unwrap_or_default();
    let body = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| &buf[p + 4..]).unwrap_or_default();
    serde_json::from_slice::<serde_json::Value>(body).map(|v| v["connections"].clone()).unwrap_or_default()
}
