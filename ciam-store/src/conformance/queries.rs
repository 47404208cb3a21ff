//! Reads: lookups, filters, orders, limits and pagination.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::TimeDelta;
use ciam_core::authz::Actor;
use ciam_core::invitations::InvitationStatus;
use ciam_core::registrations::RequestStatus;
use ciam_core::store::{ChangeSet, EventQuery, PageRequest, RecordRef, SessionAccess, Store};

use super::builders::{Fixture, at, domain, email, t0};
use super::commit::put;
use super::{Fail, Outcome, ensure, ensure_eq};

pub(crate) async fn organization_lookups(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(30);
    let mut parent = f.organization("Parent");
    parent.crm_account_id = Some("ACC-9".to_owned());
    parent.email_domains = BTreeSet::from([domain("parent.example")?, domain("parent.test")?]);
    parent.join_code = Some("PARENT-CODE".to_owned());
    let mut child_b = f.organization("Child B");
    child_b.parent = Some(parent.id);
    let mut child_a = f.organization("Child A");
    child_a.parent = Some(parent.id);
    let mut grandchild = f.organization("Grandchild");
    grandchild.parent = Some(child_a.id);
    store
        .commit(put([
            parent.clone().into(),
            child_b.clone().into(),
            child_a.clone().into(),
            grandchild.clone().into(),
        ]))
        .await?;
    let id = |o: Option<ciam_core::organizations::Organization>| o.map(|o| o.id);
    ensure_eq!(
        id(store.organization(parent.id).await?),
        Some(parent.id),
        "by id"
    );
    ensure_eq!(
        id(store.organization_by_crm_account("ACC-9").await?),
        Some(parent.id),
        "by CRM account id"
    );
    ensure_eq!(
        id(store.organization_by_crm_account("ACC-0").await?),
        None,
        "unknown CRM account id"
    );
    ensure_eq!(
        id(store
            .organization_by_email_domain(&domain("PARENT.test")?)
            .await?),
        Some(parent.id),
        "by its second email domain"
    );
    ensure_eq!(
        id(store
            .organization_by_email_domain(&domain("child.example")?)
            .await?),
        None,
        "unknown email domain"
    );
    ensure_eq!(
        id(store.organization_by_join_code("PARENT-CODE").await?),
        Some(parent.id),
        "by join code"
    );
    ensure_eq!(
        id(store.organization_by_join_code("NOPE").await?),
        None,
        "unknown join code"
    );
    let subs: Vec<_> = store
        .sub_organizations(parent.id)
        .await?
        .into_iter()
        .map(|o| o.id)
        .collect();
    ensure_eq!(
        subs.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([child_a.id, child_b.id]),
        "direct sub-organizations only"
    );
    ensure_eq!(
        store.sub_organizations(grandchild.id).await?.len(),
        0,
        "sub-organizations of a leaf"
    );
    Ok(())
}

pub(crate) async fn organization_search(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(31);
    let names = [
        "Gamma Energy",
        "Alpha Energy",
        "Beta Foods",
        "Delta ENERGY Partners",
        "Epsilon",
    ];
    store
        .commit(put(names.iter().map(|n| f.organization(n).into())))
        .await?;
    let found: Vec<String> = store
        .search_organizations("energy", 10)
        .await?
        .into_iter()
        .map(|o| o.name)
        .collect();
    ensure_eq!(
        found,
        vec!["Alpha Energy", "Delta ENERGY Partners", "Gamma Energy"],
        "case-insensitive substring search, ordered by name"
    );
    let limited: Vec<String> = store
        .search_organizations("ENERGY", 2)
        .await?
        .into_iter()
        .map(|o| o.name)
        .collect();
    ensure_eq!(
        limited,
        vec!["Alpha Energy", "Delta ENERGY Partners"],
        "limited search"
    );
    ensure_eq!(
        store.search_organizations("zzz", 10).await?.len(),
        0,
        "no match"
    );
    ensure_eq!(
        store.search_organizations("a", 0).await?.len(),
        0,
        "limit 0"
    );
    Ok(())
}

pub(crate) async fn contract_lookups(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(32);
    let org = f.organization("A");
    let other = f.organization("B");
    let mut first = f.contract(org.id, "K-1");
    first.created_at = at(1);
    let mut second = f.contract(org.id, "K-2");
    second.created_at = at(2);
    let foreign = f.contract(other.id, "K-3");
    store
        .commit(put([org.clone().into(), other.clone().into()]))
        .await?;
    store
        .commit(put([
            second.clone().into(),
            foreign.clone().into(),
            first.clone().into(),
        ]))
        .await?;
    ensure_eq!(
        store.contract(first.id).await?.map(|c| c.id),
        Some(first.id),
        "by id"
    );
    ensure_eq!(
        store.contract_by_crm_id("K-2").await?.map(|c| c.id),
        Some(second.id),
        "by CRM id"
    );
    ensure_eq!(
        store.contract_by_crm_id("K-9").await?,
        None,
        "unknown CRM id"
    );
    let of_org: BTreeSet<_> = store
        .contracts_of_organization(org.id)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    ensure_eq!(
        of_org,
        BTreeSet::from([first.id, second.id]),
        "contracts of the organization"
    );
    Ok(())
}

