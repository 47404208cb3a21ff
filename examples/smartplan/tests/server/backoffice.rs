//! The back office through the router: staff roles decide what is shown (BackOffice approves
//! registrations and reviews held invitations; AccountManager creates organizations and invites
//! contact persons; CustomerService searches users; Administrator everything); people without a
//! staff role get 404; bad input changes nothing.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use ciam_core::Principal;
use ciam_core::identities::StaffRole;
use ciam_core::invitations::{InvitationKind, InvitationRequest, InvitationStatus};
use ciam_core::organizations::OrgStatus;
use ciam_core::registrations::RequestStatus;
use smartplan::demo::{BETTY, JEREMY, JeremyAs, SCOTT, SeedOptions};

use crate::support::*;

const CAROL: &str = "carol.service@smartplan.example";
const ADA: &str = "ada.admin@smartplan.example";

async fn with_staff(app: &TestApp, email: &str, role: StaffRole) {
    add_person(
        app,
        app.cast().provider,
        InvitationRequest {
            staff_roles: BTreeSet::from([role]),
            ..person(email, "Staff", "Person")
        },
    )
    .await;
}

async fn signed_in(app: &TestApp, email: &str) -> Client {
    let mut client = app.client();
    client.sign_in_as(email).await;
    client
}

const PAGES: [&str; 6] = [
    "/backoffice",
    "/backoffice/organizations",
    "/backoffice/registrations",
    "/backoffice/users?q=jeremy",
    "/backoffice/invitations",
    "/backoffice/audit",
];

