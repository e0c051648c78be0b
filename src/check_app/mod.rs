//! `stagehook check-app`: tests the app's webhook handler the way production will. A short,
//! deterministic series of requests goes straight to the app, each signed with the endpoint's
//! secret by its provider's own `sign_resend` (the signer deliveries and `stagehook send` use,
//! never a second one), and each answer is graded: does the app verify the signature on the raw
//! body, refuse stale and tampered requests, take the same event twice, take a sequence out of
//! order, and answer within the provider's own delivery timeout?
//!
//! Which checks apply is read from the provider, so a new kind gets the right ones: a signature
//! that expires is found by signing an hour ago and asking the provider itself
//! (`refuses_stale`), a URL in the signature by [`Provider::signs_url`] (`refuses_wrong_url`), a
//! timeout by [`Provider::delivery_timeout`] (`answers_in_time`). A check that does not apply
//! says why. The requests carry `X-Stagehook-Check` and never pass through stagehook's ingest,
//! so they are never stored as events.

pub mod format;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::delivery::client::{Client, SendError};
use crate::providers::{Endpoint, Inbound, Provider, ProviderKind, RefusalCode, Sample};

/// The header every request of a check carries, naming the check.
pub const CHECK_HEADER: &str = "x-stagehook-check";

/// How old the signature of `refuses_stale` is: far beyond the providers' SDKs' five minutes.
const STALE_AGE_S: i64 = 3600;

/// How long a check waits for an answer when the provider publishes no timeout.
const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// How much longer than the provider's own timeout `answers_in_time` waits, so a slow app is
/// measured rather than cut off at the limit.
const GRACE: Duration = Duration::from_secs(1);

/// How much of an answer's body the report keeps, as text.
pub const BODY_KEPT: usize = 512;

/// The checks, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    AcceptsValid,
    RefusesWrongSecret,
    RefusesUnsigned,
    RefusesModifiedBody,
    AcceptsExactBytes,
    RefusesStale,
    RefusesWrongUrl,
    IdempotentDuplicate,
    ToleratesOrder,
    AnswersInTime,
}

impl CheckName {
    pub const ALL: [CheckName; 10] = [
        CheckName::AcceptsValid,
        CheckName::RefusesWrongSecret,
        CheckName::RefusesUnsigned,
        CheckName::RefusesModifiedBody,
        CheckName::AcceptsExactBytes,
        CheckName::RefusesStale,
        CheckName::RefusesWrongUrl,
        CheckName::IdempotentDuplicate,
        CheckName::ToleratesOrder,
        CheckName::AnswersInTime,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::AcceptsValid => "accepts_valid",
            CheckName::RefusesWrongSecret => "refuses_wrong_secret",
            CheckName::RefusesUnsigned => "refuses_unsigned",
            CheckName::RefusesModifiedBody => "refuses_modified_body",
            CheckName::AcceptsExactBytes => "accepts_exact_bytes",
            CheckName::RefusesStale => "refuses_stale",
            CheckName::RefusesWrongUrl => "refuses_wrong_url",
            CheckName::IdempotentDuplicate => "idempotent_duplicate",
            CheckName::ToleratesOrder => "tolerates_order",
            CheckName::AnswersInTime => "answers_in_time",
        }
    }

    pub fn parse(name: &str) -> Option<CheckName> {
        CheckName::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Every name, comma-separated, for the error that refuses an unknown one.
    pub fn known() -> String {
        CheckName::ALL.map(CheckName::as_str).join(", ")
    }

    /// The fix, in one sentence, when the check fails.
    fn fix(self, kind: ProviderKind, timeout: Option<Duration>) -> String {
        let title = kind.title();
        match self {
            CheckName::AcceptsValid => format!(
                "your handler refuses a correctly signed {title} event: verify with the raw request body and the endpoint's secret, as {title}'s SDK does"
            ),
            CheckName::RefusesWrongSecret => "your handler accepts a signature made with another secret: verify every request with the raw body and the endpoint secret, and answer 400 or 401 when it does not match".into(),
            CheckName::RefusesUnsigned => "your handler accepts requests without a valid signature: verify with the raw body and the endpoint secret".into(),
            CheckName::RefusesModifiedBody => "your handler accepts a body changed after signing: verify the signature over the exact bytes received before parsing them".into(),
            CheckName::AcceptsExactBytes => "your handler refuses a valid event whose JSON is formatted unusually: verify the raw request body, not a parsed and re-serialised copy".into(),
            CheckName::RefusesStale => format!(
                "your handler accepts a signature an hour old: check the signed timestamp against {title}'s tolerance (five minutes in its SDKs) to refuse replays"
            ),
            CheckName::RefusesWrongUrl => format!(
                "your handler accepts a signature made for another URL: verify with the exact public URL {title} calls"
            ),
            CheckName::IdempotentDuplicate => format!(
                "your handler fails when {title} delivers the same event twice: record the event id and answer 2xx to a repeat without acting on it again"
            ),
            CheckName::ToleratesOrder => format!(
                "your handler fails on events out of order: {title} does not promise an order, so compare the object's state or timestamps rather than assume one"
            ),
            CheckName::AnswersInTime => format!(
                "your handler answers after {title}'s {} s timeout: answer 2xx at once and do the work afterwards (a queue or a background job)",
                timeout.map_or(0, |t| t.as_secs())
            ),
        }
    }
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    NotApplicable,
}

