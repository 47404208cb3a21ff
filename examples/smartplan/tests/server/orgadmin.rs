//! Organization administration through the router: the contact person (Jeremy Mills) and
//! delegates of City Group, every route with good and bad input, CSRF, other organizations'
//! ids (404, nothing changed), and delegates limited to their mandates.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use ciam_core::Principal;
use ciam_core::identities::{Mandate, MembershipStatus};
use ciam_core::ids::{IdentityId, OrganizationId};
use ciam_core::invitations::InvitationStatus;
use ciam_core::organizations::OrganizationUpsert;
use ciam_core::registrations::RequestStatus;
use smartplan::demo::{JEREMY, SCOTT};

use crate::support::*;

const MIA: &str = "mia.member@citygroup.example";
const NINA: &str = "nina.new@citygroup.example";

struct World {
    app: TestApp,
    city: OrganizationId,
    mia: IdentityId,
}

async fn world_on(backend: Backend) -> World {
    let app = build(Options {
        backend,
        ..Options::default()
    })
    .await;
    let city = app.cast().city_group;
    let mia = add_person(&app, city, person(MIA, "Mia", "Member")).await;
    World { app, city, mia }
}

async fn world() -> World {
    world_on(Backend::Memory).await
}

/// Another customer organization with one member, and an invitation there.
async fn other_organization(app: &TestApp) -> (OrganizationId, IdentityId) {
    let other = app
        .state
        .ciam
        .organizations()
        .upsert(
            &Principal::System,
            OrganizationUpsert {
                crm_account_id: "ACC-9999".to_owned(),
                name: "Other Corp".to_owned(),
                kind: ciam_core::organizations::OrgKind::Customer,
                parent_crm_account_id: None,
                email_domains: vec!["other.example".to_owned()],
                suspended: false,
            },
        )
        .await
        .unwrap();
    let olga = add_person(app, other.id, person("olga@other.example", "Olga", "Other")).await;
    (other.id, olga)
}

async fn membership(
    app: &TestApp,
    identity: IdentityId,
    org: OrganizationId,
) -> ciam_core::identities::Membership {
    app.state
        .store
        .membership_of(identity, org)
        .await
        .unwrap()
        .unwrap()
}

async fn role_id(app: &TestApp, key: &str) -> ciam_core::ids::BusinessRoleId {
    app.state
        .store
        .business_role_by_key(key)
        .await
        .unwrap()
        .unwrap()
        .id
}

async fn app_service(app: &TestApp) -> ciam_core::ids::ServiceId {
    app.state
        .store
        .service_by_key(smartplan::demo::APP_SERVICE)
        .await
        .unwrap()
        .unwrap()
        .id
}

async fn signed_in(app: &TestApp, email: &str) -> Client {
    let mut client = app.client();
    client.sign_in_as(email).await;
    client
}

#[tokio::test]
async fn the_overview_shows_contracts_counts_and_mandates() {
    let w = world().await;
    let mut jeremy = signed_in(&w.app, JEREMY).await;
    let page = jeremy.get(&format!("/admin/orgs/{}", w.city)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("City Group, Inc."));
    assert!(page.body.contains("CON-2001"));
    assert!(page.body.contains("SmartPlan Application"));
    assert!(page.body.contains("Contact person"));
    assert!(page.body.contains("/invitations"));
}

#[tokio::test]
async fn signing_in_is_required() {
    let w = world().await;
    let path = format!("/admin/orgs/{}/users", w.city);
    let page = w.app.client().get(&path).await;
    assert!(page.status.is_redirection());
    assert!(page.location().unwrap().starts_with("/signin?next="));
}

#[tokio::test]
async fn people_without_a_mandate_and_other_organizations_get_404() {
    let w = world().await;
    let (other, _) = other_organization(&w.app).await;
    let mut mia = signed_in(&w.app, MIA).await;
    for path in ["", "/users", "/invitations", "/approvals"] {
        let page = mia.get(&format!("/admin/orgs/{}{path}", w.city)).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
    }
    let mut jeremy = signed_in(&w.app, JEREMY).await;
    for path in [
        format!("/admin/orgs/{other}"),
        format!("/admin/orgs/{other}/users"),
        format!("/admin/orgs/{}", w.app.cast().provider),
        "/admin/orgs/not-an-id".to_owned(),
        "/admin/orgs/00000000-0000-4000-8000-000000000000".to_owned(),
    ] {
        let page = jeremy.get(&path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!page.body.contains("Other Corp"));
    }
    let invite = jeremy
        .post_form(
            &format!("/admin/orgs/{other}/invitations"),
            &[("email", "x@other.example")],
        )
        .await;
    assert_eq!(invite.status, StatusCode::NOT_FOUND);
    let open = w
        .app
        .state
        .store
        .invitations_of_organization(other, &[InvitationStatus::Pending], 10)
        .await
        .unwrap();
    assert!(open.is_empty(), "nothing changed");
}

