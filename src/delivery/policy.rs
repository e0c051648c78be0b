//! What a delivery attempt's result means, and when the next attempt is due.
//!
//! Pure functions: the random share of the jitter comes in as an argument, so the schedules are
//! table-testable.

use std::time::{Duration, SystemTime};

use super::settings::{RetryConfig, Strategy};

/// How one attempt ended, as far as retrying goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A 2xx from the app.
    Delivered,
    /// Worth trying again: connect errors, timeouts, 5xx, 408, 429.
    Retry { reason: &'static str, retry_after: Option<Duration> },
    /// The app refused it for good: any other status.
    Permanent { reason: &'static str },
}

impl Verdict {
    /// Whether the app is in trouble (what circuit breakers count). A permanent refusal means the
    /// app is up and answering, so it does not count.
    pub fn is_failure(&self) -> bool {
        matches!(self, Verdict::Retry { .. })
    }
}

/// The verdict on an HTTP status (with its `Retry-After`, if any).
pub fn classify_status(status: u16, retry_after: Option<&str>, now: SystemTime) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 => Verdict::Retry { reason: "http_408", retry_after: None },
        429 => Verdict::Retry { reason: "http_429", retry_after: retry_after.and_then(|v| parse_retry_after(v, now)) },
        500..=599 => {
            Verdict::Retry { reason: "http_5xx", retry_after: retry_after.and_then(|v| parse_retry_after(v, now)) }
        }
        _ => Verdict::Permanent { reason: "http_4xx" },
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[derive(Debug, Clone)]
pub struct RetryPolicy(pub RetryConfig);

impl RetryPolicy {
    /// The delay before the attempt after `failed_attempt` (1-based), or `None` when that was the
    /// last one. `unit` is a random number in [-1, 1] that scales the jitter. A `Retry-After`
    /// from the app wins over the schedule, but never beyond `max_delay`.
    pub fn next_delay(&self, failed_attempt: u32, retry_after: Option<Duration>, unit: f64) -> Option<Duration> {
        let c = &self.0;
        if failed_attempt >= c.max_attempts {
            return None;
        }
        let max = c.max_delay.0;
        if let Some(wait) = retry_after {
            return Some(wait.min(max));
        }
        let base = c.base_delay.0.as_secs_f64();
        let raw = match c.strategy {
            Strategy::Fixed => base,
            Strategy::Linear => base * failed_attempt as f64,
            Strategy::Exponential => base * 2f64.powi(failed_attempt.saturating_sub(1).min(62) as i32),
        };
        let capped = raw.min(max.as_secs_f64());
        let jittered = capped * (1.0 + c.jitter * unit.clamp(-1.0, 1.0));
        Some(Duration::from_secs_f64(jittered.clamp(0.0, max.as_secs_f64())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::HumanDuration;

    fn policy(strategy: Strategy, jitter: f64) -> RetryPolicy {
        RetryPolicy(RetryConfig {
            strategy,
            max_attempts: 6,
            base_delay: HumanDuration(Duration::from_secs(1)),
            max_delay: HumanDuration(Duration::from_secs(10)),
            jitter,
        })
    }

    fn schedule(p: &RetryPolicy, unit: f64) -> Vec<f64> {
        (1..=6).map_while(|a| p.next_delay(a, None, unit)).map(|d| d.as_secs_f64()).collect()
    }

    #[test]
    fn each_strategy_has_its_schedule_capped_by_max_delay() {
        assert_eq!(schedule(&policy(Strategy::Fixed, 0.0), 0.0), [1.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(schedule(&policy(Strategy::Linear, 0.0), 0.0), [1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(schedule(&policy(Strategy::Exponential, 0.0), 0.0), [1.0, 2.0, 4.0, 8.0, 10.0]);
    }

    #[test]
    fn jitter_moves_each_delay_within_its_share() {
        let p = policy(Strategy::Exponential, 0.2);
        assert_eq!(schedule(&p, 1.0), [1.2, 2.4, 4.8, 9.6, 10.0]);
        let low = schedule(&p, -1.0);
        for (got, want) in low.iter().zip([0.8, 1.6, 3.2, 6.4, 8.0]) {
            assert!((got - want).abs() < 1e-9, "{low:?}");
        }
    }

    #[test]
    fn retry_after_wins_but_is_capped_and_attempts_run_out() {
        let p = policy(Strategy::Fixed, 0.0);
        assert_eq!(p.next_delay(1, Some(Duration::from_secs(7)), 0.0), Some(Duration::from_secs(7)));
        assert_eq!(p.next_delay(1, Some(Duration::from_secs(700)), 0.0), Some(Duration::from_secs(10)));
        assert_eq!(p.next_delay(6, None, 0.0), None);
        assert_eq!(p.next_delay(6, Some(Duration::from_secs(1)), 0.0), None, "Retry-After adds no attempt");
    }

    /// The app named the time: jitter would move it, so none is applied, whatever the draw.
    #[test]
    fn retry_after_is_not_jittered() {
        let p = policy(Strategy::Fixed, 0.5);
        for unit in [-1.0, -0.3, 0.7, 1.0] {
            assert_eq!(p.next_delay(1, Some(Duration::from_secs(7)), unit), Some(Duration::from_secs(7)), "{unit}");
            assert_eq!(p.next_delay(2, Some(Duration::from_secs(60)), unit), Some(Duration::from_secs(10)), "{unit}");
        }
        // The same draw does move the schedule's own delay.
        assert_eq!(p.next_delay(1, None, 1.0), Some(Duration::from_secs_f64(1.5)));
    }

    #[test]
    fn retry_after_counts_on_a_5xx_too_but_not_on_408() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for s in [500, 503] {
            let v = classify_status(s, Some("30"), now);
            assert_eq!(v, Verdict::Retry { reason: "http_5xx", retry_after: Some(Duration::from_secs(30)) }, "{s}");
        }
        let date = httpdate::fmt_http_date(now + Duration::from_secs(45));
        assert_eq!(
            classify_status(503, Some(&date), now),
            Verdict::Retry { reason: "http_5xx", retry_after: Some(Duration::from_secs(45)) }
        );
        assert_eq!(
            classify_status(503, Some("later"), now),
            Verdict::Retry { reason: "http_5xx", retry_after: None },
            "an unreadable Retry-After leaves the schedule in charge"
        );
        assert_eq!(classify_status(408, Some("30"), now), Verdict::Retry { reason: "http_408", retry_after: None });
    }

    /// A redirect is not followed (the target is configured, not discovered) and not retried:
    /// the app answered, so its breaker does not count it either.
    #[test]
    fn redirects_and_other_non_2xx_statuses_are_permanent() {
        let now = SystemTime::UNIX_EPOCH;
        for s in [100, 101, 301, 302, 303, 307, 308, 304] {
            let v = classify_status(s, Some("5"), now);
            assert_eq!(v, Verdict::Permanent { reason: "http_4xx" }, "{s}");
            assert!(!v.is_failure(), "{s}");
        }
    }

    #[test]
    fn statuses_are_classified_as_the_seed_says() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(classify_status(204, None, now), Verdict::Delivered);
        for s in [500, 502, 503, 599, 408, 429] {
            assert!(classify_status(s, None, now).is_failure(), "{s}");
        }
        for s in [400, 401, 404, 410, 422] {
            assert_eq!(classify_status(s, None, now), Verdict::Permanent { reason: "http_4xx" }, "{s}");
        }
        let v = classify_status(429, Some("3"), now);
        assert_eq!(v, Verdict::Retry { reason: "http_429", retry_after: Some(Duration::from_secs(3)) });
        let date = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
