//! Every shell and TOML example of README.md and docs/*.md, found by reading the files: each TOML
//! block loads through the real configuration loader (a block that is only part of a file says so
//! in an HTML comment just before it, `<!-- fragment: why -->`); each shell block is in [`SHELL`],
//! which names the test that runs it or says why none can, and that list has no stale entry. A new
//! example fails here until it is run or explained. Also: the paths readers copy are whole, and
//! the files README's examples create are ignored by git.

use std::collections::BTreeMap;
use std::path::Path;

use crate::fake_app::FakeApp;
use crate::support::{self, start};

/// A fenced ```sh or ```toml block: its file, the line of its fence, and its text.
#[derive(Debug)]
struct Block {
    file: String,
    line: usize,
    lang: &'static str,
    text: String,
    fragment: bool,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md, in a fixed order.
fn documents() -> Vec<(String, String)> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    names.sort();
    names.insert(0, "README.md".into());
    names.into_iter().map(|n| (std::fs::read_to_string(root().join(&n)).unwrap(), n)).map(|(t, n)| (n, t)).collect()
}

fn blocks() -> Vec<Block> {
    let mut out = Vec::new();
    for (file, text) in documents() {
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let fence = lines[i];
            if !fence.starts_with("```") {
                i += 1;
                continue;
            }
            let lang = match fence.trim_end() {
                "```sh" => Some("sh"),
                "```toml" => Some("toml"),
                _ => None,
            };
            let end = (i + 1..lines.len()).find(|&j| lines[j].starts_with("```")).unwrap_or_else(|| {
                panic!("{file}:{}: a code block is not closed", i + 1);
            });
            if let Some(lang) = lang {
                let before = lines[..i].iter().rev().find(|l| !l.trim().is_empty()).copied().unwrap_or_default();
                out.push(Block {
                    file: file.clone(),
                    line: i + 1,
                    lang,
                    text: lines[i + 1..end].iter().map(|l| format!("{l}\n")).collect(),
                    fragment: before.starts_with("<!-- fragment:"),
                });
            }
            i = end + 1;
        }
    }
    out
}

