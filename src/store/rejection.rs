//! What the rejection log keeps of one refused request: bounded in bytes, whatever the request.
//!
//! Refused requests are unauthenticated by definition, so every part of an entry that comes
//! from the client is cut here, on the request's own thread, before it is queued for the
//! writer: one header value, one header name, the number of headers, all headers together, the
//! body and the message. [`Rejection::bounded`], which `Store::reject` calls on the refused
//! request's parts, is the only constructor used outside tests.
//! A cut is visible: a cut value ends in `…(truncated, N bytes)`, and headers left out are
//! summed up in one last pair named `…`, which no real header can be called.

use super::record::Rejection;

/// The first bytes of a refused body: enough to see what was sent (a JSON head, a form's first
/// fields), not enough for a flood of large bad requests to fill the disk.
pub const REJECTION_BODY_PREFIX: usize = 2048;
/// One header value, marker included. The longest signature headers (Stripe's or Standard
/// Webhooks' with several signatures during a rotation) are a few hundred bytes, and they are
/// what a person reads the log for.
pub const REJECTION_HEADER_VALUE_BYTES: usize = 512;
/// One header name. Real names are under 40 bytes; a longer one is an attack or a bug.
pub const REJECTION_HEADER_NAME_BYTES: usize = 128;
/// Headers kept. Providers send 5 to 20; proxies and CDNs add a few each.
pub const REJECTION_MAX_HEADERS: usize = 64;
/// All kept names and values together. A provider's request with a CDN's additions is 1-2 KiB,
/// so 4 KiB keeps all of it, while 16 KiB-headers floods store a quarter at most.
pub const REJECTION_HEADER_BYTES: usize = 4096;
/// The refusal's message. Ours, but some quote the request (a header that does not parse).
pub const REJECTION_MESSAGE_BYTES: usize = 1024;
/// A diagnosis's detail: a sentence or two naming a URL or a setting.
pub const REJECTION_DIAGNOSIS_BYTES: usize = 512;
/// The provider's name, the code and the client (an address or a proxy's name for it).
pub const REJECTION_SHORT_FIELD_BYTES: usize = 64;
/// The most one entry takes, encoded: the parts above, plus room for postcard's length
/// prefixes and numbers and the note on omitted headers. With `store.rejection_log_size` entries
/// (1000 by default) the log holds at most about that many times this (8 MB).
pub const REJECTION_ENTRY_BYTES: usize = REJECTION_BODY_PREFIX
    + REJECTION_HEADER_BYTES
    + REJECTION_MESSAGE_BYTES
    + REJECTION_DIAGNOSIS_BYTES
    + 5 * REJECTION_SHORT_FIELD_BYTES
    + 2 * 2 * (REJECTION_MAX_HEADERS + 1)
    + 256;

/// The name of the last pair when headers were left out.
pub const OMITTED_HEADERS: &str = "…";

impl Rejection {
    /// An entry for the rejection log, cut to at most [`REJECTION_ENTRY_BYTES`] when encoded.
    /// `headers` are (name, raw value) pairs in arrival order; only what is kept is copied.
    pub(super) fn bounded<'h>(
        at_ms: i64,
        provider: &str,
        code: &str,
        message: &str,
        source_ip: &str,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        body: &[u8],
    ) -> Rejection {
        let short = |s: &str| clip(s.as_bytes(), REJECTION_SHORT_FIELD_BYTES);
        Rejection {
            at_ms,
            provider: short(provider),
            code: short(code),
            message: clip(message.as_bytes(), REJECTION_MESSAGE_BYTES),
            source_ip: short(source_ip),
            headers: bounded_headers(headers),
            body_prefix: body[..body.len().min(REJECTION_BODY_PREFIX)].to_vec(),
            body_len: body.len() as u64,
            diagnosis: None,
        }
    }

    /// The entry with why its signature probably failed (a code and a detail), cut to bounds.
    pub(super) fn diagnosed(self, diagnosis: Option<(&str, &str)>) -> Rejection {
        let diagnosis = diagnosis.map(|(code, detail)| {
            (clip(code.as_bytes(), REJECTION_SHORT_FIELD_BYTES), clip(detail.as_bytes(), REJECTION_DIAGNOSIS_BYTES))
        });
        Rejection { diagnosis, ..self }
    }

    /// About the bytes this entry takes in a batch: what the writer's batch budget counts.
    pub(super) fn stored_bytes(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
        self.provider.len()
            + self.code.len()
            + self.message.len()
            + self.source_ip.len()
            + headers
            + self.body_prefix.len()
            + self.diagnosis.as_ref().map_or(0, |(code, detail)| code.len() + detail.len())
            + 32
    }
}

