//! The `[providers.<name>]` settings of kind `hmac` and their checking: every key is read and
//! judged here, once, when the configuration is built (a header name is valid and distinct, a
//! pointer is RFC 6901, `signed_content` has known placeholders and `{body}`), so that signing and
//! verifying work only with what passed. Separate because it is the part a configuration error
//! leads to, and it changes with the keys rather than with the scheme.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use warp::http::{HeaderName, HeaderValue};

use super::{Hmac, Part, Source};
use crate::providers::kind::{ConfigError, Kind, Rotation, MAX_TOLERANCE_S};
use crate::secret::Secret;

/// Hash of the generic HMAC scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

/// How the generic HMAC scheme writes its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    Hex,
    Base64,
}

/// `[providers.<name>]` of kind `hmac`: a signature scheme described by its keys.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The signing secret.
    pub secret: Option<Secret>,
    /// Several secrets accepted at once (rotation); deliveries and `send` sign with the first
    /// of `secret` then `secrets`.
    pub secrets: Vec<Secret>,
    /// Accepted age and future skew of the timestamp in `timestamp_header`.
    pub tolerance_seconds: u64,
    /// The header that carries the signature.
    pub header: Option<String>,
    pub algorithm: HmacAlgorithm,
    pub encoding: SignatureEncoding,
    /// A prefix before the digest in the header, e.g. `sha256=`.
    pub prefix: String,
    /// The header that carries a Unix timestamp, checked against the tolerance.
    pub timestamp_header: Option<String>,
    /// What is signed; `{body}`, `{timestamp}` and `{id}` are replaced.
    pub signed_content: String,
    /// Where the event id (the dedup key) is: a header, or a JSON pointer.
    pub id_header: Option<String>,
    pub id_pointer: Option<String>,
    /// Where the event type is: a header, or a JSON pointer.
    pub type_header: Option<String>,
    pub type_pointer: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            secret: None,
            secrets: Vec::new(),
            tolerance_seconds: 300,
            header: None,
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            prefix: String::new(),
            timestamp_header: None,
            signed_content: "{body}".to_string(),
            id_header: None,
            id_pointer: None,
            type_header: None,
            type_pointer: None,
        }
    }
}

