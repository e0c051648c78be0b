//! Slack: `X-Slack-Signature: v0=<hex>` over `v0:{X-Slack-Request-Timestamp}:{raw body}`.
//!
//! Verified as slack_sdk's `SignatureVerifier` does: the key is the signing secret's UTF-8 bytes;
//! the timestamp goes into the signed string exactly as the header wrote it; the whole header
//! value (`v0=` + lowercase hex) is compared in constant time; a timestamp more than the
//! tolerance (300 s by default) away from now is refused in either direction. The SDK checks the
//! time before the signature; here the signature comes first, as for Stripe, so the codes say
//! more: `invalid_signature` means the request is not from Slack (or the secret is wrong), while
//! `stale_timestamp` means a genuine request that is too old or from a skewed clock. Both
//! orders accept and refuse exactly the same requests. A timestamp that is not an integer is
//! `invalid_signature` (the SDK raises on it).
//!
//! Bodies and their dedup ids:
//! - Events API (JSON): `event_callback` by its `event_id` (retries repeat it), typed by
//!   `event.type`; `url_verification` by `url_verification:{challenge}`, answered with the
//!   challenge; `app_rate_limited` by `app_rate_limited:{team_id}:{minute_rate_limited}`.
//! - Slash commands (form): by `trigger_id`, which Slack makes anew for every invocation, typed
//!   `command:{command}` (`command:/deploy`).
//! - Interactivity (form with a JSON `payload`): by its `trigger_id`, typed by `type`
//!   (`block_actions`, `view_submission`...). The few payloads without one (`view_closed`, for
//!   one) are keyed `{type}:{first 16 hex of sha256(payload)}`: the same request sent twice gets
//!   the same id, a new interaction a new one. Slack does not retry these, so nothing more stable
//!   is needed.

use std::borrow::Cow;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use warp::http::HeaderMap;

use super::kind::{ConfigError, Kind, Rotation};
use super::signing::{self, HmacSha256};
use super::{
    fresh_id, fresh_uuid, header_str, inspected, json_body, media_type, pick, require_media_type, signature_value,
    Accepted, Answer, Check, Inbound, Parsed, Provider, Refusal, RefusalCode, Sample, Signed, UnknownFixture, NO_EVENT,
};
use crate::secret::Secret;

pub const SIGNATURE_HEADER: &str = "x-slack-signature";
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

/// The fixtures of `stagehook send`; the first is the default.
const SAMPLE_TYPES: &[&str] = &["event_callback", "url_verification", "slash_command"];

/// A section of kind `slack`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The app's signing secret.
    pub secret: Option<Secret>,
    /// Several secrets accepted at once (rotation); deliveries and `send` sign with the first
    /// of `secret` then `secrets`.
    pub secrets: Vec<Secret>,
    /// Accepted distance of the signed timestamp from now, either way.
    pub tolerance_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { secret: None, secrets: Vec::new(), tolerance_seconds: 300 }
    }
}

#[derive(Debug)]
pub struct Slack {
    pub name: String,
    /// Every accepted signing secret (rotation); deliveries are signed with the first.
    pub secrets: Vec<Secret>,
    /// Largest accepted distance, in seconds, between the request's timestamp and now, in
    /// either direction.
    pub tolerance_s: i64,
}

impl Kind for Slack {
    const KEYS: &'static [&'static str] = &["secret", "secrets", "tolerance_seconds"];

    type Settings = Settings;

    /// The endpoint `[providers.<name>]`. No secret is not an error: the endpoint then
    /// answers 503 until one is set.
    fn from_settings(name: &str, c: &Settings) -> Result<Slack, ConfigError> {
        // Zero would refuse nearly every request (Slack's clock and this one never agree to the
        // second), which is a mistake, not a setting.
        let key = format!("providers.{name}.tolerance_seconds");
        let tolerance_s = match i64::try_from(c.tolerance_seconds) {
            Ok(0) => return Err(ConfigError::new(key, "must be at least 1 (Slack's SDKs use 300)")),
            Ok(t) => t,
            Err(_) => {
                let message = format!("is too large: {} (Slack's SDKs use 300)", c.tolerance_seconds);
                return Err(ConfigError::new(key, message));
            }
        };
        Ok(Slack { name: name.to_string(), secrets: Self::rotation(c).nonempty(name)?, tolerance_s })
    }

    fn rotation(c: &Settings) -> Rotation<'_> {
        Rotation::new(&c.secret, &c.secrets)
    }

    fn tolerance_seconds(c: &Settings) -> Option<u64> {
        Some(c.tolerance_seconds)
    }
}

