//! Shopify: `X-Shopify-Hmac-Sha256: <base64>` over the raw body.
//!
//! Verified as Shopify's app libraries (shopify-app-js `webhooks.validate`) do: the key is the
//! app's client secret as UTF-8 bytes; the header must equal `base64(HMAC-SHA256(secret, body))`
//! (standard alphabet, padded), compared as a string in constant time. There is no timestamp.
//! Those libraries also refuse a webhook without its topic, shop domain, API version or webhook
//! id headers, so they are structural checks here: an app would refuse the delivery anyway.
//! `X-Shopify-Webhook-Id` is the same on every retry of one delivery, so it is the dedup key.

use base64::Engine;
use serde_json::{json, Value};
use warp::http::HeaderMap;

use super::kind::{ConfigError, Kind, Rotation};
use super::signing::{self, HmacSha256};
use super::{
    fresh_id, fresh_uuid, inspected, json_body, pick, receipt, require_media_type, required_header, rfc3339,
    signature_value, Accepted, Answer, Check, Inbound, Parsed, Provider, Refusal, RefusalCode, Sample, Signed,
    UnknownFixture, NO_EVENT,
};
use crate::secret::Secret;

pub const SIGNATURE_HEADER: &str = "x-shopify-hmac-sha256";
pub const TOPIC_HEADER: &str = "x-shopify-topic";
pub const WEBHOOK_ID_HEADER: &str = "x-shopify-webhook-id";
pub const SHOP_DOMAIN_HEADER: &str = "x-shopify-shop-domain";
pub const API_VERSION_HEADER: &str = "x-shopify-api-version";
pub const TRIGGERED_AT_HEADER: &str = "x-shopify-triggered-at";
pub const EVENT_ID_HEADER: &str = "x-shopify-event-id";
const JSON: &str = "application/json";

/// The fixtures of `stagehook send`; the first is the default.
const SAMPLE_TYPES: &[&str] = &["orders/create", "orders/paid"];

/// The headers without which Shopify's libraries refuse a webhook, and how they are shown.
const REQUIRED_HEADERS: [(&str, &str); 4] = [
    (WEBHOOK_ID_HEADER, "X-Shopify-Webhook-Id"),
    (TOPIC_HEADER, "X-Shopify-Topic"),
    (SHOP_DOMAIN_HEADER, "X-Shopify-Shop-Domain"),
    (API_VERSION_HEADER, "X-Shopify-API-Version"),
];

/// Debug prints secrets as fingerprints only (see `Secret`).
/// A section of kind `shopify`.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The webhook's secret.
    pub secret: Option<Secret>,
    /// Several secrets accepted at once (rotation); deliveries and `send` sign with the first
    /// of `secret` then `secrets`.
    pub secrets: Vec<Secret>,
}

#[derive(Debug)]
pub struct Shopify {
    pub name: String,
    /// Every accepted client secret (rotation); deliveries are signed with the first.
    pub secrets: Vec<Secret>,
}

impl Kind for Shopify {
    const KEYS: &'static [&'static str] = &["secret", "secrets"];

    type Settings = Settings;

    /// The endpoint `[providers.<name>]`. No secret is not an error: the endpoint then
    /// answers 503 until one is set.
    fn from_settings(name: &str, c: &Settings) -> Result<Shopify, ConfigError> {
        Ok(Shopify { name: name.to_string(), secrets: Self::rotation(c).nonempty(name)? })
    }

    fn rotation(c: &Settings) -> Rotation<'_> {
        Rotation::new(&c.secret, &c.secrets)
    }
}

/// `base64(HMAC-SHA256(secret, body))`, the value of `X-Shopify-Hmac-Sha256`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(signing::mac::<HmacSha256>(secret.as_bytes(), [body]))
}

/// Every structural check, and the event when they all pass.
fn inspect(req: &Inbound<'_>) -> (Vec<Check>, Option<Parsed>) {
    let mut checks = Vec::new();
    let mut values = Vec::new();
    for (name, shown) in REQUIRED_HEADERS {
        let (check, value) = required_header(req.headers, name, shown);
        checks.push(check);
        values.extend(value);
    }
    checks.push(match json_body(req.body) {
        Ok(v) if v.is_object() => Check::pass("body", "JSON object"),
        Ok(_) => Check::fail("body", "must be a JSON object"),
        Err(check) => check,
    });
    let parsed = checks.iter().all(|c| c.ok).then(|| Parsed::one(values[0], values[1]));
    (checks, parsed)
}

