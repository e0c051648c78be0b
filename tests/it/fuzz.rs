//! Property tests (proptest, on stable Rust): random and mutated input against everything that
//! reads bytes a client or a file controls, through the public API. Mostly no server: the
//! providers, the configuration loader and the record codec are called as `http/`, `main` and
//! `store/` call them, so thousands of cases run in seconds. The edit path's header overrides are
//! thrown at the real server, whose answer (and whether it still answers) is the property.
//!
//! Each property sets its case count, and a failing case is never written to disk (no
//! `proptest-regressions/`): a failure found is fixed, and its input kept as a plain regression
//! test beside the code it concerns.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use base64::Engine;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};
use stagehook::config::layers;
use stagehook::config::Config;
use stagehook::delivery::policy::RetryPolicy;
use stagehook::providers::{self, hmac, twilio, Accepted, Inbound, Parsed, Provider, RefusalCode};
use stagehook::providers::{KindConfig, KindSettings, ProviderKind, SignatureEncoding};
use stagehook::store::record::{self, BodyRef, ErrorEntry, Event, Status};
use warp::http::{HeaderMap, HeaderName, HeaderValue};

/// `cases` random inputs (or `PROPTEST_CASES`, to search longer), and nothing written to disk
/// when one fails.
fn cases(cases: u32) -> ProptestConfig {
    let default = ProptestConfig::default();
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() { default.cases } else { cases };
    ProptestConfig { cases, failure_persistence: None, ..default }
}

const NOW: i64 = 1_700_000_000;
const TOLERANCE: i64 = 300;
const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";
const TARGET: &str = "https://staging.example.test/staging/webhooks/fuzz";

/// Every refusal code's wire name; renaming one breaks every client that reads it.
const STABLE_CODES: [&str; 5] =
    ["invalid_signature", "stale_timestamp", "invalid_payload", "unsupported_media_type", "livemode_event"];

// ---------------------------------------------------------------------------------------------
// The providers under test.

/// One endpoint, and what its module says about it.
struct Subject {
    label: &'static str,
    kind: ProviderKind,
    provider: Arc<dyn Provider>,
    /// The secret (SendGrid: the private key); no refusal may print it.
    secret: String,
    /// Seconds a signed timestamp may lag now, and whether as far ahead of now is refused too;
    /// `None` for schemes without a timestamp.
    window: Option<(i64, bool)>,
    /// The generic kind decodes hex digests in either case, so a case flip of a digit is the same
    /// signature, not a forgery.
    hex_either_case: bool,
}

/// Shown by its label alone in a failing case.
impl std::fmt::Debug for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label)
    }
}

/// An endpoint of `kind` under `secret` (SendGrid: its staging signing key), with further
/// settings.
fn subject_of(
    label: &'static str,
    kind: ProviderKind,
    secret: &str,
    window: Option<(i64, bool)>,
    more: &str,
) -> Subject {
    let key = if kind == ProviderKind::Sendgrid { "signing_key" } else { "secret" };
    let text = format!("kind = \"{}\"\n{key} = {}\n{more}", kind.as_str(), toml::Value::String(secret.into()));
    let c = KindConfig::from_toml(label, &text).unwrap_or_else(|e| panic!("{label}: {e}"));
    let provider = providers::build(label, &c).unwrap_or_else(|e| panic!("{label}: {e}"));
    let hex_either_case = matches!(&c.settings, KindSettings::Hmac(h) if h.encoding == SignatureEncoding::Hex);
    Subject { label, kind, provider, secret: secret.to_string(), window, hex_either_case }
}

fn subjects() -> &'static [Subject] {
    static SUBJECTS: OnceLock<Vec<Subject>> = OnceLock::new();
    SUBJECTS.get_or_init(|| {
        use ProviderKind::*;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                .unwrap();
        let signing_key = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
        let window = Some((TOLERANCE, false));
        let both_ways = Some((TOLERANCE, true));
        let none = "";
        vec![
            subject_of("stripe", Stripe, "whsec_fuzzStripeSecret0123", window, none),
            subject_of("twilio", Twilio, "fuzzTwilioAuthToken0123", None, none),
            subject_of("github", Github, "fuzzGithubSecret0123", None, none),
            subject_of("shopify", Shopify, "fuzzShopifySecret0123", None, none),
            subject_of("slack", Slack, "fuzzSlackSigningSecret0123", both_ways, none),
            subject_of("standard", Standard, "whsec_c3RhZ2Vob29rIGZ1enogc3RhbmRhcmQga2V5IDAxMjM=", both_ways, none),
            subject_of("sendgrid", Sendgrid, &signing_key, None, none),
            // The generic kind as GitHub would use it: a prefix, hex, no timestamp.
            subject_of("hmac-prefixed", Hmac, "fuzzHmacSecretA0123", None, "header = \"X-Hub-Signature-256\"\nprefix = \"sha256=\""),
            // Every placeholder signed, a timestamp window, base64 SHA-512, the type from JSON.
            subject_of(
                "hmac-templated",
                Hmac,
                "fuzzHmacSecretB0123",
                both_ways,
                "header = \"x-signature\"\nalgorithm = \"sha512\"\nencoding = \"base64\"\nprefix = \"v1=\"\n\
                 timestamp_header = \"x-timestamp\"\nid_header = \"x-id\"\nsigned_content = \"{id}.{timestamp}.{body}\"\n\
                 type_pointer = \"/type\"",
            ),
            // SHA-1, the id from a JSON pointer with escapes, the type from a header.
            subject_of(
                "hmac-pointer",
                Hmac,
                "fuzzHmacSecretC0123",
                None,
                "header = \"x-sig\"\nalgorithm = \"sha1\"\nid_pointer = \"/data/a~1b~0c\"\ntype_header = \"x-type\"",
            ),
        ]
    })
}

fn subject() -> impl Strategy<Value = &'static Subject> {
    (0..subjects().len()).prop_map(|i| &subjects()[i])
}

/// The refusal codes each step may give, read from the providers' modules: `precheck` refuses a
/// media type only (the generic kind takes any), `verify` a signature or, for schemes with a
/// timestamp, its age, and `parse` the payload, or for Stripe a live-mode event.
fn allowed(kind: ProviderKind) -> [&'static [RefusalCode]; 3] {
    use RefusalCode::*;
    let precheck: &[RefusalCode] = match kind {
        ProviderKind::Hmac => &[],
        _ => &[UnsupportedMediaType],
    };
    let verify: &[RefusalCode] = match kind {
        ProviderKind::Stripe | ProviderKind::Slack | ProviderKind::Standard | ProviderKind::Hmac => {
            &[InvalidSignature, StaleTimestamp]
        }
        _ => &[InvalidSignature],
    };
    let parse: &[RefusalCode] = match kind {
        ProviderKind::Stripe => &[InvalidPayload, LivemodeEvent],
        _ => &[InvalidPayload],
    };
    [precheck, verify, parse]
}

/// A request as the HTTP layer hands it over: headers in arrival order, body, URL.
#[derive(Debug, Clone)]
struct Request {
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    url: String,
}

impl Request {
    fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_bytes(value).unwrap());
        }
        map
    }
}

/// What each step made of a request.
#[derive(Debug)]
struct Outcome {
    precheck: Result<(), RefusalCode>,
    verify: Result<(), RefusalCode>,
    parse: Result<Parsed, RefusalCode>,
}

impl Outcome {
    fn accepted(&self) -> bool {
        self.precheck.is_ok() && self.verify.is_ok() && self.parse.is_ok()
    }
}

