//! Configuration validation and isolation: one case per check, live keys refused at startup,
//! `check-config` exit codes and provenance, the admin token, and no secret in any output.

use std::collections::BTreeMap;

use stagehook::config::validate::{validate, Context, Severity};
use stagehook::config::{Config, ConfigError};
use stagehook::providers::api::{ApiAccess, GithubApi, HookOwner, NoApi, StripeApi, GITHUB_API_BASE, STRIPE_API_BASE};
use stagehook::secret::Secret;
use stagehook::{App, Clock};

use crate::support::{self, run_binary, spawn_binary, stripe_event, write_config, STRIPE_SECRET};

const GOOD_STRIPE: &str = "[providers.stripe]\nsecret = \"whsec_0123456789abcdef0123\"\n";

/// Validates a config fragment (with its data in a temp dir) and the given environment.
fn findings(toml: &str, env: &[(&str, &str)]) -> Vec<(String, Severity, String)> {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::from_toml(toml).unwrap_or_else(|e| panic!("{toml}: {e}"));
    c.check().unwrap_or_else(|e| panic!("{toml}: {e}"));
    if !toml.contains("data_dir") {
        c.server.data_dir = dir.path().join("data");
    }
    let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let report = validate(&c, &env, Context::Standalone);
    report.findings.into_iter().map(|f| (f.id.to_string(), f.severity, f.key)).collect()
}

fn check(toml: &str, env: &[(&str, &str)], id: &str, severity: Severity, key: &str) {
    let got = findings(toml, env);
    assert!(
        got.iter().any(|(i, s, k)| i == id && *s == severity && k == key),
        "expected {id} {severity:?} on {key} for\n{toml}{env:?}\ngot {got:#?}"
    );
}

/// A config fragment, the environment, and the finding expected: id, severity, key.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, Severity, &'a str);

