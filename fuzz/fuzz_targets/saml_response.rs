//! Fuzzes the SP's response consumption (decode, DOCTYPE refusal, parse, signature
//! verification and reduction, every check) with arbitrary documents.
#![no_main]

use base64::Engine;
use chrono::{TimeZone, Utc};
use ciam_saml::Certificate;
use ciam_saml::sp::{IdpConnection, InMemoryReplayCache, SpConfig};
use libfuzzer_sys::fuzz_target;

const IDP_CERT: &str = include_str!("../../ciam-saml/tests/fixtures/idp.crt");

fuzz_target!(|data: &[u8]| {
    let Ok(cert) = Certificate::from_pem(IDP_CERT) else {
        return;
    };
    let connection = IdpConnection {
        entity_id: "https://idp.smartplan.test/saml".into(),
        sso_url: "https://idp.smartplan.test/saml/sso".into(),
        signing_certificates: vec![cert],
        want_authn_requests_signed: false,
        allow_unsolicited: data.first().is_some_and(|b| b & 1 == 1),
        organization_id: None,
    };
    let config = SpConfig::new(
        "https://app.example.test/saml/metadata",
        "https://app.example.test/saml/acs",
    );
    let now = Utc
        .with_ymd_and_hms(2030, 5, 17, 9, 30, 0)
        .single()
        .unwrap_or_default();
    let cache = InMemoryReplayCache::new();
    // As a base64 form value of the fuzzed document, and as the raw form value itself.
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    let raw = String::from_utf8_lossy(data);
    for value in [encoded.as_str(), raw.as_ref()] {
        let _ = futures::executor::block_on(config.consume(
            &connection,
            value,
            Some("_req"),
            now,
            &cache,
        ));
    }
});
