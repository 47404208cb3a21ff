//! Issuing a signed SAML response for an already signed-in user, beside the raw RSA-2048
//! signing rate measured in the same run (the bar: at least 0.7 of raw).

#![expect(clippy::unwrap_used, reason = "benchmark setup fails loudly")]

use std::hint::black_box;
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, TimeZone, Utc};
use ciam_core::SeededRandom;
use ciam_core::ids::{IdentityId, OrganizationId, SessionId};
use ciam_core::sessions::AuthMethod;
use ciam_saml::SigningKey;
use ciam_saml::idp::{IdentityProvider, IdpConfig, KeyRing, ServiceProvider, SignedInUser};
use criterion::Criterion;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use uuid::Uuid;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

struct Setup {
    idp: IdentityProvider,
    sp: ServiceProvider,
    user: SignedInUser,
    raw_key: PKey<openssl::pkey::Private>,
}

fn setup() -> Setup {
    let key = SigningKey::from_pem(&fixture("idp.key"), &fixture("idp.crt")).unwrap();
    let idp = IdentityProvider::new(IdpConfig::new(
        "https://idp.smartplan.test/saml",
        "https://idp.smartplan.test/saml/sso",
        "https://idp.smartplan.test/saml/slo",
        KeyRing::new(key),
        b"pairwise-secret-for-benchmarks-only!!".to_vec(),
    ));
    let metadata = "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"https://app.test/sp\">\
         <md:SPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\
         <md:AssertionConsumerService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" \
         Location=\"https://app.test/acs\" index=\"0\"/></md:SPSSODescriptor></md:EntityDescriptor>";
    let mut sp = ServiceProvider::from_metadata(metadata).unwrap();
    sp.allow_idp_initiated = true;
    let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    let user = SignedInUser {
        identity_id: IdentityId::from_uuid(Uuid::from_u128(1)),
        email: "ada@customer.test".into(),
        given_name: Some("Ada".into()),
        family_name: Some("Lovelace".into()),
        organization_id: OrganizationId::from_uuid(Uuid::from_u128(2)),
        organization_name: "Customer".into(),
        roles: vec!["planner".into(), "viewer".into()],
        auth_methods: vec![AuthMethod::Pwd, AuthMethod::Otp],
        authenticated_at: now,
        session_id: SessionId::from_uuid(Uuid::from_u128(3)),
        session_expires_at: now + Duration::hours(8),
    };
    let raw_key = PKey::private_key_from_pem(fixture("idp.key").as_bytes()).unwrap();
    Setup {
        idp,
        sp,
        user,
        raw_key,
    }
}

fn issue(s: &Setup, random: &SeededRandom) -> String {
    let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    s.idp
        .respond_unsolicited(&s.sp, &s.user, None, now, random)
        .unwrap()
        .encoded()
}

fn raw_sign(key: &PKey<openssl::pkey::Private>, data: &[u8]) -> Vec<u8> {
    let mut signer = Signer::new(MessageDigest::sha256(), key).unwrap();
    signer.update(data).unwrap();
    signer.sign_to_vec().unwrap()
}

fn benches(c: &mut Criterion) {
    let s = setup();
    let random = SeededRandom::new(1);
    let data = vec![0x5a_u8; 1024];
    let mut group = c.benchmark_group("saml");
    group.bench_function("raw_rsa2048_sha256_sign", |b| {
        b.iter(|| raw_sign(&s.raw_key, black_box(&data)))
    });
    group.bench_function("issue_signed_response", |b| b.iter(|| issue(&s, &random)));
    group.finish();
}

fn group() {
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion);
}

/// Rate of `f` per second over about `for_`.
fn rate(for_: StdDuration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < for_ {
        f();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    group();
    let s = setup();
    let random = SeededRandom::new(2);
    let data = vec![0x5a_u8; 1024];
    let span = StdDuration::from_secs(3);
    // Interleave to share the machine's load fairly between both measurements.
    let raw_a = rate(span, || drop(raw_sign(&s.raw_key, &data)));
    let issue_a = rate(span, || drop(issue(&s, &random)));
    let raw_b = rate(span, || drop(raw_sign(&s.raw_key, &data)));
    let issue_b = rate(span, || drop(issue(&s, &random)));
    let raw = (raw_a + raw_b) / 2.0;
    let issued = (issue_a + issue_b) / 2.0;
    println!(
        "summary: raw rsa-2048 sign {raw:.0}/s, signed response {issued:.0}/s, ratio {:.2} (bar 0.70)",
        issued / raw
    );
    Criterion::default().configure_from_args().final_summary();
}
