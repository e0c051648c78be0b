//! `staging.toml.example` as a new user takes it: copied unmodified, with only
//! STRIPE_WEBHOOK_SECRET set (and a free port and a temp data folder on the command line, as a
//! test needs), the real binary starts and serves Stripe; uncommenting the Stripe section's
//! `forward_to` (its URL set to the app) is the one edit that delivers.

use crate::fake_app::{stripe_sdk_verify, FakeApp};
use crate::support::{self, STRIPE_SECRET};

const EXAMPLE: &str = include_str!("../../staging.toml.example");

/// The example's commented `forward_to` line of the Stripe section.
const STRIPE_FORWARD_TO: &str = "# forward_to = [\"http://127.0.0.1:3000/webhooks/stripe\"]";

/// Starts `serve --config <copy>` of `text` with the Stripe secret in the environment.
async fn serve(dir: &std::path::Path, text: &str) -> support::ChildServer {
    let path = dir.join("staging.toml");
    std::fs::write(&path, text).unwrap();
    let data = dir.join("data");
    let args =
        ["serve", "--config", path.to_str().unwrap(), "--bind", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()];
    support::spawn_binary(&args, &[("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_copied_as_it_is_serves_stripe() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), EXAMPLE).await;
    let r = server.stripe(&support::stripe_event("evt_example_copy")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = support::request(server.addr, "GET", "/staging/webhooks/events?provider=stripe", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("evt_example_copy"), "{}", r.text());
    server.signal("TERM");
    assert!(server.wait().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_forward_to_uncommented_is_the_one_edit_that_delivers() {
    assert_eq!(EXAMPLE.matches(STRIPE_FORWARD_TO).count(), 1, "the Stripe section shows forward_to once");
    let (dir, app) = (tempfile::tempdir().unwrap(), FakeApp::start().await);
    let text = EXAMPLE.replacen(STRIPE_FORWARD_TO, &format!("forward_to = [\"{}\"]", app.url("/webhooks/stripe")), 1);
    let mut server = serve(dir.path(), &text).await;
    let r = server.stripe(&support::stripe_event("evt_example_forward")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = app.wait_for(1).await;
    assert_eq!(got[0].path, "/webhooks/stripe");
    let sig = got[0].header("stripe-signature").unwrap();
    assert_eq!(stripe_sdk_verify(&got[0].body, sig, STRIPE_SECRET, 300, support::now_s()), Ok(()));
    server.signal("TERM");
    assert!(server.wait().await.success());
}

/// Without the secret in the environment the example's placeholder is never taken for one:
/// startup is refused and names it.
#[test]
fn the_examples_placeholder_is_refused_without_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staging.toml");
    std::fs::write(&path, EXAMPLE).unwrap();
    let data = dir.path().join("data");
    let (code, out) = support::run_binary(&[
        "serve",
        "--config",
        path.to_str().unwrap(),
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("provider.placeholder_secret") && out.contains("providers.stripe.secret"), "{out}");
}
