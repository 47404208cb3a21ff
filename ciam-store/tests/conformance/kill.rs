//! Durability: a process doing a batch invitation of 10 000 rows on SQLite is killed with
//! SIGKILL part way. After reopening, every invitation is either fully there with its event and
//! outbox entry, or not there at all; no event or outbox entry exists for a change that did
//! not happen.
//!
//! The test re-executes its own test binary as the child (with [`CHILD_DB`] set); the child
//! runs the batch through the `Ciam` façade and the parent kills it once some chunks of the
//! batch are committed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code fails the test loudly"
)]

use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use ciam_core::Ciam;
use ciam_core::authz::Principal;
use ciam_core::clock::{FixedClock, SeededRandom};
use ciam_core::events::{DomainEvent, EventKind};
use ciam_core::ids::{InvitationId, OrganizationId};
use ciam_core::invitations::InvitationRequest;
use ciam_core::organizations::{Branding, OrgKind, OrgPolicy, OrgStatus, Organization};
use ciam_core::store::{ChangeSet, Store};
use ciam_store::SqlStore;
use sqlx::Connection as _;

use crate::sqlite::{fresh_path, url_of};

/// Set in the child: the database URL to write to.
const CHILD_DB: &str = "CIAM_STORE_KILL_TEST_DB";
/// Set in the child: the organization to invite into.
const CHILD_ORG: &str = "CIAM_STORE_KILL_TEST_ORG";
/// Rows in the batch.
const ROWS: usize = 10_000;
/// The façade commits a batch in chunks of this many rows.
const CHUNK: usize = 500;
const TEST_NAME: &str = "kill::a_killed_batch_invitation_leaves_whole_rows";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 9, 0, 0).unwrap()
}

fn organization(id: OrganizationId) -> Organization {
    Organization {
        id,
        version: 0,
        kind: OrgKind::Customer,
        status: OrgStatus::Active,
        name: "City Group, Inc.".to_owned(),
        parent: None,
        crm_account_id: Some("ACC-KILL".to_owned()),
        email_domains: BTreeSet::new(),
        join_code: None,
        branding: Branding::default(),
        policy: OrgPolicy::default(),
        created_at: now(),
        updated_at: now(),
    }
}

/// The child: invite 10 000 people in one batch, then exit.
async fn child(url: String, org: OrganizationId) {
    let store = SqlStore::open(&url).await.unwrap();
    let ciam = Ciam::builder()
        .store(Arc::new(store))
        .clock(Arc::new(FixedClock::new(now())))
        .build()
        .unwrap();
    let rows = (0..ROWS)
        .map(|i| InvitationRequest {
            email: format!("user{i:05}@citygroup.example"),
            given_name: Some("Test".to_owned()),
            family_name: Some(format!("User {i}")),
            business_roles: Vec::new(),
            mandates: BTreeSet::new(),
            staff_roles: BTreeSet::new(),
            contact_person: false,
            crm_lead_id: None,
        })
        .collect();
    let (_, outcomes) = ciam
        .invitations()
        .invite_batch(&Principal::System, org, rows)
        .await
        .unwrap();
    eprintln!(
        "child finished all {} rows before it was killed",
        outcomes.len()
    );
}

async fn count_invitations(url: &str) -> i64 {
    let Ok(mut conn) = sqlx::SqliteConnection::connect(url).await else {
        return 0;
    };
    let count = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM invitations")
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0);
    let _ = conn.close().await;
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_batch_invitation_leaves_whole_rows() {
    if let (Ok(url), Ok(org)) = (std::env::var(CHILD_DB), std::env::var(CHILD_ORG)) {
        child(url, org.parse().unwrap()).await;
        return;
    }

    // Parent: a database with one active organization.
    let path = fresh_path();
    let url = url_of(&path);
    let org = OrganizationId::generate(&SeededRandom::new(7));
    {
        let store = SqlStore::open(&url).await.unwrap();
        let mut changes = ChangeSet::new();
        changes.put(organization(org));
        store.commit(changes).await.unwrap();
        store.close().await;
    }

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DB, &url)
        .env(CHILD_ORG, org.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    // Kill it once at least two chunks are in, long before the end.
    let started = Instant::now();
    let mut seen = 0;
    while seen < 2 * CHUNK as i64 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the child made no progress"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child exited before it was killed: {status}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        seen = count_invitations(&url).await;
    }
    // A varying delay, so that runs kill the child at different points of its work (between
    // commits, in the middle of one).
    tokio::time::sleep(Duration::from_millis(u64::from(std::process::id() % 50))).await;
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was not killed: {status}");

    // Reopen and check every row.
    let store = SqlStore::open(&url).await.unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let invitation_ids: Vec<String> = sqlx::query_scalar("SELECT id FROM invitations")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let events: Vec<(i64, String)> = sqlx::query_as("SELECT sequence, data FROM events")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let outbox: Vec<i64> = sqlx::query_scalar("SELECT sequence FROM outbox")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let count = invitation_ids.len();
    eprintln!("killed after {seen} rows were seen; {count} invitations survived");
    assert!(count >= seen as usize, "committed invitations were lost");
    assert!(count < ROWS, "the child finished before it was killed");
    assert_eq!(count % CHUNK, 0, "a chunk of the batch was half written");

    // Every invitation is whole (decodes through the port) and has exactly one creation event.
    let mut created: HashMap<InvitationId, usize> = HashMap::new();
    for (_, data) in &events {
        let event: DomainEvent = serde_json::from_str(data).unwrap();
        if let EventKind::InvitationCreated { invitation, .. } = event.kind {
            *created.entry(invitation).or_default() += 1;
        }
    }
    for id in &invitation_ids {
        let id: InvitationId = id.parse().unwrap();
        let invitation = store.invitation(id).await.unwrap().expect("decodes");
        assert_eq!(invitation.organization, org);
        assert_eq!(invitation.version, 1);
        assert_eq!(
            created.get(&id),
            Some(&1),
            "invitation {id} has no creation event"
        );
    }
    // No event for an invitation that is not there.
    assert_eq!(
        created.len(),
        count,
        "an event exists without its invitation"
    );
    // The outbox holds exactly the committed events (nothing was delivered).
    let mut sequences: Vec<i64> = events.iter().map(|(sequence, _)| *sequence).collect();
    sequences.sort_unstable();
    let mut outbox = outbox;
    outbox.sort_unstable();
    assert_eq!(outbox, sequences, "outbox and events disagree");
    assert_eq!(store.outbox_depth().await.unwrap(), events.len() as u64);
    store.close().await;
}
