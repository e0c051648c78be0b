//! Routing by event type (`[[providers.<name>.routes]]`), through the real configuration loader
//! and the real server delivering to fake apps: an event fans out to every route its type
//! matches, each target with its own job and retries; a type no route takes goes to
//! `forward_to`, and with `also_default` there too; a replay goes where the type routes now and
//! says where; bad routes stop the configuration naming the route by its index; the routes come
//! from the environment as JSON, and `/recovery/stats` and `check-config --show` show them
//! masked. The TOML examples of docs/delivery.md and docs/configuration.md load and route as
//! they say.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use stagehook::config::Config;

use crate::delivery::{replay_event, replay_where};
use crate::fake_app::{FakeApp, Reply};
use crate::support::*;

/// The real loader's configuration: `staging.toml` in `dir` (free port, data in `dir`, Stripe
/// set up, retries quick) with `extra` after it, and these environment variables.
fn load(dir: &Path, extra: &str, env: &[(&str, &str)]) -> Result<Config, stagehook::config::ConfigError> {
    let path = write_config(dir, &format!("{extra}\n[retry]\nbase_delay = \"10ms\"\nmax_delay = \"50ms\"\n"));
    let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::load(Some(&path), &env)
}

/// A Stripe event of this id and type.
fn event(id: &str, event_type: &str) -> String {
    format!(
        r#"{{"id":"{id}","object":"event","type":"{event_type}","created":1700000000,"livemode":false,"data":{{"object":{{"id":"obj_1","object":"thing"}}}}}}"#
    )
}

/// The Stripe event ids an app received, in order.
fn ids(app: &FakeApp) -> Vec<String> {
    app.received()
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["id"].as_str().unwrap().to_string())
        .collect()
}

/// These URLs, sorted, to compare with [`attempted`].
fn sorted<const N: usize>(urls: [String; N]) -> Vec<String> {
    let mut urls = urls.to_vec();
    urls.sort();
    urls
}