/// Runs every step of a provider on a request, whatever the earlier steps said, and checks each
/// refusal: a code that step may give, a stable name, a message, and no secret in it. `/validate`
/// and ingest must agree, so `parse` passes exactly when every check does.
fn run(s: &Subject, req: &Request, now_s: i64) -> Result<Outcome, TestCaseError> {
    let headers = req.header_map();
    let inbound = Inbound { headers: &headers, body: &req.body, url: &req.url, now_s };
    let [precheck_codes, verify_codes, parse_codes] = allowed(s.kind);
    let refused = |step: &str, allowed: &[RefusalCode], r: &providers::Refusal| -> Result<RefusalCode, TestCaseError> {
        prop_assert!(allowed.contains(&r.code), "{} {step}: code {:?} not in {allowed:?}", s.label, r.code);
        prop_assert!(STABLE_CODES.contains(&r.code.as_str()), "{}", r.code.as_str());
        prop_assert!(!r.message.trim().is_empty(), "{} {step}: empty message", s.label);
        prop_assert!(!r.message.contains(&s.secret), "{} {step}: the secret is in {:?}", s.label, r.message);
        Ok(r.code)
    };
    let precheck = match s.provider.precheck(&headers) {
        Ok(()) => Ok(()),
        Err(r) => Err(refused("precheck", precheck_codes, &r)?),
    };
    let verify = match s.provider.verify(&inbound) {
        Ok(()) => Ok(()),
        Err(r) => Err(refused("verify", verify_codes, &r)?),
    };
    let checks = s.provider.checks(&inbound);
    let parse = match s.provider.parse(&inbound) {
        Ok(p) => Ok(p),
        Err(r) => Err(refused("parse", parse_codes, &r)?),
    };
    prop_assert_eq!(parse.is_ok(), checks.iter().all(|c| c.ok), "{}: parse and checks disagree: {:?}", s.label, checks);
    if let Ok(parsed) = &parse {
        for duplicate in [false, true] {
            let answer = s.provider.answer(&Accepted {
                id: "01J0000000000000000000000",
                event_id: &parsed.event_id,
                duplicate,
                body: &req.body,
            });
            prop_assert!(!answer.content_type.is_empty());
        }
    }
    Ok(Outcome { precheck, verify, parse })
}

/// `sample` of `event_type`, signed by `sign_resend` at `signed_at` as a delivery is: the sample's
/// own headers, the signature headers replacing any of the same name.
fn signed_sample(s: &Subject, event_type: &str, signed_at: i64) -> Request {
    let sample = s.provider.sample(Some(event_type), signed_at.clamp(0, 4_000_000_000)).unwrap();
    let signed = s.provider.sign_resend(TARGET, Some(sample.content_type), &sample.body, &sample.headers, signed_at);
    let mut headers = vec![("content-type".to_string(), sample.content_type.as_bytes().to_vec())];
    for (name, value) in &sample.headers {
        if !signed.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            headers.push((name.to_ascii_lowercase(), value.as_bytes().to_vec()));
        }
    }
    headers.extend(signed.headers.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())));
    Request { headers, body: sample.body, url: signed.url }
}

/// The headers a subject's signer sets (`sign_resend`, for each of its fixtures), its
/// `secret_headers` among them, as its provider names them.
fn signer_headers(s: &Subject) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = s.provider.secret_headers().iter().map(|h| h.to_string()).collect();
    for kind in s.provider.sample_types() {
        let sample = s.provider.sample(Some(kind), NOW).unwrap();
        let signed = s.provider.sign_resend(TARGET, Some(sample.content_type), &sample.body, &sample.headers, NOW);
        names.extend(signed.headers.iter().map(|(n, _)| n.to_ascii_lowercase()));
    }
    names
}

/// The headers `verify` reads, of those a signer sets: every subject's signer's, but GitHub's
/// legacy SHA-1 signature, sent for old apps and never checked.
fn verified_headers(req: &Request) -> Vec<usize> {
    static SIGNED: OnceLock<BTreeSet<String>> = OnceLock::new();
    let signed = SIGNED.get_or_init(|| {
        let mut all: BTreeSet<String> = subjects().iter().flat_map(signer_headers).collect();
        all.remove(providers::github::SHA1_SIGNATURE_HEADER);
        all
    });
    (0..req.headers.len()).filter(|&i| signed.contains(&req.headers[i].0)).collect()
}

/// What Twilio's SDKs sign for a form besides the URL: every name and value, sorted by name and
/// then value, a repeated pair once. Two bodies with the same string carry the same signature by
/// design (`+` and `%20` are both a space), so a change that keeps it is no forgery.
fn twilio_signed_string(body: &[u8]) -> String {
    let mut grouped: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        grouped.entry(k.into_owned()).or_default().insert(v.into_owned());
    }
    grouped.iter().flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}{v}"))).collect()
}

// ---------------------------------------------------------------------------------------------
// Input strategies.

/// A byte a header value may hold (`HeaderValue::from_bytes`): tab, visible ASCII, space,
/// obs-text.
fn header_byte() -> impl Strategy<Value = u8> {
    prop_oneof![Just(b'\t'), 0x20u8..=0x7e, 0x80u8..=0xff]
}

/// Another valid header byte than `old`.
fn other_header_byte(old: u8, new: u8) -> u8 {
    if new != old {
        new
    } else if old == b'0' {
        b'1'
    } else {
        b'0'
    }
}

/// Timestamps at and past every edge: i64's ends, beyond them, signs, padding, exponents.
const EDGE_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "+1700000000",
    "01700000000",
    " 1700000000",
    "1700000000 ",
    "1700000000.5",
    "1e9",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999",
    "-99999999999999999999",
    "18446744073709551616",
    "",
    "NaN",
    "0x10",
];

fn edge_number() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(EDGE_NUMBERS).prop_map(str::to_string),
        any::<i64>().prop_map(|n| n.to_string()),
        (NOW - 1000..NOW + 1000).prop_map(|n| n.to_string()),
    ]
}

fn hex_digest() -> impl Strategy<Value = String> {
    prop_oneof![Just(0usize), 1..70usize, Just(64), Just(40), Just(128)]
        .prop_flat_map(|n| prop::collection::vec(prop::sample::select(&b"0123456789abcdefABCDEF"[..]), n))
        .prop_map(|v| String::from_utf8(v).unwrap())
}

fn base64_digest() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), 0..80).prop_map(|b| base64::engine::general_purpose::STANDARD.encode(b))
}

const MEDIA_TYPES: &[&str] = &[
    JSON,
    FORM,
    "application/json; charset=utf-8",
    "Application/JSON",
    "application/x-www-form-urlencoded;charset=UTF-8",
    "text/plain",
    "application/xml",
    "multipart/form-data; boundary=x",
    ";",
    "",
];

/// Header values shaped like every provider's signature headers, and raw bytes.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(MEDIA_TYPES).prop_map(|s| s.as_bytes().to_vec()),
        edge_number().prop_map(String::into_bytes),
        (edge_number(), hex_digest(), hex_digest()).prop_map(|(t, a, b)| format!("t={t},v1={a},v0={b}").into_bytes()),
        (hex_digest(), base64_digest()).prop_map(|(h, b)| format!("sha256={h}, v0={h} v1,{b}").into_bytes()),
        (base64_digest(), base64_digest()).prop_map(|(a, b)| format!("v1,{a} v1a,{b} v2,{a}").into_bytes()),
        base64_digest().prop_map(String::into_bytes),
        hex_digest().prop_map(String::into_bytes),
        "[ ,=;]{0,4}(t|v0|v1|sha256)?[=,]?[0-9a-zA-Z+/=]{0,12}[ ,=;]{0,4}".prop_map(String::into_bytes),
        prop::collection::vec(header_byte(), 0..80),
    ]
}

