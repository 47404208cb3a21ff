//! Commits: versions, atomicity, unique fields, events.

use std::sync::Arc;

use ciam_core::store::{
    ChangeSet, EventQuery, Record, RecordRef, Store, StoreErrorKind, unique_fields,
};

use super::builders::{Fixture, at, domain, email};
use super::{Outcome, ensure, ensure_eq, expect_error};

/// A change set writing `records`.
pub(crate) fn put(records: impl IntoIterator<Item = Record>) -> ChangeSet {
    ChangeSet {
        records: records.into_iter().collect(),
        ..ChangeSet::new()
    }
}

fn all_events() -> EventQuery {
    EventQuery {
        limit: 1000,
        ..EventQuery::default()
    }
}

pub(crate) async fn commit_inserts_every_record_kind(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(1);
    let org = f.organization("Acme");
    let contract = f.contract(org.id, "C-1");
    let person = f.identity("Ann.Lee@acme.example", "Ann", "Lee")?;
    let membership = f.membership(person.id, org.id);
    let service = f.service("planner");
    let role = f.business_role("energy-manager");
    let invitation = f.invitation(org.id, "new@acme.example", at(0))?;
    let registration = f.org_registration("Newco", at(0))?;
    let join = f.join_request(org.id, "joiner@acme.example", at(0))?;
    let credential = f.password(person.id, at(0))?;
    let session = f.session(person.id, at(0));
    let setting = f.setting(
        ciam_core::settings::SettingKind::IdentityProvider,
        "https://idp.acme.example",
        Some(org.id),
    )?;
    store
        .commit(put([
            org.clone().into(),
            person.clone().into(),
            service.clone().into(),
            role.clone().into(),
        ]))
        .await?;
    store
        .commit(put([
            contract.clone().into(),
            membership.clone().into(),
            invitation.clone().into(),
            registration.clone().into(),
            join.clone().into(),
            credential.clone().into(),
            session.clone().into(),
            setting.clone().into(),
        ]))
        .await?;

    macro_rules! read_back {
        ($record:ident, $read:expr) => {{
            let mut expected = $record.clone();
            expected.version = 1;
            ensure_eq!(
                $read,
                Some(expected),
                "{} read back by id",
                stringify!($record)
            );
        }};
    }
    read_back!(org, store.organization(org.id).await?);
    read_back!(contract, store.contract(contract.id).await?);
    read_back!(person, store.identity(person.id).await?);
    read_back!(membership, store.membership(membership.id).await?);
    read_back!(service, store.service(service.id).await?);
    read_back!(role, store.business_role(role.id).await?);
    read_back!(invitation, store.invitation(invitation.id).await?);
    read_back!(registration, store.org_registration(registration.id).await?);
    read_back!(join, store.join_request(join.id).await?);
    read_back!(
        credential,
        store
            .credentials_of_identity(person.id)
            .await?
            .into_iter()
            .next()
    );
    read_back!(session, store.session_by_token(&session.token_hash).await?);
    read_back!(setting, store.setting(setting.kind, &setting.key).await?);
    Ok(())
}

pub(crate) async fn commit_updates_with_the_read_version(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(2);
    let org = f.organization("Acme");
    store.commit(put([org.clone().into()])).await?;
    let mut read = store
        .organization(org.id)
        .await?
        .ok_or_else(|| super::Fail("organization not stored".to_owned()))?;
    ensure_eq!(read.version, 1, "version after insert");
    read.name = "Acme Renamed".to_owned();
    read.updated_at = at(5);
    store.commit(put([read.clone().into()])).await?;
    let again = store.organization(org.id).await?;
    let mut expected = read.clone();
    expected.version = 2;
    ensure_eq!(again, Some(expected.clone()), "organization after update");
    expected.name = "Acme Third".to_owned();
    store.commit(put([expected.clone().into()])).await?;
    ensure_eq!(
        store
            .organization(org.id)
            .await?
            .map(|o| (o.version, o.name)),
        Some((3, "Acme Third".to_owned())),
        "organization after a second update"
    );
    Ok(())
}

