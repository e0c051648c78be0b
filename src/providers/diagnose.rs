//! Why a signature failed: worked out after a refusal, for the person who runs stagehook (the
//! sender only ever gets the plain refusal). Each kind's own `verify` is the oracle: the request
//! is changed the ways real causes change it (another URL, the body as a proxy rewrote it, the
//! digest written another way, another endpoint's secret) and verified again; the first change
//! that verifies names the cause. What only the kind can tell comes from the kind itself
//! ([`Provider::signature_diagnosis`], [`Provider::mismatch_diagnosis`]): a Standard Webhooks
//! `v1a` signature with no public key to verify it, one that cannot be read, another key pair's.
//!
//! A refused request is unauthenticated, so the work is bounded per refusal ([`MAX_TRIALS`]
//! verifications and [`MAX_HASHED_BYTES`] bytes hashed; bodies over [`MAX_REWRITTEN_BODY`] are not
//! rewritten), and the caller caps how many refusals a second are diagnosed at all
//! (`http/ingest.rs`).

use warp::http::{HeaderMap, HeaderValue};

use super::{Endpoint, Inbound, Provider, Refusal, RefusalCode};

/// The most verifications one diagnosis makes.
pub const MAX_TRIALS: usize = 64;
/// The most bytes (bodies and URLs) one diagnosis hashes, over all its verifications.
pub const MAX_HASHED_BYTES: usize = 4 << 20;
/// Bodies larger than this are not rewritten (a proxy's changes are looked for in smaller ones).
pub const MAX_REWRITTEN_BODY: usize = 64 << 10;

/// The most refusals diagnosed in one second, whatever arrives: a forged flood costs at most
/// this many diagnoses a second (each bounded as above); the rest are refused undiagnosed.
pub const PER_SECOND: u32 = 10;

/// Admits at most [`PER_SECOND`] diagnoses in each second of the clock.
#[derive(Debug, Default)]
pub struct Gate {
    /// The second being counted (ms since the epoch / 1000) and the diagnoses admitted in it.
    window: parking_lot::Mutex<(i64, u32)>,
}

impl Gate {
    pub fn admit(&self, now_ms: i64) -> bool {
        let second = now_ms.div_euclid(1000);
        let mut w = self.window.lock();
        if w.0 != second {
            *w = (second, 0);
        }
        if w.1 >= PER_SECOND {
            return false;
        }
        w.1 += 1;
        true
    }
}

/// A likely cause, with a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub code: &'static str,
    pub detail: String,
}

impl Diagnosis {
    pub fn new(code: &'static str, detail: impl Into<String>) -> Diagnosis {
        Diagnosis { code, detail: detail.into() }
    }
}

/// The likely cause of `refusal` of `req` at `endpoint`, or `None` when the refusal is not about
/// a signature. `others` are every configured endpoint (this one included; it is skipped);
/// `public_url_set` whether `server.public_url` named the URL `req.url` was built from.
pub fn diagnose(
    endpoint: &Endpoint,
    others: &[Endpoint],
    req: &Inbound<'_>,
    refusal: &Refusal,
    public_url_set: bool,
) -> Option<Diagnosis> {
    let provider = endpoint.provider.as_ref();
    match refusal.code {
        RefusalCode::StaleTimestamp => {
            if let Some(d) = clock_skew(provider, req) {
                return Some(d);
            }
        }
        RefusalCode::InvalidSignature => {}
        _ => return None,
    }
    let mut budget = Budget { trials: MAX_TRIALS, bytes: MAX_HASHED_BYTES };
    let found = wrong_endpoint(endpoint, others, req, &mut budget)
        .or_else(|| provider.signature_diagnosis(req))
        .or_else(|| url_mismatch(provider, req, &mut budget))
        .or_else(|| encoding_mismatch(provider, req, &mut budget))
        .or_else(|| body_modified(provider, req, &mut budget));
    let found = found.or_else(|| provider.mismatch_diagnosis(req));
    Some(found.or_else(|| url_unknown(provider, req, public_url_set)).unwrap_or_else(|| secret_mismatch(provider)))
}

