//! Invitation acceptance: `GET/POST /invitations/accept?token=`.

use axum::http::StatusCode;
use ciam_core::Principal;
use ciam_core::contact::EmailAddress;
use ciam_core::ids::OrganizationId;
use ciam_core::invitations::{InvitationRequest, InvitationStatus};
use ciam_core::secrets::SecretToken;
use smartplan::demo::{JeremyAs, SeedOptions};

use crate::support::{self, Backend, Options, TestApp};

const ANN: &str = "ann.example@citygroup.example";
const PASSWORD: &str = "violet-harbour-lantern";

/// Invites `email` into `organization` as `inviter`; the token of the link.
async fn invite(
    app: &TestApp,
    inviter: &Principal,
    organization: OrganizationId,
    email: &str,
    contact_person: bool,
) -> String {
    let issued = app
        .state
        .ciam
        .invitations()
        .invite(
            inviter,
            organization,
            InvitationRequest {
                email: email.into(),
                given_name: Some("Ann".into()),
                family_name: Some("Example".into()),
                contact_person,
                ..InvitationRequest::default()
            },
        )
        .await
        .unwrap();
    issued.token.unwrap().expose().to_owned()
}

async fn jeremy(app: &TestApp) -> Principal {
    app.state
        .ciam
        .principals()
        .for_identity(app.cast().jeremy.unwrap())
        .await
        .unwrap()
}

async fn invitation_status(app: &TestApp, token: &str) -> InvitationStatus {
    let hash = SecretToken::from_presented(token).hash();
    app.state
        .store
        .invitation_by_token(&hash)
        .await
        .unwrap()
        .map_or(InvitationStatus::Revoked, |invitation| invitation.status)
}

async fn exists(app: &TestApp, email: &str) -> bool {
    app.state
        .store
        .identity_by_email(&EmailAddress::parse(email).unwrap())
        .await
        .unwrap()
        .is_some()
}

fn accept_path(token: &str) -> String {
    format!("/invitations/accept?token={token}")
}

fn good_form() -> Vec<(&'static str, &'static str)> {
    vec![
        ("decision", "accept"),
        ("given_name", "Ann"),
        ("family_name", "Example"),
        ("password", PASSWORD),
        ("password_confirmation", PASSWORD),
    ]
}