#[test]
fn every_check_has_its_finding() {
    use Severity::*;
    let cases: &[Case] = &[
        ("[providers.stripe]\ntolerance_seconds = 300\n", &[], "provider.secret_missing", Error, "providers.stripe.secret"),
        ("[providers.stripe]\nsecret = \"whsec_REPLACE_ME\"\n", &[], "provider.placeholder_secret", Error, "providers.stripe.secret"),
        ("[providers.stripe]\nsecret = \"sk_test_not_a_signing_secret\"\n", &[], "stripe.secret_format", Error, "providers.stripe.secret"),
        (GOOD_STRIPE, &[], "stripe.secret_format", Ok, "providers.stripe.secret"),
        ("[providers.twilio]\nauth_token = \"not-hex\"\n", &[], "twilio.token_format", Error, "providers.twilio.auth_token"),
        ("[providers.twilio]\nauth_token = \"REPLACE_WITH_32_HEX_AUTH_TOKEN\"\n", &[], "provider.placeholder_secret", Error, "providers.twilio.auth_token"),
        ("[providers.twilio]\nauth_token = \"0123456789abcdef0123456789abcdef\"\n", &[], "twilio.token_format", Ok, "providers.twilio.auth_token"),
        ("[providers.stripe]\nsecret = \"samesecret\"\n[providers.twilio]\nauth_token = \"samesecret\"\n", &[], "secret.reused", Warning, "providers.twilio"),
        ("", &[], "provider.none_configured", Warning, "providers"),
        // Named endpoints of any kind.
        ("[providers.github]\n", &[], "provider.secret_missing", Error, "providers.github.secret"),
        ("[providers.mail]\nkind = \"sendgrid\"\n", &[], "provider.secret_missing", Error, "providers.mail.public_key"),
        ("[providers.gh]\nkind = \"github\"\nsecret = \"s3cr3t-0123456789\"\ntimestamp_header = \"x-ts\"\n", &[], "provider.unused_key", Error, "providers.gh.timestamp_header"),
        ("[providers.shop]\nkind = \"shopify\"\nsecret = \"REPLACE_ME\"\n", &[], "provider.placeholder_secret", Error, "providers.shop.secret"),
        ("[providers.slack]\nsecret = \"samesecret\"\n[providers.stripe]\nsecret = \"samesecret\"\n", &[], "secret.reused", Warning, "providers.slack"),
        ("[providers.svix]\nkind = \"standard\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nforward_to = [\"https://hooks.prod.example.com/x\"]\n[isolation]\nproduction_hosts = [\"*.prod.example.com\"]\n", &[], "isolation.production_target", Error, "providers.svix.forward_to[0]"),
        // Isolation: Stripe API keys from the config or the environment.
        ("[providers.stripe]\nsecret = \"whsec_0123456789abcdef0123\"\napi_key = \"sk_live_51Habc\"\n", &[], "isolation.live_stripe_key", Error, "providers.stripe.api_key"),
        (GOOD_STRIPE, &[("STRIPE_API_KEY", "rk_live_51Habc")], "isolation.live_stripe_key", Error, "env STRIPE_API_KEY"),
        (GOOD_STRIPE, &[("STRIPE_SECRET_KEY", "pk_live_51Habc")], "isolation.live_stripe_key", Error, "env STRIPE_SECRET_KEY"),
        (GOOD_STRIPE, &[("STRIPE_SECRET_KEY", "sk_test_51Habc")], "isolation.live_stripe_key", Ok, "env STRIPE_SECRET_KEY"),
        (GOOD_STRIPE, &[("STRIPE_API_KEY", "51Habc")], "isolation.stripe_key_format", Warning, "env STRIPE_API_KEY"),
        ("", &[("TWILIO_API_KEY", "SK0123")], "isolation.twilio_live_credentials", Warning, "env TWILIO_API_KEY"),
        ("[providers.twilio]\naccount_sid = \"XY123\"\n", &[], "twilio.account_sid_format", Error, "providers.twilio.account_sid"),
        // Every Stripe section's API key, not only the built-in endpoint's, and an API reached in clear.
        ("[providers.eu]\nkind = \"stripe\"\nsecret = \"whsec_0123456789abcdef0123\"\napi_key = \"rk_live_51Habc\"\n", &[], "isolation.live_stripe_key", Error, "providers.eu.api_key"),
        ("[providers.eu]\nkind = \"stripe\"\nsecret = \"whsec_0123456789abcdef0123\"\napi_key = \"rk_test_51Habc\"\n", &[], "isolation.live_stripe_key", Ok, "providers.eu.api_key"),
        ("[providers.eu]\nkind = \"stripe\"\nsecret = \"whsec_0123456789abcdef0123\"\napi_base = \"http://stripe-mock.internal:12111\"\n", &[], "provider.api_base_clear", Warning, "providers.eu.api_base"),
        ("[providers.gh]\nkind = \"github\"\nsecret = \"s3cr3t-0123456789\"\napi_base = \"http://ghe.example.com/api/v3\"\n", &[], "provider.api_base_clear", Warning, "providers.gh.api_base"),
        ("[providers.gh]\nkind = \"github\"\nsecret = \"s3cr3t-0123456789\"\napi_token = \"REPLACE_ME\"\norganization = \"o\"\nhook_id = 1\n", &[], "provider.placeholder_secret", Error, "providers.gh.api_token"),
        ("[providers.eu]\nkind = \"stripe\"\nsecret = \"whsec_0123456789abcdef0123\"\napi_key = \"rk_test_REPLACE_ME\"\n", &[], "provider.placeholder_secret", Error, "providers.eu.api_key"),
        // Isolation: SendGrid has no test-mode keys, so any API key is a real account's.
        ("", &[("SENDGRID_API_KEY", "SG.abcdefghijklmnop.qrstuvwxyz0123456789")], "isolation.sendgrid_api_key", Warning, "env SENDGRID_API_KEY"),
        ("", &[("SENDGRID_API_KEY", "not-a-sendgrid-key")], "isolation.sendgrid_key_format", Warning, "env SENDGRID_API_KEY"),
        // Isolation: forward targets.
        ("[providers.stripe]\nforward_to = [\"https://api.stripe.com/v1/events\"]\n", &[], "isolation.production_target", Error, "providers.stripe.forward_to[0]"),
        ("[isolation]\nproduction_hosts = [\"*.prod.example.com\"]\n[providers.twilio]\nforward_to = [\"http://127.0.0.1:3000/ok\", \"https://app.prod.example.com/sms\"]\n", &[], "isolation.production_target", Error, "providers.twilio.forward_to[1]"),
        ("[isolation]\nproduction_hosts = [\"*.prod.example.com\"]\n[providers.twilio]\nforward_to = [\"http://127.0.0.1:3000/ok\"]\n", &[], "isolation.production_target", Ok, "providers.twilio.forward_to[0]"),
        // The data folder.
        ("[server]\ndata_dir = \"/dev/null/stagehook\"\n", &[], "data_dir.writable", Error, "server.data_dir"),
        ("", &[], "data_dir.writable", Ok, "server.data_dir"),
        // Exposure.
        ("[server]\nbind = \"0.0.0.0:8080\"\n", &[], "bind.exposed_without_token", Error, "server.bind"),
        ("[server]\nbind = \"0.0.0.0:8080\"\nadmin_token = \"short\"\n", &[], "admin_token.weak", Error, "server.admin_token"),
        ("[server]\nadmin_token = \"short\"\n", &[], "admin_token.weak", Warning, "server.admin_token"),
        ("[server]\npublic_url = \"https://abc.tunnel.example\"\ntrusted_proxies = [\"127.0.0.1\"]\nadmin_token = \"0123456789abcdef0123456\"\n", &[], "admin_token.weak", Error, "server.admin_token"),
        ("[server]\npublic_url = \"http://127.0.0.1:8080\"\nadmin_token = \"short\"\n", &[], "admin_token.weak", Warning, "server.admin_token"),
        ("[server]\npublic_url = \"https://abc.tunnel.example\"\n", &[], "proxies.missing", Warning, "server.trusted_proxies"),
        ("[server]\nadmin_token = \"  \"\n", &[], "admin_token.empty", Error, "server.admin_token"),
        ("[server]\nbind = \"0.0.0.0:8080\"\nadmin_token = \"a-long-enough-admin-token-0123\"\n", &[], "bind.exposed_without_token", Ok, "server.bind"),
        ("[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n[providers.twilio]\nauth_token = \"0123456789abcdef0123456789abcdef\"\n", &[], "twilio.public_url_missing", Warning, "server.public_url"),
        ("[server]\ntrusted_proxies = [\"0.0.0.0/0\"]\n", &[], "proxies.too_broad", Warning, "server.trusted_proxies[0]"),
        // Ranges.
        ("[limits]\nrate_limit_per_minute = 0\n", &[], "limits.rate_limit_off", Warning, "limits.rate_limit_per_minute"),
        ("[limits]\nmax_body_bytes = 20971520\n", &[], "limits.body_limit_large", Warning, "limits.max_body_bytes"),
        ("[retry]\nmax_delay = \"2days\"\n", &[], "retry.max_delay_long", Warning, "retry.max_delay"),
        ("[retention]\nmax_age = \"10m\"\n", &[], "retention.max_age_short", Warning, "retention.max_age"),
    ];
    for (toml, env, id, severity, key) in cases {
        check(toml, env, id, *severity, key);
    }
    // A clean staging setup has no error and no warning: an API on loopback is no warning.
    let clean = format!(
        "{GOOD_STRIPE}api_key = \"rk_test_51Habc\"\napi_base = \"http://127.0.0.1:12111/\"\n\
         [providers.twilio]\nauth_token = \"0123456789abcdef0123456789abcdef\"\n\
         [providers.gh]\nkind = \"github\"\nsecret = \"s3cr3t-0123456789\"\napi_token = \"t\"\norganization = \"o\"\nhook_id = 1\napi_base = \"http://localhost:9/\"\n"
    );
    let got = findings(&clean, &[]);
    assert!(got.iter().all(|(_, s, _)| *s == Severity::Ok), "{got:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_in_use_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let c = support::config(dir.path());
    let _app = App::open(c.clone(), Clock::system()).unwrap();
    let report = validate(&c, &BTreeMap::new(), Context::Standalone);
    assert!(report.findings.iter().any(|f| f.id == "data_dir.in_use" && f.severity == Severity::Error), "{report:?}");
    // The running server itself holds the lock: not a finding there.
    let report = validate(&c, &BTreeMap::new(), Context::Running);
    assert!(report.findings.iter().all(|f| f.id != "data_dir.in_use"));
}

#[test]
fn startup_refuses_a_live_key_naming_it_without_printing_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "api_key = \"sk_live_51SECRETVALUE0123456789\"\n");
    let (code, out) = run_binary(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("providers.stripe.api_key") && out.contains("isolation.live_stripe_key"), "{out}");
    assert!(!out.contains("sk_live_51SECRETVALUE0123456789"), "{out}");
    assert!(!out.contains(STRIPE_SECRET), "{out}");
}

