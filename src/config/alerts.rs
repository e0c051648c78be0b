//! `[notifiers.<name>]` and `[[alerts]]`: where alerts go, and when they fire. What a rule
//! means is `alerts/`'s; here is what it must hold to mean anything (`check`), so a rule that
//! could never fire, or could fire to nobody, stops startup naming its key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{err, is_http_url, ConfigError, HumanDuration};
use crate::providers::registry;
use crate::secret::Secret;

/// How a notifier is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifierKind {
    /// A Slack incoming webhook: `{"text": ...}`.
    Slack,
    /// A JSON POST signed with Standard Webhooks (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`), with `secret`.
    Webhook,
}

impl NotifierKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifierKind::Slack => "slack",
            NotifierKind::Webhook => "webhook",
        }
    }
}

/// One `[notifiers.<name>]` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    pub kind: NotifierKind,
    /// Where to post. A credential: a Slack incoming-webhook URL carries its token in the path,
    /// which `redact::url` keeps, so the whole URL is a [`Secret`] and shown as a fingerprint.
    pub url: Secret,
    /// The `whsec_` secret a `webhook` notifier signs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
}

impl NotifierConfig {
    /// One line for startup and `check-config`, the URL a credential shown as its fingerprint:
    /// `slack, url …/ME (sha256:0a1b2c3d)`.
    pub fn describe(&self) -> String {
        let signed = if self.secret.is_some() { ", signed" } else { "" };
        format!("{}, url {}{signed}", self.kind.as_str(), self.url.fingerprint())
    }
}

/// What an alert watches (`when`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// A provider's breaker is open (or half-open) until it closes again.
    BreakerOpen,
    /// More than `above` dead letters (one provider's, or all providers').
    DeadLetters,
    /// The share of failed delivery attempts within `window` is above `above` (0 to 1).
    FailureRate,
    /// The oldest due job has waited longer than `for`.
    QueueLag,
    /// Nothing received from `provider` for `for`.
    NoEvents,
    /// More than `above` refusals with `code` within `window`.
    Rejections,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::BreakerOpen => "breaker_open",
            RuleKind::DeadLetters => "dead_letters",
            RuleKind::FailureRate => "failure_rate",
            RuleKind::QueueLag => "queue_lag",
            RuleKind::NoEvents => "no_events",
            RuleKind::Rejections => "rejections",
        }
    }

    /// The keys a rule of this kind must have, besides `when` and `notify`.
    pub fn required(self) -> &'static [&'static str] {
        match self {
            RuleKind::BreakerOpen => &[],
            RuleKind::DeadLetters => &["above"],
            RuleKind::FailureRate => &["above", "window"],
            RuleKind::QueueLag => &["for"],
            RuleKind::NoEvents => &["provider", "for"],
            RuleKind::Rejections => &["code", "above", "window"],
        }
    }

    /// The keys it reads (required or optional), besides `when`, `notify` and `repeat`.
    pub fn reads(self) -> &'static [&'static str] {
        match self {
            RuleKind::BreakerOpen => &["provider"],
            RuleKind::DeadLetters => &["above", "provider"],
            RuleKind::FailureRate => &["above", "window", "provider"],
            RuleKind::QueueLag => &["for", "provider"],
            RuleKind::NoEvents => &["provider", "for"],
            RuleKind::Rejections => &["code", "above", "window"],
        }
    }
}

/// One `[[alerts]]` rule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub when: RuleKind,
    /// Notifier names (`[notifiers.<name>]`).
    #[serde(default)]
    pub notify: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<HumanDuration>,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<HumanDuration>,
    /// A refusal code (`invalid_signature`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Send the firing message again this often while the alert holds; never when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<HumanDuration>,
}

