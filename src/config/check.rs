//! The value checks that the types alone cannot express, run once at startup by
//! [`Config::check`]; each error names its key.

use super::{err, is_http_url, valid_instance_id, Config, ConfigError, HumanDuration, IpRange, Origins, RetryConfig};
use crate::providers::registry::{Endpoint, Route};

/// The smallest request head the HTTP layer can be held to (hyper's read buffer minimum).
pub const MIN_HEADER_BYTES: usize = 8192;
/// The largest: a head this size is already far beyond what any provider sends.
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;

impl Config {
    /// Value checks that the types alone cannot express.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.checked().map(drop)
    }

    /// [`Config::check`], giving the providers it built and the hosts and origins it read: each
    /// is built or read once, here, and [`crate::App::open_built`] takes them.
    pub fn checked(&self) -> Result<(Vec<Endpoint>, Origins), ConfigError> {
        // public_url (an http(s) URL with a host), its host and origin, allowed_origins and
        // allowed_hosts, read once into what the origin checks compare requests with.
        let origins = Origins::new(&self.server)?;
        if !valid_instance_id(&self.server.instance_id) {
            // Debug-quoted: a control character the id must not hold is shown escaped.
            return Err(err(
                "server.instance_id",
                format!(
                    "{:?} is not 1 to 64 letters, digits, `.`, `_` or `-` (a host name such as web-1 fits)",
                    self.server.instance_id
                ),
            ));
        }
        for (i, p) in self.server.trusted_proxies.iter().enumerate() {
            if IpRange::parse(p).is_none() {
                return Err(err(
                    &format!("server.trusted_proxies[{i}]"),
                    format!("`{p}` is not an IP address or CIDR range such as 10.0.0.0/8"),
                ));
            }
        }
        for (key, d) in [
            ("server.header_timeout", self.server.header_timeout),
            ("server.body_timeout", self.server.body_timeout),
            ("server.idle_timeout", self.server.idle_timeout),
            ("server.session_ttl", self.server.session_ttl),
            ("server.body_rate_grace", self.server.body_rate_grace),
        ] {
            if d.0.is_zero() {
                return Err(err(key, "must be longer than 0s"));
            }
        }
        if self.server.max_connections == 0 {
            return Err(err("server.max_connections", "must be at least 1"));
        }
        if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&self.server.max_header_bytes) {
            return Err(err(
                "server.max_header_bytes",
                format!("must be between {MIN_HEADER_BYTES} and {MAX_HEADER_BYTES}"),
            ));
        }
        if self.limits.max_body_bytes == 0 {
            return Err(err("limits.max_body_bytes", "must be at least 1"));
        }
        if self.server.max_inflight_body_bytes < self.limits.max_body_bytes {
            // Else a body of the largest size allowed, arriving in pieces, could never fit.
            return Err(err(
                "server.max_inflight_body_bytes",
                format!("must be at least limits.max_body_bytes ({})", self.limits.max_body_bytes),
            ));
        }
        if self.limits.rate_limit_max_ips == 0 {
            return Err(err("limits.rate_limit_max_ips", "must be at least 1"));
        }
        if !(1..=128).contains(&self.limits.ipv6_prefix) {
            return Err(err("limits.ipv6_prefix", "must be between 1 and 128 (bits of an IPv6 address)"));
        }
        super::redis::check(&self.redis, &self.dedup, self.limits.backend)?;
        if self.store.cache_mb == 0 {
            return Err(err("store.cache_mb", "must be at least 1"));
        }
        check_retry("retry", &self.retry)?;
        if self.circuit_breaker.failure_threshold == 0 {
            return Err(err("circuit_breaker.failure_threshold", "must be at least 1"));
        }
        if self.circuit_breaker.recovery_timeout.0.is_zero() {
            return Err(err("circuit_breaker.recovery_timeout", "must be longer than 0s"));
        }
        if !(1..=1024).contains(&self.delivery.concurrency) {
            return Err(err("delivery.concurrency", "must be between 1 and 1024"));
        }
        if self.delivery.capture_body_bytes > super::delivery::MAX_CAPTURE_BODY_BYTES {
            return Err(err("delivery.capture_body_bytes", "must be between 0 and 65536"));
        }
        if self.retention.interval.0.is_zero() {
            return Err(err("retention.interval", "must be longer than 0s"));
        }
        super::backfill::check(&self.backfill)?;
        for (name, c) in self.sections() {
            check_targets(&format!("providers.{name}"), &c.forward_to, c.timeout, &c.retry.over(&self.retry))?;
            check_routes(&format!("providers.{name}"), &c.forward_to, &c.routes)?;
            check_forward_headers(&format!("providers.{name}.forward_headers"), &c.forward_headers)?;
        }
        let providers: Vec<String> = self.sections().into_iter().map(|(name, _)| name).collect();
        super::alerts::check(&self.notifiers, &self.alerts, &providers)?;
        Ok((self.build()?, origins))
    }
}

