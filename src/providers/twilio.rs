//! Twilio: `X-Twilio-Signature` over the URL Twilio called.
//!
//! Verified as twilio's SDKs do: `base64(HMAC-SHA1(auth_token, url + name1 + value1 + ...))` with
//! the form parameters sorted by name and, for a repeated name, its distinct values sorted. The
//! URL is tried both without its port and with the scheme's default port added, since Twilio may
//! sign either. A JSON body is signed with empty parameters and carries
//! `bodySHA256=<hex sha256 of the body>` in the URL's query, which must match too.
//!
//! A form is verified before anyone knows who sent it, so its parameters are counted on the raw
//! bytes first and a form with more than [`MAX_FORM_PARAMS`] is refused unparsed: a 1 MiB body of
//! `a&a&a…` would otherwise become half a million small strings (about 50 MB) before its
//! signature is even looked at.

use std::borrow::Cow;

use base64::Engine;
use sha2::{Digest, Sha256};
use warp::http::HeaderMap;

use super::signing::{self, ct_eq, HmacSha1};
use serde::{Deserialize, Serialize};

use super::kind::{built_in_credential, BuiltIn, ConfigError, Kind, Rotation, Surroundings};
use super::{
    bare_media_type, media_type, pick, refuse_failed, require_media_type, signature_text, Accepted, Answer, Check,
    Inbound, Parsed, Provider, Refusal, RefusalCode, Sample, Signed, UnknownFixture,
};
use crate::finding::{Finding, Severity};
use crate::secret::Secret;

pub const SIGNATURE_HEADER: &str = "x-twilio-signature";
pub const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";
const FORM: &str = "application/x-www-form-urlencoded";

/// The most parameters a form from Twilio has. Twilio sends 10 to 60 (an MMS with ten media
/// items adds twenty); four times the most it sends leaves room for new fields while a flood of
/// empty parameters costs no more than a scan of its bytes.
pub const MAX_FORM_PARAMS: usize = 256;

/// `[providers.twilio]`, or a section of kind `twilio`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The auth token under the name every kind shares; `auth_token` is Twilio's own.
    pub secret: Option<Secret>,
    /// Further auth tokens accepted at once (rotation: the primary and a secondary).
    pub secrets: Vec<Secret>,
    /// The account's auth token, Twilio's own name for `secret`.
    pub auth_token: Option<Secret>,
    /// The account SID (`AC...`), if set; checked for isolation only.
    pub account_sid: Option<String>,
}

pub struct Twilio {
    pub name: String,
    /// Every accepted auth token (rotation: the primary and a secondary); deliveries are signed
    /// with the first.
    pub auth_tokens: Vec<Secret>,
}

impl Twilio {
    pub fn new(name: &str, auth_tokens: Vec<Secret>) -> Twilio {
        Twilio { name: name.to_string(), auth_tokens }
    }
}

/// The built-in Twilio endpoint: `[providers.twilio]` at `/staging/webhooks/sms`.
const BUILT_IN: BuiltIn = BuiltIn {
    name: "twilio",
    path: "sms",
    env: ("TWILIO_AUTH_TOKEN", "auth_token"),
    env_keys: &["auth_token", "account_sid"],
};

