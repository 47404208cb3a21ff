//! Fuzzes Standard Webhooks verification as a receiver runs it (`ciam_crm::webhook::Verifier`):
//! arbitrary `webhook-id`, `webhook-timestamp` and `webhook-signature` values and body, as text
//! and as HTTP headers, plus secret parsing.
//!
//! Checks beyond "no panic": a message signed with the secret verifies (any id, body and a
//! timestamp within the tolerance); an accepted message carries, among its signatures, exactly
//! the signature of its id, timestamp (as a number, as the reference libraries sign it) and
//! body; a message is never accepted with a timestamp outside the tolerance.
#![no_main]

use chrono::{DateTime, TimeZone, Utc};
use ciam_crm::webhook::{
    HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, Verifier, WebhookSecret, signature_header,
};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD_SECRET: &str = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 5, 17, 9, 30, 0)
        .single()
        .unwrap_or_default()
}

/// The input as fields separated by 0xFF: id, timestamp, signatures, body.
fn fields(data: &[u8]) -> (String, String, String, Vec<u8>) {
    let mut parts = data.splitn(4, |byte| *byte == 0xFF);
    let mut text = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (id, timestamp, signatures) = (text(), text(), text());
    let body = parts.next().unwrap_or_default().to_vec();
    (id, timestamp, signatures, body)
}

fuzz_target!(|data: &[u8]| {
    let (Ok(secret), Ok(old)) = (
        WebhookSecret::parse(SECRET),
        WebhookSecret::parse(OLD_SECRET),
    ) else {
        return;
    };
    let verifier = Verifier::new(vec![secret.clone(), old.clone()]);
    let now = now();
    let (id, timestamp, signatures, body) = fields(data);

    // Arbitrary values: accepted only when genuinely signed and fresh.
    if verifier
        .verify(&id, &timestamp, &signatures, &body, now)
        .is_ok()
    {
        let seconds: i64 = timestamp.trim().parse().unwrap_or(i64::MIN);
        assert!(
            (now.timestamp() - seconds).abs() <= 300,
            "accepted a stale timestamp {timestamp:?}"
        );
        let genuine = [&secret, &old]
            .iter()
            .filter_map(|key| key.sign(&id, seconds, &body).ok())
            .collect::<Vec<_>>();
        assert!(
            signatures
                .split_whitespace()
                .any(|candidate| genuine.iter().any(|sig| sig == candidate)),
            "accepted {signatures:?} for {id:?}"
        );
    }

    // The same values as HTTP headers (where they are valid header values).
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        (HEADER_ID, &id),
        (HEADER_TIMESTAMP, &timestamp),
        (HEADER_SIGNATURE, &signatures),
    ] {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    let _ = verifier.verify_headers(&headers, &body, now);

    // A genuine signature by either secret (as during a rotation) verifies, for any id and
    // body and a timestamp within the tolerance.
    let offset = i64::from(data.first().copied().unwrap_or(0)) * 2 - 255;
    let sent = now.timestamp() + offset;
    for keys in [vec![secret.clone()], vec![old.clone()], vec![old, secret]] {
        if let Ok(header) = signature_header(&keys, &id, sent, &body) {
            assert_eq!(
                verifier.verify(&id, &sent.to_string(), &header, &body, now),
                Ok(()),
                "a genuine signature was refused"
            );
        }
    }

    // Secret texts: parsing never panics, and a parsed secret prints back to one that parses
    // to the same key.
    if let Ok(parsed) = WebhookSecret::parse(&id) {
        assert_eq!(WebhookSecret::parse(&parsed.expose()).ok(), Some(parsed));
    }
});
