//! GitHub: `X-Hub-Signature-256: sha256=<hex>` over the raw body.
//!
//! Verified as GitHub's docs and octokit/webhooks-methods do: the key is the secret's UTF-8 bytes;
//! the expected value is the whole string `sha256=` + lowercase hex, compared in constant time
//! with the header exactly as sent, so an uppercase digest or another prefix does not match. The
//! scheme has no timestamp. A redelivery repeats `X-GitHub-Delivery`, which makes it the dedup
//! key. The legacy SHA-1 `X-Hub-Signature` is not checked (octokit ignores it), but deliveries
//! carry a fresh one so an app that still reads it keeps working.

use std::borrow::Cow;

use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use warp::http::HeaderMap;

use super::api::{ApiAccess, GithubApi, HookOwner, NoApi, GITHUB_API_BASE};
use super::kind::{api_base, api_base_finding, is_placeholder, placeholder_finding, ConfigError, Kind, Rotation};
use super::signing::{self, HmacSha1, HmacSha256};
use super::{
    fresh_id, fresh_uuid, inspected, json_body, media_type, pick, receipt, require_media_type, required_header,
    rfc3339, Accepted, Answer, Check, Inbound, Parsed, Provider, Refusal, RefusalCode, Sample, Signed, UnknownFixture,
    NO_EVENT,
};
use crate::finding::Finding;
use crate::secret::Secret;

pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
pub const SHA1_SIGNATURE_HEADER: &str = "x-hub-signature";
pub const EVENT_HEADER: &str = "x-github-event";
pub const DELIVERY_HEADER: &str = "x-github-delivery";
pub const HOOK_ID_HEADER: &str = "x-github-hook-id";
const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

/// The fixtures of `stagehook send`; the first is the default.
const SAMPLE_TYPES: &[&str] = &["push", "ping"];

/// Debug prints secrets as fingerprints only (see `Secret`).
/// A section of kind `github`.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The webhook's secret.
    pub secret: Option<Secret>,
    /// Several secrets accepted at once (rotation); deliveries and `send` sign with the first
    /// of `secret` then `secrets`.
    pub secrets: Vec<Secret>,
    /// A token that may read the hook's deliveries (a fine-grained token with the repository's
    /// or organization's "Webhooks" read permission, or a classic one with `admin:repo_hook` or
    /// `admin:org_hook`): what `stagehook backfill` lists them with.
    pub api_token: Option<Secret>,
    /// Where GitHub's REST API is ([`GITHUB_API_BASE`] when unset; GitHub Enterprise Server's is
    /// `https://<host>/api/v3`); an http(s) URL without a query.
    pub api_base: Option<String>,
    /// The repository whose webhook this endpoint receives, `owner/name`.
    pub repository: Option<String>,
    /// Or the organization whose webhook it is; one of the two.
    pub organization: Option<String>,
    /// The webhook's id (in its settings page's URL, or `GET .../hooks`).
    pub hook_id: Option<u64>,
}

#[derive(Debug)]
pub struct Github {
    pub name: String,
    /// Every accepted secret (rotation); deliveries are signed with the first.
    pub secrets: Vec<Secret>,
    /// Its read access to the hook's deliveries, or why there is none.
    pub api: Result<ApiAccess, NoApi>,
}

impl Github {
    /// An endpoint without API access (`api_token`, the owner and `hook_id` unset).
    pub fn new(name: &str, secrets: Vec<Secret>) -> Github {
        let missing = format!("providers.{name}.api_token, repository (or organization) and hook_id");
        Github { name: name.to_string(), secrets, api: Err(NoApi::NotConfigured(missing)) }
    }
}

/// `owner/name`: an account and a repository name of the letters, digits and punctuation GitHub
/// allows in them (`-` in an account; `.`, `_` and `-` in a repository), so that it is one
/// segment each of the API's path.
fn valid_repository(r: &str) -> bool {
    r.split_once('/').is_some_and(|(owner, name)| {
        valid_account(owner)
            && !name.is_empty()
            && name != "."
            && name != ".."
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    })
}