#[tokio::test]
async fn people_without_a_staff_role_get_404_everywhere() {
    let app = app_default().await;
    let mut jeremy = signed_in(&app, JEREMY).await;
    for path in PAGES {
        assert_eq!(
            jeremy.get(path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let city = app.cast().city_group;
    let page = jeremy
        .get(&format!("/backoffice/organizations/{city}"))
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let post = jeremy
        .post_form(
            &format!("/backoffice/organizations/{city}/contact-person"),
            &[("email", "x@citygroup.example")],
        )
        .await;
    assert_eq!(post.status, StatusCode::NOT_FOUND);
    let anonymous = app.client().get("/backoffice").await;
    assert!(anonymous.status.is_redirection());
}

#[tokio::test]
async fn staff_roles_decide_what_is_shown() {
    let app = app_default().await;
    with_staff(&app, CAROL, StaffRole::CustomerService).await;
    with_staff(&app, ADA, StaffRole::Administrator).await;

    // Scott, account manager: organizations, no registration queue, no user search.
    let mut scott = signed_in(&app, SCOTT).await;
    let dashboard = scott.get("/backoffice").await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(dashboard.body.contains("AccountManager"));
    assert!(!dashboard.body.contains("Review registrations"));
    assert!(dashboard.body.contains("Find or create an organization"));
    assert_eq!(
        scott.get("/backoffice/registrations").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        scott.get("/backoffice/users?q=a").await.status,
        StatusCode::FORBIDDEN
    );

    // Betty, back office: the queue and held invitations; no organization creation.
    let mut betty = signed_in(&app, BETTY).await;
    let dashboard = betty.get("/backoffice").await;
    assert!(
        dashboard.body.contains("1 organizations waiting"),
        "{}",
        dashboard.body
    );
    assert!(dashboard.body.contains("Review registrations"));
    let orgs = betty.get("/backoffice/organizations").await;
    assert!(!orgs.body.contains("Create organization"));

    // Carol, customer service: user search.
    let mut carol = signed_in(&app, CAROL).await;
    assert_eq!(carol.get("/backoffice/users").await.status, StatusCode::OK);
    assert_eq!(
        carol.get("/backoffice/registrations").await.status,
        StatusCode::FORBIDDEN
    );

    // Ada, administrator: everything.
    let mut ada = signed_in(&app, ADA).await;
    for path in PAGES {
        assert_eq!(ada.get(path).await.status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn organizations_are_listed_searched_and_shown() {
    let app = app_default().await;
    let mut scott = signed_in(&app, SCOTT).await;
    let list = scott.get("/backoffice/organizations").await;
    assert!(list.body.contains("City Group, Inc."));
    let found = scott.get("/backoffice/organizations?q=city").await;
    assert!(found.body.contains("City Group, Inc."));
    assert!(!found.body.contains("KOKO"));
    let none = scott.get("/backoffice/organizations?q=zzz-nothing").await;
    assert!(none.body.contains("No organization matches"));

    let city = app.cast().city_group;
    let page = scott
        .get(&format!("/backoffice/organizations/{city}"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    for text in [
        "CON-2001",
        "SmartPlan Application",
        JEREMY,
        "Invite contact person",
        "ACC-1001",
    ] {
        assert!(page.body.contains(text), "{text}");
    }
    for path in [
        "/backoffice/organizations/not-an-id".to_owned(),
        "/backoffice/organizations/00000000-0000-4000-8000-000000000000".to_owned(),
        format!("/backoffice/organizations/{}", app.cast().provider),
    ] {
        assert_eq!(
            scott.get(&path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[tokio::test]
async fn scott_invites_jeremy_as_city_groups_contact_person() {
    let app = build(Options {
        seed: Some(SeedOptions {
            jeremy: JeremyAs::NotYetInvited,
            ..SeedOptions::default()
        }),
        ..Options::default()
    })
    .await;
    let city = app.cast().city_group;
    let mut scott = signed_in(&app, SCOTT).await;
    let path = format!("/backoffice/organizations/{city}/contact-person");

    let bad = scott
        .post_form(
            &path,
            &[("email", "jeremy at city"), ("given_name", "Jeremy")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("not a valid email address"));
    assert!(bad.body.contains("value=\"Jeremy\""));
    let forged = scott.post_form_raw(&path, &[("email", JEREMY)]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(app.mail.latest_to(JEREMY).is_none());

    let sent = scott
        .post_form(
            &path,
            &[
                ("email", JEREMY),
                ("given_name", "Jeremy"),
                ("family_name", "Mills"),
                ("role_energy-manager", "on"),
            ],
        )
        .await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    let mail = app.mail.latest_to(JEREMY).expect("the invitation mail");
    assert!(mail.text.contains("/invitations/accept?token="));
    let invitations = app
        .state
        .store
        .invitations_of_organization(city, &[InvitationStatus::Pending], 10)
        .await
        .unwrap();
    let jeremy = invitations
        .iter()
        .find(|i| i.email.as_str() == JEREMY)
        .unwrap();
    assert_eq!(jeremy.kind, InvitationKind::ContactPerson);
    // The ticked business role comes with the invitation.
    let energy_manager = app
        .state
        .store
        .business_roles()
        .await
        .unwrap()
        .into_iter()
        .find(|role| role.key == "energy-manager")
        .unwrap();
    assert_eq!(
        jeremy.business_roles.iter().collect::<Vec<_>>(),
        vec![&energy_manager.id]
    );

    // Twice: a clear message, no second invitation.
    let again = scott.post_form(&path, &[("email", JEREMY)]).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(again.body.contains(JEREMY));

    // Betty (back office) may not invite.
    let mut betty = signed_in(&app, BETTY).await;
    let refused = betty
        .post_form(&path, &[("email", "x@citygroup.example")])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_account_manager_creates_an_organization() {
    let app = app_default().await;
    let mut scott = signed_in(&app, SCOTT).await;
    let missing = scott
        .post_form("/backoffice/organizations", &[("name", "Acme Energy")])
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(missing.body.contains("enter the CRM account id"));
    assert!(missing.body.contains("value=\"Acme Energy\""));
    let duplicate = scott
        .post_form(
            "/backoffice/organizations",
            &[("name", "Acme Energy"), ("crm_account_id", "ACC-1001")],
        )
        .await;
    assert_eq!(duplicate.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(duplicate.body.contains("exists already"));
    let city = app
        .state
        .store
        .organization(app.cast().city_group)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(city.name, "City Group, Inc.");

    let created = scott
        .post_form(
            "/backoffice/organizations",
            &[
                ("name", "Acme Energy"),
                ("crm_account_id", "ACC-2002"),
                ("email_domain", "acme.example"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let acme = app
        .state
        .store
        .organization_by_crm_account("ACC-2002")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        created.location(),
        Some(&*format!("/backoffice/organizations/{}", acme.id))
    );

    let mut betty = signed_in(&app, BETTY).await;
    let refused = betty
        .post_form(
            "/backoffice/organizations",
            &[("name", "Nope"), ("crm_account_id", "ACC-3003")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

async fn koko(app: &TestApp) -> ciam_core::registrations::OrgRegistration {
    app.state
        .ciam
        .registrations()
        .pending_registrations(&Principal::System, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.organization_name == "KOKO Media Inc.")
        .expect("KOKO Media's registration")
}

#[tokio::test]
async fn back_office_approves_a_registration() {
    let app = app_default().await;
    let registration = koko(&app).await;
    let mut betty = signed_in(&app, BETTY).await;
    let queue = betty.get("/backoffice/registrations").await;
    assert_eq!(queue.status, StatusCode::OK);
    assert!(queue.body.contains("KOKO Media Inc."));
    assert!(queue.body.contains("karl.kearnes@kokomedia.example"));

    let path = format!("/backoffice/registrations/{}", registration.id);
    let forged = betty.post_form_raw(&path, &[("decision", "approve")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let nothing = betty.post_form(&path, &[("decision", "maybe")]).await;
    assert_eq!(nothing.status, StatusCode::UNPROCESSABLE_ENTITY);
    let no_reason = betty
        .post_form(&path, &[("decision", "reject"), ("reason", "  ")])
        .await;
    assert_eq!(no_reason.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(no_reason.body.contains("give a reason"));
    assert_eq!(koko(&app).await.status, RequestStatus::PendingApproval);

    let approved = betty.post_form(&path, &[("decision", "approve")]).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
    let decided = app
        .state
        .ciam
        .registrations()
        .registration(registration.id)
        .await
        .unwrap();
    assert!(matches!(decided.status, RequestStatus::Approved { .. }));
    let org = app
        .state
        .store
        .organization(decided.organization.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(org.status, OrgStatus::Active);
    let again = betty.post_form(&path, &[("decision", "approve")]).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let unknown = betty
        .post_form(
            "/backoffice/registrations/00000000-0000-4000-8000-000000000000",
            &[("decision", "approve")],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn back_office_rejects_a_registration_with_a_reason_on_sqlite() {
    let app = build(Options {
        backend: Backend::Sqlite,
        ..Options::default()
    })
    .await;
    let registration = koko(&app).await;
    let mut betty = signed_in(&app, BETTY).await;
    let rejected = betty
        .post_form(
            &format!("/backoffice/registrations/{}", registration.id),
            &[("decision", "reject"), ("reason", "no contract with us")],
        )
        .await;
    assert_eq!(rejected.status, StatusCode::SEE_OTHER, "{}", rejected.body);
    let decided = app
        .state
        .ciam
        .registrations()
        .registration(registration.id)
        .await
        .unwrap();
    assert!(
        matches!(decided.status, RequestStatus::Rejected { reason, .. } if reason == "no contract with us")
    );
}

#[tokio::test]
async fn users_are_searched_across_organizations() {
    let app = app_default().await;
    with_staff(&app, CAROL, StaffRole::CustomerService).await;
    let mut carol = signed_in(&app, CAROL).await;
    let found = carol.get("/backoffice/users?q=jeremy").await;
    assert_eq!(found.status, StatusCode::OK);
    assert!(found.body.contains(JEREMY));
    assert!(found.body.contains("City Group, Inc."));
    let nobody = carol.get("/backoffice/users?q=zzzz").await;
    assert!(nobody.body.contains("Nobody matches"));
    let too_long = carol
        .get(&format!("/backoffice/users?q={}", "a".repeat(300)))
        .await;
    assert_eq!(too_long.status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn held_invitation(app: &TestApp, email: &str, lead: &str) -> ciam_core::ids::InvitationId {
    let issued = app
        .state
        .ciam
        .invitations()
        .invite(
            &Principal::System,
            app.cast().city_group,
            InvitationRequest {
                crm_lead_id: Some(lead.to_owned()),
                ..person(email, "Webmail", "Lead")
            },
        )
        .await
        .unwrap();
    assert_eq!(issued.invitation.status, InvitationStatus::HeldForReview);
    issued.invitation.id
}

#[tokio::test]
async fn held_invitations_are_released_or_revoked() {
    let app = app_default().await;
    let first = held_invitation(&app, "lead.one@gmail.com", "LEAD-901").await;
    let second = held_invitation(&app, "lead.two@gmail.com", "LEAD-902").await;
    let mut betty = signed_in(&app, BETTY).await;
    let page = betty.get("/backoffice/invitations").await;
    assert!(page.body.contains("lead.one@gmail.com"));
    assert!(page.body.contains("City Group, Inc."));

    let forged = betty
        .post_form_raw(&format!("/backoffice/invitations/{first}/release"), &[])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(app.mail.latest_to("lead.one@gmail.com").is_none());

    let released = betty
        .post_form(&format!("/backoffice/invitations/{first}/release"), &[])
        .await;
    assert_eq!(released.status, StatusCode::SEE_OTHER, "{}", released.body);
    assert!(app.mail.latest_to("lead.one@gmail.com").is_some());
    let again = betty
        .post_form(&format!("/backoffice/invitations/{first}/release"), &[])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    let revoked = betty
        .post_form(&format!("/backoffice/invitations/{second}/revoke"), &[])
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    let second_now = app.state.store.invitation(second).await.unwrap().unwrap();
    assert_eq!(second_now.status, InvitationStatus::Revoked);
    assert!(app.mail.latest_to("lead.two@gmail.com").is_none());

    let unknown = betty
        .post_form("/backoffice/invitations/not-an-id/release", &[])
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let mut scott = signed_in(&app, SCOTT).await;
    assert_eq!(
        scott.get("/backoffice/invitations").await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn the_audit_log_filters_by_organization_and_person_and_pages() {
    let app = app_default().await;
    let mut betty = signed_in(&app, BETTY).await;
    let all = betty.get("/backoffice/audit").await;
    assert_eq!(all.status, StatusCode::OK);
    assert!(all.body.contains("Events, newest first"));
    let city = app.cast().city_group;
    let filtered = betty
        .get(&format!("/backoffice/audit?organization={city}"))
        .await;
    assert_eq!(filtered.status, StatusCode::OK);
    assert!(filtered.body.contains("City Group, Inc."));
    assert!(!filtered.body.contains("<td>KOKO Media Inc.</td>"));
    let by_person = betty
        .get(&format!("/backoffice/audit?person={}", url_encode(JEREMY)))
        .await;
    assert_eq!(by_person.status, StatusCode::OK);
    assert!(by_person.body.contains(JEREMY));
    let bad = betty.get("/backoffice/audit?organization=nope").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let nobody = betty
        .get("/backoffice/audit?person=nobody%40nowhere.example")
        .await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND);

    // Enough events for a second page.
    for n in 0..60 {
        app.state
            .ciam
            .invitations()
            .invite(
                &Principal::System,
                city,
                person(&format!("p{n}@citygroup.example"), "P", "N"),
            )
            .await
            .unwrap();
    }
    let first = betty.get("/backoffice/audit").await;
    assert!(first.body.contains("Older events"));
    let second = betty.get("/backoffice/audit?page=2").await;
    assert_eq!(second.status, StatusCode::OK);
    assert!(second.body.contains("Newer events"));
}

fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