#[tokio::test]
async fn the_page_shows_the_organization_the_inviter_the_role_and_the_name() {
    let app = support::app_default().await;
    let token = invite(&app, &jeremy(&app).await, app.cast().city_group, ANN, false).await;
    let page = app.client().get(&accept_path(&token)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Join City Group, Inc."));
    assert!(page.body.contains("Jeremy Mills invited you"));
    assert!(page.body.contains("as a user of its SmartPlan services"));
    assert!(page.body.contains(ANN));
    assert!(page.body.contains("value=\"Ann\""));
    assert!(page.body.contains("value=\"Example\""));
    assert!(page.body.contains("at least 8 characters"));
    assert!(page.body.contains("Decline the invitation"));
    // City Group has no identity provider connection: no company login.
    assert!(!page.body.contains("Use your company login"));

    let contact = invite(
        &app,
        &Principal::System,
        app.cast().city_group,
        "cp@citygroup.example",
        true,
    )
    .await;
    let page = app.client().get(&accept_path(&contact)).await;
    assert!(page.body.contains("SmartPlan customer service invited you"));
    assert!(page.body.contains("as its contact person"));
}

async fn accepts_and_signs_in(backend: Backend) {
    let app = support::build(Options {
        backend,
        ..Options::default()
    })
    .await;
    let token = invite(&app, &Principal::System, app.cast().city_group, ANN, false).await;
    let mut client = app.client();
    let response = client.post_form(&accept_path(&token), &good_form()).await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    assert_eq!(response.location(), Some("/account"));
    assert!(client.jar.contains_key("smartplan_session"));
    assert_eq!(
        invitation_status(&app, &token).await,
        InvitationStatus::Accepted
    );
    let account = client.get("/account").await;
    assert_eq!(account.status, StatusCode::OK);
    assert!(account.body.contains("Welcome to City Group, Inc."));
    assert!(account.body.contains("City Group, Inc."));
    assert!(account.body.contains("value=\"Ann\""));
    // The link works once.
    let again = app.client().get(&accept_path(&token)).await;
    assert_eq!(again.status, StatusCode::GONE);
    assert!(again.body.contains("already been used"));
}

#[tokio::test]
async fn accepting_creates_the_account_and_signs_in() {
    accepts_and_signs_in(Backend::Memory).await;
}

#[tokio::test]
async fn accepting_creates_the_account_and_signs_in_on_sqlite() {
    accepts_and_signs_in(Backend::Sqlite).await;
}

/// The session cookie of `client`, validated: its methods.
async fn session_methods(
    app: &TestApp,
    client: &support::Client,
) -> Vec<ciam_core::sessions::AuthMethod> {
    let token = client.jar.get("smartplan_session").expect("a session");
    app.state
        .ciam
        .sessions()
        .validate(&SecretToken::from_presented(token.as_str()))
        .await
        .unwrap()
        .session
        .methods
}

/// Accepts Ann's invitation into City Group in `app`, where a second factor is required: no
/// session until she has set up her phone at the sign-in's enrolment step.
async fn accepts_into_a_second_factor_first(app: &TestApp) {
    let token = invite(app, &Principal::System, app.cast().city_group, ANN, false).await;
    let mut client = app.client();
    let response = client.post_form(&accept_path(&token), &good_form()).await;
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
    assert_eq!(response.location(), Some("/signin/enrol"));
    assert!(!client.jar.contains_key("smartplan_session"));
    assert_eq!(
        invitation_status(app, &token).await,
        InvitationStatus::Accepted
    );
    // No page with rights before the second factor.
    let account = client.get("/account").await;
    assert!(account.status.is_redirection(), "{account:?}");
    assert!(account.location().unwrap().starts_with("/signin"));
    let enrol = client.get("/signin/enrol").await;
    assert_eq!(enrol.status, StatusCode::OK, "{}", enrol.body);
    assert!(
        enrol.body.contains("Welcome to City Group, Inc."),
        "{}",
        enrol.body
    );

    let phone = "+15555550155";
    let sent = client
        .post_form(
            "/signin/enrol/phone",
            &[("action", "send"), ("phone", phone)],
        )
        .await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    let text = app.sms.latest_to(phone).unwrap().text;
    let code = ciam_core::delivery::first_code(&text).unwrap().to_owned();
    let done = client
        .post_form(
            "/signin/enrol/phone",
            &[("action", "verify"), ("code", &code)],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), Some("/account"));
    let methods = session_methods(app, &client).await;
    assert!(methods.contains(&ciam_core::sessions::AuthMethod::Pwd));
    assert!(methods.contains(&ciam_core::sessions::AuthMethod::Sms));
    let account = client.get("/account").await;
    assert_eq!(account.status, StatusCode::OK);
}

#[tokio::test]
async fn an_organization_requiring_mfa_gets_the_second_factor_set_up_before_any_session() {
    let app = support::build(Options {
        seed: Some(SeedOptions {
            jeremy: JeremyAs::ContactPerson,
            city_group_requires_mfa: true,
            ..SeedOptions::default()
        }),
        ..Options::default()
    })
    .await;
    accepts_into_a_second_factor_first(&app).await;
}

#[tokio::test]
async fn with_mfa_required_for_everyone_an_invitee_sets_up_a_second_factor_before_any_session() {
    let app = support::build(Options {
        configure: Some(|config| {
            config.security.require_mfa = smartplan::config::MfaRequirement::All;
        }),
        ..Options::default()
    })
    .await;
    accepts_into_a_second_factor_first(&app).await;
}

