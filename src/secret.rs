//! `Secret`: the one type that holds a credential.
//!
//! Its `Debug` and `Display` print a fingerprint (a short prefix and suffix plus a hash), never the
//! value, so a secret cannot leak through a log line, an error message or a panic.

use sha2::{Digest, Sha256};

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for the few places that sign or verify with it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A redacted fingerprint such as `whsec_…3f9a (sha256:1a2b3c4d)`.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        let short = hex::encode(&digest[..4]);
        // Show a recognisable prefix (`whsec_`) and the last four characters only when the secret
        // is long enough that they give away little of it.
        let prefix = self.0.find('_').filter(|&i| i < 8).map(|i| &self.0[..=i]).unwrap_or("");
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() >= 16 {
            let tail: String = chars[chars.len() - 4..].iter().collect();
            format!("{prefix}…{tail} (sha256:{short})")
        } else {
            format!("{prefix}… (sha256:{short})")
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({})", self.fingerprint())
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

/// Serialized as its fingerprint: a secret never leaves through a config dump.
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.fingerprint())
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("whsec_0123456789abcdefSECRETPART3f9a");
        let shown = format!("{s} {s:?}");
        assert!(!shown.contains("SECRETPART"), "{shown}");
        assert!(shown.contains("whsec_…3f9a"), "{shown}");
        let short = Secret::new("12345");
        assert!(!format!("{short} {short:?}").contains("12345"));
    }
}
