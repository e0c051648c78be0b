//! The listers read the providers' APIs (fakes that honour the documented parameters, on
//! loopback) page by page, oldest first, giving only what the store lacks.

use std::collections::HashSet;
use std::sync::Arc;

use stagehook::backfill::{ApiError, Fetched, Known, Lister, Window};
use stagehook::providers::api::{ApiAccess, GithubApi, HookOwner, StripeApi};
use stagehook::secret::Secret;

use crate::fake_provider_api::{FakeProviderApi, Fault, GithubDelivery, StripeEvent, GITHUB_TOKEN, STRIPE_KEY};

/// 2024-05-01T00:00:00Z.
const T0: i64 = 1_714_521_600;
const KINDS: [&str; 3] = ["invoice.paid", "customer.created", "invoice.payment_failed"];

fn stripe_events(n: usize) -> Vec<StripeEvent> {
    // Three events a second, so that events share a `created` across page boundaries.
    (0..n)
        .map(|i| StripeEvent { id: format!("evt_{i:05}"), created: T0 + (i / 3) as i64, kind: KINDS[i % 3].into() })
        .collect()
}

fn stripe(api: &FakeProviderApi) -> ApiAccess {
    ApiAccess::Stripe(StripeApi { base: api.base(), key: Secret::new(STRIPE_KEY) })
}

fn github(api: &FakeProviderApi) -> ApiAccess {
    ApiAccess::Github(GithubApi {
        base: api.base(),
        token: Secret::new(GITHUB_TOKEN),
        owner: HookOwner::Repository("acme/shop".into()),
        hook_id: 7,
    })
}

fn known(ids: impl IntoIterator<Item = String>) -> Known {
    let ids: HashSet<String> = ids.into_iter().collect();
    Arc::new(move |id: &str| ids.contains(id))
}

fn all_time() -> Window {
    Window { since_ms: 0, until_ms: i64::MAX / 2 }
}

/// Every page of a run: (listed per page, everything missing in order).
async fn drain(lister: &mut Lister) -> Result<(Vec<u64>, Vec<Fetched>), ApiError> {
    let (mut listed, mut missing) = (Vec::new(), Vec::new());
    while let Some(page) = lister.next_page().await? {
        listed.push(page.listed);
        missing.extend(page.missing);
    }
    Ok((listed, missing))
}

fn ids(fetched: &[Fetched]) -> Vec<String> {
    fetched.iter().map(|f| f.event_id.clone()).collect()
}