/// One request as sent, redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRequest {
    pub method: String,
    /// Masked by [`crate::redact::url`].
    pub url: String,
    /// Signature headers shortened as stored headers are shown ([`crate::redact::headers`]).
    pub headers: Vec<(String, String)>,
    pub body_bytes: u64,
    /// What is particular about it ("signed an hour ago", "second delivery").
    pub note: String,
}

/// What the app answered, or why it did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answered {
    pub status: Option<u16>,
    pub time_ms: u64,
    /// The first [`BODY_KEPT`] bytes of the body, as text.
    pub body: String,
    /// Why there was no answer (connection refused, timed out).
    pub error: Option<String>,
}

/// One request and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    pub sent: SentRequest,
    pub answered: Answered,
}

/// One check's line of the scorecard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: CheckName,
    pub outcome: Outcome,
    /// What the check saw (pass, fail), or why it does not apply to this kind.
    pub reason: String,
    /// On failure, what to change, in one sentence.
    pub fix: Option<String>,
    pub exchanges: Vec<Exchange>,
}

/// The scorecard of one run: the shape of `check-app --json`, of the stored last report and of
/// the API's answer (documented in the README and docs/api.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub endpoint: String,
    pub kind: ProviderKind,
    /// Where the requests went, masked.
    pub target: String,
    /// When the run started, Unix milliseconds.
    pub started_at_ms: i64,
    pub ok: bool,
    pub passed: u32,
    pub failed: u32,
    pub not_applicable: u32,
    pub checks: Vec<CheckResult>,
}

/// Why no check could run: the configuration must change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no endpoint `{name}` in this configuration; there are: {known}")]
    UnknownEndpoint { name: String, known: String },
    #[error("`{0}` has no secret (or signing key) in this configuration, so there is nothing to sign with")]
    NothingToSign(String),
    #[error("`{0}` has no forward_to target; name the app's webhook URL with --target")]
    NoTarget(String),
    #[error("{0}")]
    Client(String),
}

impl Refused {
    pub fn code(&self) -> &'static str {
        match self {
            Refused::UnknownEndpoint { .. } => "unknown_endpoint",
            Refused::NothingToSign(_) => "nothing_to_sign",
            Refused::NoTarget(_) => "no_target",
            Refused::Client(_) => "client",
        }
    }
}

/// Why a check does not apply to an endpoint, shown as the check's `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotApplicable(pub String);

impl From<String> for NotApplicable {
    fn from(reason: String) -> NotApplicable {
        NotApplicable(reason)
    }
}

impl From<&str> for NotApplicable {
    fn from(reason: &str) -> NotApplicable {
        NotApplicable(reason.to_string())
    }
}

/// What a run needs: the endpoint, a provider of its kind with other secrets (or why there is
/// none), and the app's URL.
pub struct Plan<'a> {
    pub endpoint: &'a Endpoint,
    pub other: Result<Arc<dyn Provider>, NotApplicable>,
    pub target: String,
    pub only: Vec<CheckName>,
}

