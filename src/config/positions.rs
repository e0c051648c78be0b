//! Where in the TOML text an error is: the key serde names, the line it is written on, and a
//! suggestion for a slip in a key's name.

use super::{err, Config, ConfigError};
use crate::providers::registry;

impl Config {
    /// Parses TOML, naming the key of the first unknown or badly typed entry.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            // toml's message starts with a location and a source excerpt; the last line is the
            // reason, which is what a person needs next to the key.
            let mut message = inner.message().trim().to_string();
            let key = if key == "." { String::new() } else { key };
            if !message.contains("did you mean") {
                message.push_str(&unknown_field_hint(&message));
            }
            // toml's span is the section's for a key read inside a provider section (and for
            // an unknown key); the key's own line is found in the text, the span's kept for a
            // place inside an array, and for what the text does not show.
            let span_line = inner.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let path = fault_path(&key, &message);
            let line = match (key_line(text, &path), span_line) {
                (Some(own), Some(span)) if key.ends_with(']') && span >= own => Some(span),
                (Some(own), _) => Some(own),
                (None, span) => span,
            };
            err(&key, format!("{message}{}", line.map(|l| format!(" (line {l})")).unwrap_or_default()))
        })
    }
}

/// `; did you mean `x`?` when one of `candidates` is a likely slip for `word`
/// ([`registry::nearest`]), else nothing.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    registry::nearest(word, candidates).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default()
}

/// The suggestion for serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`
/// or `b`"), from the fields it lists: the keys that section accepts.
fn unknown_field_hint(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else { return String::new() };
    let Some((field, rest)) = rest.split_once('`') else { return String::new() };
    let Some((_, expected)) = rest.split_once("expected") else { return String::new() };
    did_you_mean(field, expected.split('`').skip(1).step_by(2))
}

/// The dotted path of what an error is about, as segments: its key, and below it the field an
/// unknown-field error names, or the provider a `needs kind` error names.
fn fault_path(key: &str, message: &str) -> Vec<String> {
    let mut path: Vec<String> = if key.is_empty() { Vec::new() } else { split_key(key) };
    let below = ["unknown field `", "provider `"]
        .iter()
        .find_map(|p| message.strip_prefix(p).and_then(|rest| rest.split_once('`')).map(|(name, _)| name));
    if let Some(name) = below {
        path.push(name.to_string());
    }
    path
}

/// `a.b[1]."c"` → `[a, b, c]`: a key's segments, without indexes or quotes.
fn split_key(key: &str) -> Vec<String> {
    key.split('.')
        .map(|part| {
            let part = part.split('[').next().unwrap_or(part).trim();
            part.trim_matches(|c| c == '"' || c == '\'').to_string()
        })
        .filter(|part| !part.is_empty())
        .collect()
}

/// The line (from 1) where `path` is written in `text`: the line of its key (`key = ...`
/// under its table's header, or dotted), else the header of the table it is (`[path]`), else
/// the line of a key whose value holds it (an inline table). Read from the text, line by line,
/// which is enough for a file as people write one; a line inside a multi-line string could be
/// mistaken for a key, which costs only a wrong line number.
fn key_line(text: &str, path: &[String]) -> Option<usize> {
    if path.is_empty() {
        return None;
    }
    let mut table: Vec<String> = Vec::new();
    let mut holder = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_start_matches('[');
            table = split_key(header.split(']').next().unwrap_or(header));
            if table == path {
                return Some(i + 1);
            }
            continue;
        }
        let Some((key, _)) = line.split_once('=') else { continue };
        let full: Vec<String> = table.iter().cloned().chain(split_key(key)).collect();
        if full == path {
            return Some(i + 1);
        }
        if holder.is_none() && full.len() > table.len() && path.starts_with(&full) {
            holder = Some(i + 1);
        }
    }
    holder
}
