//! What a check of a configuration finds, shared by the validator (`config/validate.rs`) and
//! the providers' own checks (`providers/registry/`), so neither imports the other: a
//! [`Finding`] the validator reports, or a [`ConfigError`] that stops startup.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Ok,
}

/// One finding: a stable id, a severity, the key concerned and how to fix it. Never a secret:
/// a credential appears only as its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub id: &'static str,
    pub severity: Severity,
    pub key: String,
    pub message: String,
}

impl Finding {
    pub fn new(id: &'static str, severity: Severity, key: &str, message: impl Into<String>) -> Finding {
        Finding { id, severity, key: key.to_string(), message: message.into() }
    }
}

/// A configuration problem that stops startup, always naming the key it concerns
/// (`providers.<name>.<key>`, or empty for the file as a whole); the message reads on from the
/// key (`is empty; remove it`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", if .key.is_empty() { "config".to_string() } else { format!("config key `{}`", .key) })]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { key: key.into(), message: message.into() }
    }
}
