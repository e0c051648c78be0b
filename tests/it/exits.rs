//! The binary's promises from README: where each setting comes from (flags over the
//! environment over the file, an empty variable ignored; `STAGEHOOK_CONFIG` for every
//! subcommand), and the exit codes: `serve` exits 2 on a data folder another stagehook holds and
//! 1 on a taken port (leaving no folder); `send` exits 0, 1 (a non-2xx, no connection) or 2
//! (configuration, a placeholder secret with the finding `serve` gives), signs for `public_url`,
//! names the server it tried, and reports `--json`; `check-config` notes a held folder.

use std::process::{Command, Stdio};

use crate::fake_app::{twilio_sdk_validate, FakeApp, Reply};
use crate::support::{spawn_binary, write_config, STRIPE_SECRET, TWILIO_TOKEN};

/// Runs the binary to completion with `env` added; (exit code, stdout + stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let (code, stdout, stderr) = run_split(args, env);
    (code, format!("{stdout}{stderr}"))
}

/// Runs the binary to completion with `env` added; (exit code, stdout, stderr).
fn run_split(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stagehook"));
    cmd.args(args).stdin(Stdio::null());
    for k in [
        "STRIPE_WEBHOOK_SECRET",
        "TWILIO_AUTH_TOKEN",
        "STAGEHOOK_SERVER_BIND",
        "STAGEHOOK_SERVER_DATA_DIR",
        "STAGEHOOK_CONFIG",
    ] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), stdout.into_owned(), stderr.into_owned())
}