impl AlertRule {
    /// One line for startup and `check-config`: `no_events (provider stripe, for 30m) → ops, pager`.
    pub fn describe(&self) -> String {
        let d = |d: &HumanDuration| humantime::format_duration(d.0).to_string();
        let keys: Vec<String> = [
            self.provider.as_ref().map(|p| format!("provider {p}")),
            self.code.as_ref().map(|c| format!("code {c}")),
            self.above.map(|a| format!("above {a}")),
            self.window.as_ref().map(|w| format!("window {}", d(w))),
            self.for_.as_ref().map(|f| format!("for {}", d(f))),
            self.repeat.as_ref().map(|r| format!("repeat {}", d(r))),
        ]
        .into_iter()
        .flatten()
        .collect();
        let keys = if keys.is_empty() { String::new() } else { format!(" ({})", keys.join(", ")) };
        let to = if self.notify.is_empty() { "no notifier".to_string() } else { self.notify.join(", ") };
        format!("{}{keys} → {to}", self.when.as_str())
    }

    /// The keys this rule sets, besides `when` and `notify`.
    pub fn keys_set(&self) -> Vec<&'static str> {
        let set = [
            ("provider", self.provider.is_some()),
            ("above", self.above.is_some()),
            ("window", self.window.is_some()),
            ("for", self.for_.is_some()),
            ("code", self.code.is_some()),
        ];
        set.into_iter().filter(|(_, on)| *on).map(|(k, _)| k).collect()
    }
}

