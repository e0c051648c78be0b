//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...][,v0=...]`.
//!
//! Verified as stripe's SDKs do: the key is the whole secret string (`whsec_` included, not
//! decoded); the signed payload is `{t}.{raw body}`; any `v1` entry may match (secret rotation);
//! the hex strings are compared in constant time; only timestamps older than the tolerance are
//! refused (a timestamp in the future passes, as in the SDKs). The signature is checked before the
//! timestamp, again as in the SDKs, so a forged old request reads `invalid_signature`.
//!
//! Two forms of body arrive under that one signature scheme: snapshot events (`object:
//! "event"`, the object itself in `data.object`) and thin events (`object: "v2.core.event"`,
//! sent by event destinations: a reference to the object in `related_object`, `created` as an
//! RFC 3339 time). Each is held to its own rules; the app reads the first with the SDKs'
//! `construct_event` and the second with `parse_event_notification`, which verify the signature
//! alike (stripe-python's `StripeClient.parse_event_notification` calls the same
//! `WebhookSignature.verify_header`).

use serde_json::Value;
use warp::http::HeaderMap;

use super::signing::{self, HmacSha256};
use crate::providers::Malformed;
use serde::{Deserialize, Serialize};

use super::api::{ApiAccess, NoApi, StripeApi, STRIPE_API_BASE};
use super::json::{self, Checked, CheckedVisitor, Keys, Text};
use super::kind::{
    api_base, api_base_finding, built_in_credential, is_placeholder, placeholder_finding, BuiltIn, ConfigError, Kind,
    Rotation, Surroundings,
};
use super::{
    fresh_id, json_body, pick, receipt, refuse_failed, require_media_type, signature_text, Accepted, Answer, Check,
    Inbound, Parsed, Provider, Refusal, RefusalCode, Sample, Signed, UnknownFixture,
};
use crate::finding::{Finding, Severity};
use crate::secret::Secret;
use serde_json::json;

mod thin;

pub use thin::THIN_OBJECT;

pub const SIGNATURE_HEADER: &str = "stripe-signature";

/// `[providers.stripe]`, or a section of kind `stripe`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The endpoint's signing secret (`whsec_...`).
    pub secret: Option<Secret>,
    /// Several secrets accepted at once (rotation); deliveries and `send` sign with the first
    /// of `secret` then `secrets`.
    pub secrets: Vec<Secret>,
    /// Accepted age of a signed timestamp.
    pub tolerance_seconds: u64,
    /// A test-mode API key (`sk_test_...` or `rk_test_...`, a restricted key with read access to
    /// events is enough): what `stagehook backfill` lists the account's events with. A live key
    /// in any Stripe section is an isolation error that stops startup.
    pub api_key: Option<Secret>,
    /// Where Stripe's API is ([`STRIPE_API_BASE`] when unset); an http(s) URL without a query.
    pub api_base: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { secret: None, secrets: Vec::new(), tolerance_seconds: 300, api_key: None, api_base: None }
    }
}

pub struct Stripe {
    pub name: String,
    /// Every accepted secret (rotation); deliveries are signed with the first.
    pub secrets: Vec<Secret>,
    pub tolerance_s: i64,
    /// Its read access to Stripe's API, or why there is none.
    pub api: Result<ApiAccess, NoApi>,
}

impl Stripe {
    /// An endpoint without API access (`api_key` unset).
    pub fn new(name: &str, secrets: Vec<Secret>, tolerance_s: i64) -> Stripe {
        let api = Err(NoApi::NotConfigured(format!("providers.{name}.api_key")));
        Stripe { name: name.to_string(), secrets, tolerance_s, api }
    }
}

/// Whether `key` is a live-mode Stripe key (secret, restricted or publishable).
fn is_live_key(key: &str) -> bool {
    ["sk_live_", "rk_live_", "pk_live_"].iter().any(|p| key.starts_with(p))
}

/// The `isolation.live_stripe_key` finding about the Stripe key `k` found at `key` (a section's
/// `api_key` or an environment variable): an error for a live key, a note for a test-mode one,
/// a warning for anything else.
fn key_finding(key: &str, k: &Secret) -> Finding {
    let v = k.expose();
    if is_live_key(v) {
        Finding::new(
            "isolation.live_stripe_key",
            Severity::Error,
            key,
            format!(
                "{} is a live-mode Stripe key: staging must use a test-mode key (sk_test_ or rk_test_)",
                k.fingerprint()
            ),
        )
    } else if v.starts_with("sk_test_") || v.starts_with("rk_test_") {
        Finding::new("isolation.live_stripe_key", Severity::Ok, key, format!("test-mode key {}", k.fingerprint()))
    } else {
        Finding::new(
            "isolation.stripe_key_format",
            Severity::Warning,
            key,
            format!("{} is not a recognisable Stripe secret key (sk_test_... or rk_test_...)", k.fingerprint()),
        )
    }
}

