//! Which client a request comes from, for rate limiting and the audit trail.
//!
//! `X-Forwarded-For` is believed only when the direct peer is a trusted proxy; anyone else could
//! write any address there. Then the chain is read from the right, skipping trusted hops: the
//! first untrusted hop is what the nearest trusted proxy said about its own peer, so the client
//! cannot choose it.
//!
//! A hop is read leniently, as proxies write it: an address, an IPv4 address with a port
//! (`1.2.3.4:5678`), an IPv6 address in brackets with or without a port (`[2001:db8::1]:443`),
//! each possibly in double quotes and surrounded by spaces. Empty list elements are skipped, as
//! HTTP's list syntax asks. A hop that is still not an address (`unknown`, an obfuscated `_id`,
//! garble) is where the walk stops, and that hop names the client: [`Client::Named`], a bucket of
//! its own in the rate limiter. It is not the proxy's address, which would put every client
//! behind that proxy into one bucket, and not whatever lies to its left, which the client wrote.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use warp::http::HeaderMap;

use crate::config::IpRange;

/// The longest name kept for a client named by a hop that is not an address.
const MAX_NAME: usize = 64;

/// Who sent a request, as far as the server can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    Addr(IpAddr),
    /// What a trusted proxy wrote in place of an address: its first [`MAX_NAME`] characters,
    /// with anything but letters, digits and `._-:` shown as `?`.
    Named(String),
}

impl Client {
    /// What `limiter` counts this client as, for a refusal's message: the address, its IPv6
    /// prefix, or the name.
    pub fn bucket(&self, limiter: &crate::ratelimit::RateLimiter) -> String {
        match self {
            Client::Addr(ip) => limiter.bucket_of(*ip),
            Client::Named(name) => name.clone(),
        }
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::Addr(ip) => ip.fmt(f),
            Client::Named(name) => f.write_str(name),
        }
    }
}

pub fn client_ip(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[IpRange]) -> Client {
    let peer = peer.map(|a| a.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    if !is_trusted(peer) {
        return Client::Addr(peer);
    }
    // Several header lines are one list, in order; read it from the end without collecting it.
    let mut client = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        // Bytes that are not UTF-8 make that hop unreadable, not the whole line invisible.
        let value = String::from_utf8_lossy(value.as_bytes());
        for hop in value.rsplit(',') {
            match read_hop(hop) {
                Hop::Empty => continue,
                Hop::Addr(ip) if is_trusted(ip) => client = ip,
                Hop::Addr(ip) => return Client::Addr(ip),
                Hop::Garbled(text) => return Client::Named(name_of(text)),
            }
        }
    }
    // Every hop was a trusted proxy (or there were none): the farthest one is the client.
    Client::Addr(client)
}

enum Hop<'a> {
    Empty,
    Addr(IpAddr),
    Garbled(&'a str),
}

fn read_hop(hop: &str) -> Hop<'_> {
    let hop = hop.trim().trim_matches('"').trim();
    if hop.is_empty() {
        return Hop::Empty;
    }
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Hop::Addr(ip);
    }
    let with_port = match hop.strip_prefix('[') {
        Some(rest) => rest.split_once(']').and_then(|(inside, after)| {
            let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
            port_ok.then(|| inside.parse::<Ipv6Addr>().ok().map(IpAddr::V6)).flatten()
        }),
        None => hop
            .split_once(':')
            .filter(|(_, port)| is_port(port))
            .and_then(|(host, _)| host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)),
    };
    with_port.map_or(Hop::Garbled(hop), Hop::Addr)
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u16>().is_ok()
}