/// Every header name a provider here reads, as the providers name them (what their signers set
/// and their fixtures carry), the media type's, and a stranger.
fn header_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut all: BTreeSet<String> = ["content-type", "x-other"].map(String::from).into();
        for s in subjects() {
            all.extend(signer_headers(s));
            for kind in s.provider.sample_types() {
                let sample = s.provider.sample(Some(kind), NOW).unwrap();
                all.extend(sample.headers.into_iter().map(|(n, _)| n.to_ascii_lowercase()));
            }
        }
        all.into_iter().collect()
    })
}

/// Object member names the providers read, and others.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(
            &[
                "id",
                "type",
                "created",
                "data",
                "object",
                "livemode",
                "event",
                "sg_event_id",
                "timestamp",
                "event_id",
                "challenge",
                "team_id",
                "minute_rate_limited",
                "trigger_id",
                "action",
                "payload",
                "command",
                "a/b~c",
                "MessageSid",
                "From",
                "To",
                "MessageStatus",
                "SmsStatus",
            ][..]
        )
        .prop_map(str::to_string),
        "[a-zA-Z_]{1,6}",
        any::<String>(),
    ]
}

/// Strings the providers compare against, and others.
fn field_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(
            &[
                "evt_1",
                "evt_",
                "",
                "a.b",
                "url_verification",
                "event_callback",
                "app_rate_limited",
                "block_actions",
                "/deploy",
                "deploy",
                "delivered",
                "received",
                "SM123",
                "+15005550006",
            ][..]
        )
        .prop_map(str::to_string),
        any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        field_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies: raw bytes, random JSON, JSON shaped like each provider's events with random values,
/// and forms.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let shaped = (field_text(), field_text(), json_value(), json_value(), any::<bool>()).prop_map(
        |(id, kind, created, object, live)| {
            vec![
                json!({"id": id, "type": kind, "created": created, "data": {"object": object}, "livemode": live}),
                json!([{"event": kind, "sg_event_id": id, "timestamp": created}, object]),
                json!({"type": kind, "event_id": id, "event": {"type": kind}, "challenge": id, "team_id": id,
                    "minute_rate_limited": created}),
                json!({"type": kind, "timestamp": id, "data": object}),
                json!({"id": id, "type": kind, "data": {"a/b~c": created}, "action": id}),
            ]
        },
    );
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        (shaped, any::<Index>()).prop_map(|(all, i)| serde_json::to_vec(&all[i.index(all.len())]).unwrap()),
        prop::collection::vec((field_name(), field_text()), 0..8).prop_map(|pairs| {
            form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish().into_bytes()
        }),
        (json_value(), "[a-z/]{0,8}").prop_map(|(v, cmd)| {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs([("payload", v.to_string()), ("command", cmd), ("trigger_id", "1.2.3".into())])
                .finish()
                .into_bytes()
        }),
        "[a-zA-Z0-9%&=+;. ]{0,60}".prop_map(String::into_bytes),
    ]
}

/// URLs as a receiver may see them: well formed with every optional part, and any string.
fn url() -> impl Strategy<Value = String> {
    let formed = (
        prop::sample::select(&["http", "https", "HTTPS", "ftp", ""][..]),
        prop::option::of("[a-z]{1,4}(:[a-z0-9]{0,4})?@"),
        prop::sample::select(&["example.test", "127.0.0.1", "[::1]", "[::1", "h", ""][..]),
        prop::option::of(prop_oneof!["[0-9]{1,5}", Just(String::new()), Just("99999999999999999999".into())]),
        "(/[a-zA-Z0-9%._~-]{0,8}){0,3}",
        prop::option::of("[a-zA-Z0-9=&%+]{0,20}"),
        prop::option::of("[a-z?]{0,5}"),
    )
        .prop_map(|(scheme, user, host, port, path, query, fragment)| {
            let port = port.map_or(String::new(), |p| format!(":{p}"));
            let query = query.map_or(String::new(), |q| format!("?{q}"));
            let fragment = fragment.map_or(String::new(), |f| format!("#{f}"));
            format!("{scheme}://{}{host}{port}{path}{query}{fragment}", user.unwrap_or_default())
        });
    prop_oneof![4 => formed, 1 => any::<String>()]
}

/// A request from nowhere: any headers (repeats included), body and URL.
fn request() -> impl Strategy<Value = Request> {
    (
        prop::option::of(prop::sample::select(MEDIA_TYPES)),
        prop::collection::vec((prop::sample::select(header_names()), header_value()), 0..8),
        body(),
        url(),
    )
        .prop_map(|(media_type, headers, body, url)| {
            let mut all: Vec<(String, Vec<u8>)> =
                media_type.map(|m| ("content-type".to_string(), m.as_bytes().to_vec())).into_iter().collect();
            all.extend(headers.into_iter().map(|(n, v)| (n.to_string(), v)));
            Request { headers: all, body, url }
        })
}

/// A change to a signed request. The first three change one byte and must be refused; the rest
/// reshape it, and must only never panic and refuse with a stable code.
#[derive(Debug, Clone)]
enum Mutation {
    BodyByte {
        at: Index,
        mask: u8,
    },
    HeaderByte {
        which: Index,
        at: Index,
        byte: u8,
    },
    UrlByte {
        at: Index,
        byte: u8,
    },
    TruncateBody {
        at: Index,
    },
    TruncateHeader {
        which: Index,
        at: Index,
    },
    InsertIntoHeader {
        which: Index,
        at: Index,
        bytes: Vec<u8>,
    },
    /// A second value of the header, before the real one or after it.
    DuplicateHeader {
        which: Index,
        value: Vec<u8>,
        before: bool,
    },
    RemoveHeader {
        which: Index,
    },
    /// The timestamp in the header replaced by an edge value (Stripe's `t=`, or the whole value).
    Timestamp {
        which: Index,
        value: String,
    },
    MediaType(&'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let inserted = prop_oneof![
        prop::sample::select(&[",", "=", " ", "\t", ",,", "==", ",v1=", ",t=1", " v1,", "\u{80}", "\u{ff}", "é"][..])
            .prop_map(|s| s.as_bytes().to_vec()),
        Just(vec![0x80]),
        Just(vec![0xff, 0xfe]),
        prop::collection::vec(header_byte(), 1..6),
    ];
    let i = any::<Index>;
    prop_oneof![
        3 => (i(), 1u8..=255).prop_map(|(at, mask)| Mutation::BodyByte { at, mask }),
        3 => (i(), i(), header_byte()).prop_map(|(which, at, byte)| Mutation::HeaderByte { which, at, byte }),
        1 => (i(), 0x21u8..=0x7e).prop_map(|(at, byte)| Mutation::UrlByte { at, byte }),
        1 => i().prop_map(|at| Mutation::TruncateBody { at }),
        1 => (i(), i()).prop_map(|(which, at)| Mutation::TruncateHeader { which, at }),
        2 => (i(), i(), inserted).prop_map(|(which, at, bytes)| Mutation::InsertIntoHeader { which, at, bytes }),
        1 => (i(), header_value(), any::<bool>())
            .prop_map(|(which, value, before)| Mutation::DuplicateHeader { which, value, before }),
        1 => i().prop_map(|which| Mutation::RemoveHeader { which }),
        2 => (i(), edge_number()).prop_map(|(which, value)| Mutation::Timestamp { which, value }),
        1 => prop::sample::select(MEDIA_TYPES).prop_map(Mutation::MediaType),
    ]
}