/// The built-in Stripe endpoint: `[providers.stripe]` at `/staging/webhooks/stripe`.
const BUILT_IN: BuiltIn = BuiltIn {
    name: "stripe",
    path: "stripe",
    env: ("STRIPE_WEBHOOK_SECRET", "secret"),
    env_keys: &["secret", "api_key", "api_base"],
};

/// What is wrong with a value that is not a Stripe signing secret, said so that the fix is
/// plain: the wrong prefix (an API key, `sk_test_...`, is the usual slip) or too few characters
/// (a truncated copy).
fn secret_format_problem(secret: &str) -> String {
    match secret.strip_prefix("whsec_") {
        Some(rest) => format!(
            "is too short for a Stripe signing secret: {} characters after `whsec_`, where Stripe's have 32 or more (copied in part?)",
            rest.chars().count()
        ),
        None => "is not a Stripe signing secret: those start with `whsec_` (an `sk_`/`rk_` value is an API key)".to_string(),
    }
}

impl Kind for Stripe {
    const KEYS: &'static [&'static str] = &["secret", "secrets", "tolerance_seconds", "api_key", "api_base"];
    const SECRET_HINT: &'static str = "the whsec_ secret";
    const BUILT_IN: Option<BuiltIn> = Some(BUILT_IN);
    const API_HOSTS: &'static [&'static str] = &["stripe.com", "*.stripe.com"];
    const ISOLATION_ENV: &'static [&'static str] = &["STRIPE_API_KEY", "STRIPE_SECRET_KEY"];

    type Settings = Settings;

    /// The endpoint `[providers.<name>]`. No secret is not an error: the endpoint then
    /// answers 503 until one is set.
    /// With `api_key` set (and not a live key, which the validator's isolation error stops at
    /// startup, and which is never handed on), it can read Stripe's API.
    fn from_settings(name: &str, c: &Settings) -> Result<Stripe, ConfigError> {
        let mut stripe = Stripe::new(name, Self::rotation(c).nonempty(name)?, c.tolerance_seconds as i64);
        let base = api_base(name, c.api_base.as_deref(), STRIPE_API_BASE)?;
        if let Some(key) = &c.api_key {
            if key.expose().trim().is_empty() {
                return Err(ConfigError::new(
                    format!("providers.{name}.api_key"),
                    "is empty; set a test-mode key (sk_test_ or rk_test_) or remove the key",
                ));
            }
            if !is_live_key(key.expose()) {
                stripe.api = Ok(ApiAccess::Stripe(StripeApi { base, key: key.clone() }));
            }
        }
        Ok(stripe)
    }

    fn rotation(c: &Settings) -> Rotation<'_> {
        Rotation::new(&c.secret, &c.secrets)
    }

    fn tolerance_seconds(c: &Settings) -> Option<u64> {
        Some(c.tolerance_seconds)
    }

    /// The built-in endpoint's signing secret looks like one, and no Stripe key in reach is a live
    /// one.
    fn findings(built_in: Option<&Settings>, around: &Surroundings<'_>, out: &mut Vec<Finding>) {
        let section = format!("providers.{}", BUILT_IN.name);
        if let Some(stripe) = built_in {
            let key = format!("{section}.secret");
            out.push(built_in_credential(
                &key,
                stripe.secret.as_ref(),
                "Stripe is configured without its signing secret: set STRIPE_WEBHOOK_SECRET (from `stripe listen` or the dashboard's endpoint page)",
                "the endpoint's real whsec_ secret",
                |s| {
                    if !s.expose().starts_with("whsec_") || s.expose().len() < 16 {
                        let problem = format!("{} {}", s.fingerprint(), secret_format_problem(s.expose()));
                        Finding::new("stripe.secret_format", Severity::Error, &key, problem)
                    } else {
                        Finding::new("stripe.secret_format", Severity::Ok, &key, format!("signing secret {}", s.fingerprint()))
                    }
                },
            ));
        }
        // A section's own `api_key` is checked with the section (`section_findings`).
        for name in Self::ISOLATION_ENV {
            if let Some(v) = around.env.get(*name).filter(|v| !v.is_empty()) {
                out.push(key_finding(&format!("env {name}"), &Secret::new(v.clone())));
            }
        }
    }

    /// In every Stripe section, built-in or named: its `api_key` is a test-mode key and no
    /// placeholder, and its API is not reached in clear.
    fn section_findings(name: &str, s: &Settings, out: &mut Vec<Finding>) {
        if let Some(k) = &s.api_key {
            let key = format!("providers.{name}.api_key");
            out.push(if is_placeholder(k) {
                placeholder_finding(&key, k, "a test-mode key (sk_test_ or rk_test_)")
            } else {
                key_finding(&key, k)
            });
        }
        if let Some(f) =
            api_base(name, s.api_base.as_deref(), STRIPE_API_BASE).ok().and_then(|b| api_base_finding(name, &b))
        {
            out.push(f);
        }
    }
}