pub(crate) async fn contracts_with_access_ended(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(33);
    let org = f.organization("A");
    let mut ended_early = f.contract(org.id, "ended-early");
    ended_early.status = ciam_core::organizations::ContractStatus::Ended;
    ended_early.access_ended_at = Some(at(10));
    let mut ended_at_cutoff = f.contract(org.id, "ended-at-cutoff");
    ended_at_cutoff.status = ciam_core::organizations::ContractStatus::Suspended;
    ended_at_cutoff.access_ended_at = Some(at(60));
    let mut ended_late = f.contract(org.id, "ended-late");
    ended_late.status = ciam_core::organizations::ContractStatus::Ended;
    ended_late.access_ended_at = Some(at(61));
    let mut ran_out = f.contract(org.id, "ran-out");
    ran_out.valid_until = Some(at(30));
    let mut runs_on = f.contract(org.id, "runs-on");
    runs_on.valid_until = Some(at(600));
    let open_ended = f.contract(org.id, "open-ended");
    store.commit(put([org.into()])).await?;
    store
        .commit(put([
            ended_early.clone().into(),
            ended_at_cutoff.clone().into(),
            ended_late.into(),
            ran_out.clone().into(),
            runs_on.into(),
            open_ended.into(),
        ]))
        .await?;
    let found: BTreeSet<String> = store
        .contracts_with_access_ended_before(at(60))
        .await?
        .into_iter()
        .map(|c| c.crm_contract_id)
        .collect();
    let expected: BTreeSet<String> = ["ended-early", "ended-at-cutoff", "ran-out"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    ensure_eq!(
        found,
        expected,
        "contracts whose access ended (access_ended_at, else valid_until) at or before the cutoff"
    );
    ensure_eq!(
        store.contracts_with_access_ended_before(at(5)).await?.len(),
        0,
        "nothing ended before the first end"
    );
    Ok(())
}

pub(crate) async fn identity_lookups(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(34);
    let mut ann = f.identity("Ann.Lee@Acme.Example", "Ann", "Lee")?;
    ann.crm_contact_id = Some("CT-1".to_owned());
    let bob = f.identity("bob@acme.example", "Bob", "Stone")?;
    store
        .commit(put([ann.clone().into(), bob.clone().into()]))
        .await?;
    ensure_eq!(
        store.identity(bob.id).await?.map(|i| i.id),
        Some(bob.id),
        "by id"
    );
    let found = store
        .identity_by_email(&email("ann.lee@acme.example")?)
        .await?;
    ensure_eq!(
        found.as_ref().map(|i| i.id),
        Some(ann.id),
        "by email in another case"
    );
    ensure_eq!(
        found.map(|i| i.email.as_str().to_owned()),
        Some("Ann.Lee@Acme.Example".to_owned()),
        "the email keeps its spelling"
    );
    ensure_eq!(
        store
            .identity_by_email(&email("ANN.LEE@ACME.EXAMPLE")?)
            .await?
            .map(|i| i.id),
        Some(ann.id),
        "by email in upper case"
    );
    ensure_eq!(
        store
            .identity_by_email(&email("nobody@acme.example")?)
            .await?,
        None,
        "unknown email"
    );
    ensure_eq!(
        store.identity_by_crm_contact("CT-1").await?.map(|i| i.id),
        Some(ann.id),
        "by CRM contact id"
    );
    ensure_eq!(
        store.identity_by_crm_contact("CT-2").await?,
        None,
        "unknown CRM contact id"
    );
    Ok(())
}

pub(crate) async fn identity_search(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(35);
    let people = [
        ("zoe@acme.example", "Zoe", "Miller"),
        ("Mike.Ross@acme.example", "Mike", "Ross"),
        ("anna@other.example", "Anna", "Jones"),
        ("mia@acme.example", "Mia", "Walker"),
        ("x@acme.example", "Tom", "Mills"),
    ];
    let mut records = Vec::new();
    for (address, given, family) in people {
        records.push(f.identity(address, given, family)?.into());
    }
    store.commit(put(records)).await?;
    let emails = |found: Vec<ciam_core::identities::Identity>| {
        found
            .into_iter()
            .map(|i| i.email.normalized().to_owned())
            .collect::<Vec<_>>()
    };
    // "mi": email prefix (mia@, mike.ross@) or name contains (Miller, Mills).
    ensure_eq!(
        emails(store.search_identities("MI", 10).await?),
        vec![
            "mia@acme.example",
            "mike.ross@acme.example",
            "x@acme.example",
            "zoe@acme.example"
        ],
        "email prefix or name, case-insensitive, ordered by email"
    );
    ensure_eq!(
        emails(store.search_identities("mi", 2).await?),
        vec!["mia@acme.example", "mike.ross@acme.example"],
        "limited search"
    );
    // A fragment in the middle of an email is not a prefix.
    ensure_eq!(
        emails(store.search_identities("other.example", 10).await?),
        Vec::<String>::new(),
        "an email fragment that is not a prefix"
    );
    ensure_eq!(
        emails(store.search_identities("JONES", 10).await?),
        vec!["anna@other.example"],
        "by family name"
    );
    Ok(())
}

pub(crate) async fn membership_lookups(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(36);
    let a = f.organization("A");
    let b = f.organization("B");
    let ann = f.identity("ann@acme.example", "Ann", "Lee")?;
    let bob = f.identity("bob@acme.example", "Bob", "Stone")?;
    let mut ann_a = f.membership(ann.id, a.id);
    ann_a.created_at = at(1);
    let mut ann_b = f.membership(ann.id, b.id);
    ann_b.created_at = at(2);
    let bob_a = f.membership(bob.id, a.id);
    store
        .commit(put([
            a.clone().into(),
            b.clone().into(),
            ann.clone().into(),
            bob.clone().into(),
        ]))
        .await?;
    store
        .commit(put([
            ann_b.clone().into(),
            bob_a.clone().into(),
            ann_a.clone().into(),
        ]))
        .await?;
    ensure_eq!(
        store.membership(bob_a.id).await?.map(|m| m.id),
        Some(bob_a.id),
        "by id"
    );
    ensure_eq!(
        store.membership_of(ann.id, b.id).await?.map(|m| m.id),
        Some(ann_b.id),
        "by identity and organization"
    );
    ensure_eq!(
        store.membership_of(bob.id, b.id).await?,
        None,
        "no membership there"
    );
    let of_ann: BTreeSet<_> = store
        .memberships_of_identity(ann.id)
        .await?
        .into_iter()
        .map(|m| m.id)
        .collect();
    ensure_eq!(
        of_ann,
        BTreeSet::from([ann_a.id, ann_b.id]),
        "memberships of an identity"
    );
    Ok(())
}

pub(crate) async fn batch_lookups(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(43);
    let a = f.organization("A");
    let b = f.organization("B");
    let ann = f.identity("Ann.Lee@Acme.Example", "Ann", "Lee")?;
    let bob = f.identity("bob@acme.example", "Bob", "Stone")?;
    let cy = f.identity("cy@acme.example", "Cy", "Young")?;
    store
        .commit(put([
            a.clone().into(),
            b.clone().into(),
            ann.clone().into(),
            bob.clone().into(),
            cy.clone().into(),
        ]))
        .await?;
    let ann_a = f.membership(ann.id, a.id);
    let bob_b = f.membership(bob.id, b.id);
    let mut cy_a = f.membership(cy.id, a.id);
    cy_a.status = ciam_core::identities::MembershipStatus::Removed;
    let pat_a = f.invitation(a.id, "pat@acme.example", at(2))?;
    let pat_b = f.invitation(b.id, "Pat@Acme.example", at(1))?;
    let mut pat_done = f.invitation(a.id, "pat@acme.example", at(0))?;
    pat_done.status = InvitationStatus::Accepted;
    let mut bob_held = f.invitation(a.id, "bob@acme.example", at(3))?;
    bob_held.status = InvitationStatus::HeldForReview;
    bob_held.token_hash = None;
    let other = f.invitation(a.id, "other@acme.example", at(4))?;
    store
        .commit(put([
            ann_a.clone().into(),
            bob_b.clone().into(),
            cy_a.clone().into(),
            pat_a.clone().into(),
            pat_b.clone().into(),
            pat_done.clone().into(),
            bob_held.clone().into(),
            other.clone().into(),
        ]))
        .await?;

    let asked = [
        email("nobody@acme.example")?,
        email("BOB@acme.example")?,
        email("ann.lee@acme.example")?,
        email("bob@ACME.example")?,
        email("pat@acme.example")?,
    ];
    let found: Vec<_> = store
        .identities_by_emails(&asked)
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect();
    ensure_eq!(
        found,
        vec![ann.id, bob.id],
        "identities by many emails: case-insensitive, each once, ordered by email, unknown left out"
    );
    ensure_eq!(
        store.identities_by_emails(&[]).await?.len(),
        0,
        "no emails, no identities"
    );

    let in_a: BTreeSet<_> = store
        .memberships_in_organization(a.id, &[ann.id, bob.id, cy.id, ann.id])
        .await?
        .into_iter()
        .map(|m| m.id)
        .collect();
    ensure_eq!(
        in_a,
        BTreeSet::from([ann_a.id, cy_a.id]),
        "memberships in one organization of many identities, whatever their status"
    );
    ensure_eq!(
        store
            .memberships_in_organization(b.id, &[ann.id])
            .await?
            .len(),
        0,
        "no membership there"
    );
    ensure_eq!(
        store.memberships_in_organization(a.id, &[]).await?.len(),
        0,
        "no identities, no memberships"
    );

    let open: Vec<_> = store
        .open_invitations_for_emails(&asked)
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect();
    ensure_eq!(
        open,
        vec![bob_held.id, pat_b.id, pat_a.id],
        "open (held or pending) invitations for many emails, across organizations, by email then oldest first"
    );
    ensure_eq!(
        store.open_invitations_for_emails(&[]).await?.len(),
        0,
        "no emails, no invitations"
    );

    // Lists longer than any single query may carry.
    let mut people = Vec::new();
    let mut records = Vec::new();
    for n in 0..1_200 {
        let person = f.identity(&format!("person{n:04}@bulk.example"), "Bulk", "Person")?;
        if n % 3 == 0 {
            records.push(f.membership(person.id, a.id).into());
        }
        if n % 4 == 0 {
            records.push(
                f.invitation(a.id, &format!("person{n:04}@bulk.example"), at(5))?
                    .into(),
            );
        }
        people.push(person);
    }
    store
        .commit(put(people.iter().cloned().map(Into::into)))
        .await?;
    store.commit(put(records)).await?;
    let mut asked = Vec::new();
    for n in 0..1_500 {
        asked.push(email(&format!("PERSON{n:04}@bulk.example"))?);
    }
    let found = store.identities_by_emails(&asked).await?;
    ensure_eq!(found.len(), 1_200, "every identity of a long list");
    ensure!(
        found
            .windows(2)
            .all(|w| w[0].email.normalized() < w[1].email.normalized()),
        "a long list comes back ordered by email"
    );
    let ids: Vec<_> = people.iter().map(|p| p.id).collect();
    ensure_eq!(
        store.memberships_in_organization(a.id, &ids).await?.len(),
        400,
        "memberships of a long list of identities"
    );
    ensure_eq!(
        store.open_invitations_for_emails(&asked).await?.len(),
        300,
        "open invitations of a long list of emails"
    );
    Ok(())
}

pub(crate) async fn identity_access(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(38);
    let a = f.organization("A");
    let b = f.organization("B");
    let c = f.organization("C");
    let ann = f.identity("ann@access.example", "Ann", "Lee")?;
    let bob = f.identity("bob@access.example", "Bob", "Stone")?;
    let cy = f.identity("cy@access.example", "Cy", "Alone")?;
    let mut ann_b = f.membership(ann.id, b.id);
    ann_b.created_at = at(1);
    let mut ann_a = f.membership(ann.id, a.id);
    ann_a.created_at = at(2);
    let bob_a = f.membership(bob.id, a.id);
    let mut a_late = f.contract(a.id, "A-LATE");
    a_late.created_at = at(5);
    let mut a_early = f.contract(a.id, "A-EARLY");
    a_early.created_at = at(3);
    let c_only = f.contract(c.id, "C-ONLY");
    store
        .commit(put([
            a.clone().into(),
            b.clone().into(),
            c.clone().into(),
            ann.clone().into(),
            bob.clone().into(),
            cy.clone().into(),
        ]))
        .await?;
    store
        .commit(put([
            ann_a.clone().into(),
            bob_a.clone().into(),
            ann_b.clone().into(),
            a_late.clone().into(),
            c_only.into(),
            a_early.clone().into(),
        ]))
        .await?;
    let access = store
        .identity_access(ann.id)
        .await?
        .ok_or_else(|| Fail("no access records for an existing identity".into()))?;
    ensure_eq!(access.identity.id, ann.id, "the identity");
    let shape: Vec<_> = access
        .memberships
        .iter()
        .map(|m| {
            (
                m.membership.id,
                m.organization.as_ref().map(|o| o.id),
                m.contracts.iter().map(|c| c.id).collect::<Vec<_>>(),
            )
        })
        .collect();
    ensure_eq!(
        shape,
        vec![
            (ann_b.id, Some(b.id), vec![]),
            (ann_a.id, Some(a.id), vec![a_early.id, a_late.id]),
        ],
        "memberships in creation order, each with its organization and only that \
         organization's contracts in creation order"
    );
    // Exactly what the single reads give (versions and every field included).
    let mut composed = Vec::new();
    for membership in store.memberships_of_identity(ann.id).await? {
        let organization = store.organization(membership.organization).await?;
        let contracts = store
            .contracts_of_organization(membership.organization)
            .await?;
        composed.push((membership, organization, contracts));
    }
    let read: Vec<_> = access
        .memberships
        .into_iter()
        .map(|m| (m.membership, m.organization, m.contracts))
        .collect();
    ensure_eq!(read, composed, "the same records as the single reads");
    ensure_eq!(
        Some(access.identity),
        store.identity(ann.id).await?,
        "the identity as read by id"
    );
    let alone = store
        .identity_access(cy.id)
        .await?
        .ok_or_else(|| Fail("no access records for an identity without memberships".into()))?;
    ensure!(
        alone.identity.id == cy.id && alone.memberships.is_empty(),
        "an identity without memberships: got {alone:?}"
    );
    ensure_eq!(
        store
            .identity_access(f.identity("nobody@access.example", "No", "Body")?.id)
            .await?,
        None,
        "an unknown identity"
    );

    // The same records by session token, in one read: exactly the session by its token with
    // the identity's access; no access when the identity is gone; nothing for an unknown token.
    let ann_session = f.session(ann.id, at(10));
    let cy_session = f.session(cy.id, at(11));
    let gone_session = f.session(
        f.identity("gone@access.example", "Gone", "Away")?.id,
        at(12),
    );
    store
        .commit(put([
            ann_session.clone().into(),
            cy_session.clone().into(),
            gone_session.clone().into(),
        ]))
        .await?;
    for session in [&ann_session, &cy_session, &gone_session] {
        let read = store
            .session_access(&session.token_hash)
            .await?
            .ok_or_else(|| Fail("no session access for a stored session".into()))?;
        let expected = SessionAccess {
            session: store
                .session_by_token(&session.token_hash)
                .await?
                .ok_or_else(|| Fail("a stored session not found by its token".into()))?,
            access: store.identity_access(session.identity).await?,
        };
        ensure_eq!(
            read,
            expected,
            "session_access is session_by_token with identity_access"
        );
    }
    let gone = store.session_access(&gone_session.token_hash).await?;
    ensure!(
        gone.as_ref().is_some_and(|read| read.access.is_none()),
        "a session whose identity is gone: got {gone:?}"
    );
    ensure_eq!(
        store.session_access(&f.token_hash()).await?,
        None,
        "an unknown session token"
    );
    Ok(())
}

pub(crate) async fn members_pagination(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(37);
    let org = f.organization("Big");
    let other = f.organization("Other");
    store
        .commit(put([org.clone().into(), other.clone().into()]))
        .await?;
    let mut expected = Vec::new();
    for n in 0..23 {
        // Mixed case and an order different from insertion order.
        let address = format!(
            "{}User{:02}@Big.example",
            if n % 2 == 0 { "a" } else { "B" },
            (n * 7) % 23
        );
        let person = f.identity(&address, "Member", &format!("No{n}"))?;
        let membership = f.membership(person.id, org.id);
        expected.push((person.email.normalized().to_owned(), membership.id));
        match n % 5 {
            // A membership stored before its identity, in an earlier commit ...
            0 => {
                store.commit(put([membership.into()])).await?;
                store.commit(put([person.into()])).await?;
            }
            // ... or earlier in the same change set: listed by the identity's email all the same.
            1 => {
                store
                    .commit(put([membership.into(), person.into()]))
                    .await?;
            }
            _ => {
                store
                    .commit(put([person.into(), membership.into()]))
                    .await?;
            }
        }
    }
    for n in 0..3 {
        let person = f.identity(&format!("outsider{n}@other.example"), "Out", "Sider")?;
        let membership = f.membership(person.id, other.id);
        store
            .commit(put([person.into(), membership.into()]))
            .await?;
    }
    expected.sort();

    let mut seen = Vec::new();
    let mut page = PageRequest::first(5);
    let mut pages = 0;
    loop {
        pages += 1;
        ensure!(pages <= 10, "pagination does not end");
        let result = store.members_of_organization(org.id, page.clone()).await?;
        ensure!(
            result.items.len() <= 5,
            "a page holds at most `limit` items"
        );
        for member in &result.items {
            ensure_eq!(
                member.membership.organization,
                org.id,
                "member of another organization"
            );
            ensure_eq!(
                member.membership.identity,
                member.identity.id,
                "member's identity"
            );
            seen.push((
                member.identity.email.normalized().to_owned(),
                member.membership.id,
            ));
        }
        match result.next {
            Some(next) => {
                ensure_eq!(result.items.len(), 5, "a page with a next cursor is full");
                page = PageRequest {
                    after: Some(next),
                    limit: 5,
                };
            }
            None => break,
        }
    }
    ensure_eq!(pages, 5, "23 members in pages of 5");
    ensure_eq!(
        seen,
        expected,
        "every member exactly once, ordered by email"
    );

    // An exact multiple of the page size: the last full page has no next cursor, or the next
    // page is empty with none.
    let ten = store
        .members_of_organization(other.id, PageRequest::first(3))
        .await?;
    ensure_eq!(ten.items.len(), 3, "a page of exactly all members");
    if let Some(next) = ten.next {
        let rest = store
            .members_of_organization(
                other.id,
                PageRequest {
                    after: Some(next),
                    limit: 3,
                },
            )
            .await?;
        ensure!(
            rest.items.is_empty() && rest.next.is_none(),
            "nothing after the last member"
        );
    }
    let all = store
        .members_of_organization(org.id, PageRequest::first(100))
        .await?;
    ensure_eq!(all.items.len(), 23, "one big page");
    ensure_eq!(all.next, None, "no cursor after the last page");
    let none = store
        .members_of_organization(f.organization("Empty").id, PageRequest::first(10))
        .await?;
    ensure!(
        none.items.is_empty() && none.next.is_none(),
        "an organization without members"
    );
    Ok(())
}

pub(crate) async fn services_and_roles(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(38);
    let planner = f.service("planner");
    let billing = f.service("billing");
    let reports = f.service("reports");
    let viewer = f.business_role("viewer");
    let admin = f.business_role("admin");
    store
        .commit(put([
            planner.clone().into(),
            billing.clone().into(),
            reports.clone().into(),
            viewer.clone().into(),
            admin.clone().into(),
        ]))
        .await?;
    ensure_eq!(
        store.service(planner.id).await?.map(|s| s.key),
        Some("planner".to_owned()),
        "service by id"
    );
    ensure_eq!(
        store.service_by_key("billing").await?.map(|s| s.id),
        Some(billing.id),
        "service by key"
    );
    ensure_eq!(
        store.service_by_key("nope").await?,
        None,
        "unknown service key"
    );
    ensure_eq!(
        store
            .services()
            .await?
            .into_iter()
            .map(|s| s.key)
            .collect::<Vec<_>>(),
        vec!["billing", "planner", "reports"],
        "services ordered by key"
    );
    ensure_eq!(
        store.business_role(viewer.id).await?.map(|r| r.key),
        Some("viewer".to_owned()),
        "role by id"
    );
    ensure_eq!(
        store.business_role_by_key("admin").await?.map(|r| r.id),
        Some(admin.id),
        "role by key"
    );
    ensure_eq!(
        store.business_role_by_key("nope").await?,
        None,
        "unknown role key"
    );
    ensure_eq!(
        store
            .business_roles()
            .await?
            .into_iter()
            .map(|r| r.key)
            .collect::<Vec<_>>(),
        vec!["admin", "viewer"],
        "business roles ordered by key"
    );
    Ok(())
}

pub(crate) async fn invitation_queries(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(39);
    let org = f.organization("A");
    let other = f.organization("B");
    store
        .commit(put([org.clone().into(), other.clone().into()]))
        .await?;
    let first = f.invitation(org.id, "Pat@acme.example", at(1))?;
    let mut held = f.invitation(org.id, "held@acme.example", at(2))?;
    held.status = InvitationStatus::HeldForReview;
    held.token_hash = None;
    let mut accepted = f.invitation(org.id, "done@acme.example", at(3))?;
    accepted.status = InvitationStatus::Accepted;
    let latest = f.invitation(org.id, "late@acme.example", at(4))?;
    let elsewhere = f.invitation(other.id, "pat@ACME.example", at(5))?;
    let mut revoked = f.invitation(other.id, "pat@acme.example", at(6))?;
    revoked.status = InvitationStatus::Revoked;
    store
        .commit(put([
            latest.clone().into(),
            held.clone().into(),
            elsewhere.clone().into(),
            first.clone().into(),
            accepted.clone().into(),
            revoked.clone().into(),
        ]))
        .await?;
    let ids = |found: Vec<ciam_core::invitations::Invitation>| {
        found.into_iter().map(|i| i.id).collect::<Vec<_>>()
    };

    let token = first
        .token_hash
        .ok_or_else(|| Fail("test invitation without token".to_owned()))?;
    ensure_eq!(
        store.invitation(held.id).await?.map(|i| i.id),
        Some(held.id),
        "by id"
    );
    ensure_eq!(
        store.invitation_by_token(&token).await?.map(|i| i.id),
        Some(first.id),
        "by token hash"
    );
    ensure_eq!(
        store.invitation_by_token(&f.token_hash()).await?,
        None,
        "unknown token hash"
    );

    ensure_eq!(
        ids(store.invitations_of_organization(org.id, &[], 10).await?),
        vec![latest.id, accepted.id, held.id, first.id],
        "all invitations of the organization, newest first"
    );
    ensure_eq!(
        ids(store.invitations_of_organization(org.id, &[], 2).await?),
        vec![latest.id, accepted.id],
        "limited, newest first"
    );
    ensure_eq!(
        ids(store
            .invitations_of_organization(
                org.id,
                &[InvitationStatus::Pending, InvitationStatus::HeldForReview],
                10
            )
            .await?),
        vec![latest.id, held.id, first.id],
        "filtered by status, newest first"
    );
    ensure_eq!(
        ids(store
            .invitations_with_status(
                &[InvitationStatus::Pending, InvitationStatus::HeldForReview],
                10
            )
            .await?),
        vec![first.id, held.id, latest.id, elsewhere.id],
        "by status across organizations, oldest first"
    );
    ensure_eq!(
        ids(store
            .invitations_with_status(&[InvitationStatus::Pending], 2)
            .await?),
        vec![first.id, latest.id],
        "by status, limited, oldest first"
    );
    let open: BTreeSet<_> = store
        .open_invitations_for_email(&email("PAT@Acme.Example")?)
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect();
    ensure_eq!(
        open,
        BTreeSet::from([first.id, elsewhere.id]),
        "open (held or pending) invitations for an email, case-insensitive"
    );
    let held_open: Vec<_> = ids(store
        .open_invitations_for_email(&email("held@acme.example")?)
        .await?);
    ensure_eq!(held_open, vec![held.id], "a held invitation is open");
    ensure_eq!(
        store
            .open_invitations_for_email(&email("done@acme.example")?)
            .await?
            .len(),
        0,
        "an accepted invitation is not open"
    );
    Ok(())
}

pub(crate) async fn registration_queries(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(40);
    let org = f.organization("A");
    let other = f.organization("B");
    store
        .commit(put([org.clone().into(), other.clone().into()]))
        .await?;
    let r_late = f.org_registration("Late", at(3))?;
    let r_early = f.org_registration("Early", at(1))?;
    let mut r_unverified = f.org_registration("Unverified", at(0))?;
    r_unverified.status = RequestStatus::AwaitingVerification;
    let mut r_decided = f.org_registration("Decided", at(0))?;
    r_decided.status = RequestStatus::Approved {
        by: Actor::System,
        at: at(2),
    };
    let j_late = f.join_request(org.id, "late@a.example", at(5))?;
    let j_early = f.join_request(org.id, "early@a.example", at(4))?;
    let mut j_rejected = f.join_request(org.id, "no@a.example", at(1))?;
    j_rejected.status = RequestStatus::Rejected {
        by: Actor::System,
        at: at(2),
        reason: "no".to_owned(),
    };
    let j_other = f.join_request(other.id, "other@b.example", at(1))?;
    store
        .commit(put([
            r_late.clone().into(),
            r_early.clone().into(),
            r_unverified.clone().into(),
            r_decided.clone().into(),
            j_late.clone().into(),
            j_early.clone().into(),
            j_rejected.clone().into(),
            j_other.clone().into(),
        ]))
        .await?;
    ensure_eq!(
        store
            .org_registration(r_decided.id)
            .await?
            .map(|r| r.status),
        Some(r_decided.status.clone()),
        "registration by id"
    );
    ensure_eq!(
        store
            .pending_org_registrations(10)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        vec![r_early.id, r_late.id],
        "registrations pending approval, oldest first"
    );
    ensure_eq!(
        store.pending_org_registrations(1).await?.len(),
        1,
        "limited"
    );
    ensure_eq!(
        store.join_request(j_rejected.id).await?.map(|j| j.id),
        Some(j_rejected.id),
        "join request by id"
    );
    ensure_eq!(
        store
            .pending_join_requests(org.id, 10)
            .await?
            .into_iter()
            .map(|j| j.id)
            .collect::<Vec<_>>(),
        vec![j_early.id, j_late.id],
        "join requests pending approval in the organization, oldest first"
    );
    ensure_eq!(
        store
            .pending_join_requests(org.id, 1)
            .await?
            .into_iter()
            .map(|j| j.id)
            .collect::<Vec<_>>(),
        vec![j_early.id],
        "limited"
    );
    Ok(())
}

pub(crate) async fn credential_and_session_queries(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(41);
    let ann = f.identity("ann@acme.example", "Ann", "Lee")?;
    let bob = f.identity("bob@acme.example", "Bob", "Stone")?;
    store
        .commit(put([ann.clone().into(), bob.clone().into()]))
        .await?;
    let password = f.password(ann.id, at(0))?;
    let link = f.federated_link(ann.id, "https://idp.example", "ann-1", at(1));
    let bob_password = f.password(bob.id, at(0))?;
    let s_old = f.session(ann.id, at(1));
    let s_new = f.session(ann.id, at(3));
    let mut s_mid = f.session(ann.id, at(2));
    s_mid.revoked = Some((
        at(2) + TimeDelta::minutes(1),
        ciam_core::sessions::RevocationReason::SignedOut,
    ));
    let s_bob = f.session(bob.id, at(1));
    store
        .commit(put([
            password.clone().into(),
            link.clone().into(),
            bob_password.clone().into(),
            s_old.clone().into(),
            s_new.clone().into(),
            s_mid.clone().into(),
            s_bob.clone().into(),
        ]))
        .await?;
    let creds: BTreeSet<_> = store
        .credentials_of_identity(ann.id)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    ensure_eq!(
        creds,
        BTreeSet::from([password.id, link.id]),
        "credentials of an identity"
    );
    ensure_eq!(
        store
            .credential_by_federated_link("https://idp.example", "ann-1")
            .await?
            .map(|c| c.id),
        Some(link.id),
        "by federated link"
    );
    ensure_eq!(
        store
            .credential_by_federated_link("https://idp.example", "ANN-1")
            .await?,
        None,
        "the subject is compared exactly"
    );
    ensure_eq!(
        store
            .credential_by_federated_link("https://other.example", "ann-1")
            .await?,
        None,
        "another provider"
    );
    ensure_eq!(
        store
            .session_by_token(&s_mid.token_hash)
            .await?
            .map(|s| s.id),
        Some(s_mid.id),
        "a revoked session by token"
    );
    ensure_eq!(
        store.session_by_token(&f.token_hash()).await?,
        None,
        "unknown session token"
    );
    ensure_eq!(
        store
            .sessions_of_identity(ann.id)
            .await?
            .into_iter()
            .map(|s| s.id)
            .collect::<Vec<_>>(),
        vec![s_new.id, s_mid.id, s_old.id],
        "sessions of an identity, live or not, newest first"
    );
    Ok(())
}

pub(crate) async fn setting_queries(store: Arc<dyn Store>) -> Outcome {
    use ciam_core::settings::SettingKind;
    let f = Fixture::new(42);
    let acme = f.organization("Acme");
    let beta = f.organization("Beta");
    let acme_oidc = f.setting(
        SettingKind::IdentityProvider,
        "https://login.acme.example",
        Some(acme.id),
    )?;
    let acme_saml = f.setting(
        SettingKind::IdentityProvider,
        "https://acme.example/saml",
        Some(acme.id),
    )?;
    let beta_idp = f.setting(
        SettingKind::IdentityProvider,
        "https://beta.example",
        Some(beta.id),
    )?;
    let google = f.setting(
        SettingKind::IdentityProvider,
        "https://accounts.google.com",
        None,
    )?;
    let sp = f.setting(SettingKind::ServiceProvider, "https://app.example/sp", None)?;
    store
        .commit(put([
            acme.clone().into(),
            beta.clone().into(),
            acme_oidc.clone().into(),
            acme_saml.clone().into(),
            beta_idp.clone().into(),
            google.clone().into(),
            sp.clone().into(),
        ]))
        .await?;
    let keys = |items: Vec<ciam_core::settings::Setting>| {
        items.into_iter().map(|s| s.key).collect::<Vec<_>>()
    };
    ensure_eq!(
        keys(store.settings(SettingKind::IdentityProvider, None).await?),
        vec![
            "https://accounts.google.com".to_owned(),
            "https://acme.example/saml".to_owned(),
            "https://beta.example".to_owned(),
            "https://login.acme.example".to_owned(),
        ],
        "every setting of a kind, ordered by key"
    );
    ensure_eq!(
        keys(
            store
                .settings(SettingKind::IdentityProvider, Some(acme.id))
                .await?
        ),
        vec![
            "https://acme.example/saml".to_owned(),
            "https://login.acme.example".to_owned(),
        ],
        "settings of one organization"
    );
    ensure_eq!(
        keys(store.settings(SettingKind::ApiKey, None).await?),
        Vec::<String>::new(),
        "a kind with no settings"
    );
    ensure_eq!(
        store
            .setting(SettingKind::IdentityProvider, "https://app.example/sp")
            .await?,
        None,
        "a key is looked up within its kind"
    );
    ensure_eq!(
        store
            .setting(SettingKind::ServiceProvider, "HTTPS://APP.EXAMPLE/SP")
            .await?,
        None,
        "keys are compared exactly"
    );

    // Update and delete, version-checked.
    let mut read = store
        .setting(SettingKind::ServiceProvider, "https://app.example/sp")
        .await?
        .ok_or_else(|| super::Fail("setting not stored".to_owned()))?;
    read.replace_body(&serde_json::json!({ "enabled": false }), at(5))
        .map_err(|e| super::Fail(e.to_string()))?;
    store.commit(put([read.clone().into()])).await?;
    let updated = store
        .setting(SettingKind::ServiceProvider, "https://app.example/sp")
        .await?;
    ensure_eq!(
        updated.as_ref().map(|s| (s.version, s.body.clone())),
        Some((2, serde_json::json!({ "enabled": false }))),
        "setting after update"
    );
    let mut stale = ChangeSet::new();
    stale.delete(RecordRef::Setting(sp.id, 1));
    ensure!(
        store.commit(stale).await.is_err(),
        "deleting a setting with a stale version must fail"
    );
    let mut delete = ChangeSet::new();
    delete.delete(RecordRef::Setting(sp.id, 2));
    store.commit(delete).await?;
    ensure_eq!(
        store
            .setting(SettingKind::ServiceProvider, "https://app.example/sp")
            .await?,
        None,
        "setting after deletion"
    );
    Ok(())
}

pub(crate) async fn audit_events(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(42);
    let org = f.organization("A");
    let other = f.organization("B");
    let ann = f.identity("ann@acme.example", "Ann", "Lee")?;
    store
        .commit(put([
            org.clone().into(),
            other.clone().into(),
            ann.clone().into(),
        ]))
        .await?;
    let e1 = f.event(Some(org.id), None, at(1));
    let e2 = f.event(Some(org.id), Some(ann.id), at(2));
    let e3 = f.event(Some(other.id), None, at(3));
    let e4 = f.event(None, Some(ann.id), at(4));
    let e5 = f.event(None, None, at(5));
    for event in [&e1, &e2, &e3, &e4, &e5] {
        let mut changes = ciam_core::store::ChangeSet::new();
        changes.event(event.clone());
        store.commit(changes).await?;
    }
    let ids = |found: Vec<ciam_core::store::StoredEvent>| {
        found.into_iter().map(|e| e.event.id).collect::<Vec<_>>()
    };
    let query = |organization, identity, since, until, limit| EventQuery {
        organization,
        identity,
        since,
        until,
        limit,
    };
    ensure_eq!(
        ids(store.events(query(None, None, None, None, 100)).await?),
        vec![e5.id, e4.id, e3.id, e2.id, e1.id],
        "every event, newest first"
    );
    ensure_eq!(
        ids(store.events(query(None, None, None, None, 2)).await?),
        vec![e5.id, e4.id],
        "limited to the newest"
    );
    ensure_eq!(
        ids(store
            .events(query(Some(org.id), None, None, None, 100))
            .await?),
        vec![e2.id, e1.id],
        "by organization"
    );
    ensure_eq!(
        ids(store
            .events(query(None, Some(ann.id), None, None, 100))
            .await?),
        vec![e4.id, e2.id],
        "by identity"
    );
    ensure_eq!(
        ids(store
            .events(query(Some(org.id), Some(ann.id), None, None, 100))
            .await?),
        vec![e2.id],
        "by organization and identity"
    );
    ensure_eq!(
        ids(store
            .events(query(None, None, Some(at(2)), Some(at(4)), 100))
            .await?),
        vec![e3.id, e2.id],
        "since is inclusive, until exclusive"
    );
    ensure_eq!(
        ids(store
            .events(query(
                None,
                None,
                Some(t0() + TimeDelta::days(1)),
                None,
                100
            ))
            .await?),
        Vec::new(),
        "nothing in the future"
    );
    let stored = store.events(query(None, None, None, None, 100)).await?;
    ensure_eq!(
        stored.first().map(|e| e.event.clone()),
        Some(e5.clone()),
        "events are read back whole"
    );
    Ok(())
}
