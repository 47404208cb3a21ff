//! The initial user import: rows land whole or not at all, a rerun changes nothing, bad rows
//! are reported and change nothing, imported password hashes sign in and are upgraded.

use ciam_core::Principal;
use ciam_core::credentials::{CredentialKind, Password};
use ciam_core::events::EventKind;
use ciam_core::imports::files::{Format, rows};
use ciam_core::imports::{ImportMode, RowError, RowOutcome, RowReport};
use ciam_core::login::LoginStep;
use ciam_core::store::{PageRequest, Store};

use crate::login::{auth_ciam, with_password};
use crate::support::World;

const HEADER: &str =
    "email,given_name,family_name,phone,organization,business_roles,password_hash\n";

async fn import(
    world: &World,
    principal: &Principal,
    text: &str,
    mode: ImportMode,
) -> Vec<RowReport> {
    let mut imports = world.ciam.imports();
    let read: Vec<_> = rows(text.as_bytes(), Format::Csv).collect();
    imports.import_chunk(principal, read, mode).await.unwrap()
}

fn email(text: &str) -> ciam_core::contact::EmailAddress {
    ciam_core::contact::EmailAddress::parse(text).unwrap()
}

fn outcomes(reports: &[RowReport]) -> Vec<&'static str> {
    reports.iter().map(|r| r.outcome.name()).collect()
}

async fn member_count(world: &World, org: ciam_core::ids::OrganizationId) -> usize {
    world
        .store
        .members_of_organization(org, PageRequest::first(500))
        .await
        .unwrap()
        .items
        .len()
}

#[tokio::test]
async fn good_rows_land_bad_rows_are_reported_and_a_rerun_changes_nothing() {
    let world = World::new().await;
    let city = world.city_group().await;
    let bcrypt_hash = bcrypt::hash("imported from the old portal", 4).unwrap();
    let text = format!(
        "{HEADER}\
         anna.berg@citygroup.example,Anna,Berg,+358401110001,ACC-1001,energy-manager,{bcrypt_hash}\n\
         not-an-email,Bad,Email,,ACC-1001,,\n\
         carl@citygroup.example,Carl,Nobody,,ACC-404,,\n\
         dina@citygroup.example,Dina,Role,,ACC-1001,no-such-role,\n\
         erik@citygroup.example,Erik,Hash,,ACC-1001,,md5:abcdef\n\
         frida@citygroup.example,Frida,Phone,12345,ACC-1001,,\n\
         gus@citygroup.example,Gus,Short\n\
         Hanna@CityGroup.example,Hanna,Holm,,ACC-1001,,\n\
         hanna@citygroup.example,Hanna,Again,,ACC-1001,,\n"
    );
    let reports = import(&world, &world.customer_service, &text, ImportMode::Apply).await;
    assert_eq!(
        outcomes(&reports),
        vec![
            "created",
            "rejected",
            "rejected",
            "rejected",
            "rejected",
            "rejected",
            "rejected",
            "created",
            "unchanged"
        ]
    );
    assert_eq!(
        reports.iter().map(|r| r.line).collect::<Vec<_>>(),
        (2..=10).collect::<Vec<u64>>(),
        "each report names its line"
    );
    assert!(matches!(
        reports[1].outcome,
        RowOutcome::Rejected(RowError::Invalid(_))
    ));
    assert!(matches!(
        &reports[2].outcome,
        RowOutcome::Rejected(RowError::UnknownOrganization(acc)) if acc == "ACC-404"
    ));
    assert!(matches!(
        &reports[3].outcome,
        RowOutcome::Rejected(RowError::UnknownBusinessRole(key)) if key == "no-such-role"
    ));
    assert!(matches!(
        reports[4].outcome,
        RowOutcome::Rejected(RowError::PasswordHash)
    ));
    assert!(matches!(
        reports[5].outcome,
        RowOutcome::Rejected(RowError::Invalid(_))
    ));
    assert!(matches!(
        reports[6].outcome,
        RowOutcome::Rejected(RowError::Unreadable(_))
    ));

    // Exactly the two good people are in City Group, whole: identity, membership with the
    // role, and the imported hash.
    assert_eq!(member_count(&world, city.id).await, 2);
    let anna = world
        .store
        .identity_by_email(&email("anna.berg@citygroup.example"))
        .await
        .unwrap()
        .unwrap();
    assert!(anna.is_active() && anna.email_verified && !anna.phone_verified);
    let membership = world
        .store
        .membership_of(anna.id, city.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(membership.business_roles.len(), 1);
    let credentials = world.store.credentials_of_identity(anna.id).await.unwrap();
    assert!(credentials.iter().any(|c| matches!(
        &c.kind,
        CredentialKind::Password { hash } if hash.as_str().starts_with("$2b$")
    )));
    for rejected in [
        "dina@citygroup.example",
        "erik@citygroup.example",
        "frida@citygroup.example",
    ] {
        assert!(
            world
                .store
                .identity_by_email(&email(rejected))
                .await
                .unwrap()
                .is_none(),
            "a rejected row changes nothing: {rejected}"
        );
    }
    let imported_events = world
        .events()
        .await
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::UsersImported { .. }))
        .count();
    assert!(
        imported_events >= 1,
        "each written chunk leaves an audit event"
    );

    // The same file again: nothing new.
    let again = import(&world, &world.customer_service, &text, ImportMode::Apply).await;
    assert_eq!(
        outcomes(&again),
        vec![
            "unchanged",
            "rejected",
            "rejected",
            "rejected",
            "rejected",
            "rejected",
            "rejected",
            "unchanged",
            "unchanged"
        ]
    );
    assert_eq!(member_count(&world, city.id).await, 2);

    // The imported bcrypt hash signs in and is replaced by argon2id.
    let ciam = auth_ciam(&world, None);
    let step = with_password(
        &ciam,
        "anna.berg@citygroup.example",
        &Password::new("imported from the old portal"),
    )
    .await
    .unwrap();
    assert!(matches!(
        step,
        LoginStep::SignedIn(_) | LoginStep::SecondFactor { .. }
    ));
    let credentials = world.store.credentials_of_identity(anna.id).await.unwrap();
    assert!(credentials.iter().any(|c| matches!(
        &c.kind,
        CredentialKind::Password { hash } if hash.as_str().starts_with("$argon2id$")
    )));
}

