//! Another spelling of the same content, for `accepts_exact_bytes`: a handler that verifies the
//! raw body accepts it (it is signed over exactly these bytes), one that verifies a parsed and
//! re-serialised copy does not, because the copy's bytes differ from what was signed.

/// `body` (of media type `content_type`) written unusually, with a note saying how: JSON with
/// extra spaces, its keys in reverse order and letters as `\u` escapes; a form with its
/// parameters in reverse order. `None` for another media type, or a body that does not parse.
pub fn unusual(content_type: &str, body: &[u8]) -> Option<(Vec<u8>, &'static str)> {
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media == "application/json" || media.ends_with("+json") {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let mut out = String::new();
        write_json(&value, &mut out);
        return Some((out.into_bytes(), "the same event as unusually formatted JSON (spaces, key order, \\u escapes)"));
    }
    if media == "application/x-www-form-urlencoded" {
        let text = std::str::from_utf8(body).ok()?;
        let mut pairs: Vec<&str> = text.split('&').filter(|p| !p.is_empty()).collect();
        if pairs.len() < 2 {
            return None;
        }
        pairs.reverse();
        return Some((pairs.join("&").into_bytes(), "the same form with its parameters in reverse order"));
    }
    None
}

fn write_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            out.push_str("{  ");
            // serde_json's map is sorted by key: reversed, no serializer writes it so.
            for (i, (k, v)) in map.iter().rev().enumerate() {
                if i > 0 {
                    out.push_str(" ,  ");
                }
                write_string(k, out);
                out.push_str(" :  ");
                write_json(v, out);
            }
            out.push_str("  }");
        }
        Value::Array(items) => {
            out.push_str("[ ");
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(" , ");
                }
                write_json(v, out);
            }
            out.push_str(" ]");
        }
        Value::String(s) => write_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

/// A JSON string with every non-ASCII character and every `e` as a `\u` escape (`\u0065`,
/// `\u00e9`), which no serializer writes for them.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            'e' => out.push_str("\\u0065"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_the_same_content_in_other_bytes() {
        let body = br#"{"a":"caf\u00e9 e","b":[1,{"z":null,"y":"\ud83d\ude00"}],"n":-1.5}"#;
        let (other, _) = unusual("application/json; charset=utf-8", body).unwrap();
        let text = String::from_utf8(other.clone()).unwrap();
        assert!(text.is_ascii(), "{text}");
        assert!(text.contains("\\u00e9") && text.contains("\\u0065") && text.contains("\\ud83d\\ude00"), "{text}");
        assert!(text.find("\"n\"").unwrap() < text.find("\"a\"").unwrap(), "{text}");
        let same: serde_json::Value = serde_json::from_slice(&other).unwrap();
        assert_eq!(same, serde_json::from_slice::<serde_json::Value>(body).unwrap());
        assert_ne!(serde_json::to_vec(&same).unwrap(), other);
    }

    #[test]
    fn a_form_is_reordered_and_other_media_types_have_no_other_spelling() {
        let (other, _) = unusual("application/x-www-form-urlencoded", b"A=1&B=2&C=3").unwrap();
        assert_eq!(other, b"C=3&B=2&A=1");
        assert_eq!(unusual("application/x-www-form-urlencoded", b"A=1"), None);
        assert_eq!(unusual("text/plain", b"x"), None);
        assert_eq!(unusual("application/json", b"{"), None);
    }
}
