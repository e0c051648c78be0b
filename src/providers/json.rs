//! JSON bodies read with every object's keys unique, at any depth.
//!
//! JSON leaves a repeated key's meaning to the parser: serde_json keeps the last value, many
//! others the first. A body with `"id": "evt_A", "id": "evt_B"` would be recorded as one event
//! while the app, reading the same bytes, sees another; `"livemode": true, "livemode": false`
//! would pass the live-mode refusal. No provider sends a repeated key, so every JSON body (and
//! an edit's or a dry run's JSON value) is refused with `invalid_payload` when it has one.
//!
//! The check rides on the parse that was made anyway: [`parse`] builds the `Value` as
//! serde_json's own does and finds a repeated key in the insert it makes anyway; [`Checked`]
//! reads without building (Stripe's fast path) and compares a hash of each key, without
//! allocating for an ordinary object ([`Keys`]). Where a repeat is, is worked out only after
//! one is found.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Why a body is not JSON with unique keys.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// Not JSON at all: the parser's own words (callers say "not JSON" their own way).
    #[error("{0}")]
    Syntax(serde_json::Error),
    /// An object holds `key` twice; `at` is the object's path (`$`, `$.data.object`, `$[2]`).
    #[error("duplicate key `{}` at {at}", shown(key))]
    Duplicate { key: String, at: String },
}

impl JsonError {
    /// A syntax error after `not_json` ("body is not JSON: ..."), a repeat in its own words.
    pub fn said(&self, not_json: &str) -> String {
        match self {
            JsonError::Syntax(e) => format!("{not_json}{e}"),
            duplicate => duplicate.to_string(),
        }
    }
}

/// `body` as a `Value`, refused when any object in it repeats a key.
pub fn parse(body: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut found = None;
    let value = Unique { found: &mut found }.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    value.map_err(|e| match found {
        Some(d) => d.into_error(),
        None => JsonError::Syntax(e),
    })
}

/// [`parse`] of a text.
pub fn parse_str(text: &str) -> Result<Value, JsonError> {
    parse(text.as_bytes())
}

/// For `#[serde(deserialize_with = ...)]`: a JSON value inside a request (an edit's `body`, a
/// dry run's `payload`), refused as [`parse`] refuses a body; the path is the value's own.
pub fn unique_value<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    let mut found = None;
    Unique { found: &mut found }.deserialize(d).map_err(|e| match found {
        Some(dup) => de::Error::custom(dup.into_error()),
        None => e,
    })
}

/// [`unique_value`] of an optional member (`#[serde(default)]`), `null` being none.
pub fn unique_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    unique_value(d).map(|v| Some(v).filter(|v| !v.is_null()))
}

/// A repeat found, and the path to its object, innermost step first while the error unwinds.
struct Found {
    key: String,
    steps: Vec<Step>,
}

enum Step {
    Key(String),
    Index(usize),
}

impl Found {
    fn into_error(self) -> JsonError {
        let mut at = String::from("$");
        for step in self.steps.iter().rev() {
            match step {
                Step::Index(i) => at.push_str(&format!("[{i}]")),
                Step::Key(k) if !k.is_empty() && k.len() <= 64 && plain(k) => {
                    at.push('.');
                    at.push_str(k);
                }
                Step::Key(k) => {
                    at.push('[');
                    at.push_str(&serde_json::to_string(shown(k).as_ref()).unwrap_or_default());
                    at.push(']');
                }
            }
        }
        JsonError::Duplicate { key: self.key, at }
    }
}

/// A key that reads unambiguously after a `.`.
fn plain(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A key as a message shows it: a client's megabyte-long key is cut, at a character boundary.
pub fn shown(key: &str) -> Cow<'_, str> {
    const MOST: usize = 64;
    if key.len() <= MOST {
        return Cow::Borrowed(key);
    }
    Cow::Owned(format!("{}…", crate::text::cut(key, MOST)))
}

/// Builds a `Value` as serde_json's own visitor does (same numbers, same strings); an object's
/// insert that finds its key taken is the repeat.
struct Unique<'f> {
    found: &'f mut Option<Found>,
}

