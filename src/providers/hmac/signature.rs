//! The signature itself: the signed bytes built from `signed_content`, the digest under the
//! configured hash, and its encodings (hex, base64) and header form (prefix, several items per
//! header). Separate so that what is sent and what is accepted are read side by side: both
//! `verify` and `sign_resend` go through these few functions.

use std::borrow::Cow;

use base64::Engine;

use super::{Hmac, HmacAlgorithm, Part, SignatureEncoding};
use crate::providers::signing::{self, HmacSha1, HmacSha256, HmacSha512};

impl Hmac {
    pub(super) fn uses(&self, part: &Part) -> bool {
        self.template.contains(part)
    }

    /// `signed_content` with its placeholders replaced; the body alone is borrowed, not copied.
    pub(super) fn signed_bytes<'a>(&self, timestamp: &str, id: &str, body: &'a [u8]) -> Cow<'a, [u8]> {
        if let [Part::Body] = self.template.as_slice() {
            return Cow::Borrowed(body);
        }
        let mut out = Vec::with_capacity(body.len() + 64);
        for part in &self.template {
            match part {
                Part::Text(t) => out.extend_from_slice(t),
                Part::Body => out.extend_from_slice(body),
                Part::Timestamp => out.extend_from_slice(timestamp.as_bytes()),
                Part::Id => out.extend_from_slice(id.as_bytes()),
            }
        }
        Cow::Owned(out)
    }

    /// The header value this scheme sends for `signed` under `secret`.
    pub(super) fn signature(&self, secret: &str, signed: &[u8]) -> String {
        let digest = mac(self.algorithm, secret.as_bytes(), signed);
        let encoded = match self.encoding {
            SignatureEncoding::Hex => hex::encode(digest),
            SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(digest),
        };
        format!("{}{encoded}", self.prefix)
    }

    /// The signatures in a header value, prefix removed, as text.
    pub(super) fn candidates<'h>(&self, value: &'h str) -> Vec<&'h str> {
        let prefix = self.prefix.as_str();
        value
            .split(|c: char| (c == ',' || c.is_ascii_whitespace()) && !prefix.contains(c))
            .filter_map(|item| item.strip_prefix(prefix))
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub(super) fn decode(&self, signature: &str) -> Option<Vec<u8>> {
        match self.encoding {
            SignatureEncoding::Hex => hex::decode(signature).ok(),
            SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD.decode(signature).ok(),
        }
    }

    pub(super) fn encoding_name(&self) -> &'static str {
        match self.encoding {
            SignatureEncoding::Hex => "hex",
            SignatureEncoding::Base64 => "base64",
        }
    }
}

pub(super) fn mac(algorithm: HmacAlgorithm, key: &[u8], message: &[u8]) -> Vec<u8> {
    match algorithm {
        HmacAlgorithm::Sha1 => signing::mac::<HmacSha1>(key, [message]).to_vec(),
        HmacAlgorithm::Sha256 => signing::mac::<HmacSha256>(key, [message]).to_vec(),
        HmacAlgorithm::Sha512 => signing::mac::<HmacSha512>(key, [message]).to_vec(),
    }
}