impl<'a> Plan<'a> {
    /// The plan for `name` in `config`'s endpoints: `target`, else where the endpoint sends its
    /// default fixture (its routes', else its first `forward_to`).
    pub fn new(
        config: &crate::config::Config,
        endpoints: &'a [Endpoint],
        name: &str,
        target: Option<&str>,
        only: Vec<CheckName>,
    ) -> Result<Plan<'a>, Refused> {
        let Some(endpoint) = endpoints.iter().find(|e| e.provider.name() == name || e.path == name) else {
            let known: Vec<&str> = endpoints.iter().map(|e| e.provider.name()).collect();
            return Err(Refused::UnknownEndpoint { name: name.to_string(), known: known.join(", ") });
        };
        let provider_name = endpoint.provider.name();
        if !endpoint.configured || !endpoint.provider.can_sign() {
            return Err(Refused::NothingToSign(provider_name.to_string()));
        }
        // Without --target, the app's handler is where the endpoint sends its default fixture's
        // type now: a route's target, else the first `forward_to`.
        let default_type = endpoint.provider.sample_types().first().copied().unwrap_or_default();
        let target = match target.map(str::to_string).or_else(|| endpoint.targets_for(default_type).into_iter().next())
        {
            Some(t) => t,
            None => return Err(Refused::NoTarget(provider_name.to_string())),
        };
        let other = match config.providers.get(provider_name) {
            Some(section) => crate::providers::registry::with_other_secrets(provider_name, &section.settings)
                .map_err(|e| NotApplicable(format!("no second secret could be made for this endpoint: {}", e.message))),
            None => Err(NotApplicable("the endpoint has no section to build a second secret from".into())),
        };
        Ok(Plan { endpoint, other, target, only })
    }

    fn wanted(&self, check: CheckName) -> bool {
        self.only.is_empty() || self.only.contains(&check)
    }
}

/// One request to make: a body, the headers it carries and where it goes.
struct Request {
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    note: String,
}

/// Runs every wanted check of `plan` in order, one request at a time, and grades them.
/// `now_s` is the clock the signatures use; `now_ms` stamps the report.
pub async fn run(plan: &Plan<'_>, now_s: i64, now_ms: i64) -> Result<Report, Refused> {
    let client = Client::new().map_err(|e| Refused::Client(e.to_string()))?;
    let mut checks = Vec::new();
    for check in CheckName::ALL.into_iter().filter(|c| plan.wanted(*c)) {
        checks.push(run_check(plan, &client, check, now_s).await);
    }
    let count = |o: Outcome| checks.iter().filter(|c| c.outcome == o).count() as u32;
    let (passed, failed, not_applicable) = (count(Outcome::Pass), count(Outcome::Fail), count(Outcome::NotApplicable));
    Ok(Report {
        endpoint: plan.endpoint.provider.name().to_string(),
        kind: plan.endpoint.kind,
        target: crate::redact::url(&plan.target),
        started_at_ms: now_ms,
        ok: failed == 0,
        passed,
        failed,
        not_applicable,
        checks,
    })
}

/// What a check expects of each answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Accepted,
    Refused,
    /// An answer within this long.
    Within(Duration),
}

async fn run_check(plan: &Plan<'_>, client: &Client, check: CheckName, now: i64) -> CheckResult {
    let kind = plan.endpoint.kind;
    let not_applicable = |reason: String| CheckResult {
        name: check,
        outcome: Outcome::NotApplicable,
        reason,
        fix: None,
        exchanges: Vec::new(),
    };
    let timeout = plan.endpoint.provider.delivery_timeout();
    let (requests, expect) = match requests(plan, check, now) {
        Ok(r) => r,
        Err(NotApplicable(reason)) => return not_applicable(reason),
    };
    let wait = match expect {
        Expect::Within(t) => t + GRACE,
        _ => timeout.map_or(DEFAULT_WAIT, |t| t + GRACE),
    };
    let mut exchanges = Vec::new();
    for r in requests {
        exchanges.push(send(plan, client, check, r, wait).await);
    }
    let (outcome, reason) = grade(expect, &exchanges);
    // Nothing answering is no fault of the handler's: say where the requests went instead.
    let unanswered = exchanges.iter().any(|e| e.answered.status.is_none()) && check != CheckName::AnswersInTime;
    let fix = (outcome == Outcome::Fail).then(|| match unanswered {
        true => format!(
            "nothing answered at {}: start the app there, or name its webhook URL with forward_to or --target",
            crate::redact::url(&plan.target)
        ),
        false => check.fix(kind, timeout),
    });
    CheckResult { name: check, outcome, reason, fix, exchanges }
}

