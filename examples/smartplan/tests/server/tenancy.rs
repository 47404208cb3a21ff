//! Mass assignment and IDOR, case by case: a client cannot set what it does not own (the
//! organization of a member, its own mandates, roles of a service outside its mandate, fields
//! the pages and the CRM API do not offer) and cannot read or change another organization's
//! people by putting their ids into its own addresses. Each test asserts the concrete answer
//! and reads the store afterwards to show that nothing changed. The property over random
//! worlds is in `isolation`.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use ciam_core::Principal;
use ciam_core::authz::{DenyReason, IntegrationScope};
use ciam_core::identities::AdministrationError;
use ciam_core::identities::{Mandate, Membership, MembershipStatus};
use ciam_core::ids::{IdentityId, OrganizationId, ServiceId};
use ciam_core::invitations::{InvitationKind, InvitationStatus};
use ciam_core::organizations::{ContractStatus, ContractUpsert, OrgKind, OrganizationUpsert};
use ciam_core::services::{BusinessRoleDefinition, ServiceDefinition};
use serde_json::json;
use smartplan::demo::{APP_SERVICE, BETTY, JEREMY, SCOTT};

use crate::support::*;

const MIA: &str = "mia.member@citygroup.example";
const NINA: &str = "nina.new@citygroup.example";
const OLGA: &str = "olga@other.example";
const CORA: &str = "cora@citygroup-north.example";
/// A second service, "SmartPlan Billing", with the business role `invoice-approver`.
const BILLING: &str = "smartplan-billing";

struct Tenants {
    app: TestApp,
    city: OrganizationId,
    other: OrganizationId,
    mia: IdentityId,
    nina: IdentityId,
    olga: IdentityId,
}

/// City Group (Jeremy the contact person, Mia and Nina members) and Other Corp (Olga), with a
/// second service under City Group's contract.
async fn tenants() -> Tenants {
    let app = app_default().await;
    let city = app.cast().city_group;
    let mia = add_person(&app, city, person(MIA, "Mia", "Member")).await;
    let nina = add_person(&app, city, person(NINA, "Nina", "New")).await;
    let other = app
        .state
        .ciam
        .organizations()
        .upsert(
            &Principal::System,
            OrganizationUpsert {
                crm_account_id: "ACC-9999".to_owned(),
                name: "Other Corp".to_owned(),
                kind: OrgKind::Customer,
                parent_crm_account_id: None,
                email_domains: vec!["other.example".to_owned()],
                suspended: false,
            },
        )
        .await
        .unwrap()
        .id;
    let olga = add_person(&app, other, person(OLGA, "Olga", "Other")).await;
    let catalog = app.state.ciam.catalog();
    catalog
        .define_service(
            &Principal::System,
            ServiceDefinition {
                key: BILLING.into(),
                name: "SmartPlan Billing".into(),
                app_roles: vec!["invoice.approve".into()],
            },
        )
        .await
        .unwrap();
    catalog
        .define_business_role(
            &Principal::System,
            BusinessRoleDefinition {
                key: "invoice-approver".into(),
                name: "Invoice approver".into(),
                grants: vec![(BILLING.into(), "invoice.approve".into())],
            },
        )
        .await
        .unwrap();
    app.state
        .ciam
        .organizations()
        .upsert_contract(
            &Principal::System,
            ContractUpsert {
                crm_contract_id: "CON-BILLING".into(),
                crm_account_id: smartplan::demo::CITY_GROUP_ACCOUNT.into(),
                services: vec![BILLING.into()],
                status: ContractStatus::Active,
                valid_from: None,
                valid_until: None,
            },
        )
        .await
        .unwrap();
    Tenants {
        app,
        city,
        other,
        mia,
        nina,
        olga,
    }
}

async fn membership(app: &TestApp, identity: IdentityId, org: OrganizationId) -> Membership {
    app.state
        .store
        .membership_of(identity, org)
        .await
        .unwrap()
        .unwrap()
}

async fn service(app: &TestApp, key: &str) -> ServiceId {
    app.state
        .store
        .service_by_key(key)
        .await
        .unwrap()
        .unwrap()
        .id
}

async fn role_keys(app: &TestApp, membership: &Membership) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for id in &membership.business_roles {
        keys.insert(
            app.state
                .store
                .business_role(*id)
                .await
                .unwrap()
                .unwrap()
                .key,
        );
    }
    keys
}