fn check_retry(section: &str, r: &RetryConfig) -> Result<(), ConfigError> {
    if r.max_attempts == 0 || r.max_attempts > 100 {
        return Err(err(&format!("{section}.max_attempts"), "must be between 1 and 100"));
    }
    if r.base_delay.0.is_zero() {
        return Err(err(&format!("{section}.base_delay"), "must be longer than 0s"));
    }
    if r.max_delay.0 < r.base_delay.0 {
        return Err(err(&format!("{section}.max_delay"), "must not be shorter than base_delay"));
    }
    if !(0.0..=1.0).contains(&r.jitter) {
        return Err(err(&format!("{section}.jitter"), "must be between 0.0 and 1.0"));
    }
    Ok(())
}

/// `forward_headers`: header names, at most 64, none that never reaches the app (a hop-by-hop
/// header, or stagehook's own, which the delivery sets).
fn check_forward_headers(key: &str, names: &[String]) -> Result<(), ConfigError> {
    if names.len() > 64 {
        return Err(err(key, "at most 64 header names"));
    }
    for (i, name) in names.iter().enumerate() {
        let key = format!("{key}[{i}]");
        if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(err(&key, format!("`{name}` is not a header name")));
        }
        if crate::delivery::never_forwarded(name) {
            return Err(err(
                &key,
                format!("`{name}` describes the hop to stagehook (or is stagehook's own) and is never forwarded"),
            ));
        }
    }
    Ok(())
}

/// The most distinct targets one endpoint's `forward_to` and routes may name together: an event's
/// jobs are told apart by a one-byte index, and fan-out past this is no staging setup.
pub const MAX_ROUTED_TARGETS: usize = 64;
/// The most routes one endpoint may have.
pub const MAX_ROUTES: usize = 64;

/// `[[providers.<name>.routes]]`: each route's types are patterns [`crate::filter::type_matches`]
/// reads and its targets http(s) URLs, neither list empty; all the endpoint's targets together
/// stay within [`MAX_ROUTED_TARGETS`], so an event's fan-out always fits its jobs' index.
fn check_routes(section: &str, forward_to: &[String], routes: &[Route]) -> Result<(), ConfigError> {
    if routes.len() > MAX_ROUTES {
        return Err(err(&format!("{section}.routes"), format!("at most {MAX_ROUTES} routes")));
    }
    let mut distinct: std::collections::BTreeSet<&str> = forward_to.iter().map(String::as_str).collect();
    for (i, route) in routes.iter().enumerate() {
        let key = format!("{section}.routes[{i}]");
        if route.types.is_empty() {
            return Err(err(
                &format!("{key}.types"),
                "is empty: list the event types the route takes, such as \"invoice.*\"",
            ));
        }
        for (j, pattern) in route.types.iter().enumerate() {
            if pattern.is_empty() || pattern.len() > 200 {
                return Err(err(&format!("{key}.types[{j}]"), "an event type pattern is 1 to 200 characters"));
            }
            crate::filter::type_pattern(pattern).map_err(|e| err(&format!("{key}.types[{j}]"), e.0))?;
        }
        if route.forward_to.is_empty() {
            return Err(err(&format!("{key}.forward_to"), "is empty: a route names at least one target"));
        }
        for (j, url) in route.forward_to.iter().enumerate() {
            if !is_http_url(url) {
                return Err(err(
                    &format!("{key}.forward_to[{j}]"),
                    format!(
                        "`{}` is not an http(s) URL such as http://127.0.0.1:3000/billing",
                        crate::redact::url(url)
                    ),
                ));
            }
        }
        distinct.extend(route.forward_to.iter().map(String::as_str));
    }
    if distinct.len() > MAX_ROUTED_TARGETS {
        return Err(err(
            &format!("{section}.routes"),
            format!(
                "{} distinct targets with forward_to; at most {MAX_ROUTED_TARGETS} (each event's deliveries are told apart by a one-byte index)",
                distinct.len()
            ),
        ));
    }
    Ok(())
}