pub(crate) async fn commit_rejects_a_stale_version(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(3);
    let person = f.identity("ann@acme.example", "Ann", "Lee")?;
    store.commit(put([person.clone().into()])).await?;
    let mut first = person.clone();
    first.version = 1;
    let mut second = first.clone();
    first.name.given = "First".to_owned();
    second.name.given = "Second".to_owned();
    store.commit(put([first.clone().into()])).await?;
    expect_error(
        store.commit(put([second.into()])).await,
        StoreErrorKind::Conflict,
        None,
        "update from a version that was already replaced",
    )?;
    let stored = store.identity(person.id).await?;
    ensure_eq!(
        stored.map(|i| (i.version, i.name.given)),
        Some((2, "First".to_owned())),
        "the first update stays, the stale one is not applied"
    );
    let mut ahead = first.clone();
    ahead.version = 7;
    expect_error(
        store.commit(put([ahead.into()])).await,
        StoreErrorKind::Conflict,
        None,
        "update from a version ahead of the stored one",
    )?;
    let mut zero = first;
    zero.version = 0;
    expect_error(
        store.commit(put([zero.into()])).await,
        StoreErrorKind::Conflict,
        None,
        "version 0 for a stored record",
    )
}

pub(crate) async fn commit_rejects_a_new_record_twice(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(4);
    let org = f.organization("Acme");
    store.commit(put([org.clone().into()])).await?;
    let mut renamed = org.clone();
    renamed.name = "Other".to_owned();
    expect_error(
        store.commit(put([renamed.into()])).await,
        StoreErrorKind::Conflict,
        None,
        "inserting a record whose id exists",
    )?;
    ensure_eq!(
        store
            .organization(org.id)
            .await?
            .map(|o| (o.version, o.name)),
        Some((1, "Acme".to_owned())),
        "the first record is kept"
    );
    let other = f.organization("Twice");
    expect_error(
        store
            .commit(put([other.clone().into(), other.clone().into()]))
            .await,
        StoreErrorKind::Conflict,
        None,
        "the same new record twice in one change set",
    )?;
    ensure_eq!(store.organization(other.id).await?, None, "nothing written");
    Ok(())
}

pub(crate) async fn commit_rejects_an_update_of_a_missing_record(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(5);
    let mut org = f.organization("Ghost");
    org.version = 3;
    expect_error(
        store.commit(put([org.clone().into()])).await,
        StoreErrorKind::Conflict,
        None,
        "updating a record that was never stored",
    )?;
    ensure_eq!(store.organization(org.id).await?, None, "nothing written");
    Ok(())
}

pub(crate) async fn commit_deletes_with_the_read_version(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(6);
    let person = f.identity("ann@acme.example", "Ann", "Lee")?;
    let credential = f.password(person.id, at(0))?;
    let session = f.session(person.id, at(0));
    store.commit(put([person.clone().into()])).await?;
    store
        .commit(put([credential.clone().into(), session.clone().into()]))
        .await?;

    let mut stale = ChangeSet::new();
    stale.delete(RecordRef::Session(session.id, 2));
    expect_error(
        store.commit(stale).await,
        StoreErrorKind::Conflict,
        None,
        "deleting with a version that is not the stored one",
    )?;
    ensure!(
        store.session_by_token(&session.token_hash).await?.is_some(),
        "a failed deletion must keep the session"
    );

    let mut changes = ChangeSet::new();
    changes
        .delete(RecordRef::Session(session.id, 1))
        .delete(RecordRef::Credential(credential.id, 1));
    store.commit(changes).await?;
    ensure_eq!(
        store.session_by_token(&session.token_hash).await?,
        None,
        "session after deletion"
    );
    ensure_eq!(
        store.credentials_of_identity(person.id).await?,
        Vec::new(),
        "credentials after deletion"
    );

    let mut again = ChangeSet::new();
    again.delete(RecordRef::Credential(credential.id, 1));
    expect_error(
        store.commit(again).await,
        StoreErrorKind::Conflict,
        None,
        "deleting a record that no longer exists",
    )?;

    // A deleted record may be written again as new.
    store.commit(put([session.clone().into()])).await?;
    ensure_eq!(
        store
            .session_by_token(&session.token_hash)
            .await?
            .map(|s| s.version),
        Some(1),
        "a session stored again after deletion"
    );
    Ok(())
}