fn bounded_headers<'h>(headers: impl IntoIterator<Item = (&'h str, &'h [u8])>) -> Vec<(String, String)> {
    let mut kept = Vec::new();
    let mut used = 0;
    let (mut omitted, mut omitted_bytes) = (0usize, 0usize);
    for (name, value) in headers {
        // What this pair takes at least once cut: a pair that cannot fit is not copied at all.
        let least = |len: usize, max: usize| len.min(max - 3);
        let fits = |size: usize| kept.len() < REJECTION_MAX_HEADERS && used + size <= REJECTION_HEADER_BYTES;
        if fits(least(name.len(), REJECTION_HEADER_NAME_BYTES) + least(value.len(), REJECTION_HEADER_VALUE_BYTES)) {
            let pair = (clip(name.as_bytes(), REJECTION_HEADER_NAME_BYTES), clip(value, REJECTION_HEADER_VALUE_BYTES));
            let size = pair.0.len() + pair.1.len();
            if fits(size) {
                used += size;
                kept.push(pair);
                continue;
            }
        }
        omitted += 1;
        omitted_bytes += name.len() + value.len();
    }
    if omitted > 0 {
        kept.push((OMITTED_HEADERS.to_string(), format!("({omitted} more headers, {omitted_bytes} bytes, not kept)")));
    }
    kept
}

