//! The GET a lister reads a provider's API with: the deliveries' connector (http and https,
//! the compiled-in roots), a timeout per request, an answer bounded in size, and retries for
//! what passes (rate limits, 5xx, a dropped connection). A credential refused ends the run at
//! once; the credential itself never reaches a log line or an error.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

use super::ApiError;
use crate::clock::Clock;
use crate::delivery::client::{connector, error_chain};

/// An answer larger than this is refused: a page of 100 Stripe events is 1 to 2 MB, and
/// GitHub caps a webhook's payload at 25 MB but a delivery's page of summaries is small.
pub const MAX_ANSWER: usize = 16 * 1024 * 1024;
/// How long one request may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts per request before a passing failure becomes the run's error.
const ATTEMPTS: u32 = 4;
/// The wait after the first passing failure, doubled after each.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait a rate limit may ask for: a longer one ends the run (a rerun later resumes)
/// rather than holding it for up to GitHub's hour.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// How much of a provider's error message an error keeps.
const MAX_MESSAGE: usize = 300;

/// Which provider answers: where its error message lives and what its credential is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `{"error": {"message": ...}}`, the key `api_key`.
    Stripe,
    /// `{"message": ...}`, the key `api_token`, rate limits in `x-ratelimit-*`.
    Github,
}

impl Dialect {
    fn key(self) -> &'static str {
        match self {
            Dialect::Stripe => "api_key",
            Dialect::Github => "api_token",
        }
    }
}

/// A 2xx answer.
#[derive(Debug)]
pub struct Answer {
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

#[derive(Clone)]
pub struct Http {
    inner: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    dialect: Dialect,
    /// `Authorization` and the rest, sent with every request.
    headers: Vec<(&'static str, String)>,
    /// The credential, only to blank it out of a provider's message that quotes it.
    secret: String,
    /// For GitHub's `x-ratelimit-reset`, a Unix time.
    clock: Clock,
}

/// Why one attempt failed, and whether another may succeed.
enum Failure {
    Final(ApiError),
    /// Retry after the backoff, or after the wait the provider asked for.
    Passing(ApiError, Option<Duration>),
}

impl Http {
    pub fn new(dialect: Dialect, secret: &str, headers: Vec<(&'static str, String)>) -> Result<Http, ApiError> {
        let https = connector(Duration::from_secs(10)).map_err(|e| ApiError::Unreachable(e.to_string()))?;
        let inner = HyperClient::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https);
        Ok(Http { inner, dialect, headers, secret: secret.to_string(), clock: Clock::system() })
    }