/// Applies `m` to `req`; says whether the change is one byte of signed input.
fn mutate(req: &mut Request, m: &Mutation) -> bool {
    let verified = verified_headers(req);
    match m {
        Mutation::BodyByte { at, mask } => {
            if req.body.is_empty() {
                return false;
            }
            let i = at.index(req.body.len());
            req.body[i] ^= mask;
            true
        }
        Mutation::HeaderByte { which, at, byte } => {
            let h = &mut req.headers[verified[which.index(verified.len())]].1;
            let i = at.index(h.len());
            h[i] = other_header_byte(h[i], *byte);
            true
        }
        Mutation::UrlByte { at, byte } => {
            let mut bytes = req.url.clone().into_bytes();
            let i = at.index(bytes.len());
            bytes[i] = if bytes[i] == *byte {
                if *byte == b'a' {
                    b'b'
                } else {
                    b'a'
                }
            } else {
                *byte
            };
            req.url = String::from_utf8(bytes).expect("the URLs here are ASCII");
            true
        }
        Mutation::TruncateBody { at } => {
            let len = req.body.len();
            req.body.truncate(at.index(len.max(1)));
            false
        }
        Mutation::TruncateHeader { which, at } => {
            let h = &mut req.headers[verified[which.index(verified.len())]].1;
            let len = h.len();
            h.truncate(at.index(len));
            false
        }
        Mutation::InsertIntoHeader { which, at, bytes } => {
            let h = &mut req.headers[verified[which.index(verified.len())]].1;
            let i = at.index(h.len() + 1);
            h.splice(i..i, bytes.iter().copied());
            false
        }
        Mutation::DuplicateHeader { which, value, before } => {
            let i = verified[which.index(verified.len())];
            let copy = (req.headers[i].0.clone(), value.clone());
            req.headers.insert(if *before { i } else { i + 1 }, copy);
            false
        }
        Mutation::RemoveHeader { which } => {
            req.headers.remove(verified[which.index(verified.len())]);
            false
        }
        Mutation::Timestamp { which, value } => {
            let h = &mut req.headers[verified[which.index(verified.len())]].1;
            let text = String::from_utf8_lossy(h).into_owned();
            *h = match text.strip_prefix("t=").and_then(|rest| rest.split_once(',')) {
                Some((_, rest)) => format!("t={value},{rest}").into_bytes(),
                None => value.clone().into_bytes(),
            };
            false
        }
        Mutation::MediaType(m) => {
            req.headers.retain(|(n, _)| n != "content-type");
            req.headers.insert(0, ("content-type".into(), m.as_bytes().to_vec()));
            false
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Providers.

proptest! {
    #![proptest_config(cases(1024))]

    /// Whatever comes in, every step of every provider answers, and every refusal carries a code
    /// that step may give.
    #[test]
    fn requests_from_nowhere_never_panic_and_refuse_with_a_stable_code(
        s in subject(),
        req in request(),
        now_s in prop_oneof![Just(NOW), 0..4_102_444_800i64],
    ) {
        let outcome = run(s, &req, now_s)?;
        // Not one of these requests was signed with the secret.
        prop_assert!(outcome.verify.is_err(), "{}: accepted {req:?}", s.label);
    }
}

proptest! {
    #![proptest_config(cases(1024))]

    /// A signed sample passes; one byte changed in its body, a header `verify` reads, or (for
    /// Twilio) its URL is refused; any other change is answered with a stable code.
    #[test]
    fn signed_requests_pass_and_one_changed_byte_is_refused(
        s in subject(),
        type_at in any::<Index>(),
        skew in -TOLERANCE..=TOLERANCE,
        svix_names in any::<bool>(),
        m in mutation(),
    ) {
        let types = s.provider.sample_types();
        let event_type = types[type_at.index(types.len())];
        let mut original = signed_sample(s, event_type, NOW + skew);
        // A Standard Webhooks delivery carries its signature twice, under `webhook-*` and under
        // `svix-*`; when a change leaves one set unreadable (a byte that is not text), the other,
        // intact, is read, which is no forgery. A sender uses one set: so does this request.
        if s.kind == ProviderKind::Standard {
            let drop = if svix_names { "webhook-" } else { "svix-" };
            original.headers.retain(|(n, _)| !n.starts_with(drop));
        }
        let outcome = run(s, &original, NOW)?;
        prop_assert!(outcome.accepted(), "{} {event_type}: {outcome:?}", s.label);

        let mut req = original.clone();
        let one_byte = mutate(&mut req, &m);
        let outcome = run(s, &req, NOW)?;
        if !one_byte {
            return Ok(());
        }
        let twilio = s.kind == ProviderKind::Twilio;
        let refused = outcome.precheck.is_err() || outcome.verify.is_err();
        match &m {
            Mutation::BodyByte { .. } if twilio => prop_assert!(
                refused || twilio_signed_string(&req.body) == twilio_signed_string(&original.body),
                "twilio accepted a body that signs differently: {:?}", String::from_utf8_lossy(&req.body)
            ),
            Mutation::UrlByte { .. } if !twilio => {
                prop_assert!(outcome.accepted(), "{}: the URL is not signed here: {outcome:?}", s.label)
            }
            Mutation::HeaderByte { .. } if s.hex_either_case && !refused => {
                let changed = req.headers.iter().zip(&original.headers).find(|(a, b)| a != b).unwrap();
                prop_assert!(
                    changed.0 .1.eq_ignore_ascii_case(&changed.1 .1),
                    "{}: accepted {:?}", s.label, String::from_utf8_lossy(&changed.0 .1)
                );
            }
            _ => prop_assert!(refused, "{}: accepted after {m:?}: {req:?}", s.label),
        }
    }

}

proptest! {
    #![proptest_config(cases(256))]

    /// A request signed at any instant, however far from now, is accepted within the window and
    /// refused as stale outside it; never a panic, whatever the arithmetic at i64's ends.
    #[test]
    fn signed_at_any_instant_the_window_decides(
        s in subject(),
        signed_at in prop_oneof![
            Just(i64::MIN), Just(i64::MIN + 1), Just(i64::MAX), Just(0), Just(-1),
            NOW - 2 * TOLERANCE..=NOW + 2 * TOLERANCE,
            any::<i64>(),
        ],
    ) {
        let event_type = s.provider.sample_types()[0];
        let req = signed_sample(s, event_type, signed_at);
        let outcome = run(s, &req, NOW)?;
        let age = i128::from(NOW) - i128::from(signed_at);
        let fresh = match s.window {
            None => true,
            Some((tolerance, both_ways)) => {
                let tolerance = i128::from(tolerance);
                age <= tolerance && (!both_ways || -age <= tolerance)
            }
        };
        if fresh {
            prop_assert!(outcome.verify.is_ok(), "{} at {signed_at}: {outcome:?}", s.label);
        } else {
            prop_assert_eq!(outcome.verify, Err(RefusalCode::StaleTimestamp), "{} at {}", s.label, signed_at);
        }
    }

    /// Any body, signed as its provider would, verifies: the schemes sign bytes (Twilio: the
    /// form's parameters, or the JSON body's hash in the URL), whatever they hold.
    #[test]
    fn any_body_signed_verifies(s in subject(), body in body(), json in any::<bool>()) {
        let media_type = match s.kind {
            ProviderKind::Stripe | ProviderKind::Standard | ProviderKind::Sendgrid | ProviderKind::Shopify => JSON,
            _ if json => JSON,
            _ => FORM,
        };
        let signed = s.provider.sign_delivery(TARGET, Some(media_type), &body, NOW);
        let mut headers = vec![("content-type".to_string(), media_type.as_bytes().to_vec())];
        // The generic kind's `{id}` is sent in its own header.
        headers.extend(signed.headers.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())));
        let req = Request { headers, body, url: signed.url };
        let outcome = run(s, &req, NOW)?;
        prop_assert!(outcome.precheck.is_ok() && outcome.verify.is_ok(), "{}: {outcome:?}", s.label);
    }

    /// A provider's own sample with a random extra member (or form parameter) is still its event:
    /// payload rules read the members they need and ignore the rest.
    #[test]
    fn samples_with_extra_members_are_accepted(
        s in subject(),
        name in "x_[a-zA-Z0-9_]{0,12}",
        value in json_value(),
    ) {
        let event_type = s.provider.sample_types()[0];
        let sample = s.provider.sample(Some(event_type), NOW).unwrap();
        let body = if sample.content_type == FORM {
            let mut pairs: Vec<(String, String)> = form_urlencoded::parse(&sample.body).into_owned().collect();
            pairs.push((name, value.to_string()));
            form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish().into_bytes()
        } else {
            let mut doc: Value = serde_json::from_slice(&sample.body).unwrap();
            match &mut doc {
                Value::Object(map) => { map.insert(name, value); }
                Value::Array(events) => for e in events {
                    e.as_object_mut().unwrap().insert(name.clone(), value.clone());
                },
                other => prop_assert!(false, "{}: sample is {other}", s.label),
            }
            serde_json::to_vec(&doc).unwrap()
        };
        let sample = providers::Sample { body, ..sample };
        let signed = s.provider.sign_resend(TARGET, Some(sample.content_type), &sample.body, &sample.headers, NOW);
        let mut headers = vec![("content-type".to_string(), sample.content_type.as_bytes().to_vec())];
        headers.extend(sample.headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec())));
        headers.retain(|(n, _)| !signed.headers.iter().any(|(s, _)| s == n));
        headers.extend(signed.headers.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())));
        let outcome = run(s, &Request { headers, body: sample.body, url: signed.url }, NOW)?;
        prop_assert!(outcome.accepted(), "{}: {outcome:?}", s.label);
    }
}

