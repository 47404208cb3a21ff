//! Standard Webhooks signing and verification.

use chrono::{Duration, TimeZone, Utc};
use ciam_core::SeededRandom;
use ciam_crm::webhook::{SignatureError, Verifier, WebhookSecret, signature_header};

#[test]
fn matches_the_standard_webhooks_reference_vector() {
    // The example of the Standard Webhooks specification's reference libraries.
    let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    let timestamp = 1_614_265_330;
    let body = br#"{"test": 2432232314}"#;
    assert_eq!(
        secret.sign(id, timestamp, body).unwrap(),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    let now = Utc.timestamp_opt(timestamp, 0).unwrap();
    Verifier::new(vec![secret])
        .verify(
            id,
            &timestamp.to_string(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            body,
            now,
        )
        .unwrap();
}

#[test]
fn rotation_signs_with_every_secret_and_verifies_with_any() {
    let random = SeededRandom::new(1);
    let old = WebhookSecret::generate(&random);
    let new = WebhookSecret::generate(&random);
    assert!(old.expose().starts_with("whsec_"));
    assert_eq!(WebhookSecret::parse(&old.expose()).unwrap(), old);
    let now = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let ts = now.timestamp();
    let header = signature_header(&[new.clone(), old.clone()], "evt", ts, b"{}").unwrap();
    assert_eq!(header.split(' ').count(), 2);
    for secrets in [
        vec![old.clone()],
        vec![new.clone()],
        vec![new.clone(), old.clone()],
    ] {
        Verifier::new(secrets)
            .verify("evt", &ts.to_string(), &header, b"{}", now)
            .unwrap();
    }
    let stranger = WebhookSecret::generate(&random);
    assert_eq!(
        Verifier::new(vec![stranger]).verify("evt", &ts.to_string(), &header, b"{}", now),
        Err(SignatureError::NoMatchingSignature)
    );
}

#[test]
fn tampering_and_old_timestamps_are_refused() {
    let random = SeededRandom::new(2);
    let secret = WebhookSecret::generate(&random);
    let verifier = Verifier::new(vec![secret.clone()]);
    let now = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let ts = now.timestamp();
    let signature = secret.sign("evt", ts, b"{\"a\":1}").unwrap();
    let ok = |id: &str, ts: i64, body: &[u8], at| {
        verifier.verify(id, &ts.to_string(), &signature, body, at)
    };
    assert!(ok("evt", ts, b"{\"a\":1}", now).is_ok());
    assert_eq!(
        ok("evt", ts, b"{\"a\":2}", now),
        Err(SignatureError::NoMatchingSignature)
    );
    assert_eq!(
        ok("evt2", ts, b"{\"a\":1}", now),
        Err(SignatureError::NoMatchingSignature)
    );
    assert_eq!(
        ok("evt", ts + 1, b"{\"a\":1}", now + Duration::seconds(1)),
        Err(SignatureError::NoMatchingSignature)
    );
    // Five minutes either way is fine, more is not.
    assert!(ok("evt", ts, b"{\"a\":1}", now + Duration::seconds(300)).is_ok());
    assert_eq!(
        ok("evt", ts, b"{\"a\":1}", now + Duration::seconds(301)),
        Err(SignatureError::TimestampOutOfTolerance)
    );
    assert_eq!(
        ok("evt", ts, b"{\"a\":1}", now - Duration::seconds(301)),
        Err(SignatureError::TimestampOutOfTolerance)
    );
    assert_eq!(
        verifier.verify("evt", "yesterday", &signature, b"{}", now),
        Err(SignatureError::InvalidTimestamp)
    );
    assert_eq!(
        verifier.verify("evt", &ts.to_string(), "v2,abc v1,!!!", b"{}", now),
        Err(SignatureError::NoMatchingSignature)
    );
    assert!(WebhookSecret::parse("whsec_c2hvcnQ=").is_err());
    assert!(WebhookSecret::parse("whsec_***").is_err());
}