/// When the kind signs the URL it called and nothing in the request named it (no `public_url`,
/// no forwarding header that [`url_mismatch`] could try), the URL stagehook rebuilt from `Host`
/// is a guess: behind a tunnel that passes its own plain Host, it is wrong however right the
/// secret is, so the guess is the likelier culprit and the secret is named second.
fn url_unknown(provider: &dyn Provider, req: &Inbound<'_>, public_url_set: bool) -> Option<Diagnosis> {
    if !provider.signs_url() || public_url_set {
        return None;
    }
    let fingerprints = provider.secret_fingerprints();
    let secret = if fingerprints.is_empty() {
        String::new()
    } else {
        format!(", compare this endpoint's secret, {}, with the provider's", fingerprints.join(", "))
    };
    Some(Diagnosis::new(
        "url_unknown",
        format!(
            "the sender signs the URL it calls, and without server.public_url stagehook could only rebuild it from \
             the request's Host as {url}, and no URL a forwarding header names matches either: behind a tunnel or \
             a proxy, that is not the URL the sender called, so set server.public_url = \"https://<the tunnel's \
             host>\" (or STAGEHOOK_SERVER_PUBLIC_URL). If the sender does call {url}{secret}.",
            url = req.url
        ),
    ))
}

struct Budget {
    trials: usize,
    bytes: usize,
}

impl Budget {
    /// Whether `provider` accepts the signature of `req` (a stale timestamp still means the
    /// signature matched); `false` too once the budget is spent.
    fn verifies(&mut self, provider: &dyn Provider, req: &Inbound<'_>) -> bool {
        let cost = req.body.len() + req.url.len();
        if self.trials == 0 || self.bytes < cost {
            self.trials = 0;
            return false;
        }
        self.trials -= 1;
        self.bytes -= cost;
        matches!(provider.verify(req), Ok(()) | Err(Refusal { code: RefusalCode::StaleTimestamp, .. }))
    }
}

fn clock_skew(provider: &dyn Provider, req: &Inbound<'_>) -> Option<Diagnosis> {
    let signed_at = provider.signed_at(req)?;
    let off = req.now_s.saturating_sub(signed_at);
    let detail = if off >= 0 {
        format!(
            "the signature is valid but was made {off} s ago, beyond the tolerance: if the sender sent it just now, this \
             machine's clock is {off} s ahead of the sender's (check NTP here); an old request replayed looks the same"
        )
    } else {
        let ahead = off.unsigned_abs();
        format!(
            "the signature is valid but dated {ahead} s in the future: this machine's clock is {ahead} s behind the \
             sender's (check NTP here)"
        )
    };
    Some(Diagnosis::new("clock_skew", detail))
}

fn wrong_endpoint(
    endpoint: &Endpoint,
    others: &[Endpoint],
    req: &Inbound<'_>,
    budget: &mut Budget,
) -> Option<Diagnosis> {
    let other = others
        .iter()
        .filter(|o| o.configured && o.path != endpoint.path)
        .find(|o| budget.verifies(o.provider.as_ref(), req))?;
    Some(Diagnosis::new(
        "wrong_endpoint",
        format!(
            "the signature verifies with the secret (or public key) of `{}` (POST /staging/webhooks/{}): the sender is \
             set up with that endpoint's secret, or this URL is the wrong one for it",
            other.provider.name(),
            other.path
        ),
    ))
}

fn url_mismatch(provider: &dyn Provider, req: &Inbound<'_>, budget: &mut Budget) -> Option<Diagnosis> {
    if !provider.signs_url() {
        return None;
    }
    let url = url_variants(req.url, req.headers).into_iter().find(|url| {
        let variant = Inbound { url, ..*req };
        budget.verifies(provider, &variant)
    })?;
    let base = base_of(&url);
    Some(Diagnosis::new(
        "url_mismatch",
        format!(
            "the signature matches {url}, not {}: the sender signs the URL it calls; set server.public_url = \"{base}\"",
            req.url
        ),
    ))
}

/// `scheme://host[:port]` of an absolute URL.
fn base_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..].find('/').map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}

