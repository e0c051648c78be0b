//! `stagehook mcp`: a Model Context Protocol server over stdio, so an editor's coding agent can
//! look at and act on a running stagehook: its events, why signatures failed, its stats and
//! breakers, and (with `--allow-write`) send, replay and edit and replay. Everything goes through
//! the running stagehook's HTTP API ([`crate::backfill::remote::Remote`], the client
//! `stagehook backfill` uses), so the agent sees exactly what the API shows: headers redacted,
//! credentials masked, the API's own error codes.
//!
//! The protocol is JSON-RPC 2.0, one message a line on stdin and stdout (the MCP stdio
//! transport); stdout carries nothing else, and logs go to stderr. It is implemented here rather
//! than with `rmcp`, the official Rust SDK: a server of tools and resources needs seven methods
//! (`initialize`, `notifications/initialized`, `ping`, `tools/list`, `tools/call`,
//! `resources/list`, `resources/read`), a few dozen lines over `serde_json`, while `rmcp`'s
//! server brings about twenty crates this binary does not otherwise build (`schemars` and its
//! derive, `chrono`, `uuid`, `futures`' executor, a second `sha2` line) for the same exchange.
//! The official Python client drives this server in the integration tests, so conformance is
//! checked against the SDK the protocol's authors ship.
//!
//! - [`tools`]: each tool, its JSON schema and its call.
//! - [`diff`]: the comparison of two events, as the dashboard's.

pub mod diff;
pub mod tools;

use std::io::{BufRead, Write};

use serde_json::{json, Value};

use crate::backfill::remote::Remote;
use crate::config::Config;
use crate::providers::Endpoint;

/// The protocol revisions this server answers `initialize` with; a client asking for another
/// gets the newest of these, and decides.
pub const PROTOCOL_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// JSON-RPC's own error codes, and MCP's for an unknown resource.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
pub(crate) const INVALID_PARAMS: i64 = -32602;
const RESOURCE_NOT_FOUND: i64 = -32002;

/// The URIs of the resources.
pub const CONFIG_URI: &str = "stagehook://config";
pub const PROVIDERS_URI: &str = "stagehook://providers";

/// README, whose kinds table is a resource: the agent reads the same table a person does.
const README: &str = include_str!("../../README.md");

/// The server: where the running stagehook is, this machine's configuration (its secrets sign
/// what `send_fixture` sends), and whether write tools are offered.
pub struct Server {
    pub api: Remote,
    pub config: Config,
    pub endpoints: Vec<Endpoint>,
    /// The process's environment, where the configuration's checks look for real secrets.
    pub env: std::collections::BTreeMap<String, String>,
    /// `check-config --show`'s keys, values (secrets as fingerprints) and sources, as JSON.
    pub effective: Value,
    pub allow_write: bool,
    pub clock: crate::Clock,
}

/// A JSON-RPC error answer to a request.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError { code, message: message.into(), data: None }
    }
}

