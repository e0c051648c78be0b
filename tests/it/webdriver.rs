//! A small WebDriver client for headless Chromium (Debian's `chromium` and `chromium-driver`),
//! spoken over the same raw HTTP as every other test.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::request;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: tokio::process::Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: Value) -> Value {
    let body = if method == "GET" || method == "DELETE" { Vec::new() } else { body.to_string().into_bytes() };
    // A bounded wait per command: a wedged browser fails the test instead of hanging the run.
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        request(addr, method, path, &[("content-type", "application/json")], &body),
    )
    .await
    .unwrap_or_else(|_| panic!("webdriver {method} {path}: no answer in 60 s"));
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    assert!(r.status < 400, "webdriver {method} {path}: {} {}", r.status, r.text());
    v["value"].clone()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session. Fails, with the way to fix it, when
    /// they are not installed: `.ci/run` installs them.
    pub async fn start() -> Browser {
        let chromium =
            ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|p| std::path::Path::new(p).exists());
        let driver_bin = ["/usr/bin/chromedriver"].into_iter().find(|p| std::path::Path::new(p).exists());
        let (Some(chromium), Some(driver_bin)) = (chromium, driver_bin) else {
            panic!("the dashboard tests need Chromium: apt-get install chromium chromium-driver (bash .ci/run does)");
        };
        // The port is picked by binding and releasing it, so another process may take it before
        // chromedriver does: then chromedriver exits, and a new port is tried.
        let mut tries = 0;
        let (driver, addr) = loop {
            tries += 1;
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut driver = tokio::process::Command::new(driver_bin)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("start chromedriver");
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            let up = loop {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    break true;
                }
                if driver.try_wait().ok().flatten().is_some() || Instant::now() >= deadline {
                    break false;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            if up {
                break (driver, addr);
            }
            assert!(tries < 3, "chromedriver did not start");
        };
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"pageLoad": 30000, "script": 30000},
        }}});
        let v = call(addr, "POST", "/session", caps).await;
        let session = v["sessionId"].as_str().expect("a session id").to_string();
        Browser { driver, addr, session, _profile: profile }
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        call(self.addr, method, &format!("/session/{}{path}", self.session), body).await
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url})).await;
    }

    /// Runs a script in the page and returns its value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", json!({"script": script, "args": args})).await
    }

    /// The trimmed text of the first element matching `selector`, if there is one.
    pub async fn text(&self, selector: &str) -> Option<String> {
        let v = self
            .eval(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null;",
                json!([selector]),
            )
            .await;
        v.as_str().map(str::to_string)
    }

    pub async fn count(&self, selector: &str) -> usize {
        self.eval("return document.querySelectorAll(arguments[0]).length;", json!([selector]))
            .await
            .as_u64()
            .unwrap_or(0) as usize
    }

    pub async fn visible(&self, selector: &str) -> bool {
        self.eval(
            "const e = document.querySelector(arguments[0]); if (!e) return false; \
             const s = getComputedStyle(e); return s.display !== 'none' && s.visibility !== 'hidden' && e.getClientRects().length > 0;",
            json!([selector]),
        )
        .await
        .as_bool()
        .unwrap_or(false)
    }

    /// A real click, through WebDriver, on the first element matching `selector`.
    pub async fn click(&self, selector: &str) {
        let el = self.cmd("POST", "/element", json!({"using": "css selector", "value": selector})).await;
        let id = el[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {selector}: {el}")).to_string();
        self.cmd("POST", &format!("/element/{id}/click"), json!({})).await;
    }

    /// Types into the first element matching `selector`.
    pub async fn type_into(&self, selector: &str, text: &str) {
        let el = self.cmd("POST", "/element", json!({"using": "css selector", "value": selector})).await;
        let id = el[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {selector}: {el}")).to_string();
        self.cmd("POST", &format!("/element/{id}/value"), json!({"text": text})).await;
    }

    /// Polls (at most 20 s) until `check` returns a value.
    pub async fn wait<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if Instant::now() > deadline {
                let shot = self.screenshot(&format!("timeout-{}", what.replace(' ', "-"))).await;
                let detail = self
                    .eval(
                        "const d = document.querySelector('#detail'); return d ? d.outerHTML.slice(0, 3000) : '';",
                        json!([]),
                    )
                    .await;
                eprintln!("screenshot: {}\n#detail: {}", shot.display(), detail.as_str().unwrap_or(""));
                let body =
                    self.eval("return document.body ? document.body.innerText.slice(0, 3000) : '';", json!([])).await;
                panic!("timed out waiting for {what}; the page shows:\n{}", body.as_str().unwrap_or(""));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG screenshot under `target/screenshots/`, for a person to look at.
    pub async fn screenshot(&self, name: &str) -> std::path::PathBuf {
        use base64::Engine;
        let v = self.cmd("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Runs `script` in every page loaded from now on, before the page's own scripts (through
    /// the DevTools protocol, which chromedriver passes on), to see a page as it first shows.
    pub async fn on_new_document(&self, script: &str) {
        let params = json!({"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source": script}});
        self.cmd("POST", "/goog/cdp/execute", params).await;
    }

    /// Every cookie the browser holds for the current page, HttpOnly ones included (WebDriver
    /// sees what scripts cannot).
    pub async fn cookies(&self) -> Vec<Value> {
        self.cmd("GET", "/cookie", Value::Null).await.as_array().cloned().unwrap_or_default()
    }

    /// The browser console since the last call (CSP violations are reported there).
    pub async fn console(&self) -> Vec<String> {
        let v = self.cmd("POST", "/se/log", json!({"type": "browser"})).await;
        v.as_array()
            .map(|a| a.iter().map(|e| e["message"].as_str().unwrap_or("").to_string()).collect())
            .unwrap_or_default()
    }

    pub async fn quit(mut self) {
        let _ = call(self.addr, "DELETE", &format!("/session/{}", self.session), Value::Null).await;
        let _ = self.driver.kill().await;
    }
}