/// What the rules and notifiers must hold: every notifier a URL (and a `webhook` one its
/// Standard Webhooks secret), every rule its kind's keys, durations above zero, a share in 0..1,
/// notifiers and providers that exist.
pub fn check(
    notifiers: &BTreeMap<String, NotifierConfig>,
    rules: &[AlertRule],
    providers: &[String],
) -> Result<(), ConfigError> {
    for (name, n) in notifiers {
        if super::valid_endpoint_name(name).is_err() {
            return Err(err(
                &format!("notifiers.{name}"),
                "a notifier name is 1 to 64 lowercase letters, digits, `-` and `_`",
            ));
        }
        // The URL is a credential: the message never quotes it.
        if !is_http_url(n.url.expose()) {
            return Err(err(&format!("notifiers.{name}.url"), "is not an http(s) URL"));
        }
        match (n.kind, &n.secret) {
            (NotifierKind::Webhook, None) => {
                return Err(err(
                    &format!("notifiers.{name}.secret"),
                    "a `webhook` notifier signs with a Standard Webhooks secret (`whsec_` and base64); none is set",
                ))
            }
            (NotifierKind::Webhook, Some(s)) => registry::standard_webhooks_secret(s)
                .map_err(|m| err(&format!("notifiers.{name}.secret"), format!("{m} ({})", s.fingerprint())))?,
            (NotifierKind::Slack, Some(_)) => {
                return Err(err(
                    &format!("notifiers.{name}.secret"),
                    "a `slack` notifier has no secret: its URL is one",
                ))
            }
            (NotifierKind::Slack, None) => {}
        }
    }
    for (i, rule) in rules.iter().enumerate() {
        let key = |k: &str| format!("alerts[{i}].{k}");
        let when = rule.when.as_str();
        for k in rule.when.required() {
            if !rule.keys_set().contains(k) {
                return Err(err(&key(k), format!("a `{when}` rule needs `{k}`")));
            }
        }
        if rule.notify.is_empty() {
            return Err(err(&key("notify"), "names no notifier: the alert would tell nobody"));
        }
        for (j, name) in rule.notify.iter().enumerate() {
            if !notifiers.contains_key(name) {
                let known = notifiers.keys().map(String::as_str);
                return Err(err(
                    &format!("alerts[{i}].notify[{j}]"),
                    format!("`{name}` is no notifier (`[notifiers.{name}]`){}", super::did_you_mean(name, known)),
                ));
            }
        }
        if let Some(p) = &rule.provider {
            if !providers.contains(p) {
                return Err(err(
                    &key("provider"),
                    format!("`{p}` is no provider{}", super::did_you_mean(p, providers.iter().map(String::as_str))),
                ));
            }
        }
        if let Some(above) = rule.above {
            if !above.is_finite() || above < 0.0 {
                return Err(err(&key("above"), "must be a number of 0 or more"));
            }
            if rule.when == RuleKind::FailureRate && above >= 1.0 {
                return Err(err(&key("above"), "is a share of failed attempts: 0 to 1 (0.5 is half), below 1"));
            }
        }
        for (k, d) in [("window", rule.window), ("for", rule.for_), ("repeat", rule.repeat)] {
            if d.is_some_and(|d| d.0.is_zero()) {
                return Err(err(&key(k), "must be longer than 0s"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::{layers, Config};

    const OPS: &str = "[notifiers.ops]\nkind = \"slack\"\nurl = \"https://hooks.slack.com/services/T0/B0/sekrit\"\n";

    /// The key and message of the error that stops `toml` (after the notifier `ops`).
    fn refusal(toml: &str) -> (String, String) {
        let text = format!("{OPS}{toml}");
        let e = Config::from_toml(&text).and_then(|c| c.check()).expect_err(toml);
        (e.key, e.message)
    }

    #[test]
    fn each_bad_rule_or_notifier_is_refused_naming_its_key() {
        let rule = |body: &str| format!("[[alerts]]\n{body}\n");
        let ok = rule("when = \"breaker_open\"\nnotify = [\"ops\"]");
        let cases: Vec<(String, &str, &str)> = vec![
            (rule("when = \"breaker_open\"\nnotify = [\"ops\", \"pagr\"]"), "alerts[0].notify[1]", "`pagr` is no notifier"),
            (format!("{ok}{}", rule("when = \"dead_letters\"\nnotify = [\"ops\"]")), "alerts[1].above", "needs `above`"),
            (rule("when = \"failure_rate\"\nabove = 0.5\nnotify = [\"ops\"]"), "alerts[0].window", "needs `window`"),
            (rule("when = \"no_events\"\nfor = \"5m\"\nnotify = [\"ops\"]"), "alerts[0].provider", "needs `provider`"),
            (rule("when = \"rejections\"\nabove = 1\nwindow = \"1m\"\nnotify = [\"ops\"]"), "alerts[0].code", "needs `code`"),
            (rule("when = \"queue_lag\"\nnotify = [\"ops\"]"), "alerts[0].for", "needs `for`"),
            (rule("when = \"queue_lag\"\nfor = \"soon\"\nnotify = [\"ops\"]"), "alerts[0].for", "is not a duration"),
            (rule("when = \"queue_lag\"\nfor = \"0s\"\nnotify = [\"ops\"]"), "alerts[0].for", "longer than 0s"),
            (rule("when = \"breaker_open\"\nrepeat = \"1x\"\nnotify = [\"ops\"]"), "alerts[0].repeat", "is not a duration"),
            (rule("when = \"breaker_closed\"\nnotify = [\"ops\"]"), "alerts[0].when", "breaker_open"),
            (rule("when = \"breaker_open\"\nnotify = []"), "alerts[0].notify", "names no notifier"),
            (rule("when = \"breaker_open\"\nprovider = \"strip\"\nnotify = [\"ops\"]"), "alerts[0].provider", "did you mean `stripe`"),
            (rule("when = \"failure_rate\"\nabove = 1.5\nwindow = \"5m\"\nnotify = [\"ops\"]"), "alerts[0].above", "share"),
            (rule("when = \"dead_letters\"\nabove = -1\nnotify = [\"ops\"]"), "alerts[0].above", "0 or more"),
            (rule("when = \"dead_letters\"\nabove = 0\nthreshold = 1\nnotify = [\"ops\"]"), "alerts[0].threshold", "unknown field `threshold`"),
            ("[notifiers.pager]\nkind = \"webhook\"\nurl = \"https://alerts.example.com/\"\n".into(), "notifiers.pager.secret", "none is set"),
            (
                "[notifiers.pager]\nkind = \"webhook\"\nurl = \"https://alerts.example.com/\"\nsecret = \"whsec_not base64!\"\n".into(),
                "notifiers.pager.secret",
                "is not base64",
            ),
            ("[notifiers.page]\nkind = \"slack\"\nurl = \"ftp://files.example.com/sekrit\"\n".into(), "notifiers.page.url", "not an http(s) URL"),
            ("[notifiers.page]\nkind = \"email\"\nurl = \"https://example.com/\"\n".into(), "notifiers.page.kind", "slack"),
        ];
        for (toml, key, message) in cases {
            let (k, m) = refusal(&toml);
            assert_eq!(k, key, "{toml}: {m}");
            assert!(m.contains(message), "{toml}: {m}");
            assert!(!m.contains("sekrit"), "a notifier URL is a credential: {m}");
        }
        let every_kind = [
            "when = \"breaker_open\"\nnotify = [\"ops\"]\nrepeat = \"1h\"",
            "when = \"dead_letters\"\nabove = 0\nprovider = \"stripe\"\nnotify = [\"ops\"]",
            "when = \"failure_rate\"\nabove = 0.5\nwindow = \"5m\"\nnotify = [\"ops\"]",
            "when = \"queue_lag\"\nfor = \"10m\"\nnotify = [\"ops\"]",
            "when = \"no_events\"\nprovider = \"stripe\"\nfor = \"30m\"\nnotify = [\"ops\"]",
            "when = \"rejections\"\ncode = \"invalid_signature\"\nabove = 5\nwindow = \"10m\"\nnotify = [\"ops\"]",
        ];
        let all: String = every_kind.iter().map(|r| rule(r)).collect();
        let c = Config::from_toml(&format!("{OPS}{all}")).unwrap();
        c.check().unwrap();
        assert_eq!(c.alerts.len(), 6);
    }

    /// The commented notifiers and rules of `staging.toml.example`, uncommented, pass the check
    /// (their placeholder secret aside, which is valid base64).
    #[test]
    fn the_example_rules_load() {
        let example = include_str!("../../staging.toml.example");
        let block = &example[example.find("# ---- Alerts").expect("the example has its alerts")..];
        let text: String = block
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with('[') || l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        c.check().unwrap();
        assert_eq!(c.alerts.len(), 6, "{text}");
        assert_eq!(c.notifiers.len(), 2, "{text}");
    }

    #[test]
    fn notifiers_and_rules_take_environment_variables_and_show_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stagehook.toml");
        let pager =
            "[notifiers.pager]\nkind = \"webhook\"\nurl = \"https://a.example.com/\"\nsecret = \"whsec_AAAA\"\n";
        std::fs::write(&file, format!("{OPS}{pager}")).unwrap();
        let env: BTreeMap<String, String> = [
            ("STAGEHOOK_NOTIFIERS_OPS_URL", "https://hooks.slack.com/services/T1/B1/other"),
            ("STAGEHOOK_NOTIFIERS_PAGER_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            ("STAGEHOOK_ALERTS", "[{when = \"breaker_open\", notify = [\"ops\", \"pager\"]}]"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let l = layers::load(Some(&file), &env, &[]).unwrap();
        assert_eq!(l.config.notifiers["ops"].url.expose(), "https://hooks.slack.com/services/T1/B1/other");
        assert_eq!(
            l.config.notifiers["pager"].secret.as_ref().unwrap().expose(),
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        );
        assert_eq!(l.config.alerts.len(), 1);
        assert_eq!(l.config.alerts[0].notify, ["ops", "pager"]);
        let shown = l.show();
        let source = |key: &str| shown.iter().find(|(k, ..)| k == key).map(|(_, v, s)| (v.clone(), s.to_string()));
        let (url, from) = source("notifiers.ops.url").unwrap();
        assert_eq!(from, "env STAGEHOOK_NOTIFIERS_OPS_URL");
        for (key, value, _) in &shown {
            assert!(!value.contains("/B1/other") && !value.contains("MfKQ9r8"), "{key} = {value}");
        }
        assert!(!url.contains("hooks.slack.com"), "{url}");
        // A bad value from a variable names the key and the variable.
        let mut bad = env.clone();
        bad.insert("STAGEHOOK_ALERTS".into(), "[{when = \"breaker_open\", notify = [\"nobody\"]}]".into());
        let e = layers::load(Some(&file), &bad, &[]).unwrap_err();
        assert_eq!(e.key, "alerts[0].notify[0]", "{}", e.message);
        // A variable for a notifier the file does not declare is refused, not lost.
        let mut undeclared = env.clone();
        undeclared.insert("STAGEHOOK_NOTIFIERS_OSP_URL".into(), "https://x.example.com/".into());
        let e = layers::load(Some(&file), &undeclared, &[]).unwrap_err();
        assert_eq!(e.key, "notifiers", "{}", e.message);
        assert!(e.message.contains("did you mean `STAGEHOOK_NOTIFIERS_OPS_URL`"), "{}", e.message);
    }
}
