//! Scale benchmark of `SqlStore`: seeds 1 000 000 identities in 100 000 organizations and
//! reports p50/p99 latencies of the queries the server needs most.
//!
//! ```text
//! cargo bench -p ciam-store --features postgres --bench scale
//! ```
//!
//! Environment: `CIAM_BENCH_IDENTITIES` (default 1 000 000), `CIAM_BENCH_ORGS` (default
//! 100 000), `CIAM_BENCH_SAMPLES` (default 2 000), `CIAM_BENCH_BACKENDS` (default
//! `sqlite,postgres`), `CIAM_TEST_POSTGRES_URL` (the PostgreSQL server; a database is created
//! for the run and dropped afterwards; without it PostgreSQL is skipped), `CIAM_BENCH_DIR`
//! (where the SQLite file goes; default the system temp dir; removed afterwards).
//!
//! The first 100 organizations are large (a tenth of the identities between them, see `org_of`),
//! so that a page of 50 members is a real page; the rest share the remaining identities.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "a benchmark binary: failures abort loudly"
)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use ciam_core::authz::Actor;
use ciam_core::clock::{RandomSource, SeededRandom};
use ciam_core::contact::{EmailAddress, PersonName};
use ciam_core::events::{DomainEvent, EventKind};
use ciam_core::identities::{Identity, IdentityStatus, Membership, MembershipStatus};
use ciam_core::ids::{EventId, IdentityId, InvitationId, MembershipId, OrganizationId};
use ciam_core::invitations::{Invitation, InvitationKind, InvitationStatus};
use ciam_core::organizations::{Branding, OrgKind, OrgPolicy, OrgStatus, Organization};
use ciam_core::secrets::TokenHash;
use ciam_core::store::{ChangeSet, PageRequest, Store as _};
use ciam_store::{SqlStore, SqlStoreOptions};

/// Organizations that hold many members each.
const LARGE_ORGS: usize = 100;

struct Config {
    identities: usize,
    orgs: usize,
    samples: usize,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

/// A small deterministic generator for picking targets.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % (n as u64)) as usize
    }
}

fn email_of(n: usize) -> String {
    format!("user{n:07}@example.com")
}

/// Identity `n`'s organization: 10 % of the identities in the large organizations, the rest
/// spread over the others.
fn org_of(n: usize, config: &Config) -> usize {
    let in_large = config.identities / 10;
    if n < in_large {
        n % LARGE_ORGS
    } else {
        LARGE_ORGS + (n % (config.orgs - LARGE_ORGS))
    }
}

struct Ids {
    orgs: Vec<OrganizationId>,
    identities: Vec<IdentityId>,
}

