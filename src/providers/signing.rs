//! What the HMAC-signed kinds share: the HMAC over a signed content given in parts, the check of
//! the candidate signatures of a request against every configured secret (rotation), and the
//! secret deliveries are signed with.
//!
//! What is a kind's own stays in its file: which header carries the signature, how the signed
//! content is put together, how the digest is written (hex, base64, a prefix), and the words of
//! its refusals.

use hmac::digest::{KeyInit, Output};
use hmac::Mac;

use crate::secret::Secret;

pub type HmacSha1 = hmac::Hmac<sha1::Sha1>;
pub type HmacSha256 = hmac::Hmac<sha2::Sha256>;
pub type HmacSha512 = hmac::Hmac<sha2::Sha512>;

/// `HMAC(key, parts one after another)`. The parts are fed one by one, so a signed content such
/// as `{t}.{body}` is never copied into one buffer.
pub fn mac<'a, M: Mac + KeyInit>(key: &[u8], parts: impl IntoIterator<Item = &'a [u8]>) -> Output<M> {
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes()
}

/// Whether any of `candidates` (the signatures a request carries) equals the signature
/// `expected` computes for any of `keys` (every accepted secret, or secret and URL variant).
///
/// Every candidate is compared with every key's signature, in constant time, without stopping
/// at the first match: a fold, not `any`, so the time taken does not say which secret (or which
/// candidate) matched.
pub fn any_matches<K, E, C>(keys: impl IntoIterator<Item = K>, candidates: C, expected: impl Fn(K) -> E) -> bool
where
    E: AsRef<[u8]>,
    C: IntoIterator + Clone,
    C::Item: AsRef<[u8]>,
{
    keys.into_iter().fold(false, |acc, key| {
        let expected = expected(key);
        candidates.clone().into_iter().fold(acc, |acc, candidate| acc | ct_eq(expected.as_ref(), candidate.as_ref()))
    })
}

/// The secret deliveries are signed with: the first of the rotation. With none configured, the
/// empty key, so that signing never fails (the endpoint then accepts nothing to deliver).
pub fn signing_secret(secrets: &[Secret]) -> &str {
    secrets.first().map(Secret::expose).unwrap_or("")
}

/// Compares two byte strings in constant time (for equal lengths; a length is no secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_sign_what_their_concatenation_signs() {
        // RFC 4231's second case, split at arbitrary places.
        let whole = mac::<HmacSha256>(b"Jefe", [&b"what do ya want for nothing?"[..]]);
        let parts = mac::<HmacSha256>(b"Jefe", [&b"what do"[..], b"", b" ya want ", b"for nothing?"]);
        assert_eq!(whole, parts);
        assert_eq!(hex::encode(whole), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn any_candidate_may_match_any_key_and_nothing_matches_without_keys() {
        let sign = |k: &str| hex::encode(mac::<HmacSha1>(k.as_bytes(), [&b"body"[..]]));
        let (a, b) = (sign("a"), sign("b"));
        assert!(any_matches(["x", "b"], [a.as_str(), b.as_str()], sign));
        assert!(any_matches(["a"], ["junk", a.as_str()], sign));
        assert!(!any_matches(["x", "y"], [a.as_str(), b.as_str()], sign));
        assert!(!any_matches([] as [&str; 0], [a.as_str()], sign));
        assert!(!any_matches(["a"], [] as [&str; 0], sign));
        assert!(!any_matches(["a"], [&a[..a.len() - 1]], sign), "a prefix is not a match");
    }

    #[test]
    fn deliveries_use_the_first_secret() {
        assert_eq!(signing_secret(&[Secret::new("new"), Secret::new("old")]), "new");
        assert_eq!(signing_secret(&[]), "");
    }
}