pub(crate) async fn commit_is_all_or_nothing(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(7);
    let existing = f.identity("taken@acme.example", "Tom", "Taken")?;
    let org = f.organization("Acme");
    store
        .commit(put([existing.clone().into(), org.clone().into()]))
        .await?;
    let depth = store.outbox_depth().await?;
    let events_before = store.events(all_events()).await?;

    // A unique clash in the middle of the change set.
    let new_org = f.organization("Newco");
    let newcomer = f.identity("newcomer@acme.example", "Nina", "New")?;
    let clash = f.identity("TAKEN@acme.example", "Tim", "Clash")?;
    let after = f.identity("after@acme.example", "Al", "After")?;
    let mut renamed = org.clone();
    renamed.version = 1;
    renamed.name = "Acme Changed".to_owned();
    let mut changes = put([
        new_org.clone().into(),
        renamed.clone().into(),
        newcomer.clone().into(),
        clash.clone().into(),
        after.clone().into(),
    ]);
    changes.event(f.event(Some(new_org.id), None, at(1)));
    changes.event(f.event(None, Some(newcomer.id), at(1)));
    expect_error(
        store.commit(changes).await,
        StoreErrorKind::Unique,
        Some(unique_fields::IDENTITY_EMAIL),
        "a change set with a unique clash in the middle",
    )?;
    ensure_eq!(
        store.organization(new_org.id).await?,
        None,
        "new organization before the clash"
    );
    ensure_eq!(
        store.identity(newcomer.id).await?,
        None,
        "new identity before the clash"
    );
    ensure_eq!(
        store.identity(clash.id).await?,
        None,
        "the clashing identity"
    );
    ensure_eq!(
        store.identity(after.id).await?,
        None,
        "new identity after the clash"
    );
    ensure_eq!(
        store
            .organization(org.id)
            .await?
            .map(|o| (o.version, o.name)),
        Some((1, "Acme".to_owned())),
        "updated organization before the clash"
    );
    ensure_eq!(
        store.outbox_depth().await?,
        depth,
        "outbox depth after a failed commit"
    );
    ensure_eq!(
        store.events(all_events()).await?,
        events_before.clone(),
        "audit log after a failed commit"
    );

    // A stale version at the end of the change set.
    let mut stale = existing.clone();
    stale.version = 5;
    let mut changes = put([new_org.clone().into(), renamed.clone().into(), stale.into()]);
    changes.event(f.event(Some(new_org.id), None, at(2)));
    expect_error(
        store.commit(changes).await,
        StoreErrorKind::Conflict,
        None,
        "a change set with a stale version at the end",
    )?;
    ensure_eq!(
        store.organization(new_org.id).await?,
        None,
        "new organization before the conflict"
    );
    ensure_eq!(
        store.organization(org.id).await?.map(|o| o.version),
        Some(1),
        "updated organization before the conflict"
    );

    // A failing deletion after good writes.
    let mut changes = put([new_org.clone().into()]);
    changes.delete(RecordRef::Session(
        ciam_core::ids::SessionId::from_uuid(existing.id.as_uuid()),
        1,
    ));
    changes.event(f.event(Some(new_org.id), None, at(3)));
    expect_error(
        store.commit(changes).await,
        StoreErrorKind::Conflict,
        None,
        "a change set deleting a missing record",
    )?;
    ensure_eq!(
        store.organization(new_org.id).await?,
        None,
        "new organization before the failed deletion"
    );
    ensure_eq!(
        store.outbox_depth().await?,
        depth,
        "outbox depth after failed commits"
    );
    ensure_eq!(
        store.events(all_events()).await?,
        events_before,
        "audit log after failed commits"
    );

    // The same change set without the problem goes through whole.
    let mut changes = put([
        new_org.clone().into(),
        renamed.into(),
        newcomer.clone().into(),
    ]);
    changes.event(f.event(Some(new_org.id), None, at(4)));
    store.commit(changes).await?;
    ensure!(
        store.organization(new_org.id).await?.is_some(),
        "new organization after a good commit"
    );
    ensure!(
        store.identity(newcomer.id).await?.is_some(),
        "new identity after a good commit"
    );
    ensure_eq!(
        store.outbox_depth().await?,
        depth + 1,
        "outbox depth after a good commit"
    );
    Ok(())
}