/// An account (user or organization) name: letters, digits, `-` (and `_`, which GitHub Enterprise
/// Server's names from an identity provider may hold).
fn valid_account(a: &str) -> bool {
    !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// The section's API access: all of `api_token`, the owner (`repository` or `organization`) and
/// `hook_id`, or none of them; what is set must be well formed.
fn api_access(name: &str, c: &Settings) -> Result<Result<ApiAccess, NoApi>, ConfigError> {
    let key = |k: &str| format!("providers.{name}.{k}");
    let base = api_base(name, c.api_base.as_deref(), GITHUB_API_BASE)?;
    if c.api_token.as_ref().is_some_and(|t| t.expose().trim().is_empty()) {
        return Err(ConfigError::new(key("api_token"), "is empty; set a token or remove the key"));
    }
    let owner = match (&c.repository, &c.organization) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                key("repository"),
                format!(
                    "and {} are both set: a webhook is a repository's or an organization's; keep one",
                    key("organization")
                ),
            ))
        }
        (Some(r), None) if !valid_repository(r) => {
            return Err(ConfigError::new(
                key("repository"),
                format!("`{r}` is not `owner/name` (such as octo-org/shop)"),
            ))
        }
        (None, Some(o)) if !valid_account(o) => {
            return Err(ConfigError::new(
                key("organization"),
                format!("`{o}` is not an organization's name (letters, digits and `-`)"),
            ))
        }
        (Some(r), None) => Some(HookOwner::Repository(r.clone())),
        (None, Some(o)) => Some(HookOwner::Organization(o.clone())),
        (None, None) => None,
    };
    if c.hook_id == Some(0) {
        return Err(ConfigError::new(key("hook_id"), "is no hook's id: those start at 1"));
    }
    Ok(match (&c.api_token, owner, c.hook_id) {
        (Some(token), Some(owner), Some(hook_id)) => {
            Ok(ApiAccess::Github(GithubApi { base, token: token.clone(), owner, hook_id }))
        }
        (None, None, None) => {
            Err(NoApi::NotConfigured(format!("{}, repository (or organization) and hook_id", key("api_token"))))
        }
        (token, owner, hook_id) => {
            let missing = if token.is_none() {
                "api_token"
            } else if owner.is_none() {
                "repository"
            } else {
                debug_assert!(hook_id.is_none());
                "hook_id"
            };
            let what = if missing == "repository" { " (or organization)" } else { "" };
            return Err(ConfigError::new(
                key(missing),
                format!(
                    "is missing{what}: reading the webhook's deliveries from GitHub's API takes api_token, \
                     repository (or organization) and hook_id together; set it, or remove the others"
                ),
            ));
        }
    })
}

impl Kind for Github {
    const KEYS: &'static [&'static str] =
        &["secret", "secrets", "api_token", "api_base", "repository", "organization", "hook_id"];

    type Settings = Settings;

    /// The endpoint `[providers.<name>]`. No secret is not an error: the endpoint then
    /// answers 503 until one is set. Its API access is all of its keys or none.
    fn from_settings(name: &str, c: &Settings) -> Result<Github, ConfigError> {
        let mut github = Github::new(name, Self::rotation(c).nonempty(name)?);
        github.api = api_access(name, c)?;
        Ok(github)
    }

    fn rotation(c: &Settings) -> Rotation<'_> {
        Rotation::new(&c.secret, &c.secrets)
    }

    /// The token is no placeholder, and the API is not reached in clear.
    fn section_findings(name: &str, s: &Settings, out: &mut Vec<Finding>) {
        if let Some(token) = s.api_token.as_ref().filter(|t| is_placeholder(t)) {
            out.push(placeholder_finding(
                &format!("providers.{name}.api_token"),
                token,
                "a token that may read the webhook",
            ));
        }
        if let Some(f) =
            api_base(name, s.api_base.as_deref(), GITHUB_API_BASE).ok().and_then(|b| api_base_finding(name, &b))
        {
            out.push(f);
        }
    }
}

/// `sha256=` + `hex(HMAC-SHA256(secret, body))`, the whole header value GitHub sends.
pub fn signature_header(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(signing::mac::<HmacSha256>(secret.as_bytes(), [body])))
}

/// `sha1=` + `hex(HMAC-SHA1(secret, body))`, the legacy `X-Hub-Signature`.
pub fn sha1_signature_header(secret: &str, body: &[u8]) -> String {
    format!("sha1={}", hex::encode(signing::mac::<HmacSha1>(secret.as_bytes(), [body])))
}