/// `v0=` + `hex(HMAC-SHA256(secret, "v0:{timestamp}:{body}"))`, the whole header value.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let digest = signing::mac::<HmacSha256>(secret.as_bytes(), [&b"v0:"[..], timestamp.as_bytes(), b":", body]);
    format!("v0={}", hex::encode(digest))
}

fn nonempty<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn required(field: &str, value: Option<&str>) -> Check {
    match value {
        Some(_) => Check::pass(field, "present"),
        None => Check::fail(field, "missing, empty or not a string"),
    }
}

/// Checks of an Events API body, and its (id, type) when they pass.
fn events_api(v: &Value) -> (Vec<Check>, Option<(String, String)>) {
    if !v.is_object() {
        return (vec![Check::fail("body", "must be a JSON object")], None);
    }
    match nonempty(v, "/type") {
        Some("url_verification") => {
            let challenge = nonempty(v, "/challenge");
            let checks = vec![Check::pass("type", "url_verification"), required("challenge", challenge)];
            (checks, challenge.map(|c| (format!("url_verification:{c}"), "url_verification".to_string())))
        }
        Some("event_callback") => {
            let (id, kind) = (nonempty(v, "/event_id"), nonempty(v, "/event/type"));
            let checks =
                vec![Check::pass("type", "event_callback"), required("event_id", id), required("event.type", kind)];
            (checks, id.zip(kind).map(|(i, k)| (i.to_string(), k.to_string())))
        }
        Some("app_rate_limited") => {
            let team = nonempty(v, "/team_id");
            let minute = v.get("minute_rate_limited").and_then(Value::as_i64);
            let checks = vec![
                Check::pass("type", "app_rate_limited"),
                required("team_id", team),
                match minute {
                    Some(_) => Check::pass("minute_rate_limited", "integer"),
                    None => Check::fail("minute_rate_limited", "missing or not an integer"),
                },
            ];
            let parsed =
                team.zip(minute).map(|(t, m)| (format!("app_rate_limited:{t}:{m}"), "app_rate_limited".into()));
            (checks, parsed)
        }
        Some(other) => (
            vec![Check::fail(
                "type",
                format!("`{other}` is not an Events API type (url_verification, event_callback, app_rate_limited)"),
            )],
            None,
        ),
        None => (vec![required("type", None)], None),
    }
}

/// Checks of a slash command's form fields.
fn slash_command(fields: &[(Cow<'_, str>, Cow<'_, str>)]) -> (Vec<Check>, Option<(String, String)>) {
    let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_ref()).filter(|v| !v.is_empty());
    let (command, trigger) = (get("command"), get("trigger_id"));
    let command_check = match command {
        Some(c) if c.starts_with('/') => Check::pass("command", "slash command"),
        Some(_) => Check::fail("command", "must start with `/`"),
        None => Check::fail("command", "missing or empty"),
    };
    let checks = vec![command_check.clone(), required("trigger_id", trigger)];
    let parsed = match (command_check.ok, command, trigger) {
        (true, Some(c), Some(t)) => Some((t.to_string(), format!("command:{c}"))),
        _ => None,
    };
    (checks, parsed)
}