/// The URLs a sender may have signed instead of `url`: another scheme, the hosts proxies name
/// (`X-Forwarded-Host`, `X-Original-Host`, `Forwarded`), with and without a port, the path with
/// and without a trailing slash, with and without the query. `url` itself is left out.
fn url_variants(url: &str, headers: &HeaderMap) -> Vec<String> {
    let Some((_, rest)) = url.split_once("://") else { return Vec::new() };
    let (authority, path_query) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let (path, query) = path_query.split_once('?').map_or((path_query, None), |(p, q)| (p, Some(q)));
    let mut hosts = vec![authority.to_string()];
    for name in ["x-forwarded-host", "x-original-host", "host"] {
        if let Some(h) = headers.get(name).and_then(|v| v.to_str().ok()) {
            hosts.extend(h.split(',').map(|h| h.trim().to_string()));
        }
    }
    if let Some(f) = headers.get("forwarded").and_then(|v| v.to_str().ok()) {
        hosts.extend(
            f.split([';', ','])
                .filter_map(|part| part.trim().strip_prefix("host="))
                .map(|h| h.trim_matches('"').to_string()),
        );
    }
    // Each host with its port and without it.
    let mut all_hosts = Vec::new();
    for h in hosts.into_iter().filter(|h| !h.is_empty() && h.len() <= 255) {
        // A port is digits after the last `:` (`[::1]:8080`, not the `1]` of `[::1]`).
        let bare = h.rsplit_once(':').filter(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
        if let Some((bare, _)) = bare {
            all_hosts.push(bare.to_string());
        }
        all_hosts.push(h);
    }
    dedup(&mut all_hosts);
    let other_path = match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => format!("{path}/"),
    };
    let mut out = Vec::new();
    for scheme in ["https", "http"] {
        for host in &all_hosts {
            for p in [path, other_path.as_str()] {
                match query {
                    Some(q) => {
                        out.push(format!("{scheme}://{host}{p}?{q}"));
                        out.push(format!("{scheme}://{host}{p}"));
                    }
                    None => out.push(format!("{scheme}://{host}{p}")),
                }
            }
        }
    }
    dedup(&mut out);
    out.retain(|u| u != url);
    out
}

fn dedup(v: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|s| seen.insert(s.clone()));
}

/// Prefixes senders put before a digest.
const PREFIXES: &[&str] = &["sha256=", "sha1=", "sha512=", "v1,", "v1=", "v0="];

fn encoding_mismatch(provider: &dyn Provider, req: &Inbound<'_>, budget: &mut Budget) -> Option<Diagnosis> {
    for &name in provider.secret_headers() {
        let Some(value) = req.headers.get(name).and_then(|v| v.to_str().ok()) else { continue };
        for (candidate, how) in rewritten_signatures(value) {
            let Ok(header) = HeaderValue::from_str(&candidate) else { continue };
            let mut headers = req.headers.clone();
            headers.insert(name, header);
            if budget.verifies(provider, &Inbound { headers: &headers, ..*req }) {
                return Some(Diagnosis::new(
                    "encoding_mismatch",
                    format!(
                        "the signature in {name} matches once {how}: the sender writes the digest differently from \
                         what this endpoint expects (hex or base64, its prefix); align the sender or this endpoint's \
                         settings"
                    ),
                ));
            }
        }
    }
    None
}

/// `value` with its digest written the other way (hex and base64) and with a prefix removed or
/// added, each with what was done, in words.
fn rewritten_signatures(value: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let (prefix, digest) = PREFIXES.iter().find_map(|p| value.strip_prefix(p).map(|d| (*p, d))).unwrap_or(("", value));
    let mut digests = vec![(digest.to_string(), String::new())];
    if let Some(hex) = base64_to_hex(digest) {
        digests.push((hex, "the digest is re-encoded from base64 to hex".to_string()));
    }
    if let Some(b64) = hex_to_base64(digest) {
        digests.push((b64, "the digest is re-encoded from hex to base64".to_string()));
    }
    for (d, how) in &digests {
        let join = |a: &str, b: &str| match (a.is_empty(), b.is_empty()) {
            (true, _) => b.to_string(),
            (_, true) => a.to_string(),
            _ => format!("{a} and {b}"),
        };
        if !how.is_empty() {
            out.push((format!("{prefix}{d}"), how.clone()));
        }
        if !prefix.is_empty() {
            out.push((d.clone(), join(how, &format!("its `{prefix}` prefix is removed"))));
        }
        for p in PREFIXES.iter().filter(|p| **p != prefix) {
            out.push((format!("{p}{d}"), join(how, &format!("it is prefixed with `{p}`"))));
        }
    }
    out
}

fn base64_to_hex(s: &str) -> Option<String> {
    use base64::Engine;
    if s.len() < 20 || is_hex(s) {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s))
        .ok()?;
    Some(hex::encode(bytes))
}

fn hex_to_base64(s: &str) -> Option<String> {
    use base64::Engine;
    if s.len() < 20 || !is_hex(s) {
        return None;
    }
    hex::decode(s).ok().map(|b| base64::engine::general_purpose::STANDARD.encode(b))
}