/// `stripe.secret_format` says what is wrong: a `whsec_` secret cut short is too short, a value
/// with another prefix is not a signing secret at all.
#[test]
fn a_bad_stripe_secret_is_said_to_be_too_short_or_of_another_kind() {
    let message = |secret: &str| {
        let toml = format!("[providers.stripe]\nsecret = \"{secret}\"\n");
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::from_toml(&toml).unwrap();
        c.server.data_dir = dir.path().join("data");
        let report = validate(&c, &BTreeMap::new(), Context::Standalone);
        let f = report.findings.into_iter().find(|f| f.id == "stripe.secret_format").unwrap();
        assert_eq!((f.severity, f.key.as_str()), (Severity::Error, "providers.stripe.secret"), "{secret}");
        f.message
    };
    let short = message("whsec_abc");
    assert!(short.contains("too short") && short.contains("3 characters after `whsec_`"), "{short}");
    assert!(short.contains("32 or more"), "{short}");
    let other = message("sk_test_not_a_signing_secret");
    assert!(other.contains("start with `whsec_`") && !other.contains("too short"), "{other}");
}

/// A configuration error names the line of the key at fault, not of its section (a provider
/// section's keys are read one by one, where toml's own position is the section's), and an
/// unknown key or provider name gets the nearest one the section accepts, when one is close.
#[test]
fn a_config_error_names_the_keys_line_and_what_was_meant() {
    let error = |toml: &str| Config::from_toml(toml).and_then(|c| c.check()).unwrap_err().to_string();
    let stripe = "[server]\nbind = \"127.0.0.1:0\"\n\n[providers.stripe]\n# the endpoint's secret\nsecret = \"whsec_0123456789abcdef0123\"\n\ntolerance_seconds = -1\n";
    let e = error(stripe);
    assert!(e.contains("providers.stripe.tolerance_seconds") && e.ends_with("(line 8)"), "{e}");
    let e = error("[providers.gh]\nkind = \"github\"\n\nsecrets = \"one\"\n");
    assert!(e.contains("providers.gh.secrets") && e.ends_with("(line 4)"), "{e}");
    let e = error("[providers.stripe]\nforward_to = []\nsecert = \"whsec_x\"\n");
    assert!(e.contains("did you mean `secret`?") && e.ends_with("(line 3)"), "{e}");
    let e = error("[providers.gh]\nkind = \"github\"\nforward_to = []\nheadr = \"x\"\n");
    assert!(e.contains("did you mean `header`?") && e.ends_with("(line 4)"), "{e}");
    let e = error("[providers.stripe]\nforward_to = []\n[providers.stripe.chaso]\nduplicate = 0.5\n");
    assert!(e.contains("did you mean `chaos`?"), "{e}");
    let e = error("[limits]\nmax_body_bytes = 10\n[server]\n\nbnd = \"127.0.0.1:0\"\n");
    assert!(e.contains("did you mean `bind`?") && e.ends_with("(line 5)"), "{e}");
    let e = error("[server]\nbind = \"127.0.0.1:0\"\n[providers.githb]\nsecret = \"x\"\n");
    assert!(e.contains("needs `kind`") && e.contains("did you mean `github`?") && e.ends_with("(line 3)"), "{e}");
    // Nothing close: no guess.
    let e = error("[providers.acme]\nsecret = \"x\"\n");
    assert!(e.contains("needs `kind`") && !e.contains("did you mean"), "{e}");
    let e = error("[server]\nlisten = \"127.0.0.1:0\"\n");
    assert!(e.contains("unknown field `listen`") && !e.contains("did you mean"), "{e}");

    // As `check-config` and `serve` say it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, stripe).unwrap();
    let (code, out) = run_binary(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("(line 8)"), "{out}");
}

