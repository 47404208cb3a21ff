//! The physical limits measured in the same run: argon2id verifications and RSA-2048
//! signatures per second on every core, and the in-memory authorization decision.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use ciam_core::authz::{Action, OrgGrant, OrgTarget, Principal, Target, UserPrincipal, authorize};
use ciam_core::credentials::PasswordParams;
use ciam_core::identities::Mandate;
use ciam_core::ids::{IdentityId, OrganizationId, ServiceId};
use ciam_core::organizations::OrgKind;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use uuid::Uuid;

use crate::{BenchError, Result};

/// Runs `work` on `threads` threads until `duration` has passed; operations per second.
fn rate_on_threads(
    threads: usize,
    duration: Duration,
    work: impl Fn() -> Result<()> + Sync,
) -> Result<f64> {
    let started = Instant::now();
    let counts = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = 0u64;
                    while started.elapsed() < duration {
                        work()?;
                        done += 1;
                    }
                    Ok::<_, BenchError>(done)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .map_err(|_| BenchError::Step("a measuring thread panicked".into()))?
            })
            .collect::<Result<Vec<u64>>>()
    })?;
    Ok(counts.iter().sum::<u64>() as f64 / started.elapsed().as_secs_f64())
}

/// argon2id at the default (OWASP) parameters, one hash per thread at a time, each thread
/// reusing its memory: the fastest a verifier can be on this machine.
pub fn argon2id_rate(threads: usize, duration: Duration) -> Result<f64> {
    let defaults = PasswordParams::OWASP;
    let params = Params::new(
        defaults.memory_kib,
        defaults.iterations,
        defaults.parallelism,
        Some(32),
    )
    .map_err(|error| BenchError::Step(format!("argon2 parameters: {error}")))?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    thread_local! {
        static BLOCKS: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    rate_on_threads(threads, duration, || {
        BLOCKS.with(|blocks| {
            let mut blocks = blocks.borrow_mut();
            blocks.resize(params.block_count(), Block::default());
            let mut out = [0u8; 32];
            argon2
                .hash_password_into_with_memory(
                    b"correct horse battery staple",
                    b"sixteen byte salt",
                    &mut out,
                    &mut blocks[..],
                )
                .map_err(|error| BenchError::Step(format!("argon2: {error}")))?;
            black_box(out);
            Ok(())
        })
    })
}

/// RSA-2048 PKCS#1 v1.5 signatures over SHA-256 with the IdP's own key (OpenSSL), one per
/// thread at a time.
pub fn rsa_rate(key_pem: &Path, threads: usize, duration: Duration) -> Result<f64> {
    let pem = std::fs::read(key_pem).map_err(BenchError::io("reading the IdP key"))?;
    let key = PKey::private_key_from_pem(&pem)
        .map_err(|error| BenchError::Step(format!("IdP key: {error}")))?;
    // About the size of a SAML SignedInfo.
    let message = vec![b'x'; 600];
    rate_on_threads(threads, duration, || {
        let mut signer = Signer::new(MessageDigest::sha256(), &key)
            .map_err(|error| BenchError::Step(format!("signer: {error}")))?;
        let signature = signer
            .sign_oneshot_to_vec(&message)
            .map_err(|error| BenchError::Step(format!("signing: {error}")))?;
        black_box(signature);
        Ok(())
    })
}

fn org(n: u128) -> OrganizationId {
    OrganizationId::from_uuid(Uuid::from_u128(n))
}

fn service(n: u128) -> ServiceId {
    ServiceId::from_uuid(Uuid::from_u128(0x5e00 + n))
}

/// Nanoseconds per [`authorize`] call: a contact person (OrgAdmin in the first of three
/// organizations) inviting with business roles and a mandate into a sub-sub-organization;
/// the median of 21 batches.
pub fn decision_nanos() -> f64 {
    let covered: BTreeSet<ServiceId> = (0..3).map(service).collect();
    let principal = Principal::User(UserPrincipal {
        identity: IdentityId::from_uuid(Uuid::from_u128(1)),
        active: true,
        staff_roles: BTreeSet::new(),
        grants: (0..3)
            .map(|n| OrgGrant {
                organization: org(100 + n),
                mandates: if n == 0 {
                    BTreeSet::from([Mandate::OrgAdmin])
                } else {
                    BTreeSet::new()
                },
                covered_services: covered.clone(),
            })
            .collect(),
    });
    let action = Action::InviteMember {
        role_services: BTreeSet::from([service(1), service(2)]),
        mandates: BTreeSet::from([Mandate::UserManager]),
    };
    let target = Target::Organization(OrgTarget {
        id: org(900),
        kind: OrgKind::Customer,
        ancestors: vec![org(800), org(100)],
    });
    const CALLS: u32 = 200_000;
    let mut batches: Vec<f64> = (0..21)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..CALLS {
                black_box(authorize(
                    black_box(&principal),
                    black_box(&action),
                    black_box(&target),
                ));
            }
            started.elapsed().as_nanos() as f64 / f64::from(CALLS)
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    batches[batches.len() / 2]
}