/// The fixtures of `stagehook send`; the first is the default. The last two are thin events:
/// one of API v1 and one that exists only in that form (Accounts v2).
const SAMPLE_TYPES: &[&str] = &[
    "payment_intent.succeeded",
    "charge.failed",
    "invoice.paid",
    "customer.subscription.updated",
    "v1.billing.meter.error_report_triggered",
    "v2.core.account.updated",
];

/// The parts of a `Stripe-Signature` header that count.
#[derive(Debug, PartialEq, Eq)]
pub struct SignatureHeader<'a> {
    pub timestamp: i64,
    pub v1: Vec<&'a str>,
}

/// Parses the header like the SDKs: comma-separated `key=value` items, first `t` wins, every
/// `v1` collected; a missing or non-integer `t`, or no `v1`, is malformed.
pub fn parse_header(header: &str) -> Result<SignatureHeader<'_>, Malformed> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.split_once('=') else {
            continue;
        };
        match key {
            "t" if timestamp.is_none() => {
                timestamp = Some(value.parse::<i64>().map_err(|_| "timestamp `t` is not an integer")?);
            }
            "v1" => v1.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or("no timestamp `t` in the header")?;
    if v1.is_empty() {
        return Err(Malformed("no `v1` signature in the header"));
    }
    Ok(SignatureHeader { timestamp, v1 })
}

/// `hex(HMAC-SHA256(secret, "{t}.{body}"))`, as Stripe signs.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    hex::encode(signing::mac::<HmacSha256>(secret.as_bytes(), [timestamp.as_bytes(), b".", body]))
}

/// The full header value Stripe would send for `body` at `timestamp`.
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", sign(secret, timestamp, body))
}

impl Provider for Stripe {
    fn name(&self) -> &str {
        &self.name
    }

    fn secret_headers(&self) -> &[&'static str] {
        &[SIGNATURE_HEADER]
    }

    fn api_access(&self) -> Result<&ApiAccess, NoApi> {
        self.api.as_ref().map_err(NoApi::clone)
    }

    fn precheck(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        require_media_type(headers, &["application/json"], "Stripe events are", "")
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<(), Refusal> {
        let invalid = |m: &str| Refusal::new(RefusalCode::InvalidSignature, m);
        let header = signature_text(req.headers, SIGNATURE_HEADER, "Stripe-Signature")?;
        let parsed = parse_header(header).map_err(|m| invalid(&format!("malformed Stripe-Signature: {m}")))?;
        let matched =
            signing::any_matches(&self.secrets, &parsed.v1, |secret| sign(secret.expose(), parsed.timestamp, req.body));
        if !matched {
            return Err(invalid("no v1 signature matches the payload for the configured secret"));
        }
        // Saturating: a signed `t` may be any i64, down to i64::MIN.
        let age = req.now_s.saturating_sub(parsed.timestamp);
        if age > self.tolerance_s {
            return Err(Refusal::new(
                RefusalCode::StaleTimestamp,
                format!(
                    "signature timestamp {} is {age} s old, more than the {} s tolerance",
                    parsed.timestamp, self.tolerance_s
                ),
            ));
        }
        Ok(())
    }

    fn signed_at(&self, req: &Inbound<'_>) -> Option<i64> {
        let header = req.headers.get(SIGNATURE_HEADER)?.to_str().ok()?;
        parse_header(header).ok().map(|h| h.timestamp)
    }

    fn secret_fingerprints(&self) -> Vec<String> {
        self.secrets.iter().map(Secret::fingerprint).collect()
    }

    fn checks(&self, req: &Inbound<'_>) -> Vec<Check> {
        event_checks(req.body)
    }

    fn parse(&self, req: &Inbound<'_>) -> Result<Parsed, Refusal> {
        match valid_event(req.body) {
            Some(parsed) => Ok(parsed),
            None => parse_value(req.body),
        }
    }

    fn sign_delivery(&self, target: &str, _content_type: Option<&str>, body: &[u8], now_s: i64) -> Signed {
        // A fresh `t`: the app checks it against its own tolerance, so a replay hours later
        // must not carry the original timestamp.
        self.sign_for(target, body, now_s)
    }

    fn answer(&self, accepted: &Accepted<'_>) -> Answer {
        receipt(accepted)
    }

    fn related_object(&self, body: &[u8]) -> Option<Value> {
        thin::related_object(body)
    }

    fn sample_types(&self) -> &'static [&'static str] {
        SAMPLE_TYPES
    }