/// Grades the answers of one check: every one must meet `expect`.
fn grade(expect: Expect, exchanges: &[Exchange]) -> (Outcome, String) {
    let mut said = Vec::new();
    let mut ok = true;
    for e in exchanges {
        let a = &e.answered;
        let this = match (a.status, expect) {
            (None, _) => false,
            (Some(s), Expect::Accepted) => (200..300).contains(&s),
            (Some(s), Expect::Refused) => (400..500).contains(&s),
            (Some(_), Expect::Within(t)) => Duration::from_millis(a.time_ms) <= t,
        };
        ok &= this;
        said.push(match (a.status, &a.error) {
            (Some(s), _) => format!("answered {s} in {} ms", a.time_ms),
            (None, Some(error)) => format!("{error} ({} ms)", a.time_ms),
            (None, None) => format!("no answer ({} ms)", a.time_ms),
        });
    }
    let wanted = match expect {
        Expect::Accepted => "2xx".to_string(),
        Expect::Refused => "4xx".to_string(),
        Expect::Within(t) => format!("an answer within {} s", t.as_secs()),
    };
    let outcome = if ok { Outcome::Pass } else { Outcome::Fail };
    (outcome, format!("{} (wanted {wanted})", said.join(", ")))
}

/// Sends one request and times its answer.
async fn send(plan: &Plan<'_>, client: &Client, check: CheckName, r: Request, wait: Duration) -> Exchange {
    let mut headers = r.headers;
    headers.push((CHECK_HEADER.into(), check.as_str().into()));
    if crate::providers::original_header(&headers, "user-agent").is_none() {
        headers.push(("user-agent".into(), format!("stagehook-check-app/{}", env!("CARGO_PKG_VERSION"))));
    }
    let sent = SentRequest {
        method: "POST".into(),
        url: crate::redact::url(&r.url),
        headers: crate::redact::headers(&headers, plan.endpoint.provider.secret_headers()),
        body_bytes: r.body.len() as u64,
        note: r.note,
    };
    let started = Instant::now();
    let result = client.post(&r.url, &headers, Bytes::from(r.body), wait).await;
    let time_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let answered = match result {
        Ok(a) => Answered { status: Some(a.status), time_ms, body: kept(&a.body), error: None },
        Err(e) => {
            let error = match e {
                SendError::Timeout => format!("no answer within {} ms", wait.as_millis()),
                e => e.to_string(),
            };
            Answered { status: None, time_ms, body: String::new(), error: Some(error) }
        }
    };
    Exchange { sent, answered }
}

/// The first [`BODY_KEPT`] bytes of a body as text, cut on a character boundary.
fn kept(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_KEPT)]).into_owned();
    // A multi-byte character cut at the limit reads as one replacement character; drop it.
    match text.strip_suffix('\u{fffd}') {
        Some(t) if body.len() > BODY_KEPT => t.to_string(),
        _ => text,
    }
}