// ---------------------------------------------------------------------------------------------
// Twilio: the URL it signs, and its forms.

fn twilio_subject() -> &'static Subject {
    subjects().iter().find(|s| s.kind == ProviderKind::Twilio).unwrap()
}

/// Form parameters: any, and often the ones a message needs, present, empty or absent, in any
/// order.
fn twilio_params() -> impl Strategy<Value = Vec<(String, String)>> {
    let named = |name: &'static str| prop::option::of(field_text().prop_map(move |v| (name.to_string(), v)));
    (
        prop::collection::vec((field_name(), field_text()), 0..8),
        [named("MessageSid"), named("From"), named("To"), named("MessageStatus"), named("SmsStatus")],
    )
        .prop_flat_map(|(mut params, named)| {
            params.extend(named.into_iter().flatten());
            Just(params).prop_shuffle()
        })
}

proptest! {
    #![proptest_config(cases(512))]

    /// `url_variants` takes any string; a well-formed URL comes back without its port, and with
    /// its port or, when it had none, the scheme's default, every other part unchanged.
    #[test]
    fn twilio_url_variants_change_the_port_alone(
        scheme in prop::sample::select(&["http", "https", "HTTPS", "wss"][..]),
        user in prop::option::of("[a-z]{1,4}(:[a-z0-9]{0,4})?@"),
        host in prop::sample::select(&["example.test", "127.0.0.1", "[::1]", "[2001:db8::1]", "h"][..]),
        port in prop::option::of("[0-9]{1,5}"),
        tail in "(/[a-zA-Z0-9%._~:@-]{0,8}){0,3}(\\?[a-zA-Z0-9=&%+:/@]{0,20})?(#[a-z?:/]{0,5})?",
        any_text in any::<String>(),
    ) {
        let _ = twilio::url_variants(&any_text);
        let user = user.unwrap_or_default();
        let with_port = |p: &str| format!("{scheme}://{user}{host}:{p}{tail}");
        let bare = format!("{scheme}://{user}{host}{tail}");
        let default = if scheme.eq_ignore_ascii_case("https") { "443" } else { "80" };
        let url = port.as_deref().map_or_else(|| bare.clone(), with_port);
        let (without, with) = twilio::url_variants(&url);
        prop_assert_eq!(without, bare);
        prop_assert_eq!(with, with_port(port.as_deref().unwrap_or(default)));
    }

    /// Twilio may sign the URL with or without the scheme's default port, however it was called:
    /// both verify, for a form of any parameters and for JSON signed through `bodySHA256`. A form
    /// parses when `MessageSid`, `From` and `To` are there and not empty.
    #[test]
    fn twilio_verifies_either_url_and_any_parameters(
        port in prop::option::of(prop_oneof![Just("443".to_string()), Just("80".to_string()), "[0-9]{1,5}"]),
        https in any::<bool>(),
        query in prop::option::of("[a-zA-Z0-9=&%+]{0,20}"),
        params in twilio_params(),
        signed_with_port in any::<bool>(),
    ) {
        let s = twilio_subject();
        let scheme = if https { "https" } else { "http" };
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let query = query.map(|q| format!("?{q}")).unwrap_or_default();
        let called = format!("{scheme}://staging.example.test{port}/staging/webhooks/sms{query}");
        let pick = |url: &str| {
            let (without, with) = twilio::url_variants(url);
            if signed_with_port { with } else { without }
        };

        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish().into_bytes();
        let signature = twilio::sign(&s.secret, &pick(&called), &params);
        let headers = vec![
            ("content-type".to_string(), FORM.as_bytes().to_vec()),
            (twilio::SIGNATURE_HEADER.to_string(), signature.into_bytes()),
        ];
        let outcome = run(s, &Request { headers, body, url: called.clone() }, NOW)?;
        prop_assert!(outcome.verify.is_ok(), "{outcome:?}");
        let first = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let complete = ["MessageSid", "From", "To"].iter().all(|n| first(n).is_some_and(|v| !v.is_empty()));
        prop_assert_eq!(outcome.parse.is_ok(), complete, "{:?}", outcome.parse);
        if let Ok(parsed) = &outcome.parse {
            prop_assert!(parsed.event_id.starts_with(first("MessageSid").unwrap_or_default()));
            prop_assert!(parsed.event_type.starts_with("message."));
        }

        let object: serde_json::Map<String, Value> =
            params.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        let body = serde_json::to_vec(&object).unwrap();
        let sep = if called.contains('?') { '&' } else { '?' };
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
        let called = format!("{called}{sep}bodySHA256={hash}");
        let signature = twilio::sign(&s.secret, &pick(&called), &[]);
        let headers = vec![
            ("content-type".to_string(), JSON.as_bytes().to_vec()),
            (twilio::SIGNATURE_HEADER.to_string(), signature.into_bytes()),
        ];
        let outcome = run(s, &Request { headers, body, url: called }, NOW)?;
        prop_assert!(outcome.verify.is_ok(), "{outcome:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The generic kind's settings, through the configuration check.

/// Pieces of `signed_content`: the placeholders, near misses, and text.
const TEMPLATE_PIECES: &[&str] = &[
    "{body}",
    "{timestamp}",
    "{id}",
    "{",
    "}",
    "{x}",
    "{}",
    "{body",
    "body}",
    "{{body}}",
    ".",
    ":",
    "v0:",
    "é",
    "{ts}",
    "\0",
];
/// Pieces of JSON pointers: separators, escapes and near misses, names.
const POINTER_PIECES: &[&str] = &["/", "/", "id", "type", "data", "~0", "~1", "~", "~2", "0", "-", "é", " "];
/// Header names for the signature, timestamp, id and type. Not `content-type`, which the sample
/// sets itself: an id read from it would be the media type.
const HEADER_CHOICES: &[&str] = &[
    "x-signature",
    "X-Signature",
    "x-timestamp",
    "x-id",
    "x-type",
    "x-hub-signature-256",
    "",
    "bad header",
    "x\u{e9}",
    "x:y",
];

fn pieces(from: &'static [&'static str], n: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(from), n).prop_map(|v| v.concat())
}

fn text_choice(from: &'static [&'static str]) -> impl Strategy<Value = toml::Value> {
    prop::sample::select(from).prop_map(|s| toml::Value::String(s.to_string()))
}