    fn sample(&self, event_type: Option<&str>, now_s: i64) -> Result<Sample, UnknownFixture> {
        let kind = pick(SAMPLE_TYPES, event_type)?;
        if let Some(event) = thin::sample(kind, now_s) {
            return Ok(Sample {
                content_type: "application/json",
                headers: Vec::new(),
                body: serde_json::to_vec_pretty(&event).unwrap_or_default(),
            });
        }
        let object = match kind {
            "payment_intent.succeeded" => json!({
                "id": fresh_id("pi_"), "object": "payment_intent", "amount": 2000, "amount_received": 2000,
                "currency": "usd", "status": "succeeded", "livemode": false, "created": now_s,
                "payment_method_types": ["card"], "customer": null, "description": "stagehook sample",
            }),
            "charge.failed" => json!({
                "id": fresh_id("ch_"), "object": "charge", "amount": 2000, "currency": "usd", "status": "failed",
                "paid": false, "failure_code": "card_declined", "failure_message": "Your card was declined.",
                "outcome": {"network_status": "declined_by_network", "reason": "generic_decline", "type": "issuer_declined"},
                "livemode": false, "created": now_s,
            }),
            "invoice.paid" => json!({
                "id": fresh_id("in_"), "object": "invoice", "amount_due": 1500, "amount_paid": 1500,
                "amount_remaining": 0, "currency": "usd", "customer": fresh_id("cus_"), "paid": true,
                "status": "paid", "subscription": fresh_id("sub_"), "livemode": false, "created": now_s,
            }),
            _ => json!({
                "id": fresh_id("sub_"), "object": "subscription", "customer": fresh_id("cus_"), "status": "active",
                "cancel_at_period_end": false, "current_period_start": now_s, "current_period_end": now_s + 30 * 86_400,
                "items": {"object": "list", "data": [{"id": fresh_id("si_"), "object": "subscription_item",
                    "price": {"id": "price_sample", "object": "price", "unit_amount": 1500, "currency": "usd",
                        "recurring": {"interval": "month", "interval_count": 1}}, "quantity": 1}]},
                "livemode": false, "created": now_s,
            }),
        };
        let mut event = json!({
            "id": fresh_id("evt_"), "object": "event", "api_version": "2024-06-20", "created": now_s,
            "type": kind, "livemode": false, "pending_webhooks": 1,
            "request": {"id": null, "idempotency_key": null}, "data": {"object": object},
        });
        if kind == "customer.subscription.updated" {
            event["data"]["previous_attributes"] = json!({"cancel_at_period_end": true});
        }
        Ok(Sample {
            content_type: "application/json",
            headers: Vec::new(),
            body: serde_json::to_vec_pretty(&event).unwrap_or_default(),
        })
    }
}

impl Stripe {
    fn sign_for(&self, target: &str, body: &[u8], now_s: i64) -> Signed {
        let secret = signing::signing_secret(&self.secrets);
        Signed { url: target.to_string(), headers: vec![(SIGNATURE_HEADER, signature_header(secret, now_s, body))] }
    }
}

