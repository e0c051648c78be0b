//! What a rule says about a moment: pure functions over [`Figures`] (a snapshot of what the
//! store and the engine count, taken by `alerts/mod.rs`) and the snapshots before it, so every
//! rule is table-tested without a server, a store or a clock.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{AlertRule, RuleKind};
use crate::store::AlertState;

/// One provider's figures at one moment. Notifiers' lanes are never here: a notification does
/// not count towards any rule, so an alert cannot feed on itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProviderFigures {
    /// When its breaker opened, while it is not closed (open or half-open: a failed probe that
    /// reopens it does not end the alert).
    pub breaker_open_since_ms: Option<i64>,
    /// Consecutive retryable failures the breaker counts.
    pub breaker_failures: u32,
    /// Stored events whose delivery failed for good.
    pub dead_letters: u64,
    /// Delivery attempts sent since startup, and how many failed.
    pub sent: u64,
    pub failed: u64,
    /// The due time of its oldest queued job.
    pub oldest_due_ms: Option<i64>,
    /// When it last received a request it took (an event or a duplicate).
    pub last_event_ms: i64,
}

impl ProviderFigures {
    /// Whether a closed breaker says anything: a breaker lives in memory, so after a restart it
    /// is closed without having seen the app. Until an attempt is delivered (or it opens), a
    /// closed breaker does not end a `breaker_open` alert that was firing before the restart.
    pub fn breaker_known(&self) -> bool {
        self.breaker_open_since_ms.is_some() || self.sent > self.failed
    }
}

/// Whether the figures cannot tell yet that the firing alert of `rule` for `subject` ended;
/// the evaluator then leaves it as it is.
pub fn undecided(rule: &AlertRule, subject: &str, now: &Figures) -> bool {
    rule.when == RuleKind::BreakerOpen && now.providers.get(subject).is_some_and(|p| !p.breaker_known())
}

/// Everything the rules read, at `at_ms`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub at_ms: i64,
    pub providers: BTreeMap<String, ProviderFigures>,
    /// Refused requests by code, all providers (cumulative).
    pub rejected: BTreeMap<String, u64>,
}

/// An alert (a rule for one subject) whose condition holds now: its subject (the provider, or empty
/// for a rule over all providers), the figure that makes it hold, and since when, when the figures
/// know it better than the evaluator's first sight (a breaker's opening, the last event).
#[derive(Debug, Clone, PartialEq)]
pub struct Holding {
    pub subject: String,
    pub figure: f64,
    /// The figure in words: "3 dead letters (above 0)".
    pub detail: String,
    pub since_ms: Option<i64>,
}