/// Gives the member `identity` of `org` exactly `mandates` (as the system).
async fn give(app: &TestApp, identity: IdentityId, org: OrganizationId, mandates: &[Mandate]) {
    let membership = membership(app, identity, org).await;
    app.state
        .ciam
        .administration()
        .set_mandates(
            &Principal::System,
            membership.id,
            mandates.iter().copied().collect(),
        )
        .await
        .unwrap();
}

async fn signed_in(app: &TestApp, email: &str) -> Client {
    let mut client = app.client();
    client.sign_in_as(email).await;
    client
}

async fn event_count(app: &TestApp) -> usize {
    app.state
        .store
        .events(ciam_core::store::EventQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len()
}

// ---------------------------------------------------------------------------------------------
// Mass assignment: pages
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn extra_form_fields_cannot_move_a_member_or_give_what_the_form_does_not_offer() {
    let t = tenants().await;
    let mut jeremy = signed_in(&t.app, JEREMY).await;
    let base = format!("/admin/orgs/{}/users/{}", t.city, t.mia);
    let other = t.other.to_string();
    let olga = t.olga.to_string();
    let forged: [(&str, &str); 7] = [
        ("organization", &other),
        ("organization_id", &other),
        ("identity", &olga),
        ("org_admin", "on"),
        ("mandate", "org_admin"),
        ("staff_roles", "administrator"),
        ("status", "active"),
    ];
    let mut roles = vec![("role_billing-viewer", "on")];
    roles.extend_from_slice(&forged);
    let saved = jeremy.post_form(&format!("{base}/roles"), &roles).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let mut mandates = vec![("user_manager", "on")];
    mandates.extend_from_slice(&forged);
    let saved = jeremy
        .post_form(&format!("{base}/mandates"), &mandates)
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);

    let mia = membership(&t.app, t.mia, t.city).await;
    assert_eq!(mia.organization, t.city, "Mia stays in City Group");
    assert_eq!(
        role_keys(&t.app, &mia).await,
        BTreeSet::from(["billing-viewer".to_owned()])
    );
    assert_eq!(
        mia.mandates,
        BTreeSet::from([Mandate::UserManager]),
        "no OrgAdmin"
    );
    assert!(mia.staff_roles.is_empty(), "no staff role");
    let memberships = t
        .app
        .state
        .store
        .memberships_of_identity(t.mia)
        .await
        .unwrap();
    assert_eq!(memberships.len(), 1, "no membership in Other Corp");
    let olga = membership(&t.app, t.olga, t.other).await;
    assert!(
        olga.business_roles.is_empty() && olga.mandates.is_empty(),
        "Olga unchanged"
    );
}