#[tokio::test]
async fn stripe_lists_what_the_store_lacks_oldest_first_over_pages() {
    let api = FakeProviderApi::start().await;
    let events = stripe_events(250);
    api.set_stripe_events(events.clone());
    // Two in five are known: 100 of 250.
    let known_ids: Vec<String> =
        events.iter().enumerate().filter(|(i, _)| i % 5 < 2).map(|(_, e)| e.id.clone()).collect();
    assert_eq!(known_ids.len(), 100);
    let mut lister = Lister::new(&stripe(&api), all_time(), vec![], known(known_ids.clone())).unwrap();
    let (listed, missing) = drain(&mut lister).await.unwrap();

    let want: Vec<&StripeEvent> = events.iter().filter(|e| !known_ids.contains(&e.id)).collect();
    assert_eq!(ids(&missing), want.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
    assert_eq!(missing.len(), 150);
    assert_eq!(listed.iter().sum::<u64>(), 250, "{listed:?}");
    assert!(listed.len() >= 3, "{listed:?}");
    for (f, e) in missing.iter().zip(&want) {
        assert_eq!(f.body, e.json().into_bytes(), "the event's bytes as the API gave them");
        assert_eq!(f.created_ms, e.created * 1000);
        assert_eq!(
            f.headers,
            vec![
                ("content-type".to_string(), "application/json; charset=utf-8".to_string()),
                ("user-agent".to_string(), "Stripe/1.0 (+https://stripe.com/docs/webhooks)".to_string()),
            ]
        );
    }
    assert_eq!(lister.covered(), all_time());

    let got = api.got();
    assert!(got.iter().all(|g| g.header("authorization") == Some(&format!("Bearer {STRIPE_KEY}")[..])));
    assert!(got.iter().all(|g| g.path == "/v1/events" && g.param("limit") == Some("100")));
    assert!(got.iter().any(|g| g.param("starting_after").is_some()), "pages toward the oldest");
    assert!(got.iter().any(|g| g.param("ending_before").is_some()), "pages back toward the newest");
}

#[tokio::test]
async fn stripe_lists_only_the_types_asked_for() {
    let api = FakeProviderApi::start().await;
    let events = stripe_events(250);
    api.set_stripe_events(events.clone());
    let cases: [&[&str]; 3] = [
        // One glob: Stripe's `type` takes it.
        &["invoice.*"],
        // Exact names: `types[]`.
        &["invoice.paid", "customer.created"],
        // A glob among others: filtered here.
        &["invoice.pay*", "customer.created"],
    ];
    for types in cases {
        let globs: Vec<String> = types.iter().map(|t| t.to_string()).collect();
        let mut lister = Lister::new(&stripe(&api), all_time(), globs, known([])).unwrap();
        let (listed, missing) = drain(&mut lister).await.unwrap();
        let matches = |kind: &str| {
            types.iter().any(|t| match t.strip_suffix('*') {
                Some(prefix) => kind.starts_with(prefix),
                None => kind == *t,
            })
        };
        let want: Vec<String> = events.iter().filter(|e| matches(&e.kind)).map(|e| e.id.clone()).collect();
        assert_eq!(ids(&missing), want, "{types:?}");
        assert_eq!(listed.iter().sum::<u64>(), want.len() as u64, "{types:?}");
    }
    let got = api.got();
    assert!(got.iter().any(|g| g.param("type") == Some("invoice.*")));
    assert!(got.iter().any(|g| g.query.iter().filter(|(k, _)| k == "types[]").count() == 2));
}

#[tokio::test]
async fn stripe_lists_only_the_window() {
    let api = FakeProviderApi::start().await;
    let events = stripe_events(250);
    api.set_stripe_events(events.clone());
    // From just after second T0+10 began to the end of second T0+50: 11 .. 50 inclusive.
    let window = Window { since_ms: (T0 + 10) * 1000 + 1, until_ms: (T0 + 50) * 1000 + 999 };
    let mut lister = Lister::new(&stripe(&api), window, vec![], known([])).unwrap();
    let (_, missing) = drain(&mut lister).await.unwrap();
    let want: Vec<String> =
        events.iter().filter(|e| (T0 + 11..=T0 + 50).contains(&e.created)).map(|e| e.id.clone()).collect();
    assert_eq!(want.len(), 120);
    assert_eq!(ids(&missing), want);
    let got = api.got();
    assert_eq!(got[0].param("created[gte]"), Some(&(T0 + 11).to_string()[..]));
    assert_eq!(got[0].param("created[lte]"), Some(&(T0 + 50).to_string()[..]));
}

#[tokio::test]
async fn stripe_waits_out_a_rate_limit_mid_paging() {
    let api = FakeProviderApi::start().await;
    let events = stripe_events(250);
    api.set_stripe_events(events.clone());
    api.fault_on(2, Fault::RateLimit(1));
    let mut lister = Lister::new(&stripe(&api), all_time(), vec![], known([])).unwrap();
    let (_, missing) = drain(&mut lister).await.unwrap();
    assert_eq!(ids(&missing), events.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
    let got = api.got();
    assert_eq!(got[1].query, got[2].query, "the rate-limited page is asked again");
}

#[tokio::test]
async fn a_refused_key_is_unauthorized_naming_the_key() {
    let api = FakeProviderApi::start().await;
    api.set_stripe_events(stripe_events(10));
    api.refuse_all();
    let mut lister = Lister::new(&stripe(&api), all_time(), vec![], known([])).unwrap();
    let err = lister.next_page().await.unwrap_err();
    let ApiError::Unauthorized { key, status, message } = &err else { panic!("{err:?}") };
    assert_eq!((*key, *status), ("api_key", 401));
    assert!(message.contains("Invalid API Key provided"), "{message}");
    assert_eq!(err.code(), "api_unauthorized");
    assert!(!err.to_string().contains(STRIPE_KEY));
    assert_eq!(api.got().len(), 1, "a refused key is not retried");

    let mut lister = Lister::new(&github(&api), all_time(), vec![], known([])).unwrap();
    let err = lister.next_page().await.unwrap_err();
    let ApiError::Unauthorized { key, message, .. } = &err else { panic!("{err:?}") };
    assert_eq!((*key, message.as_str()), ("api_token", "Bad credentials"));
}

#[tokio::test]
async fn ten_thousand_stripe_events_come_page_by_page() {
    let api = FakeProviderApi::start().await;
    let events = stripe_events(10_000);
    api.set_stripe_events(events.clone());
    let mut lister = Lister::new(&stripe(&api), all_time(), vec![], known([])).unwrap();
    let mut pages = 0;
    let mut next = 0;
    while let Some(page) = lister.next_page().await.unwrap() {
        pages += 1;
        assert!(page.listed <= 100 && page.missing.len() <= 100, "a page of {}", page.listed);
        for f in &page.missing {
            assert_eq!(f.event_id, events[next].id);
            next += 1;
        }
        // Before the last page, the run is covered up to just before the newest given.
        if next < events.len() {
            assert_eq!(lister.covered().until_ms, events[next - 1].created * 1000 - 1);
        }
    }
    assert_eq!(next, 10_000);
    assert_eq!(pages, 100);
    let got = api.got();
    // Each request asks one page: 100 toward the oldest, 99 back.
    assert_eq!(got.len(), 199);
    assert_eq!(got.iter().filter(|g| g.param("ending_before").is_some()).count(), 99);
}

fn delivery(id: u64, guid: &str, minute: i64, form: bool) -> GithubDelivery {
    let at = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs((T0 + minute * 60) as u64),
    )
    .to_string();
    let payload = format!(r#"{{"action":"opened","number":{id},"repository":{{"full_name":"acme/shop"}}}}"#);
    let content_type = if form { "application/x-www-form-urlencoded" } else { "application/json" };
    GithubDelivery {
        id,
        guid: guid.into(),
        event: "pull_request".into(),
        action: Some("opened".into()),
        delivered_at: at,
        redelivery: false,
        headers: vec![
            ("Accept".into(), "*/*".into()),
            ("User-Agent".into(), "GitHub-Hookshot/5a9b2c1".into()),
            ("X-GitHub-Event".into(), "pull_request".into()),
            ("X-GitHub-Delivery".into(), guid.into()),
            ("X-GitHub-Hook-ID".into(), "7".into()),
            ("X-Hub-Signature".into(), "sha1=0000".into()),
            ("X-Hub-Signature-256".into(), "sha256=0000".into()),
            ("content-type".into(), content_type.into()),
        ],
        payload,
    }
}

#[tokio::test]
async fn github_fetches_the_missing_deliveries_oldest_first_with_their_headers() {
    let api = FakeProviderApi::start().await;
    // 140 events a minute apart (two listing pages), the 3rd posted as a form; then the 5th
    // redelivered at the end.
    let mut deliveries: Vec<GithubDelivery> =
        (1..=140).map(|i| delivery(i, &format!("guid-{i:03}"), i as i64, i == 3)).collect();
    let mut again = delivery(141, "guid-005", 141, false);
    again.redelivery = true;
    deliveries.push(again);
    api.set_github_deliveries(deliveries.clone());
    // 110 known: all but the first 30.
    let mut lister =
        Lister::new(&github(&api), all_time(), vec![], known((31..=140).map(|i| format!("guid-{i:03}")))).unwrap();
    let (listed, missing) = drain(&mut lister).await.unwrap();
    assert_eq!(ids(&missing), (1..=30).map(|i| format!("guid-{i:03}")).collect::<Vec<_>>());
    assert_eq!(listed.iter().sum::<u64>(), 140);

    let first = &missing[0];
    assert_eq!(first.created_ms, (T0 + 60) * 1000);
    assert_eq!(first.body, deliveries[0].payload.as_bytes());
    let header = |f: &Fetched, name: &str| f.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(header(first, "x-github-event").as_deref(), Some("pull_request"));
    assert_eq!(header(first, "x-github-delivery").as_deref(), Some("guid-001"));
    assert_eq!(header(first, "user-agent").as_deref(), Some("GitHub-Hookshot/5a9b2c1"));
    assert!(first.headers.iter().all(|(k, _)| !k.starts_with("x-hub-signature") && *k == k.to_lowercase()));
    // The redelivered event comes once, at its first delivery's time.
    assert_eq!(missing[4].created_ms, (T0 + 5 * 60) * 1000);
    // A form hook's body is the payload, urlencoded, as `payload=`.
    let form: String =
        form_urlencoded::Serializer::new(String::new()).append_pair("payload", &deliveries[2].payload).finish();
    assert_eq!(missing[2].body, form.into_bytes());

    let got = api.got();
    assert!(got.iter().all(|g| g.header("authorization") == Some(&format!("Bearer {GITHUB_TOKEN}")[..])
        && g.header("accept") == Some("application/vnd.github+json")
        && g.header("x-github-api-version") == Some("2022-11-28")));
    let lists: Vec<_> = got.iter().filter(|g| g.path == "/repos/acme/shop/hooks/7/deliveries").collect();
    assert_eq!(lists.len(), 2, "two pages of summaries");
    assert!(lists[1].param("cursor").is_some());
    // Only the missing are fetched, the oldest delivery of the redelivered one.
    let fetched: Vec<&str> =
        got.iter().filter_map(|g| g.path.strip_prefix("/repos/acme/shop/hooks/7/deliveries/")).collect();
    assert_eq!(fetched, (1..=30).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[tokio::test]
async fn github_stops_at_the_windows_start_and_retries_a_server_error() {
    let api = FakeProviderApi::start().await;
    let deliveries: Vec<GithubDelivery> =
        (1..=140).map(|i| delivery(i, &format!("guid-{i:03}"), i as i64, false)).collect();
    api.set_github_deliveries(deliveries);
    // The first detail fetch fails once.
    api.fault_on(2, Fault::ServerError);
    // Minutes 131 to 135.
    let window = Window { since_ms: (T0 + 131 * 60) * 1000, until_ms: (T0 + 135 * 60) * 1000 };
    let mut lister = Lister::new(&github(&api), window, vec!["pull_request.*".into()], known([])).unwrap();
    let (_, missing) = drain(&mut lister).await.unwrap();
    assert_eq!(ids(&missing), (131..=135).map(|i| format!("guid-{i:03}")).collect::<Vec<_>>());
    let got = api.got();
    assert_eq!(got.iter().filter(|g| g.path.ends_with("/deliveries")).count(), 1, "the first page reaches the start");
    assert_eq!(got[1].path, got[2].path, "the failed fetch is asked again");
}
