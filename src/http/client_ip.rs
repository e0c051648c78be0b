//! Which client a request comes from, for rate limiting and the audit trail.
//!
//! `X-Forwarded-For` is believed only when the direct peer is a trusted proxy; anyone else could
//! write any address there. Then the chain is read from the right, skipping trusted hops: the
//! first untrusted address is the one the nearest trusted proxy saw.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use warp::http::HeaderMap;

use crate::config::IpRange;

pub fn client_ip(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[IpRange]) -> IpAddr {
    let peer = peer.map(|a| a.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => client = ip,
            Ok(ip) => return ip,
            // A garbled entry: nothing left of it can be trusted.
            Err(_) => return client,
        }
    }
    client
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
        let peer: SocketAddr = format!("{peer}:1234").parse().unwrap();
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
        check("10.0.0.1", &["nonsense"], &["10.0.0.0/8"], "10.0.0.1");
        check("10.0.0.1", &[], &["10.0.0.0/8"], "10.0.0.1");
    }
}