async fn seed(store: &SqlStore, config: &Config) -> (Ids, Duration) {
    let random = SeededRandom::new(42);
    let orgs: Vec<OrganizationId> = (0..config.orgs)
        .map(|_| OrganizationId::generate(&random))
        .collect();
    let identities: Vec<IdentityId> = (0..config.identities)
        .map(|_| IdentityId::generate(&random))
        .collect();
    let started = Instant::now();
    let org_chunk = 1_000;
    for (chunk_index, chunk) in orgs.chunks(org_chunk).enumerate() {
        let mut changes = ChangeSet::new();
        for (i, id) in chunk.iter().enumerate() {
            let n = chunk_index * org_chunk + i;
            changes.put(Organization {
                id: *id,
                version: 0,
                kind: OrgKind::Customer,
                status: OrgStatus::Active,
                name: format!("Organization {n:06}"),
                parent: None,
                crm_account_id: Some(format!("ACC-{n:06}")),
                email_domains: BTreeSet::new(),
                join_code: None,
                branding: Branding::default(),
                policy: OrgPolicy::default(),
                created_at: t0(),
                updated_at: t0(),
            });
        }
        store.commit(changes).await.unwrap();
    }
    let chunk = 1_000;
    for start in (0..config.identities).step_by(chunk) {
        let end = (start + chunk).min(config.identities);
        let mut changes = ChangeSet::new();
        for (n, id) in identities.iter().enumerate().take(end).skip(start) {
            let at = t0() + chrono::Duration::seconds(n as i64);
            changes.put(Identity {
                id: *id,
                version: 0,
                email: EmailAddress::parse(&email_of(n)).unwrap(),
                email_verified: true,
                phone: None,
                phone_verified: false,
                name: PersonName::parse(&format!("Given{n}"), &format!("Family{n}")).unwrap(),
                status: IdentityStatus::Active,
                crm_contact_id: Some(format!("CON-{n:07}")),
                pending_email: None,
                pending_phone: None,
                disabled_reason: None,
                created_at: at,
                updated_at: at,
            });
        }
        for (n, id) in identities.iter().enumerate().take(end).skip(start) {
            let at = t0() + chrono::Duration::seconds(n as i64);
            changes.put(Membership {
                id: MembershipId::generate(&random),
                version: 0,
                identity: *id,
                organization: orgs[org_of(n, config)],
                status: MembershipStatus::Active,
                business_roles: BTreeSet::new(),
                mandates: BTreeSet::new(),
                staff_roles: BTreeSet::new(),
                crm_lead_id: None,
                created_at: at,
                updated_at: at,
            });
        }
        store.commit(changes).await.unwrap();
        if start % 100_000 == 0 && start > 0 {
            eprintln!("  seeded {start} identities in {:.1?}", started.elapsed());
        }
    }
    (Ids { orgs, identities }, started.elapsed())
}

struct Stats {
    name: &'static str,
    p50: Duration,
    p99: Duration,
    samples: usize,
}

fn stats(name: &'static str, mut times: Vec<Duration>) -> Stats {
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    Stats {
        name,
        p50: at(0.50),
        p99: at(0.99),
        samples: times.len(),
    }
}

async fn measure(store: &SqlStore, ids: &Ids, config: &Config) -> Vec<Stats> {
    let mut lcg = Lcg(7);
    let mut results = Vec::new();

    let mut times = Vec::with_capacity(config.samples);
    for _ in 0..config.samples {
        let n = lcg.below(config.identities);
        let email = EmailAddress::parse(&email_of(n).to_uppercase()).unwrap();
        let started = Instant::now();
        let found = store.identity_by_email(&email).await.unwrap();
        times.push(started.elapsed());
        assert_eq!(found.map(|i| i.id), Some(ids.identities[n]));
    }
    results.push(stats("lookup identity by email", times));

    let mut times = Vec::with_capacity(config.samples);
    for i in 0..config.samples {
        let org = ids.orgs[lcg.below(LARGE_ORGS)];
        // Half first pages, half pages after a cursor in the middle of the organization.
        let after = (i % 2 == 1).then(|| email_of(lcg.below(config.identities / 10 / 2)));
        let started = Instant::now();
        let page = store
            .members_of_organization(org, PageRequest { after, limit: 50 })
            .await
            .unwrap();
        times.push(started.elapsed());
        assert!(!page.items.is_empty());
    }
    results.push(stats("page of 50 members (keyset)", times));

    let mut times = Vec::with_capacity(config.samples);
    for _ in 0..config.samples {
        // A prefix matching 10 addresses.
        let n = lcg.below(config.identities / 10);
        let prefix = format!("user{:06}", n);
        let started = Instant::now();
        let found = store.search_identities(&prefix, 20).await.unwrap();
        times.push(started.elapsed());
        assert!(!found.is_empty());
    }
    results.push(stats("search by email prefix (and name)", times));

    let random = SeededRandom::new(99);
    let mut times = Vec::with_capacity(config.samples);
    for i in 0..config.samples.min(1_000) {
        let org = ids.orgs[lcg.below(config.orgs)];
        let at = t0();
        let id = InvitationId::generate(&random);
        let mut token = [0u8; 32];
        random.fill(&mut token);
        let email = EmailAddress::parse(&format!("invitee{i}@bench.example")).unwrap();
        let mut changes = ChangeSet::new();
        changes.event(DomainEvent {
            id: EventId::generate(&random),
            at,
            actor: Actor::System,
            organization: Some(org),
            identity: None,
            kind: EventKind::InvitationCreated {
                invitation: id,
                email: email.to_string(),
                status: InvitationStatus::Pending,
                crm_lead_id: None,
            },
        });
        changes.put(Invitation {
            id,
            version: 0,
            organization: org,
            email,
            name: None,
            kind: InvitationKind::Member,
            business_roles: BTreeSet::new(),
            mandates: BTreeSet::new(),
            staff_roles: BTreeSet::new(),
            status: InvitationStatus::Pending,
            token_hash: Some(TokenHash::from_bytes(token)),
            expires_at: at + chrono::Duration::days(14),
            invited_by: Actor::System,
            batch: None,
            accepted_by: None,
            created_at: at,
            updated_at: at,
        });
        let started = Instant::now();
        store.commit(changes).await.unwrap();
        times.push(started.elapsed());
    }
    results.push(stats("commit one invitation (+ event, outbox)", times));
    results
}