/// The requests of `check` and what their answers must be, or why it does not apply.
fn requests(plan: &Plan<'_>, check: CheckName, now: i64) -> Result<(Vec<Request>, Expect), NotApplicable> {
    let provider = &plan.endpoint.provider;
    let title = plan.endpoint.kind.title();
    let sample = || provider.sample(None, now).map_err(|e| e.to_string());
    let valid = |sample: &Sample, body: Vec<u8>, at: i64, note: &str| {
        sign(provider.as_ref(), &plan.target, &plan.target, sample, body, at, note)
    };
    Ok(match check {
        CheckName::AcceptsValid => {
            let s = sample()?;
            (vec![valid(&s, s.body.clone(), now, "a fixture, correctly signed")], Expect::Accepted)
        }
        CheckName::RefusesWrongSecret => {
            let other = plan.other.as_ref().map_err(Clone::clone)?;
            let s = sample()?;
            let r =
                sign(other.as_ref(), &plan.target, &plan.target, &s, s.body.clone(), now, "signed with another secret");
            (vec![r], Expect::Refused)
        }
        CheckName::RefusesUnsigned => {
            let s = sample()?;
            let secret = provider.secret_headers();
            let mut headers: Vec<(String, String)> =
                s.headers.iter().filter(|(k, _)| !secret.iter().any(|h| h.eq_ignore_ascii_case(k))).cloned().collect();
            headers.push(("content-type".into(), s.content_type.into()));
            let note = "no signature header".to_string();
            (vec![Request { url: plan.target.clone(), headers, body: s.body, note }], Expect::Refused)
        }
        CheckName::RefusesModifiedBody => {
            let s = sample()?;
            let mut r = valid(&s, s.body.clone(), now, "signed, then one digit of the body changed");
            let at = r.body.iter().rposition(u8::is_ascii_digit).ok_or("the fixture has no digit to change")?;
            r.body[at] = if r.body[at] == b'9' { b'0' } else { r.body[at] + 1 };
            (vec![r], Expect::Refused)
        }
        CheckName::AcceptsExactBytes => {
            let s = sample()?;
            let (body, note) = format::unusual(s.content_type, &s.body).ok_or_else(|| {
                format!("{title}'s fixture is {}, which has no other spelling of the same content", s.content_type)
            })?;
            // Only what the provider itself accepts is a fair test.
            accepted_by(provider.as_ref(), &plan.target, &s, &body, (now, now)).map_err(|e| {
                format!("stagehook's own {title} verifier refuses the reformatted body: {}", e.as_str())
            })?;
            (vec![valid(&s, body, now, note)], Expect::Accepted)
        }
        CheckName::RefusesStale => {
            let at = now - STALE_AGE_S;
            let s = provider.sample(None, at).map_err(|e| e.to_string())?;
            match accepted_by(provider.as_ref(), &plan.target, &s, &s.body, (at, now)) {
                Err(RefusalCode::StaleTimestamp) => {}
                Err(code) => {
                    return Err(format!("stagehook's own verifier refuses the request ({})", code.as_str()).into())
                }
                Ok(()) if provider_signs_time(provider.as_ref(), &plan.target, &s, at) => {
                    return Err("this endpoint's tolerance accepts a signature an hour old".into())
                }
                Ok(()) => return Err(format!("{title} signs no timestamp, so a signature does not expire").into()),
            }
            (vec![valid(&s, s.body.clone(), at, "signed an hour ago")], Expect::Refused)
        }
        CheckName::RefusesWrongUrl => {
            if !provider.signs_url() {
                return Err(format!("{title}'s signature does not cover the URL").into());
            }
            let s = sample()?;
            let elsewhere = elsewhere(&plan.target);
            let r =
                sign(provider.as_ref(), &elsewhere, &plan.target, &s, s.body.clone(), now, "signed for another URL");
            (vec![r], Expect::Refused)
        }
        CheckName::IdempotentDuplicate => {
            let s = sample()?;
            let first = valid(&s, s.body.clone(), now, "the event");
            let again = valid(&s, s.body.clone(), now, "the same event again, signed afresh");
            (vec![first, again], Expect::Accepted)
        }
        CheckName::ToleratesOrder => {
            let samples = sequence(plan.endpoint.kind, provider.as_ref(), now)
                .ok_or_else(|| format!("{title}'s fixtures hold no related sequence of events"))??;
            let requests = samples.into_iter().map(|(note, s)| valid(&s, s.body.clone(), now, &note)).collect();
            (requests, Expect::Accepted)
        }
        CheckName::AnswersInTime => {
            let timeout =
                provider.delivery_timeout().ok_or_else(|| format!("{title} publishes no delivery timeout"))?;
            let s = sample()?;
            (vec![valid(&s, s.body.clone(), now, "a fixture, correctly signed")], Expect::Within(timeout))
        }
    })
}

