//! What a check of a configuration finds, shared by the validator (`config/validate.rs`) and
//! the providers' own checks (`providers/registry.rs`), so neither imports the other.

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