/// Checks of an interactive `payload`.
fn interaction(payload: &str) -> (Vec<Check>, Option<(String, String)>) {
    let v = match super::json::parse_str(payload) {
        Ok(v) if v.is_object() => v,
        Ok(_) => return (vec![Check::fail("payload", "must be a JSON object")], None),
        Err(e) => return (vec![Check::fail("payload", e.said("not JSON: "))], None),
    };
    let kind = nonempty(&v, "/type");
    let checks = vec![Check::pass("payload", "JSON object"), required("payload.type", kind)];
    let parsed = kind.map(|k| {
        let id = match nonempty(&v, "/trigger_id") {
            Some(t) => t.to_string(),
            None => format!("{k}:{}", &hex::encode(Sha256::digest(payload.as_bytes()))[..16]),
        };
        (id, k.to_string())
    });
    (checks, parsed)
}

/// Every structural check, and the event when they all pass.
fn inspect(req: &Inbound<'_>) -> (Vec<Check>, Option<Parsed>) {
    let (checks, parsed) = if media_type(req.headers).as_deref() == Some(FORM) {
        let fields: Vec<_> = form_urlencoded::parse(req.body).collect();
        match fields.iter().find(|(k, _)| k == "payload") {
            Some((_, payload)) => interaction(payload),
            None if fields.iter().any(|(k, _)| k == "command") => slash_command(&fields),
            None => (
                vec![Check::fail(
                    "body",
                    "a form body is a slash command (`command`) or an interaction (`payload`); it has neither",
                )],
                None,
            ),
        }
    } else {
        match json_body(req.body) {
            Ok(v) => events_api(&v),
            Err(check) => (vec![check], None),
        }
    };
    let parsed = parsed.filter(|_| checks.iter().all(|c| c.ok)).map(|(id, kind)| Parsed::one(id, kind));
    (checks, parsed)
}