fn is_hex(s: &str) -> bool {
    s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn body_modified(provider: &dyn Provider, req: &Inbound<'_>, budget: &mut Budget) -> Option<Diagnosis> {
    if req.body.len() > MAX_REWRITTEN_BODY {
        return None;
    }
    let (_, how) = body_variants(req.body).into_iter().find(|(body, _)| {
        let variant = Inbound { body, ..*req };
        budget.verifies(provider, &variant)
    })?;
    Some(Diagnosis::new(
        "body_modified",
        format!(
            "the signature matches the body {how}: something between the sender and stagehook (a proxy, a body \
             parser) changed the bytes; forward the raw body unchanged"
        ),
    ))
}

/// The bodies a sender may have signed, had a proxy changed what it sent: a trailing newline
/// added or removed, and for JSON the same tokens written compact, with spaces after `,` and
/// `:`, indented, with non-ASCII characters escaped, and with keys in sorted order.
fn body_variants(body: &[u8]) -> Vec<(Vec<u8>, &'static str)> {
    let mut out = Vec::new();
    let trimmed = body.strip_suffix(b"\r\n").or_else(|| body.strip_suffix(b"\n"));
    if let Some(t) = trimmed {
        out.push((t.to_vec(), "without its trailing newline"));
    } else {
        out.push(([body, b"\n"].concat(), "with a trailing newline"));
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let tokens = json_tokens(body);
        out.push((write_json(&tokens, Style::Compact), "re-serialized compact (no spaces)"));
        out.push((write_json(&tokens, Style::Spaced), "re-serialized with a space after each `,` and `:`"));
        out.push((write_json(&tokens, Style::Indented(2)), "re-serialized indented by 2 spaces"));
        out.push((write_json(&tokens, Style::Indented(4)), "re-serialized indented by 4 spaces"));
        out.push((escape_non_ascii(&write_json(&tokens, Style::Compact)), "with non-ASCII characters \\u-escaped"));
        if let Ok(sorted) = serde_json::to_vec(&value) {
            out.push((sorted, "re-serialized compact with its keys sorted"));
        }
    }
    out.retain(|(b, _)| b != body);
    out
}

/// A JSON text's tokens: strings as written, punctuation, and other scalars.
fn json_tokens(body: &[u8]) -> Vec<&[u8]> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b' ' | b'\n' | b'\r' | b'\t' => i += 1,
            b'"' => {
                let start = i;
                i += 1;
                while i < body.len() && body[i] != b'"' {
                    i += if body[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(body.len());
                tokens.push(&body[start..i]);
            }
            b'{' | b'}' | b'[' | b']' | b',' | b':' => {
                tokens.push(&body[i..i + 1]);
                i += 1;
            }
            _ => {
                let start = i;
                while i < body.len() && !b" \n\r\t{}[],:\"".contains(&body[i]) {
                    i += 1;
                }
                tokens.push(&body[start..i]);
            }
        }
    }
    tokens
}

#[derive(Clone, Copy)]
enum Style {
    Compact,
    Spaced,
    Indented(usize),
}

fn write_json(tokens: &[&[u8]], style: Style) -> Vec<u8> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let newline = |out: &mut Vec<u8>, depth: usize, n: usize| {
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b' ', depth * n));
    };
    for (i, t) in tokens.iter().enumerate() {
        let next_closes = tokens.get(i + 1).is_some_and(|n| *n == b"}" || *n == b"]");
        match (*t, style) {
            (b"{" | b"[", Style::Indented(n)) => {
                out.extend_from_slice(t);
                depth += 1;
                if !next_closes {
                    newline(&mut out, depth, n);
                }
            }
            (b"}" | b"]", Style::Indented(n)) => {
                depth = depth.saturating_sub(1);
                let opened_empty = i > 0 && (tokens[i - 1] == b"{" || tokens[i - 1] == b"[");
                if !opened_empty {
                    newline(&mut out, depth, n);
                }
                out.extend_from_slice(t);
            }
            (b",", Style::Indented(n)) => {
                out.push(b',');
                newline(&mut out, depth, n);
            }
            (b":", Style::Indented(_) | Style::Spaced) => out.extend_from_slice(b": "),
            (b",", Style::Spaced) => out.extend_from_slice(b", "),
            _ => out.extend_from_slice(t),
        }
    }
    out
}

