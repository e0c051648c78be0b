//! Standard Webhooks' asymmetric signatures end to end: `v1a` entries (Ed25519 over
//! `{id}.{timestamp}.{body}`) verified with the `whpk_` public keys of a `standard` endpoint,
//! beside or instead of `v1`; a refusal's diagnosis; deliveries and replays signed with the
//! `whsk_` signing key, checked in the fake app with the public key derived here from the seed;
//! and `stagehook send` signing into a second stagehook that holds only the public key.
//!
//! The requests are signed here with ring directly, as a sender would, not through stagehook's
//! own signer; the key pairs are RFC 8032's TEST 1 seed and a seed of 32 bytes 0x07.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde_json::Value;
use stagehook::config::Config;

use crate::fake_app::{FakeApp, Received};
use crate::support::*;

/// RFC 8032 section 7.1, TEST 1.
const SEED_A: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const SEED_B: [u8; 32] = [7; 32];
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn seed_a() -> Vec<u8> {
    hex::decode(SEED_A).unwrap()
}

fn pair(seed: &[u8]) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(seed).unwrap()
}

/// `whpk_<base64>` of a seed's public key, as the spec serialises it.
fn whpk(seed: &[u8]) -> String {
    format!("whpk_{}", STANDARD.encode(pair(seed).public_key().as_ref()))
}

/// `whsk_<base64>` of the seed then its public key (the 64-byte form).
fn whsk64(seed: &[u8]) -> String {
    format!("whsk_{}", STANDARD.encode([seed, pair(seed).public_key().as_ref()].concat()))
}

fn content(id: &str, ts: i64, body: &[u8]) -> Vec<u8> {
    [format!("{id}.{ts}.").as_bytes(), body].concat()
}

fn v1a(seed: &[u8], id: &str, ts: i64, body: &[u8]) -> String {
    format!("v1a,{}", STANDARD.encode(pair(seed).sign(&content(id, ts, body))))
}