impl Kind for Twilio {
    const KEYS: &'static [&'static str] = &["secret", "secrets", "auth_token", "account_sid"];
    const BUILT_IN: Option<BuiltIn> = Some(BUILT_IN);
    const API_HOSTS: &'static [&'static str] = &["twilio.com", "*.twilio.com"];
    const ISOLATION_ENV: &'static [&'static str] = &["TWILIO_API_KEY", "TWILIO_API_SECRET", "TWILIO_ACCOUNT_SID"];

    type Settings = Settings;

    /// The endpoint `[providers.<name>]`: `auth_token` (Twilio's name for the secret), then
    /// `secret` and `secrets`. No token is not an error: the endpoint then answers 503 until one
    /// is set.
    fn from_settings(name: &str, c: &Settings) -> Result<Twilio, ConfigError> {
        <Twilio as Kind>::check_anywhere(name, c)?;
        let rest = Self::rotation(c).nonempty(name)?;
        Ok(Twilio::new(name, c.auth_token.iter().cloned().chain(rest).collect()))
    }

    fn rotation(c: &Settings) -> Rotation<'_> {
        Rotation::new(&c.secret, &c.secrets)
    }

    /// An empty `auth_token` is a slip, as an empty `secret` is.
    fn check_anywhere(name: &str, c: &Settings) -> Result<(), ConfigError> {
        if c.auth_token.as_ref().is_some_and(|s| s.expose().is_empty()) {
            return Err(ConfigError::new(
                format!("providers.{name}.auth_token"),
                "is empty; set the auth token or remove the key",
            ));
        }
        Ok(())
    }

    fn has_credentials(c: &Settings) -> bool {
        c.auth_token.is_some() || !Self::rotation(c).all().is_empty()
    }

    fn credential(c: &Settings) -> Option<&Secret> {
        c.auth_token.as_ref().or(c.secret.as_ref())
    }

    /// The built-in endpoint's auth token looks like one, its account SID too, no live API key is
    /// in reach, and behind a proxy the URL Twilio signs is known.
    fn findings(built_in: Option<&Settings>, around: &Surroundings<'_>, out: &mut Vec<Finding>) {
        let section = format!("providers.{}", BUILT_IN.name);
        if let Some(twilio) = built_in {
            let key = format!("{section}.auth_token");
            out.push(built_in_credential(
                &key,
                twilio.auth_token.as_ref(),
                "Twilio is configured without its auth token: set TWILIO_AUTH_TOKEN (Console → Account → API keys & tokens)",
                "the account's auth token",
                |s| {
                    if s.expose().len() != 32 || !s.expose().bytes().all(|b| b.is_ascii_hexdigit()) {
                        let problem = format!("{} is not a Twilio auth token (32 hexadecimal characters)", s.fingerprint());
                        Finding::new("twilio.token_format", Severity::Error, &key, problem)
                    } else {
                        Finding::new("twilio.token_format", Severity::Ok, &key, format!("auth token {}", s.fingerprint()))
                    }
                },
            ));
        }
        for name in ["TWILIO_API_KEY", "TWILIO_API_SECRET"] {
            if around.env.get(name).is_some_and(|v| !v.is_empty()) {
                out.push(Finding::new(
                    "isolation.twilio_live_credentials",
                    Severity::Warning,
                    &format!("env {name}"),
                    "Twilio API keys belong to live accounts (test credentials have none): make sure this is not production",
                ));
            }
        }
        let sid = built_in.and_then(|t| t.account_sid.clone()).map(|s| (format!("{section}.account_sid"), s));
        let sid = sid.or_else(|| {
            around
                .env
                .get("TWILIO_ACCOUNT_SID")
                .filter(|v| !v.is_empty())
                .map(|s| ("env TWILIO_ACCOUNT_SID".to_string(), s.clone()))
        });
        if let Some((key, sid)) = sid {
            if !(sid.starts_with("AC") && sid.len() == 34) {
                out.push(Finding::new(
                    "twilio.account_sid_format",
                    Severity::Error,
                    &key,
                    "an account SID is AC followed by 32 hexadecimal characters",
                ));
            }
        }
        if built_in.is_some() && !around.public_url_set && around.behind_proxy {
            out.push(Finding::new(
                "twilio.public_url_missing",
                Severity::Warning,
                "server.public_url",
                "Twilio signs the URL it called; behind a proxy or tunnel set server.public_url to that URL's base, or signatures will not match",
            ));
        }
    }
}

const SAMPLE_TYPES: &[&str] = &["message.received"];

/// `base64(HMAC-SHA1(token, url + sorted name+value pairs))`, exactly as twilio's SDKs compute.
pub fn sign(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    sorted.sort_unstable();
    sorted.dedup();
    sign_sorted(token, url, &sorted)
}

/// [`sign`] over parameters already sorted by name then value, each distinct pair once: the
/// order twilio's SDKs sign in (names sorted, a name's distinct values sorted).
fn sign_sorted<K: AsRef<str>, V: AsRef<str>>(token: &str, url: &str, sorted: &[(K, V)]) -> String {
    let pairs = sorted.iter().flat_map(|(name, value)| [name.as_ref().as_bytes(), value.as_ref().as_bytes()]);
    let digest = signing::mac::<HmacSha1>(token.as_bytes(), std::iter::once(url.as_bytes()).chain(pairs));
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// One form parameter, borrowed from the body unless percent-decoding changed it.
type Param<'a> = (Cow<'a, str>, Cow<'a, str>);

/// A form's parameters, decoded only where they need it, once their number is known to be at
/// most [`MAX_FORM_PARAMS`] from a count of `&` on the raw bytes.
fn form_params(body: &[u8]) -> Result<Vec<Param<'_>>, Refusal> {
    let params = body.iter().filter(|&&b| b == b'&').count() + 1;
    if params > MAX_FORM_PARAMS {
        return Err(Refusal::new(
            RefusalCode::InvalidPayload,
            format!(
                "the form has {params} parameters, more than the {MAX_FORM_PARAMS} a Twilio request can have; it was not parsed"
            ),
        ));
    }
    Ok(form_urlencoded::parse(body).collect())
}