pub(crate) async fn commit_writes_events_in_order(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(8);
    let org = f.organization("Acme");
    let first = f.event(Some(org.id), None, at(1));
    let second = f.event(Some(org.id), None, at(1));
    let third = f.event(None, None, at(2));
    let mut changes = put([org.clone().into()]);
    changes.event(first.clone()).event(second.clone());
    store.commit(changes).await?;
    let mut only_events = ChangeSet::new();
    only_events.event(third.clone());
    store.commit(only_events).await?;

    let log = store.events(all_events()).await?;
    ensure_eq!(
        log.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        vec![third.clone(), second.clone(), first.clone()],
        "audit log, newest first"
    );
    let sequences: Vec<i64> = log.iter().rev().map(|e| e.sequence).collect();
    ensure!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "sequences must increase with commit order: {sequences:?}"
    );
    ensure_eq!(
        store.outbox_depth().await?,
        3,
        "every event is in the outbox"
    );

    let claimed = store.claim_outbox("c", 10, at(3), at(10)).await?;
    let mut ids: Vec<_> = claimed.iter().map(|e| (e.sequence, e.event.id)).collect();
    ids.sort();
    // `first` and `second` share an ordering key; only the older is deliverable.
    ensure_eq!(
        ids.iter().map(|(_, id)| *id).collect::<Vec<_>>(),
        vec![first.id, third.id],
        "claimable outbox entries"
    );
    ensure!(
        claimed
            .iter()
            .all(|e| e.attempts == 0 && e.last_error.is_none()),
        "fresh outbox entries have no attempts: {claimed:?}"
    );
    for entry in &claimed {
        let audit = log.iter().find(|e| e.event.id == entry.event.id);
        ensure_eq!(
            audit.map(|e| e.sequence),
            Some(entry.sequence),
            "outbox and audit log share the sequence"
        );
    }

    // The same event id again is refused.
    let mut again = ChangeSet::new();
    again.event(third);
    ensure!(
        store.commit(again).await.is_err(),
        "an event id that is already stored must be refused"
    );
    Ok(())
}

/// Stores `first`, then expects `clash` to fail with `field`, and nothing of it written.
async fn expect_unique(
    store: &Arc<dyn Store>,
    setup: Vec<Record>,
    clash: Vec<Record>,
    field: &'static str,
) -> Outcome {
    store.commit(put(setup)).await?;
    let depth = store.outbox_depth().await?;
    let mut changes = put(clash);
    changes.event(Fixture::new(999).event(None, None, at(0)));
    expect_error(
        store.commit(changes).await,
        StoreErrorKind::Unique,
        Some(field),
        &format!("a second record with the same {field}"),
    )?;
    ensure_eq!(
        store.outbox_depth().await?,
        depth,
        "no event from the failed commit"
    );
    Ok(())
}

pub(crate) async fn unique_identity_email(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(10);
    let ann = f.identity("ann.lee@acme.example", "Ann", "Lee")?;
    let twin = f.identity("Ann.LEE@Acme.Example", "Other", "Ann")?;
    expect_unique(
        &store,
        vec![ann.into()],
        vec![twin.clone().into()],
        unique_fields::IDENTITY_EMAIL,
    )
    .await?;
    ensure_eq!(
        store.identity(twin.id).await?,
        None,
        "the clashing identity"
    );
    Ok(())
}

pub(crate) async fn unique_identity_crm_contact_id(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(11);
    let mut ann = f.identity("ann@acme.example", "Ann", "Lee")?;
    ann.crm_contact_id = Some("CONTACT-1".to_owned());
    let mut bob = f.identity("bob@acme.example", "Bob", "Stone")?;
    bob.crm_contact_id = Some("CONTACT-1".to_owned());
    let mut carl = f.identity("carl@acme.example", "Carl", "None")?;
    carl.crm_contact_id = None;
    let mut dora = f.identity("dora@acme.example", "Dora", "None")?;
    dora.crm_contact_id = None;
    // Records without the optional value never clash.
    store.commit(put([carl.into(), dora.into()])).await?;
    expect_unique(
        &store,
        vec![ann.into()],
        vec![bob.into()],
        unique_fields::IDENTITY_CRM_CONTACT_ID,
    )
    .await
}

pub(crate) async fn unique_organization_crm_account_id(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(12);
    let mut a = f.organization("A");
    a.crm_account_id = Some("ACC-1".to_owned());
    let mut b = f.organization("B");
    b.crm_account_id = Some("ACC-1".to_owned());
    store
        .commit(put([
            f.organization("C").into(),
            f.organization("D").into(),
        ]))
        .await?;
    expect_unique(
        &store,
        vec![a.into()],
        vec![b.into()],
        unique_fields::ORGANIZATION_CRM_ACCOUNT_ID,
    )
    .await
}