/// `[providers.acme]` of kind hmac, every key present or not, with values good and bad.
fn hmac_settings() -> impl Strategy<Value = toml::Table> {
    let secret = || prop::sample::select(&["", "k", "fuzz secret with spaces", "fuzzHmacSecretD0123"][..]);
    let keys = (
        prop::option::of(text_choice(HEADER_CHOICES)),
        prop::option::of(text_choice(&["", "sha256=", "v1,", "v0=", "=", ",", " ", "a b", "é", "\t", "v1=,"])),
        prop::option::of(text_choice(HEADER_CHOICES)),
        prop::option::of(text_choice(HEADER_CHOICES)),
        prop::option::of(text_choice(HEADER_CHOICES)),
        prop::option::of(pieces(TEMPLATE_PIECES, 0..5).prop_map(toml::Value::String)),
        prop::option::of(pieces(POINTER_PIECES, 0..5).prop_map(toml::Value::String)),
        prop::option::of(pieces(POINTER_PIECES, 0..5).prop_map(toml::Value::String)),
    );
    let more = (
        prop::option::of(prop_oneof![
            prop::sample::select(&[-1i64, 0, 1, 300, 31_622_400, 31_622_401, i64::MAX][..]),
            any::<i64>(),
        ]),
        prop::option::of(text_choice(&["sha1", "sha256", "sha512", "md5"])),
        prop::option::of(text_choice(&["hex", "base64", "base32"])),
        prop::option::of(secret()),
        prop::collection::vec(secret(), 0..3),
    );
    (keys, more).prop_map(|((header, prefix, ts, id, kind_header, content, id_ptr, type_ptr), more)| {
        let (tolerance, algorithm, encoding, secret, secrets) = more;
        let mut t = toml::Table::new();
        t.insert("kind".into(), "hmac".into());
        let mut put = |k: &str, v: Option<toml::Value>| {
            if let Some(v) = v {
                t.insert(k.into(), v);
            }
        };
        put("header", header);
        put("prefix", prefix);
        put("timestamp_header", ts);
        put("id_header", id);
        put("type_header", kind_header);
        put("signed_content", content);
        put("id_pointer", id_ptr);
        put("type_pointer", type_ptr);
        put("tolerance_seconds", tolerance.map(toml::Value::Integer));
        put("algorithm", algorithm);
        put("encoding", encoding);
        put("secret", secret.map(|s| s.into()));
        if !secrets.is_empty() {
            t.insert("secrets".into(), toml::Value::Array(secrets.iter().map(|s| (*s).into()).collect()));
        }
        t
    })
}

/// Loads a configuration file's text as `stagehook` does: the file, then the environment (none
/// here), then the check.
fn load_text(text: &[u8]) -> Result<layers::Layered, stagehook::config::ConfigError> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    layers::load(Some(file.path()), &BTreeMap::new(), &[])
}

proptest! {
    #![proptest_config(cases(512))]

    /// Any settings of the generic kind are refused with the key at fault, or make a provider
    /// whose own signed sample verifies and parses, with its id and type where the settings
    /// say: `stagehook send` must never post an event its own endpoint refuses.
    #[test]
    fn hmac_settings_are_refused_or_their_samples_pass(settings in hmac_settings()) {
        let mut providers = toml::Table::new();
        providers.insert("acme".into(), toml::Value::Table(settings.clone()));
        let mut root = toml::Table::new();
        root.insert("providers".into(), toml::Value::Table(providers));
        let text = toml::to_string(&root).unwrap();
        let loaded = match load_text(text.as_bytes()) {
            Ok(l) => l,
            Err(e) => {
                prop_assert!(e.key.starts_with("providers"), "{e}");
                return Ok(());
            }
        };
        let endpoint = loaded.config.build().unwrap().into_iter().find(|i| i.path == "acme").unwrap();
        if !endpoint.configured {
            return Ok(());
        }
        let secret = loaded.config.providers["acme"].settings.all_secrets()[0].expose().to_string();
        let s = Subject {
            label: "hmac-settings",
            kind: ProviderKind::Hmac,
            provider: endpoint.provider,
            secret,
            window: None,
            hex_either_case: true,
        };
        let req = signed_sample(&s, s.provider.sample_types()[0], NOW);
        let outcome = run(&s, &req, NOW)?;
        let parsed = match outcome.parse {
            Ok(p) if outcome.verify.is_ok() => p,
            _ => return Err(TestCaseError::fail(format!("{text}\nsample refused: {outcome:?}\n{req:?}"))),
        };
        let has = |k: &str| settings.contains_key(k);
        if has("type_header") || has("type_pointer") {
            prop_assert_eq!(&parsed.event_type, hmac::SAMPLE_EVENT_TYPE, "{}", text);
        } else {
            prop_assert_eq!(&parsed.event_type, hmac::DEFAULT_TYPE);
        }
        if has("id_header") || has("id_pointer") {
            prop_assert!(parsed.event_id.starts_with("evt_"), "{text}\nid {}", parsed.event_id);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Store records.

fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z0-9_.]{0,12}"]
}

fn status() -> impl Strategy<Value = Status> {
    prop::sample::select(&Status::ALL[..])
}

fn body_ref() -> impl Strategy<Value = BodyRef> {
    let headers = prop_oneof![Just(0u32), any::<u32>()];
    (any::<u32>(), any::<u64>(), any::<u32>(), any::<u32>(), headers)
        .prop_map(|(segment, offset, len, crc32, headers)| BodyRef { segment, offset, len, crc32, headers })
}

/// An event record: the event, and where its body is (`None`: inline, from before the body log).
fn event_record() -> impl Strategy<Value = (Event, Option<BodyRef>)> {
    let ids = (text(), text(), text(), any::<i64>(), text());
    let rest = (
        prop::collection::vec((text(), text()), 0..4),
        any::<u64>(),
        any::<bool>(),
        status(),
        any::<u64>(),
        any::<u32>(),
        prop::option::of(text()),
        prop::collection::vec((any::<i64>(), text()), 0..3),
    );
    (ids, rest, prop::option::of(body_ref()), prop::option::of(any::<u128>())).prop_map(
        |((provider, event_id, event_type, received_at_ms, source_ip), rest, body, parent)| {
            let (headers, body_len, signature_verified, status, processing_us, attempts, last_error, errors) = rest;
            let event = Event {
                provider,
                event_id,
                event_type,
                received_at_ms,
                source_ip,
                headers,
                body_len,
                signature_verified,
                status,
                processing_us,
                attempts,
                last_error,
                errors: errors.into_iter().map(|(at_ms, message)| ErrorEntry { at_ms, message }).collect(),
                parent: parent.map(ulid::Ulid::from),
                source: Default::default(),
            };
            (event, body)
        },
    )
}

/// Damage to stored bytes: a changed byte, a cut, bytes added.
fn damage(bytes: &mut Vec<u8>, at: Index, mask: u8, cut: bool, extra: &[u8]) {
    if !bytes.is_empty() {
        let i = at.index(bytes.len());
        bytes[i] ^= mask;
        if cut {
            bytes.truncate(i);
        }
    }
    bytes.extend_from_slice(extra);
}

/// Decodes `bytes` with `decode`: damage is an error, never a panic, and whatever decodes
/// encodes back (with `encode`) to bytes that decode to the same value.
fn decodes_or_errs<T, E>(
    bytes: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, E>,
    encode: impl Fn(T) -> Vec<u8>,
) -> Result<(), TestCaseError>
where
    T: Clone + PartialEq + std::fmt::Debug,
    E: std::fmt::Display,
{
    if let Ok(value) = decode(bytes) {
        let again = decode(&encode(value.clone())).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again, value);
    }
    Ok(())
}