#[tokio::test]
async fn an_existing_person_joins_another_organization_and_a_dry_run_writes_nothing() {
    let world = World::new().await;
    let city = world.city_group().await;
    let first = format!("{HEADER}ola@partner.example,Ola,Nord,,ACC-1001,,\n");
    assert_eq!(
        outcomes(&import(&world, &world.customer_service, &first, ImportMode::Apply).await),
        vec!["created"]
    );
    // A second organization for the same person.
    world
        .ciam
        .organizations()
        .upsert(
            &world.scott,
            ciam_core::organizations::OrganizationUpsert {
                crm_account_id: "ACC-2002".into(),
                name: "KOKO Media Inc.".into(),
                kind: ciam_core::organizations::OrgKind::Customer,
                parent_crm_account_id: None,
                email_domains: vec![],
                suspended: false,
            },
        )
        .await
        .unwrap();
    let koko = world
        .store
        .organization_by_crm_account("ACC-2002")
        .await
        .unwrap()
        .unwrap();
    let second = format!(
        "{HEADER}ola@partner.example,Ola,Nord,,ACC-2002,,\nnew@koko.example,New,Person,,ACC-2002,,\n"
    );
    let events_before = world.events().await.len();
    let dry = import(&world, &world.customer_service, &second, ImportMode::DryRun).await;
    assert_eq!(outcomes(&dry), vec!["would_add", "would_create"]);
    assert_eq!(
        member_count(&world, koko.id).await,
        0,
        "a dry run writes nothing"
    );
    assert_eq!(world.events().await.len(), events_before);

    let applied = import(&world, &world.customer_service, &second, ImportMode::Apply).await;
    assert_eq!(outcomes(&applied), vec!["added", "created"]);
    assert_eq!(member_count(&world, koko.id).await, 2);
    assert_eq!(member_count(&world, city.id).await, 1);
}

#[tokio::test]
async fn only_those_who_may_add_members_can_import() {
    let world = World::new().await;
    world.city_group().await;
    let text = format!("{HEADER}someone@citygroup.example,Some,One,,ACC-1001,,\n");
    let mut imports = world.ciam.imports();
    let read: Vec<_> = rows(text.as_bytes(), Format::Csv).collect();
    assert!(
        imports
            .import_chunk(&Principal::Anonymous, read, ImportMode::Apply)
            .await
            .is_err()
    );
    // Back office approves registrations but does not manage customers' users.
    let reports = import(&world, &world.back_office, &text, ImportMode::Apply).await;
    assert!(matches!(
        reports[0].outcome,
        RowOutcome::Rejected(RowError::Denied(_))
    ));
    assert!(
        world
            .store
            .identity_by_email(&email("someone@citygroup.example"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_chunk_is_bounded() {
    let world = World::new().await;
    let rows: Vec<_> = (0..=ciam_core::imports::MAX_CHUNK_ROWS as u64)
        .map(|line| Err((line, "x".to_owned())))
        .collect();
    assert!(
        world
            .ciam
            .imports()
            .import_chunk(&world.customer_service, rows, ImportMode::Apply)
            .await
            .is_err()
    );
}