pub(crate) async fn unique_organization_email_domain(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(13);
    let mut a = f.organization("A");
    a.email_domains.insert(domain("a.example")?);
    a.email_domains.insert(domain("shared.example")?);
    let mut b = f.organization("B");
    b.email_domains.insert(domain("b.example")?);
    b.email_domains.insert(domain("shared.example")?);
    expect_unique(
        &store,
        vec![a.into()],
        vec![b.clone().into()],
        unique_fields::ORGANIZATION_EMAIL_DOMAIN,
    )
    .await?;
    b.email_domains.remove(&domain("shared.example")?);
    store.commit(put([b.into()])).await?;
    Ok(())
}

pub(crate) async fn unique_organization_join_code(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(14);
    let mut a = f.organization("A");
    a.join_code = Some("JOIN-ME".to_owned());
    let mut b = f.organization("B");
    b.join_code = Some("JOIN-ME".to_owned());
    expect_unique(
        &store,
        vec![a.into()],
        vec![b.into()],
        unique_fields::ORGANIZATION_JOIN_CODE,
    )
    .await
}

pub(crate) async fn unique_contract_crm_contract_id(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(15);
    let org = f.organization("A");
    let other = f.organization("B");
    let first = f.contract(org.id, "K-1");
    let second = f.contract(other.id, "K-1");
    expect_unique(
        &store,
        vec![org.into(), other.into(), first.into()],
        vec![second.into()],
        unique_fields::CONTRACT_CRM_CONTRACT_ID,
    )
    .await
}

pub(crate) async fn unique_membership(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(16);
    let org = f.organization("A");
    let other = f.organization("B");
    let ann = f.identity("ann@acme.example", "Ann", "Lee")?;
    let first = f.membership(ann.id, org.id);
    let elsewhere = f.membership(ann.id, other.id);
    let second = f.membership(ann.id, org.id);
    expect_unique(
        &store,
        vec![
            org.into(),
            other.into(),
            ann.into(),
            first.into(),
            elsewhere.into(),
        ],
        vec![second.into()],
        unique_fields::MEMBERSHIP,
    )
    .await
}

pub(crate) async fn unique_service_key(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(17);
    expect_unique(
        &store,
        vec![f.service("planner").into()],
        vec![f.service("planner").into()],
        unique_fields::SERVICE_KEY,
    )
    .await
}

pub(crate) async fn unique_business_role_key(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(18);
    expect_unique(
        &store,
        vec![f.business_role("viewer").into()],
        vec![f.business_role("viewer").into()],
        unique_fields::BUSINESS_ROLE_KEY,
    )
    .await
}

pub(crate) async fn unique_invitation_token(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(19);
    let org = f.organization("A");
    let first = f.invitation(org.id, "a@acme.example", at(0))?;
    let mut second = f.invitation(org.id, "b@acme.example", at(0))?;
    second.token_hash = first.token_hash;
    let mut held_a = f.invitation(org.id, "c@acme.example", at(0))?;
    held_a.token_hash = None;
    let mut held_b = f.invitation(org.id, "d@acme.example", at(0))?;
    held_b.token_hash = None;
    expect_unique(
        &store,
        vec![org.into(), first.into(), held_a.into(), held_b.into()],
        vec![second.into()],
        unique_fields::INVITATION_TOKEN,
    )
    .await
}

pub(crate) async fn unique_session_token(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(20);
    let ann = f.identity("ann@acme.example", "Ann", "Lee")?;
    let first = f.session(ann.id, at(0));
    let mut second = f.session(ann.id, at(1));
    second.token_hash = first.token_hash;
    expect_unique(
        &store,
        vec![ann.into(), first.into()],
        vec![second.into()],
        unique_fields::SESSION_TOKEN,
    )
    .await
}

pub(crate) async fn unique_setting_key(store: Arc<dyn Store>) -> Outcome {
    use ciam_core::settings::SettingKind;
    let f = Fixture::new(22);
    let first = f.setting(SettingKind::ServiceProvider, "https://app.example/sp", None)?;
    // The same key under another kind is another setting.
    let other_kind = f.setting(
        SettingKind::IdentityProvider,
        "https://app.example/sp",
        None,
    )?;
    let clash = f.setting(SettingKind::ServiceProvider, "https://app.example/sp", None)?;
    expect_unique(
        &store,
        vec![first.into(), other_kind.into()],
        vec![clash.into()],
        unique_fields::SETTING_KEY,
    )
    .await
}