fn event_bytes(bytes: &[u8]) -> Result<(), TestCaseError> {
    decodes_or_errs(bytes, record::decode_event, |(e, body)| record::encode_event(e, body))
}

/// A whole event record (with a body reference) whose body reference is `bytes`: the body
/// reference is only ever read inside an event record.
fn body_ref_bytes(bytes: &[u8]) -> Vec<u8> {
    let event = Event {
        provider: "stripe".into(),
        event_id: "evt_1".into(),
        event_type: "charge.succeeded".into(),
        received_at_ms: NOW * 1000,
        source_ip: "192.0.2.1".into(),
        headers: vec![],
        body_len: 2,
        signature_verified: true,
        status: Status::Received,
        processing_us: 1,
        attempts: 0,
        last_error: None,
        errors: vec![],
        parent: None,
        source: Default::default(),
    };
    let whole =
        record::encode_event(event.clone(), Some(BodyRef { segment: 0, offset: 0, len: 0, crc32: 0, headers: 0 }));
    // The body reference is the last thing in the record: five bytes when all its numbers are 0.
    let mut out = whole[..whole.len() - 5].to_vec();
    out.extend_from_slice(bytes);
    out
}

/// What the property below feeds as a body reference lands where the record keeps it.
#[test]
fn body_ref_bytes_put_the_bytes_in_the_body_reference() {
    let (_, body) = record::decode_event(&body_ref_bytes(&[0, 1, 2, 3, 4])).unwrap();
    assert_eq!(body, Some(BodyRef { segment: 1, offset: 2, len: 3, crc32: 4, headers: 0 }));
}

proptest! {
    #![proptest_config(cases(1024))]

    /// Any bytes, decoded as any record, are a record or an error.
    #[test]
    fn any_bytes_decode_as_a_record_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        event_bytes(&bytes)?;
        decodes_or_errs(&bytes, record::decode_rejection, record::encode_rejection)?;
        decodes_or_errs(&bytes, record::decode_job, record::encode_job)?;
        decodes_or_errs(&bytes, record::decode_attempt, record::encode_attempt)?;
        event_bytes(&body_ref_bytes(&bytes))?;
        decodes_or_errs(&bytes, |b| record::decode::<Status>(b), |s| record::encode(&s))?;
    }

    /// Every event record round-trips, and its damaged bytes decode or fail, never panic.
    #[test]
    fn event_records_round_trip_and_damage_is_an_error(
        r in event_record(),
        at in any::<Index>(),
        mask in 1u8..=255,
        cut in any::<bool>(),
        extra in prop::collection::vec(any::<u8>(), 0..4),
    ) {
        let mut bytes = record::encode_event(r.0.clone(), r.1);
        prop_assert_eq!(record::decode_event(&bytes).unwrap(), r);
        damage(&mut bytes, at, mask, cut, &extra);
        event_bytes(&bytes)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration files.

const EXAMPLE: &str = include_str!("../../staging.toml.example");

/// Values of every type, good and bad for any key: edge numbers, durations past any clock,
/// strings, arrays, floats that are not numbers.
const TOML_VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999",
    "4294967296",
    "18446744073709551615",
    "0.0",
    "-0.0",
    "1.5",
    "1e308",
    "nan",
    "inf",
    "-inf",
    "true",
    "\"\"",
    "\"0s\"",
    "\"1ms\"",
    "\"100y\"",
    "\"1000y\"",
    "\"584942417355y\"",
    "\"18446744073709551615s\"",
    "\"99999999999999999999s\"",
    "\"-1s\"",
    "\"1.5s\"",
    "\"soon\"",
    "\"http://127.0.0.1:3000/x\"",
    "\"127.0.0.1:0\"",
    "\"[::1]:99999\"",
    "\"10.0.0.0/8\"",
    "\"::/200\"",
    "\"whsec_x\"",
    "\"hmac\"",
    "\"exponential\"",
    "[]",
    "[\"\"]",
    "[\"http://a\", 1]",
    "{}",
    "{ a = 1 }",
];

/// Edits to a configuration file, one line at a time.
#[derive(Debug, Clone)]
enum Edit {
    /// A `key = value` line gets another value.
    Value {
        line: Index,
        value: &'static str,
    },
    /// A commented-out example line is switched on.
    Uncomment {
        line: Index,
    },
    Duplicate {
        line: Index,
    },
    Remove {
        line: Index,
    },
    /// A byte anywhere changes (possibly into something that is not UTF-8).
    Byte {
        at: Index,
        mask: u8,
    },
    Truncate {
        at: Index,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<Index>(), prop::sample::select(TOML_VALUES)).prop_map(|(line, value)| Edit::Value { line, value }),
        3 => any::<Index>().prop_map(|line| Edit::Uncomment { line }),
        1 => any::<Index>().prop_map(|line| Edit::Duplicate { line }),
        1 => any::<Index>().prop_map(|line| Edit::Remove { line }),
        1 => (any::<Index>(), 1u8..=255).prop_map(|(at, mask)| Edit::Byte { at, mask }),
        1 => any::<Index>().prop_map(|at| Edit::Truncate { at }),
    ]
}

fn apply(text: Vec<u8>, e: &Edit) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = text.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    let pick = |i: &Index, lines: &[Vec<u8>]| i.index(lines.len());
    match e {
        Edit::Value { line, value } => {
            let assignments: Vec<usize> =
                (0..lines.len()).filter(|&i| !lines[i].starts_with(b"#") && lines[i].contains(&b'=')).collect();
            if let Some(&i) = assignments.get(line.index(assignments.len().max(1))) {
                let eq = lines[i].iter().position(|b| *b == b'=').unwrap();
                lines[i] = [&lines[i][..=eq], b" ", value.as_bytes()].concat();
            }
        }
        Edit::Uncomment { line } => {
            let commented: Vec<usize> = (0..lines.len())
                .filter(|&i| lines[i].starts_with(b"# ") && (lines[i].contains(&b'=') || lines[i].starts_with(b"# [")))
                .collect();
            if let Some(&i) = commented.get(line.index(commented.len().max(1))) {
                lines[i].drain(..2);
            }
        }
        Edit::Duplicate { line } => {
            let i = pick(line, &lines);
            lines.insert(i, lines[i].clone());
        }
        Edit::Remove { line } => {
            let i = pick(line, &lines);
            lines.remove(i);
        }
        Edit::Byte { at, mask } => {
            let mut bytes = lines.join(&b'\n');
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
            return bytes;
        }
        Edit::Truncate { at } => {
            let mut bytes = lines.join(&b'\n');
            bytes.truncate(at.index(bytes.len()));
            return bytes;
        }
    }
    lines.join(&b'\n')
}

