//! Fuzzes the IdP's AuthnRequest handling on both bindings: POST (base64), Redirect (deflate
//! plus detached signature), and arbitrary raw query strings.
#![no_main]

use std::io::Write;

use base64::Engine;
use chrono::{TimeZone, Utc};
use ciam_saml::SigningKey;
use ciam_saml::idp::{
    IdentityProvider, IdpConfig, InMemoryServiceProviderRegistry, KeyRing, ServiceProvider,
};
use libfuzzer_sys::fuzz_target;

const IDP_KEY: &str = include_str!("../../ciam-saml/tests/fixtures/idp.key");
const IDP_CERT: &str = include_str!("../../ciam-saml/tests/fixtures/idp.crt");
const SP_METADATA: &str = "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" \
    entityID=\"https://app.example.test/saml/metadata\"><md:SPSSODescriptor \
    protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\"><md:AssertionConsumerService \
    Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" \
    Location=\"https://app.example.test/saml/acs\" index=\"0\"/></md:SPSSODescriptor></md:EntityDescriptor>";

fuzz_target!(|data: &[u8]| {
    let Ok(key) = SigningKey::from_pem(IDP_KEY, IDP_CERT) else {
        return;
    };
    let idp = IdentityProvider::new(IdpConfig::new(
        "https://idp.smartplan.test/saml",
        "https://idp.smartplan.test/saml/sso",
        "https://idp.smartplan.test/saml/slo",
        KeyRing::new(key),
        b"fuzz-pairwise-secret".to_vec(),
    ));
    let registry = InMemoryServiceProviderRegistry::new();
    let Ok(sp) = ServiceProvider::from_metadata(SP_METADATA) else {
        return;
    };
    let now = Utc
        .with_ymd_and_hms(2030, 5, 17, 9, 30, 0)
        .single()
        .unwrap_or_default();
    futures::executor::block_on(async {
        registry.put(sp);
        let b64 = base64::engine::general_purpose::STANDARD;
        let _ = idp
            .receive_post(&registry, &b64.encode(data), Some("rs"), now)
            .await;
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = enc.write_all(data);
        if let Ok(deflated) = enc.finish() {
            let query = format!(
                "SAMLRequest={}&RelayState=x",
                b64.encode(deflated)
                    .replace('+', "%2B")
                    .replace('/', "%2F")
                    .replace('=', "%3D")
            );
            let _ = idp.receive_redirect(&registry, &query, now).await;
            let _ = idp.receive_logout_redirect(&registry, &query, now).await;
        }
        let raw = String::from_utf8_lossy(data);
        let _ = idp.receive_redirect(&registry, &raw, now).await;
        // And the bytes as SP metadata.
        let _ = ServiceProvider::from_metadata(&raw);
    });
});