fn check_targets(
    section: &str,
    urls: &[String],
    timeout: HumanDuration,
    retry: &RetryConfig,
) -> Result<(), ConfigError> {
    for (i, url) in urls.iter().enumerate() {
        if !is_http_url(url) {
            return Err(err(
                &format!("{section}.forward_to[{i}]"),
                format!("`{}` is not an http(s) URL such as http://127.0.0.1:3000/webhooks", crate::redact::url(url)),
            ));
        }
    }
    if urls.len() > 16 {
        return Err(err(&format!("{section}.forward_to"), "at most 16 targets"));
    }
    if timeout.0.is_zero() {
        return Err(err(&format!("{section}.timeout"), "must be longer than 0s"));
    }
    check_retry(&format!("{section}.retry"), retry)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::key_of;
    use crate::config::*;

    #[test]
    fn the_body_limits_of_server_are_checked() {
        let c = Config::default();
        assert_eq!(
            (c.server.min_body_rate, c.server.body_rate_grace.0, c.server.max_inflight_body_bytes),
            (1024, std::time::Duration::from_secs(5), 64 * 1024 * 1024)
        );
        for (toml, key, words) in [
            ("[server]\nbody_rate_grace = \"0s\"\n", "server.body_rate_grace", "longer than 0s"),
            ("[server]\nmax_inflight_body_bytes = 1000\n", "server.max_inflight_body_bytes", "limits.max_body_bytes"),
            (
                "[server]\nmax_inflight_body_bytes = 2000000\n[limits]\nmax_body_bytes = 3000000\n",
                "server.max_inflight_body_bytes",
                "(3000000)",
            ),
        ] {
            let e = Config::from_toml(toml).and_then(|c| c.check()).expect_err(toml);
            assert!(e.key == key && e.to_string().contains(words), "{toml}: {e}");
        }
        let c = Config::from_toml("[server]\nmin_body_rate = 0\nmax_inflight_body_bytes = 1048576\n").unwrap();
        c.check().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(key_of("[limits]\nrate_limit_per_minute = \"many\"\n"), "limits.rate_limit_per_minute");
        assert_eq!(key_of("[server]\nbind = \"nowhere\"\n"), "server.bind");
        assert_eq!(key_of("[server]\ntrusted_proxies = [\"10.0.0.0/99\"]\n"), "server.trusted_proxies[0]");
        assert_eq!(key_of("[server]\npublic_url = \"ftp://x\"\n"), "server.public_url");
        assert_eq!(key_of("[server]\nallowed_origins = [\"evil.example\"]\n"), "server.allowed_origins[0]");
        assert_eq!(key_of("[server]\nallowed_hosts = [\"https://a.example\"]\n"), "server.allowed_hosts[0]");
        assert!(key_of("[limits]\nmax_body = 3\n").starts_with("limits"));
        assert_eq!(key_of("[providers.stripe]\ntolerance_seconds = -1\n"), "providers.stripe.tolerance_seconds");
        assert_eq!(
            key_of("[providers.stripe]\ntolerance_seconds = 99999999999\n"),
            "providers.stripe.tolerance_seconds"
        );
        assert_eq!(key_of("[providers.stripe]\nsecret = \"\"\n"), "providers.stripe.secret");
        assert_eq!(key_of("[providers.twilio]\nauth_token = \"\"\n"), "providers.twilio.auth_token");
    }

    #[test]
    fn the_ipv6_prefix_is_between_1_and_128_bits() {
        for bad in ["0", "129", "-1", "\"64\""] {
            assert_eq!(key_of(&format!("[limits]\nipv6_prefix = {bad}\n")), "limits.ipv6_prefix", "{bad}");
        }
        for good in [1, 48, 128] {
            let c = Config::from_toml(&format!("[limits]\nipv6_prefix = {good}\n")).unwrap();
            c.check().unwrap();
            assert_eq!(c.limits.ipv6_prefix, good);
        }
        assert_eq!(Config::default().limits.ipv6_prefix, 64);
        let env = BTreeMap::from([("STAGEHOOK_LIMITS_IPV6_PREFIX".to_string(), "56".to_string())]);
        assert_eq!(Config::load(None, &env).unwrap().limits.ipv6_prefix, 56);
        let env = BTreeMap::from([("STAGEHOOK_LIMITS_IPV6_PREFIX".to_string(), "200".to_string())]);
        let e = Config::load(None, &env).unwrap_err();
        assert_eq!(e.key, "limits.ipv6_prefix", "{e}");
    }

    #[test]
    fn the_session_ttl_is_a_duration_over_zero_from_the_file_or_the_environment() {
        assert_eq!(Config::default().server.session_ttl.0, std::time::Duration::from_secs(12 * 3600));
        for bad in ["\"0s\"", "\"0ms\"", "\"soon\"", "3600"] {
            assert_eq!(key_of(&format!("[server]\nsession_ttl = {bad}\n")), "server.session_ttl", "{bad}");
        }
        let c = Config::from_toml("[server]\nsession_ttl = \"30m\"\n").unwrap();
        c.check().unwrap();
        assert_eq!(c.server.session_ttl.0, std::time::Duration::from_secs(1800));
        let env = BTreeMap::from([("STAGEHOOK_SERVER_SESSION_TTL".to_string(), "2h".to_string())]);
        assert_eq!(Config::load(None, &env).unwrap().server.session_ttl.0, std::time::Duration::from_secs(7200));
        let env = BTreeMap::from([("STAGEHOOK_SERVER_SESSION_TTL".to_string(), "0s".to_string())]);
        let e = Config::load(None, &env).unwrap_err();
        assert_eq!(e.key, "server.session_ttl", "{e}");
    }

    #[test]
    fn delivery_settings_are_checked() {
        assert_eq!(key_of("[retry]\nstrategy = \"random\"\n"), "retry.strategy");
        assert_eq!(key_of("[retry]\nbase_delay = \"soon\"\n"), "retry.base_delay");
        assert_eq!(key_of("[retry]\nmax_attempts = 0\n"), "retry.max_attempts");
        assert_eq!(key_of("[retry]\njitter = 1.5\n"), "retry.jitter");
        assert_eq!(key_of("[retry]\nbase_delay = \"10m\"\nmax_delay = \"1m\"\n"), "retry.max_delay");
        assert_eq!(key_of("[circuit_breaker]\nfailure_threshold = 0\n"), "circuit_breaker.failure_threshold");
        assert_eq!(
            key_of("[providers.stripe]\nforward_to = [\"http://ok/\", \"ftp://no\"]\n"),
            "providers.stripe.forward_to[1]"
        );
        assert_eq!(key_of("[providers.twilio.retry]\njitter = -1.0\n"), "providers.twilio.retry.jitter");
        let c = Config::from_toml(
            "[retry]\nmax_attempts = 3\n[providers.stripe]\nforward_to = [\"https://app.test/hook\"]\ntimeout = \"2s\"\n[providers.stripe.retry]\nstrategy = \"fixed\"\n",
        )
        .unwrap();
        c.check().unwrap();
        let t = c.targets("stripe").unwrap();
        assert_eq!(t.urls, ["https://app.test/hook"]);
        assert_eq!(t.timeout, std::time::Duration::from_secs(2));
        assert_eq!((t.retry.strategy, t.retry.max_attempts), (Strategy::Fixed, 3));
        assert!(c.targets("twilio").unwrap().urls.is_empty());
    }

    /// A route is checked where it stands: each error names the route by its index and the key
    /// inside it, from `[[providers.<name>.routes]]` as from any other section.
    #[test]
    fn routes_are_checked_naming_the_route() {
        let route = |body: &str| {
            format!("[providers.stripe]\nforward_to = [\"http://app.test/\"]\n[[providers.stripe.routes]]\ntypes = [\"invoice.*\"]\nforward_to = [\"http://app.test/billing\"]\n[[providers.stripe.routes]]\n{body}")
        };
        for (body, key, words) in [
            (
                "types = [\"invoice.[paid\"]\nforward_to = [\"http://a.test/\"]\n",
                "providers.stripe.routes[1].types[0]",
                "never closed",
            ),
            ("types = []\nforward_to = [\"http://a.test/\"]\n", "providers.stripe.routes[1].types", "is empty"),
            ("types = [\"a\"]\nforward_to = []\n", "providers.stripe.routes[1].forward_to", "is empty"),
            (
                "types = [\"a\"]\nforward_to = [\"ftp://x\"]\n",
                "providers.stripe.routes[1].forward_to[0]",
                "not an http(s) URL",
            ),
            (
                "types = [\"a\"]\nforward_to = [\"http://a.test/\"]\nalso = true\n",
                "providers.stripe.routes[1].also",
                "unknown field `also`",
            ),
            ("forward_to = [\"http://a.test/\"]\n", "providers.stripe.routes[1]", "missing field `types`"),
            ("types = \"a\"\nforward_to = [\"http://a.test/\"]\n", "providers.stripe.routes[1].types", "invalid type"),
        ] {
            let toml = route(body);
            let e = Config::from_toml(&toml).and_then(|c| c.check()).expect_err(&toml);
            assert!(e.key == key && e.message.contains(words), "{body}: {e}");
        }
        let many: String = (0..65).map(|i| format!("\"http://app.test/{i}\", ")).collect();
        let toml = route(&format!("types = [\"a\"]\nforward_to = [{many}]\n"));
        let e = Config::from_toml(&toml).and_then(|c| c.check()).unwrap_err();
        assert!(e.key == "providers.stripe.routes" && e.message.contains("at most 64"), "{e}");
        let c = Config::from_toml(&route(
            "types = [\"charge.*\", \"v[12].*\"]\nforward_to = [\"http://a.test/\"]\nalso_default = true\n",
        ))
        .unwrap();
        let endpoints = c.checked().unwrap().0;
        let stripe = endpoints.iter().find(|e| e.path == "stripe").unwrap();
        assert_eq!(stripe.routes.len(), 2);
        assert_eq!(stripe.targets_for("v2.core.event"), ["http://a.test/", "http://app.test/"]);
        assert!(c.targets("stripe").unwrap().routes[1].also_default);
    }

    /// Found by the property tests (tests/it/fuzz.rs): humantime reads up to u64::MAX seconds,
    /// which the retry schedule turned into a panic (`Duration::from_secs_f64`), and the breaker
    /// and retention into i64 milliseconds that wrapped to -1000: a breaker that never held, a
    /// retention that deleted every event.
    #[test]
    fn durations_past_a_century_are_refused() {
        let huge = "\"18446744073709551615s\"";
        for key in [
            "retry.base_delay",
            "retry.max_delay",
            "circuit_breaker.recovery_timeout",
            "retention.max_age",
            "retention.interval",
            "providers.stripe.timeout",
            "providers.twilio.retry.max_delay",
        ] {
            let (section, name) = key.rsplit_once('.').unwrap();
            let toml = format!("[{section}]\n{name} = {huge}\n");
            let e = Config::from_toml(&toml).and_then(|c| c.check()).expect_err(&toml);
            assert_eq!(e.key, key);
            assert!(e.message.contains("longer than 100 years"), "{e}");
        }
        assert_eq!(key_of("[retention]\nmax_age = \"100y 1s\"\n"), "retention.max_age");
        let c = Config::from_toml("[retention]\nmax_age = \"100y\"\n[retry]\nmax_delay = \"100y\"\n").unwrap();
        c.check().unwrap();
        assert_eq!(c.retention.max_age.0, MAX_DURATION);
    }
}