/// The alerts of `rule` that hold at `now`; `history` is the earlier snapshots, oldest
/// first, for the rules over a window.
pub fn holding(rule: &AlertRule, now: &Figures, history: &[Figures]) -> Vec<Holding> {
    let above = rule.above.unwrap_or(0.0);
    let providers = || now.providers.iter().filter(move |(name, _)| rule.provider.as_ref().is_none_or(|p| p == *name));
    let subject = || rule.provider.clone().unwrap_or_default();
    match rule.when {
        RuleKind::BreakerOpen => providers()
            .filter_map(|(name, p)| {
                let since = p.breaker_open_since_ms?;
                Some(Holding {
                    subject: name.clone(),
                    figure: f64::from(p.breaker_failures),
                    detail: format!(
                        "its delivery circuit breaker is open ({} consecutive failed attempts)",
                        p.breaker_failures
                    ),
                    since_ms: Some(since),
                })
            })
            .collect(),
        RuleKind::DeadLetters => {
            let count: u64 = providers().map(|(_, p)| p.dead_letters).sum();
            (count as f64 > above)
                .then(|| Holding {
                    subject: subject(),
                    figure: count as f64,
                    detail: format!("{count} dead letter{} (above {above})", plural(count)),
                    since_ms: None,
                })
                .into_iter()
                .collect()
        }
        RuleKind::FailureRate => {
            let window = rule.window.map_or(Duration::ZERO, |w| w.0);
            let base = window_base(now, history, window);
            let (mut sent, mut failed) = (0, 0);
            for (name, p) in providers() {
                let before = base.and_then(|b| b.providers.get(name)).cloned().unwrap_or_default();
                sent += p.sent.saturating_sub(before.sent);
                failed += p.failed.saturating_sub(before.failed);
            }
            let share = if sent == 0 { 0.0 } else { failed as f64 / sent as f64 };
            (share > above)
                .then(|| Holding {
                    subject: subject(),
                    figure: share,
                    detail: format!(
                        "{:.0}% of delivery attempts failed ({failed} of {sent}) in the last {} (above {:.0}%)",
                        share * 100.0,
                        humantime::format_duration(window),
                        above * 100.0
                    ),
                    since_ms: None,
                })
                .into_iter()
                .collect()
        }
        RuleKind::QueueLag => {
            let limit = rule.for_.map_or(0, |d| d.0.as_millis() as i64);
            providers()
                .filter_map(|(name, p)| {
                    let lag = now.at_ms - p.oldest_due_ms?;
                    (lag > limit).then(|| Holding {
                        subject: name.clone(),
                        figure: lag as f64 / 1000.0,
                        detail: format!(
                            "its oldest due delivery has waited {} (over {})",
                            seconds(lag),
                            seconds(limit)
                        ),
                        since_ms: None,
                    })
                })
                .collect()
        }
        RuleKind::NoEvents => {
            let limit = rule.for_.map_or(0, |d| d.0.as_millis() as i64);
            providers()
                .filter_map(|(name, p)| {
                    let quiet = now.at_ms - p.last_event_ms;
                    (quiet >= limit).then(|| Holding {
                        subject: name.clone(),
                        figure: quiet as f64 / 1000.0,
                        detail: format!("nothing received for {} (silence over {})", seconds(quiet), seconds(limit)),
                        since_ms: Some(p.last_event_ms),
                    })
                })
                .collect()
        }
        RuleKind::Rejections => {
            let code = rule.code.as_deref().unwrap_or_default();
            let window = rule.window.map_or(Duration::ZERO, |w| w.0);
            let before = window_base(now, history, window).and_then(|b| b.rejected.get(code)).copied().unwrap_or(0);
            let count = now.rejected.get(code).copied().unwrap_or(0).saturating_sub(before);
            (count as f64 > above)
                .then(|| Holding {
                    subject: String::new(),
                    figure: count as f64,
                    detail: format!(
                        "{count} request{} refused with `{code}` in the last {} (above {above})",
                        plural(count),
                        humantime::format_duration(window)
                    ),
                    since_ms: None,
                })
                .into_iter()
                .collect()
        }
    }
}

/// The snapshot a window's counts start from: the newest one at least `window` old, else the
/// oldest there is (the window is not full yet: counting from it undercounts, never
/// overcounts).
fn window_base<'a>(now: &Figures, history: &'a [Figures], window: Duration) -> Option<&'a Figures> {
    let start = now.at_ms - window.as_millis() as i64;
    history.iter().rev().find(|f| f.at_ms <= start).or_else(|| history.first())
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A duration in whole seconds, as humantime writes it ("2m 5s").
fn seconds(ms: i64) -> String {
    humantime::format_duration(Duration::from_secs((ms.max(0) / 1000) as u64)).to_string()
}

/// What an alert does at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing to send: it holds and was sent recently enough, or it neither holds nor fired.
    Quiet,
    /// It starts holding: send the firing message once.
    Fire,
    /// It still holds and `repeat` has passed since the last message: send it again.
    Repeat,
    /// It held and no longer does: send one `resolved`.
    Resolve,
}