/// The whole body as a `Value`, every check run: what a body the fast path does not take gets.
fn parse_value(body: &[u8]) -> Result<Parsed, Refusal> {
    let value =
        json::parse(body).map_err(|e| Refusal::new(RefusalCode::InvalidPayload, e.said("body is not JSON: ")))?;
    // A live event is the one refusal with its own code: it means the wrong endpoint (or
    // account) is pointed here, which the sender must fix, not the payload.
    if value.get("livemode") == Some(&Value::Bool(true)) {
        return Err(Refusal::new(
            RefusalCode::LivemodeEvent,
            "live-mode event refused: staging takes test-mode events only; point this endpoint at a test-mode webhook",
        ));
    }
    refuse_failed(&checks_of(&value))?;
    Ok(Parsed::one(value["id"].as_str().unwrap_or_default(), value["type"].as_str().unwrap_or_default()))
}

/// The members the checks read, borrowed: a valid event is taken without building a tree of
/// `Value`s for the whole body (the request path's largest parse). Whatever this does not take
/// (a member missing, twice or of another type, a `null` livemode, a live event) goes to the
/// `Value` path, which says precisely what is wrong: this only ever accepts what it would.
struct Envelope<'a> {
    id: std::borrow::Cow<'a, str>,
    event_type: std::borrow::Cow<'a, str>,
    created: serde_json::Number,
    livemode: Option<bool>,
    /// A text `object` (`event`); a thin event's is left to the `Value` path.
    object: Option<std::borrow::Cow<'a, str>>,
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Envelope<'de>, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Stripe event")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
                use serde::de::Error;
                let (mut id, mut event_type, mut created, mut data, mut livemode) = (None, None, None, None, None);
                let mut object = None;
                // Each member once (the `Value` path then names the repeat).
                fn once<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), Malformed> {
                    match slot.replace(value) {
                        None => Ok(()),
                        Some(_) => Err(Malformed(name)),
                    }
                }
                // Every key, for the repeat of one this does not read.
                let mut keys = Keys::default();
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    let done = match key.as_ref() {
                        "id" => once(&mut id, map.next_value::<Text<'de>>()?.0, "id"),
                        "type" => once(&mut event_type, map.next_value::<Text<'de>>()?.0, "type"),
                        "created" => once(&mut created, map.next_value::<serde_json::Number>()?, "created"),
                        "data" => once(&mut data, map.next_value::<Data>()?, "data"),
                        // Never `null`, which the checks call "not a boolean".
                        "livemode" => once(&mut livemode, map.next_value::<bool>()?, "livemode"),
                        "object" => once(&mut object, map.next_value::<Text<'de>>()?.0, "object"),
                        _ => {
                            map.next_value::<Checked>()?;
                            Ok(())
                        }
                    };
                    done.map_err(|Malformed(name)| A::Error::duplicate_field(name))?;
                    keys.push(&key);
                }
                keys.unique()?;
                let missing = |name| A::Error::missing_field(name);
                data.ok_or_else(|| missing("data"))?;
                Ok(Envelope {
                    id: id.ok_or_else(|| missing("id"))?,
                    event_type: event_type.ok_or_else(|| missing("type"))?,
                    created: created.ok_or_else(|| missing("created"))?,
                    livemode,
                    object,
                })
            }
        }
        d.deserialize_map(Members)
    }
}

/// `data`, an object whose `object` member (once) is an object.
struct Data;

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Data, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Data;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object with an object member `object`")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Data, A::Error> {
                let mut found = false;
                let mut keys = Keys::default();
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    if key == "object" {
                        if found {
                            return Err(serde::de::Error::duplicate_field("object"));
                        }
                        map.next_value::<AnObject>()?;
                        found = true;
                    } else {
                        map.next_value::<Checked>()?;
                    }
                    keys.push(&key);
                }
                keys.unique()?;
                if found {
                    Ok(Data)
                } else {
                    Err(serde::de::Error::missing_field("object"))
                }
            }
        }
        // `deserialize_map`, not a derived struct, which would take an array too.
        d.deserialize_map(Members)
    }
}

/// Any JSON object, its members read as [`Checked`].
struct AnObject;

impl<'de> Deserialize<'de> for AnObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<AnObject, D::Error> {
        // `deserialize_map` takes an object only, and hands it to the visitor of any value.
        d.deserialize_map(CheckedVisitor).map(|Checked| AnObject)
    }
}