/// How a shell block is exercised.
enum Runs {
    /// By this test (`module::name`), as written, after the substitutions it names.
    By(&'static str),
    /// By none, for this reason.
    Not(&'static str),
}

/// Every shell block, by its file and its first line.
const SHELL: &[(&str, &str, Runs)] = &[
    ("README.md", "cargo run --release -- serve", Runs::By("docs_examples::the_serve_examples_start_as_written")),
    ("README.md", "bash .ci/run", Runs::Not("it is the test suite")),
    (
        "README.md",
        "stagehook check-app stripe --config staging.toml",
        Runs::By("check_app::the_readme_examples_run_as_written"),
    ),
    (
        "README.md",
        "stagehook check-app stripe --config staging.toml --target http://localhost:3000/webhooks/stripe --json > check-app.json",
        Runs::By("check_app::the_readme_examples_run_as_written"),
    ),
    (
        "README.md",
        "cargo install --path . --locked",
        Runs::Not("a second release build into ~/.cargo/bin; .ci/run builds and tests the same crate with --locked"),
    ),
    ("README.md", "stripe listen --forward-to", Runs::Not("needs the Stripe CLI and a Stripe account")),
    (
        "README.md",
        "STRIPE_WEBHOOK_SECRET=whsec_... cargo run --release -- serve",
        Runs::By("docs_examples::the_serve_examples_start_as_written"),
    ),
    (
        "README.md",
        "export STRIPE_WEBHOOK_SECRET=whsec_$(openssl rand -hex 24)",
        Runs::By("docs_examples::stripe_without_its_cli_runs_as_written"),
    ),
    (
        "README.md",
        "curl -X POST -H 'Content-Type: application/json' \\",
        Runs::By("docs_examples::the_edit_and_replay_examples_run_as_written"),
    ),
    (
        "README.md",
        "stagehook send --list --config staging.toml",
        Runs::By("docs_examples::the_send_examples_run_as_written"),
    ),
    (
        "README.md",
        "stagehook tail --config staging.toml",
        Runs::Not("follows until Ctrl-C; tail's output is in stream::"),
    ),
    (
        "README.md",
        "# Staging, once: a read token for the team",
        Runs::By("listen::the_readme_team_setup_runs_as_written"),
    ),
    (
        "README.md",
        "stagehook backfill stripe --dry-run",
        Runs::Not("needs Stripe's API; backfill:: runs the command against a stand-in"),
    ),
    (
        "README.md",
        "# All events as NDJSON (one event a line)",
        Runs::By("docs_examples::the_export_examples_run_as_written"),
    ),
    (
        "README.md",
        "redis-server --port 6379",
        Runs::Not("two servers that run until stopped on fixed ports; replicas:: runs the same setup"),
    ),
    (
        "docs/configuration.md",
        "cp staging.toml.example staging.toml",
        Runs::By("docs_examples::the_serve_examples_start_as_written"),
    ),
    (
        "docs/configuration.md",
        "stagehook completions bash",
        Runs::Not("writes into the user's shell setup; cli:: checks the completions and the man page"),
    ),
    (
        "docs/delivery.md",
        "curl -X POST -H 'Content-Type: application/json' \\",
        Runs::By("docs_examples::the_edit_and_replay_examples_run_as_written"),
    ),
    ("docs/performance.md", "bash scripts/loadtest.sh", Runs::Not("a benchmark of minutes with wrk")),
    ("docs/performance.md", "cargo bench --bench hot_path -- redis_", Runs::Not("a benchmark of minutes")),
    ("docs/security.md", "bash scripts/hostile.sh", Runs::Not("an attack of minutes with slowhttptest")),
];

/// Whether `tests/it/<module>.rs` defines `fn <name>(`.
fn test_exists(path: &str) -> bool {
    let Some((module, name)) = path.split_once("::") else { return false };
    std::fs::read_to_string(root().join(format!("tests/it/{module}.rs")))
        .is_ok_and(|t| t.contains(&format!("fn {name}(")))
}

#[test]
fn every_shell_example_is_run_or_says_why_not() {
    let shell: Vec<Block> = blocks().into_iter().filter(|b| b.lang == "sh").collect();
    let first = |b: &Block| b.text.lines().next().unwrap_or_default().to_string();
    let mut unlisted = Vec::new();
    for b in &shell {
        let listed = SHELL.iter().filter(|(f, l, _)| *f == b.file && first(b).starts_with(l)).count();
        if listed == 0 {
            unlisted.push(format!("{}:{}: {}", b.file, b.line, first(b)));
        }
    }
    assert!(
        unlisted.is_empty(),
        "shell examples that no test runs: run each in a test and name it in SHELL, or say there why none can:\n{}",
        unlisted.join("\n")
    );
    for (file, line, runs) in SHELL {
        let found = shell.iter().filter(|b| b.file == *file && first(b).starts_with(line)).count();
        assert!(found > 0, "SHELL names a block that is gone: {file}: {line}");
        match runs {
            Runs::By(test) => assert!(test_exists(test), "{file}: {line}: no test {test}"),
            Runs::Not(why) => assert!(!why.is_empty(), "{file}: {line}: say why"),
        }
    }
}

/// A `whsec_` value for the examples' placeholders: base64, as Standard Webhooks reads it, and
/// long enough for Stripe.
const WHSEC: &str = "whsec_c3RhZ2Vob29rLWRvY3MtZXhhbXBsZS1zZWNyZXQtMDEyMzQ1Njc4OWFiY2RlZmdo";

/// One command line of an example, `VAR=value ... cargo run --release -- <args>` (or
/// `stagehook <args>`), as its environment and arguments; a trailing comment dropped.
fn command(line: &str) -> (Vec<(String, String)>, Vec<String>) {
    let line = line.split(" #").next().unwrap().replace("cargo run --release --", "stagehook");
    let mut env = Vec::new();
    let mut words = line.split_whitespace().peekable();
    while let Some((k, v)) = words.peek().and_then(|w| w.split_once('=')) {
        env.push((k.to_string(), v.replace("whsec_...", WHSEC)));
        words.next();
    }
    assert_eq!(words.next(), Some("stagehook"), "{line}");
    (env, words.map(str::to_string).collect())
}

/// README's Quick start and Stripe `serve` lines and docs/configuration.md's copy, check and
/// start, run in a temp folder as written, with a Stripe secret in the environment (the Quick
/// start's own serves none). The one change: the address and the data folder, given through
/// `STAGEHOOK_SERVER_BIND` and `STAGEHOOK_SERVER_DATA_DIR`, since tests run side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serve_examples_start_as_written() {
    let all = blocks();
    let find = |file: &str, start: &str| {
        all.iter().find(|b| b.file == file && b.text.starts_with(start)).unwrap_or_else(|| panic!("{file}: {start}"))
    };
    let quick = find("README.md", "cargo run --release -- serve");
    let stripe = find("README.md", "STRIPE_WEBHOOK_SECRET=whsec_... cargo run");
    let copy = find("docs/configuration.md", "cp staging.toml.example staging.toml");
    let lines: Vec<&str> = copy.text.lines().collect();
    assert_eq!(lines.len(), 3, "{}", copy.text);
    let dir = tempfile::tempdir().unwrap();
    let example = root().join("staging.toml.example");
    // The copy (from the repository's root, where the docs run it) and the check, as written.
    bash(dir.path(), &lines[0].replace("staging.toml.example", example.to_str().unwrap()), &[]);
    let (env, args) = command(lines[1]);
    assert!(env.is_empty(), "{}", lines[1]);
    bash(dir.path(), &format!("stagehook {}", args.join(" ")), &[("STRIPE_WEBHOOK_SECRET", WHSEC)]);
    for line in [quick.text.trim(), stripe.text.trim(), lines[2]] {
        let (mut env, args) = command(line);
        assert_eq!(args.first().map(String::as_str), Some("serve"), "{line}");
        if !env.iter().any(|(k, _)| k == "STRIPE_WEBHOOK_SECRET") {
            env.push(("STRIPE_WEBHOOK_SECRET".into(), WHSEC.into()));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        env.push(("STAGEHOOK_SERVER_BIND".into(), format!("127.0.0.1:{port}")));
        env.push(("STAGEHOOK_SERVER_DATA_DIR".into(), dir.path().join("data").display().to_string()));
        // The configuration file is the one in the folder the example runs in.
        let args: Vec<String> = args
            .iter()
            .map(|a| if a == "staging.toml" { dir.path().join(a).display().to_string() } else { a.clone() })
            .collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut server = support::spawn_binary(&args, &env).await;
        let body = support::stripe_event("evt_docs_serve");
        let sig = support::stripe_header(WHSEC, support::now_s(), body.as_bytes());
        let headers = [("content-type", "application/json"), ("stripe-signature", sig.as_str())];
        let r = support::request(server.addr, "POST", "/staging/webhooks/stripe", &headers, body.as_bytes()).await;
        assert!(r.status == 200, "{line}: {}", r.text());
        server.signal("TERM");
        assert!(server.wait().await.success(), "{line}");
    }
}

/// README's `stagehook send` lines, run as written by bash against a real stagehook: the
/// endpoints they name configured in `staging.toml` (which `STAGEHOOK_CONFIG` names for the lines
/// without `--config`), the other stagehook and the app at their real addresses, and the
/// `inbound.txt` a reader would have written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_send_examples_run_as_written() {
    let block = blocks()
        .into_iter()
        .find(|b| b.lang == "sh" && b.text.starts_with("stagehook send --list"))
        .expect("README's Sending test events");
    let (dir, app) = (tempfile::tempdir().unwrap(), FakeApp::start().await);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "[server]\nbind = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n[limits]\nrate_limit_per_minute = 0\n\
         [providers.stripe]\nsecret = \"{WHSEC}\"\n[providers.twilio]\nauth_token = \"{}\"\n\
         [providers.github]\nsecret = \"github-docs-secret-0123456789\"\n\
         [providers.shop]\nkind = \"shopify\"\nsecret = \"shopify-docs-secret-0123456789\"\n",
        dir.path().join("data").display(),
        support::TWILIO_TOKEN
    );
    let path = dir.path().join("staging.toml");
    std::fs::write(&path, config).unwrap();
    std::fs::write(dir.path().join("inbound.txt"), "MessageSid=SM1&From=%2B15550001&To=%2B15550002&Body=hi").unwrap();
    let mut server = support::spawn_binary(&["serve", "--config", path.to_str().unwrap()], &[]).await;
    let other_dir = tempfile::tempdir().unwrap();
    let other_config = support::write_config(other_dir.path(), "");
    std::fs::write(
        &other_config,
        std::fs::read_to_string(&other_config).unwrap().replace(support::STRIPE_SECRET, WHSEC),
    )
    .unwrap();
    let mut other = support::spawn_binary(&["serve", "--config", other_config.to_str().unwrap()], &[]).await;
    let script = block
        .text
        .replace("http://127.0.0.1:9000", &format!("http://{}", other.addr))
        .replace("http://127.0.0.1:3000", &app.url(""));
    let out = bash(dir.path(), &script, &[("STAGEHOOK_CONFIG", "staging.toml")]);
    let count = |addr, provider: &'static str| async move {
        let r =
            support::request(addr, "GET", &format!("/staging/webhooks/events?provider={provider}&limit=100"), &[], b"")
                .await;
        r.json()["events"].as_array().map_or(0, Vec::len)
    };
    // Stripe: one, five, one thin and one answered as JSON; one of each other kind.
    assert_eq!(count(server.addr, "stripe").await, 8, "{out}");
    assert_eq!(count(server.addr, "twilio").await, 1, "{out}");
    assert_eq!(count(server.addr, "github").await, 1, "{out}");
    assert_eq!(count(other.addr, "stripe").await, 1, "{out}");
    assert_eq!(app.wait_for(1).await[0].path, "/webhooks/shopify");
    for s in [&mut server, &mut other] {
        s.signal("TERM");
        assert!(s.wait().await.success());
    }
}

