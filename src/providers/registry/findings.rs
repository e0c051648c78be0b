//! The validator's findings about the provider sections: each kind's own (through the
//! registry's dispatch), each section's (its credential, its unused keys), and a credential two
//! sections share.

use super::{is_built_in, KindConfig, ProviderKind};
use crate::finding::{Finding, Severity};
use crate::providers::kind::{is_placeholder, placeholder_finding, Surroundings};
use crate::secret::Secret;

/// Every finding about the configured provider sections: the kinds' own
/// ([`crate::providers::kind::Kind::findings`]), each section's (`section_findings`), and a
/// credential two sections share.
pub fn findings<'a>(
    sections: impl IntoIterator<Item = (&'a str, &'a KindConfig)>,
    around: &Surroundings<'_>,
) -> Vec<Finding> {
    let mut sections: Vec<(&str, &KindConfig)> = sections.into_iter().collect();
    // The built-in endpoints first, so that a named endpoint is the one warned about.
    sections.sort_by_key(|(name, _)| !is_built_in(name));
    let mut out = Vec::new();
    for kind in ProviderKind::ALL {
        let built_in =
            kind.built_in().and_then(|s| sections.iter().find(|(name, _)| *name == s.name).map(|(_, c)| &c.settings));
        kind.findings(built_in, around, &mut out);
    }
    for (name, s) in &sections {
        section_findings(name, s, &mut out);
    }
    let credentials: Vec<(&str, &Secret)> =
        sections.iter().filter_map(|(name, s)| Some((*name, s.settings.credential()?))).collect();
    for (i, (a, sa)) in credentials.iter().enumerate() {
        for (b, sb) in &credentials[i + 1..] {
            if sa.expose() == sb.expose() {
                out.push(Finding::new(
                    "secret.reused",
                    Severity::Warning,
                    &format!("providers.{b}"),
                    format!("{a} and {b} share one secret: each provider has its own; a leak of one exposes both"),
                ));
            }
        }
    }
    out
}

/// The findings about a section: its kind's own about any of its sections
/// ([`crate::providers::kind::Kind::section_findings`]), every key one its kind reads, and for a section that is not a
/// built-in endpoint's (whose kind checks its credential itself, [`Kind::findings`]) its credential
/// present and no placeholder.
fn section_findings(name: &str, s: &KindConfig, out: &mut Vec<Finding>) {
    let kind = s.kind();
    let prefix = format!("providers.{name}");
    let credential = kind.credential_key();
    let built_in = is_built_in(name);
    if !built_in && !s.settings.has_credentials() {
        out.push(Finding::new(
            "provider.secret_missing",
            Severity::Error,
            &format!("{prefix}.{credential}"),
            format!("{name} ({}) has no {credential}: its endpoint answers 503 until one is set", kind.as_str()),
        ));
    }
    s.settings.section_findings(name, out);
    let rotation = s.settings.rotation();
    for (i, secret) in rotation.all().iter().enumerate() {
        if !built_in && is_placeholder(secret) {
            let key = format!(
                "{prefix}.secret{}",
                if i == 0 && rotation.secret.is_some() { String::new() } else { format!("s[{i}]") }
            );
            out.push(placeholder_finding(&key, secret, "the provider's real signing secret"));
        }
    }
    // A key the kind ignores is a mistake that would pass silently (a GitHub endpoint given
    // `timestamp_header` still verifies without one).
    for (key, _) in &s.unused {
        out.push(Finding::new(
            "provider.unused_key",
            Severity::Error,
            &format!("{prefix}.{key}"),
            format!("kind `{}` does not use `{key}`: remove it, or set the kind that does", kind.as_str()),
        ));
    }
}
