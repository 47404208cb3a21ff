//! Password verification rate: raw argon2id against `PasswordHasher::verify` (blocking pool,
//! semaphore), both at the OWASP parameters, in the same run.
//!
//! `cargo bench -p ciam-core --bench password_verify`
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmark harness"
)]

use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use ciam_core::SeededRandom;
use ciam_core::credentials::{Password, PasswordHasher, PasswordParams, Verification};
use criterion::{Criterion, criterion_group, criterion_main};

fn verify(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let random = SeededRandom::new(1);
    let hasher = PasswordHasher::new(PasswordParams::OWASP).unwrap();
    let password = Password::new("correct horse battery staple");
    let stored = runtime.block_on(hasher.hash(&password, &random)).unwrap();
    let owasp = PasswordParams::OWASP;
    let raw = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(owasp.memory_kib, owasp.iterations, owasp.parallelism, None).unwrap(),
    );
    let parsed = PasswordHash::new(stored.as_str()).unwrap();

    let mut group = c.benchmark_group("password_verify_owasp");
    group.sample_size(20);
    group.bench_function("raw_argon2id", |b| {
        b.iter(|| {
            raw.verify_password(password.expose().as_bytes(), &parsed)
                .expect("matches")
        })
    });
    group.bench_function("password_hasher", |b| {
        b.iter(|| {
            let result = runtime
                .block_on(hasher.verify(&password, &stored, &random))
                .unwrap();
            assert_eq!(result, Verification::Match);
        })
    });
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
