//! What an unauthenticated client can make the server hold is bounded: a Twilio form's
//! parameters before its signature is checked.

use stagehook::providers::twilio::MAX_FORM_PARAMS;

use crate::support::{config, form, start, twilio_signature, TWILIO_TOKEN};

const FORM: &str = "application/x-www-form-urlencoded";

/// A form with far more parameters than Twilio sends is refused with `invalid_payload` before
/// it is parsed or its signature checked; a real one on the same server still passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilio_form_with_too_many_parameters_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path())).await;
    let url = "http://127.0.0.1/staging/webhooks/sms";

    // Just under 1 MiB of `a&a&…`: 400 000 parameters.
    let flood = "a&".repeat(400_000);
    let r =
        s.post("/staging/webhooks/sms", &[("content-type", FORM), ("x-twilio-signature", "x")], flood.as_bytes()).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"), "{}", r.text());
    assert!(r.text().contains("400001 parameters"), "{}", r.text());

    // One over the cap, correctly signed: refused all the same.
    let names: Vec<String> = (0..=MAX_FORM_PARAMS).map(|i| format!("P{i}")).collect();
    let mut pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let sig = twilio_signature(TWILIO_TOKEN, url, &pairs);
    let r = s
        .post("/staging/webhooks/sms", &[("content-type", FORM), ("x-twilio-signature", &sig)], form(&pairs).as_bytes())
        .await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_payload"), "{}", r.text());

    // At the cap, with the fields a message has, it passes.
    pairs.truncate(MAX_FORM_PARAMS - 3);
    pairs.extend([("MessageSid", "SM_many"), ("From", "+15005550006"), ("To", "+15005550001")]);
    let sig = twilio_signature(TWILIO_TOKEN, url, &pairs);
    let r = s
        .post("/staging/webhooks/sms", &[("content-type", FORM), ("x-twilio-signature", &sig)], form(&pairs).as_bytes())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // And so does an ordinary message.
    let sms = [("MessageSid", "SM_plain"), ("From", "+15005550006"), ("To", "+15005550001"), ("Body", "hi")];
    let sig = twilio_signature(TWILIO_TOKEN, url, &sms);
    let r = s
        .post("/staging/webhooks/sms", &[("content-type", FORM), ("x-twilio-signature", &sig)], form(&sms).as_bytes())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    s.stop().await;
}