fn report(backend: &str, seed_time: Duration, config: &Config, results: &[Stats]) {
    println!();
    println!(
        "## {backend}: {} identities in {} organizations, seeded in {:.1} s",
        config.identities,
        config.orgs,
        seed_time.as_secs_f64()
    );
    println!();
    println!("| operation | p50 | p99 | samples |");
    println!("|---|---:|---:|---:|");
    for s in results {
        println!(
            "| {} | {:.3} ms | {:.3} ms | {} |",
            s.name,
            s.p50.as_secs_f64() * 1000.0,
            s.p99.as_secs_f64() * 1000.0,
            s.samples
        );
    }
}

async fn run(backend: &str, url: &str, config: &Config) {
    eprintln!("{backend}: seeding...");
    let store = SqlStore::open_with(SqlStoreOptions::new(url).max_connections(4))
        .await
        .unwrap();
    let (ids, seed_time) = seed(&store, config).await;
    eprintln!("{backend}: seeded in {seed_time:.1?}; measuring...");
    // Statistics for the planner after the bulk load, as an operator would after an import.
    let _ = store.analyze().await;
    let results = measure(&store, &ids, config).await;
    report(backend, seed_time, config, &results);
    store.close().await;
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let config = Config {
        identities: env_usize("CIAM_BENCH_IDENTITIES", 1_000_000),
        orgs: env_usize("CIAM_BENCH_ORGS", 100_000).max(LARGE_ORGS + 1),
        samples: env_usize("CIAM_BENCH_SAMPLES", 2_000).max(1),
    };
    let backends =
        std::env::var("CIAM_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        if backends.contains("sqlite") {
            let dir = std::env::var("CIAM_BENCH_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|_| std::env::temp_dir());
            let path = dir.join(format!("ciam-bench-{}.db", std::process::id()));
            run("SQLite", &format!("sqlite:{}", path.display()), &config).await;
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
        if backends.contains("postgres") {
            postgres(&config).await;
        }
    });
}

#[cfg(feature = "postgres")]
async fn postgres(config: &Config) {
    use sqlx::Connection as _;
    let Ok(server) = std::env::var("CIAM_TEST_POSTGRES_URL") else {
        eprintln!("PostgreSQL skipped: set CIAM_TEST_POSTGRES_URL");
        return;
    };
    let name = format!("ciam_bench_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let base = server
        .rsplit_once('/')
        .map_or(server.as_str(), |(base, _)| base);
    run("PostgreSQL", &format!("{base}/{name}"), config).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_: &Config) {
    eprintln!("PostgreSQL skipped: build with --features postgres");
}