/// `body` with every non-ASCII character written `\uXXXX` (a surrogate pair beyond the BMP), as
/// Python's `json.dumps` does by default.
fn escape_non_ascii(body: &[u8]) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(body) else { return body.to_vec() };
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out.into_bytes()
}

fn secret_mismatch(provider: &dyn Provider) -> Diagnosis {
    let fingerprints = provider.secret_fingerprints();
    let which = if fingerprints.is_empty() {
        String::new()
    } else {
        format!(" This endpoint's secret: {}; compare it with the one the provider shows.", fingerprints.join(", "))
    };
    Diagnosis::new(
        "secret_mismatch",
        format!(
            "no other URL, body, digest encoding or endpoint's secret makes the signature match: the secret differs \
             from the sender's.{which}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRETTY: &str = "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": \"x, y: z\"\n}";

    #[test]
    fn json_is_rewritten_in_each_style_keeping_its_tokens_and_their_order() {
        let tokens = json_tokens(PRETTY.as_bytes());
        let text = |style| String::from_utf8(write_json(&tokens, style)).unwrap();
        assert_eq!(text(Style::Compact), r#"{"a":[1,{}],"b":"x, y: z"}"#);
        assert_eq!(text(Style::Spaced), r#"{"a": [1, {}], "b": "x, y: z"}"#);
        assert_eq!(text(Style::Indented(2)), PRETTY, "indenting the compact form gives the pretty one back");
        let escaped = escape_non_ascii("{\"n\":\"café 😀\"}".as_bytes());
        assert_eq!(String::from_utf8(escaped).unwrap(), r#"{"n":"caf\u00e9 \ud83d\ude00"}"#);
    }

    #[test]
    fn url_variants_cover_scheme_proxy_hosts_port_slash_and_query() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-host", HeaderValue::from_static("tunnel.example"));
        let v = url_variants("http://127.0.0.1:8080/staging/webhooks/sms?x=1", &headers);
        for expected in [
            "https://127.0.0.1:8080/staging/webhooks/sms?x=1",
            "https://tunnel.example/staging/webhooks/sms?x=1",
            "https://127.0.0.1/staging/webhooks/sms?x=1",
            "http://127.0.0.1:8080/staging/webhooks/sms/?x=1",
            "http://127.0.0.1:8080/staging/webhooks/sms",
        ] {
            assert!(v.contains(&expected.to_string()), "{expected} in {v:?}");
        }
        assert!(!v.contains(&"http://127.0.0.1:8080/staging/webhooks/sms?x=1".to_string()), "not the URL itself");
        assert_eq!(base_of("https://tunnel.example/staging/webhooks/sms?x=1"), "https://tunnel.example");
        // An IPv6 host: its port comes off, its address stays whole.
        let v = url_variants("http://[::1]:8080/sms", &HeaderMap::new());
        assert!(v.contains(&"https://[::1]/sms".to_string()), "{v:?}");
        assert!(v.contains(&"https://[::1]:8080/sms".to_string()), "{v:?}");
        let v = url_variants("http://[::1]/sms", &HeaderMap::new());
        assert!(v.iter().all(|u| u.contains("[::1]")), "no address cut at a colon: {v:?}");
    }

    #[test]
    fn a_digest_is_rewritten_between_hex_and_base64_and_its_prefixes() {
        let hex = "a".repeat(64);
        let b64 = hex_to_base64(&hex).unwrap();
        let v = rewritten_signatures(&format!("sha256={hex}"));
        assert!(v.contains(&(format!("sha256={b64}"), "the digest is re-encoded from hex to base64".into())), "{v:?}");
        assert!(v.iter().any(|(s, how)| s == &hex && how.contains("prefix is removed")), "{v:?}");
        assert!(v.iter().any(|(s, _)| s == &format!("v1,{b64}")), "{v:?}");
        assert_eq!(base64_to_hex(&b64).as_deref(), Some(hex.as_str()));
        assert_eq!(base64_to_hex("short"), None, "too short to be a digest");
    }

    #[test]
    fn the_gate_admits_its_allowance_each_second() {
        let gate = Gate::default();
        let admitted = (0..PER_SECOND + 5).filter(|_| gate.admit(5_000)).count();
        assert_eq!(admitted, PER_SECOND as usize);
        assert!(!gate.admit(5_999));
        assert!(gate.admit(6_000), "the next second");
    }
}