impl<'de> DeserializeSeed<'de> for Unique<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            match seq.next_element_seed(Unique { found: &mut *self.found }) {
                Ok(Some(v)) => out.push(v),
                Ok(None) => return Ok(Value::Array(out)),
                Err(e) => {
                    if let Some(f) = self.found.as_mut() {
                        f.steps.push(Step::Index(out.len()));
                    }
                    return Err(e);
                }
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = match map.next_value_seed(Unique { found: &mut *self.found }) {
                Ok(v) => v,
                Err(e) => {
                    if let Some(f) = self.found.as_mut() {
                        f.steps.push(Step::Key(key));
                    }
                    return Err(e);
                }
            };
            match out.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(taken) => {
                    *self.found = Some(Found { key: taken.key().clone(), steps: Vec::new() });
                    return Err(de::Error::custom("duplicate key"));
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// Any JSON value, read as fully as [`parse`] reads it (numbers in range, escapes and
/// surrogates decoded, keys unique) and kept nowhere: for a reader that takes a few members
/// and must refuse whatever `parse` refuses. Not serde's `IgnoredAny`: serde_json skips those
/// unchecked, so a body `parse` refuses would pass. A failure says only that; `parse` says why.
pub struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Checked, D::Error> {
        d.deserialize_any(CheckedVisitor)
    }
}

/// What [`Checked`] keeps of an object's keys: a 64-bit hash of each, compared as they arrive,
/// with no allocation for the first [`Keys::INLINE`]; past those, sorted once when the object
/// ends, so a hostile object of many keys costs `n log n`. Two different keys with one hash
/// are taken for a repeat: a reader that uses `Checked` as a fast path refuses a little too
/// much, never too little, and [`parse`] (which compares the keys themselves) decides.
pub struct Keys {
    inline: [u64; Keys::INLINE],
    len: usize,
    repeat: bool,
    more: Vec<u64>,
}

impl Default for Keys {
    fn default() -> Keys {
        Keys { inline: [0; Keys::INLINE], len: 0, repeat: false, more: Vec::new() }
    }
}

impl Keys {
    /// More than most objects hold (a Stripe event's envelope has 9 members).
    const INLINE: usize = 16;

    pub fn push(&mut self, key: &str) {
        let hash = Keys::hash(key.as_bytes());
        if self.len < Keys::INLINE {
            self.repeat |= self.inline[..self.len].contains(&hash);
            self.inline[self.len] = hash;
            self.len += 1;
        } else {
            self.more.push(hash);
        }
    }

    /// A word at a time (a byte at a time cost more than reading the key did); any collision
    /// only sends the reader to [`parse`].
    fn hash(key: &[u8]) -> u64 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut h = (key.len() as u64).wrapping_mul(K);
        let mut words = key.chunks_exact(8);
        for word in &mut words {
            h = (h ^ u64::from_le_bytes(word.try_into().unwrap_or_default())).wrapping_mul(K).rotate_left(29);
        }
        let mut last = [0u8; 8];
        last[..words.remainder().len()].copy_from_slice(words.remainder());
        h = (h ^ u64::from_le_bytes(last)).wrapping_mul(K);
        h ^ (h >> 32)
    }

    /// Whether every key pushed was new; an error of `E` naming no key (`parse` names it).
    pub fn unique<E: de::Error>(mut self) -> Result<(), E> {
        if !self.repeat && !self.more.is_empty() {
            self.more.extend_from_slice(&self.inline);
            self.more.sort_unstable();
            self.repeat = self.more.windows(2).any(|w| w[0] == w[1]);
        }
        match self.repeat {
            false => Ok(()),
            true => Err(E::custom("duplicate key")),
        }
    }
}

/// A string (a key, or a member's text), borrowed from the body unless it has escapes (serde's
/// own `Cow` always copies).
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text<'de>, D::Error> {
        struct Chars;
        impl<'de> Visitor<'de> for Chars {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(Chars)
    }
}