/// Whether an accepted duration can be used: the engine, the breaker and retention compute in
/// i64 milliseconds from a clock reading, and in f64 seconds back to a `Duration`.
fn usable(d: std::time::Duration) -> bool {
    const YEAR_3000_MS: i64 = 32_503_680_000_000;
    let ms_fit = i64::try_from(d.as_millis()).is_ok_and(|ms| ms.checked_add(YEAR_3000_MS).is_some());
    ms_fit && std::time::Duration::try_from_secs_f64(d.as_secs_f64()).is_ok()
}

/// Everything a loaded configuration is later computed with must work: every duration, and
/// every retry schedule to its last attempt, jitter both ways.
fn usable_config(c: &Config) -> Result<(), TestCaseError> {
    let mut durations = vec![
        c.retry.base_delay.0,
        c.retry.max_delay.0,
        c.circuit_breaker.recovery_timeout.0,
        c.retention.max_age.0,
        c.retention.interval.0,
    ];
    let mut names: Vec<String> = vec!["stripe".into(), "twilio".into()];
    names.extend(c.providers.keys().cloned());
    for name in &names {
        let t = c.targets(name).unwrap();
        durations.extend([t.timeout, t.retry.base_delay.0, t.retry.max_delay.0]);
        let policy = RetryPolicy(t.retry.clone());
        for attempt in 1..=t.retry.max_attempts.min(80) {
            for unit in [-1.0, 0.0, 1.0] {
                let delay = policy.next_delay(attempt, None, unit);
                prop_assert!(delay.is_none_or(|d| d <= t.retry.max_delay.0));
            }
        }
    }
    for d in durations {
        prop_assert!(usable(d), "{d:?} is accepted but overflows its users");
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(512))]

    /// The example file, edited at random (values of every type, commented examples switched on,
    /// lines doubled or dropped, bytes changed, the end cut), loads or is refused with a message;
    /// what loads is shown and used without a panic.
    #[test]
    fn edited_config_files_load_or_are_refused(edits in prop::collection::vec(edit(), 1..5)) {
        let text = edits.iter().fold(EXAMPLE.as_bytes().to_vec(), apply);
        match load_text(&text) {
            Ok(loaded) => {
                let _ = loaded.show();
                usable_config(&loaded.config)?;
                let _ = loaded.config.build().unwrap();
            }
            Err(e) => prop_assert!(!e.message.trim().is_empty(), "{e:?}"),
        }
    }

    /// Any text at all is refused with a message, or is a configuration.
    #[test]
    fn any_text_as_a_config_file_loads_or_is_refused(
        text in prop_oneof!["[\\[\\]a-z_.=\" 0-9\n#{},-]{0,200}", any::<String>()],
    ) {
        match load_text(text.as_bytes()) {
            Ok(loaded) => usable_config(&loaded.config)?,
            Err(e) => prop_assert!(!e.message.trim().is_empty(), "{e:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Edit and replay: random header overrides against the real server.

/// Header names: tokens, the same in capitals, names no request can carry, and one longer than a
/// whole head.
fn override_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "x-[a-z0-9-]{0,12}",
        1 => "X-[A-Z0-9]{0,4}",
        1 => prop::sample::select(&["content-type", "content-length", "stripe-signature", "host"][..]).prop_map(str::to_string),
        1 => prop::sample::select(&["", " ", "a b", "x:y", "x\ny", "\u{0}", "é", "(x)"][..]).prop_map(str::to_string),
        1 => any::<String>(),
        1 => Just("n".repeat(70_000)),
    ]
}

/// Values: none (a removal), text, bytes no header value may hold, and ones longer than a head.
fn override_value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        4 => "[ -~]{0,40}".prop_map(Some),
        1 => prop::sample::select(&["a\nb", "a\rb", "\u{0}", "é", "\u{7f}", " padded ", "\t"][..]).prop_map(|v| Some(v.to_string())),
        1 => any::<String>().prop_map(Some),
        1 => (1usize..4096).prop_map(|n| Some("v".repeat(n))),
        1 => Just(Some("v".repeat(70_000))),
    ]
}

/// An edit request: the overrides as a JSON object written by hand (so a name may come twice),
/// now and then with a byte that is not UTF-8 in it; or many small ones.
fn override_request() -> impl Strategy<Value = (usize, Vec<u8>)> {
    let written = prop_oneof![
        6 => prop::collection::vec((override_name(), override_value()), 0..12),
        2 => prop::collection::vec((override_name(), override_value()), 50..80),
        1 => (100usize..40_000).prop_map(|n| (0..n).map(|i| (format!("x-h{i}"), Some("1".to_string()))).collect()),
    ];
    (written, prop::bool::weighted(0.1)).prop_map(|(pairs, break_utf8)| {
        let members: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), v.clone().map_or(Value::Null, Value::String)))
            .collect();
        let mut bytes = format!(r#"{{"headers":{{{}}}}}"#, members.join(",")).into_bytes();
        if break_utf8 && !pairs.is_empty() {
            // Inside the first name's string, just after its opening quote.
            let open = r#"{"headers":{""#.len();
            bytes.insert(open, 0xff);
        }
        (pairs.len(), bytes)
    })
}

/// The codes an edit may be refused with (`http/errors.rs`, `http/edit.rs`).
const EDIT_CODES: [&str; 5] = ["invalid_payload", "payload_too_large", "not_found", "no_target", "cannot_sign"];

/// No edit request panics a worker: random override maps (any count, names and values valid or
/// not, huge, repeated, bytes that are not UTF-8) each get a 2xx or a 4xx with a stable code, the
/// server answers the next request, and more than 64 overrides are always refused.
#[test]
fn random_header_overrides_are_answered_and_bounded() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (app, server, path) = rt.block_on(async {
        let app = crate::fake_app::FakeApp::start().await;
        let mut c = crate::support::config(dir.path());
        c.providers.get_mut("stripe").unwrap().forward_to = vec![app.url("/hook")];
        let s = crate::support::start(c).await;
        let r = s.stripe(&crate::support::stripe_event("evt_fuzz_edit")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let id = r.json()["id"].as_str().unwrap().to_string();
        (app, s, format!("/staging/webhooks/events/{id}/replay"))
    });
    let mut runner = proptest::test_runner::TestRunner::new(cases(48));
    let result = runner.run(&override_request(), |(count, body)| {
        let r = rt.block_on(server.post(&path, &[("content-type", JSON)], &body));
        let code = r.code();
        prop_assert!(
            (200..300).contains(&r.status) || ((400..500).contains(&r.status) && EDIT_CODES.contains(&code.as_str())),
            "{count} overrides: {} {}",
            r.status,
            r.text()
        );
        if count > 64 {
            prop_assert_eq!((r.status, code.as_str()), (400, "invalid_payload"), "{} overrides: {}", count, r.text());
        }
        let health = rt.block_on(server.get("/healthz"));
        prop_assert_eq!(health.status, 200);
        Ok(())
    });
    rt.block_on(server.stop());
    drop(app);
    if let Err(e) = result {
        panic!("{e}");
    }
}