#[tokio::test]
async fn users_can_be_searched_and_filtered_by_status() {
    let w = world().await;
    let mut jeremy = signed_in(&w.app, JEREMY).await;
    let base = format!("/admin/orgs/{}/users", w.city);
    let all = jeremy.get(&base).await;
    assert_eq!(all.status, StatusCode::OK);
    assert!(all.body.contains(MIA));
    assert!(all.body.contains(JEREMY));
    let found = jeremy.get(&format!("{base}?q=mia")).await;
    assert!(found.body.contains(MIA));
    assert!(!found.body.contains(JEREMY));
    let none = jeremy.get(&format!("{base}?q=nobody-at-all")).await;
    assert!(none.body.contains("No users match"));
    let removed = jeremy.get(&format!("{base}?status=removed")).await;
    assert!(!removed.body.contains(MIA));
    let garbage = jeremy.get(&format!("{base}?status=%FF%FE")).await;
    assert_eq!(garbage.status, StatusCode::OK);
}

#[tokio::test]
async fn the_contact_person_assigns_business_roles() {
    let w = world().await;
    let mut jeremy = signed_in(&w.app, JEREMY).await;
    let base = format!("/admin/orgs/{}/users/{}", w.city, w.mia);
    let page = jeremy.get(&base).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Billing viewer"));
    assert!(page.body.contains("Save business roles"));

    let saved = jeremy
        .post_form(&format!("{base}/roles"), &[("role_billing-viewer", "on")])
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let roles = membership(&w.app, w.mia, w.city).await.business_roles;
    assert_eq!(
        roles,
        BTreeSet::from([role_id(&w.app, "billing-viewer").await])
    );

    // Without the CSRF token: refused, nothing changes.
    let forged = jeremy
        .post_form_raw(&format!("{base}/roles"), &[("role_energy-manager", "on")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(
        membership(&w.app, w.mia, w.city).await.business_roles,
        roles
    );

    // Unticking removes.
    jeremy.post_form(&format!("{base}/roles"), &[]).await;
    assert!(
        membership(&w.app, w.mia, w.city)
            .await
            .business_roles
            .is_empty()
    );
}

#[tokio::test]
async fn another_organizations_member_is_not_found_and_unchanged() {
    let w = world().await;
    let (other, olga) = other_organization(&w.app).await;
    let mut jeremy = signed_in(&w.app, JEREMY).await;
    let scott = w.app.cast().scott;
    for identity in [olga, scott] {
        let base = format!("/admin/orgs/{}/users/{identity}", w.city);
        assert_eq!(jeremy.get(&base).await.status, StatusCode::NOT_FOUND);
        let roles = jeremy
            .post_form(&format!("{base}/roles"), &[("role_billing-viewer", "on")])
            .await;
        assert_eq!(roles.status, StatusCode::NOT_FOUND);
        let removed = jeremy.post_form(&format!("{base}/remove"), &[]).await;
        assert_eq!(removed.status, StatusCode::NOT_FOUND);
    }
    // The same member through their own organization's address: still 404 for Jeremy.
    let through_other = jeremy
        .post_form(&format!("/admin/orgs/{other}/users/{olga}/remove"), &[])
        .await;
    assert_eq!(through_other.status, StatusCode::NOT_FOUND);
    let olga_membership = membership(&w.app, olga, other).await;
    assert!(olga_membership.is_active());
    assert!(olga_membership.business_roles.is_empty());
    assert_eq!(
        jeremy
            .get(&format!("/admin/orgs/{}/users/not-an-id", w.city))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn delegating_service_management_limits_the_delegate_to_that_service() {
    let w = world().await;
    let service = app_service(&w.app).await;
    let nina = add_person(&w.app, w.city, person(NINA, "Nina", "New")).await;
    let mut jeremy = signed_in(&w.app, JEREMY).await;
    let mia_page = format!("/admin/orgs/{}/users/{}", w.city, w.mia);
    let page = jeremy.get(&mia_page).await;
    assert!(
        page.body
            .contains("Service manager of SmartPlan Application")
    );
    let delegated = jeremy
        .post_form(
            &format!("{mia_page}/mandates"),
            &[(&*format!("service_{}", smartplan::demo::APP_SERVICE), "on")],
        )
        .await;
    assert_eq!(
        delegated.status,
        StatusCode::SEE_OTHER,
        "{}",
        delegated.body
    );
    assert_eq!(
        membership(&w.app, w.mia, w.city).await.mandates,
        BTreeSet::from([Mandate::ServiceManager(service)])
    );

    // Mia now manages SmartPlan Application's roles, and nothing else.
    let mut mia = signed_in(&w.app, MIA).await;
    assert_eq!(
        mia.get(&format!("/admin/orgs/{}", w.city)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        mia.get(&format!("/admin/orgs/{}/users", w.city))
            .await
            .status,
        StatusCode::OK
    );
    for path in ["/invitations", "/approvals"] {
        let page = mia.get(&format!("/admin/orgs/{}{path}", w.city)).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
    }
    let nina_page = format!("/admin/orgs/{}/users/{nina}", w.city);
    let page = mia.get(&nina_page).await;
    assert!(page.body.contains("outside your mandate"), "{}", page.body);
    let assigned = mia
        .post_form(
            &format!("{nina_page}/roles"),
            &[("role_energy-manager", "on")],
        )
        .await;
    assert_eq!(assigned.status, StatusCode::SEE_OTHER, "{}", assigned.body);
    assert_eq!(
        membership(&w.app, nina, w.city).await.business_roles,
        BTreeSet::from([role_id(&w.app, "energy-manager").await])
    );
    // UserManager is beyond her: the box is ignored; she may pass on her own service.
    let escalate = mia
        .post_form(
            &format!("{nina_page}/mandates"),
            &[
                ("user_manager", "on"),
                (&*format!("service_{}", smartplan::demo::APP_SERVICE), "on"),
            ],
        )
        .await;
    assert_eq!(escalate.status, StatusCode::SEE_OTHER);
    assert_eq!(
        membership(&w.app, nina, w.city).await.mandates,
        BTreeSet::from([Mandate::ServiceManager(service)])
    );
    // She may not remove people or invite them.
    let removed = mia.post_form(&format!("{nina_page}/remove"), &[]).await;
    assert_eq!(removed.status, StatusCode::FORBIDDEN);
    assert!(membership(&w.app, nina, w.city).await.is_active());
    let invited = mia
        .post_form(
            &format!("/admin/orgs/{}/invitations", w.city),
            &[("email", "x@citygroup.example")],
        )
        .await;
    assert_eq!(invited.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_member_is_removed_but_nobody_removes_themselves() {
    let w = world().await;
    let mut jeremy = signed_in(&w.app, JEREMY).await;
    let removed = jeremy
        .post_form(
            &format!("/admin/orgs/{}/users/{}/remove", w.city, w.mia),
            &[],
        )
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.body);
    assert_eq!(
        membership(&w.app, w.mia, w.city).await.status,
        MembershipStatus::Removed
    );
    let jeremy_id = w.app.cast().jeremy.unwrap();
    let myself = jeremy
        .post_form(
            &format!("/admin/orgs/{}/users/{jeremy_id}/remove", w.city),
            &[],
        )
        .await;
    assert_eq!(myself.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(membership(&w.app, jeremy_id, w.city).await.is_active());
}

#[tokio::test]
async fn join_requests_are_approved_and_rejected() {
    let w = world().await;
    let first = join_request(&w.app, "first.joiner@citygroup.example").await;
    let second = join_request(&w.app, "second.joiner@citygroup.example").await;
    let mut jeremy = signed_in(&w.app, JEREMY).await;

    // The link in ciam-core's mail.
    let chooser = jeremy.get("/admin/approvals").await;
    assert_eq!(
        chooser.location(),
        Some(&*format!("/admin/orgs/{}/approvals", w.city))
    );
    let page = jeremy
        .get(&format!("/admin/orgs/{}/approvals", w.city))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("first.joiner@citygroup.example"));

    let action =
        |id: ciam_core::ids::JoinRequestId| format!("/admin/orgs/{}/approvals/{id}", w.city);
    let nothing = jeremy.post_form(&action(first.id), &[]).await;
    assert_eq!(nothing.status, StatusCode::UNPROCESSABLE_ENTITY);
    let forged = jeremy
        .post_form_raw(&action(first.id), &[("decision", "approve")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let app = &w.app;
    let status = |id| async move {
        app.state
            .ciam
            .registrations()
            .join_request(id)
            .await
            .unwrap()
            .status
    };
    assert_eq!(status(first.id).await, RequestStatus::PendingApproval);

    let approved = jeremy
        .post_form(&action(first.id), &[("decision", "approve")])
        .await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
    assert!(matches!(
        status(first.id).await,
        RequestStatus::Approved { .. }
    ));
    let again = jeremy
        .post_form(&action(first.id), &[("decision", "approve")])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    let rejected = jeremy
        .post_form(
            &action(second.id),
            &[("decision", "reject"), ("reason", "not one of ours")],
        )
        .await;
    assert_eq!(rejected.status, StatusCode::SEE_OTHER);
    assert!(
        matches!(status(second.id).await, RequestStatus::Rejected { reason, .. } if reason == "not one of ours")
    );

    // Unknown ids and a plain member.
    let unknown = jeremy
        .post_form(
            &format!(
                "/admin/orgs/{}/approvals/00000000-0000-4000-8000-000000000000",
                w.city
            ),
            &[("decision", "approve")],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let mut mia = signed_in(&w.app, MIA).await;
    assert_eq!(
        mia.get("/admin/approvals").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_join_request_of_another_organization_is_not_found() {
    let w = world().await;
    let (other, _) = other_organization(&w.app).await;
    let foreign = join_request(&w.app, "someone@other.example").await;
    assert_eq!(foreign.organization, other);
    let mut jeremy = signed_in(&w.app, JEREMY).await;
    let decided = jeremy
        .post_form(
            &format!("/admin/orgs/{}/approvals/{}", w.city, foreign.id),
            &[("decision", "approve")],
        )
        .await;
    assert_eq!(decided.status, StatusCode::NOT_FOUND);
    let still = w
        .app
        .state
        .ciam
        .registrations()
        .join_request(foreign.id)
        .await
        .unwrap();
    assert_eq!(still.status, RequestStatus::PendingApproval);
}

#[tokio::test]
async fn one_invitation_is_sent_and_bad_input_keeps_what_was_typed() {
    let w = world().await;
    let mut jeremy = signed_in(&w.app, JEREMY).await;
    let base = format!("/admin/orgs/{}/invitations", w.city);
    let page = jeremy.get(&base).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Invite one person"));
    assert!(page.body.contains("lena.lead@citygroup.example"));

    let bad = jeremy
        .post_form(
            &base,
            &[
                ("email", "not an email"),
                ("given_name", "Nora"),
                ("family_name", "Typed"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("not a valid email address"));
    assert!(bad.body.contains("value=\"Nora\""));
    assert!(bad.body.contains("value=\"not an email\""));
    assert!(bad.body.contains("aria-describedby=\"error-email\""));

    let member = jeremy.post_form(&base, &[("email", MIA)]).await;
    assert_eq!(member.status, StatusCode::CONFLICT);
    assert!(member.body.contains(MIA));

    let forged = jeremy
        .post_form_raw(&base, &[("email", "nora@citygroup.example")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(w.app.mail.latest_to("nora@citygroup.example").is_none());

    let sent = jeremy
        .post_form(
            &base,
            &[
                ("email", "nora@citygroup.example"),
                ("given_name", "Nora"),
                ("family_name", "Nova"),
                ("role_energy-manager", "on"),
            ],
        )
        .await;
    assert_eq!(
        sent.status,
        StatusCode::SEE_OTHER,
        "{}",
        &sent.body[sent.body.find("<main").unwrap_or(0)..]
    );
    assert!(w.app.mail.latest_to("nora@citygroup.example").is_some());
    let open = w
        .app
        .state
        .store
        .invitations_of_organization(w.city, &[InvitationStatus::Pending], 50)
        .await
        .unwrap();
    let nora = open
        .iter()
        .find(|i| i.email.as_str() == "nora@citygroup.example")
        .unwrap();
    assert_eq!(
        nora.business_roles,
        BTreeSet::from([role_id(&w.app, "energy-manager").await])
    );
}

#[tokio::test]
async fn a_csv_batch_answers_every_line() {
    let w = world().await;
    let mut jeremy = signed_in(&w.app, JEREMY).await;
    let base = format!("/admin/orgs/{}/invitations/batch", w.city);
    let csv = format!(
        "email,given_name,family_name,business_roles\n\
         ann@citygroup.example,Ann,One,Energy manager\n\
         not-an-email,Bad,Row,\n\
         ann@citygroup.example,Ann,Again,\n\
         {MIA},Mia,Member,\n\
         bob@citygroup.example,Bob,Two,no-such-role\n\
         a,b,c,d,e\n"
    );
    let result = jeremy.post_form(&base, &[("csv", &csv)]).await;
    assert_eq!(result.status, StatusCode::OK, "{}", result.body);
    let body = &result.body;
    assert!(body.contains("Result of the batch"));
    assert!(body.contains("1 of 6 lines invited"), "{body}");
    assert!(body.contains("Invalid email"));
    assert!(body.contains("The same email is on line 2"), "{body}");
    assert!(body.contains("Already a member"));
    assert!(body.contains("no-such-role"));
    assert!(body.contains("too many columns"));
    assert!(w.app.mail.latest_to("ann@citygroup.example").is_some());
    assert!(w.app.mail.latest_to("bob@citygroup.example").is_none());

    let empty = jeremy.post_form(&base, &[("csv", "  \n")]).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(empty.body.contains("no lines to invite"));
    let forged = jeremy
        .post_form_raw(&base, &[("csv", "cara@citygroup.example")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(w.app.mail.latest_to("cara@citygroup.example").is_none());
}

#[tokio::test]
async fn invitations_are_resent_and_revoked_only_in_their_organization() {
    let w = world().await;
    let (other, _) = other_organization(&w.app).await;
    let mut jeremy = signed_in(&w.app, JEREMY).await;
    let base = format!("/admin/orgs/{}/invitations", w.city);
    jeremy
        .post_form(&base, &[("email", "rita@citygroup.example")])
        .await;
    let app = &w.app;
    let find = |org| async move {
        app.state
            .store
            .invitations_of_organization(
                org,
                &[InvitationStatus::Pending, InvitationStatus::Revoked],
                50,
            )
            .await
            .unwrap()
    };
    let rita = find(w.city)
        .await
        .into_iter()
        .find(|i| i.email.as_str() == "rita@citygroup.example")
        .unwrap();
    let mails_before = w.app.mail.messages().len();
    let resent = jeremy
        .post_form(&format!("{base}/{}/resend", rita.id), &[])
        .await;
    assert_eq!(resent.status, StatusCode::SEE_OTHER, "{}", resent.body);
    assert_eq!(w.app.mail.messages().len(), mails_before + 1);

    let foreign = w
        .app
        .state
        .ciam
        .invitations()
        .invite(
            &Principal::System,
            other,
            person("oscar@other.example", "Oscar", "O"),
        )
        .await
        .unwrap()
        .invitation;
    for action in ["resend", "revoke"] {
        let page = jeremy
            .post_form(&format!("{base}/{}/{action}", foreign.id), &[])
            .await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{action}");
    }
    let foreign_now = w
        .app
        .state
        .store
        .invitation(foreign.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(foreign_now.status, InvitationStatus::Pending);

    let forged = jeremy
        .post_form_raw(&format!("{base}/{}/revoke", rita.id), &[])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let revoked = jeremy
        .post_form(&format!("{base}/{}/revoke", rita.id), &[])
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    let rita_now = w
        .app
        .state
        .store
        .invitation(rita.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rita_now.status, InvitationStatus::Revoked);
    let again = jeremy
        .post_form(&format!("{base}/{}/resend", rita.id), &[])
        .await;
    assert!(again.status.is_client_error(), "{}", again.status);
}

#[tokio::test]
async fn staff_without_a_mandate_in_the_organization_still_see_it_read_only() {
    let w = world().await;
    let mut scott = signed_in(&w.app, SCOTT).await;
    let page = scott.get(&format!("/admin/orgs/{}", w.city)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        scott.get("/admin/approvals").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn delegation_and_invitations_on_sqlite() {
    let w = world_on(Backend::Sqlite).await;
    let mut jeremy = signed_in(&w.app, JEREMY).await;
    let delegated = jeremy
        .post_form(
            &format!("/admin/orgs/{}/users/{}/mandates", w.city, w.mia),
            &[("user_manager", "on")],
        )
        .await;
    assert_eq!(
        delegated.status,
        StatusCode::SEE_OTHER,
        "{}",
        delegated.body
    );
    assert_eq!(
        membership(&w.app, w.mia, w.city).await.mandates,
        BTreeSet::from([Mandate::UserManager])
    );
    let mut mia = signed_in(&w.app, MIA).await;
    let invited = mia
        .post_form(
            &format!("/admin/orgs/{}/invitations", w.city),
            &[("email", "sam@citygroup.example")],
        )
        .await;
    assert_eq!(invited.status, StatusCode::SEE_OTHER, "{}", invited.body);
    // A user manager cannot hand out service management.
    let page = mia
        .get(&format!(
            "/admin/orgs/{}/users/{}",
            w.city,
            w.app.cast().jeremy.unwrap()
        ))
        .await;
    assert!(page.body.contains("outside your mandate"));
}
