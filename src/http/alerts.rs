//! `GET /staging/webhooks/alerts`: every `[[alerts]]` rule with its state (`ok`, or `firing`
//! with each firing alert since when and its figure), and each notifier with its lane's breaker and
//! its last notification. In-memory state and one bounded read per notifier.

use std::sync::Arc;

use serde_json::{json, Value};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::{admin, ok_json, AppState};
use crate::alerts::notify;

pub fn filter(state: Arc<AppState>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path("staging")
        .and(warp::path("webhooks"))
        .and(warp::path("alerts"))
        .and(warp::path::end())
        .and(warp::get())
        .and(admin(state))
        .map(|s: Arc<AppState>| ok_json(&alerts(&s)))
}

fn alerts(s: &AppState) -> Value {
    let firing = s.alerts.firing();
    let ms = |d: Option<crate::config::HumanDuration>| d.map(|d| d.0.as_millis() as u64);
    let rules: Vec<Value> = s
        .alerts
        .rules()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let alerts: Vec<Value> = firing
                .values()
                .filter(|f| f.rule == i)
                .map(|f| {
                    json!({
                        "provider": (!f.subject.is_empty()).then_some(&f.subject),
                        "since_ms": f.state.since_ms,
                        "last_sent_ms": f.state.last_sent_ms,
                        "figure": f.figure,
                        "detail": f.detail,
                    })
                })
                .collect();
            json!({
                "rule": format!("alerts[{i}]"),
                "when": r.when.as_str(),
                "provider": r.provider,
                "above": r.above,
                "window_ms": ms(r.window),
                "for_ms": ms(r.for_),
                "code": r.code,
                "repeat_ms": ms(r.repeat),
                "notify": r.notify,
                "state": if alerts.is_empty() { "ok" } else { "firing" },
                "firing": alerts,
            })
        })
        .collect();
    let lanes = s.engine.all_lanes();
    let last = s.alerts.last_notifications();
    let notifiers: Vec<Value> = s
        .config
        .notifiers
        .iter()
        .map(|(name, n)| {
            let lane = notify::lane_name(name);
            let breaker = lanes.iter().find(|l| l.name == lane).map(|l| l.breaker.state);
            let last = last.get(name).cloned().flatten().map(|l| {
                json!({
                    "id": l.id.to_string(),
                    "type": l.event_type,
                    "at_ms": l.at_ms,
                    "status": l.status.as_str(),
                    "attempts": l.attempts,
                    "last_error": l.last_error,
                })
            });
            json!({"name": name, "kind": n.kind.as_str(), "lane": lane, "breaker": breaker, "last_notification": last})
        })
        .collect();
    json!({ "rules": rules, "notifiers": notifiers })
}