#[tokio::test]
async fn bad_input_is_explained_keeps_the_names_and_changes_nothing() {
    let app = support::app_default().await;
    let token = invite(&app, &Principal::System, app.cast().city_group, ANN, false).await;
    let path = accept_path(&token);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("given_name", ""),
                ("family_name", "Example"),
                ("password", PASSWORD),
                ("password_confirmation", PASSWORD),
            ],
            "enter your given name",
        ),
        (
            vec![
                ("given_name", "Ann"),
                ("family_name", "  "),
                ("password", PASSWORD),
                ("password_confirmation", PASSWORD),
            ],
            "enter your family name",
        ),
        (
            vec![
                ("given_name", "Ann"),
                ("family_name", "Example"),
                ("password", "short"),
                ("password_confirmation", "short"),
            ],
            "at least 8 characters",
        ),
        (
            vec![
                ("given_name", "Ann"),
                ("family_name", "Example"),
                ("password", "password123"),
                ("password_confirmation", "password123"),
            ],
            "too common",
        ),
        (
            vec![
                ("given_name", "Ann"),
                ("family_name", "Example"),
                ("password", PASSWORD),
                ("password_confirmation", "violet-harbour-lanterns"),
            ],
            "the two passwords are not the same",
        ),
        (
            vec![("given_name", "Ann"), ("family_name", "Example")],
            "choose a password",
        ),
    ];
    for (fields, message) in cases {
        let mut client = app.client();
        let response = client.post_form(&path, &fields).await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{message}"
        );
        assert!(
            response.body.contains(message),
            "{message}: {}",
            response.body
        );
        assert!(response.body.contains("aria-invalid=\"true\""));
        assert!(
            response.body.contains("value=\"Example\"") || response.body.contains("value=\"Ann\""),
            "{message}: what was typed is kept"
        );
        assert!(
            !response.body.contains(PASSWORD),
            "passwords are not sent back"
        );
        assert!(!client.jar.contains_key("smartplan_session"));
    }
    assert_eq!(
        invitation_status(&app, &token).await,
        InvitationStatus::Pending
    );
    assert!(!exists(&app, ANN).await);
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused_and_changes_nothing() {
    let app = support::app_default().await;
    let token = invite(&app, &Principal::System, app.cast().city_group, ANN, false).await;
    let mut client = app.client();
    client.get(&accept_path(&token)).await;
    let response = client
        .post_form_raw(&accept_path(&token), &good_form())
        .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    let wrong = client
        .post_form_raw(
            &accept_path(&token),
            &[("csrf", "not-the-token"), ("decision", "decline")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(
        invitation_status(&app, &token).await,
        InvitationStatus::Pending
    );
    assert!(!exists(&app, ANN).await);
}

#[tokio::test]
async fn unknown_expired_revoked_and_used_links_get_a_plain_page() {
    let app = support::app_default().await;
    let mut client = app.client();

    let unknown = client.get(&accept_path("no-such-token")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.body.contains("This invitation link is not valid"));
    assert!(unknown.body.contains("What to do"));
    let missing = client.get("/invitations/accept").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let posted = client
        .post_form(&accept_path("no-such-token"), &good_form())
        .await;
    assert_eq!(posted.status, StatusCode::NOT_FOUND);

    let revoked = invite(&app, &Principal::System, app.cast().city_group, ANN, false).await;
    let id = app
        .state
        .store
        .invitation_by_token(&SecretToken::from_presented(revoked.as_str()).hash())
        .await
        .unwrap()
        .unwrap()
        .id;
    app.state
        .ciam
        .invitations()
        .revoke(&Principal::System, id)
        .await
        .unwrap();
    // A revoked invitation's token is forgotten: the link is unknown.
    let page = client.get(&accept_path(&revoked)).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);

    let expiring = invite(
        &app,
        &Principal::System,
        app.cast().city_group,
        "bea@citygroup.example",
        false,
    )
    .await;
    app.clock.advance(chrono::Duration::days(8));
    let page = client.get(&accept_path(&expiring)).await;
    assert_eq!(page.status, StatusCode::GONE);
    assert!(page.body.contains("This invitation has expired"));
    assert!(page.body.contains("send the invitation again"));
    let posted = client
        .post_form(&accept_path(&expiring), &good_form())
        .await;
    assert_eq!(posted.status, StatusCode::GONE);
    assert!(!exists(&app, "bea@citygroup.example").await);
}

#[tokio::test]
async fn declining_revokes_the_invitation() {
    let app = support::app_default().await;
    let token = invite(&app, &Principal::System, app.cast().city_group, ANN, false).await;
    let mut client = app.client();
    let response = client
        .post_form(&accept_path(&token), &[("decision", "decline")])
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(response.body.contains("Invitation declined"));
    assert!(response.body.contains("City Group, Inc."));
    assert!(!client.jar.contains_key("smartplan_session"));
    assert!(!exists(&app, ANN).await);
    let page = client.get(&accept_path(&token)).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let again = client
        .post_form(&accept_path(&token), &[("decision", "decline")])
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_existing_account_joins_and_signs_in_as_usual() {
    let app = support::app_default().await;
    let token = invite(
        &app,
        &Principal::System,
        app.cast().city_group,
        smartplan::demo::SCOTT,
        false,
    )
    .await;
    let mut client = app.client();
    let page = client.get(&accept_path(&token)).await;
    assert!(page.body.contains("You already have a SmartPlan account"));
    assert!(!page.body.contains("Choose a password"));
    let response = client
        .post_form(&accept_path(&token), &[("decision", "accept")])
        .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    assert_eq!(response.location(), Some("/signin?next=%2Faccount"));
    assert!(
        !client.jar.contains_key("smartplan_session"),
        "the link alone does not sign an existing account in"
    );
    let membership = app
        .state
        .store
        .membership_of(app.cast().scott, app.cast().city_group)
        .await
        .unwrap()
        .unwrap();
    assert!(membership.is_active());
}