impl Kind for Hmac {
    const KEYS: &'static [&'static str] = &[
        "secret",
        "secrets",
        "tolerance_seconds",
        "header",
        "algorithm",
        "encoding",
        "prefix",
        "timestamp_header",
        "signed_content",
        "id_header",
        "id_pointer",
        "type_header",
        "type_pointer",
    ];

    type Settings = Settings;

    /// Checks the settings of `[providers.<name>]` and builds the provider. A missing secret is
    /// no error here: the endpoint is then marked unconfigured and answers 503.
    fn from_settings(name: &str, c: &Settings) -> Result<Hmac, ConfigError> {
        let key = |k: &str| format!("providers.{name}.{k}");
        let header = match &c.header {
            Some(h) => header_name(&key("header"), h)?,
            None => return Err(ConfigError::new(key("header"), "is required for kind hmac")),
        };
        let other_header = |k: &str, value: &Option<String>| -> Result<Option<&'static str>, ConfigError> {
            let Some(value) = value else { return Ok(None) };
            let parsed = header_name(&key(k), value)?;
            // The signature header is replaced on every delivery; sharing it would clobber this
            // one.
            if parsed == header {
                return Err(ConfigError::new(
                    key(k),
                    format!("is the signature header `{header}`; use another header"),
                ));
            }
            Ok(Some(parsed))
        };
        let timestamp_header = other_header("timestamp_header", &c.timestamp_header)?;
        let id_header = other_header("id_header", &c.id_header)?;
        let type_header = other_header("type_header", &c.type_header)?;
        // Each carries its own value (a delivery sends a fresh timestamp and keeps the id): one
        // header for two of them would make the id the type, and every later event of that
        // type a duplicate, or the type a timestamp.
        let named = [("timestamp_header", timestamp_header), ("id_header", id_header), ("type_header", type_header)];
        for (i, (a, a_header)) in named.iter().enumerate() {
            if let Some((b, _)) = named[i + 1..].iter().find(|(_, b_header)| a_header.is_some() && b_header == a_header)
            {
                return Err(ConfigError::new(key(b), format!("and {} name the same header", key(a))));
            }
        }

        let source = |what: &str, header: Option<&'static str>, pointer: &Option<String>| match (header, pointer) {
            (Some(_), Some(_)) => Err(ConfigError::new(
                key(&format!("{what}_header")),
                format!("and {} are both set; set one of them", key(&format!("{what}_pointer"))),
            )),
            (Some(h), None) => Ok(Some(Source::Header(h))),
            (None, Some(p)) => json_pointer(&key(&format!("{what}_pointer")), p).map(|p| Some(Source::Pointer(p))),
            (None, None) => Ok(None),
        };
        let id_source = source("id", id_header, &c.id_pointer)?;
        let type_source = source("type", type_header, &c.type_pointer)?;
        // No body could hold an id and a type at one place, or one inside the other.
        if let (Some(Source::Pointer(id)), Some(Source::Pointer(kind))) = (&id_source, &type_source) {
            let inside = |outer: &str, inner: &str| inner.strip_prefix(outer).is_some_and(|r| r.starts_with('/'));
            if id == kind || inside(id, kind) || inside(kind, id) {
                return Err(ConfigError::new(
                    key("id_pointer"),
                    format!(
                        "`{id}` and {} `{kind}` overlap; the id and the type are two members of the body",
                        key("type_pointer")
                    ),
                ));
            }
        }

        let template = parse_template(&c.signed_content).map_err(|m| ConfigError::new(key("signed_content"), m))?;
        if !template.contains(&Part::Body) {
            return Err(ConfigError::new(
                key("signed_content"),
                "must contain {body}, or the body would not be signed",
            ));
        }
        if template.contains(&Part::Timestamp) && timestamp_header.is_none() {
            return Err(ConfigError::new(
                key("signed_content"),
                format!("uses {{timestamp}} but {} is not set", key("timestamp_header")),
            ));
        }
        if template.contains(&Part::Id) && id_header.is_none() {
            return Err(ConfigError::new(
                key("signed_content"),
                format!("uses {{id}} but {} is not set", key("id_header")),
            ));
        }

        // The prefix is sent as part of a header value by `sign_delivery`.
        if HeaderValue::from_str(&c.prefix).is_err() || !c.prefix.is_ascii() {
            return Err(ConfigError::new(key("prefix"), "must be printable ASCII, such as `sha256=`"));
        }
        if timestamp_header.is_some() && !(1..=MAX_TOLERANCE_S).contains(&c.tolerance_seconds) {
            return Err(ConfigError::new(
                key("tolerance_seconds"),
                format!("must be between 1 and {MAX_TOLERANCE_S} (a year)"),
            ));
        }
        let secrets = Self::rotation(c).nonempty(name)?;

        Ok(Hmac {
            name: name.to_string(),
            secrets,
            header,
            algorithm: c.algorithm,
            encoding: c.encoding,
            prefix: c.prefix.clone(),
            timestamp_header,
            tolerance_s: c.tolerance_seconds,
            template,
            id_source,
            type_source,
        })
    }

    fn rotation(c: &Settings) -> Rotation<'_> {
        Rotation::new(&c.secret, &c.secrets)
    }

    fn tolerance_seconds(c: &Settings) -> Option<u64> {
        Some(c.tolerance_seconds)
    }
}

/// A configured header name, lowercased (as `HeaderMap` and the stored headers have them) and
/// made `'static` for [`Signed`](crate::providers::Signed).
fn header_name(key: &str, value: &str) -> Result<&'static str, ConfigError> {
    match HeaderName::from_bytes(value.as_bytes()) {
        Ok(name) => Ok(intern(name.as_str())),
        Err(_) => Err(ConfigError::new(key, format!("`{value}` is not a valid HTTP header name"))),
    }
}