impl Server {
    /// Reads messages until stdin ends, answering each request in turn on `output`. Only an
    /// output that cannot be written ends it early (the client went away).
    pub fn serve(
        &self,
        runtime: &tokio::runtime::Runtime,
        input: impl BufRead,
        mut output: impl Write,
    ) -> std::io::Result<()> {
        for line in input.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            if let Some(answer) = runtime.block_on(self.handle(&line)) {
                writeln!(output, "{answer}")?;
                output.flush()?;
            }
        }
        Ok(())
    }

    /// One message in; the answer, or `None` for a notification (and for a client's answer:
    /// this server asks the client nothing).
    pub async fn handle(&self, line: &str) -> Option<Value> {
        let message: Value = match serde_json::from_str(line) {
            Ok(m) => m,
            Err(e) => return Some(error_answer(Value::Null, RpcError::new(PARSE_ERROR, format!("not JSON: {e}")))),
        };
        let id = message.get("id").cloned();
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            if message.get("result").is_some() || message.get("error").is_some() {
                return None;
            }
            let e = RpcError::new(INVALID_REQUEST, "expected a JSON-RPC 2.0 request: an object with `method`");
            return Some(error_answer(id.unwrap_or(Value::Null), e));
        };
        // A notification (`notifications/initialized`, `notifications/cancelled`) asks for no
        // answer, and none of them needs anything done here.
        let id = id?;
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        tracing::debug!(method, "mcp request");
        Some(match self.dispatch(method, &params).await {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(e) => error_answer(id, e),
        })
    }

    async fn dispatch(&self, method: &str, params: &Value) -> Result<Value, RpcError> {
        match method {
            "initialize" => Ok(self.initialize(params)),
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({"tools": tools::listed(self.allow_write)})),
            "tools/call" => {
                let name = params["name"]
                    .as_str()
                    .ok_or_else(|| RpcError::new(INVALID_PARAMS, "tools/call needs `name`, a tool's name"))?;
                let args = match &params["arguments"] {
                    Value::Null => serde_json::Map::new(),
                    Value::Object(o) => o.clone(),
                    _ => return Err(RpcError::new(INVALID_PARAMS, "`arguments` must be an object")),
                };
                tools::call(self, name, &args).await
            }
            "resources/list" => Ok(json!({"resources": [
                {"uri": CONFIG_URI, "name": "configuration", "mimeType": "application/json",
                 "description": "The running stagehook's configuration report (findings, secrets as fingerprints, \
                                 URLs masked) and this machine's effective configuration, as check-config --show prints it."},
                {"uri": PROVIDERS_URI, "name": "providers", "mimeType": "text/markdown",
                 "description": "README's table of provider kinds: the headers each sends, what is verified, the \
                                 dedup key and the event type."},
            ]})),
            "resources/read" => {
                let uri = params["uri"].as_str().unwrap_or_default();
                let (mime, text) = match uri {
                    CONFIG_URI => ("application/json", format!("{:#}", self.config_report().await)),
                    PROVIDERS_URI => ("text/markdown", provider_table().to_string()),
                    _ => {
                        let mut e = RpcError::new(RESOURCE_NOT_FOUND, format!("no resource `{uri}`"));
                        e.data = Some(json!({"uri": uri, "known": [CONFIG_URI, PROVIDERS_URI]}));
                        return Err(e);
                    }
                };
                Ok(json!({"contents": [{"uri": uri, "mimeType": mime, "text": text}]}))
            }
            _ => Err(RpcError::new(METHOD_NOT_FOUND, format!("no method `{method}` here"))),
        }
    }

    fn initialize(&self, params: &Value) -> Value {
        let asked = params["protocolVersion"].as_str().unwrap_or_default();
        let version = PROTOCOL_VERSIONS.iter().find(|v| **v == asked).unwrap_or(&PROTOCOL_VERSIONS[3]);
        let writes = if self.allow_write {
            "Write tools (send_fixture, replay, edit_and_replay, check_app) are on."
        } else {
            "Read-only: the write tools (send_fixture, replay, edit_and_replay, check_app) are offered only with --allow-write."
        };
        json!({
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": false}, "resources": {"listChanged": false}},
            "serverInfo": {"name": "stagehook", "title": "stagehook", "version": env!("CARGO_PKG_VERSION")},
            "instructions": format!(
                "stagehook at {} records provider webhooks, verifies their signatures and delivers them to the app. \
                 Start with stats_and_breakers or list_events; why_signature_failed explains refused requests. {writes}",
                crate::redact::url(&self.api.server)
            ),
        })
    }

    /// The configuration resource: the running stagehook's report (offline: probing the app
    /// is a check of its own), and this machine's effective configuration.
    async fn config_report(&self) -> Value {
        let server = match self.api.request("GET", "/staging/webhooks/config/validate?offline=true", None).await {
            Ok(report) => report,
            Err(e) => json!({"error": tools::ToolError::from(e).to_json()}),
        };
        json!({"server": server, "effective_here": self.effective})
    }
}

fn error_answer(id: Value, e: RpcError) -> Value {
    let mut error = json!({"code": e.code, "message": e.message});
    if let Some(data) = e.data {
        error["data"] = data;
    }
    json!({"jsonrpc": "2.0", "id": id, "error": error})
}

/// README's kinds table, from its header row to the first line after it that is not a row.
pub fn provider_table() -> &'static str {
    let start = README.find("| Kind | Headers |").unwrap_or(0);
    let rest = &README[start..];
    let end = rest.find("\n\n").map(|i| i + 1).unwrap_or(rest.len());
    &rest[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_table_is_readmes_whole_table() {
        let table = provider_table();
        assert!(table.starts_with("| Kind | Headers |"), "{table}");
        assert!(table.lines().all(|l| l.starts_with('|')), "{table}");
        for kind in ["stripe", "twilio", "github", "shopify", "slack", "standard", "sendgrid", "hmac"] {
            assert!(table.contains(&format!("| `{kind}`")), "{kind} is missing from {table}");
        }
    }
}