/// `body` with `sample`'s headers, signed by `provider` for `sign_url` at `at` and sent to
/// `send_url` (the same URL but for `refuses_wrong_url`). A signature carried in the URL
/// (Twilio's `bodySHA256`) follows the request.
fn sign(
    provider: &dyn Provider,
    sign_url: &str,
    send_url: &str,
    sample: &Sample,
    body: Vec<u8>,
    at: i64,
    note: &str,
) -> Request {
    let signed = provider.sign_resend(sign_url, Some(sample.content_type), &body, &sample.headers, at);
    let url = match signed.url.strip_prefix(sign_url) {
        Some(rest) => format!("{send_url}{rest}"),
        None => signed.url.clone(),
    };
    let mut headers = crate::delivery::resent_headers(&sample.headers, &signed, &[]);
    headers.push(("content-type".into(), sample.content_type.into()));
    Request { url, headers, body, note: note.to_string() }
}

/// Whether `provider` accepts, at `now`, `body` with `sample`'s headers signed at `at` for
/// `target`, else why not.
fn accepted_by(
    provider: &dyn Provider,
    target: &str,
    sample: &Sample,
    body: &[u8],
    (at, now): (i64, i64),
) -> Result<(), RefusalCode> {
    let signed = provider.sign_resend(target, Some(sample.content_type), body, &sample.headers, at);
    let headers = header_map(&crate::delivery::resent_headers(&sample.headers, &signed, &[]), sample.content_type);
    let req = Inbound { headers: &headers, body, url: &signed.url, now_s: now };
    provider.verify(&req).map_err(|r| r.code)?;
    provider.parse(&req).map(|_| ()).map_err(|r| r.code)
}

/// Whether the provider's signature carries the time it was made (`Provider::signed_at`).
fn provider_signs_time(provider: &dyn Provider, target: &str, sample: &Sample, at: i64) -> bool {
    let signed = provider.sign_resend(target, Some(sample.content_type), &sample.body, &sample.headers, at);
    let headers = header_map(&crate::delivery::resent_headers(&sample.headers, &signed, &[]), sample.content_type);
    provider.signed_at(&Inbound { headers: &headers, body: &sample.body, url: &signed.url, now_s: at }).is_some()
}

fn header_map(pairs: &[(String, String)], content_type: &str) -> warp::http::HeaderMap {
    use warp::http::{HeaderName, HeaderValue};
    let mut h = warp::http::HeaderMap::new();
    h.insert(
        warp::http::header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("")),
    );
    for (k, v) in pairs {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            h.insert(k, v);
        }
    }
    h
}

/// Another URL than `target`: the same with a path segment added.
fn elsewhere(target: &str) -> String {
    let (base, query) = target.split_once('?').map_or((target, None), |(b, q)| (b, Some(q)));
    let moved = format!("{}/elsewhere", base.trim_end_matches('/'));
    query.map_or(moved.clone(), |q| format!("{moved}?{q}"))
}

/// A related sequence of fixtures in reverse order, where the kind's fixtures make one: for
/// Stripe, one subscription `deleted`, `updated`, then `created`, each its own event. `None`
/// when the kind has none.
fn sequence(
    kind: ProviderKind,
    provider: &dyn Provider,
    now: i64,
) -> Option<Result<Vec<(String, Sample)>, NotApplicable>> {
    const SUBSCRIPTION: &str = "customer.subscription.updated";
    if kind != ProviderKind::Stripe || !provider.sample_types().contains(&SUBSCRIPTION) {
        return None;
    }
    Some((|| -> Result<_, NotApplicable> {
        let updated = provider.sample(Some(SUBSCRIPTION), now).map_err(|e| e.to_string())?;
        let event: serde_json::Value = serde_json::from_slice(&updated.body).map_err(|e| e.to_string())?;
        let id = event["data"]["object"]["id"].as_str().unwrap_or_default().to_string();
        let steps = [
            ("customer.subscription.deleted", "canceled", -0),
            ("customer.subscription.updated", "active", -1),
            ("customer.subscription.created", "incomplete", -2),
        ];
        let mut out = Vec::new();
        for (event_type, status, age) in steps {
            let mut e = event.clone();
            e["id"] = crate::providers::fresh_id("evt_").into();
            e["type"] = event_type.into();
            e["created"] = (now + age).into();
            e["data"]["object"]["status"] = status.into();
            if event_type != SUBSCRIPTION {
                if let Some(data) = e["data"].as_object_mut() {
                    data.remove("previous_attributes");
                }
            }
            let body = serde_json::to_vec_pretty(&e).map_err(|e| e.to_string())?;
            out.push((format!("{event_type} for {id}"), Sample { body, ..updated.clone() }));
        }
        Ok(out)
    })())
}