/// `Signed` names its headers with `&'static str`, which a name read from the configuration is
/// not. Leaking is acceptable because it is bounded: each distinct name is leaked once for the
/// life of the process, however often a configuration is built, and there are only as many as
/// the configuration spells out (a few bytes each).
fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<parking_lot::Mutex<BTreeSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock();
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// Checks an RFC 6901 JSON pointer: empty (the whole document) or `/`-separated tokens in which
/// `~` only starts `~0` or `~1`. serde_json would quietly treat anything else as "not found".
fn json_pointer(key: &str, pointer: &str) -> Result<String, ConfigError> {
    if !(pointer.is_empty() || pointer.starts_with('/')) {
        return Err(ConfigError::new(
            key,
            format!("`{pointer}` is not a JSON pointer: it must be empty or start with `/`, as in /id"),
        ));
    }
    let bytes = pointer.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'~' && !matches!(bytes.get(i + 1), Some(b'0' | b'1')) {
            return Err(ConfigError::new(
                key,
                format!("`{pointer}` is not a JSON pointer: `~` must be followed by 0 or 1"),
            ));
        }
    }
    Ok(pointer.to_string())
}

/// Splits `signed_content` into text and placeholders.
// A String: the reason alone, which the caller puts after the key (`ConfigError`).
fn parse_template(template: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut text = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        text.extend_from_slice(&rest.as_bytes()[..open]);
        let after = &rest[open + 1..];
        let name_len = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('}') {
            let part = match &after[..name_len] {
                "body" => Part::Body,
                "timestamp" => Part::Timestamp,
                "id" => Part::Id,
                other => {
                    return Err(format!(
                        "has an unknown placeholder {{{other}}}; known: {{body}}, {{timestamp}}, {{id}}"
                    ))
                }
            };
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(part);
            rest = &after[name_len + 1..];
        } else {
            text.push(b'{');
            rest = after;
        }
    }
    text.extend_from_slice(rest.as_bytes());
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::hmac::tests::{build, config, github};

    #[test]
    fn header_names_are_lowercased_and_leaked_once() {
        let a = build(&github("k"));
        let b = build(&github("k"));
        assert_eq!(a.header, "x-hub-signature-256");
        assert!(std::ptr::eq(a.header, b.header));
    }

    #[test]
    fn templates_split_into_text_and_placeholders() {
        assert_eq!(parse_template("{body}").unwrap(), [Part::Body]);
        assert_eq!(
            parse_template("v0:{timestamp}:{body}").unwrap(),
            [Part::Text(b"v0:".to_vec()), Part::Timestamp, Part::Text(b":".to_vec()), Part::Body]
        );
        assert_eq!(
            parse_template("{ {}{body}}").unwrap(),
            [Part::Text(b"{ {}".to_vec()), Part::Body, Part::Text(b"}".to_vec())]
        );
        assert!(parse_template("{bdy}").unwrap_err().contains("{bdy}"));
    }

    #[test]
    fn every_malformed_setting_is_refused_naming_its_key() {
        let cases: Vec<(Settings, &str)> = vec![
            (Settings { header: None, ..config("x", "k") }, "providers.test.header is required for kind hmac"),
            (config("bad header", "k"), "providers.test.header `bad header` is not a valid HTTP header name"),
            (config("", "k"), "providers.test.header `` is not a valid HTTP header name"),
            (
                Settings { timestamp_header: Some("t s".into()), ..config("x", "k") },
                "providers.test.timestamp_header `t s`",
            ),
            (Settings { id_header: Some("(id)".into()), ..config("x", "k") }, "providers.test.id_header `(id)`"),
            (Settings { type_header: Some("ty:pe".into()), ..config("x", "k") }, "providers.test.type_header `ty:pe`"),
            (
                Settings { id_header: Some("X".into()), ..config("x", "k") },
                "providers.test.id_header is the signature header",
            ),
            (
                Settings { id_header: Some("t".into()), timestamp_header: Some("t".into()), ..config("x", "k") },
                "providers.test.id_header and providers.test.timestamp_header name the same header",
            ),
            // Found by the property tests (tests/it/fuzz.rs): each of these made `stagehook send`
            // post an event whose id or type was another setting's value, or none at all.
            (
                Settings {
                    timestamp_header: Some("x-timestamp".into()),
                    type_header: Some("x-timestamp".into()),
                    ..config("x-signature", "k")
                },
                "providers.test.type_header and providers.test.timestamp_header name the same header",
            ),
            (
                Settings { id_header: Some("x-id".into()), type_header: Some("X-Id".into()), ..config("x", "k") },
                "providers.test.type_header and providers.test.id_header name the same header",
            ),
            (
                Settings { id_pointer: Some("/".into()), type_pointer: Some(String::new()), ..config("x", "k") },
                "providers.test.id_pointer `/` and providers.test.type_pointer `` overlap",
            ),
            (
                Settings { id_pointer: Some(String::new()), type_pointer: Some(String::new()), ..config("x", "k") },
                "providers.test.id_pointer `` and providers.test.type_pointer `` overlap",
            ),
            (
                Settings { id_pointer: Some("/a/b".into()), type_pointer: Some("/a".into()), ..config("x", "k") },
                "providers.test.id_pointer `/a/b` and providers.test.type_pointer `/a` overlap",
            ),
            (
                Settings { id_header: Some("i".into()), id_pointer: Some("/id".into()), ..config("x", "k") },
                "providers.test.id_header and providers.test.id_pointer are both set",
            ),
            (
                Settings { type_header: Some("t".into()), type_pointer: Some("/t".into()), ..config("x", "k") },
                "providers.test.type_header and providers.test.type_pointer are both set",
            ),
            (
                Settings { id_pointer: Some("id".into()), ..config("x", "k") },
                "providers.test.id_pointer `id` is not a JSON pointer",
            ),
            (
                Settings { type_pointer: Some("/a~2".into()), ..config("x", "k") },
                "providers.test.type_pointer `/a~2` is not a JSON pointer",
            ),
            (
                Settings { signed_content: "{timestamp}.{body}".into(), ..config("x", "k") },
                "providers.test.signed_content uses {timestamp} but providers.test.timestamp_header is not set",
            ),
            (
                Settings { signed_content: "{id}.{body}".into(), ..config("x", "k") },
                "providers.test.signed_content uses {id} but providers.test.id_header is not set",
            ),
            (
                Settings { signed_content: "{id}.{body}".into(), id_pointer: Some("/id".into()), ..config("x", "k") },
                "providers.test.signed_content uses {id} but providers.test.id_header is not set",
            ),
            (
                Settings { signed_content: "{ts}.{body}".into(), ..config("x", "k") },
                "providers.test.signed_content has an unknown placeholder {ts}",
            ),
            (
                Settings { signed_content: "static".into(), ..config("x", "k") },
                "providers.test.signed_content must contain {body}",
            ),
            (
                Settings { prefix: "s\u{e9}=".into(), ..config("x", "k") },
                "providers.test.prefix must be printable ASCII",
            ),
            (Settings { prefix: "a\nb".into(), ..config("x", "k") }, "providers.test.prefix must be printable ASCII"),
            (
                Settings { timestamp_header: Some("t".into()), tolerance_seconds: 0, ..config("x", "k") },
                "providers.test.tolerance_seconds must be between 1 and",
            ),
            (
                Settings {
                    timestamp_header: Some("t".into()),
                    tolerance_seconds: MAX_TOLERANCE_S + 1,
                    ..config("x", "k")
                },
                "providers.test.tolerance_seconds must be between 1 and",
            ),
            (config("x", ""), "providers.test.secret is empty"),
            (
                Settings { secrets: vec![Secret::new("a"), Secret::new("")], ..config("x", "k") },
                "providers.test.secrets[1] is empty",
            ),
        ];
        for (c, expected) in cases {
            match Hmac::from_settings("test", &c) {
                Ok(_) => panic!("accepted, expected: {expected}"),
                Err(message) => {
                    assert!(
                        crate::providers::kind::said(&message).starts_with(expected),
                        "{message:?} does not start with {expected:?}"
                    )
                }
            }
        }
        // A missing secret is for the endpoint to report (503), not a configuration error; and a
        // tolerance without a timestamp header is unused, not wrong.
        Hmac::from_settings("test", &Settings { secret: None, tolerance_seconds: 0, ..config("x", "k") }).unwrap();
        Hmac::from_settings("test", &Settings { id_pointer: Some(String::new()), ..config("x", "k") }).unwrap();
        Hmac::from_settings("test", &Settings { type_pointer: Some("/a~0b/~1c/0".into()), ..config("x", "k") })
            .unwrap();
        // Neighbours, not one inside the other.
        for (id, kind) in [("/a", "/ab"), ("/a~1b", "/a/b"), ("/data/id", "/data/type")] {
            let c = Settings { id_pointer: Some(id.into()), type_pointer: Some(kind.into()), ..config("x", "k") };
            Hmac::from_settings("test", &c).unwrap();
        }
    }
}
