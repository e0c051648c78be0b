//! The admin surface's credentials: an empty or blank token stops `serve` (exit 2) and
//! `check-config`, and an empty cookie or Bearer never matches; dashboard sessions (a random id,
//! never the token; its cookie attributes, `Secure` under an https `public_url`; ended at
//! `session_ttl`, at logout and by a restart); failed authentications limited per client (the
//! 11th wrong guess in a minute is `429`) while the right credential always passes, each failure
//! logged without what was sent; a token under 24 characters an error where other machines reach
//! stagehook and a warning on loopback, and a `public_url` without trusted proxies a warning.

use std::net::IpAddr;
use std::time::Duration;

use stagehook::config::HumanDuration;
use stagehook::secret::Secret;
use stagehook::Clock;

use crate::support::{self, request, request_from, spawn_binary, start, start_with_clock, Resp};

const TOKEN: &str = "admin-token-for-sessions-0123456789";
const EVENTS: &str = "/staging/webhooks/events";

fn with_token(dir: &std::path::Path) -> stagehook::Config {
    let mut c = support::config(dir);
    c.server.admin_token = Some(Secret::new(TOKEN));
    c
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `POST /dashboard/session` from `from`, as the dashboard sends it.
async fn login(addr: std::net::SocketAddr, from: &str, token: &str) -> Resp {
    let body = serde_json::json!({ "token": token }).to_string();
    request_from(ip(from), addr, "POST", "/dashboard/session", &[("content-type", "application/json")], body.as_bytes())
        .await
}

/// The `name=value` part of a response's `Set-Cookie`.
fn cookie_of(r: &Resp) -> String {
    let set = r.header("set-cookie").unwrap_or_else(|| panic!("no set-cookie: {} {}", r.status, r.text()));
    set.split(';').next().unwrap().trim().to_string()
}

/// `GET /staging/webhooks/events` from `from` with the given headers.
async fn events(addr: std::net::SocketAddr, from: &str, headers: &[(&str, &str)]) -> Resp {
    request_from(ip(from), addr, "GET", EVENTS, headers, b"").await
}

/// Runs the binary with `env` and returns (exit code, stdout + stderr). A binary that is still
/// running after 30 s (a `serve` that started) is killed: -1.
fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    use std::process::Stdio;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_stagehook"));
    cmd.args(args).env_clear();
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn an_empty_or_blank_admin_token_stops_serve_and_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = dir.path().join("staging.toml");
    // (bind, admin_token line, the value of STAGEHOOK_SERVER_ADMIN_TOKEN)
    let cases = [
        ("0.0.0.0:0", "admin_token = \"\"\n", None),
        ("0.0.0.0:0", "admin_token = \"   \"\n", None),
        ("127.0.0.1:0", "admin_token = \"\"\n", None),
        ("127.0.0.1:0", "admin_token = \"\\t \\n\"\n", None),
        ("0.0.0.0:0", "", Some("   ")),
    ];
    for (bind, token, var) in cases {
        let env: &[(&str, &str)] = match var {
            Some(v) => &[("STAGEHOOK_SERVER_ADMIN_TOKEN", v)],
            None => &[],
        };
        let text = format!(
            "[server]\nbind = \"{bind}\"\ndata_dir = \"{}\"\n{token}\n[providers.stripe]\nsecret = \"{}\"\n",
            data.display(),
            support::STRIPE_SECRET
        );
        std::fs::write(&path, &text).unwrap();
        let config = path.to_str().unwrap();
        let (code, out) = run_with_env(&["serve", "--config", config], env);
        assert_eq!(code, 2, "{text}{env:?}: {out}");
        assert!(out.contains("admin_token.empty") && out.contains("server.admin_token"), "{text}: {out}");
        assert!(!out.contains("listening"), "{out}");
        let (code, out) = run_with_env(&["check-config", "--config", config, "--json"], env);
        assert_eq!(code, 1, "{text}{env:?}: {out}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let found =
            report["findings"].as_array().unwrap().iter().any(|f| {
                f["id"] == "admin_token.empty" && f["severity"] == "error" && f["key"] == "server.admin_token"
            });
        assert!(found, "{text}{env:?}: {report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_cookie_or_bearer_never_authenticates() {
    let dir = tempfile::tempdir().unwrap();
    // A blank token here skips the validator (App::open is handed the config directly): even
    // then nothing empty may match it.
    for token in [TOKEN, "", "  "] {
        let mut c = with_token(dir.path());
        c.server.admin_token = Some(Secret::new(token));
        let s = start(c).await;
        let empty: [&[(&str, &str)]; 6] = [
            &[("cookie", "stagehook_session=")],
            &[("cookie", "stagehook_session= ; theme=dark")],
            &[("cookie", "stagehook_session=; stagehook_session=")],
            &[("authorization", "Bearer ")],
            &[("authorization", "Bearer    ")],
            &[("authorization", "Bearer"), ("cookie", "stagehook_session=")],
        ];
        for headers in empty {
            let r = request(s.addr, "GET", EVENTS, headers, b"").await;
            assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"), "token {token:?}, {headers:?}");
        }
        let r = login(s.addr, "127.0.0.2", "").await;
        assert_eq!(r.status, 401, "token {token:?}: an empty sign-in");
        assert_eq!(r.code(), "unauthorized");
        assert!(r.header("set-cookie").is_none());
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_is_a_random_id_with_its_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(with_token(dir.path())).await;
    let r = login(s.addr, "127.0.0.1", TOKEN).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let set = r.header("set-cookie").unwrap().to_string();
    let cookie = cookie_of(&r);
    let id = cookie.strip_prefix("stagehook_session=").unwrap();
    assert!(!set.contains(TOKEN) && id != TOKEN, "{set}");
    assert!(id.len() >= 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "at least 128 random bits: {id}");
    let attrs: Vec<&str> = set.split(';').skip(1).map(str::trim).collect();
    for want in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(attrs.contains(&want), "{want} in {set}");
    }
    assert!(!attrs.contains(&"Secure"), "plain http: {set}");
    // Each sign-in is a new id, and the id lets the API in.
    let again = cookie_of(&login(s.addr, "127.0.0.1", TOKEN).await);
    assert_ne!(again, cookie);
    assert_eq!(events(s.addr, "127.0.0.1", &[("cookie", &cookie)]).await.status, 200);
    // The token itself is no cookie.
    let token_cookie = format!("stagehook_session={TOKEN}");
    assert_eq!(events(s.addr, "127.0.0.1", &[("cookie", &token_cookie)]).await.status, 401);
    let status = request(s.addr, "GET", "/dashboard/session", &[("cookie", &cookie)], b"").await.json();
    assert_eq!(status, serde_json::json!({"token_required": true, "signed_in": true}));
    s.stop().await;

    // Reached over https: Secure, and the configured lifetime.
    let dir = tempfile::tempdir().unwrap();
    let mut c = with_token(dir.path());
    c.server.public_url = Some("https://hooks.example.test".into());
    c.server.session_ttl = HumanDuration(Duration::from_secs(90));
    let s = start(c).await;
    let r = login(s.addr, "127.0.0.1", TOKEN).await;
    let set = r.header("set-cookie").unwrap();
    let attrs: Vec<&str> = set.split(';').skip(1).map(str::trim).collect();
    for want in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=90", "Secure"] {
        assert!(attrs.contains(&want), "{want} in {set}");
    }
    let r = request(s.addr, "POST", "/dashboard/logout", &[("content-type", "application/json")], b"{}").await;
    assert!(r.header("set-cookie").unwrap().contains("Secure"), "the cleared cookie too");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_at_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = with_token(dir.path());
    c.server.session_ttl = HumanDuration(Duration::from_secs(600));
    let clock = Clock::system();
    let s = start_with_clock(c, clock.clone()).await;
    let cookie = cookie_of(&login(s.addr, "127.0.0.1", TOKEN).await);
    let h = [("cookie", cookie.as_str())];
    assert_eq!(events(s.addr, "127.0.0.1", &h).await.status, 200);
    clock.advance(599_000);
    assert_eq!(events(s.addr, "127.0.0.1", &h).await.status, 200, "used or not, it lasts its ttl");
    clock.advance(1_000);
    let r = events(s.addr, "127.0.0.1", &h).await;
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
    // The answer tells the browser to drop the dead cookie.
    let cleared = r.header("set-cookie").unwrap();
    assert!(cleared.starts_with("stagehook_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_and_a_restart_end_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(with_token(dir.path())).await;
    let first = cookie_of(&login(s.addr, "127.0.0.1", TOKEN).await);
    let second = cookie_of(&login(s.addr, "127.0.0.1", TOKEN).await);
    let r = request(
        s.addr,
        "POST",
        "/dashboard/logout",
        &[("content-type", "application/json"), ("cookie", &first)],
        b"{}",
    )
    .await;
    assert_eq!(r.status, 204);
    let cleared = r.header("set-cookie").unwrap();
    assert!(cleared.starts_with("stagehook_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(events(s.addr, "127.0.0.1", &[("cookie", &first)]).await.status, 401, "ended server-side");
    assert_eq!(events(s.addr, "127.0.0.1", &[("cookie", &second)]).await.status, 200, "only that one");
    let status = request(s.addr, "GET", "/dashboard/session", &[("cookie", &first)], b"").await.json();
    assert_eq!(status["signed_in"], false);
    s.stop().await;

    // Sessions are in memory: a new process on the same data folder knows none.
    let s = start(with_token(dir.path())).await;
    assert_eq!(events(s.addr, "127.0.0.1", &[("cookie", &second)]).await.status, 401);
    let fresh = cookie_of(&login(s.addr, "127.0.0.1", TOKEN).await);
    assert_eq!(events(s.addr, "127.0.0.1", &[("cookie", &fresh)]).await.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_11th_wrong_guess_in_a_minute_meets_429_and_the_right_token_still_passes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::system();
    let s = start_with_clock(with_token(dir.path()), clock.clone()).await;
    let right = format!("Bearer {TOKEN}");
    // A session opened before the guessing starts.
    let session = cookie_of(&login(s.addr, "127.0.0.1", TOKEN).await);

    for i in 1..=10 {
        let r = events(s.addr, "127.0.0.1", &[("authorization", &format!("Bearer guess-{i}"))]).await;
        assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"), "failure {i}");
    }
    let r = events(s.addr, "127.0.0.1", &[("authorization", "Bearer guess-11")]).await;
    assert_eq!((r.status, r.code().as_str()), (429, "too_many_auth_failures"), "{}", r.text());
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    support::assert_security_headers(&r);
    // The right token is checked first: an address shared with a guesser (a tunnel's, where
    // every client is 127.0.0.1) does not lock the admin out, by bearer token or by sign-in.
    let r = events(s.addr, "127.0.0.1", &[("authorization", &right)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = login(s.addr, "127.0.0.1", TOKEN).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let fresh = cookie_of(&r);
    assert_eq!(events(s.addr, "127.0.0.1", &[("cookie", &fresh)]).await.status, 200);
    // Guesses stay refused, at the API and at sign-in, and a malformed sign-in too.
    let r = events(s.addr, "127.0.0.1", &[("authorization", "Bearer guess-12")]).await;
    assert_eq!((r.status, r.code().as_str()), (429, "too_many_auth_failures"));
    assert_eq!(login(s.addr, "127.0.0.1", "guess-13").await.code(), "too_many_auth_failures");
    let r = request_from(
        ip("127.0.0.1"),
        s.addr,
        "POST",
        "/dashboard/session",
        &[("content-type", "application/json")],
        b"{\"tok\": 1}",
    )
    .await;
    assert_eq!(r.code(), "too_many_auth_failures");
    // A request without credentials is not an attempt: the prompt still shows.
    assert_eq!(events(s.addr, "127.0.0.1", &[]).await.code(), "unauthorized");
    // A live session is not guessable, so it goes on working.
    assert_eq!(events(s.addr, "127.0.0.1", &[("cookie", &session)]).await.status, 200);
    // Another address is another client.
    assert_eq!(events(s.addr, "127.0.0.2", &[("authorization", "Bearer guess")]).await.status, 401);
    assert_eq!(events(s.addr, "127.0.0.2", &[("authorization", &right)]).await.status, 200);
    // Once the window has slid past the failures, a guess is a failure again, not refused.
    clock.advance(120_000);
    let r = events(s.addr, "127.0.0.1", &[("authorization", "Bearer guess-14")]).await;
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));

    // Wrong tokens at sign-in and dead session cookies are failures as well.
    for i in 1..=10 {
        let r = login(s.addr, "127.0.0.3", &format!("guess-{i}")).await;
        assert_eq!(r.status, 401, "sign-in failure {i}");
        let dead = format!("stagehook_session={}", "ab".repeat(32));
        assert_eq!(events(s.addr, "127.0.0.4", &[("cookie", &dead)]).await.status, 401, "cookie failure {i}");
    }
    let r = login(s.addr, "127.0.0.3", "guess-11").await;
    assert_eq!((r.status, r.code().as_str()), (429, "too_many_auth_failures"));
    let dead = format!("stagehook_session={}", "ab".repeat(32));
    let r = events(s.addr, "127.0.0.4", &[("cookie", &dead)]).await;
    assert_eq!((r.status, r.code().as_str()), (429, "too_many_auth_failures"));
    assert_eq!(login(s.addr, "127.0.0.3", TOKEN).await.status, 204);
    assert_eq!(events(s.addr, "127.0.0.4", &[("authorization", &right)]).await.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_is_logged_with_the_client_and_never_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_config(dir.path(), "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("[server]\n", &format!("[server]\nadmin_token = \"{TOKEN}\"\n"))).unwrap();
    let args = ["--log-format", "json", "serve", "--config", config.to_str().unwrap()];
    let mut s = spawn_binary(&args, &[]).await;
    let guess = "guessed-token-XYZ-0123456789";
    let r = request(s.addr, "GET", EVENTS, &[("authorization", &format!("Bearer {guess}"))], b"").await;
    assert_eq!(r.status, 401);
    let r = request(s.addr, "GET", EVENTS, &[("cookie", &format!("stagehook_session={guess}"))], b"").await;
    assert_eq!(r.status, 401);
    let body = serde_json::json!({ "token": guess }).to_string();
    let r =
        request(s.addr, "POST", "/dashboard/session", &[("content-type", "application/json")], body.as_bytes()).await;
    assert_eq!(r.status, 401);
    // Up to the limit, then one guess over it: refused, and logged as such.
    for i in 4..=11 {
        let r = request(s.addr, "GET", EVENTS, &[("authorization", &format!("Bearer {guess}-{i}"))], b"").await;
        assert_eq!(r.status, if i <= 10 { 401 } else { 429 }, "guess {i}");
    }
    s.signal("TERM");
    assert_eq!(s.wait().await.code(), Some(0));
    let logs = s.stderr.lock().clone();
    let failures: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "stagehook::auth")
        .collect();
    assert_eq!(failures.len(), 11, "{logs}");
    for f in &failures {
        assert_eq!(f["level"], "WARN", "{f}");
        assert_eq!(f["fields"]["client"], "127.0.0.1", "{f}");
    }
    let what: Vec<&str> = failures.iter().take(3).map(|f| f["fields"]["credential"].as_str().unwrap()).collect();
    assert_eq!(what, ["bearer token", "session", "dashboard sign-in"]);
    let refused: Vec<bool> = failures.iter().map(|f| f["fields"]["refused"] == true).collect();
    assert_eq!(refused.iter().filter(|r| **r).count(), 1, "{logs}");
    assert!(refused[10], "the guess over the limit: {logs}");
    assert!(!logs.contains(guess) && !logs.contains(TOKEN), "{logs}");
}

/// `check-config` and `serve` on a token one character short of the minimum and on one of the
/// minimum's length: where a tunnel's `public_url` or the bind reaches other machines, the short
/// one is an error that stops `serve`; on loopback, a warning. A `public_url` without a trusted
/// proxy is a warning.
#[test]
fn a_short_token_is_an_error_where_other_machines_reach_stagehook() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = dir.path().join("staging.toml");
    let short = "0123456789abcdef0123456"; // 23 characters
    let enough = "0123456789abcdef01234567"; // 24
    let tunnel = "public_url = \"https://abc123.tunnel.example\"\n";
    let proxies = "trusted_proxies = [\"127.0.0.1\"]\n";
    // (the [server] lines, the token, the severity of `admin_token.weak` or none)
    let cases = [
        (format!("{tunnel}{proxies}"), short, Some("error")),
        ("bind = \"0.0.0.0:0\"\n".to_string(), short, Some("error")),
        (format!("public_url = \"http://localhost:8080\"\n{proxies}"), short, Some("warning")),
        (String::new(), short, Some("warning")),
        (format!("{tunnel}{proxies}"), enough, None),
        ("bind = \"0.0.0.0:0\"\n".to_string(), enough, None),
    ];
    for (server, token, weak) in cases {
        let text = format!(
            "[server]\ndata_dir = \"{}\"\nadmin_token = \"{token}\"\n{server}\n[providers.stripe]\nsecret = \"{}\"\n",
            data.display(),
            support::STRIPE_SECRET
        );
        std::fs::write(&path, &text).unwrap();
        let config = path.to_str().unwrap();
        let (code, out) = run_with_env(&["check-config", "--offline", "--config", config, "--json"], &[]);
        let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let found: Vec<&serde_json::Value> =
            report["findings"].as_array().unwrap().iter().filter(|f| f["id"] == "admin_token.weak").collect();
        match weak {
            Some(severity) => {
                assert_eq!(found.len(), 1, "{text}: {report}");
                assert_eq!(
                    (found[0]["severity"].as_str(), found[0]["key"].as_str()),
                    (Some(severity), Some("server.admin_token")),
                    "{text}"
                );
                assert_eq!(code, if severity == "error" { 1 } else { 0 }, "{text}: {out}");
            }
            None => assert!(found.is_empty() && code == 0, "{text}: {out}"),
        }
        assert!(!out.contains(token), "{out}");
        if weak == Some("error") {
            let (code, out) = run_with_env(&["serve", "--config", config], &[]);
            assert_eq!(code, 2, "{text}: {out}");
            assert!(out.contains("admin_token.weak") && !out.contains("listening"), "{out}");
        }
    }

    // A tunnel without a trusted proxy: every client is the tunnel's address.
    let text = format!(
        "[server]\ndata_dir = \"{}\"\nadmin_token = \"{enough}\"\n{tunnel}\n[providers.stripe]\nsecret = \"{}\"\n",
        data.display(),
        support::STRIPE_SECRET
    );
    std::fs::write(&path, &text).unwrap();
    let (code, out) = run_with_env(&["check-config", "--offline", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}");
    let line = out.lines().find(|l| l.contains("proxies.missing")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.starts_with("WARNING") && line.contains("server.trusted_proxies"), "{line}");
}