/// A named endpoint the file declares takes any key from the environment,
/// `STAGEHOOK_PROVIDERS_<NAME>_<KEY>` with a `-` of its name as `_`, and `check-config --show`
/// names the variable as its source; a variable for an endpoint the file does not declare (it
/// cannot say the kind), or with a slip in its name, is refused.
#[test]
fn a_named_endpoint_takes_its_keys_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "[providers.github]\n[providers.eu-west]\nkind = \"stripe\"\nsecret = \"whsec_file_0123456789abcdef0123456789\"\n";
    let config = write_config(dir.path(), extra);
    let run = |env: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stagehook"))
            .args(["check-config", "--config", config.to_str().unwrap(), "--json", "--show"])
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    };
    let (code, out) = run(&[
        ("STAGEHOOK_PROVIDERS_GITHUB_SECRET", "gh-env-secret-0123456789"),
        ("STAGEHOOK_PROVIDERS_GITHUB_FORWARD_TO", "http://127.0.0.1:3000/gh"),
        ("STAGEHOOK_PROVIDERS_EU_WEST_SECRET", "whsec_env_0123456789abcdef0123456789"),
        ("STAGEHOOK_PROVIDERS_EU_WEST_RETRY_MAX_ATTEMPTS", "2"),
    ]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let shown = |key: &str| (v["effective"][key]["value"].clone(), v["effective"][key]["source"].clone());
    let (secret, source) = shown("providers.github.secret");
    assert_eq!(source, "env STAGEHOOK_PROVIDERS_GITHUB_SECRET");
    assert!(secret.as_str().unwrap().contains("sha256:") && !out.contains("gh-env-secret"), "{secret}");
    assert_eq!(
        shown("providers.github.forward_to"),
        ("[\"http://127.0.0.1:3000/gh\"]".into(), "env STAGEHOOK_PROVIDERS_GITHUB_FORWARD_TO".into())
    );
    assert_eq!(shown("providers.eu-west.secret").1, "env STAGEHOOK_PROVIDERS_EU_WEST_SECRET");
    assert_eq!(
        shown("providers.eu-west.retry.max_attempts"),
        ("2".into(), "env STAGEHOOK_PROVIDERS_EU_WEST_RETRY_MAX_ATTEMPTS".into())
    );
    assert_eq!(shown("providers.eu-west.kind").1, "file");

    // No `[providers.shop]` in the file: refused, as a configuration error.
    let (code, out) = run(&[("STAGEHOOK_PROVIDERS_SHOP_SECRET", "shop-secret")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("`STAGEHOOK_PROVIDERS_SHOP_SECRET` sets no key") && out.contains("cannot declare"), "{out}");
    assert!(!out.contains("shop-secret\""), "{out}");
    let (code, out) = run(&[("STAGEHOOK_PROVIDERS_GITHB_SECRET", "gh-env-secret-0123456789")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("did you mean `STAGEHOOK_PROVIDERS_GITHUB_SECRET`?"), "{out}");
}

#[test]
fn check_config_exit_codes_json_and_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_config(dir.path(), "");
    let (code, out) = run_binary(&["check-config", "--config", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 error(s)"), "{out}");
    assert!(!dir.path().join("data").exists(), "checking creates nothing");

    let (code, out) = run_binary(&["check-config", "--config", good.to_str().unwrap(), "--json", "--show"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["effective"]["limits.rate_limit_per_minute"]["source"], "file");
    assert_eq!(v["effective"]["store.cache_mb"]["source"], "default");
    let secret = v["effective"]["providers.stripe.secret"]["value"].as_str().unwrap();
    assert!(secret.contains("sha256:") && !out.contains(STRIPE_SECRET), "{secret}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nbind = \"0.0.0.0:8080\"\n[providers.stripe]\nsecret = \"whsec_REPLACE_ME\"\n")
        .unwrap();
    let (code, out) = run_binary(&["check-config", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("bind.exposed_without_token") && out.contains("provider.placeholder_secret"),
        "every error, not just the first: {out}"
    );
    assert!(out.contains("2 error(s)"), "{out}");

    // A bad value is still a configuration error (exit 2), as for serve.
    std::fs::write(&bad, "[limits]\nmax_body_bytes = \"big\"\n").unwrap();
    assert_eq!(run_binary(&["check-config", "--config", bad.to_str().unwrap()]).0, 2);
}

#[test]
fn the_example_config_has_only_placeholder_errors() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/staging.toml.example");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("staging.toml");
    let text = std::fs::read_to_string(example).unwrap();
    let text = text
        .replace("data_dir = \"./stagehook-data\"", &format!("data_dir = \"{}\"", dir.path().join("data").display()));
    std::fs::write(&copy, &text).unwrap();
    let (code, out) = run_binary(&["check-config", "--config", copy.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let errors: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(!errors.is_empty() && errors.iter().all(|id| *id == "provider.placeholder_secret"), "{errors:?}");

    // The named endpoints it shows, uncommented, load too, and need only their secrets.
    let (head, named) = text.split_once("# Named endpoints").expect("the example shows named endpoints");
    let uncommented: Vec<String> = named
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.starts_with('[') || rest.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')) => {
                rest.to_string()
            }
            _ => l.to_string(),
        })
        .collect();
    std::fs::write(&copy, format!("{head}# Named endpoints{}\n", uncommented.join("\n"))).unwrap();
    let (code, out) = run_binary(&["check-config", "--config", copy.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let errors: Vec<(&str, &str)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| (f["id"].as_str().unwrap(), f["key"].as_str().unwrap()))
        .collect();
    assert!(errors.iter().all(|(id, _)| *id == "provider.placeholder_secret"), "{errors:?}");
    for name in ["github", "shop", "slack", "svix", "stripe_eu", "acme"] {
        assert!(errors.iter().any(|(_, key)| key.starts_with(&format!("providers.{name}."))), "{name}: {errors:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_guards_everything_but_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = support::config(dir.path());
    c.server.admin_token = Some(stagehook::secret::Secret::new("admin-token-0123456789abcdef"));
    let s = support::start(c).await;
    let ok = s.stripe(&stripe_event("evt_admin")).await;
    assert_eq!(ok.status, 200, "ingest needs no token");
    let id = ok.json()["id"].as_str().unwrap().to_string();
    let signed_in = s
        .post(
            "/dashboard/session",
            &[("content-type", "application/json")],
            br#"{"token": "admin-token-0123456789abcdef"}"#,
        )
        .await;
    let session = signed_in.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    // With the token, each answers as it would without one: the empty body is a bad `/validate`
    // request, and the stored event has nowhere to be replayed to.
    let ok = (200, String::new());
    let paths = [
        ("GET", "/staging/webhooks/test".to_string(), ok.clone()),
        ("GET", "/staging/webhooks/stats".to_string(), ok.clone()),
        ("GET", "/staging/webhooks/events".to_string(), ok.clone()),
        ("GET", format!("/staging/webhooks/events/{id}"), ok.clone()),
        ("GET", format!("/staging/webhooks/events/{id}/curl"), ok.clone()),
        ("GET", "/staging/webhooks/rejections".to_string(), ok.clone()),
        ("GET", "/staging/webhooks/recovery/stats".to_string(), ok.clone()),
        ("GET", "/staging/webhooks/config/validate".to_string(), ok.clone()),
        ("POST", "/staging/webhooks/replay".to_string(), ok.clone()),
        ("POST", format!("/staging/webhooks/events/{id}/replay"), (409, "no_target".to_string())),
        ("POST", "/staging/webhooks/validate".to_string(), (400, "invalid_payload".to_string())),
    ];
    // Changes are JSON, or the origin checks refuse them before the token is looked at.
    const JSON: (&str, &str) = ("content-type", "application/json");
    for (n, (method, path, expected)) in paths.iter().enumerate() {
        let r = support::request(s.addr, method, path, &[JSON], b"").await;
        assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"), "{method} {path}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"stagehook\""), "{method} {path}");
        support::assert_security_headers(&r);
        // From other addresses, one each: ten wrong tokens from one client are all it may try in
        // a minute, and there are more paths than that.
        let other = format!("127.0.0.{}", n + 2).parse().unwrap();
        let r =
            support::request_from(other, s.addr, method, path, &[JSON, ("authorization", "Bearer wrong-token")], b"")
                .await;
        assert_eq!(r.status, 401, "{method} {path}");
        let r = support::request(
            s.addr,
            method,
            path,
            &[JSON, ("authorization", "Bearer admin-token-0123456789abcdef")],
            b"",
        )
        .await;
        assert_eq!((r.status, r.code()), *expected, "{method} {path}: {}", r.text());
        let r =
            support::request(s.addr, method, path, &[JSON, ("cookie", &format!("theme=dark; {session}"))], b"").await;
        assert_eq!((r.status, r.code()), *expected, "{method} {path} with the session cookie: {}", r.text());
    }
    // Unknown paths stay 404 and wrong methods 405, token or not.
    assert_eq!(s.get("/nope").await.status, 404);
    assert_eq!(s.get("/staging/webhooks/stripe").await.status, 405);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_output_of_a_full_run() {
    let dir = tempfile::tempdir().unwrap();
    let admin = "admin-secret-token-ABCDEF0123456789";
    let twilio = "fedcba9876543210fedcba9876543210";
    let api_key = "sk_test_51APIKEYSECRET0123456789";
    let api_token = "github_pat_APITOKENSECRET0123456789";
    let config = dir.path().join("staging.toml");
    let text = format!(
        "[server]\nbind = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nadmin_token = \"{admin}\"\n\n\
         [providers.stripe]\nsecret = \"{STRIPE_SECRET}\"\napi_key = \"{api_key}\"\n\n\
         [providers.gh]\nkind = \"github\"\nsecret = \"gh-secret-0123456789\"\napi_token = \"{api_token}\"\n\
         repository = \"octo-org/shop\"\nhook_id = 12\n",
        dir.path().join("data").display()
    );
    std::fs::write(&config, text).unwrap();
    let secrets = [STRIPE_SECRET, twilio, admin, api_key, api_token, "gh-secret-0123456789"];

    let (code, show) = run_binary(&["check-config", "--config", config.to_str().unwrap(), "--show"]);
    assert_eq!(code, 0, "{show}");
    let mut s = spawn_binary(
        &["serve", "--config", config.to_str().unwrap()],
        &[("TWILIO_AUTH_TOKEN", twilio), ("RUST_LOG", "debug")],
    )
    .await;
    let auth = format!("Bearer {admin}");
    let h = [("authorization", auth.as_str())];
    let ok = s.stripe(&stripe_event("evt_redact")).await;
    let id = ok.json()["id"].as_str().unwrap().to_string();
    let bad = support::post_badly_signed(s.addr).await;
    let mut outputs = vec![show, ok.text(), bad.text()];
    for path in [
        "/staging/webhooks/test".to_string(),
        "/staging/webhooks/stats".to_string(),
        "/staging/webhooks/events".to_string(),
        format!("/staging/webhooks/events/{id}"),
        "/staging/webhooks/rejections".to_string(),
        "/staging/webhooks/recovery/stats".to_string(),
        "/staging/webhooks/config/validate".to_string(),
    ] {
        let r = support::request(s.addr, "GET", &path, &h, b"").await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        outputs.push(r.text());
    }
    let report = support::request(s.addr, "GET", "/staging/webhooks/config/validate", &h, b"").await.json();
    assert_eq!(report["ok"], true, "{report}");
    s.signal("TERM");
    assert_eq!(s.wait().await.code(), Some(0));
    outputs.push(s.stdout.lock().clone());
    outputs.push(s.stderr.lock().clone());
    let all = outputs.join("\n");
    for secret in secrets {
        assert!(!all.contains(secret), "a secret leaked into the output");
    }
}

/// A SendGrid API key in the environment is named by its variable and fingerprint only, and
/// `check-config` warns (exit 0) that it is a real account's.
#[test]
fn a_sendgrid_api_key_is_a_warning_shown_by_its_fingerprint_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let key = "SG.sendgridKEYid0123.SENDGRIDsecretPART0123456789abcdef";
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stagehook"))
        .args(["check-config", "--config", config.to_str().unwrap(), "--json", "--offline"])
        .env_clear()
        .env("SENDGRID_API_KEY", key)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "isolation.sendgrid_api_key")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!((f["severity"].as_str(), f["key"].as_str()), (Some("warning"), Some("env SENDGRID_API_KEY")));
    let message = f["message"].as_str().unwrap();
    assert!(message.contains("sha256:") && message.contains("not production"), "{message}");
    assert!(!text.contains(key) && !text.contains("SENDGRIDsecretPART"), "the key leaked: {text}");
}

/// The API access of each endpoint `file` declares, with `env` layered over it, as `serve`
/// builds them.
fn api_access(file: &str, env: &[(&str, &str)]) -> Result<BTreeMap<String, Result<ApiAccess, NoApi>>, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staging.toml");
    std::fs::write(&path, file).unwrap();
    let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let layered = stagehook::config::layers::load(Some(&path), &env, &[])?;
    Ok(layered.endpoints.iter().map(|e| (e.provider.name().to_string(), e.provider.api_access().cloned())).collect())
}

/// What an endpoint needs to read its provider's API comes from its own section, in the file or
/// from `STAGEHOOK_PROVIDERS_<NAME>_<KEY>`, for the built-in endpoint and named ones alike.
#[test]
fn api_access_comes_from_the_file_and_the_environment() {
    let file = "[providers.stripe]\nsecret = \"whsec_0123456789abcdef0123\"\napi_key = \"rk_test_file\"\n\
                [providers.eu]\nkind = \"stripe\"\nsecret = \"whsec_eu_0123456789abcdef0123\"\n\
                [providers.gh]\nkind = \"github\"\nsecret = \"gh-0123456789\"\napi_token = \"ghp_file\"\n\
                repository = \"octo-org/shop\"\nhook_id = 12\napi_base = \"https://ghe.example.com/api/v3/\"\n\
                [providers.org]\nkind = \"github\"\nsecret = \"org-0123456789\"\n";
    let got = api_access(file, &[]).unwrap();
    let stripe = |base: &str, key: &str| Ok(ApiAccess::Stripe(StripeApi { base: base.into(), key: Secret::new(key) }));
    let github = |base: &str, token: &str, owner: HookOwner, hook_id| {
        Ok(ApiAccess::Github(GithubApi { base: base.into(), token: Secret::new(token), owner, hook_id }))
    };
    assert_eq!(got["stripe"], stripe(STRIPE_API_BASE, "rk_test_file"));
    assert_eq!(got["eu"], Err(NoApi::NotConfigured("providers.eu.api_key".into())));
    let shop = HookOwner::Repository("octo-org/shop".into());
    assert_eq!(got["gh"], github("https://ghe.example.com/api/v3", "ghp_file", shop.clone(), 12));
    assert_eq!(
        got["org"],
        Err(NoApi::NotConfigured("providers.org.api_token, repository (or organization) and hook_id".into()))
    );
    // The twilio endpoint's provider has no such API.
    assert_eq!(got["twilio"], Err(NoApi::NotOffered));

    let env = [
        ("STAGEHOOK_PROVIDERS_STRIPE_API_KEY", "sk_test_env"),
        ("STAGEHOOK_PROVIDERS_STRIPE_API_BASE", "http://127.0.0.1:4242/"),
        ("STAGEHOOK_PROVIDERS_EU_API_KEY", "rk_test_eu"),
        ("STAGEHOOK_PROVIDERS_EU_API_BASE", "http://localhost:4243"),
        ("STAGEHOOK_PROVIDERS_GH_API_TOKEN", "ghp_env"),
        ("STAGEHOOK_PROVIDERS_GH_API_BASE", "http://127.0.0.1:4244"),
        ("STAGEHOOK_PROVIDERS_GH_REPOSITORY", "octo-org/api"),
        ("STAGEHOOK_PROVIDERS_GH_HOOK_ID", "13"),
        ("STAGEHOOK_PROVIDERS_ORG_API_TOKEN", "ghp_org"),
        ("STAGEHOOK_PROVIDERS_ORG_ORGANIZATION", "octo-org"),
        ("STAGEHOOK_PROVIDERS_ORG_HOOK_ID", "14"),
    ];
    let got = api_access(file, &env).unwrap();
    assert_eq!(got["stripe"], stripe("http://127.0.0.1:4242", "sk_test_env"));
    assert_eq!(got["eu"], stripe("http://localhost:4243", "rk_test_eu"));
    let api = HookOwner::Repository("octo-org/api".into());
    assert_eq!(got["gh"], github("http://127.0.0.1:4244", "ghp_env", api, 13));
    let org = HookOwner::Organization("octo-org".into());
    assert_eq!(got["org"], github(GITHUB_API_BASE, "ghp_org", org, 14));

    // A partial set names the key that is missing; both owners name both keys; a bad value from
    // the environment names its variable.
    let error = |env: &[(&str, &str)]| api_access(file, env).unwrap_err();
    let e = error(&[("STAGEHOOK_PROVIDERS_ORG_API_TOKEN", "ghp_org"), ("STAGEHOOK_PROVIDERS_ORG_ORGANIZATION", "o")]);
    assert_eq!(e.key, "providers.org.hook_id", "{e}");
    assert!(e.message.contains("api_token, repository (or organization) and hook_id together"), "{e}");
    let e = error(&[("STAGEHOOK_PROVIDERS_ORG_HOOK_ID", "14")]);
    assert_eq!(e.key, "providers.org.api_token", "{e}");
    let e = error(&[("STAGEHOOK_PROVIDERS_GH_ORGANIZATION", "octo-org")]);
    assert_eq!(e.key, "providers.gh.repository", "{e}");
    assert!(e.message.contains("providers.gh.organization are both set"), "{e}");
    let e = error(&[("STAGEHOOK_PROVIDERS_GH_HOOK_ID", "twelve")]);
    assert!(e.key == "providers.gh.hook_id" && e.message.contains("STAGEHOOK_PROVIDERS_GH_HOOK_ID"), "{e}");
    let e = error(&[("STAGEHOOK_PROVIDERS_EU_API_BASE", "https://api.stripe.com/?mode=test")]);
    assert_eq!(e.key, "providers.eu.api_base", "{e}");
}

/// Runs `stagehook` with `args` and `env` (only), expecting it to exit by itself: a `serve` that
/// starts instead is stopped after 30 s and fails the test, rather than hanging it.
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stagehook"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("`stagehook {}` did not exit: it started", args.join(" "));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut text = String::new();
    child.stdout.take().unwrap().read_to_string(&mut text).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut text).unwrap();
    (status.code().unwrap_or(-1), text)
}