/// README's export and import lines, as written, in their order: the export from the running
/// stagehook (its admin token in `$TOKEN`), the offline one once it is stopped, the import into
/// another folder, then both sends of the capture, to the stagehook started again and to the app
/// (the last with STRIPE_WEBHOOK_SECRET set, as in the shell of README's Stripe section).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_examples_run_as_written() {
    let block = blocks()
        .into_iter()
        .find(|b| b.lang == "sh" && b.text.starts_with("# All events as NDJSON"))
        .expect("README's Export, import and fixtures");
    let (dir, app) = (tempfile::tempdir().unwrap(), FakeApp::start().await);
    let token = "docs-example-admin-token-0123456789";
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "[server]\nbind = \"127.0.0.1:{port}\"\ndata_dir = \"./stagehook-data\"\nadmin_token = \"{token}\"\n\
         [limits]\nrate_limit_per_minute = 0\n[providers.stripe]\nsecret = \"{WHSEC}\"\n"
    );
    let path = dir.path().join("staging.toml");
    std::fs::write(&path, config).unwrap();
    let data = dir.path().join("stagehook-data");
    let env = [("STAGEHOOK_SERVER_DATA_DIR", data.to_str().unwrap())];
    let serve = ["serve", "--config", path.to_str().unwrap()];
    let mut server = support::spawn_binary(&serve, &env).await;
    for id in ["evt_export_1", "evt_export_2"] {
        let body = support::stripe_event(id);
        let sig = support::stripe_header(WHSEC, support::now_s(), body.as_bytes());
        let headers = [("content-type", "application/json"), ("stripe-signature", sig.as_str())];
        let r = support::request(server.addr, "POST", "/staging/webhooks/stripe", &headers, body.as_bytes()).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let commands: Vec<String> = block
        .text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.replace("http://127.0.0.1:8080", &format!("http://{}", server.addr)))
        .map(|l| l.replace("http://127.0.0.1:3000", &app.url("")))
        .collect();
    assert_eq!(commands.len(), 5, "{}", block.text);
    let lines = |n: usize| -> Vec<String> {
        let read = std::fs::read_to_string(dir.path().join("capture.ndjson")).unwrap();
        assert_eq!(read.lines().count(), n, "{read}");
        read.lines().map(str::to_string).collect()
    };
    bash(dir.path(), &commands[0], &[("TOKEN", token)]);
    let online = lines(2);
    server.signal("TERM");
    assert!(server.wait().await.success());
    bash(dir.path(), &commands[1], &env);
    assert_eq!(lines(2), online, "the same lines offline");
    bash(dir.path(), &commands[2], &[]);
    assert!(dir.path().join("other-data").is_dir());
    let mut server = support::spawn_binary(&serve, &env).await;
    let out = bash(dir.path(), &commands[3], &[]);
    assert!(out.contains("-> 200"), "{out}");
    bash(dir.path(), &commands[4], &[("STRIPE_WEBHOOK_SECRET", WHSEC)]);
    assert_eq!(app.wait_for(2).await.len(), 2);
    server.signal("TERM");
    assert!(server.wait().await.success());
}