/// The one rule of firing: once when the condition starts, once `resolved` when it ends, and in
/// between nothing unless `repeat` is set.
pub fn step(state: Option<&AlertState>, holds: bool, now_ms: i64, repeat: Option<Duration>) -> Step {
    match (state, holds) {
        (None, true) => Step::Fire,
        (None, false) => Step::Quiet,
        (Some(_), false) => Step::Resolve,
        (Some(s), true) => match repeat {
            Some(every) if now_ms - s.last_sent_ms >= every.as_millis() as i64 => Step::Repeat,
            _ => Step::Quiet,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::config::HumanDuration;

    fn rule(when: RuleKind) -> AlertRule {
        AlertRule {
            when,
            notify: vec!["ops".into()],
            provider: None,
            above: None,
            window: None,
            for_: None,
            code: None,
            repeat: None,
        }
    }

    fn secs(s: u64) -> Option<HumanDuration> {
        Some(HumanDuration(Duration::from_secs(s)))
    }

    fn figures(at_ms: i64, providers: &[(&str, ProviderFigures)]) -> Figures {
        Figures {
            at_ms,
            providers: providers.iter().map(|(n, p)| (n.to_string(), p.clone())).collect(),
            rejected: BTreeMap::new(),
        }
    }

    fn subjects(h: &[Holding]) -> Vec<(&str, f64)> {
        h.iter().map(|h| (h.subject.as_str(), h.figure)).collect()
    }

    #[test]
    fn breaker_open_holds_per_provider_while_not_closed() {
        let open = ProviderFigures { breaker_open_since_ms: Some(5), breaker_failures: 3, ..Default::default() };
        let now = figures(10, &[("stripe", open.clone()), ("sms", ProviderFigures::default())]);
        let h = holding(&rule(RuleKind::BreakerOpen), &now, &[]);
        assert_eq!(subjects(&h), [("stripe", 3.0)]);
        assert_eq!(h[0].since_ms, Some(5));
        let only_sms = AlertRule { provider: Some("sms".into()), ..rule(RuleKind::BreakerOpen) };
        assert!(holding(&only_sms, &now, &[]).is_empty());
    }

    #[test]
    fn a_closed_breaker_that_has_not_delivered_since_a_restart_says_nothing() {
        let r = rule(RuleKind::BreakerOpen);
        let at = |p: ProviderFigures| figures(0, &[("stripe", p)]);
        let fresh = ProviderFigures::default();
        assert!(undecided(&r, "stripe", &at(fresh.clone())));
        let failing = ProviderFigures { sent: 2, failed: 2, breaker_failures: 2, ..fresh.clone() };
        assert!(undecided(&r, "stripe", &at(failing)));
        let delivered = ProviderFigures { sent: 3, failed: 2, ..fresh.clone() };
        assert!(!undecided(&r, "stripe", &at(delivered.clone())));
        assert!(!undecided(&rule(RuleKind::DeadLetters), "stripe", &at(fresh.clone())));
        assert!(!undecided(&r, "gone", &at(delivered)));
    }

    #[test]
    fn dead_letters_above_a_count_per_provider_or_in_all() {
        let now = figures(
            0,
            &[
                ("stripe", ProviderFigures { dead_letters: 2, ..Default::default() }),
                ("sms", ProviderFigures { dead_letters: 1, ..Default::default() }),
            ],
        );
        let all = AlertRule { above: Some(2.0), ..rule(RuleKind::DeadLetters) };
        assert_eq!(subjects(&holding(&all, &now, &[])), [("", 3.0)]);
        let stripe = AlertRule { provider: Some("stripe".into()), ..all.clone() };
        assert!(holding(&stripe, &now, &[]).is_empty(), "2 is not above 2");
        let zero = AlertRule { above: Some(0.0), ..stripe };
        assert_eq!(subjects(&holding(&zero, &now, &[])), [("stripe", 2.0)]);
    }

    #[test]
    fn failure_rate_counts_only_the_window() {
        let p = |sent, failed| ProviderFigures { sent, failed, ..Default::default() };
        // 10 attempts, all failed, long ago; then 10 more, 3 failed, within the window.
        let history = [figures(0, &[("stripe", p(0, 0))]), figures(60_000, &[("stripe", p(10, 10))])];
        let now = figures(120_000, &[("stripe", p(20, 13))]);
        let r = AlertRule { above: Some(0.25), window: secs(60), ..rule(RuleKind::FailureRate) };
        let h = holding(&r, &now, &history);
        assert_eq!(subjects(&h), [("", 0.3)]);
        let strict = AlertRule { above: Some(0.3), ..r.clone() };
        assert!(holding(&strict, &now, &history).is_empty(), "0.3 is not above 0.3");
        // Nothing sent in the window: no share, no alert.
        let idle = figures(180_000, &[("stripe", p(20, 13))]);
        let later = [history[1].clone(), now.clone()];
        assert!(holding(&r, &idle, &later).is_empty());
    }

    #[test]
    fn queue_lag_and_no_events_against_a_clock() {
        let clock = Clock::frozen(1_000_000);
        let p = ProviderFigures {
            oldest_due_ms: Some(clock.now_ms()),
            last_event_ms: clock.now_ms(),
            ..Default::default()
        };
        let lag = AlertRule { for_: secs(30), ..rule(RuleKind::QueueLag) };
        let quiet = AlertRule { for_: secs(2), provider: Some("stripe".into()), ..rule(RuleKind::NoEvents) };
        let at = |clock: &Clock| figures(clock.now_ms(), &[("stripe", p.clone())]);
        assert!(holding(&lag, &at(&clock), &[]).is_empty());
        clock.advance(1999);
        assert!(holding(&quiet, &at(&clock), &[]).is_empty());
        clock.advance(1);
        let h = holding(&quiet, &at(&clock), &[]);
        assert_eq!(subjects(&h), [("stripe", 2.0)]);
        assert_eq!(h[0].since_ms, Some(1_000_000));
        clock.advance(28_000);
        assert!(holding(&lag, &at(&clock), &[]).is_empty(), "30s is not over 30s");
        clock.advance(1000);
        assert_eq!(subjects(&holding(&lag, &at(&clock), &[])), [("stripe", 31.0)]);
        // A job due in the future is no lag.
        let ahead = ProviderFigures { oldest_due_ms: Some(clock.now_ms() + 60_000), ..p.clone() };
        assert!(holding(&lag, &figures(clock.now_ms(), &[("stripe", ahead)]), &[]).is_empty());
    }

    #[test]
    fn rejections_of_one_code_within_the_window() {
        let at = |ms: i64, n: u64| Figures {
            at_ms: ms,
            providers: BTreeMap::new(),
            rejected: [("invalid_signature".to_string(), n), ("rate_limited".to_string(), 100)].into(),
        };
        let r = AlertRule {
            code: Some("invalid_signature".into()),
            above: Some(2.0),
            window: secs(60),
            ..rule(RuleKind::Rejections)
        };
        let history = [at(0, 50), at(30_000, 52)];
        assert!(holding(&r, &at(60_000, 52), &history).is_empty(), "none since the window's start");
        assert_eq!(subjects(&holding(&r, &at(60_000, 53), &history)), [("", 3.0)]);
    }

    #[test]
    fn fires_once_resolves_once_and_repeats_only_when_asked() {
        let s = AlertState { since_ms: 0, last_sent_ms: 0 };
        // (state, holds, now, repeat in seconds, step)
        type Case<'a> = (Option<&'a AlertState>, bool, i64, Option<u64>, Step);
        let cases: [Case; 7] = [
            (None, false, 0, None, Step::Quiet),
            (None, true, 0, None, Step::Fire),
            (Some(&s), true, 10_000_000, None, Step::Quiet),
            (Some(&s), true, 59_999, Some(60), Step::Quiet),
            (Some(&s), true, 60_000, Some(60), Step::Repeat),
            (Some(&s), false, 1, None, Step::Resolve),
            (Some(&s), false, 1, Some(60), Step::Resolve),
        ];
        for (state, holds, now, repeat, expected) in cases {
            let got = step(state, holds, now, repeat.map(Duration::from_secs));
            assert_eq!(got, expected, "{state:?} holds={holds} now={now} repeat={repeat:?}");
        }
    }
}