impl Provider for Shopify {
    fn delivery_timeout(&self) -> Option<std::time::Duration> {
        // A one-second connection timeout and five seconds in all, after which Shopify retries:
        // https://shopify.dev/docs/apps/build/webhooks/subscribe/https
        Some(std::time::Duration::from_secs(5))
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn secret_headers(&self) -> &[&'static str] {
        &[SIGNATURE_HEADER]
    }

    fn precheck(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        require_media_type(headers, &[JSON], "Shopify webhooks are", " (set the subscription's format to JSON)")
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<(), Refusal> {
        let invalid = |m: &str| Refusal::new(RefusalCode::InvalidSignature, m);
        let given = signature_value(req.headers, SIGNATURE_HEADER, "X-Shopify-Hmac-Sha256")?;
        let matched = signing::any_matches(&self.secrets, [given], |secret| sign(secret.expose(), req.body));
        if matched {
            Ok(())
        } else {
            Err(invalid(
                "X-Shopify-Hmac-Sha256 does not match the payload for the configured secret (the app's client secret)",
            ))
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
        // Shopify only looks at the status; the receipt is for people reading responses.
        receipt(accepted)
    }

    fn sign_delivery(&self, target: &str, _content_type: Option<&str>, body: &[u8], _now_s: i64) -> Signed {
        let secret = signing::signing_secret(&self.secrets);
        Signed { url: target.to_string(), headers: vec![(SIGNATURE_HEADER, sign(secret, body))] }
    }

    fn sample_types(&self) -> &'static [&'static str] {
        SAMPLE_TYPES
    }

    fn sample(&self, event_type: Option<&str>, now_s: i64) -> Result<Sample, UnknownFixture> {
        let topic = pick(SAMPLE_TYPES, event_type)?;
        let order = order_payload(topic == "orders/paid", now_s);
        let headers = vec![
            (TOPIC_HEADER.to_string(), topic.to_string()),
            (WEBHOOK_ID_HEADER.to_string(), fresh_uuid()),
            (EVENT_ID_HEADER.to_string(), fresh_uuid()),
            (SHOP_DOMAIN_HEADER.to_string(), SHOP_DOMAIN.to_string()),
            (API_VERSION_HEADER.to_string(), "2024-10".to_string()),
            (TRIGGERED_AT_HEADER.to_string(), rfc3339(now_s)),
        ];
        Ok(Sample { content_type: JSON, headers, body: serde_json::to_vec(&order).unwrap_or_default() })
    }
}

const SHOP_DOMAIN: &str = "stagehook-dev.myshopify.com";

/// A test order of two T-shirts as the Admin API writes it: prices are decimal strings, ids are
/// 13-digit integers, and `test` is true as for any order placed with the bogus gateway.
fn order_payload(paid: bool, now_s: i64) -> Value {
    let order_id = fastrand::u64(5_000_000_000_000..6_000_000_000_000);
    let customer_id = fastrand::u64(7_000_000_000_000..8_000_000_000_000);
    let number = fastrand::u32(1..100_000);
    let at = rfc3339(now_s);
    let token = hex::encode(ulid::Ulid::new().to_bytes());
    let address = json!({
        "first_name": "Ada", "last_name": "Lovelace", "name": "Ada Lovelace", "company": null,
        "address1": "1 Infinite Loop", "address2": null, "city": "Cupertino", "province": "California",
        "province_code": "CA", "zip": "95014", "country": "United States", "country_code": "US",
        "phone": "+15555550100", "latitude": null, "longitude": null,
    });
    let shipping_line = json!({"id": fastrand::u64(4_000_000_000_000..5_000_000_000_000), "title": "Standard",
        "code": "Standard", "price": "0.00", "source": "shopify", "discounted_price": "0.00"});
    let line_item_id = fastrand::u64(13_000_000_000_000..14_000_000_000_000);
    let line_item = json!({
        "id": line_item_id,
        "admin_graphql_api_id": format!("gid://shopify/LineItem/{line_item_id}"),
        "product_id": 8_000_000_000_001_u64, "variant_id": 44_000_000_000_001_u64,
        "title": "Sample T-Shirt", "variant_title": "M / Black", "name": "Sample T-Shirt - M / Black",
        "sku": "TS-M-BLK", "vendor": "stagehook", "quantity": 2, "price": "27.00",
        "price_set": {"shop_money": {"amount": "27.00", "currency_code": "USD"},
            "presentment_money": {"amount": "27.00", "currency_code": "USD"}},
        "total_discount": "0.00", "taxable": true, "requires_shipping": true, "gift_card": false,
        "fulfillable_quantity": 2, "fulfillment_status": null, "grams": 200,
        "tax_lines": [{"title": "CA State Tax", "price": "4.32", "rate": 0.08}],
    });
    let customer = json!({
        "id": customer_id, "admin_graphql_api_id": format!("gid://shopify/Customer/{customer_id}"),
        "email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace", "state": "enabled",
        "verified_email": true, "currency": "USD", "tax_exempt": false, "created_at": at, "updated_at": at,
    });
    let money = |amount: &str| {
        json!({"shop_money": {"amount": amount, "currency_code": "USD"},
            "presentment_money": {"amount": amount, "currency_code": "USD"}})
    };
    let mut order = json!({
        "id": order_id,
        "admin_graphql_api_id": format!("gid://shopify/Order/{order_id}"),
        "name": format!("#{}", 1000 + number), "number": number, "order_number": 1000 + number,
        "confirmation_number": fresh_id("").chars().rev().take(9).collect::<String>(),
        "email": "ada@example.com", "contact_email": "ada@example.com", "phone": null,
        "created_at": at, "updated_at": at, "processed_at": at, "closed_at": null, "cancelled_at": null,
        "cancel_reason": null, "confirmed": true, "test": true, "source_name": "web",
    });
    // Two halves: one `json!` of every key exceeds the macro's recursion limit.
    let rest = json!({
        "currency": "USD", "presentment_currency": "USD", "taxes_included": false, "estimated_taxes": false,
        "subtotal_price": "54.00", "total_line_items_price": "54.00", "total_discounts": "0.00",
        "total_tax": "4.32", "total_price": "58.32", "current_subtotal_price": "54.00",
        "current_total_discounts": "0.00", "current_total_tax": "4.32", "current_total_price": "58.32",
        "total_price_set": money("58.32"),
        "total_outstanding": if paid { "0.00" } else { "58.32" },
        "financial_status": if paid { "paid" } else { "pending" },
        "fulfillment_status": null,
        "payment_gateway_names": ["bogus"],
        "token": token, "checkout_token": hex::encode(ulid::Ulid::new().to_bytes()),
        "order_status_url": format!("https://{SHOP_DOMAIN}/authenticate?order_id={order_id}&key={token}"),
        "buyer_accepts_marketing": false, "customer_locale": "en", "tags": "", "note": null,
        "note_attributes": [], "discount_codes": [], "refunds": [], "fulfillments": [],
        "tax_lines": [{"title": "CA State Tax", "price": "4.32", "rate": 0.08}],
        "shipping_lines": [shipping_line],
        "line_items": [line_item],
        "billing_address": address.clone(), "shipping_address": address,
        "customer": customer,
    });
    if let (Some(order), Value::Object(rest)) = (order.as_object_mut(), rest) {
        order.extend(rest);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::providers::testing::{self, header_map as headers, receive_sample, vectors, Received};

    fn shopify(secrets: &[&str]) -> Shopify {
        Shopify { name: "shopify".into(), secrets: testing::secrets(secrets) }
    }

    fn verify(p: &Shopify, h: &HeaderMap, body: &[u8]) -> Result<(), Refusal> {
        p.verify(&Inbound { headers: h, body, url: "", now_s: 0 })
    }

    const META: [(&str, &str); 5] = [
        ("content-type", JSON),
        (TOPIC_HEADER, "orders/create"),
        (WEBHOOK_ID_HEADER, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"),
        (SHOP_DOMAIN_HEADER, "example.myshopify.com"),
        (API_VERSION_HEADER, "2024-10"),
    ];

    #[test]
    fn published_vectors_verify() {
        for v in vectors("shopify") {
            let (secret, payload, header) = (v.str("secret"), v.str("payload"), v.str("header"));
            assert_eq!(sign(secret, payload.as_bytes()), header);
            verify(&shopify(&[secret]), &headers(&[(SIGNATURE_HEADER, header)]), payload.as_bytes()).unwrap();
        }
    }

    #[test]
    fn tampered_body_wrong_secret_and_missing_header_are_refused() {
        for v in vectors("shopify") {
            let (secret, payload, header) = (v.str("secret"), v.str("payload"), v.str("header"));
            let h = headers(&[(SIGNATURE_HEADER, header)]);
            let tampered = payload.replacen("bar", "baz", 1);
            let r = verify(&shopify(&[secret]), &h, tampered.as_bytes()).unwrap_err();
            assert_eq!(r.code, RefusalCode::InvalidSignature);
            let r = verify(&shopify(&["other_secret"]), &h, payload.as_bytes()).unwrap_err();
            assert_eq!(r.code, RefusalCode::InvalidSignature);
            assert!(!r.message.contains("other_secret"));
            // A hex digest of the same HMAC is not the base64 Shopify sends.
            let hex_digest = hex::encode(signing::mac::<HmacSha256>(secret.as_bytes(), [payload.as_bytes()]));
            let h = headers(&[(SIGNATURE_HEADER, &hex_digest)]);
            assert!(verify(&shopify(&[secret]), &h, payload.as_bytes()).is_err());
            let r = verify(&shopify(&[secret]), &HeaderMap::new(), payload.as_bytes()).unwrap_err();
            assert_eq!(r.code, RefusalCode::InvalidSignature);
        }
    }

    #[test]
    fn either_of_two_secrets_verifies() {
        let p = shopify(&["old", "new"]);
        for secret in ["old", "new"] {
            verify(&p, &headers(&[(SIGNATURE_HEADER, &sign(secret, b"{}"))]), b"{}").unwrap();
        }
        assert!(verify(&p, &headers(&[(SIGNATURE_HEADER, &sign("neither", b"{}"))]), b"{}").is_err());
    }

    #[test]
    fn deliveries_are_signed_with_the_first_secret() {
        let p = shopify(&["first", "second"]);
        let signed = p.sign_delivery("http://app/hook", Some(JSON), b"{\"id\":1}", 0);
        assert_eq!(signed.headers, vec![(SIGNATURE_HEADER, sign("first", b"{\"id\":1}"))]);
        let h = headers(&[(SIGNATURE_HEADER, &signed.headers[0].1)]);
        verify(&shopify(&["first"]), &h, b"{\"id\":1}").unwrap();
        assert!(verify(&shopify(&["second"]), &h, b"{\"id\":1}").is_err());
    }

    #[test]
    fn every_sample_signs_verifies_and_parses() {
        let p = shopify(&["s"]);
        let mut ids = std::collections::HashSet::new();
        for topic in p.sample_types() {
            let Received { sample, headers: h, parsed, .. } = receive_sample(&p, topic, 1_700_000_000);
            assert_eq!(parsed.event_type, *topic);
            assert_eq!(h[WEBHOOK_ID_HEADER].to_str().unwrap(), parsed.event_id);
            assert!(ids.insert(parsed.event_id));
            let order: Value = serde_json::from_slice(&sample.body).unwrap();
            let status = if *topic == "orders/paid" { "paid" } else { "pending" };
            assert_eq!(order["financial_status"], status);
        }
        assert!(p.sample(Some("orders/cancelled"), 0).unwrap_err().to_string().contains("orders/create"));
    }

    #[test]
    fn ids_and_topics_come_from_the_headers() {
        let p = shopify(&["s"]);
        let parse = |h: &HeaderMap, body: &[u8]| p.parse(&Inbound { headers: h, body, url: "", now_s: 0 });
        let h = headers(&META);
        assert_eq!(
            parse(&h, br#"{"id":1}"#).unwrap(),
            Parsed::one("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", "orders/create")
        );
        for (missing, shown) in REQUIRED_HEADERS {
            let mut h = h.clone();
            h.remove(missing);
            let r = parse(&h, br#"{"id":1}"#).unwrap_err();
            assert_eq!(r.code, RefusalCode::InvalidPayload);
            assert!(r.message.contains(shown), "{}", r.message);
        }
        for bad in [&b"[]"[..], b"\"x\"", b"{", b""] {
            assert_eq!(parse(&h, bad).unwrap_err().code, RefusalCode::InvalidPayload);
        }
    }

    #[test]
    fn only_json_passes_the_precheck() {
        let p = shopify(&["s"]);
        assert!(p.precheck(&headers(&[("content-type", JSON)])).is_ok());
        let r = p.precheck(&headers(&[("content-type", "application/xml")])).unwrap_err();
        assert_eq!(r.code, RefusalCode::UnsupportedMediaType);
    }

    #[test]
    fn config_gives_secrets_in_order_and_refuses_empty_ones() {
        let mut c = Settings::default();
        assert!(Shopify::from_settings("shop", &c).unwrap().secrets.is_empty());
        c.secrets = vec![Secret::new("b")];
        c.secret = Some(Secret::new("a"));
        let p = Shopify::from_settings("shop", &c).unwrap();
        assert_eq!(p.secrets.iter().map(Secret::expose).collect::<Vec<_>>(), ["a", "b"]);
        c.secret = Some(Secret::new(""));
        assert!(crate::providers::kind::said(&Shopify::from_settings("shop", &c).unwrap_err())
            .contains("providers.shop.secret "));
    }

    #[test]
    fn the_signature_header_is_listed_as_secret() {
        crate::providers::testing::assert_secret_headers_cover_signing(&shopify(&["a"]), &shopify(&["b"]));
    }
}