#[tokio::test]
async fn a_delegate_cannot_raise_their_own_mandates_or_roles() {
    let t = tenants().await;
    give(&t.app, t.mia, t.city, &[Mandate::UserManager]).await;
    let mut mia = signed_in(&t.app, MIA).await;
    let base = format!("/admin/orgs/{}/users/{}", t.city, t.mia);
    let events = event_count(&t.app).await;

    // User management only: the form saves what a user manager may give (UserManager), and
    // every other box (OrgAdmin, ServiceManager) is ignored.
    let saved = mia
        .post_form(
            &format!("{base}/mandates"),
            &[
                ("user_manager", "on"),
                ("service_smartplan-app", "on"),
                ("service_smartplan-billing", "on"),
                ("org_admin", "on"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let after = membership(&t.app, t.mia, t.city).await;
    assert_eq!(after.mandates, BTreeSet::from([Mandate::UserManager]));
    assert_eq!(
        event_count(&t.app).await,
        events,
        "nothing changed, nothing recorded"
    );

    // No business role is hers to give (every role belongs to a service): 403.
    let roles = mia
        .post_form(
            &format!("{base}/roles"),
            &[
                ("role_energy-manager", "on"),
                ("role_invoice-approver", "on"),
            ],
        )
        .await;
    assert_eq!(roles.status, StatusCode::FORBIDDEN, "{}", roles.body);
    assert!(
        membership(&t.app, t.mia, t.city)
            .await
            .business_roles
            .is_empty()
    );

    // And through ciam-core directly: OrgAdmin for herself is an escalation.
    let (_, principal) = principal_of(&t.app, MIA).await;
    let denied = t
        .app
        .state
        .ciam
        .administration()
        .set_mandates(
            &principal,
            after.id,
            BTreeSet::from([Mandate::UserManager, Mandate::OrgAdmin]),
        )
        .await;
    assert!(
        matches!(
            denied,
            Err(AdministrationError::Denied(DenyReason::Escalation { .. }))
        ),
        "{denied:?}"
    );
    assert_eq!(
        membership(&t.app, t.mia, t.city).await.mandates,
        BTreeSet::from([Mandate::UserManager])
    );
}

#[tokio::test]
async fn a_service_manager_cannot_assign_roles_or_mandates_of_another_service() {
    let t = tenants().await;
    let app_service = service(&t.app, APP_SERVICE).await;
    let billing = service(&t.app, BILLING).await;
    give(
        &t.app,
        t.mia,
        t.city,
        &[Mandate::ServiceManager(app_service)],
    )
    .await;
    let mut mia = signed_in(&t.app, MIA).await;
    let base = format!("/admin/orgs/{}/users/{}", t.city, t.nina);

    let saved = mia
        .post_form(
            &format!("{base}/roles"),
            &[
                ("role_energy-manager", "on"),
                ("role_invoice-approver", "on"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let nina = membership(&t.app, t.nina, t.city).await;
    assert_eq!(
        role_keys(&t.app, &nina).await,
        BTreeSet::from(["energy-manager".to_owned()]),
        "the billing role is outside Mia's mandate"
    );

    let delegated = mia
        .post_form(
            &format!("{base}/mandates"),
            &[("service_smartplan-billing", "on"), ("user_manager", "on")],
        )
        .await;
    assert_eq!(
        delegated.status,
        StatusCode::SEE_OTHER,
        "{}",
        delegated.body
    );
    assert!(
        membership(&t.app, t.nina, t.city).await.mandates.is_empty(),
        "neither ServiceManager(billing) nor UserManager was Mia's to give"
    );

    // ciam-core refuses the same requests when a host sends them directly.
    let (_, principal) = principal_of(&t.app, MIA).await;
    let administration = t.app.state.ciam.administration();
    let role = administration
        .set_business_roles(
            &principal,
            nina.id,
            &["energy-manager".to_owned(), "invoice-approver".to_owned()],
        )
        .await;
    assert!(
        matches!(
            role,
            Err(AdministrationError::Denied(DenyReason::Escalation { .. }))
        ),
        "{role:?}"
    );
    let mandate = administration
        .set_mandates(
            &principal,
            nina.id,
            BTreeSet::from([Mandate::ServiceManager(billing)]),
        )
        .await;
    assert!(
        matches!(
            mandate,
            Err(AdministrationError::Denied(DenyReason::Escalation { .. }))
        ),
        "{mandate:?}"
    );
    let nina = membership(&t.app, t.nina, t.city).await;
    assert_eq!(
        role_keys(&t.app, &nina).await,
        BTreeSet::from(["energy-manager".to_owned()])
    );
    assert!(nina.mandates.is_empty());
}

#[tokio::test]
async fn an_invitation_form_cannot_carry_mandates_staff_roles_or_another_organization() {
    let t = tenants().await;
    give(&t.app, t.mia, t.city, &[Mandate::UserManager]).await;
    let mut mia = signed_in(&t.app, MIA).await;
    let other = t.other.to_string();
    let sent = mia
        .post_form(
            &format!("/admin/orgs/{}/invitations", t.city),
            &[
                ("email", "pat@citygroup.example"),
                ("contact_person", "true"),
                ("mandates", "org_admin"),
                ("org_admin", "on"),
                ("staff_roles", "administrator"),
                ("organization", &other),
                ("role_energy-manager", "on"),
            ],
        )
        .await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    let invitations = t
        .app
        .state
        .store
        .invitations_of_organization(t.city, &[InvitationStatus::Pending], 10)
        .await
        .unwrap();
    let pat = invitations
        .iter()
        .find(|i| i.email.as_str() == "pat@citygroup.example")
        .expect("the invitation is in City Group");
    assert_eq!(pat.kind, InvitationKind::Member);
    assert!(pat.mandates.is_empty(), "{:?}", pat.mandates);
    assert!(pat.staff_roles.is_empty());
    assert!(
        pat.business_roles.is_empty(),
        "energy-manager is not a user manager's to give"
    );
    let elsewhere = t
        .app
        .state
        .store
        .invitations_of_organization(t.other, &[], 10)
        .await
        .unwrap();
    assert!(
        elsewhere
            .iter()
            .all(|i| i.email.as_str() != "pat@citygroup.example"),
        "nothing in Other Corp"
    );
}

#[tokio::test]
async fn creating_an_organization_ignores_kind_parent_and_status_fields() {
    let app = app_default().await;
    let mut scott = signed_in(&app, SCOTT).await;
    let created = scott
        .post_form(
            "/backoffice/organizations",
            &[
                ("name", "Nordic Heat Oy"),
                ("crm_account_id", "ACC-7001"),
                ("email_domain", ""),
                ("kind", "provider"),
                ("parent_crm_account_id", smartplan::demo::CITY_GROUP_ACCOUNT),
                ("parent", &app.cast().city_group.to_string()),
                ("status", "suspended"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let org = app
        .state
        .store
        .organization_by_crm_account("ACC-7001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(org.kind, OrgKind::Customer);
    assert_eq!(org.parent, None);
    assert_eq!(org.status, ciam_core::organizations::OrgStatus::Active);
}

// ---------------------------------------------------------------------------------------------
// Mass assignment: the CRM API
// ---------------------------------------------------------------------------------------------

async fn api_key(app: &TestApp, scopes: &[IntegrationScope]) -> String {
    smartplan::api::keys::create(
        &app.state.store,
        &ciam_core::SeededRandom::new(77 + scopes.len() as u64),
        app.clock_now(),
        "crm",
        scopes.iter().copied().collect::<BTreeSet<_>>(),
    )
    .await
    .unwrap()
    .key
}

#[tokio::test]
async fn api_bodies_with_fields_the_client_does_not_own_are_refused_and_change_nothing() {
    let t = tenants().await;
    let key = api_key(
        &t.app,
        &[
            IntegrationScope::Provisioning,
            IntegrationScope::Invitations,
            IntegrationScope::Read,
        ],
    )
    .await;
    let mut client = t.app.client();
    let events = event_count(&t.app).await;
    let city = smartplan::demo::CITY_GROUP_ACCOUNT;
    let refused = [
        (
            Method::PUT,
            format!("/api/v1/organizations/{city}"),
            json!({"name": "City Group, Inc.", "id": t.other.to_string()}),
        ),
        (
            Method::PUT,
            format!("/api/v1/organizations/{city}"),
            json!({"name": "City Group, Inc.", "status": "active", "parent": t.other.to_string()}),
        ),
        (
            Method::PUT,
            format!("/api/v1/organizations/{city}/contracts/CON-2001"),
            json!({"services": [APP_SERVICE], "status": "active", "organization_id": t.other.to_string()}),
        ),
        (
            Method::POST,
            "/api/v1/invitations".to_owned(),
            json!({"crm_account_id": city, "items": [
                {"email": "sam@citygroup.example", "staff_roles": ["administrator"]}
            ]}),
        ),
        (
            Method::POST,
            "/api/v1/invitations".to_owned(),
            json!({"crm_account_id": city, "organization_id": t.other.to_string(), "items": [
                {"email": "sam@citygroup.example"}
            ]}),
        ),
        (
            Method::PUT,
            "/api/v1/contacts/CRM-C-1".to_owned(),
            json!({"email": OLGA, "identity_id": t.mia.to_string()}),
        ),
    ];
    for (method, path, body) in refused {
        let answer = client.api(method, &path, Some(&key), Some(&body)).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}: {}",
            answer.body
        );
        assert_eq!(answer.json()["error"]["code"], "invalid", "{path}");
    }
    // The provider itself is never provisioned through the CRM.
    let provider = client
        .api(
            Method::PUT,
            "/api/v1/organizations/ACC-9999",
            Some(&key),
            Some(&json!({"name": "Other Corp", "kind": "provider"})),
        )
        .await;
    assert_eq!(
        provider.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        provider.body
    );

    assert_eq!(event_count(&t.app).await, events, "nothing changed");
    let other = t
        .app
        .state
        .store
        .organization(t.other)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.kind, OrgKind::Customer);
    let sam = ciam_core::contact::EmailAddress::parse("sam@citygroup.example").unwrap();
    assert!(
        t.app
            .state
            .store
            .open_invitations_for_email(&sam)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        t.app
            .state
            .store
            .identity_by_crm_contact("CRM-C-1")
            .await
            .unwrap()
            .is_none()
    );
}

// ---------------------------------------------------------------------------------------------
// IDOR
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_sub_organizations_admin_cannot_reach_the_parent_or_a_sibling() {
    let t = tenants().await;
    let upsert = |crm: &str, name: &str| OrganizationUpsert {
        crm_account_id: crm.to_owned(),
        name: name.to_owned(),
        kind: OrgKind::Customer,
        parent_crm_account_id: Some(smartplan::demo::CITY_GROUP_ACCOUNT.to_owned()),
        email_domains: Vec::new(),
        suspended: false,
    };
    let organizations = t.app.state.ciam.organizations();
    let north = organizations
        .upsert(&Principal::System, upsert("ACC-1001-N", "City Group North"))
        .await
        .unwrap()
        .id;
    let south = organizations
        .upsert(&Principal::System, upsert("ACC-1001-S", "City Group South"))
        .await
        .unwrap()
        .id;
    let cora = add_person(&t.app, north, person(CORA, "Cora", "North")).await;
    give(&t.app, cora, north, &[Mandate::OrgAdmin]).await;
    let jeremy = t.app.cast().jeremy.unwrap();

    let mut as_cora = signed_in(&t.app, CORA).await;
    assert_eq!(
        as_cora
            .get(&format!("/admin/orgs/{north}/users"))
            .await
            .status,
        StatusCode::OK
    );
    for path in [
        format!("/admin/orgs/{}", t.city),
        format!("/admin/orgs/{}/users", t.city),
        format!("/admin/orgs/{}/users/{jeremy}", t.city),
        format!("/admin/orgs/{}/users/{}", t.city, t.mia),
        format!("/admin/orgs/{south}/users"),
        format!("/admin/orgs/{north}/users/{jeremy}"),
    ] {
        let page = as_cora.get(&path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            !page.body.contains(JEREMY) && !page.body.contains(MIA),
            "{path}"
        );
    }
    let events = event_count(&t.app).await;
    for path in [
        format!("/admin/orgs/{}/users/{}/remove", t.city, t.mia),
        format!("/admin/orgs/{north}/users/{}/remove", t.mia),
        format!("/admin/orgs/{north}/users/{jeremy}/mandates"),
    ] {
        let answer = as_cora.post_form(&path, &[("user_manager", "on")]).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(event_count(&t.app).await, events, "nothing changed");
    assert!(membership(&t.app, t.mia, t.city).await.is_active());
    assert_eq!(
        membership(&t.app, jeremy, t.city).await.mandates,
        BTreeSet::from([Mandate::OrgAdmin])
    );

    // The parent's contact person administers the sub-organization.
    let mut as_jeremy = signed_in(&t.app, JEREMY).await;
    let users = as_jeremy.get(&format!("/admin/orgs/{north}/users")).await;
    assert_eq!(users.status, StatusCode::OK);
    assert!(users.body.contains(CORA));
}

#[tokio::test]
async fn ids_of_another_organizations_invitations_and_requests_change_nothing() {
    let t = tenants().await;
    let olga_invite = t
        .app
        .state
        .ciam
        .invitations()
        .invite(
            &Principal::System,
            t.other,
            person("ola@other.example", "Ola", "Other"),
        )
        .await
        .unwrap()
        .invitation;
    let request = join_request(&t.app, "otto@other.example").await;
    let mut jeremy = signed_in(&t.app, JEREMY).await;
    let events = event_count(&t.app).await;
    let mails = t.app.mail.len();
    for path in [
        format!(
            "/admin/orgs/{}/invitations/{}/revoke",
            t.city, olga_invite.id
        ),
        format!(
            "/admin/orgs/{}/invitations/{}/resend",
            t.city, olga_invite.id
        ),
        format!(
            "/admin/orgs/{}/invitations/{}/revoke",
            t.other, olga_invite.id
        ),
        format!("/admin/orgs/{}/approvals/{}", t.city, request.id),
        format!("/admin/orgs/{}/approvals/{}", t.other, request.id),
    ] {
        let answer = jeremy.post_form(&path, &[("decision", "approve")]).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(event_count(&t.app).await, events, "nothing changed");
    assert_eq!(t.app.mail.len(), mails, "nothing sent");
    let invitation = t
        .app
        .state
        .store
        .invitation(olga_invite.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(invitation.status, InvitationStatus::Pending);
    let request = t
        .app
        .state
        .store
        .join_request(request.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        request.status,
        ciam_core::registrations::RequestStatus::PendingApproval
    );
}

#[tokio::test]
async fn back_office_pages_reveal_nothing_to_customers_or_the_wrong_staff_role() {
    let t = tenants().await;
    let mut jeremy = signed_in(&t.app, JEREMY).await;
    for path in [
        format!("/backoffice/organizations/{}", t.other),
        format!("/backoffice/audit?organization={}", t.other),
        format!("/backoffice/audit?person={}", t.olga),
        "/backoffice/users?q=olga".to_owned(),
    ] {
        let page = jeremy.get(&path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            !page.body.contains(OLGA) && !page.body.contains("Other Corp"),
            "{path}"
        );
    }
    // Betty decides registrations; searching people is customer service's.
    let mut betty = signed_in(&t.app, BETTY).await;
    let search = betty.get("/backoffice/users?q=olga").await;
    assert_eq!(search.status, StatusCode::FORBIDDEN);
    assert!(!search.body.contains(OLGA));
}

#[tokio::test]
async fn api_reads_of_people_need_the_read_scope_and_never_show_staff() {
    let t = tenants().await;
    let mut client = t.app.client();
    let no_read = api_key(
        &t.app,
        &[
            IntegrationScope::Provisioning,
            IntegrationScope::Invitations,
            IntegrationScope::Leads,
        ],
    )
    .await;
    let read = api_key(&t.app, &[IntegrationScope::Read]).await;
    let lookup = |email: &str| format!("/api/v1/identities?email={}", email.replace('@', "%40"));

    let person_refused = client
        .api(Method::GET, &lookup(MIA), Some(&no_read), None)
        .await;
    assert_eq!(
        person_refused.status,
        StatusCode::FORBIDDEN,
        "{}",
        person_refused.body
    );
    assert!(!person_refused.body.contains("Mia") && !person_refused.body.contains("City Group"));
    // Someone unknown gets the same refusal: the missing scope is checked before the lookup.
    let unknown_refused = client
        .api(
            Method::GET,
            &lookup("nobody@example.org"),
            Some(&no_read),
            None,
        )
        .await;
    assert_eq!(unknown_refused.status, StatusCode::FORBIDDEN);
    assert_eq!(unknown_refused.body, person_refused.body);
    let refused = client
        .api(
            Method::GET,
            &format!(
                "/api/v1/organizations/{}",
                smartplan::demo::CITY_GROUP_ACCOUNT
            ),
            Some(&no_read),
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(!refused.body.contains(MIA));
    // One refusal for both reads: the same status, code and message.
    assert_eq!(refused.json()["error"]["code"], "forbidden");
    assert_eq!(person_refused.json(), refused.json());

    let found = client
        .api(Method::GET, &lookup(MIA), Some(&read), None)
        .await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert_eq!(found.json()["email"], MIA);

    // SmartPlan's own staff are not customers: the CRM does not see them.
    let staff = client
        .api(Method::GET, &lookup(SCOTT), Some(&read), None)
        .await;
    assert_eq!(staff.status, StatusCode::NOT_FOUND, "{}", staff.body);
    assert!(!staff.body.contains("SmartPlan") && !staff.body.contains("Scott"));
}

#[tokio::test]
async fn a_removed_contact_person_changes_nothing_with_their_old_session() {
    let t = tenants().await;
    let mut jeremy = signed_in(&t.app, JEREMY).await;
    let jeremy_id = t.app.cast().jeremy.unwrap();
    let removed = membership(&t.app, jeremy_id, t.city).await;
    t.app
        .state
        .ciam
        .administration()
        .remove_member(&Principal::System, removed.id)
        .await
        .unwrap();
    let events = event_count(&t.app).await;
    let page = jeremy.get(&format!("/admin/orgs/{}/users", t.city)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "signed out");
    assert!(page.location().unwrap().starts_with("/signin"));
    let answer = jeremy
        .post_form(
            &format!("/admin/orgs/{}/users/{}/remove", t.city, t.mia),
            &[],
        )
        .await;
    assert!(
        answer.location().is_some_and(|l| l.starts_with("/signin")),
        "{} {:?}",
        answer.status,
        answer.location()
    );
    // Signed in again (another session), the removed membership still grants nothing.
    let mut again = signed_in(&t.app, JEREMY).await;
    let page = again.get(&format!("/admin/orgs/{}/users", t.city)).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let answer = again
        .post_form(
            &format!("/admin/orgs/{}/users/{}/remove", t.city, t.mia),
            &[],
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(event_count(&t.app).await, events, "nothing changed");
    assert_eq!(
        membership(&t.app, t.mia, t.city).await.status,
        MembershipStatus::Active
    );
}

#[tokio::test]
async fn an_ended_contract_takes_away_a_service_managers_roles_to_give() {
    let t = tenants().await;
    let app_service = service(&t.app, APP_SERVICE).await;
    give(
        &t.app,
        t.mia,
        t.city,
        &[Mandate::ServiceManager(app_service)],
    )
    .await;
    let key = api_key(&t.app, &[IntegrationScope::Provisioning]).await;
    let ended = t
        .app
        .client()
        .api(
            Method::POST,
            &format!(
                "/api/v1/contracts/{}/status",
                smartplan::demo::CITY_GROUP_CONTRACT
            ),
            Some(&key),
            Some(&json!({"change": "end"})),
        )
        .await;
    assert_eq!(ended.status, StatusCode::OK, "{}", ended.body);
    let mut mia = signed_in(&t.app, MIA).await;
    let events = event_count(&t.app).await;
    let answer = mia
        .post_form(
            &format!("/admin/orgs/{}/users/{}/roles", t.city, t.nina),
            &[("role_energy-manager", "on")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert!(
        membership(&t.app, t.nina, t.city)
            .await
            .business_roles
            .is_empty()
    );
    assert_eq!(event_count(&t.app).await, events, "nothing changed");
}

/// Found by `isolation`: a user manager of the provider organization (no staff role) removed a
/// staff member, taking away staff roles that only an Administrator may change.
#[tokio::test]
async fn a_user_manager_of_the_provider_cannot_remove_staff() {
    let app = app_default().await;
    let cast = app.cast().clone();
    give(&app, cast.betty, cast.provider, &[Mandate::UserManager]).await;
    let mut betty = signed_in(&app, BETTY).await;
    let events = event_count(&app).await;
    let answer = betty
        .post_form(
            &format!("/admin/orgs/{}/users/{}/remove", cast.provider, cast.scott),
            &[],
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    let scott = membership(&app, cast.scott, cast.provider).await;
    assert_eq!(scott.status, MembershipStatus::Active);
    assert!(!scott.staff_roles.is_empty());
    assert_eq!(event_count(&app).await, events, "nothing changed");
}

/// Found by `isolation`: an invitation held for review (a lead at a webmail address) was
/// revoked through the organization's invitation page by someone who manages invitations but
/// does not review held ones; releasing or refusing it is the back office's decision.
#[tokio::test]
async fn a_held_invitation_is_refused_only_by_the_back_office() {
    let app = app_default().await;
    let city = app.cast().city_group;
    let held = app
        .state
        .ciam
        .invitations()
        .invite(
            &Principal::System,
            city,
            ciam_core::invitations::InvitationRequest {
                crm_lead_id: Some("LEAD-903".to_owned()),
                ..person("lead.three@gmail.com", "Webmail", "Lead")
            },
        )
        .await
        .unwrap()
        .invitation;
    assert_eq!(held.status, InvitationStatus::HeldForReview);
    let mut jeremy = signed_in(&app, JEREMY).await;
    let events = event_count(&app).await;
    let answer = jeremy
        .post_form(
            &format!("/admin/orgs/{city}/invitations/{}/revoke", held.id),
            &[],
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    let now = app.state.store.invitation(held.id).await.unwrap().unwrap();
    assert_eq!(now.status, InvitationStatus::HeldForReview);
    assert_eq!(event_count(&app).await, events, "nothing changed");
    let mut betty = signed_in(&app, BETTY).await;
    let refused = betty
        .post_form(&format!("/backoffice/invitations/{}/revoke", held.id), &[])
        .await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER, "{}", refused.body);
}