/// A configuration that is whole once its placeholders are values: `"..."` and the like. The
/// `whsec_` value is base64, as Standard Webhooks reads it, and long enough for Stripe.
fn filled(toml: &str) -> String {
    toml.replace("\"whsec_...\"", &format!("\"{WHSEC}\""))
        .replace("\"whsk_...\"", "\"whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=\"")
        .replace("\"rk_test_...\"", "\"rk_test_0123456789abcdef0123456789\"")
        .replace("\"github_pat_...\"", "\"github_pat_0123456789abcdef0123456789\"")
        .replace("/services/...\"", "/services/T0/B0/0123456789abcdef\"")
        .replace("\"...\"", "\"a-real-secret-0123456789abcdef\"")
}

#[test]
fn every_toml_example_loads() {
    let toml: Vec<Block> = blocks().into_iter().filter(|b| b.lang == "toml").collect();
    assert!(toml.len() >= 10, "{toml:?}");
    let mut failed = Vec::new();
    for b in toml.iter().filter(|b| !b.fragment) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staging.toml");
        let head = format!("[server]\ndata_dir = \"{}\"\n\n", dir.path().join("data").display());
        std::fs::write(&path, head + &filled(&b.text)).unwrap();
        match stagehook::config::Config::load(Some(&path), &BTreeMap::new()) {
            Ok(config) => {
                if let Err(e) = config.build() {
                    failed.push(format!("{}:{}: {e}", b.file, b.line));
                }
            }
            Err(e) => failed.push(format!("{}:{}: {e}", b.file, b.line)),
        }
    }
    assert!(failed.is_empty(), "TOML examples that do not load:\n{}", failed.join("\n"));
}