/// The event JSON: the body itself, or the `payload` field of a form body (the webhook's
/// "application/x-www-form-urlencoded" content type setting), or the failed `body` check.
fn payload_json(req: &Inbound<'_>) -> Result<Value, Check> {
    let raw: Cow<'_, [u8]> = if media_type(req.headers).as_deref() == Some(FORM) {
        let payload = form_urlencoded::parse(req.body)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| Check::fail("body", "form body has no `payload` field"))?;
        Cow::Owned(payload.into_bytes())
    } else {
        Cow::Borrowed(req.body)
    };
    json_body(&raw)
}

fn header_check(headers: &HeaderMap, name: &str, shown: &str) -> (Check, Option<String>) {
    let (check, value) = required_header(headers, name, shown);
    (check, value.map(str::to_string))
}

/// Every structural check, and the event when they all pass; one pass over the body serves
/// both `checks` and `parse`.
fn inspect(req: &Inbound<'_>) -> (Vec<Check>, Option<Parsed>) {
    let (event_check, event) = header_check(req.headers, EVENT_HEADER, "X-GitHub-Event");
    let (delivery_check, delivery) = header_check(req.headers, DELIVERY_HEADER, "X-GitHub-Delivery");
    let (body_check, body) = match payload_json(req) {
        Ok(v) if v.is_object() => (Check::pass("body", "JSON object"), Some(v)),
        Ok(_) => (Check::fail("body", "must be a JSON object"), None),
        Err(check) => (check, None),
    };
    let parsed = match (event, delivery, body) {
        (Some(event), Some(delivery), Some(body)) => {
            // `push.created` would not be a GitHub event name; the action narrows events that
            // have one (`pull_request.opened`), and `ping` or `push` stay as they are.
            let event_type = match body.get("action").and_then(Value::as_str).filter(|a| !a.is_empty()) {
                Some(action) => format!("{event}.{action}"),
                None => event,
            };
            Some(Parsed::one(delivery, event_type))
        }
        _ => None,
    };
    (vec![event_check, delivery_check, body_check], parsed)
}