fn v1(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    use hmac::Mac;
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(&content(id, ts, body));
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// A server whose `[providers.*]` sections are `sections` (TOML), limiter off.
fn config(dir: &std::path::Path, sections: &str) -> Config {
    let text = format!(
        "[server]\nbind = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[limits]\nrate_limit_per_minute = 0\n\
         [providers.stripe]\nsecret = \"{STRIPE_SECRET}\"\n{sections}",
        dir.join("data").display()
    );
    Config::from_toml(&text).unwrap()
}

fn event(id: &str) -> Vec<u8> {
    format!(r#"{{"type":"user.created","timestamp":"2024-01-01T00:00:00Z","data":{{"id":"{id}"}}}}"#).into_bytes()
}

async fn post(s: &TestServer, path: &str, id: &str, ts: i64, signature: &str, body: &[u8]) -> Resp {
    let ts = ts.to_string();
    let headers = [
        ("content-type", "application/json"),
        ("webhook-id", id),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", signature),
    ];
    s.post(&format!("/staging/webhooks/{path}"), &headers, body).await
}

/// The newest rejection's diagnosis (code, detail).
async fn last_diagnosis(s: &TestServer) -> (String, String) {
    s.store.flush().await.unwrap();
    let log = s.get("/staging/webhooks/rejections?limit=1").await.json();
    let d = &log["rejections"][0]["diagnosis"];
    let text = |v: &Value| v.as_str().unwrap_or_else(|| panic!("no diagnosis: {log}")).to_string();
    (text(&d["code"]), text(&d["detail"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1a_verifies_with_the_right_public_key_and_another_is_refused_and_diagnosed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (seed_a(), SEED_B.to_vec());
    // Rotation: the second of two public keys verifies; `svix` has a secret only.
    let sections = format!(
        "[providers.std]\nkind = \"standard\"\npublic_keys = [\"{}\", \"{}\"]\n\
         [providers.svix]\nkind = \"standard\"\nsecret = \"{SECRET}\"\n",
        whpk(&[9; 32]),
        whpk(&a)
    );
    let s = start(config(dir.path(), &sections)).await;
    let now = now_s();

    let body = event("u1");
    let r = post(&s, "std", "msg_a1", now, &v1a(&a, "msg_a1", now, &body), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let e = event_json(&s, &id).await;
    assert_eq!((e["signature_verified"].clone(), e["event_id"].clone()), (Value::Bool(true), "msg_a1".into()));

    // Signed by another key pair: refused, and the cause is kept for whoever runs stagehook.
    let body = event("u2");
    let r = post(&s, "std", "msg_b1", now, &v1a(&b, "msg_b1", now, &body), &body).await;
    assert_eq!((r.status, r.code()), (401, "invalid_signature".to_string()), "{}", r.text());
    assert!(r.text().contains("no v1a signature in webhook-signature verifies"), "{}", r.text());
    assert!(!r.text().contains("key_mismatch"), "the sender learns no diagnosis: {}", r.text());
    let (code, detail) = last_diagnosis(&s).await;
    assert_eq!(code, "key_mismatch", "{detail}");
    assert!(detail.contains(&whpk(&a)), "the endpoint's public keys are named: {detail}");

    // The right key, but something on the way added a newline to the body.
    let sent = event("u3");
    let received = [sent.as_slice(), b"\n"].concat();
    let r = post(&s, "std", "msg_a3", now, &v1a(&a, "msg_a3", now, &sent), &received).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(last_diagnosis(&s).await.0, "body_modified");

    // A signature that is not one: unreadable, said as such.
    let r = post(&s, "std", "msg_a4", now, "v1a,AAAA", &event("u4")).await;
    assert_eq!(r.status, 401, "{}", r.text());
    let (code, detail) = last_diagnosis(&s).await;
    assert_eq!(code, "malformed_signature", "{detail}");
    assert!(detail.contains("decodes to 3 bytes"), "{detail}");

    // A v1a signature where no public key is configured: the refusal says so. The key is
    // another endpoint's: that is the likely cause.
    let body = event("u5");
    let r = post(&s, "svix", "msg_a5", now, &v1a(&a, "msg_a5", now, &body), &body).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("no public_key"), "{}", r.text());
    let (code, detail) = last_diagnosis(&s).await;
    assert_eq!(code, "wrong_endpoint", "{detail}");
    assert!(detail.contains("`std`") && detail.contains("public key"), "{detail}");
    // A key no endpoint has: the missing public key is the cause.
    let r = post(&s, "svix", "msg_b5", now, &v1a(&b, "msg_b5", now, &body), &body).await;
    assert_eq!(r.status, 401, "{}", r.text());
    let (code, detail) = last_diagnosis(&s).await;
    assert_eq!(code, "no_public_key", "{detail}");
    assert!(detail.contains("providers.svix.public_key"), "{detail}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_v1_and_v1a_entries_either_verifying_is_enough_each_only_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let a = seed_a();
    let sections = format!(
        "[providers.both]\nkind = \"standard\"\nsecret = \"{SECRET}\"\npublic_key = \"{pk}\"\n\
         [providers.hmac_only]\nkind = \"standard\"\nsecret = \"{SECRET}\"\n\
         [providers.ed_only]\nkind = \"standard\"\npublic_key = \"{pk}\"\n",
        pk = whpk(&a)
    );
    let s = start(config(dir.path(), &sections)).await;
    let now = now_s();
    let other_secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let b = SEED_B;
    // (which signatures are good, then the expected status at both, hmac_only, ed_only)
    let cases: [(bool, bool, [u16; 3]); 4] = [
        (true, true, [200, 200, 200]),
        (false, true, [200, 401, 200]),
        (true, false, [200, 200, 401]),
        (false, false, [401, 401, 401]),
    ];
    for (n, (good_v1, good_v1a, expected)) in cases.into_iter().enumerate() {
        for (path, want) in ["both", "hmac_only", "ed_only"].into_iter().zip(expected) {
            let id = format!("msg_{path}_{n}");
            let body = event(&id);
            let v1 = v1(if good_v1 { SECRET } else { other_secret }, &id, now, &body);
            let v1a = if good_v1a { v1a(&a, &id, now, &body) } else { v1a(&b, &id, now, &body) };
            // Both orders: the spec's example lists v1 first, a sender may not.
            let header = if n % 2 == 0 { format!("{v1} {v1a}") } else { format!("{v1a} {v1}") };
            let r = post(&s, path, &id, now, &header, &body).await;
            assert_eq!(r.status, want, "{path}, v1 good {good_v1}, v1a good {good_v1a}: {}", r.text());
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_keys_only_endpoint_is_configured_accepts_and_delivers_the_senders_own_signature() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = seed_a();
    let sections = format!(
        "[providers.std]\nkind = \"standard\"\npublic_key = \"{}\"\nforward_to = [\"{}\"]\n",
        whpk(&a),
        app.url("/hook")
    );
    let s = start(config(dir.path(), &sections)).await;
    let h = s.get("/staging/webhooks/test").await.json();
    assert_eq!(h["providers"]["std"]["configured"], true, "{h}");

    let now = now_s();
    let body = event("u1");
    let signature = v1a(&a, "msg_p1", now, &body);
    let r = post(&s, "std", "msg_p1", now, &signature, &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Nothing to sign with: the app gets the sender's own headers, which still verify.
    let got = app.wait_for(1).await;
    assert_eq!(got[0].header("webhook-signature"), Some(signature.as_str()));
    assert_eq!(got[0].header("webhook-id"), Some("msg_p1"));
    ed25519_check(&got[0], pair(&a).public_key().as_ref()).unwrap();
    s.stop().await;
}

/// The app's check of a delivery's `v1a` entry with `public_key`: an Ed25519 verification of
/// `{webhook-id}.{webhook-timestamp}.{body}`, as a receiver would write it.
fn ed25519_check(r: &Received, public_key: &[u8]) -> Result<(), String> {
    let id = r.header("webhook-id").ok_or("no webhook-id")?;
    let ts: i64 = r.header("webhook-timestamp").ok_or("no webhook-timestamp")?.parse().map_err(|_| "timestamp")?;
    let header = r.header("webhook-signature").ok_or("no webhook-signature")?;
    let key = UnparsedPublicKey::new(&ED25519, public_key);
    let verified = header
        .split(' ')
        .filter_map(|e| e.strip_prefix("v1a,"))
        .filter_map(|sig| STANDARD.decode(sig).ok())
        .any(|sig| key.verify(&content(id, ts, &r.body), &sig).is_ok());
    verified.then_some(()).ok_or_else(|| format!("no v1a entry verifies in `{header}`"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_and_replays_are_signed_with_the_signing_key_and_v1_beside_it() {
    let app = FakeApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, staging) = (seed_a(), SEED_B.to_vec());
    // `signed` receives v1 and signs both; `ed` receives v1a from the sender's key A and signs
    // with a staging key pair (the 64-byte form), whose public key alone the app trusts.
    let sections = format!(
        "[providers.signed]\nkind = \"standard\"\nsecret = \"{SECRET}\"\nsigning_key = \"{sk}\"\nforward_to = [\"{to1}\"]\n\
         [providers.ed]\nkind = \"standard\"\npublic_key = \"{pk}\"\nsigning_key = \"{sk}\"\nforward_to = [\"{to2}\"]\n",
        sk = whsk64(&staging),
        pk = whpk(&a),
        to1 = app.url("/signed"),
        to2 = app.url("/ed"),
    );
    let s = start(config(dir.path(), &sections)).await;
    let staging_public = pair(&staging).public_key().as_ref().to_vec();
    let now = now_s();

    let body = event("u1");
    let r = post(&s, "signed", "msg_s1", now, &v1(SECRET, "msg_s1", now, &body), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let signed_id = r.json()["id"].as_str().unwrap().to_string();
    let body2 = event("u2");
    let r = post(&s, "ed", "msg_e1", now, &v1a(&a, "msg_e1", now, &body2), &body2).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ed_id = r.json()["id"].as_str().unwrap().to_string();
    app.wait_for(2).await;

    for event_id in [&signed_id, &ed_id] {
        wait_status(&s, event_id, "processed").await;
        crate::delivery::replay_event(&s, event_id).await;
    }
    let got = app.wait_for(4).await;
    for r in &got {
        let header = r.header("webhook-signature").unwrap();
        let versions: Vec<&str> = header.split(' ').filter_map(|e| e.split_once(',')).map(|(v, _)| v).collect();
        ed25519_check(r, &staging_public).unwrap_or_else(|e| panic!("{}: {e}", r.path));
        assert_eq!(r.header("svix-signature"), Some(header), "the Svix names carry the same");
        if r.path == "/signed" {
            // Space-separated, v1 first; the v1 verifies as the official libraries do.
            assert_eq!(versions, ["v1", "v1a"], "{header}");
            crate::sdk_standard::verify(&r.headers, &r.body, SECRET, now_s()).unwrap();
            assert_eq!(r.header("webhook-id"), Some("msg_s1"), "the sender's id is kept");
        } else {
            assert_eq!(versions, ["v1a"], "no secret, no v1: {header}");
            // Signed afresh with the staging key, not the sender's signature passed through.
            assert!(ed25519_check(r, pair(&a).public_key().as_ref()).is_err());
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_signs_with_the_signing_key_into_a_stagehook_that_has_only_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = seed_a();
    // The receiving stagehook knows the public key only.
    let receiver = format!("[providers.std]\nkind = \"standard\"\npublic_key = \"{}\"\n", whpk(&key));
    let s = start(config(dir.path(), &receiver)).await;
    // The sending side's file: the seed form of the signing key, and the public key it answers to.
    let sender_dir = tempfile::tempdir().unwrap();
    let sender = write_config(
        sender_dir.path(),
        &format!(
            "[providers.std]\nkind = \"standard\"\npublic_key = \"{}\"\nsigning_key = \"whsk_{}\"\n",
            whpk(&key),
            STANDARD.encode(&key)
        ),
    );
    let server = format!("http://{}", s.addr);
    let (code, out) = run_binary_async(&[
        "send",
        "std",
        "--event",
        "invoice.paid",
        "--config",
        sender.to_str().unwrap(),
        "--server",
        &server,
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let page = s.get("/staging/webhooks/events?provider=std").await.json();
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{page}");
    let e = event_json(&s, events[0]["id"].as_str().unwrap()).await;
    assert_eq!((e["signature_verified"].clone(), e["event_type"].clone()), (Value::Bool(true), "invoice.paid".into()));

    // Another key pair's `send` is refused by the receiver.
    let wrong = write_config(
        sender_dir.path(),
        &format!(
            "[providers.std]\nkind = \"standard\"\npublic_key = \"{}\"\nsigning_key = \"{}\"\n",
            whpk(&SEED_B),
            whsk64(&SEED_B)
        ),
    );
    let (code, out) =
        run_binary_async(&["send", "std", "--config", wrong.to_str().unwrap(), "--server", &server]).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("401") && out.contains("invalid_signature"), "{out}");
    s.stop().await;
}

/// docs/configuration.md's example, its placeholders filled in, passes `check-config`, which
/// shows the public key whole and the signing key as its fingerprint; without a secret or
/// signing key it warns that the endpoint cannot sign; a malformed key stops it by name.
#[test]
fn the_documented_section_is_checked_and_shown_with_its_signing_key_masked() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
    let section = &doc[doc.find("## Standard Webhooks: asymmetric signatures").unwrap()..];
    let toml = section.split("```toml\n").nth(1).unwrap().split("```").next().unwrap();
    let signing_key = whsk64(&SEED_B);
    let filled =
        toml.replace("\"whsec_...\"", &format!("\"{SECRET}\"")).replace("\"whsk_...\"", &format!("\"{signing_key}\""));
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let path = write_config(dir.path(), text);
        run_binary(&["check-config", "--config", path.to_str().unwrap(), "--json", "--show", "--offline"])
    };
    let (code, out) = check(&filled);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let shown = |key: &str| v["effective"][key]["value"].as_str().unwrap_or_else(|| panic!("{key}: {v}")).to_string();
    assert_eq!(shown("providers.svix.public_key"), format!("\"{}\"", whpk(&seed_a())), "shown as TOML, whole");
    let masked = shown("providers.svix.signing_key");
    assert!(masked.contains("sha256:"), "{masked}");
    assert!(!out.contains(&signing_key[5..40]), "the signing key is never shown: {out}");
    assert!(!out.contains("provider.cannot_sign"), "{out}");

    // Public keys only: configured, but warned that it cannot sign.
    let verify_only: String = filled
        .lines()
        .filter(|l| !l.starts_with("secret") && !l.starts_with("signing_key"))
        .map(|l| format!("{l}\n"))
        .collect();
    let (code, out) = check(&verify_only);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let warning = v["findings"].as_array().unwrap().iter().find(|f| f["id"] == "provider.cannot_sign").cloned();
    let warning = warning.unwrap_or_else(|| panic!("no provider.cannot_sign: {out}"));
    assert_eq!(
        (warning["severity"].as_str(), warning["key"].as_str()),
        (Some("warning"), Some("providers.svix.signing_key"))
    );
    assert!(!out.contains("provider.secret_missing"), "public keys configure the endpoint: {out}");

    // A malformed key stops the check, named by its place in the list.
    let bad = filled.replace("public_keys = []", &format!("public_keys = [\"{}\", \"whpk_AAAA\"]", whpk(&SEED_B)));
    let (code, out) = check(&bad);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("providers.svix.public_keys[1]") && out.contains("decodes to 3 bytes"), "{out}");
}