/// Starts `serve`, reads where it listens and which folder it uses, and stops it.
async fn started(args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let mut s = spawn_binary(args, env).await;
    let out = s.stdout.lock().clone();
    s.signal("TERM");
    assert_eq!(s.wait().await.code(), Some(0), "{}", s.stderr.lock());
    let data_dir = out.lines().find_map(|l| l.strip_prefix("data dir: ")).unwrap().to_string();
    (s.addr.ip().to_string(), data_dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_win_over_the_environment_which_wins_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let cfg = cfg.to_str().unwrap();
    let (file_dir, env_dir, flag_dir) =
        (dir.path().join("data"), dir.path().join("env-data"), dir.path().join("flag-data"));
    let (env_dir, flag_dir) = (env_dir.to_str().unwrap(), flag_dir.to_str().unwrap());
    let env = [("STAGEHOOK_SERVER_BIND", "127.0.0.2:0"), ("STAGEHOOK_SERVER_DATA_DIR", env_dir)];

    // The file alone, and the file with empty variables: the file's.
    let file = ("127.0.0.1".to_string(), file_dir.display().to_string());
    assert_eq!(started(&["serve", "--config", cfg], &[]).await, file);
    let empty = [("STAGEHOOK_SERVER_BIND", ""), ("STAGEHOOK_SERVER_DATA_DIR", "")];
    assert_eq!(started(&["serve", "--config", cfg], &empty).await, file, "an empty variable is ignored");
    // The environment over the file.
    assert_eq!(started(&["serve", "--config", cfg], &env).await, ("127.0.0.2".to_string(), env_dir.to_string()));
    // The flags over both.
    let flags = ["serve", "--config", cfg, "--bind", "127.0.0.3:0", "--data-dir", flag_dir];
    assert_eq!(started(&flags, &env).await, ("127.0.0.3".to_string(), flag_dir.to_string()));

    // `check-config --show` names each source.
    let source = |env: &[(&str, &str)]| {
        let (code, out) = run(&["check-config", "--config", cfg, "--json", "--show"], env);
        assert_eq!(code, 0, "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let e = &v["effective"];
        (e["server.bind"]["source"].clone(), e["server.bind"]["value"].clone(), e["server.data_dir"]["source"].clone())
    };
    let (bind_src, bind, dir_src) = source(&env);
    assert_eq!((bind_src.as_str(), bind.as_str()), (Some("env STAGEHOOK_SERVER_BIND"), Some("\"127.0.0.2:0\"")));
    assert_eq!(dir_src, "env STAGEHOOK_SERVER_DATA_DIR");
    let (bind_src, bind, dir_src) = source(&empty);
    assert_eq!(
        (bind_src.as_str(), bind.as_str(), dir_src.as_str()),
        (Some("file"), Some("\"127.0.0.1:0\""), Some("file"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exits_2_on_a_held_folder_and_1_on_a_taken_port() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let cfg = cfg.to_str().unwrap().to_string();
    let mut first = spawn_binary(&["serve", "--config", &cfg], &[]).await;
    // A second stagehook on the same folder, on another port: the startup check finds the lock,
    // a configuration error.
    let second = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || run(&["serve", "--config", &cfg], &[])).await.unwrap()
    };
    assert_eq!(second.0, 2, "{}", second.1);
    assert!(second.1.contains("data_dir.in_use"), "{}", second.1);
    first.signal("TERM");
    assert_eq!(first.wait().await.code(), Some(0));

    // A port another process listens on: held here for as long as the attempt runs.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = taken.local_addr().unwrap().to_string();
    // A data folder this start would have created is not left behind.
    let fresh = dir.path().join("fresh-data");
    let fresh_arg = fresh.to_str().unwrap().to_string();
    let (code, out) = tokio::task::spawn_blocking(move || {
        run(&["serve", "--config", &cfg, "--bind", &bind, "--data-dir", &fresh_arg], &[])
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cannot listen on"), "{out}");
    assert!(!fresh.exists(), "a failed start created {}", fresh.display());
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_exit_codes_and_signing_for_the_public_url() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    // stagehook's bind is the fake app, so what `send` sends lands there to be judged.
    let public = "https://hooks.example.com";
    let extra = format!("[providers.twilio]\nauth_token = \"{TWILIO_TOKEN}\"\n");
    let cfg = write_config(dir.path(), &extra);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("bind = \"127.0.0.1:0\"", &format!("bind = \"{}\"\npublic_url = \"{public}\"", app.addr));
    std::fs::write(&cfg, text).unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    let send = |args: &[&str]| {
        let mut all = vec!["send".to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        all.extend(["--config".to_string(), cfg.clone()]);
        tokio::task::spawn_blocking(move || run(&all.iter().map(String::as_str).collect::<Vec<_>>(), &[]))
    };

    // Signed for the public URL, not for the address it was sent to.
    let (code, out) = send(&["twilio"]).await.unwrap();
    assert_eq!(code, 0, "{out}");
    let got = app.wait_for(1).await;
    let r = &got[0];
    assert_eq!(r.path, "/staging/webhooks/sms");
    let sig = r.header("x-twilio-signature").unwrap();
    let json = r.header("content-type").is_some_and(|c| c.starts_with("application/json"));
    let query = if r.query.is_empty() { String::new() } else { format!("?{}", r.query) };
    let url = format!("{public}/staging/webhooks/sms{query}");
    assert!(twilio_sdk_validate(&url, &r.body, json, sig, TWILIO_TOKEN), "signed for {url}");
    let local = format!("http://{}/staging/webhooks/sms{query}", app.addr);
    assert!(!twilio_sdk_validate(&local, &r.body, json, sig, TWILIO_TOKEN));

    // A non-2xx answer: 1.
    app.set_default(Reply::status(500));
    let (code, out) = send(&["stripe"]).await.unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("-> 500"), "{out}");
    // No connection: 1.
    // A port bound but not listening refuses connections, and stays ours while held.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = socket.local_addr().unwrap();
    let (code, out) = send(&["stripe", "--to", &format!("http://{closed}/hook")]).await.unwrap();
    assert_eq!(code, 1, "{out}");
    drop(socket);
    // No secret to sign with: 1, and nothing sent.
    let before = app.received().len();
    let no_secret = dir.path().join("no-secret.toml");
    std::fs::write(
        &no_secret,
        std::fs::read_to_string(&cfg).unwrap().replace(&format!("auth_token = \"{TWILIO_TOKEN}\""), ""),
    )
    .unwrap();
    let ns = no_secret.to_str().unwrap().to_string();
    let (code, out) =
        tokio::task::spawn_blocking(move || run(&["send", "twilio", "--config", &ns], &[])).await.unwrap();
    assert_eq!(code, 1, "{out}");
    assert_eq!(app.received().len(), before, "nothing sent");
    // A configuration error: 2.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[limits]\nmax_body_bytes = \"big\"\n").unwrap();
    let bad = bad.to_str().unwrap().to_string();
    let (code, out) =
        tokio::task::spawn_blocking(move || run(&["send", "stripe", "--config", &bad], &[])).await.unwrap();
    assert_eq!(code, 2, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_refuses_a_placeholder_secret_with_the_finding_serve_refuses_it_with() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("bind = \"127.0.0.1:0\"", &format!("bind = \"{}\"", app.addr))
        .replace(crate::support::STRIPE_SECRET, "whsec_REPLACE_ME");
    std::fs::write(&cfg, text).unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    let run_with = |args: Vec<String>, env: Vec<(&'static str, &'static str)>| {
        tokio::task::spawn_blocking(move || run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &env))
    };
    let send = vec!["send".to_string(), "stripe".into(), "--config".into(), cfg.clone()];

    let (code, out) = run_with(send.clone(), vec![]).await.unwrap();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("provider.placeholder_secret") && out.contains("providers.stripe.secret"), "{out}");
    assert!(!out.contains("whsec_REPLACE_ME"), "the secret is never printed: {out}");
    assert!(app.received().is_empty(), "nothing sent");
    // `serve` refuses the same file with the same finding.
    let (code, serve_out) = run_with(vec!["serve".into(), "--config".into(), cfg.clone()], vec![]).await.unwrap();
    assert_eq!(code, 2, "{serve_out}");
    assert!(serve_out.contains("provider.placeholder_secret"), "{serve_out}");
    // Its hint names the file it read, so the check it suggests checks the same settings.
    assert!(serve_out.contains(&format!("run `stagehook check-config --config {cfg}`")), "{serve_out}");
    // With the real secret in the environment, as the running stagehook has it, `send` sends.
    let (code, out) = run_with(send, vec![("STRIPE_WEBHOOK_SECRET", crate::support::STRIPE_SECRET)]).await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(app.wait_for(1).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_names_the_server_and_says_what_it_tried_when_nothing_answers() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A port bound but not listening refuses connections, and stays ours while held.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = socket.local_addr().unwrap();
    let cfg = write_config(dir.path(), "");
    let text =
        std::fs::read_to_string(&cfg).unwrap().replace("bind = \"127.0.0.1:0\"", &format!("bind = \"{closed}\""));
    std::fs::write(&cfg, text).unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    let send = |args: &[&str]| {
        let mut all = vec!["send".to_string(), "stripe".to_string(), "--config".to_string(), cfg.clone()];
        all.extend(args.iter().map(|a| a.to_string()));
        tokio::task::spawn_blocking(move || run(&all.iter().map(String::as_str).collect::<Vec<_>>(), &[]))
    };

    // Nothing answers at the configuration's bind: what was tried, where it came from, what to do.
    let (code, out) = send(&[]).await.unwrap();
    assert_eq!(code, 1, "{out}");
    for part in
        ["is stagehook running?", &format!("http://{closed}"), "server.bind (file)", &cfg, "--server", "--config"]
    {
        assert!(out.contains(part), "the hint should say {part:?}: {out}");
    }
    // `--server` names the running stagehook by its base URL; the provider's path is added.
    let (code, out) = send(&["--server", &format!("http://{}/", app.addr)]).await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(app.wait_for(1).await[0].path, "/staging/webhooks/stripe");
    // ...and a `--server` that does not answer is the one the hint names.
    let (code, out) = send(&["--server", &format!("http://{closed}")]).await.unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("looked for it at http://{closed}, from --server")), "{out}");
    // `--server` and `--to` are two answers to one question.
    let (code, out) = send(&["--server", "http://127.0.0.1:1", "--to", "http://127.0.0.1:1/x"]).await.unwrap();
    assert_eq!(code, 2, "{out}");
    // `--count 0` is refused, not taken for one.
    let (code, out) = send(&["--server", &format!("http://{}", app.addr), "--count", "0"]).await.unwrap();
    assert_eq!(code, 2, "{out}");
    assert_eq!(app.received().len(), 1, "nothing more sent");
    drop(socket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_notes_a_folder_the_running_stagehook_holds() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let cfg = cfg.to_str().unwrap().to_string();
    let mut running = spawn_binary(&["serve", "--config", &cfg], &[]).await;
    let check = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || run(&["check-config", "--config", &cfg, "--json"], &[])).await.unwrap()
    };
    assert_eq!(check.0, 0, "{}", check.1);
    let report: serde_json::Value = serde_json::from_str(&check.1).unwrap();
    let in_use = report["findings"].as_array().unwrap().iter().find(|f| f["id"] == "data_dir.in_use").unwrap();
    assert_eq!(in_use["severity"], "ok", "{in_use}");
    assert!(in_use["message"].as_str().unwrap().contains("in use by a running stagehook"), "{in_use}");
    // `serve` still refuses the held folder.
    let second = tokio::task::spawn_blocking(move || run(&["serve", "--config", &cfg], &[])).await.unwrap();
    assert_eq!(second.0, 2, "{}", second.1);
    running.signal("TERM");
    assert_eq!(running.wait().await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stagehook_config_is_the_default_for_config_in_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let cfg = cfg.to_str().unwrap().to_string();
    let file_data = dir.path().join("data").display().to_string();
    let env = [("STAGEHOOK_CONFIG", cfg.as_str())];
    let blocking = |args: Vec<&'static str>, env: Vec<(&'static str, String)>| {
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            run_split(&args, &env)
        })
    };
    let with_cfg = || vec![("STAGEHOOK_CONFIG", cfg.clone())];

    // serve
    assert_eq!(started(&["serve"], &env).await, ("127.0.0.1".to_string(), file_data.clone()));
    // check-config
    let (code, out, err) = blocking(vec!["check-config", "--json", "--show"], with_cfg()).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["effective"]["server.data_dir"]["source"], "file", "{v}");
    // send --list: stripe is configured by the file only.
    let (code, out, err) = blocking(vec!["send", "--list", "--json"], with_cfg()).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let stripe = list.as_array().unwrap().iter().find(|i| i["name"] == "stripe").unwrap();
    assert_eq!(stripe["configured"], true, "{list}");
    // store verify reads the file's data_dir (the folder `serve` made above).
    let (code, out, err) = blocking(vec!["store", "verify"], with_cfg()).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("in {file_data}")), "{out}");
    // `--config` wins over the variable.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, format!("[server]\ndata_dir = \"{}\"\n", dir.path().join("other-data").display())).unwrap();
    let other = other.to_str().unwrap().to_string();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        run_split(
            &["check-config", "--json", "--show", "--config", &other],
            &[("STAGEHOOK_CONFIG", "/nonexistent/staging.toml")],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["effective"]["server.data_dir"]["value"].as_str().unwrap().contains("other-data"), "{v}");
    // An empty variable is ignored, as every empty `STAGEHOOK_*` is: the embedded defaults.
    let (code, out, err) =
        blocking(vec!["check-config", "--json", "--show"], vec![("STAGEHOOK_CONFIG", String::new())]).await.unwrap();
    assert_ne!(code, 2, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["effective"]["server.data_dir"]["source"], "default", "{v}");
    // A file that does not exist, named by the variable: a configuration error, as with the flag.
    let (code, out, err) =
        blocking(vec!["check-config"], vec![("STAGEHOOK_CONFIG", "/nonexistent/staging.toml".into())]).await.unwrap();
    assert_eq!(code, 2, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_json_reports_answers_and_failures_with_stable_codes() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let text =
        std::fs::read_to_string(&cfg).unwrap().replace("bind = \"127.0.0.1:0\"", &format!("bind = \"{}\"", app.addr));
    std::fs::write(&cfg, text).unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    let send = |args: &[&str]| {
        let mut all = vec!["send".to_string(), "--json".to_string(), "--config".to_string(), cfg.clone()];
        all.extend(args.iter().map(|a| a.to_string()));
        tokio::task::spawn_blocking(move || {
            let (code, out, err) = run_split(&all.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
            let v: serde_json::Value =
                serde_json::from_str(&out).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out}{err}"));
            (code, v)
        })
    };

    let (code, v) = send(&["stripe", "--count", "2"]).await.unwrap();
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    let sent = v["sent"].as_array().unwrap();
    assert_eq!(sent.len(), 2, "{v}");
    assert_eq!(sent[0]["status"], 200);
    assert_eq!(sent[0]["url"], format!("http://{}/staging/webhooks/stripe", app.addr));
    assert_eq!(app.wait_for(2).await.len(), 2);
    // A non-2xx answer: ok false, exit 1.
    app.set_default(Reply::status(500));
    let (code, v) = send(&["stripe"]).await.unwrap();
    assert_eq!((code, &v["ok"], &v["sent"][0]["status"]), (1, &serde_json::json!(false), &serde_json::json!(500)));
    // Nothing could be sent: a code, and the hint for no answer.
    let (code, v) = send(&["nosuch"]).await.unwrap();
    assert_eq!((code, v["error"]["code"].as_str()), (1, Some("unknown_provider")), "{v}");
    let (code, v) = send(&["stripe", "--event", "no.such.event"]).await.unwrap();
    assert_eq!((code, v["error"]["code"].as_str()), (1, Some("unknown_fixture")), "{v}");
    let (code, v) = send(&["twilio"]).await.unwrap();
    assert_eq!((code, v["error"]["code"].as_str()), (1, Some("nothing_to_sign")), "{v}");
    let (code, v) = send(&["stripe", "--file", "/nonexistent/body.json"]).await.unwrap();
    assert_eq!((code, v["error"]["code"].as_str()), (2, Some("file_unreadable")), "{v}");
    let (code, v) = send(&["stripe", "--server", "http://127.0.0.1:1"]).await.unwrap();
    assert_eq!((code, v["error"]["code"].as_str()), (1, Some("no_answer")), "{v}");
    assert!(v["error"]["hint"].as_str().unwrap().contains("is stagehook running?"), "{v}");
    // A placeholder secret: exit 2 and the validator's finding.
    let placeholder = dir.path().join("placeholder.toml");
    std::fs::write(&placeholder, std::fs::read_to_string(&cfg).unwrap().replace(STRIPE_SECRET, "whsec_REPLACE_ME"))
        .unwrap();
    let p = placeholder.to_str().unwrap().to_string();
    let (code, out, _) =
        tokio::task::spawn_blocking(move || run_split(&["send", "stripe", "--json", "--config", &p], &[]))
            .await
            .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((code, v["error"]["code"].as_str()), (2, Some("config_refused")), "{v}");
    assert_eq!(v["error"]["findings"][0]["id"], "provider.placeholder_secret", "{v}");
}