/// `bytes` as text (invalid UTF-8 replaced), at most `max` bytes long. A longer text keeps its
/// start and ends with `…(truncated, N bytes)`, N being the original length.
fn clip(bytes: &[u8], max: usize) -> String {
    if bytes.len() <= max {
        let text = String::from_utf8_lossy(bytes);
        if text.len() <= max {
            return text.into_owned();
        }
        // Replacement characters made it longer than it was; cut it like any long text.
    }
    let marker = format!("…(truncated, {} bytes)", bytes.len());
    // Only the start that is kept is converted, so a long value is never copied whole.
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]);
    let kept = crate::text::cut(&text, max.saturating_sub(marker.len()));
    let mut out = String::with_capacity(kept.len() + marker.len());
    out.push_str(kept);
    out.push_str(&marker);
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::store::record::{decode_rejection, encode_rejection};

    fn entry(headers: &[(&str, &[u8])], body: &[u8]) -> Rejection {
        Rejection::bounded(1, "stripe", "invalid_signature", "bad", "192.0.2.1", headers.iter().copied(), body)
    }

    #[test]
    fn a_long_value_is_cut_visibly_and_a_short_one_is_kept_whole() {
        let big = vec![b'a'; 4096];
        let e = entry(&[("stripe-signature", b"t=1,v1=abc"), ("x-pad", &big)], b"{}");
        assert_eq!(e.headers[0], ("stripe-signature".to_string(), "t=1,v1=abc".to_string()));
        let (name, value) = &e.headers[1];
        assert_eq!(name, "x-pad");
        assert_eq!(value.len(), REJECTION_HEADER_VALUE_BYTES);
        assert!(value.starts_with("aaaa") && value.ends_with("…(truncated, 4096 bytes)"), "{value}");
        assert_eq!(e.headers.len(), 2);
    }

    #[test]
    fn clip_cuts_on_a_character_and_never_exceeds_the_limit() {
        // (input, max, expected)
        let cases: [(Vec<u8>, usize, &str); 5] = [
            (b"short".to_vec(), 10, "short"),
            (b"exactly10!".to_vec(), 10, "exactly10!"),
            ("é".repeat(40).into_bytes(), 30, "ééé…(truncated, 80 bytes)"),
            // Not UTF-8: each byte becomes a 3-byte replacement character, still within the limit.
            (vec![0xff; 20], 30, "\u{fffd}\u{fffd}…(truncated, 20 bytes)"),
            (vec![0xff; 5], 30, "\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}"),
        ];
        for (input, max, expected) in cases {
            let out = clip(&input, max);
            assert_eq!(out, expected, "{input:?} to {max}");
            assert!(out.len() <= max, "{out}");
        }
    }

    #[test]
    fn headers_past_the_count_or_the_budget_are_summed_up() {
        let many: Vec<(String, Vec<u8>)> = (0..200).map(|i| (format!("x-h{i}"), b"v".to_vec())).collect();
        let pairs: Vec<(&str, &[u8])> = many.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        let e = entry(&pairs, b"");
        assert_eq!(e.headers.len(), REJECTION_MAX_HEADERS + 1);
        assert_eq!(e.headers.last().unwrap().0, OMITTED_HEADERS);
        assert!(e.headers.last().unwrap().1.contains("136 more headers"), "{:?}", e.headers.last());

        let big = vec![b'b'; 4000];
        let mut pairs: Vec<(&str, &[u8])> = vec![("x-big", &big); 12];
        pairs.push(("stripe-signature", b"t=1,v1=abc"));
        let e = entry(&pairs, b"");
        let kept: usize = e.headers[..e.headers.len() - 1].iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(kept <= REJECTION_HEADER_BYTES, "{kept}");
        // A small header after the budget ran out of room for big ones still fits.
        assert!(e.headers.iter().any(|(k, _)| k == "stripe-signature"));
        assert!(e.headers.last().unwrap().1.starts_with("(5 more headers, 20025 bytes"), "{:?}", e.headers.last());
    }

    #[test]
    fn the_bound_is_the_figure_the_docs_give() {
        assert_eq!(REJECTION_ENTRY_BYTES, 8516, "ARCHITECTURE and docs/operations.md say 8516 bytes");
    }

    #[test]
    fn the_body_keeps_its_prefix_and_its_length() {
        let body = vec![b'z'; 10_000];
        let e = entry(&[], &body);
        assert_eq!(e.body_prefix.len(), REJECTION_BODY_PREFIX);
        assert_eq!(e.body_len, 10_000);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Whatever a client sends, the encoded entry stays within the documented bound, and the
        /// writer's count of it is not below what it encodes to.
        #[test]
        fn an_entry_never_exceeds_its_bound(
            headers in prop::collection::vec(("[a-z-]{1,200}", prop::collection::vec(any::<u8>(), 0..1200)), 0..80),
            message in ".{0,3000}",
            source in ".{0,200}",
            body_len in 0usize..10_000,
            diagnosis in prop::option::of((".{0,200}", ".{0,2000}")),
        ) {
            let pairs: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
            let diagnosis = diagnosis.as_ref().map(|(code, detail)| (code.as_str(), detail.as_str()));
            let e = Rejection::bounded(i64::MAX, "stripe", "invalid_signature", &message, &source, pairs, &vec![7; body_len]).diagnosed(diagnosis);
            let bytes = encode_rejection(e.clone());
            prop_assert!(bytes.len() <= REJECTION_ENTRY_BYTES, "{} > {}", bytes.len(), REJECTION_ENTRY_BYTES);
            prop_assert!(e.stored_bytes() >= bytes.len(), "{} < {}", e.stored_bytes(), bytes.len());
            let back = decode_rejection(&bytes).unwrap();
            prop_assert_eq!(back, e);
        }
    }
}
