//! The provider's part of a `[providers.<name>]` section: its kind and every key a kind reads.
//! `config` reads the section's common keys (`forward_to`, `timeout`, `retry`) itself and hands
//! every other key here ([`InstanceConfig::read_key`]); which keys a kind uses, and what they
//! must hold, each kind says in its own file (`Kind::KEYS`, `Kind::build`).

use serde::{Deserialize, Deserializer, Serialize};

use super::registry::ProviderKind;
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

/// One instance's provider settings: `kind` (optional when the name is a kind, as in
/// `[providers.github]` or the seed's `[providers.stripe]`) and the keys of every kind; a key
/// the instance's kind does not use is refused by the validator (`provider.unused_key`).
#[derive(Debug, Clone, Serialize)]
pub struct InstanceConfig {
    pub kind: Option<ProviderKind>,
    /// The signing secret (HMAC kinds; Twilio's auth token).
    pub secret: Option<Secret>,
    /// Several secrets accepted at once (rotation); deliveries and `send` sign with the first
    /// of `secret` then `secrets`.
    pub secrets: Vec<Secret>,
    /// SendGrid: the verification key, base64 DER (SubjectPublicKeyInfo) of a P-256 key.
    pub public_key: Option<String>,
    /// SendGrid: a base64 PKCS#8 P-256 private key, for `stagehook send` and re-signing
    /// deliveries in staging; without it deliveries carry SendGrid's own signature unchanged.
    pub signing_key: Option<Secret>,
    /// Accepted age (and, where the scheme says so, future skew) of a signed timestamp.
    pub tolerance_seconds: u64,
    /// Generic HMAC: the header that carries the signature.
    pub header: Option<String>,
    pub algorithm: HmacAlgorithm,
    pub encoding: SignatureEncoding,
    /// Generic HMAC: a prefix before the digest in the header, e.g. `sha256=`.
    pub prefix: String,
    /// Generic HMAC: the header that carries a Unix timestamp, checked against the tolerance.
    pub timestamp_header: Option<String>,
    /// Generic HMAC: what is signed; `{body}`, `{timestamp}` and `{id}` are replaced.
    pub signed_content: String,
    /// Generic HMAC: where the event id (the dedup key) is: a header, or a JSON pointer.
    pub id_header: Option<String>,
    pub id_pointer: Option<String>,
    /// Generic HMAC: where the event type is: a header, or a JSON pointer.
    pub type_header: Option<String>,
    pub type_pointer: Option<String>,
    /// Stripe: an API key, if the app under test uses one; only checked to be a test-mode key.
    pub api_key: Option<Secret>,
    /// Twilio: the account's auth token, Twilio's own name for `secret`.
    pub auth_token: Option<Secret>,
    /// Twilio: the account SID (`AC...`), if set; checked for isolation only.
    pub account_sid: Option<String>,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        InstanceConfig {
            kind: None,
            secret: None,
            secrets: Vec::new(),
            public_key: None,
            signing_key: None,
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
            api_key: None,
            auth_token: None,
            account_sid: None,
        }
    }
}

impl InstanceConfig {
    /// Every key [`InstanceConfig::read_key`] reads.
    pub const KEYS: [&'static str; 19] = [
        "kind",
        "secret",
        "secrets",
        "public_key",
        "signing_key",
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
        "api_key",
        "auth_token",
        "account_sid",
    ];

    /// Reads the value of `key`, one of [`InstanceConfig::KEYS`], from `d`. Key by key, so that
    /// `config` can read a section as a map and every error keeps its key's path.
    pub fn read_key<'de, D: Deserializer<'de>>(&mut self, key: &str, d: D) -> Result<(), D::Error> {
        fn de<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
            T::deserialize(d)
        }
        match key {
            "kind" => self.kind = de(d)?,
            "secret" => self.secret = de(d)?,
            "secrets" => self.secrets = de(d)?,
            "public_key" => self.public_key = de(d)?,
            "signing_key" => self.signing_key = de(d)?,
            "tolerance_seconds" => self.tolerance_seconds = de(d)?,
            "header" => self.header = de(d)?,
            "algorithm" => self.algorithm = de(d)?,
            "encoding" => self.encoding = de(d)?,
            "prefix" => self.prefix = de(d)?,
            "timestamp_header" => self.timestamp_header = de(d)?,
            "signed_content" => self.signed_content = de(d)?,
            "id_header" => self.id_header = de(d)?,
            "id_pointer" => self.id_pointer = de(d)?,
            "type_header" => self.type_header = de(d)?,
            "type_pointer" => self.type_pointer = de(d)?,
            "api_key" => self.api_key = de(d)?,
            "auth_token" => self.auth_token = de(d)?,
            "account_sid" => self.account_sid = de(d)?,
            other => return Err(serde::de::Error::unknown_field(other, &Self::KEYS)),
        }
        Ok(())
    }

    /// The instance's kind: `kind`, or the name when it is a kind.
    pub fn kind_of(&self, name: &str) -> ProviderKind {
        self.kind.or_else(|| ProviderKind::parse(name)).unwrap_or(ProviderKind::Hmac)
    }

    /// Every accepted secret, `secret` first.
    pub fn all_secrets(&self) -> Vec<Secret> {
        self.secret.iter().chain(self.secrets.iter()).cloned().collect()
    }

    /// `(key, value)` of every key set to something other than its default, as the validator
    /// compares them with the keys the kind reads. Secrets are fingerprints here, as always
    /// when settings are serialized.
    pub fn given(&self) -> Vec<(String, serde_json::Value)> {
        let given = serde_json::to_value(self).unwrap_or_default();
        let defaults = serde_json::to_value(InstanceConfig::default()).unwrap_or_default();
        let (Some(given), Some(defaults)) = (given.as_object(), defaults.as_object()) else { return Vec::new() };
        given.iter().filter(|(k, v)| defaults.get(*k) != Some(v)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The keys among `keys` that are set (an unset optional key is left out), with their
    /// values as serialized (secrets as fingerprints), for showing the section.
    pub fn shown(&self, keys: &[&'static str]) -> Vec<(&'static str, serde_json::Value)> {
        let all = serde_json::to_value(self).unwrap_or_default();
        let Some(all) = all.as_object() else { return Vec::new() };
        keys.iter().filter_map(|k| all.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v.clone()))).collect()
    }
}
