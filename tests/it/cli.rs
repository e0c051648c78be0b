//! The binary: configuration errors exit 2 naming the key, startup output (the masked
//! `forward_to` targets), graceful shutdown on SIGTERM and SIGINT (the stopping line at once, a
//! second SIGINT exiting 130), structured JSON logs and no colour codes in a piped text log,
//! secrets never printed; shell completions that bash (zsh and fish where installed) accept, and
//! the man page's sections and flags (read by groff without warnings where installed).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::support::{run_binary, spawn_binary, stripe_event, write_config, STRIPE_SECRET};

/// A config file with the shutdown grace `grace_s`, for a stop held by a stuck client. The client
/// sends one byte of its body: neither the minimum body rate nor the body timeout may cut it before
/// the grace ends, or the grace is not what ends it.
fn config_with_grace(dir: &Path, grace_s: u64) -> PathBuf {
    let config = write_config(dir, "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[server]\n",
        &format!("[server]\nshutdown_grace_seconds = {grace_s}\nbody_rate_grace = \"600s\"\nbody_timeout = \"600s\"\n"),
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// A client that sends a Stripe request's head and one byte of its 100-byte body, and no more.
async fn stuck_client(addr: SocketAddr) -> tokio::net::TcpStream {
    let mut stuck = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stuck,
        b"POST /staging/webhooks/stripe HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    stuck
}

/// Waits until the server at `addr` holds at least `n` open connections, the asking one included.
async fn open_connections(addr: SocketAddr, n: u64, what: &str) {
    crate::support::until(what, || async move {
        let stats = crate::support::request(addr, "GET", "/staging/webhooks/stats", &[], b"").await.json();
        (stats["connections"]["open"].as_u64() >= Some(n)).then_some(())
    })
    .await;
}

/// Starts the binary again on `config`: `body`, posted again, is a duplicate of what was stored,
/// and the process stops cleanly.
async fn assert_stored_after_a_restart(config: &Path, body: &str) {
    let mut s = spawn_binary(&["serve", "--config", config.to_str().unwrap()], &[]).await;
    assert_eq!(s.stripe(body).await.json()["duplicate"], true, "stored before the stop");
    s.signal("TERM");
    assert_eq!(s.wait().await.code(), Some(0));
}

#[test]
fn config_errors_exit_2_and_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[limits]\nmax_body = 5\n", "max_body"),
        ("[limits]\nrate_limit_per_minute = \"lots\"\n", "limits.rate_limit_per_minute"),
        ("[server]\nbind = \"not an address\"\n", "server.bind"),
        ("[server]\ntrusted_proxies = [\"10.0.0.0/40\"]\n", "server.trusted_proxies[0]"),
        ("[providers.stripe]\ntolerance_seconds = 0\n", "providers.stripe.tolerance_seconds"),
        ("[providers.paypal]\nsecret = \"x\"\n", "paypal"),
        ("this is not toml", "config"),
    ];
    for (toml, key) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, toml).unwrap();
        let (code, out) = run_binary(&["serve", "--config", path.to_str().unwrap()]);
        assert_eq!(code, 2, "{toml}: {out}");
        assert!(out.contains(key), "{toml}: message should name {key}: {out}");
        assert!(!out.contains("panicked"), "{out}");
    }
    let (code, out) = run_binary(&["serve", "--config", "/nonexistent/staging.toml"]);
    assert_eq!(code, 2, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_flushes_and_exits_0_and_logs_are_structured() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let args = ["--log-format", "json", "serve", "--config", config.to_str().unwrap()];
    let mut s = spawn_binary(&args, &[("TWILIO_AUTH_TOKEN", "a1b2c3d4e5f60718293a4b5c6d7e8f90")]).await;
    let out = s.stdout.lock().clone();
    assert!(out.contains("provider stripe: POST /staging/webhooks/stripe (configured)"), "{out}");
    assert!(out.contains("provider twilio: POST /staging/webhooks/sms (configured)"), "env secret counts: {out}");

    let mut ids = Vec::new();
    for i in 0..20 {
        let r = s.stripe(&stripe_event(&format!("evt_term_{i}"))).await;
        assert_eq!(r.status, 200);
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    let bad = crate::support::post_badly_signed(s.addr).await;
    assert_eq!(bad.code(), "invalid_signature");
    s.signal("TERM");
    let status = s.wait().await;
    assert_eq!(status.code(), Some(0), "stderr: {}", s.stderr.lock());

    // One JSON line per request, with the fields that matter.
    let logs = s.stderr.lock().clone();
    let requests: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "stagehook::request")
        .collect();
    assert_eq!(requests.len(), 21, "{logs}");
    let first = &requests[0]["fields"];
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], "/staging/webhooks/stripe");
    assert_eq!(first["status"], 200);
    assert_eq!(first["provider"], "stripe");
    assert_eq!(first["event_id"], "evt_term_0");
    assert!(first["duration_us"].as_u64().is_some());
    assert_eq!(requests[20]["fields"]["code"], "invalid_signature");
    // Secrets from the file and the environment never reach the output.
    let all = format!("{}{}", s.stdout.lock(), logs);
    assert!(!all.contains(STRIPE_SECRET) && !all.contains("a1b2c3d4e5f60718293a4b5c6d7e8f90"));

    // Everything acknowledged before the signal is there after a restart, refusal counted.
    let mut s = spawn_binary(&["serve", "--config", config.to_str().unwrap()], &[]).await;
    for (i, id) in ids.iter().enumerate() {
        let e = crate::support::request(s.addr, "GET", &format!("/staging/webhooks/events/{id}"), &[], b"").await;
        assert_eq!(e.json()["event_id"], format!("evt_term_{i}"));
    }
    let stats = crate::support::request(s.addr, "GET", "/staging/webhooks/stats", &[], b"").await.json();
    assert_eq!(stats["rejections"]["invalid_signature"], 1, "{stats}");

    // SIGINT stops the same way: an event and a refusal sent just before it survive the restart.
    let r = s.stripe(&stripe_event("evt_int")).await;
    assert_eq!(r.status, 200);
    let int_id = r.json()["id"].as_str().unwrap().to_string();
    crate::support::post_badly_signed(s.addr).await;
    s.signal("INT");
    assert_eq!(s.wait().await.code(), Some(0), "stderr: {}", s.stderr.lock());
    assert!(s.stderr.lock().contains("stopped cleanly"), "stderr: {}", s.stderr.lock());

    let mut s = spawn_binary(&["serve", "--config", config.to_str().unwrap()], &[]).await;
    let e = crate::support::request(s.addr, "GET", &format!("/staging/webhooks/events/{int_id}"), &[], b"").await;
    assert_eq!(e.json()["event_id"], "evt_int");
    let stats = crate::support::request(s.addr, "GET", "/staging/webhooks/stats", &[], b"").await.json();
    assert_eq!(stats["total_events"], 21, "{stats}");
    assert_eq!(stats["rejections"]["invalid_signature"], 2, "the refusal before SIGINT was written: {stats}");
    s.signal("TERM");
    assert_eq!(s.wait().await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_override_the_file_and_defaults_need_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("flag-data");
    let mut s = spawn_binary(&["serve", "--bind", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()], &[]).await;
    let out = s.stdout.lock().clone();
    assert!(out.contains(&format!("data dir: {}", data.display())), "{out}");
    assert!(out.contains("provider stripe: POST /staging/webhooks/stripe (not configured"), "{out}");
    let r = s.stripe(&stripe_event("evt_noconf")).await;
    assert_eq!(r.code(), "provider_not_configured");
    s.signal("TERM");
    let status = s.wait().await;
    assert_eq!(status.code(), Some(0), "{status:?}: {}", s.stderr.lock());
    assert!(data.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_and_does_not_wait_forever() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_grace(dir.path(), 5);
    let mut s = spawn_binary(&["serve", "--config", config.to_str().unwrap()], &[]).await;

    // A request whose body is half sent when the signal arrives.
    let body = stripe_event("evt_inflight");
    let raw = crate::support::stripe_request(&body, &[]);
    let (first, rest) = raw.split_at(raw.len() - 20);
    let mut inflight = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    inflight.write_all(first).await.unwrap();
    // A client that never completes its request.
    let stuck = stuck_client(s.addr).await;
    // Signalled only once the server holds both (and the asking one): one not yet accepted would
    // simply be dropped.
    open_connections(s.addr, 3, "both connections to be accepted").await;

    let started = std::time::Instant::now();
    s.signal("TERM");
    // New connections are no longer accepted (polled: the signal is handled asynchronously)...
    crate::support::until("the listener to close once shutdown starts", || async {
        tokio::net::TcpStream::connect(s.addr).await.is_err().then_some(())
    })
    .await;
    // ...but the request already in flight completes and is acknowledged, even when its client
    // is slow: the rest of its body arrives well into the grace period (and far from its end).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    inflight.write_all(rest).await.unwrap();
    let mut buf = Vec::new();
    inflight.read_to_end(&mut buf).await.unwrap();
    let r = crate::support::parse(&buf);
    assert_eq!(r.status, 200, "{}", r.text());
    // The stuck client holds the process until the 5 s grace ends, and the server says so when
    // it ends it (the default grace is 10 s, so ignoring the setting shows in the line).
    assert_eq!(s.wait().await.code(), Some(0), "{}", s.stderr.lock());
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_secs(5), "the grace was cut short: {took:?}");
    let logs = s.stderr.lock().clone();
    assert!(logs.contains("requests still open after 5s; closing them"), "the grace was not honoured: {logs}");
    drop(stuck);

    // The in-flight event was stored.
    assert_stored_after_a_restart(&config, &body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_says_it_is_stopping_and_a_second_one_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // A grace far longer than the wait below: only the second signal can end it in time.
    let config = config_with_grace(dir.path(), 600);
    let mut s = spawn_binary(&["serve", "--config", config.to_str().unwrap()], &[]).await;
    let r = s.stripe(&stripe_event("evt_before_ctrl_c")).await;
    assert_eq!(r.status, 200);
    // A client that never completes its request holds the first stop for the whole grace.
    let stuck = stuck_client(s.addr).await;
    // Signalled only once the server holds that connection (it and the asking one open): one not
    // yet accepted would simply be dropped, and the stop would be clean and quick.
    open_connections(s.addr, 2, "the stuck connection to be accepted").await;
    s.signal("INT");
    let said = crate::support::until("the stopping line", || async {
        let err = s.stderr.lock().clone();
        err.lines().find(|l| l.contains("stopping")).map(str::to_string)
    })
    .await;
    assert!(said.contains("600 s") && said.contains("Ctrl-C again"), "{said}");
    s.signal("INT");
    assert_eq!(s.wait().await.code(), Some(130), "{}", s.stderr.lock());
    assert!(s.stderr.lock().contains("stopped at once"), "{}", s.stderr.lock());
    drop(stuck);

    // What was acknowledged is there after the restart.
    assert_stored_after_a_restart(&config, &stripe_event("evt_before_ctrl_c")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_text_logs_have_no_colour_codes_and_startup_shows_the_targets() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "forward_to = [\"http://app:hunter2@127.0.0.1:9/hooks/stripe\", \"http://127.0.0.1:9/second\"]\n";
    let config = write_config(dir.path(), extra);
    let mut s = spawn_binary(&["--log-format", "text", "serve", "--config", config.to_str().unwrap()], &[]).await;
    let out = s.stdout.lock().clone();
    assert!(
        out.contains("provider stripe: POST /staging/webhooks/stripe (configured), forwards to http://app:***@127.0.0.1:9/hooks/stripe, http://127.0.0.1:9/second"),
        "{out}"
    );
    assert!(out.contains("provider twilio: POST /staging/webhooks/sms (not configured"), "{out}");
    assert!(out.contains("stored only (no forward_to)"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
    s.signal("TERM");
    assert_eq!(s.wait().await.code(), Some(0));
    let logs = s.stderr.lock().clone();
    // A log line was written (the rate limiter warning, the stop), and it is plain text.
    assert!(logs.contains("stopped cleanly"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "ANSI escape in a piped log: {logs:?}");
}

/// Runs the binary to completion; (exit code, stdout).
fn stdout_of(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stagehook")).args(args).env_clear().output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap())
}

/// Whether `program` can be run here (a shell or groff is optional on a test machine).
fn installed(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

#[test]
fn completions_are_scripts_the_shells_accept() {
    let dir = tempfile::tempdir().unwrap();
    // bash is always there (the CI script is bash); the others are checked where installed.
    for (shell, check) in [("bash", &["-n"][..]), ("zsh", &["-n"][..]), ("fish", &["--no-execute"][..])] {
        let (code, script) = stdout_of(&["completions", shell]);
        assert_eq!(code, 0, "{shell}");
        // Flags without their dashes: fish writes `-l server`.
        for word in ["serve", "check-config", "send", "check-app", "verify", "server", "json", "count", "only"] {
            assert!(script.contains(word), "the {shell} completion should offer {word}");
        }
        if shell != "bash" && !installed(shell) {
            continue;
        }
        let path = dir.path().join(format!("stagehook.{shell}"));
        std::fs::write(&path, &script).unwrap();
        let out = std::process::Command::new(shell).args(check).arg(&path).output().unwrap();
        assert!(out.status.success(), "{shell} {check:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let (code, _) = stdout_of(&["completions", "tcsh-or-so"]);
    assert_eq!(code, 2);
}

#[test]
fn the_man_page_documents_every_subcommand_and_its_flags() {
    let (code, page) = stdout_of(&["man"]);
    assert_eq!(code, 0);
    assert!(page.contains(".TH stagehook 1"), "{page}");
    for section in ["STAGEHOOK SERVE", "STAGEHOOK CHECK-CONFIG", "STAGEHOOK SEND", "STAGEHOOK STORE VERIFY"] {
        assert!(page.contains(&format!(".SH \"{section}\"")), "no section {section}: {page}");
    }
    for flag in [r"\-\-bind", r"\-\-data\-dir", r"\-\-show", r"\-\-server", r"\-\-count", r"\-\-json"] {
        assert!(page.contains(flag), "the page should document {flag}");
    }
    // roff that groff reads without a warning, where groff is installed.
    if installed("groff") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stagehook.1");
        std::fs::write(&path, &page).unwrap();
        let out =
            std::process::Command::new("groff").args(["-man", "-Tascii", "-ww", "-z"]).arg(&path).output().unwrap();
        assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// `stagehook man | head`: a reader that closes the pipe before reading everything is not an
/// error of stagehook's; the manual page and the completion scripts end quietly with 0.
#[test]
fn generated_text_to_a_closed_pipe_ends_quietly() {
    for args in [&["man"][..], &["completions", "bash"][..]] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stagehook"))
            .args(args)
            .env_clear()
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The read end closes before the child writes (it has yet to start up), so its write
        // meets a closed pipe.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}