/// The targets (masked) of an event's attempts, each once, sorted.
async fn attempted(s: &TestServer, id: &str) -> Vec<String> {
    let e = event_json(s, id).await;
    let mut targets: Vec<String> =
        e["history"].as_array().unwrap().iter().map(|a| a["target"].as_str().unwrap().to_string()).collect();
    targets.sort();
    targets.dedup();
    targets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_fans_out_to_every_matching_route_and_other_types_go_to_forward_to() {
    let (billing, audit, default) = (FakeApp::start().await, FakeApp::start().await, FakeApp::start().await);
    // The audit app fails its first answer: its target retries on its own, the billing one not.
    audit.script([Reply::status(500)]);
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "forward_to = [\"{}\"]\n\n[[providers.stripe.routes]]\ntypes = [\"invoice.*\", \"customer.subscription.*\"]\nforward_to = [\"{}\", \"{}\"]\n\n[[providers.stripe.routes]]\ntypes = [\"invoice.paid\"]\nforward_to = [\"{}\"]\n",
        default.url("/default"),
        billing.url("/billing"),
        audit.url("/audit"),
        audit.url("/audit"),
    );
    let s = start(load(dir.path(), &extra, &[]).unwrap()).await;

    let paid = s.stripe_id(&event("evt_paid", "invoice.paid")).await;
    let e = wait_status(&s, &paid, "processed").await;
    assert_eq!(e["attempts"], 3, "one to billing, two to audit: {e}");
    assert_eq!(ids(&billing), ["evt_paid"]);
    // The audit target is named by two matching routes and still gets the event once (and once
    // more for its retry).
    assert_eq!(ids(&audit), ["evt_paid", "evt_paid"]);
    assert_eq!(attempted(&s, &paid).await, sorted([audit.url("/audit"), billing.url("/billing")]));

    let charge = s.stripe_id(&event("evt_charge", "charge.succeeded")).await;
    wait_status(&s, &charge, "processed").await;
    assert_eq!(ids(&default), ["evt_charge"]);
    assert_eq!(attempted(&s, &charge).await, sorted([default.url("/default")]));
    // Each event went only where its type routes: the default app never had the invoice, the
    // route apps never had the charge.
    assert_eq!((ids(&billing).len(), ids(&audit).len()), (1, 2));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn also_default_sends_to_the_route_and_to_forward_to() {
    let (crm, default) = (FakeApp::start().await, FakeApp::start().await);
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "forward_to = [\"{}\"]\n\n[[providers.stripe.routes]]\ntypes = [\"customer.[cd]*\"]\nforward_to = [\"{}\"]\nalso_default = true\n\n[[providers.stripe.routes]]\ntypes = [\"invoice.*\"]\nforward_to = [\"{}\"]\n",
        default.url("/default"),
        crm.url("/crm"),
        crm.url("/invoices"),
    );
    let s = start(load(dir.path(), &extra, &[]).unwrap()).await;
    let created = s.stripe_id(&event("evt_created", "customer.created")).await;
    wait_status(&s, &created, "processed").await;
    assert_eq!(attempted(&s, &created).await, sorted([crm.url("/crm"), default.url("/default")]));
    let invoice = s.stripe_id(&event("evt_invoice", "invoice.created")).await;
    wait_status(&s, &invoice, "processed").await;
    assert_eq!(attempted(&s, &invoice).await, sorted([crm.url("/invoices")]));
    // `customer.updated` is outside the class `[cd]`: no route takes it.
    let updated = s.stripe_id(&event("evt_updated", "customer.updated")).await;
    wait_status(&s, &updated, "processed").await;
    assert_eq!(attempted(&s, &updated).await, sorted([default.url("/default")]));
    assert_eq!(ids(&default), ["evt_created", "evt_updated"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_a_route_change_goes_where_the_type_routes_now_and_says_so() {
    let (billing, default) = (FakeApp::start().await, FakeApp::start().await);
    let dir = tempfile::tempdir().unwrap();
    let before = format!("forward_to = [\"{}\"]\n", default.url("/default"));
    let s = start(load(dir.path(), &before, &[]).unwrap()).await;
    let paid = s.stripe_id(&event("evt_paid", "invoice.paid")).await;
    let charge = s.stripe_id(&event("evt_charge", "charge.succeeded")).await;
    wait_status(&s, &paid, "processed").await;
    wait_status(&s, &charge, "processed").await;
    assert_eq!(ids(&default).len(), 2);
    s.stop().await;

    // The same data folder, with invoices routed to billing (its URL carrying credentials,
    // which the answers mask).
    let secret_url = billing.url("/billing").replace("http://", "http://user:hunter2@");
    let after = format!(
        "forward_to = [\"{}\"]\n\n[[providers.stripe.routes]]\ntypes = [\"invoice.*\"]\nforward_to = [\"{secret_url}\"]\n",
        default.url("/default")
    );
    let s = start(load(dir.path(), &after, &[]).unwrap()).await;
    let r = replay_event(&s, &paid).await;
    assert_eq!(r["replayed"], 1);
    let masked = r["targets"].as_array().unwrap();
    assert_eq!(masked.len(), 1, "{r}");
    let masked = masked[0].as_str().unwrap();
    assert!(masked.contains(&billing.addr.to_string()) && !masked.contains("hunter2"), "{r}");
    billing.wait_for(1).await;
    wait_status(&s, &paid, "processed").await;
    assert_eq!(ids(&billing), ["evt_paid"]);
    assert_eq!(billing.received()[0].header("authorization").map(|a| a.starts_with("Basic ")), Some(true));

    // In bulk: each event to its type's targets now, and the answer counts them per target.
    let r = replay_where(&s, br#"{"provider": "stripe"}"#).await;
    assert_eq!(r["replayed"], 2, "{r}");
    let targets = r["targets"].as_object().unwrap();
    assert_eq!(targets.len(), 2, "{r}");
    assert_eq!(targets[&default.url("/default")], 1, "{r}");
    assert!(targets.keys().all(|k| !k.contains("hunter2")), "{r}");
    billing.wait_for(2).await;
    default.wait_for(3).await;
    wait_status(&s, &charge, "processed").await;
    wait_status(&s, &paid, "processed").await;
    assert_eq!(ids(&billing), ["evt_paid", "evt_paid"]);
    let mut got = ids(&default);
    got.sort();
    assert_eq!(got, ["evt_charge", "evt_charge", "evt_paid"]);
    s.stop().await;

    // With no route for its type and no forward_to, a replay is refused, the type named.
    let only_routes = "[[providers.stripe.routes]]\ntypes = [\"customer.*\"]\nforward_to = [\"http://127.0.0.1:9/\"]\n";
    let s = start(load(dir.path(), only_routes, &[]).unwrap()).await;
    let r = s.post_json(&format!("/staging/webhooks/events/{paid}/replay"), b"").await;
    assert_eq!((r.status, r.code()), (409, "no_target".to_string()), "{}", r.text());
    assert!(r.text().contains("invoice.paid"), "{}", r.text());
    s.stop().await;
}

#[test]
fn malformed_routes_stop_the_configuration_naming_the_route() {
    let dir = tempfile::tempdir().unwrap();
    let good =
        "[[providers.stripe.routes]]\ntypes = [\"invoice.*\"]\nforward_to = [\"http://127.0.0.1:3000/billing\"]\n";
    for (route, key, words) in [
        (
            "types = [\"invoice.[paid\"]\nforward_to = [\"http://127.0.0.1:3000/\"]",
            "providers.stripe.routes[1].types[0]",
            "never closed",
        ),
        ("types = []\nforward_to = [\"http://127.0.0.1:3000/\"]", "providers.stripe.routes[1].types", "is empty"),
        ("types = [\"a.*\"]\nforward_to = []", "providers.stripe.routes[1].forward_to", "is empty"),
        (
            "types = [\"a.*\"]\nforward_to = [\"127.0.0.1:3000\"]",
            "providers.stripe.routes[1].forward_to[0]",
            "not an http(s) URL",
        ),
        (
            "types = [\"a.*\"]\nforward_to = [\"http://127.0.0.1:3000/\"]\nalso_defualt = true",
            "providers.stripe.routes[1].also_defualt",
            "unknown field `also_defualt`",
        ),
    ] {
        let extra = format!("{good}\n[[providers.stripe.routes]]\n{route}\n");
        let e = load(dir.path(), &extra, &[]).expect_err(route);
        assert_eq!(e.key, key, "{route}: {e}");
        assert!(e.message.contains(words), "{route}: {e}");
    }
    // The binary refuses it as a configuration to fix (exit 2), the key in its words.
    let path = write_config(
        dir.path(),
        "[[providers.stripe.routes]]\ntypes = [\"[\"]\nforward_to = [\"http://127.0.0.1:3000/\"]\n",
    );
    let (code, out) = run_binary(&["check-config", "--config", path.to_str().unwrap(), "--offline"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("providers.stripe.routes[0].types[0]"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_from_the_environment_as_json_deliver_and_show_masked() {
    let (billing, default) = (FakeApp::start().await, FakeApp::start().await);
    let dir = tempfile::tempdir().unwrap();
    let secret_url = billing.url("/billing").replace("http://", "http://user:hunter2@");
    let json = format!(
        r#"[{{"types": ["invoice.*"], "forward_to": ["{secret_url}"]}}, {{"types": ["charge.*", "v[12].*"], "forward_to": ["{}"], "also_default": true}}]"#,
        billing.url("/charges")
    );
    let extra = format!("forward_to = [\"{}\"]\n", default.url("/default"));
    let config = load(dir.path(), &extra, &[("STAGEHOOK_PROVIDERS_STRIPE_ROUTES", &json)]).unwrap();
    assert_eq!(config.providers["stripe"].routes.len(), 2);
    let s = start(config).await;

    let paid = s.stripe_id(&event("evt_paid", "invoice.paid")).await;
    wait_status(&s, &paid, "processed").await;
    assert_eq!(billing.received()[0].path, "/billing");

    let stats = s.recovery().await;
    let routes = &stats["providers"]["stripe"]["routes"];
    assert_eq!(routes.as_array().unwrap().len(), 2, "{stats}");
    assert_eq!(routes[0]["types"], serde_json::json!(["invoice.*"]));
    assert_eq!(routes[0]["also_default"], false);
    assert_eq!(routes[1]["also_default"], true);
    assert_eq!(routes[1]["types"], serde_json::json!(["charge.*", "v[12].*"]));
    let shown = routes[0]["targets"][0].as_str().unwrap();
    assert!(shown.contains(&billing.addr.to_string()) && !shown.contains("hunter2"), "{stats}");
    assert!(!stats.to_string().contains("hunter2"), "{stats}");
    s.stop().await;

    // check-config --show: the routes, masked, with the variable as their source.
    let path = write_config(dir.path(), &extra);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stagehook"))
        .args(["check-config", "--config", path.to_str().unwrap(), "--offline", "--show"])
        .env_clear()
        .env("STAGEHOOK_PROVIDERS_STRIPE_ROUTES", &json)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    let line = out.lines().find(|l| l.starts_with("providers.stripe.routes = ")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("invoice.*") && line.contains("also_default = true"), "{line}");
    assert!(line.ends_with("# env STAGEHOOK_PROVIDERS_STRIPE_ROUTES"), "{line}");
    assert!(!out.contains("hunter2"), "{out}");
}

/// The TOML examples of docs/delivery.md's "Routing by event type" and docs/configuration.md's
/// routes load as written and route as the text around them says.
#[test]
fn the_docs_routing_examples_load_and_route_as_they_say() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (doc, heading) in [("docs/delivery.md", "## Routing by event type"), ("docs/configuration.md", "### Routes")] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        let section = &text[text.find(heading).unwrap_or_else(|| panic!("{doc} has {heading}"))..];
        let toml = section.split("```toml\n").nth(1).unwrap().split("```").next().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staging.toml");
        let head = format!("[server]\ndata_dir = \"{}\"\n\n", dir.path().join("data").display());
        std::fs::write(&path, head + &toml.replace("whsec_...", STRIPE_SECRET)).unwrap();
        let config = Config::load(Some(&path), &BTreeMap::new()).unwrap_or_else(|e| panic!("{doc}: {e}"));
        let endpoints = config.build().unwrap();
        let stripe = endpoints.iter().find(|e| e.provider.name() == "stripe").unwrap();
        let to = |t: &str| stripe.targets_for(t);
        assert_eq!(to("invoice.paid"), ["http://127.0.0.1:3000/billing"], "{doc}");
        assert_eq!(to("customer.subscription.updated"), ["http://127.0.0.1:3000/billing"], "{doc}");
        assert_eq!(to("charge.dispute.created"), ["http://127.0.0.1:3000/disputes", "http://127.0.0.1:3000/webhooks"]);
        assert_eq!(to("payment_intent.succeeded"), ["http://127.0.0.1:3000/webhooks"], "{doc}");
    }
}

/// staging.toml.example's commented routes, uncommented, load and route as its words say.
#[test]
fn the_example_configs_routes_load_uncommented() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/staging.toml.example")).unwrap();
    let start = text.find("# [[providers.stripe.routes]]").expect("the example shows routes");
    let block: String =
        text[start..].lines().take_while(|l| l.starts_with("# ")).map(|l| format!("{}\n", &l[2..])).collect();
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path(), &format!("forward_to = [\"http://127.0.0.1:3000/webhooks\"]\n{block}"), &[])
        .unwrap_or_else(|e| panic!("{block}: {e}"));
    let endpoints = config.build().unwrap();
    let stripe = endpoints.iter().find(|e| e.provider.name() == "stripe").unwrap();
    assert_eq!(stripe.targets_for("customer.subscription.created"), ["http://127.0.0.1:3000/billing"]);
    assert_eq!(stripe.targets_for("charge.succeeded"), ["http://127.0.0.1:3000/webhooks"]);
}

/// An edited copy is a new event of its own type: it goes where that type routes, and the answer
/// names its targets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_copy_is_routed_by_its_own_type() {
    let (billing, default) = (FakeApp::start().await, FakeApp::start().await);
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "forward_to = [\"{}\"]\n\n[[providers.stripe.routes]]\ntypes = [\"invoice.*\"]\nforward_to = [\"{}\"]\n",
        default.url("/default"),
        billing.url("/billing"),
    );
    let s = start(load(dir.path(), &extra, &[]).unwrap()).await;
    let charge = s.stripe_id(&event("evt_edit", "charge.succeeded")).await;
    wait_status(&s, &charge, "processed").await;
    let ask = serde_json::json!({"body": serde_json::from_str::<Value>(&event("evt_edit", "invoice.paid")).unwrap()});
    let r = s.post_json(&format!("/staging/webhooks/events/{charge}/replay"), ask.to_string().as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    assert_eq!(answer["targets"], serde_json::json!([billing.url("/billing")]), "{answer}");
    let copy = answer["id"].as_str().unwrap().to_string();
    wait_status(&s, &copy, "processed").await;
    assert_eq!(ids(&billing), ["evt_edit"]);
    assert_eq!(ids(&default), ["evt_edit"]);
    assert_eq!(attempted(&s, &copy).await, sorted([billing.url("/billing")]));
    s.stop().await;
}

/// The validator and the probe of `check-config` see route targets as they see `forward_to`: a
/// provider's own API host among them is an error, a reachable app is said to be reachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_targets_are_checked_for_isolation_and_probed() {
    use stagehook::config::validate::{probe_targets, validate, Context};
    use stagehook::finding::Severity;
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[[providers.stripe.routes]]\ntypes = [\"invoice.*\"]\nforward_to = [\"{}\"]\n\n[[providers.stripe.routes]]\ntypes = [\"charge.*\"]\nforward_to = [\"https://api.stripe.com/v1/hook\"]\n",
        app.url("/billing")
    );
    let config = load(dir.path(), &extra, &[]).unwrap();
    let report = validate(&config, &BTreeMap::new(), Context::Check);
    let production: Vec<(&str, Severity)> = report
        .findings
        .iter()
        .filter(|f| f.id == "isolation.production_target")
        .map(|f| (f.key.as_str(), f.severity))
        .collect();
    assert!(production.contains(&("providers.stripe.routes[1].forward_to[0]", Severity::Error)), "{production:?}");
    assert!(production.contains(&("providers.stripe.routes[0].forward_to[0]", Severity::Ok)), "{production:?}");
    let probed = probe_targets(&config).await;
    let reachable: Vec<(&str, Severity)> =
        probed.iter().filter(|f| f.id == "target.reachable").map(|f| (f.key.as_str(), f.severity)).collect();
    assert_eq!(reachable, [("providers.stripe.routes[0].forward_to[0]", Severity::Ok)], "{probed:?}");
}

/// The dashboard's breaker card of an endpoint says where its events go: each route with its
/// types and masked targets, and `forward_to`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_each_endpoints_routes() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "forward_to = [\"http://ops:hunter2@127.0.0.1:9/default\"]\n\n[[providers.stripe.routes]]\ntypes = [\"invoice.*\", \"customer.[cd]*\"]\nforward_to = [\"http://127.0.0.1:9/billing\"]\nalso_default = true\n";
    let s = start(load(dir.path(), extra, &[]).unwrap()).await;
    let browser = crate::webdriver::Browser::start().await;
    browser.goto(&format!("http://{}/?poll=300", s.addr)).await;
    let card = ".breaker[data-provider=\"stripe\"]";
    let route = browser
        .wait("the stripe route", || async { browser.text(&format!("{card} .route")).await.filter(|t| !t.is_empty()) })
        .await;
    assert_eq!(route, "route invoice.*, customer.[cd]* → http://127.0.0.1:9/billing (and forward_to)");
    let forward = browser.text(&format!("{card} .forward-to")).await.unwrap_or_default();
    assert!(forward.starts_with("forward_to: http://") && forward.ends_with("127.0.0.1:9/default"), "{forward}");
    assert!(!forward.contains("hunter2"), "a target's password shows: {forward}");
    let twilio = browser.text(".breaker[data-provider=\"twilio\"] .forward-to").await.unwrap_or_default();
    assert_eq!(twilio, "forward_to: none: stored only");
    browser.quit().await;
    s.stop().await;
}