    /// GETs `url` and answers its 2xx answer, retrying what passes (see the module's comment).
    pub async fn get(&self, url: &str) -> Result<Answer, ApiError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.attempt(url).await {
                Ok(answer) => return Ok(answer),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Passing(e, _)) if attempt >= ATTEMPTS => return Err(e),
                Err(Failure::Passing(e, wait)) => {
                    let wait = wait.unwrap_or(backoff);
                    tracing::debug!(error = %e, attempt, wait_ms = wait.as_millis() as u64, "provider API: retrying");
                    tokio::time::sleep(wait).await;
                    backoff *= 2;
                    attempt += 1;
                }
            }
        }
    }

    async fn attempt(&self, url: &str) -> Result<Answer, Failure> {
        let mut req = hyper::Request::get(url);
        for (k, v) in &self.headers {
            req = req.header(*k, v.as_str());
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| Failure::Final(ApiError::BadAnswer(format!("cannot build a request for the API: {e}"))))?;
        let exchange = async {
            let res = self
                .inner
                .request(req)
                .await
                .map_err(|e| Failure::Passing(ApiError::Unreachable(self.blank(&error_chain(&e))), None))?;
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            let mut body = res.into_body();
            let mut kept = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| {
                    Failure::Passing(ApiError::Unreachable(format!("the answer broke off: {}", error_chain(&e))), None)
                })?;
                if let Ok(data) = frame.into_data() {
                    if kept.len() + data.len() > MAX_ANSWER {
                        return Err(Failure::Final(ApiError::BadAnswer(format!(
                            "an answer larger than {} MiB",
                            MAX_ANSWER / (1024 * 1024)
                        ))));
                    }
                    kept.extend_from_slice(&data);
                }
            }
            Ok((status, headers, kept))
        };
        let (status, headers, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.map_err(|_| {
            Failure::Passing(ApiError::Unreachable(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())), None)
        })??;
        if (200..300).contains(&status) {
            return Ok(Answer { headers, body });
        }
        let message = self.message(&body);
        if let Some(wait) = rate_limit_wait(status, &headers, self.clock.now_s()) {
            let e = ApiError::Unavailable(format!("rate limited (HTTP {status}): {message}"));
            if wait > MAX_RATE_LIMIT_WAIT {
                return Err(Failure::Final(ApiError::Unavailable(format!(
                    "rate limited (HTTP {status}) for {} s more: {message}",
                    wait.as_secs()
                ))));
            }
            return Err(Failure::Passing(e, Some(wait)));
        }
        Err(match status {
            401 | 403 => Failure::Final(ApiError::Unauthorized { key: self.dialect.key(), status, message }),
            // Stripe: "Too many requests hit the API too quickly" without a Retry-After.
            429 => Failure::Passing(ApiError::Unavailable(format!("rate limited (HTTP 429): {message}")), None),
            400..=499 => Failure::Final(ApiError::Refused { status, message }),
            _ => Failure::Passing(ApiError::Unavailable(format!("HTTP {status}: {message}")), None),
        })
    }

    /// The provider's own words for an error answer, short and without the credential.
    fn message(&self, body: &[u8]) -> String {
        let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let found = json.as_ref().and_then(|j| match self.dialect {
            Dialect::Stripe => j.pointer("/error/message"),
            Dialect::Github => j.get("message"),
        });
        let text = match found.and_then(|m| m.as_str()) {
            Some(m) => m.to_string(),
            None => String::from_utf8_lossy(&body[..body.len().min(MAX_MESSAGE)]).into_owned(),
        };
        let mut text = self.blank(&text);
        text.truncate(crate::text::cut(&text, MAX_MESSAGE).len());
        text
    }

    fn blank(&self, text: &str) -> String {
        if self.secret.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.secret, "[redacted]")
        }
    }
}

/// The wait a rate-limited answer asks for, or None when the answer is no rate limit: a 429,
/// or a 403 that carries `Retry-After` or `x-ratelimit-remaining: 0` (GitHub's primary and
/// secondary limits answer 403 or 429:
/// https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit).
fn rate_limit_wait(status: u16, headers: &hyper::HeaderMap, now_s: i64) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let retry_after = header("retry-after").and_then(|v| v.parse::<u64>().ok()).map(Duration::from_secs);
    let exhausted = header("x-ratelimit-remaining") == Some("0");
    // "If x-ratelimit-remaining is 0, do not retry until after the time specified by
    // x-ratelimit-reset" (in UTC epoch seconds), same page.
    let until_reset = || {
        let reset = header("x-ratelimit-reset")?.parse::<i64>().ok()?;
        Some(Duration::from_secs(reset.saturating_sub(now_s).max(1) as u64))
    };
    match status {
        429 | 403 if retry_after.is_some() => retry_after,
        429 | 403 if exhausted => Some(until_reset().unwrap_or(Duration::from_secs(60))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_is_told_from_a_refusal() {
        let now = 1_000;
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = hyper::HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        let limited = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1030")]);
        assert_eq!(rate_limit_wait(403, &limited, now), Some(Duration::from_secs(30)));
        assert_eq!(rate_limit_wait(429, &headers(&[("retry-after", "2")]), now), Some(Duration::from_secs(2)));
        assert_eq!(rate_limit_wait(403, &headers(&[("x-ratelimit-remaining", "12")]), now), None);
        assert_eq!(rate_limit_wait(429, &headers(&[]), now), None);
        assert_eq!(rate_limit_wait(500, &limited, now), None);
    }
}
