//! What stands in for a credential when stored data leaves the process: the one redaction of
//! request headers, and the one masking of credentials in URLs.
//!
//! The store keeps everything as it came (deliveries re-sign from the stored headers and post
//! to the stored target), so redaction happens on output only: the API (and the dashboard,
//! which reads it), the log lines and the configuration reports.
//!
//! - [`headers`]: `Authorization`, `Proxy-Authorization`, `Cookie` and `Set-Cookie` are replaced
//!   whole, whatever the provider; the headers the provider names in
//!   [`Provider::secret_headers`](crate::providers::Provider::secret_headers) are cut to a few
//!   characters and their length. Names compare case-insensitively.
//! - [`url`]: the password of the userinfo (or the whole userinfo when it has no password,
//!   since a lone user part is often a token), the value of every query parameter, and the
//!   fragment become `***`.

/// Headers that carry a credential whatever the provider: replaced whole.
pub const ALWAYS_REDACTED: [&str; 4] = ["authorization", "proxy-authorization", "cookie", "set-cookie"];

/// What a header of [`ALWAYS_REDACTED`] shows instead of its value.
pub const REDACTED: &str = "[redacted]";

/// What a masked part of a URL shows.
pub const MASK: &str = "***";

/// Most characters of a signature that stay readable: enough to recognise its scheme (`sha2`,
/// `t=17`, `v1,K`), never enough to replay or forge it.
const SIGNATURE_HEAD: usize = 4;

/// Headers as they may be shown: every header of [`ALWAYS_REDACTED`] replaced by [`REDACTED`],
/// every header of `signature_headers` (the provider's list) shortened, the rest unchanged and
/// in their order.
pub fn headers(headers: &[(String, String)], signature_headers: &[&str]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let shown = if ALWAYS_REDACTED.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                REDACTED.to_string()
            } else if signature_headers.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                shorten(value)
            } else {
                value.clone()
            };
            (name.clone(), shown)
        })
        .collect()
}

/// An event's stored headers as they may be shown: [`headers`] with the list of the endpoint
/// that received them. A provider no longer configured gives no list, so only the generic
/// credentials are redacted. The API, its export and `stagehook export` all show them so.
pub fn event_headers(
    endpoints: &[crate::providers::Endpoint],
    provider: &str,
    stored: &[(String, String)],
) -> Vec<(String, String)> {
    let listed = endpoints
        .iter()
        .find(|e| e.provider.name() == provider)
        .map(|e| e.provider.secret_headers())
        .unwrap_or_default();
    headers(stored, listed)
}

/// The first [`SIGNATURE_HEAD`] characters (a quarter of a short value at most), then
/// `…(redacted, N bytes)`, in the style of the rejection log's `…(truncated, N bytes)`.
///
/// A value that is already such a redaction (an imported export's) stays as it is: it shows
/// no more than shortening it again would, and keeps the length of the signature it stood for.
fn shorten(value: &str) -> String {
    if is_shortened(value) {
        return value.to_string();
    }
    let keep = SIGNATURE_HEAD.min(value.chars().count() / 4);
    let head: String = value.chars().take(keep).collect();
    format!("{head}…(redacted, {} bytes)", value.len())
}

/// Whether `value` is what [`shorten`] writes: at most [`SIGNATURE_HEAD`] characters, then
/// `…(redacted, N bytes)`.
fn is_shortened(value: &str) -> bool {
    let Some((head, rest)) = value.split_once('…') else { return false };
    let digits = rest.strip_prefix("(redacted, ").and_then(|r| r.strip_suffix(" bytes)"));
    head.chars().count() <= SIGNATURE_HEAD
        && digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// `url` with its credentials masked: `https://user:***@host/path?token=***&empty=#***`.
///
/// It reads the text rather than parsing it, so it masks what an invalid URL carries too (a
/// configuration error quotes it). The authority ends at the first `/`, `?` or `#`; a password
/// with one of those unencoded is not a URL, and only its part before that character is seen
/// as userinfo. The path is kept: it says where deliveries go, and a token in a path cannot be
/// told from a name.
pub fn url(url: &str) -> String {
    let (rest, fragment) = match url.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (url, None),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (scheme, after) = match rest.find("://") {
        Some(i) => rest.split_at(i + 3),
        None => ("", rest),
    };
    let (authority, path) = after.split_at(after.find('/').unwrap_or(after.len()));
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(MASK);
                }
                None => out.push_str(MASK),
            }
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        let masked: Vec<String> = query.split('&').map(mask_parameter).collect();
        out.push_str(&masked.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        if !fragment.is_empty() {
            out.push_str(MASK);
        }
    }
    out
}