/// Runs `script` with bash in `dir`, with the built `stagehook` first on the PATH; its stdout.
fn bash(dir: &Path, script: &str, env: &[(&str, &str)]) -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_stagehook")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = std::process::Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", script]).current_dir(dir).env_clear().env("PATH", path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script}\nexit {:?}\n{stdout}\n{stderr}", out.status.code());
    stdout.into_owned()
}

/// The README's and docs/delivery.md's edit-and-replay `curl`, as written but for the address
/// and the event's id: each stores a copy of the event and delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edit_and_replay_examples_run_as_written() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start(support::forwarding(dir.path(), "stripe", app.url("/hook"))).await;
    let id = s.post_stripe_event("evt_docs_original").await;
    app.wait_for(1).await;
    let curls: Vec<Block> = blocks()
        .into_iter()
        .filter(|b| b.lang == "sh" && b.text.starts_with("curl") && b.text.contains("/replay"))
        .collect();
    assert_eq!(curls.len(), 2, "README's and docs/delivery.md's: {curls:?}");
    for (n, b) in curls.iter().enumerate() {
        let script = b
            .text
            .replace("http://127.0.0.1:8080", &format!("http://{}", s.addr))
            .replace("$ID", &id)
            .replace("01KB…", &id);
        let out = bash(dir.path(), &script, &[]);
        let answer: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|_| panic!("{}:{}: {out}", b.file, b.line));
        assert_eq!(answer["parent_id"].as_str(), Some(id.as_str()), "{}:{}: {answer}", b.file, b.line);
        assert_eq!(answer["event_id"], "evt_1", "{}:{}: {answer}", b.file, b.line);
        let got = app.wait_for(n + 2).await;
        assert_eq!(got[n + 1].header("x-debug-run"), Some("7"), "{}:{}", b.file, b.line);
    }
    s.stop().await;
}