/// A live key in a named Stripe section, from the file or the environment, stops `serve` as the
/// built-in endpoint's does, naming the key and never printing it; `check-config` and the
/// running server's validation report it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_key_in_a_named_stripe_section_stops_startup() {
    let dir = tempfile::tempdir().unwrap();
    let live = "rk_live_51NAMEDSECTIONKEY0123456789";
    let named = "[providers.eu]\nkind = \"stripe\"\nsecret = \"whsec_eu_0123456789abcdef0123\"\n";
    let config = write_config(dir.path(), &format!("{named}api_key = \"{live}\"\n"));
    let (code, out) = run_to_exit(&["serve", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("providers.eu.api_key [isolation.live_stripe_key]"), "{out}");
    assert!(!out.contains(live) && !out.contains("NAMEDSECTIONKEY"), "{out}");

    let config = write_config(dir.path(), named);
    let run = |args: &[&str]| run_to_exit(args, &[("STAGEHOOK_PROVIDERS_EU_API_KEY", live)]);
    let (code, out) = run(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("providers.eu.api_key [isolation.live_stripe_key]") && !out.contains(live), "{out}");
    let (code, out) = run(&["check-config", "--config", config.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let errors: Vec<&serde_json::Value> =
        v["findings"].as_array().unwrap().iter().filter(|f| f["severity"] == "error").collect();
    assert!(errors.len() == 1 && errors[0]["key"] == "providers.eu.api_key" && !out.contains(live), "{out}");

    // In the running server (started without the check), `/config/validate` says it too.
    let mut c = support::config(dir.path());
    let section =
        stagehook::providers::KindConfig::from_toml("eu", &format!("kind = \"stripe\"\napi_key = \"{live}\"\n"));
    c.providers.0.insert("eu".into(), stagehook::config::EndpointConfig::from(section.unwrap()));
    let s = support::start(c).await;
    let report = s.get("/staging/webhooks/config/validate").await;
    let v = report.json();
    let f = v["findings"].as_array().unwrap().iter().find(|f| f["key"] == "providers.eu.api_key").cloned();
    let f = f.unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!((f["id"].as_str(), f["severity"].as_str()), (Some("isolation.live_stripe_key"), Some("error")));
    assert!(!report.text().contains(live));
    s.stop().await;
}

/// `check-config --show` gives each API credential by its fingerprint, with where it came from,
/// and the other keys as written.
#[test]
fn api_credentials_are_shown_by_fingerprint_only() {
    let dir = tempfile::tempdir().unwrap();
    let token = "github_pat_SHOWNTOKEN0123456789";
    let key = "rk_test_SHOWNKEY0123456789";
    let extra = format!(
        "api_key = \"{key}\"\n[providers.gh]\nkind = \"github\"\nsecret = \"gh-0123456789\"\nrepository = \"octo-org/shop\"\nhook_id = 12\n"
    );
    let config = write_config(dir.path(), &extra);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stagehook"))
        .args(["check-config", "--config", config.to_str().unwrap(), "--json", "--show"])
        .env_clear()
        .env("STAGEHOOK_PROVIDERS_GH_API_TOKEN", token)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains(token) && !text.contains(key), "a credential leaked: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let shown =
        |k: &str| (v["effective"][k]["value"].as_str().map(str::to_string), v["effective"][k]["source"].clone());
    let (value, source) = shown("providers.gh.api_token");
    assert!(value.unwrap().contains("sha256:") && source == "env STAGEHOOK_PROVIDERS_GH_API_TOKEN");
    let (value, source) = shown("providers.stripe.api_key");
    assert!(value.unwrap().contains("sha256:") && source == "file");
    assert_eq!(shown("providers.gh.repository").0.as_deref(), Some("\"octo-org/shop\""));
    assert_eq!(shown("providers.gh.hook_id").0.as_deref(), Some("12"));
}