pub(crate) async fn unique_federated_link(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(21);
    let ann = f.identity("ann@acme.example", "Ann", "Lee")?;
    let bob = f.identity("bob@acme.example", "Bob", "Stone")?;
    let first = f.federated_link(ann.id, "https://idp.acme.example", "user-1", at(0));
    // Same subject at another provider, and another subject at the same provider, are fine.
    let other_provider = f.federated_link(bob.id, "https://idp.other.example", "user-1", at(0));
    let other_subject = f.federated_link(bob.id, "https://idp.acme.example", "user-2", at(0));
    // Passwords never clash with each other.
    let pw_a = f.password(ann.id, at(0))?;
    let pw_b = f.password(bob.id, at(0))?;
    let clash = f.federated_link(bob.id, "https://idp.acme.example", "user-1", at(1));
    expect_unique(
        &store,
        vec![
            ann.into(),
            bob.into(),
            first.into(),
            other_provider.into(),
            other_subject.into(),
            pw_a.into(),
            pw_b.into(),
        ],
        vec![clash.into()],
        unique_fields::FEDERATED_LINK,
    )
    .await
}

pub(crate) async fn unique_within_one_change_set(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(22);
    let ann = f.identity("ann@acme.example", "Ann", "Lee")?;
    let twin = f.identity("ANN@acme.example", "Ann", "Twin")?;
    expect_error(
        store
            .commit(put([ann.clone().into(), twin.clone().into()]))
            .await,
        StoreErrorKind::Unique,
        Some(unique_fields::IDENTITY_EMAIL),
        "two new identities with one email in one change set",
    )?;
    ensure_eq!(
        store.identity(ann.id).await?,
        None,
        "first identity of the clashing pair"
    );
    ensure_eq!(
        store.identity(twin.id).await?,
        None,
        "second identity of the clashing pair"
    );

    let s1 = f.service("same");
    let s2 = f.service("same");
    expect_error(
        store.commit(put([s1.into(), s2.into()])).await,
        StoreErrorKind::Unique,
        Some(unique_fields::SERVICE_KEY),
        "two new services with one key in one change set",
    )?;
    ensure_eq!(
        store.services().await?,
        Vec::new(),
        "services after the failed commit"
    );
    Ok(())
}

pub(crate) async fn unique_values_are_freed(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(23);
    let mut ann = f.identity("ann@acme.example", "Ann", "Lee")?;
    store.commit(put([ann.clone().into()])).await?;
    // Ann changes her email; the old one becomes free.
    ann.version = 1;
    ann.email = email("ann.new@acme.example")?;
    store.commit(put([ann.clone().into()])).await?;
    let newcomer = f.identity("Ann@acme.example", "Another", "Ann")?;
    store.commit(put([newcomer.clone().into()])).await?;
    ensure_eq!(
        store
            .identity_by_email(&email("ann@ACME.example")?)
            .await?
            .map(|i| i.id),
        Some(newcomer.id),
        "the old email now belongs to the newcomer"
    );
    ensure_eq!(
        store
            .identity_by_email(&email("ann.new@acme.example")?)
            .await?
            .map(|i| i.id),
        Some(ann.id),
        "the new email belongs to Ann"
    );
    // Ann's new email is still taken.
    let copy = f.identity("ANN.NEW@acme.example", "Copy", "Cat")?;
    expect_error(
        store.commit(put([copy.into()])).await,
        StoreErrorKind::Unique,
        Some(unique_fields::IDENTITY_EMAIL),
        "the email Ann changed to",
    )?;

    // A deleted federated link frees (provider, subject).
    let link = f.federated_link(ann.id, "https://idp.example", "s-1", at(0));
    store.commit(put([link.clone().into()])).await?;
    let mut unlink = ChangeSet::new();
    unlink.delete(RecordRef::Credential(link.id, 1));
    store.commit(unlink).await?;
    let relink = f.federated_link(newcomer.id, "https://idp.example", "s-1", at(1));
    store.commit(put([relink.clone().into()])).await?;
    ensure_eq!(
        store
            .credential_by_federated_link("https://idp.example", "s-1")
            .await?
            .map(|c| c.id),
        Some(relink.id),
        "the link after unlinking and linking again"
    );
    Ok(())
}