/// README's Stripe without its CLI: a `whsec_` value of one's own, a hand-made event, `serve`
/// in one terminal and `send` in another, both with the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_without_its_cli_runs_as_written() {
    let block = blocks()
        .into_iter()
        .find(|b| b.lang == "sh" && b.text.starts_with("export STRIPE_WEBHOOK_SECRET="))
        .expect("README's Stripe section shows it");
    let lines: Vec<&str> = block.text.lines().collect();
    assert_eq!(lines.len(), 4, "{}", block.text);
    let dir = tempfile::tempdir().unwrap();
    // The first two lines as written; the variable as the first one sets it.
    let secret = bash(dir.path(), &format!("{}\n{}\necho \"$STRIPE_WEBHOOK_SECRET\"", lines[0], lines[1]), &[]);
    let secret = secret.trim();
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "{secret}");
    // `serve` on a free port and a temp data folder, which the README's defaults would not be.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bind = format!("127.0.0.1:{port}");
    let data = dir.path().join("data");
    let env = [
        ("STRIPE_WEBHOOK_SECRET", secret),
        ("STAGEHOOK_SERVER_BIND", bind.as_str()),
        ("STAGEHOOK_SERVER_DATA_DIR", data.to_str().unwrap()),
    ];
    let serve: Vec<&str> = lines[2].split('#').next().unwrap().split_whitespace().collect();
    assert_eq!(serve, ["stagehook", "serve"]);
    let mut server = support::spawn_binary(&serve[1..], &env).await;
    let send = lines[3].split('#').next().unwrap().trim();
    let out = bash(dir.path(), send, &env);
    assert!(out.contains("200"), "{send}: {out}");
    let r = support::request(server.addr, "GET", "/staging/webhooks/events?provider=stripe", &[], b"").await;
    assert!(r.text().contains("\"event_id\":\"evt_1\""), "{}", r.text());
    server.signal("TERM");
    assert!(server.wait().await.success());
}

/// The route paths, whole, that a reader copies from README and docs: a path written without
/// its `/staging/webhooks` prefix (`/rejections`) is a 404. Headings are titles, left alone.
#[test]
fn the_docs_write_route_paths_whole() {
    let openapi: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("docs/openapi.json")).unwrap()).unwrap();
    let prefix = "/staging/webhooks";
    let short: Vec<String> = openapi["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|p| p.strip_prefix(prefix).filter(|s| s.starts_with('/')).map(str::to_string))
        .collect();
    assert!(short.iter().any(|s| s == "/rejections"), "{short:?}");
    let mut found = Vec::new();
    for (file, text) in documents() {
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.starts_with('#')) {
            for quoted in line.split('`').skip(1).step_by(2) {
                let path = quoted.rsplit(' ').next().unwrap_or_default().split('?').next().unwrap_or_default();
                if short.iter().any(|s| s == path) {
                    found.push(format!("{file}:{}: `{quoted}`", n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "write these paths with {prefix}:\n{}", found.join("\n"));
}

/// A copy of the example configuration holds secrets, and README's examples make data folders:
/// git ignores them all, so that none is committed by accident.
#[test]
fn git_ignores_the_configuration_and_the_data_folders() {
    let ignore = std::fs::read_to_string(root().join(".gitignore")).unwrap();
    let ignored: Vec<&str> = ignore.lines().filter(|l| !l.starts_with('#')).collect();
    let mut wanted = vec!["staging.toml".to_string()];
    for (_, text) in documents() {
        for word in text.split_whitespace() {
            if let Some(dir) = word.trim_matches(|c| c == '`' || c == '"').strip_prefix("./") {
                let dir = dir.trim_end_matches(|c: char| !c.is_alphanumeric());
                if dir.ends_with("data") || dir.starts_with("data-") {
                    wanted.push(dir.to_string());
                }
            }
        }
    }
    wanted.sort();
    wanted.dedup();
    assert!(wanted.len() >= 4, "{wanted:?}");
    let missing: Vec<&String> = wanted.iter().filter(|w| !ignored.contains(&format!("/{w}").as_str())).collect();
    assert!(missing.is_empty(), ".gitignore lacks {missing:?}");
}