/// The scorecard as text, for people.
pub fn text(report: &Report) -> String {
    let mut out = format!("check-app {} ({}) -> {}\n", report.endpoint, report.kind.title(), report.target);
    for c in &report.checks {
        let mark = match c.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::NotApplicable => "n/a ",
        };
        out.push_str(&format!("  {mark}  {:<22} {}\n", c.name.as_str(), c.reason));
        for e in &c.exchanges {
            let answered = match (e.answered.status, &e.answered.error) {
                (Some(s), _) => format!("{s} in {} ms", e.answered.time_ms),
                (None, error) => error.clone().unwrap_or_else(|| "no answer".into()),
            };
            out.push_str(&format!(
                "          sent POST {} ({} bytes; {}) -> {answered}\n",
                e.sent.url, e.sent.body_bytes, e.sent.note
            ));
            if c.outcome == Outcome::Fail && !e.answered.body.is_empty() {
                let body: String = e.answered.body.chars().take(120).collect();
                out.push_str(&format!("          answered: {}\n", body.replace('\n', " ")));
            }
        }
        if let Some(fix) = &c.fix {
            out.push_str(&format!("          fix: {fix}\n"));
        }
    }
    out.push_str(&format!(
        "{} passed, {} failed, {} not applicable\n",
        report.passed, report.failed, report.not_applicable
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(status: Option<u16>, time_ms: u64) -> Exchange {
        Exchange {
            sent: SentRequest {
                method: "POST".into(),
                url: "u".into(),
                headers: Vec::new(),
                body_bytes: 0,
                note: String::new(),
            },
            answered: Answered { status, time_ms, body: String::new(), error: None },
        }
    }

    #[test]
    fn answers_are_graded_by_what_the_check_expects() {
        let (accepted, refused) = (Expect::Accepted, Expect::Refused);
        assert_eq!(grade(accepted, &[exchange(Some(204), 1), exchange(Some(200), 1)]).0, Outcome::Pass);
        assert_eq!(grade(accepted, &[exchange(Some(200), 1), exchange(Some(500), 1)]).0, Outcome::Fail);
        assert_eq!(grade(refused, &[exchange(Some(401), 1)]).0, Outcome::Pass);
        // A 5xx is no refusal: the provider would retry it.
        assert_eq!(grade(refused, &[exchange(Some(500), 1)]).0, Outcome::Fail);
        assert_eq!(grade(refused, &[exchange(None, 1)]).0, Outcome::Fail);
        // GitHub's ten seconds, without waiting them.
        let github = Expect::Within(Duration::from_secs(10));
        assert_eq!(grade(github, &[exchange(Some(200), 10_000)]).0, Outcome::Pass);
        let (outcome, reason) = grade(github, &[exchange(Some(200), 10_001)]);
        assert_eq!(outcome, Outcome::Fail);
        assert_eq!(reason, "answered 200 in 10001 ms (wanted an answer within 10 s)");
        assert_eq!(grade(github, &[exchange(None, 11_000)]).0, Outcome::Fail);
    }

    #[test]
    fn names_parse_back_and_a_kept_body_is_cut_on_a_character() {
        for c in CheckName::ALL {
            assert_eq!(CheckName::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        assert_eq!(CheckName::parse("nope"), None);
        let body = "é".repeat(400);
        let k = kept(body.as_bytes());
        assert_eq!(k.len(), 512);
        assert!(k.chars().all(|c| c == 'é'));
        assert_eq!(kept(b"short"), "short");
    }

    #[test]
    fn another_url_differs_and_keeps_the_query() {
        assert_eq!(elsewhere("http://a/hook"), "http://a/hook/elsewhere");
        assert_eq!(elsewhere("http://a/hook/?x=1"), "http://a/hook/elsewhere?x=1");
    }
}
