//! `server.public_url`, `server.allowed_origins` and `server.allowed_hosts`, read once by the
//! check into [`Origins`]: the hosts and origins that are this stagehook besides its own
//! addresses. The request guard that compares a request's `Host` and `Origin` with them is
//! `http/origin.rs`; both read hosts and origins with the functions here, so that a name is
//! written one way.

use std::net::IpAddr;

use warp::http::uri::{Authority, Uri};

use super::{ConfigError, ServerConfig};

/// The hosts and origins that are this stagehook besides its own addresses, parsed once from
/// `[server]` by [`super::Config::checked`].
#[derive(Debug, Clone)]
pub struct Origins {
    /// The host of `public_url`, then `allowed_hosts`.
    hosts: Vec<Host>,
    /// The origin of `public_url`, then `allowed_origins`, each as [`origin_of`] writes it.
    origins: Vec<String>,
}

/// A host as `Host` or the config names it: an address, or a lowercase name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// Canonical: an IPv4-mapped IPv6 address is its IPv4 address.
    Ip(IpAddr),
    Name(String),
}

impl Origins {
    /// Reads `public_url`, `allowed_origins` and `allowed_hosts`; an error names the key.
    pub fn new(server: &ServerConfig) -> Result<Origins, ConfigError> {
        let bad = |key: String, message: String| ConfigError { key, message };
        let mut hosts = Vec::new();
        let mut origins = Vec::new();
        if let Some(url) = &server.public_url {
            let parsed = url.parse::<Uri>().ok().and_then(|uri| {
                let host = host_of(uri.authority()?.host())?;
                Some((host, origin_of(&uri)?))
            });
            let (host, origin) = parsed.ok_or_else(|| {
                bad(
                    "server.public_url".into(),
                    format!("`{}` is not an http(s) URL such as https://abc.example.com", crate::redact::url(url)),
                )
            })?;
            hosts.push(host);
            origins.push(origin);
        }
        for (i, text) in server.allowed_origins.iter().enumerate() {
            let origin = text.parse::<Uri>().ok().filter(is_bare).and_then(|uri| origin_of(&uri)).ok_or_else(|| {
                bad(
                    format!("server.allowed_origins[{i}]"),
                    format!(
                        "`{text}` is not an origin such as https://stagehook.example.com or http://10.0.0.5:8080 \
                         (a scheme, a host and an optional port; no path)"
                    ),
                )
            })?;
            origins.push(origin);
        }
        for (i, text) in server.allowed_hosts.iter().enumerate() {
            // A bare IPv6 address is not an authority; anything with a port, a scheme or a path
            // is not a host.
            let host = match text.parse::<IpAddr>() {
                Ok(ip) => Some(Host::Ip(ip.to_canonical())),
                Err(_) => text
                    .parse::<Authority>()
                    .ok()
                    .filter(|a| a.port().is_none() && !a.as_str().contains('@'))
                    .and_then(|a| host_of(a.host())),
            };
            let host = host.ok_or_else(|| {
                bad(
                    format!("server.allowed_hosts[{i}]"),
                    format!(
                        "`{text}` is not a host name or IP address such as stagehook.example.com or 10.0.0.5 \
                         (no scheme, port or path)"
                    ),
                )
            })?;
            hosts.push(host);
        }
        Ok(Origins { hosts, origins })
    }

    /// Whether `host` is `public_url`'s or in `allowed_hosts`.
    pub fn lists_host(&self, host: &Host) -> bool {
        self.hosts.contains(host)
    }

    /// Whether `origin` (as [`origin_of`] writes it) is `public_url`'s or in `allowed_origins`.
    pub fn lists_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o == origin)
    }
}

impl Host {
    pub fn is_loopback(&self) -> bool {
        match self {
            Host::Name(name) => name == "localhost",
            Host::Ip(ip) => ip.is_loopback(),
        }
    }
}

/// `host` as `Authority::host` gives it (an IPv6 address in brackets).
pub fn host_of(host: &str) -> Option<Host> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if bare.is_empty() {
        return None;
    }
    Some(match bare.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip.to_canonical()),
        Err(_) => Host::Name(bare.to_ascii_lowercase()),
    })
}

/// `scheme://host[:port]` as a browser writes an `Origin`: lowercase, without the scheme's
/// default port; `None` for anything but http(s) with a host and no user info.
pub fn origin_of(uri: &Uri) -> Option<String> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = uri.authority()?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return None;
    }
    let host = authority.host().to_ascii_lowercase();
    Some(match authority.port_u16() {
        Some(port) if port != default => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// An origin and nothing more: no path but `/`, no query.
pub fn is_bare(uri: &Uri) -> bool {
    uri.path_and_query().is_none_or(|pq| pq.as_str() == "/" || pq.as_str().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_entries_name_their_key() {
        let key = |toml: &str| {
            let c = crate::Config::from_toml(&format!("[server]\n{toml}")).unwrap();
            Origins::new(&c.server).map(|_| ()).map_err(|e| e.key)
        };
        for good in [
            "allowed_origins = [\"https://ui.example\", \"http://10.0.0.5:8080\", \"HTTPS://UI.example:443/\"]",
            "allowed_hosts = [\"stagehook.lan\", \"10.0.0.5\", \"::1\", \"[fe80::1]\"]",
            "public_url = \"https://abc.tunnel.example/some/base\"",
        ] {
            assert_eq!(key(good), Ok(()), "{good}");
        }
        for (toml, want) in [
            ("allowed_origins = [\"evil.example\"]", "server.allowed_origins[0]"),
            ("allowed_origins = [\"https://a.example\", \"https://a.example/path\"]", "server.allowed_origins[1]"),
            ("allowed_origins = [\"ftp://a.example\"]", "server.allowed_origins[0]"),
            ("allowed_origins = [\"\"]", "server.allowed_origins[0]"),
            ("allowed_origins = [\"null\"]", "server.allowed_origins[0]"),
            ("allowed_hosts = [\"http://a.example\"]", "server.allowed_hosts[0]"),
            ("allowed_hosts = [\"a.example:8080\"]", "server.allowed_hosts[0]"),
            ("allowed_hosts = [\"a.example/x\"]", "server.allowed_hosts[0]"),
            ("allowed_hosts = [\"u@a.example\"]", "server.allowed_hosts[0]"),
            ("allowed_hosts = [\"\"]", "server.allowed_hosts[0]"),
            ("public_url = \"https://a b.example\"", "server.public_url"),
        ] {
            assert_eq!(key(toml), Err(want.to_string()), "{toml}");
        }
    }
}