fn name_of(hop: &str) -> String {
    hop.chars().take(MAX_NAME).map(|c| if c.is_ascii_alphanumeric() || "._-:".contains(c) { c } else { '?' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(peer: &str, xff: &[&str], trusted: &[&str], expected: &str) {
        let mut headers = HeaderMap::new();
        for v in xff {
            headers.append("x-forwarded-for", v.parse().unwrap());
        }
        let trusted: Vec<IpRange> = trusted.iter().map(|t| IpRange::parse(t).unwrap()).collect();
        let peer: SocketAddr = SocketAddr::new(peer.parse().unwrap(), 1234);
        assert_eq!(client_ip(Some(peer), &headers, &trusted).to_string(), expected, "{xff:?}");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        check("1.2.3.4", &["9.9.9.9"], &[], "1.2.3.4");
        check("1.2.3.4", &["9.9.9.9"], &["10.0.0.0/8"], "1.2.3.4");
        check("10.0.0.1", &["9.9.9.9"], &["10.0.0.0/8"], "9.9.9.9");
        // A client that writes its own header cannot hide behind it: the rightmost untrusted hop wins.
        check("10.0.0.1", &["6.6.6.6, 9.9.9.9, 10.0.0.2"], &["10.0.0.0/8"], "9.9.9.9");
        check("10.0.0.1", &["6.6.6.6", "9.9.9.9"], &["10.0.0.0/8"], "9.9.9.9");
        check("10.0.0.1", &[], &["10.0.0.0/8"], "10.0.0.1");
    }

    #[test]
    fn well_formed_variants_of_a_hop_are_addresses() {
        let t = &["10.0.0.0/8"];
        for (xff, expected) in [
            ("1.2.3.4:5678", "1.2.3.4"),
            ("1.2.3.4:0", "1.2.3.4"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
            ("\"[2001:db8::1]:443\"", "2001:db8::1"),
            ("  \"1.2.3.4\"  ", "1.2.3.4"),
            ("\t1.2.3.4 ", "1.2.3.4"),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
            // Empty list elements are skipped, wherever they are.
            ("9.9.9.9, , ", "9.9.9.9"),
            ("9.9.9.9,,10.0.0.2", "9.9.9.9"),
            ("6.6.6.6, \"\", 9.9.9.9", "9.9.9.9"),
            // A trusted hop with a port is still a trusted hop.
            ("9.9.9.9, 10.0.0.2:8080", "9.9.9.9"),
        ] {
            check("10.0.0.1", &[xff], t, expected);
        }
    }

    /// A hop that is no address names the client; it never falls back to the proxy (which would
    /// merge every client behind it) nor reads further left (which the client wrote).
    #[test]
    fn an_unreadable_hop_names_the_client() {
        let t = &["10.0.0.0/8"];
        for (xff, expected) in [
            ("unknown", "unknown"),
            ("6.6.6.6, unknown", "unknown"),
            ("6.6.6.6, unknown, 10.0.0.2", "unknown"),
            ("_hidden", "_hidden"),
            ("nonsense", "nonsense"),
            ("1.2.3.4:99999", "1.2.3.4:99999"),
            ("1.2.3.4:+80", "1.2.3.4:?80"),
            ("[2001:db8::1]x", "?2001:db8::1?x"),
            ("[2001:db8::1", "?2001:db8::1"),
            ("2001:db8::1::443", "2001:db8::1::443"),
            ("1.2.3.4 5.6.7.8", "1.2.3.4?5.6.7.8"),
            ("<script>", "?script?"),
        ] {
            check("10.0.0.1", &[xff], t, expected);
        }
        let long = "x".repeat(1000);
        check("10.0.0.1", &[&long], t, &"x".repeat(MAX_NAME));
    }

    #[test]
    fn bytes_that_are_not_text_make_one_hop_unreadable() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", warp::http::HeaderValue::from_bytes(b"6.6.6.6, \xff\xfe").unwrap());
        let trusted = [IpRange::parse("10.0.0.0/8").unwrap()];
        let peer = "10.0.0.1:1".parse().ok();
        assert_eq!(client_ip(peer, &headers, &trusted), Client::Named("??".into()));
    }

    #[test]
    fn every_hop_trusted_means_the_first_is_the_client() {
        check("10.0.0.1", &["10.0.0.3, 10.0.0.2"], &["10.0.0.0/8"], "10.0.0.3");
        check("10.0.0.1", &["10.0.0.3", "10.0.0.2"], &["10.0.0.0/8"], "10.0.0.3");
    }
}