/// The event a valid test-mode body carries, or `None` for the `Value` path to judge.
fn valid_event(body: &[u8]) -> Option<Parsed> {
    // A whole-body UTF-8 check first: skipped strings are not checked one by one, and the
    // `Value` path refuses a body with a bad one anywhere.
    let text = std::str::from_utf8(body).ok()?;
    let e: Envelope = serde_json::from_str(text).ok()?;
    let ok = e.id.starts_with("evt_")
        && e.id.len() > 4
        && !e.event_type.is_empty()
        && (e.created.is_i64() || e.created.is_u64())
        && e.livemode != Some(true)
        && e.object.as_deref() != Some(THIN_OBJECT);
    ok.then(|| Parsed::one(e.id.as_ref(), e.event_type.as_ref()))
}

/// Structural checks of a Stripe event body.
pub fn event_checks(body: &[u8]) -> Vec<Check> {
    match json_body(body) {
        Ok(value) => checks_of(&value),
        Err(check) => vec![check],
    }
}

fn checks_of(v: &Value) -> Vec<Check> {
    let Some(obj) = v.as_object() else {
        return vec![Check::fail("body", "must be a JSON object")];
    };
    if obj.get("object").and_then(Value::as_str) == Some(THIN_OBJECT) {
        return thin::checks(obj);
    }
    vec![
        match obj.get("id").and_then(Value::as_str) {
            Some(id) if id.starts_with("evt_") && id.len() > 4 => Check::pass("id", "event id"),
            Some(_) => Check::fail("id", "must start with `evt_`"),
            None => Check::fail("id", "missing or not a string"),
        },
        match obj.get("type").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => Check::pass("type", "event type"),
            _ => Check::fail("type", "missing, empty or not a string"),
        },
        match obj.get("created") {
            Some(c) if c.is_i64() || c.is_u64() => Check::pass("created", "integer timestamp"),
            _ => Check::fail("created", "missing or not an integer"),
        },
        match obj.get("data").and_then(|d| d.get("object")) {
            Some(o) if o.is_object() => Check::pass("data.object", "object"),
            _ => Check::fail("data.object", "missing or not an object"),
        },
        match obj.get("livemode") {
            Some(Value::Bool(true)) => Check::fail("livemode", "live-mode event; staging takes test-mode events only"),
            Some(Value::Bool(false)) | None => Check::pass("livemode", "test mode"),
            Some(_) => Check::fail("livemode", "not a boolean"),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::kind::said;
    use crate::providers::testing::receive_sample;

    /// A test-mode key gives API access at Stripe's base or the one set (trailing `/` dropped);
    /// a live key is never handed on; no key names the key to set.
    #[test]
    fn api_access_comes_from_a_test_mode_key() {
        let api_of = |body: &str| {
            let section = crate::providers::KindConfig::from_toml("eu", &format!("kind = \"stripe\"\n{body}")).unwrap();
            crate::providers::build("eu", &section).map(|p| p.api_access().cloned()).map_err(|e| said(&e))
        };
        let key = Secret::new("rk_test_abc");
        assert_eq!(
            api_of("api_key = \"rk_test_abc\"\n"),
            Ok(Ok(ApiAccess::Stripe(StripeApi { base: STRIPE_API_BASE.into(), key: key.clone() })))
        );
        assert_eq!(
            api_of("api_key = \"rk_test_abc\"\napi_base = \"http://127.0.0.1:4242/\"\n"),
            Ok(Ok(ApiAccess::Stripe(StripeApi { base: "http://127.0.0.1:4242".into(), key })))
        );
        assert_eq!(api_of(""), Ok(Err(NoApi::NotConfigured("providers.eu.api_key".into()))));
        assert_eq!(api_of("api_key = \"sk_live_abc\"\n"), Ok(Err(NoApi::NotConfigured("providers.eu.api_key".into()))));
        let e = api_of("api_key = \" \"\n").unwrap_err();
        assert!(e.starts_with("providers.eu.api_key is empty"), "{e}");
        let e = api_of("api_base = \"api.stripe.com\"\n").unwrap_err();
        assert!(e.starts_with("providers.eu.api_base"), "{e}");
    }

    /// The fast path takes only what the `Value` path takes, with the same id and type: bodies
    /// built from a valid event by random edits (quotes, escapes, brackets, nulls, control and
    /// non-ASCII bytes, members doubled or dropped) never part the two.
    #[test]
    fn the_fast_path_accepts_only_what_the_value_path_accepts() {
        use proptest::prelude::*;
        let base = r#"{"id":"evt_1","object":"event","type":"charge.succeeded","created":1700000000,"livemode":false,"data":{"object":{"id":"ch_1","amount":2000,"n":[1,{"a":"b"}]},"previous":null},"x":"é\t"}"#.as_bytes();
        let pieces: Vec<&[u8]> = vec![
            b"\"",
            b"\\",
            b"{",
            b"}",
            b"[",
            b"]",
            b",",
            b":",
            b"null",
            b"true",
            b"1.5",
            b"-0",
            b"1e3",
            br"\u0000",
            br"\ud800",
            br"\x",
            b"\x01",
            b"\xff",
            "é".as_bytes(),
            br#""id":"evt_2","#,
            b"\"data\":[],",
            b"\"livemode\":null,",
            br#""object":"v2.core.event","#,
            b"\"object\":{},",
            b"18446744073709551616",
            b" ",
        ];
        let edit = (0..base.len(), 0..4usize, 0..pieces.len(), 0..base.len());
        let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config::with_cases(4000));
        runner
            .run(&prop::collection::vec(edit, 0..4), |edits| {
                let mut body = base.to_vec();
                for (at, kind, piece, to) in edits {
                    let at = at.min(body.len());
                    match kind {
                        0 => body.splice(at..at, pieces[piece].iter().copied()).for_each(drop),
                        1 => body.drain(at..to.clamp(at, body.len())).for_each(drop),
                        2 => body.splice(at..(at + 1).min(body.len()), pieces[piece].iter().copied()).for_each(drop),
                        _ => {
                            let copy = body[at..to.clamp(at, body.len())].to_vec();
                            body.splice(at..at, copy).for_each(drop);
                        }
                    }
                }
                if let Some(fast) = valid_event(&body) {
                    let slow = parse_value(&body);
                    prop_assert_eq!(slow.as_ref().ok(), Some(&fast), "{}", String::from_utf8_lossy(&body));
                }
                Ok(())
            })
            .unwrap();
        // And it does take the ordinary event.
        assert_eq!(valid_event(base), Some(Parsed::one("evt_1", "charge.succeeded")));
        for refused in [
            &br#"[{"id":"evt_1","type":"t","created":1,"data":{"object":{}}}]"#[..],
            br#"{"id":"evt_1","type":"t","created":1,"data":[{}]}"#,
            br#"{"id":"evt_1","type":"t","created":1,"data":{"object":{}},"livemode":null}"#,
            br#"{"id":"evt_1","id":"evt_2","type":"t","created":1,"data":{"object":{}}}"#,
            br#"{"id":"evt_1","type":"t","created":1.5,"data":{"object":{}}}"#,
            br#"{"id":"evt_1","type":"t","created":1,"data":{"object":{"a":1,"a":2}}}"#,
            br#"{"id":"evt_1","type":"t","created":1,"data":{"object":{}},"x":[{"c":1,"c":1}]}"#,
            br#"{"id":"evt_1","type":"t","created":1,"data":{"object":{},"p":1,"p":1}}"#,
            br#"{"id":"evt_1","type":"t","created":1,"data":{"object":{}},"livemode":false,"livemode":false}"#,
            br#"{"id":"evt_1","type":"t","created":1,"data":{"object":{}},"x":1,"x":1}"#,
        ] {
            assert_eq!(valid_event(refused), None, "{}", String::from_utf8_lossy(refused));
        }
        // The value path says why, and a live event said twice is a repeat, not a live event.
        let twice = br#"{"id":"evt_1","type":"t","created":1,"data":{"object":{}},"livemode":true,"livemode":false}"#;
        let r = parse_value(twice).unwrap_err();
        assert_eq!((r.code, r.message.as_str()), (RefusalCode::InvalidPayload, "duplicate key `livemode` at $"));
    }

    /// A thin event is held to its own rules, never to a snapshot's: one that would pass as a
    /// snapshot (an integer `created`, a `data.object`) is refused naming `created`, on both
    /// paths.
    #[test]
    fn a_thin_event_is_judged_as_thin_on_both_paths() {
        let snapshot_shaped = br#"{"id":"evt_1","object":"v2.core.event","type":"a.b","created":1,"livemode":false,"data":{"object":{}}}"#;
        assert_eq!(valid_event(snapshot_shaped), None);
        let r = parse_value(snapshot_shaped).unwrap_err();
        assert_eq!(r.code, RefusalCode::InvalidPayload);
        assert!(r.message.starts_with("created: missing or not a string"), "{}", r.message);
        let thin = br#"{"id":"evt_test_1","object":"v2.core.event","type":"v2.core.account.updated","created":"2024-09-17T06:20:52.246Z","livemode":false,"related_object":null}"#;
        assert_eq!(parse_value(thin), Ok(Parsed::one("evt_test_1", "v2.core.account.updated")));
    }

    #[test]
    fn header_parsing_follows_the_sdks() {
        let h = parse_header("t=12,v1=aa,v0=bb,v1=cc").unwrap();
        assert_eq!(h, SignatureHeader { timestamp: 12, v1: vec!["aa", "cc"] });
        for bad in ["bad_header", "t=,v1=abc", "t,v1=,v0=", "t,,", ",,", "t", "t=1", "v1=ab"] {
            assert!(parse_header(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn either_of_two_secrets_verifies_and_deliveries_use_the_first() {
        let p = Stripe::new("stripe", vec![Secret::new("whsec_new"), Secret::new("whsec_old")], 300);
        let mut headers = HeaderMap::new();
        let body = br#"{"id":"evt_1"}"#;
        for (secret, ok) in [("whsec_new", true), ("whsec_old", true), ("whsec_other", false)] {
            headers.insert(SIGNATURE_HEADER, signature_header(secret, 1000, body).parse().unwrap());
            let req = Inbound { headers: &headers, body, url: "", now_s: 1000 };
            assert_eq!(p.verify(&req).is_ok(), ok, "{secret}");
        }
        let signed = p.sign_delivery("http://app/hook", None, body, 2000);
        assert_eq!(signed.headers, vec![(SIGNATURE_HEADER, signature_header("whsec_new", 2000, body))]);
    }

    #[test]
    fn every_sample_signs_verifies_and_parses() {
        let p = Stripe::new("stripe", vec![Secret::new("whsec_x")], 300);
        for kind in SAMPLE_TYPES {
            assert_eq!(receive_sample(&p, kind, 1000).parsed.event_type, *kind);
        }
        let a = p.sample(None, 1000).unwrap();
        let b = p.sample(None, 1000).unwrap();
        assert_ne!(a.body, b.body, "fresh ids every time");
        assert!(p.sample(Some("nope"), 1000).unwrap_err().to_string().contains("invoice.paid"));
    }

    /// Found by the property tests (tests/it/fuzz.rs): a correctly signed `t` at i64::MIN
    /// overflowed the age in the refusal's message (a panic in a debug build).
    #[test]
    fn a_signed_timestamp_at_the_end_of_i64_is_stale_not_a_panic() {
        let p = Stripe::new("stripe", vec![Secret::new("whsec_x")], 300);
        let body = br#"{"id":"evt_1"}"#;
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, signature_header("whsec_x", i64::MIN, body).parse().unwrap());
        let req = Inbound { headers: &headers, body, url: "", now_s: 1_700_000_000 };
        let r = p.verify(&req).unwrap_err();
        assert_eq!(r.code, RefusalCode::StaleTimestamp);
        assert!(r.message.contains(&format!("is {} s old", i64::MAX)), "{}", r.message);
        headers.insert(SIGNATURE_HEADER, signature_header("whsec_x", i64::MAX, body).parse().unwrap());
        p.verify(&Inbound { headers: &headers, body, url: "", now_s: 1_700_000_000 }).unwrap();
    }

    #[test]
    fn livemode_false_passes_and_true_is_refused() {
        let p = Stripe::new("stripe", vec![Secret::new("whsec_x")], 300);
        let headers = HeaderMap::new();
        let ok = br#"{"id":"evt_1","type":"a.b","created":1,"data":{"object":{}},"livemode":false}"#;
        let req = Inbound { headers: &headers, body: ok, url: "", now_s: 0 };
        assert_eq!(p.parse(&req).unwrap().event_id, "evt_1");
        let live = br#"{"id":"evt_1","type":"a.b","created":1,"data":{"object":{}},"livemode":true}"#;
        let req = Inbound { headers: &headers, body: live, url: "", now_s: 0 };
        assert_eq!(p.parse(&req).unwrap_err().code, RefusalCode::LivemodeEvent);
    }

    #[test]
    fn the_signature_header_is_listed_as_secret() {
        crate::providers::testing::assert_secret_headers_cover_signing(
            &Stripe::new("stripe", vec![Secret::new("whsec_a")], 300),
            &Stripe::new("stripe", vec![Secret::new("whsec_b")], 300),
        );
    }
}