/// The visitor of [`Checked`]: takes every kind of value, keeps none but an object's keys until
/// it ends. `deserialize_map` with it takes an object only.
pub struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let mut keys = Keys::default();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            map.next_value::<Checked>()?;
            keys.push(&key);
        }
        keys.unique()?;
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> String {
        parse_str(text).unwrap_err().to_string()
    }

    #[test]
    fn a_repeated_key_is_refused_naming_it_and_its_object() {
        assert_eq!(refused(r#"{"id":"evt_A","id":"evt_B"}"#), "duplicate key `id` at $");
        assert_eq!(
            refused(r#"{"data":{"object":{"a":1,"b":[1,{"c":2}],"a":3}}}"#),
            "duplicate key `a` at $.data.object"
        );
        assert_eq!(refused(r#"[0,{"x":[{},{"k":1,"k":1}]}]"#), "duplicate key `k` at $[1].x[1]");
        assert_eq!(refused(r#"{"a b":{"\u0069d":1,"id":2}}"#), r#"duplicate key `id` at $["a b"]"#);
        let long = "k".repeat(100);
        let message = refused(&format!(r#"{{"{long}":{{"z":1,"z":2}},"{long}":1}}"#));
        assert!(message.starts_with("duplicate key `z` at $[\"kkk"), "{message}");
        assert!(message.len() < 120, "{message}");
        let message = refused(&format!(r#"{{"{long}":1,"{long}":2}}"#));
        assert!(message.contains('…') && message.len() < 120, "{message}");
    }

    #[test]
    fn the_same_key_in_sibling_or_nested_objects_is_fine() {
        let text = r#"{"id":1,"data":{"id":2,"object":{"id":3}},"list":[{"id":4},{"id":5}]}"#;
        assert_eq!(parse_str(text).unwrap(), serde_json::from_str::<Value>(text).unwrap());
        assert!(serde_json::from_str::<Checked>(text).is_ok());
    }

    #[test]
    fn values_are_those_serde_json_builds_and_syntax_errors_its_words() {
        for text in ["1", "-1", "1.5e300", "18446744073709551615", "null", "\"\\ud83d\\ude00\"", "[[[]]]", "{}"] {
            assert_eq!(parse_str(text).unwrap(), serde_json::from_str::<Value>(text).unwrap(), "{text}");
            assert!(serde_json::from_str::<Checked>(text).is_ok(), "{text}");
        }
        for text in ["", "{", "[1,]", "{} x", "1e999", "\"\\ud800\"", &"[".repeat(200)] {
            let ours = parse_str(text).unwrap_err();
            let theirs = serde_json::from_str::<Value>(text).unwrap_err();
            assert!(matches!(ours, JsonError::Syntax(_)), "{text}");
            assert_eq!(ours.to_string(), theirs.to_string(), "{text}");
            assert_eq!(ours.said("not JSON: "), format!("not JSON: {theirs}"));
        }
    }

    #[test]
    fn checked_refuses_a_repeat_at_any_depth() {
        for text in [r#"{"a":1,"a":1}"#, r#"[{"x":{"b":[],"b":[]}}]"#, r#"{"a":{"\u0062":1,"b":2}}"#] {
            assert!(serde_json::from_str::<Checked>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn checked_compares_every_key_of_a_large_object() {
        let object = |keys: &[usize]| {
            let members: Vec<String> = keys.iter().map(|k| format!("\"key_{k}\":{k}")).collect();
            format!("{{{}}}", members.join(","))
        };
        let distinct: Vec<usize> = (0..1000).collect();
        assert!(serde_json::from_str::<Checked>(&object(&distinct)).is_ok());
        for (first, second) in [(3, 7), (3, 900), (500, 999)] {
            let mut keys = distinct.clone();
            keys[second] = keys[first];
            assert!(serde_json::from_str::<Checked>(&object(&keys)).is_err(), "{first} and {second}");
        }
    }

    #[test]
    fn a_value_inside_a_request_is_refused_the_same_way() {
        #[derive(Deserialize, Debug)]
        struct Request {
            #[serde(deserialize_with = "unique_value")]
            #[allow(dead_code)]
            payload: Value,
        }
        let e = serde_json::from_str::<Request>(r#"{"payload":{"data":{"x":1,"x":2}}}"#).unwrap_err();
        assert!(e.to_string().starts_with("duplicate key `x` at $.data"), "{e}");
        assert!(serde_json::from_str::<Request>(r#"{"payload":{"x":{"x":1}}}"#).is_ok());
    }
}