/// The URL without an explicit port, and with the scheme's default port when it had none; the
/// SDKs accept a signature over either.
pub fn url_variants(url: &str) -> (String, String) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), url.to_string());
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => authority.split_at(i + 1),
        None => ("", authority),
    };
    // `[v6]:port` keeps its brackets; only a colon after the host starts a port.
    let host_end = if hostport.starts_with('[') {
        hostport.find(']').map_or(hostport.len(), |i| i + 1)
    } else {
        hostport.find(':').unwrap_or(hostport.len())
    };
    let (host, port) = hostport.split_at(host_end);
    let without = format!("{scheme}://{userinfo}{host}{tail}");
    let with = if port.len() > 1 {
        url.to_string()
    } else {
        let default = if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 };
        format!("{scheme}://{userinfo}{host}:{default}{tail}")
    };
    (without, with)
}

/// The value of `name` in the URL's query string, decoded.
fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or("");
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).as_deref() == Some("application/json")
}

/// Fields of the request: form parameters, or a JSON object's string members. Every failure is
/// an `invalid_payload` refusal.
fn fields(req: &Inbound<'_>) -> Result<Vec<(String, String)>, Refusal> {
    let invalid = |m: String| Refusal::new(RefusalCode::InvalidPayload, m);
    if is_json(req.headers) {
        let v = super::json::parse(req.body).map_err(|e| invalid(e.said("body is not JSON: ")))?;
        let obj = v.as_object().ok_or_else(|| invalid("JSON body must be an object".into()))?;
        Ok(obj.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
    } else {
        let params = form_params(req.body)?;
        Ok(params.into_iter().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }
}

impl Provider for Twilio {
    fn delivery_timeout(&self) -> Option<std::time::Duration> {
        // The read timeout and the total timeout both default to 15000 ms:
        // https://www.twilio.com/docs/usage/webhooks/webhooks-connection-overrides
        Some(std::time::Duration::from_secs(15))
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn secret_headers(&self) -> &[&'static str] {
        &[SIGNATURE_HEADER]
    }

    fn precheck(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        require_media_type(
            headers,
            &[FORM, "application/json"],
            "Twilio webhooks are",
            " (JSON with bodySHA256 in the URL)",
        )
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<(), Refusal> {
        let invalid = |m: &str| Refusal::new(RefusalCode::InvalidSignature, m);
        let given = signature_text(req.headers, SIGNATURE_HEADER, "X-Twilio-Signature")?;
        let mut params = match query_param(req.url, "bodySHA256") {
            Some(expected_hash) => {
                let actual = hex::encode(Sha256::digest(req.body));
                if !ct_eq(actual.as_bytes(), expected_hash.as_bytes()) {
                    return Err(invalid("bodySHA256 in the URL does not match the body"));
                }
                Vec::new()
            }
            None if is_json(req.headers) => {
                return Err(invalid("a JSON body must be signed with bodySHA256 in the URL"))
            }
            None => form_params(req.body)?,
        };
        // Sorted once for every token and URL variant.
        params.sort_unstable();
        params.dedup();
        let (without_port, with_port) = url_variants(req.url);
        // Each token under both URLs, as the SDKs accept either.
        let keys = self.auth_tokens.iter().flat_map(|token| [(token, &without_port), (token, &with_port)]);
        let matched = signing::any_matches(keys, [given], |(token, url)| sign_sorted(token.expose(), url, &params));
        if matched {
            Ok(())
        } else {
            Err(invalid(
                "X-Twilio-Signature does not match; check the auth token and that server.public_url is the URL Twilio calls",
            ))
        }
    }

    fn signs_url(&self) -> bool {
        true
    }

    fn secret_fingerprints(&self) -> Vec<String> {
        self.auth_tokens.iter().map(Secret::fingerprint).collect()
    }

    fn checks(&self, req: &Inbound<'_>) -> Vec<Check> {
        let fields = match fields(req) {
            Ok(f) => f,
            Err(refusal) => return vec![Check::fail("body", refusal.message)],
        };
        ["MessageSid", "From", "To"]
            .into_iter()
            .map(|name| match fields.iter().find(|(k, _)| k == name) {
                Some((_, v)) if !v.is_empty() => Check::pass(name, "present"),
                _ => Check::fail(name, "required parameter is missing or empty"),
            })
            .collect()
    }

    fn parse(&self, req: &Inbound<'_>) -> Result<Parsed, Refusal> {
        refuse_failed(&self.checks(req))?;
        let fields = fields(req)?;
        let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let sid = get("MessageSid").unwrap_or_default();
        // Status callbacks repeat the MessageSid once per status (queued, sent, delivered), so
        // the status is part of their id: each is its own event, while a retry of one is not.
        match get("MessageStatus").or(get("SmsStatus")).filter(|s| !s.is_empty() && *s != "received") {
            Some(status) => Ok(Parsed::one(format!("{sid}:{status}"), format!("message.{status}"))),
            None => Ok(Parsed::one(sid, "message.received")),
        }
    }

    fn sign_delivery(&self, target: &str, content_type: Option<&str>, body: &[u8], _now_s: i64) -> Signed {
        let token = signing::signing_secret(&self.auth_tokens);
        if content_type.map(bare_media_type).as_deref() == Some("application/json") {
            // A JSON body is signed through the URL: its hash goes in the query, as Twilio does.
            let sep = if target.contains('?') { '&' } else { '?' };
            let url = format!("{target}{sep}bodySHA256={}", hex::encode(Sha256::digest(body)));
            let sig = sign(token, &url, &[]);
            return Signed { url, headers: vec![(SIGNATURE_HEADER, sig)] };
        }
        let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        Signed { url: target.to_string(), headers: vec![(SIGNATURE_HEADER, sign(token, target, &params))] }
    }

    fn answer(&self, _accepted: &Accepted<'_>) -> Answer {
        Answer { content_type: "text/xml", body: EMPTY_TWIML.as_bytes().to_vec() }
    }

    fn dry_run_media_type(&self) -> &'static str {
        FORM
    }

    fn sample_types(&self) -> &'static [&'static str] {
        SAMPLE_TYPES
    }

    fn sample(&self, event_type: Option<&str>, _now_s: i64) -> Result<Sample, UnknownFixture> {
        pick(SAMPLE_TYPES, event_type)?;
        // An inbound SMS as Twilio posts it to a messaging webhook (test credentials' numbers).
        let account = format!("AC{}", &hex::encode(ulid::Ulid::new().to_bytes()));
        let sid = format!("SM{}", &hex::encode(ulid::Ulid::new().to_bytes()));
        let params = [
            ("ToCountry", "US"),
            ("ToState", "CA"),
            ("SmsMessageSid", sid.as_str()),
            ("NumMedia", "0"),
            ("ToCity", "SAN FRANCISCO"),
            ("FromZip", "94105"),
            ("SmsSid", sid.as_str()),
            ("FromState", "CA"),
            ("SmsStatus", "received"),
            ("FromCity", "SAN FRANCISCO"),
            ("Body", "Hello from stagehook"),
            ("FromCountry", "US"),
            ("To", "+15005550006"),
            ("ToZip", "94105"),
            ("NumSegments", "1"),
            ("MessageSid", sid.as_str()),
            ("AccountSid", account.as_str()),
            ("From", "+15005550001"),
            ("ApiVersion", "2010-04-01"),
        ];
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        Ok(Sample { content_type: FORM, headers: Vec::new(), body: body.into_bytes() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_variants_add_and_strip_ports() {
        let (a, b) = url_variants("https://mycompany.com/myapp.php?foo=1&bar=2");
        assert_eq!(a, "https://mycompany.com/myapp.php?foo=1&bar=2");
        assert_eq!(b, "https://mycompany.com:443/myapp.php?foo=1&bar=2");
        let (a, b) = url_variants("http://u:p@h:1234");
        assert_eq!((a.as_str(), b.as_str()), ("http://u:p@h", "http://u:p@h:1234"));
        let (a, b) = url_variants("http://[::1]:8080/x");
        assert_eq!((a.as_str(), b.as_str()), ("http://[::1]/x", "http://[::1]:8080/x"));
    }

    #[test]
    fn either_of_two_tokens_verifies_and_samples_parse() {
        let p = Twilio::new("twilio", vec![Secret::new("primary"), Secret::new("secondary")]);
        let sample = p.sample(None, 0).unwrap();
        let url = "https://example.test/staging/webhooks/sms";
        let params: Vec<(String, String)> = form_urlencoded::parse(&sample.body).into_owned().collect();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", FORM.parse().unwrap());
        for (token, ok) in [("primary", true), ("secondary", true), ("other", false)] {
            headers.insert(SIGNATURE_HEADER, sign(token, url, &params).parse().unwrap());
            let req = Inbound { headers: &headers, body: &sample.body, url, now_s: 0 };
            assert_eq!(p.verify(&req).is_ok(), ok, "{token}");
        }
        let signed = p.sign_delivery(url, Some(FORM), &sample.body, 0);
        assert_eq!(signed.headers[0].1, sign("primary", url, &params));
        let req = Inbound { headers: &headers, body: &sample.body, url, now_s: 0 };
        assert_eq!(p.parse(&req).unwrap().event_type, "message.received");
    }

    /// A form is refused for its number of parameters before it is parsed or its signature
    /// checked; one at the cap, correctly signed, still passes.
    #[test]
    fn a_form_with_too_many_parameters_is_refused_unparsed() {
        let p = Twilio::new("twilio", vec![Secret::new("t")]);
        let url = "https://example.test/staging/webhooks/sms";
        let verify = |params: &[(String, String)], body: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert("content-type", FORM.parse().unwrap());
            headers.insert(SIGNATURE_HEADER, sign("t", url, params).parse().unwrap());
            p.verify(&Inbound { headers: &headers, body, url, now_s: 0 })
        };
        let form = |n: usize| -> (Vec<(String, String)>, Vec<u8>) {
            let params: Vec<(String, String)> = (0..n).map(|i| (format!("P{i}"), "v".to_string())).collect();
            let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();
            (params, body.into_bytes())
        };
        let (params, body) = form(MAX_FORM_PARAMS);
        assert_eq!(verify(&params, &body), Ok(()));
        for (params, body) in [form(MAX_FORM_PARAMS + 1), (Vec::new(), "a&".repeat(512 * 1024).into_bytes())] {
            let refusal = verify(&params, &body).unwrap_err();
            assert_eq!(refusal.code, RefusalCode::InvalidPayload, "{}", refusal.message);
            assert!(refusal.message.contains("more than the 256"), "{}", refusal.message);
        }
        // The same cap holds where the payload is read for `/validate` and `parse`.
        let (_, body) = form(MAX_FORM_PARAMS + 1);
        let headers = HeaderMap::new();
        let req = Inbound { headers: &headers, body: &body, url, now_s: 0 };
        assert!(p.parse(&req).is_err());
    }

    /// Sorting pairs and dropping repeats signs what grouping distinct values by name signs.
    #[test]
    fn repeated_names_sign_each_distinct_value_in_order() {
        let pairs =
            |list: &[(&str, &str)]| list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let a = sign("t", "u", &pairs(&[("b", "2"), ("a", "9"), ("b", "1"), ("b", "2")]));
        let whole = signing::mac::<HmacSha1>(b"t", [&b"ua9b1b2"[..]]);
        assert_eq!(a, base64::engine::general_purpose::STANDARD.encode(whole));
    }

    #[test]
    fn status_callbacks_are_distinct_events() {
        let p = Twilio::new("twilio", vec![Secret::new("t")]);
        let mut headers = HeaderMap::new();
        headers.insert("content-type", FORM.parse().unwrap());
        let body = b"MessageSid=SM1&From=%2B1&To=%2B2&MessageStatus=delivered";
        let req = Inbound { headers: &headers, body, url: "", now_s: 0 };
        assert_eq!(p.parse(&req).unwrap(), Parsed::one("SM1:delivered", "message.delivered"));
        let body = b"MessageSid=SM1&From=%2B1&To=%2B2&SmsStatus=received";
        let req = Inbound { headers: &headers, body, url: "", now_s: 0 };
        assert_eq!(p.parse(&req).unwrap().event_id, "SM1");
    }

    #[test]
    fn the_signature_header_is_listed_as_secret() {
        crate::providers::testing::assert_secret_headers_cover_signing(
            &Twilio::new("twilio", vec![Secret::new("a")]),
            &Twilio::new("twilio", vec![Secret::new("b")]),
        );
    }
}