/// `name=value` → `name=***`; an empty value stays empty (there is nothing to hide, and it may
/// be why a delivery fails); a parameter without `=` may be a bare token, so it is masked whole.
fn mask_parameter(pair: &str) -> String {
    match pair.split_once('=') {
        Some((name, "")) => format!("{name}="),
        Some((name, _)) => format!("{name}={MASK}"),
        None if pair.is_empty() => String::new(),
        None => MASK.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn urls_are_masked() {
        let cases = [
            ("https://app.test/hook", "https://app.test/hook"),
            ("http://127.0.0.1:3000/webhooks/stripe", "http://127.0.0.1:3000/webhooks/stripe"),
            ("https://user:pa55@app.test/hook", "https://user:***@app.test/hook"),
            ("https://user:@app.test/", "https://user:***@app.test/"),
            ("https://ghp_token@app.test/", "https://***@app.test/"),
            ("https://u:p@ss@app.test:8443", "https://u:***@app.test:8443"),
            ("https://app.test/hook?token=s3cret", "https://app.test/hook?token=***"),
            ("https://app.test/?a=1&b=&c&&d=x=y", "https://app.test/?a=***&b=&***&&d=***"),
            ("https://app.test?token=s3cret", "https://app.test?token=***"),
            ("https://app.test/#access_token=x", "https://app.test/#***"),
            ("https://app.test/#", "https://app.test/#"),
            ("https://app.test/users/@me", "https://app.test/users/@me"),
            ("https://a:b@app.test/p@q?k=v#f", "https://a:***@app.test/p@q?k=***#***"),
            // README's example.
            ("https://user:pass@app.test/hook?token=abc&v=&debug", "https://user:***@app.test/hook?token=***&v=&***"),
            // Not URLs, but quoted in configuration errors.
            ("user:pa55@app.test/hook", "user:***@app.test/hook"),
            ("ftp://x", "ftp://x"),
            ("", ""),
        ];
        for (given, shown) in cases {
            assert_eq!(url(given), shown, "{given}");
        }
    }

    #[test]
    fn credentials_are_replaced_and_signatures_shortened_whatever_the_case() {
        let given = pairs(&[
            ("content-type", "application/json"),
            ("Authorization", "Basic dXNlcjpwYXNzd29yZA=="),
            ("proxy-authorization", "Bearer abc"),
            ("COOKIE", "session=1"),
            ("set-cookie", "a=b"),
            ("X-Hub-Signature-256", "sha256=0123456789abcdef0123456789abcdef"),
            ("x-short", "abcdefg"),
        ]);
        let shown = headers(&given, &["x-hub-signature-256", "X-SHORT"]);
        assert_eq!(
            shown,
            pairs(&[
                ("content-type", "application/json"),
                ("Authorization", REDACTED),
                ("proxy-authorization", REDACTED),
                ("COOKIE", REDACTED),
                ("set-cookie", REDACTED),
                ("X-Hub-Signature-256", "sha2…(redacted, 39 bytes)"),
                // A quarter at most of a short value.
                ("x-short", "a…(redacted, 7 bytes)"),
            ])
        );
        // Without a provider's list, only the generic ones.
        assert_eq!(headers(&given, &[])[5].1, given[5].1);
        // Shown again (an export imported and exported again): the same, not shortened twice.
        assert_eq!(headers(&shown, &["x-hub-signature-256", "X-SHORT"]), shown);
        // Only a whole redaction is left alone: anything more is shortened as usual.
        let near = pairs(&[("x-short", "abcde…(redacted, 7 bytes)"), ("X-SHORT", "a…(redacted, 7 bytes)x")]);
        assert!(headers(&near, &["x-short"]).iter().all(|(_, v)| v.ends_with("bytes)") && v.len() < 30));
        assert_ne!(headers(&near, &["x-short"]), near);
    }

    /// The Architecture Invariant: what is secret in a provider's request is that provider's to
    /// say. A list of header names in `http/` is a list that the next kind would be missing from.
    #[test]
    fn the_http_layer_names_no_providers_secret_headers() {
        use crate::providers::{KindConfig, ProviderKind};
        let mut names: Vec<&str> = Vec::new();
        for kind in ProviderKind::ALL {
            let c = KindConfig::from_toml(kind.as_str(), "header = \"x-tidy-signature\"").unwrap();
            let provider = crate::providers::build(kind.as_str(), &c).unwrap();
            names.extend(provider.secret_headers());
        }
        assert!(names.len() >= ProviderKind::ALL.len());
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
        let mut files = 0;
        let mut dirs = vec![dir.clone()];
        let mut paths = Vec::new();
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path)
                } else {
                    paths.push(path)
                }
            }
        }
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap().to_ascii_lowercase();
            files += 1;
            for name in &names {
                assert!(!text.contains(name), "{} names `{name}`: ask the provider (`secret_headers`)", path.display());
            }
        }
        assert!(files > 5, "{}", dir.display());
    }
}