impl Provider for Github {
    fn delivery_timeout(&self) -> Option<std::time::Duration> {
        // "takes longer than 10 seconds to respond, GitHub will record the delivery as a
        // failure": https://docs.github.com/en/webhooks/using-webhooks/handling-failed-webhook-deliveries
        Some(std::time::Duration::from_secs(10))
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn api_access(&self) -> Result<&ApiAccess, NoApi> {
        self.api.as_ref().map_err(NoApi::clone)
    }

    fn secret_headers(&self) -> &[&'static str] {
        // The legacy SHA-1 one is not checked, but it is an HMAC of the body all the same.
        &[SIGNATURE_HEADER, SHA1_SIGNATURE_HEADER]
    }

    fn precheck(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        require_media_type(headers, &[JSON, FORM], "GitHub webhooks are", " (the webhook's content type)")
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<(), Refusal> {
        let invalid = |m: &str| Refusal::new(RefusalCode::InvalidSignature, m);
        let Some(given) = req.headers.get(SIGNATURE_HEADER) else {
            return Err(invalid(if req.headers.contains_key(SHA1_SIGNATURE_HEADER) {
                "missing X-Hub-Signature-256 header (only the SHA-1 X-Hub-Signature came, which is not accepted)"
            } else {
                "missing X-Hub-Signature-256 header: set a secret on the GitHub webhook"
            }));
        };
        let matched =
            signing::any_matches(&self.secrets, [given], |secret| signature_header(secret.expose(), req.body));
        if matched {
            Ok(())
        } else {
            Err(invalid("X-Hub-Signature-256 does not match the payload for the configured secret"))
        }
    }

    fn secret_fingerprints(&self) -> Vec<String> {
        self.secrets.iter().map(Secret::fingerprint).collect()
    }

    fn checks(&self, req: &Inbound<'_>) -> Vec<Check> {
        inspect(req).0
    }

    fn parse(&self, req: &Inbound<'_>) -> Result<Parsed, Refusal> {
        inspected(inspect(req), NO_EVENT)
    }

    fn answer(&self, accepted: &Accepted<'_>) -> Answer {
        // GitHub ignores the body but shows it in the webhook's delivery log, where the stored
        // id is what a person looks for next.
        receipt(accepted)
    }

    fn sign_delivery(&self, target: &str, _content_type: Option<&str>, body: &[u8], _now_s: i64) -> Signed {
        let secret = signing::signing_secret(&self.secrets);
        Signed {
            url: target.to_string(),
            headers: vec![
                (SIGNATURE_HEADER, signature_header(secret, body)),
                (SHA1_SIGNATURE_HEADER, sha1_signature_header(secret, body)),
            ],
        }
    }

    fn sample_types(&self) -> &'static [&'static str] {
        SAMPLE_TYPES
    }

    fn sample(&self, event_type: Option<&str>, now_s: i64) -> Result<Sample, UnknownFixture> {
        let kind = pick(SAMPLE_TYPES, event_type)?;
        let hook_id = fastrand::u32(400_000_000..500_000_000);
        let repo_id = fastrand::u32(700_000_000..900_000_000);
        let body = match kind {
            "push" => push_payload(repo_id, now_s),
            _ => ping_payload(&self.name, hook_id, repo_id, now_s),
        };
        let headers = vec![
            (EVENT_HEADER.to_string(), kind.to_string()),
            (DELIVERY_HEADER.to_string(), fresh_uuid()),
            (HOOK_ID_HEADER.to_string(), hook_id.to_string()),
            ("x-github-hook-installation-target-type".to_string(), "repository".to_string()),
            ("x-github-hook-installation-target-id".to_string(), repo_id.to_string()),
        ];
        Ok(Sample { content_type: JSON, headers, body: serde_json::to_vec(&body).unwrap_or_default() })
    }
}

/// A commit-like SHA that differs every time.
fn fresh_sha() -> String {
    hex::encode(Sha1::digest(fresh_id("commit_").as_bytes()))
}

fn sender() -> Value {
    json!({
        "login": "octocat", "id": 583231, "node_id": "MDQ6VXNlcjU4MzIzMQ==",
        "avatar_url": "https://avatars.githubusercontent.com/u/583231?v=4", "gravatar_id": "",
        "url": "https://api.github.com/users/octocat", "html_url": "https://github.com/octocat",
        "type": "User", "site_admin": false,
    })
}

/// The repository object; push events write its dates as Unix seconds, every other event as
/// RFC 3339 strings, and apps that parse one shape break on the other.
fn repository(repo_id: u32, now_s: i64, in_push: bool) -> Value {
    let created = now_s - 400 * 86_400;
    let (created_at, pushed_at) =
        if in_push { (json!(created), json!(now_s)) } else { (json!(rfc3339(created)), json!(rfc3339(now_s))) };
    // Push events also give the web URL where every other event gives the API's.
    let url = if in_push { "https://github.com" } else { "https://api.github.com/repos" };
    let url = format!("{url}/octo-org/hello-world");
    json!({
        "id": repo_id, "node_id": format!("R_kgDO{}", &ulid::Ulid::new().to_string()[18..]),
        "name": "hello-world", "full_name": "octo-org/hello-world", "private": true,
        "owner": {
            "login": "octo-org", "id": 6811672, "node_id": "MDEyOk9yZ2FuaXphdGlvbjY4MTE2NzI=",
            "url": "https://api.github.com/users/octo-org", "html_url": "https://github.com/octo-org",
            "type": "Organization", "site_admin": false,
        },
        "html_url": "https://github.com/octo-org/hello-world", "description": "A sample repository", "fork": false,
        "url": url,
        "created_at": created_at, "updated_at": rfc3339(now_s), "pushed_at": pushed_at,
        "git_url": "git://github.com/octo-org/hello-world.git", "ssh_url": "git@github.com:octo-org/hello-world.git",
        "clone_url": "https://github.com/octo-org/hello-world.git", "default_branch": "main",
        "visibility": "private", "size": 108, "language": "Rust", "archived": false, "disabled": false,
        "open_issues_count": 0, "forks_count": 0, "stargazers_count": 0, "watchers_count": 0,
    })
}

fn push_payload(repo_id: u32, now_s: i64) -> Value {
    let (before, after) = (fresh_sha(), fresh_sha());
    let commit = json!({
        "id": after, "tree_id": fresh_sha(), "distinct": true, "message": "Update README",
        "timestamp": rfc3339(now_s), "url": format!("https://github.com/octo-org/hello-world/commit/{after}"),
        "author": {"name": "The Octocat", "email": "octocat@github.com", "username": "octocat"},
        "committer": {"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"},
        "added": [], "removed": [], "modified": ["README.md"],
    });
    json!({
        "ref": "refs/heads/main", "before": before, "after": after,
        "repository": repository(repo_id, now_s, true),
        "pusher": {"name": "octocat", "email": "octocat@github.com"},
        "organization": {"login": "octo-org", "id": 6811672, "url": "https://api.github.com/orgs/octo-org"},
        "sender": sender(),
        "created": false, "deleted": false, "forced": false, "base_ref": null,
        "compare": format!("https://github.com/octo-org/hello-world/compare/{}...{}", &before[..12], &after[..12]),
        "commits": [commit.clone()], "head_commit": commit,
    })
}

fn ping_payload(name: &str, hook_id: u32, repo_id: u32, now_s: i64) -> Value {
    let hook_url = format!("https://api.github.com/repos/octo-org/hello-world/hooks/{hook_id}");
    json!({
        "zen": "Keep it logically awesome.",
        "hook_id": hook_id,
        "hook": {
            "type": "Repository", "id": hook_id, "name": "web", "active": true, "events": ["push", "pull_request"],
            "config": {
                "content_type": "json", "insecure_ssl": "0",
                "url": format!("https://staging.example.com/staging/webhooks/{name}"),
            },
            "updated_at": rfc3339(now_s), "created_at": rfc3339(now_s),
            "url": hook_url, "test_url": format!("{hook_url}/test"), "ping_url": format!("{hook_url}/pings"),
            "deliveries_url": format!("{hook_url}/deliveries"),
            "last_response": {"code": null, "status": "unused", "message": null},
        },
        "repository": repository(repo_id, now_s, false),
        "sender": sender(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::providers::testing::{self, header_map as headers, receive_sample, vectors};

    /// The API access of `[providers.gh]` with `body`, or the configuration error.
    fn api_of(body: &str) -> Result<Result<ApiAccess, NoApi>, ConfigError> {
        let section = crate::providers::KindConfig::from_toml("gh", &format!("kind = \"github\"\n{body}")).unwrap();
        crate::providers::build("gh", &section).map(|p| p.api_access().cloned())
    }

    /// All of token, owner and hook id, or none; a partial set names what is missing, both
    /// owners name both keys, and each value is checked for its shape.
    #[test]
    fn api_access_is_all_of_its_keys_or_none() {
        let full = "api_token = \"ghp_x\"\nrepository = \"octo-org/shop.api\"\nhook_id = 42\n";
        let want = GithubApi {
            base: GITHUB_API_BASE.into(),
            token: Secret::new("ghp_x"),
            owner: HookOwner::Repository("octo-org/shop.api".into()),
            hook_id: 42,
        };
        assert_eq!(api_of(full), Ok(Ok(ApiAccess::Github(want.clone()))));
        let ghes = "api_token = \"t\"\norganization = \"octo-org\"\nhook_id = 7\napi_base = \"https://ghe.example.com/api/v3/\"\n";
        let Ok(Ok(ApiAccess::Github(got))) = api_of(ghes) else { panic!("{:?}", api_of(ghes)) };
        assert_eq!(
            (got.base.as_str(), got.owner.api_path()),
            ("https://ghe.example.com/api/v3", "orgs/octo-org".into())
        );
        assert_eq!(
            api_of(""),
            Ok(Err(NoApi::NotConfigured("providers.gh.api_token, repository (or organization) and hook_id".into())))
        );
        assert_eq!(api_of("api_base = \"http://127.0.0.1:9\"\n").map(|a| a.is_err()), Ok(true));
        for (body, key) in [
            ("api_token = \"t\"\nrepository = \"a/b\"\n", "providers.gh.hook_id is missing"),
            ("api_token = \"t\"\nhook_id = 1\n", "providers.gh.repository is missing (or organization)"),
            ("organization = \"o\"\nhook_id = 1\n", "providers.gh.api_token is missing"),
            ("hook_id = 1\n", "providers.gh.api_token is missing"),
            (
                "api_token = \"t\"\nrepository = \"a/b\"\norganization = \"o\"\nhook_id = 1\n",
                "providers.gh.repository and providers.gh.organization are both set",
            ),
            ("repository = \"shop\"\n", "providers.gh.repository `shop` is not `owner/name`"),
            ("repository = \"a/../b\"\n", "providers.gh.repository `a/../b` is not"),
            ("repository = \"a/..\"\n", "providers.gh.repository `a/..` is not"),
            ("organization = \"a/b\"\n", "providers.gh.organization `a/b` is not"),
            ("hook_id = 0\n", "providers.gh.hook_id is no hook's id"),
            ("api_token = \"\"\n", "providers.gh.api_token is empty"),
            (
                "api_base = \"ftp://ghe.example.com\"\n",
                "providers.gh.api_base `ftp://ghe.example.com` is not an http(s) URL",
            ),
            ("api_base = \"https://ghe.example.com/api/v3?x=1\"\n", "has a query"),
        ] {
            let e = crate::providers::kind::said(&api_of(body).expect_err(body));
            assert!(e.contains(key), "{body}: {e}");
        }
        let e = crate::providers::KindConfig::from_toml("gh", "kind = \"github\"\nhook_id = -1\n").unwrap_err();
        assert_eq!(e.key, "providers.gh.hook_id", "{e}");
    }

    fn github(secrets: &[&str]) -> Github {
        Github::new("github", testing::secrets(secrets))
    }

    fn verify(p: &Github, h: &HeaderMap, body: &[u8]) -> Result<(), Refusal> {
        p.verify(&Inbound { headers: h, body, url: "", now_s: 0 })
    }

    #[test]
    fn published_vectors_verify() {
        for v in vectors("github") {
            let (secret, payload, header) = (v.str("secret"), v.str("payload"), v.str("header"));
            assert_eq!(signature_header(secret, payload.as_bytes()), header);
            let h = headers(&[(SIGNATURE_HEADER, header)]);
            verify(&github(&[secret]), &h, payload.as_bytes()).unwrap();
        }
    }

    #[test]
    fn tampered_body_wrong_secret_and_altered_header_are_refused() {
        for v in vectors("github") {
            let (secret, payload, header) = (v.str("secret"), v.str("payload"), v.str("header"));
            let h = headers(&[(SIGNATURE_HEADER, header)]);
            let tampered = format!("{payload} ");
            let r = verify(&github(&[secret]), &h, tampered.as_bytes()).unwrap_err();
            assert_eq!(r.code, RefusalCode::InvalidSignature);
            let r = verify(&github(&["not the secret"]), &h, payload.as_bytes()).unwrap_err();
            assert_eq!(r.code, RefusalCode::InvalidSignature);
            assert!(!r.message.contains("not the secret"), "{}", r.message);
            // The header is compared as a string, as octokit does: no case folding, prefix kept.
            for altered in
                [header.to_uppercase(), header.replacen("sha256=", "", 1), header.replacen("sha256", "sha1", 1)]
            {
                let h = headers(&[(SIGNATURE_HEADER, &altered)]);
                assert!(verify(&github(&[secret]), &h, payload.as_bytes()).is_err(), "{altered}");
            }
        }
    }

    #[test]
    fn a_missing_signature_header_is_refused() {
        let r = verify(&github(&["s"]), &HeaderMap::new(), b"{}").unwrap_err();
        assert_eq!(r.code, RefusalCode::InvalidSignature);
        let h = headers(&[(SHA1_SIGNATURE_HEADER, &sha1_signature_header("s", b"{}"))]);
        let r = verify(&github(&["s"]), &h, b"{}").unwrap_err();
        assert!(r.message.contains("SHA-1"), "{}", r.message);
    }

    #[test]
    fn either_of_two_secrets_verifies() {
        let p = github(&["old secret", "new secret"]);
        for secret in ["old secret", "new secret"] {
            let h = headers(&[(SIGNATURE_HEADER, &signature_header(secret, b"{}"))]);
            verify(&p, &h, b"{}").unwrap();
        }
        let h = headers(&[(SIGNATURE_HEADER, &signature_header("third", b"{}"))]);
        assert!(verify(&p, &h, b"{}").is_err());
    }

    #[test]
    fn deliveries_are_signed_with_the_first_secret() {
        let p = github(&["first", "second"]);
        let signed = p.sign_delivery("http://app/hook", Some(JSON), b"{\"a\":1}", 0);
        assert_eq!(signed.url, "http://app/hook");
        let pairs: Vec<(&str, &str)> = signed.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        verify(&github(&["first"]), &headers(&pairs), b"{\"a\":1}").unwrap();
        assert!(verify(&github(&["second"]), &headers(&pairs), b"{\"a\":1}").is_err());
        let sha1 = signed.headers.iter().find(|(k, _)| *k == SHA1_SIGNATURE_HEADER).unwrap();
        assert_eq!(sha1.1, sha1_signature_header("first", b"{\"a\":1}"));
    }

    #[test]
    fn every_sample_signs_verifies_and_parses() {
        let p = github(&["s"]);
        let mut ids = std::collections::HashSet::new();
        for kind in p.sample_types() {
            let parsed = receive_sample(&p, kind, 1_700_000_000).parsed;
            assert_eq!(parsed.event_type, *kind);
            assert_eq!(parsed.event_id.len(), 36, "a UUID: {}", parsed.event_id);
            assert!(ids.insert(parsed.event_id));
        }
        assert_eq!(p.sample(None, 0).unwrap().headers[0].1, "push");
        assert!(p.sample(Some("nope"), 0).unwrap_err().to_string().contains("push, ping"));
    }

    #[test]
    fn ids_and_types_come_from_the_headers_and_the_action() {
        let p = github(&["s"]);
        let parse = |h: &HeaderMap, body: &[u8]| p.parse(&Inbound { headers: h, body, url: "", now_s: 0 });
        let h = headers(&[("content-type", JSON), (EVENT_HEADER, "pull_request"), (DELIVERY_HEADER, "d-1")]);
        assert_eq!(parse(&h, br#"{"action":"opened","number":1}"#).unwrap(), Parsed::one("d-1", "pull_request.opened"));
        assert_eq!(parse(&h, br#"{"action":7}"#).unwrap(), Parsed::one("d-1", "pull_request"));
        let ping = headers(&[("content-type", JSON), (EVENT_HEADER, "ping"), (DELIVERY_HEADER, "d-2")]);
        assert_eq!(parse(&ping, br#"{"zen":"x","hook_id":1}"#).unwrap(), Parsed::one("d-2", "ping"));

        // The form content type wraps the same JSON in `payload=`.
        let form = headers(&[("content-type", FORM), (EVENT_HEADER, "issues"), (DELIVERY_HEADER, "d-3")]);
        let body =
            form_urlencoded::Serializer::new(String::new()).append_pair("payload", r#"{"action":"closed"}"#).finish();
        assert_eq!(parse(&form, body.as_bytes()).unwrap(), Parsed::one("d-3", "issues.closed"));
        assert_eq!(parse(&form, b"payload=%7Bnot").unwrap_err().code, RefusalCode::InvalidPayload);
        assert_eq!(parse(&form, b"other=1").unwrap_err().code, RefusalCode::InvalidPayload);

        for missing in [EVENT_HEADER, DELIVERY_HEADER] {
            let mut h = h.clone();
            h.remove(missing);
            let r = parse(&h, br#"{"action":"opened"}"#).unwrap_err();
            assert_eq!(r.code, RefusalCode::InvalidPayload);
            assert!(r.message.to_lowercase().contains(missing), "{}", r.message);
        }
        assert_eq!(parse(&h, b"[1]").unwrap_err().code, RefusalCode::InvalidPayload);
    }

    #[test]
    fn only_json_and_form_bodies_pass_the_precheck() {
        let p = github(&["s"]);
        assert!(p.precheck(&headers(&[("content-type", "application/json; charset=utf-8")])).is_ok());
        assert!(p.precheck(&headers(&[("content-type", FORM)])).is_ok());
        let r = p.precheck(&headers(&[("content-type", "text/plain")])).unwrap_err();
        assert_eq!(r.code, RefusalCode::UnsupportedMediaType);
        assert!(p.precheck(&HeaderMap::new()).is_err());
    }

    #[test]
    fn config_gives_secrets_in_order_and_refuses_empty_ones() {
        let mut c = Settings::default();
        assert!(Github::from_settings("gh", &c).unwrap().secrets.is_empty());
        c.secret = Some(Secret::new("a"));
        c.secrets = vec![Secret::new("b")];
        let p = Github::from_settings("gh", &c).unwrap();
        assert_eq!((p.name.as_str(), p.secrets.len(), p.secrets[0].expose()), ("gh", 2, "a"));
        c.secrets = vec![Secret::new("")];
        assert!(crate::providers::kind::said(&Github::from_settings("gh", &c).unwrap_err())
            .contains("providers.gh.secrets[0]"));
    }

    #[test]
    fn both_signature_headers_are_listed_as_secret() {
        crate::providers::testing::assert_secret_headers_cover_signing(&github(&["a"]), &github(&["b"]));
    }
}