impl Provider for Slack {
    fn delivery_timeout(&self) -> Option<std::time::Duration> {
        // An event not answered within 3 seconds is retried (`http_timeout`):
        // https://api.slack.com/apis/events-api#retries
        Some(std::time::Duration::from_secs(3))
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn secret_headers(&self) -> &[&'static str] {
        &[SIGNATURE_HEADER]
    }

    fn precheck(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        require_media_type(headers, &[JSON, FORM], "Slack sends", " (Events API; slash commands and interactivity)")
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<(), Refusal> {
        let invalid = |m: &str| Refusal::new(RefusalCode::InvalidSignature, m);
        let given = signature_value(req.headers, SIGNATURE_HEADER, "X-Slack-Signature")?;
        let raw_ts = header_str(req.headers, TIMESTAMP_HEADER)
            .ok_or_else(|| invalid("missing X-Slack-Request-Timestamp header"))?;
        let timestamp: i64 =
            raw_ts.parse().map_err(|_| invalid("X-Slack-Request-Timestamp is not an integer number of seconds"))?;
        let matched = signing::any_matches(&self.secrets, [given], |secret| sign(secret.expose(), raw_ts, req.body));
        if !matched {
            return Err(invalid("X-Slack-Signature does not match the payload for the configured signing secret"));
        }
        let age = req.now_s.saturating_sub(timestamp);
        if age.unsigned_abs() > self.tolerance_s.max(0).unsigned_abs() {
            let tolerance = self.tolerance_s;
            let message = if age > 0 {
                format!("request timestamp {timestamp} is {age} s old, more than the {tolerance} s tolerance")
            } else {
                let ahead = age.unsigned_abs();
                format!("request timestamp {timestamp} is {ahead} s ahead of this clock (tolerance {tolerance} s)")
            };
            return Err(Refusal::new(RefusalCode::StaleTimestamp, message));
        }
        Ok(())
    }

    fn signed_at(&self, req: &Inbound<'_>) -> Option<i64> {
        req.headers.get(TIMESTAMP_HEADER)?.to_str().ok()?.trim().parse().ok()
    }

    fn secret_fingerprints(&self) -> Vec<String> {
        self.secrets.iter().map(Secret::fingerprint).collect()
    }

    fn checks(&self, req: &Inbound<'_>) -> Vec<Check> {
        inspect(req).0
    }

    fn parse(&self, req: &Inbound<'_>) -> Result<Parsed, Refusal> {
        inspected(inspect(req), NO_EVENT)
    }

    fn answer(&self, accepted: &Accepted<'_>) -> Answer {
        let challenge = serde_json::from_slice::<Value>(accepted.body)
            .ok()
            .filter(|v| v.get("type").and_then(Value::as_str) == Some("url_verification"))
            .and_then(|v| v.get("challenge").and_then(Value::as_str).map(str::to_string));
        match challenge {
            // Slack enables the Request URL only when the challenge comes back.
            Some(challenge) => {
                Answer { content_type: JSON, body: json!({"challenge": challenge}).to_string().into_bytes() }
            }
            // Anything in the body of a slash command's or an interaction's answer is shown to
            // the user as a message, so the acknowledgement is an empty 200.
            None => Answer { content_type: "text/plain", body: Vec::new() },
        }
    }

    fn sign_delivery(&self, target: &str, _content_type: Option<&str>, body: &[u8], now_s: i64) -> Signed {
        // A fresh timestamp: the app refuses one more than five minutes away from its clock, so
        // a replay must not carry the original.
        let secret = signing::signing_secret(&self.secrets);
        let timestamp = now_s.to_string();
        Signed {
            url: target.to_string(),
            headers: vec![(SIGNATURE_HEADER, sign(secret, &timestamp, body)), (TIMESTAMP_HEADER, timestamp)],
        }
    }

    fn sample_types(&self) -> &'static [&'static str] {
        SAMPLE_TYPES
    }

    fn sample(&self, event_type: Option<&str>, now_s: i64) -> Result<Sample, UnknownFixture> {
        let kind = pick(SAMPLE_TYPES, event_type)?;
        let (content_type, body) = match kind {
            "event_callback" => (JSON, serde_json::to_vec(&message_event(now_s)).unwrap_or_default()),
            "url_verification" => {
                let challenge = fresh_id("").to_lowercase();
                let body = json!({"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"});
                (JSON, serde_json::to_vec(&body).unwrap_or_default())
            }
            _ => (FORM, slash_command_form().into_bytes()),
        };
        Ok(Sample { content_type, headers: Vec::new(), body })
    }
}

/// The deprecated verification token Slack still puts in payloads; apps ignore it.
const VERIFICATION_TOKEN: &str = "Jhj5dZrVaK7ZwHHjRyZWjbDl";
const TEAM: &str = "T0STAGEHK1";
const APP: &str = "A0STAGEHK1";
const CHANNEL: &str = "C0STAGEHK1";
const USER: &str = "U0STAGEHK1";

/// A message posted in a channel, as the Events API wraps it.
fn message_event(now_s: i64) -> Value {
    let ts = format!("{now_s}.{:06}", fastrand::u32(0..1_000_000));
    json!({
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM,
        "context_team_id": TEAM,
        "context_enterprise_id": null,
        "api_app_id": APP,
        "event": {
            "type": "message", "channel": CHANNEL, "user": USER, "text": "Hello from stagehook",
            "ts": ts, "event_ts": ts, "channel_type": "channel", "client_msg_id": fresh_uuid(), "team": TEAM,
            "blocks": [{"type": "rich_text", "block_id": "sH1k", "elements": [{"type": "rich_text_section",
                "elements": [{"type": "text", "text": "Hello from stagehook"}]}]}],
        },
        "type": "event_callback",
        "event_id": fresh_id("Ev"),
        "event_time": now_s,
        "authorizations": [{"enterprise_id": null, "team_id": TEAM, "user_id": "U0STAGEBOT",
            "is_bot": true, "is_enterprise_install": false}],
        "is_ext_shared_channel": false,
        "event_context": format!("4-{}", fresh_id("").to_lowercase()),
    })
}

/// `/stagehook hello` as Slack posts a slash command.
fn slash_command_form() -> String {
    let digits = || fastrand::u64(100_000_000_000..1_000_000_000_000).to_string();
    let trigger_id = format!("{}.{}.{}", digits(), digits(), hex::encode(ulid::Ulid::new().to_bytes()));
    let response_url = format!("https://hooks.slack.com/commands/{TEAM}/{}/{}", digits(), fresh_id(""));
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("token", VERIFICATION_TOKEN),
            ("team_id", TEAM),
            ("team_domain", "stagehook-dev"),
            ("channel_id", CHANNEL),
            ("channel_name", "general"),
            ("user_id", USER),
            ("user_name", "ada"),
            ("command", "/stagehook"),
            ("text", "hello"),
            ("api_app_id", APP),
            ("is_enterprise_install", "false"),
            ("response_url", response_url.as_str()),
            ("trigger_id", trigger_id.as_str()),
        ])
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::providers::testing::{self, header_map as headers, receive_sample};

    fn slack(secrets: &[&str]) -> Slack {
        Slack { name: "slack".into(), secrets: testing::secrets(secrets), tolerance_s: 300 }
    }

    struct Vector<'a> {
        secret: &'a str,
        timestamp: i64,
        payload: &'a str,
        header: &'a str,
    }

    impl<'a> Vector<'a> {
        fn of(v: &'a testing::Vector) -> Vector<'a> {
            Vector {
                secret: v.str("secret"),
                timestamp: v.int("timestamp"),
                payload: v.str("payload"),
                header: v.str("header"),
            }
        }
    }

    fn signed(signature: &str, timestamp: &str) -> HeaderMap {
        headers(&[("content-type", FORM), (SIGNATURE_HEADER, signature), (TIMESTAMP_HEADER, timestamp)])
    }

    fn verify(p: &Slack, h: &HeaderMap, body: &[u8], now_s: i64) -> Result<(), Refusal> {
        p.verify(&Inbound { headers: h, body, url: "", now_s })
    }

    #[test]
    fn published_vectors_verify_within_the_tolerance_either_way() {
        for v in testing::vectors("slack").iter().map(Vector::of) {
            assert_eq!(sign(v.secret, &v.timestamp.to_string(), v.payload.as_bytes()), v.header);
            let h = signed(v.header, &v.timestamp.to_string());
            let p = slack(&[v.secret]);
            for now in [v.timestamp, v.timestamp + 300, v.timestamp - 300] {
                verify(&p, &h, v.payload.as_bytes(), now).unwrap();
            }
            // The vector is a slash command; it parses too.
            let req = Inbound { headers: &h, body: v.payload.as_bytes(), url: "", now_s: v.timestamp };
            assert_eq!(
                p.parse(&req).unwrap(),
                Parsed::one("398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c", "command:/webhook-collect")
            );
        }
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        for v in testing::vectors("slack").iter().map(Vector::of) {
            let h = signed(v.header, &v.timestamp.to_string());
            let p = slack(&[v.secret]);
            let r = verify(&p, &h, v.payload.as_bytes(), v.timestamp + 301).unwrap_err();
            assert_eq!(r.code, RefusalCode::StaleTimestamp);
            assert!(r.message.contains("301 s old"), "{}", r.message);
            let r = verify(&p, &h, v.payload.as_bytes(), v.timestamp - 301).unwrap_err();
            assert_eq!(r.code, RefusalCode::StaleTimestamp);
            assert!(r.message.contains("301 s ahead"), "{}", r.message);
            // A forged request reads as forged however old it is.
            let h = signed(&v.header.replacen('a', "b", 1), &v.timestamp.to_string());
            let r = verify(&p, &h, v.payload.as_bytes(), v.timestamp + 10_000).unwrap_err();
            assert_eq!(r.code, RefusalCode::InvalidSignature);
        }
    }

    #[test]
    fn tampered_body_wrong_secret_and_bad_headers_are_refused() {
        for v in testing::vectors("slack").iter().map(Vector::of) {
            let ts = v.timestamp.to_string();
            let p = slack(&[v.secret]);
            let h = signed(v.header, &ts);
            let tampered = v.payload.replacen("roadrunner", "coyote", 1);
            let r = verify(&p, &h, tampered.as_bytes(), v.timestamp).unwrap_err();
            assert_eq!(r.code, RefusalCode::InvalidSignature);
            let r = verify(&slack(&["another secret"]), &h, v.payload.as_bytes(), v.timestamp).unwrap_err();
            assert_eq!(r.code, RefusalCode::InvalidSignature);
            assert!(!r.message.contains("another secret"));
            // The timestamp is part of what is signed, as written.
            let h = signed(v.header, &format!("+{ts}"));
            assert_eq!(
                verify(&p, &h, v.payload.as_bytes(), v.timestamp).unwrap_err().code,
                RefusalCode::InvalidSignature
            );
            let h = signed(v.header, &(v.timestamp + 1).to_string());
            assert_eq!(
                verify(&p, &h, v.payload.as_bytes(), v.timestamp).unwrap_err().code,
                RefusalCode::InvalidSignature
            );
            for h in [
                headers(&[(TIMESTAMP_HEADER, &ts)]),
                headers(&[(SIGNATURE_HEADER, v.header)]),
                signed(v.header, "soon"),
                signed(&v.header.to_uppercase(), &ts),
            ] {
                let r = verify(&p, &h, v.payload.as_bytes(), v.timestamp).unwrap_err();
                assert_eq!(r.code, RefusalCode::InvalidSignature, "{}", r.message);
            }
        }
    }

    #[test]
    fn either_of_two_secrets_verifies() {
        let p = slack(&["old", "new"]);
        for secret in ["old", "new"] {
            verify(&p, &signed(&sign(secret, "100", b"a=1"), "100"), b"a=1", 100).unwrap();
        }
        assert!(verify(&p, &signed(&sign("other", "100", b"a=1"), "100"), b"a=1", 100).is_err());
    }

    #[test]
    fn deliveries_carry_a_fresh_timestamp_signed_with_the_first_secret() {
        let p = slack(&["first", "second"]);
        let body = br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"message"}}"#;
        let s = p.sign_delivery("http://app/slack/events", Some(JSON), body, 2_000_000_000);
        assert_eq!(s.url, "http://app/slack/events");
        let get = |name: &str| s.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get(TIMESTAMP_HEADER), "2000000000");
        let h = signed(&get(SIGNATURE_HEADER), &get(TIMESTAMP_HEADER));
        verify(&slack(&["first"]), &h, body, 2_000_000_000).unwrap();
        assert!(verify(&slack(&["second"]), &h, body, 2_000_000_000).is_err());
    }

    #[test]
    fn every_sample_signs_verifies_and_parses() {
        let p = slack(&["s"]);
        let now = 1_700_000_000;
        let mut ids = std::collections::HashSet::new();
        for kind in p.sample_types() {
            let parsed = receive_sample(&p, kind, now).parsed;
            match *kind {
                "event_callback" => {
                    assert_eq!(parsed.event_type, "message");
                    assert!(parsed.event_id.starts_with("Ev"), "{}", parsed.event_id);
                }
                "url_verification" => assert!(parsed.event_id.starts_with("url_verification:")),
                _ => assert_eq!(parsed.event_type, "command:/stagehook"),
            }
            assert!(ids.insert(parsed.event_id));
        }
        assert_eq!(p.sample(None, now).unwrap().content_type, JSON);
        assert!(p.sample(Some("block_actions"), now).unwrap_err().to_string().contains("event_callback"));
    }

    #[test]
    fn ids_and_types_of_each_body_kind() {
        let p = slack(&["s"]);
        let parse = |ct: &str, body: &[u8]| {
            let h = headers(&[("content-type", ct)]);
            p.parse(&Inbound { headers: &h, body, url: "", now_s: 0 })
        };
        let event = br#"{"type":"event_callback","event_id":"Ev08","event":{"type":"app_mention"}}"#;
        assert_eq!(parse(JSON, event).unwrap(), Parsed::one("Ev08", "app_mention"));
        let challenge = br#"{"token":"t","challenge":"3eZbrw1aB","type":"url_verification"}"#;
        assert_eq!(parse(JSON, challenge).unwrap(), Parsed::one("url_verification:3eZbrw1aB", "url_verification"));
        let limited =
            br#"{"type":"app_rate_limited","team_id":"T1","minute_rate_limited":1518467820,"api_app_id":"A1"}"#;
        assert_eq!(parse(JSON, limited).unwrap(), Parsed::one("app_rate_limited:T1:1518467820", "app_rate_limited"));

        let payload =
            |json: &str| form_urlencoded::Serializer::new(String::new()).append_pair("payload", json).finish();
        let action = payload(r#"{"type":"block_actions","trigger_id":"123.456.abc","actions":[{"action_ts":"1.2"}]}"#);
        assert_eq!(parse(FORM, action.as_bytes()).unwrap(), Parsed::one("123.456.abc", "block_actions"));
        let closed = payload(r#"{"type":"view_closed","view":{"id":"V1"}}"#);
        let first = parse(FORM, closed.as_bytes()).unwrap();
        assert_eq!(first.event_type, "view_closed");
        assert!(first.event_id.starts_with("view_closed:") && first.event_id.len() == "view_closed:".len() + 16);
        assert_eq!(parse(FORM, closed.as_bytes()).unwrap(), first, "the same request, the same id");
        let other = payload(r#"{"type":"view_closed","view":{"id":"V2"}}"#);
        assert_ne!(parse(FORM, other.as_bytes()).unwrap().event_id, first.event_id);

        for (ct, bad) in [
            (JSON, &br#"{"type":"event_callback","event":{"type":"message"}}"#[..]),
            (JSON, br#"{"type":"event_callback","event_id":"Ev1"}"#),
            (JSON, br#"{"type":"url_verification"}"#),
            (JSON, br#"{"type":"block_actions"}"#),
            (JSON, br#"{"challenge":"x"}"#),
            (JSON, b"[]"),
            (JSON, b"token=x"),
            (FORM, b"command=%2Fdeploy"),
            (FORM, b"command=deploy&trigger_id=1.2.3"),
            (FORM, b"payload=%7B%7D"),
            (FORM, b"payload=nope"),
            (FORM, b"text=hello"),
        ] {
            let r = parse(ct, bad).unwrap_err();
            assert_eq!(r.code, RefusalCode::InvalidPayload, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_challenge_is_answered_and_everything_else_acknowledged_empty() {
        let p = slack(&["s"]);
        let accepted = |body: &'static [u8]| Accepted { id: "01J", event_id: "x", duplicate: false, body };
        let a = p.answer(&accepted(br#"{"token":"t","challenge":"3eZbrw1aB","type":"url_verification"}"#));
        assert_eq!(a.content_type, JSON);
        assert_eq!(serde_json::from_slice::<Value>(&a.body).unwrap(), json!({"challenge": "3eZbrw1aB"}));
        for body in [
            &br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"message"}}"#[..],
            b"command=%2Fx&trigger_id=1",
        ] {
            let a = p.answer(&accepted(body));
            assert_eq!((a.content_type, a.body.len()), ("text/plain", 0));
        }
    }

    #[test]
    fn config_reads_the_tolerance_and_refuses_a_zero_one() {
        let mut c = Settings::default();
        let p = Slack::from_settings("team", &c).unwrap();
        assert_eq!((p.tolerance_s, p.secrets.len()), (300, 0));
        c.tolerance_seconds = 60;
        c.secrets = vec![Secret::new("a"), Secret::new("b")];
        let p = Slack::from_settings("team", &c).unwrap();
        assert_eq!((p.tolerance_s, p.secrets[1].expose()), (60, "b"));
        for bad in [0, u64::MAX] {
            c.tolerance_seconds = bad;
            assert!(crate::providers::kind::said(&Slack::from_settings("team", &c).unwrap_err())
                .starts_with("providers.team.tolerance_seconds"));
        }
        c.tolerance_seconds = 300;
        c.secrets = vec![Secret::new("a"), Secret::new("")];
        assert!(crate::providers::kind::said(&Slack::from_settings("team", &c).unwrap_err())
            .contains("providers.team.secrets[1]"));
    }

    #[test]
    fn the_signature_header_is_listed_as_secret_and_the_timestamp_is_not() {
        crate::providers::testing::assert_secret_headers_cover_signing(&slack(&["a"]), &slack(&["b"]));
        assert!(!slack(&["a"]).secret_headers().contains(&TIMESTAMP_HEADER));
    }
}
