//! Federated sign-in rules, driven with verified claims as the OIDC and SAML layers hand them
//! over: connections stored as settings (and who may manage them), home realm discovery from
//! them, just-in-time creation with mapped roles, links by (provider, subject), linking by
//! password, invitation or trusted email, leads from a social provider, refusals, MFA after
//! federation, and single use of an attempt.

use std::collections::BTreeMap;

use ciam_core::contact::EmailAddress;
use ciam_core::credentials::{CredentialKind, Password};
use ciam_core::events::EventKind;
use ciam_core::identities::MembershipStatus;
use ciam_core::ids::{IdentityId, OrganizationId};
use ciam_core::invitations::InvitationRequest;
use ciam_core::login::{
    ClaimRoleMapping, ClientSecret, EmailLinking, FailedStep, FederatedClaims, FederationError,
    FederationProtocol, GOOGLE_ISSUER, IdentityProviderConnection, LinkProof, LoginError,
    LoginStep, OidcClientSettings, SamlIdpSettings, SecondFactor,
};
use ciam_core::organizations::{Branding, OrgPolicy, Organization};
use ciam_core::sessions::AuthMethod;
use ciam_core::store::Store;
use ciam_core::{Ciam, DenyReason, Principal};

use crate::login::{JEREMY, attempt, auth_ciam, city_with_jeremy, signed_in};
use crate::support::{World, password};

pub const CITY_IDP: &str = "https://login.citygroup.example";

pub fn city_connection(ciam: &Ciam, just_in_time: bool) -> IdentityProviderConnection {
    let secret = ciam
        .identity_providers()
        .seal_client_secret(&ClientSecret::new("city-secret"))
        .unwrap();
    IdentityProviderConnection {
        role_mapping: vec![
            ClaimRoleMapping {
                claim: "groups".into(),
                value: "energy".into(),
                business_role: "energy-manager".into(),
            },
            ClaimRoleMapping {
                claim: "groups".into(),
                value: "finance".into(),
                business_role: "finance".into(),
            },
        ],
        just_in_time,
        ..IdentityProviderConnection::oidc(
            "City Group login",
            OidcClientSettings::new(CITY_IDP, "smartplan", secret),
        )
    }
}

pub fn google_connection(ciam: &Ciam, leads: Option<OrganizationId>) -> IdentityProviderConnection {
    let secret = ciam
        .identity_providers()
        .seal_client_secret(&ClientSecret::new("google-secret"))
        .unwrap();
    IdentityProviderConnection {
        leads_organization: leads,
        ..IdentityProviderConnection::oidc(
            "Google",
            OidcClientSettings::google("smartplan.apps.example", secret),
        )
    }
}

fn claims(provider: &str, subject: &str, email: &str, groups: &[&str]) -> FederatedClaims {
    let mut attributes = BTreeMap::new();
    attributes.insert(
        "groups".to_owned(),
        groups.iter().map(|g| (*g).to_owned()).collect(),
    );
    FederatedClaims {
        email: Some(EmailAddress::parse(email).unwrap()),
        email_verified: true,
        given_name: Some("Anna".into()),
        family_name: Some("Virtanen".into()),
        attributes,
        ..FederatedClaims::new(provider, subject)
    }
}

/// City Group with Jeremy and its own IdP (stored), and the façade that signs in.
async fn city_with_idp(world: &World, just_in_time: bool) -> (Ciam, Organization, IdentityId) {
    let (city, _, jeremy) = city_with_jeremy(world, false).await;
    let ciam = auth_ciam(world, None);
    ciam.identity_providers()
        .add_connection(
            &Principal::System,
            CITY_IDP,
            Some(city.id),
            city_connection(&ciam, just_in_time),
        )
        .await
        .unwrap();
    (ciam, city, jeremy)
}

async fn role_keys(ciam: &Ciam, identity: IdentityId, org: OrganizationId) -> Vec<String> {
    let membership = ciam
        .store()
        .membership_of(identity, org)
        .await
        .unwrap()
        .unwrap();
    let mut keys = Vec::new();
    for role in membership.business_roles {
        keys.push(ciam.store().business_role(role).await.unwrap().unwrap().key);
    }
    keys.sort();
    keys
}

#[expect(
    clippy::panic,
    reason = "test helper: an unexpected answer is a failed test"
)]
async fn home_realm(ciam: &Ciam, email: &str) -> ciam_core::login::AttemptToken {
    let step = ciam
        .login()
        .start(email, Some("198.51.100.9"))
        .await
        .unwrap();
    let LoginStep::Federated { attempt, idp, .. } = step else {
        panic!("expected the organization's IdP, got {step:?}")
    };
    assert_eq!(idp.provider, CITY_IDP);
    assert_eq!(idp.protocol, FederationProtocol::Oidc);
    attempt
}

#[tokio::test]
async fn a_city_group_employee_is_created_just_in_time_with_mapped_roles() {
    let world = World::new().await;
    let (ciam, city, _) = city_with_idp(&world, true).await;
    let login = ciam.login();
    let first = home_realm(&ciam, "anna.virtanen@citygroup.example").await;
    let anna = claims(
        CITY_IDP,
        "city-anna",
        "anna.virtanen@citygroup.example",
        &["energy", "staff"],
    );
    let started = signed_in(
        login
            .complete_federated(&first, anna.clone(), None)
            .await
            .unwrap(),
    );
    assert_eq!(started.session.methods, vec![AuthMethod::Fed]);
    assert_eq!(started.session.level(), 1);
    let id = started.session.identity;
    let identity = ciam.store().identity(id).await.unwrap().unwrap();
    assert!(identity.is_active() && identity.email_verified);
    assert_eq!(identity.name.full(), "Anna Virtanen");
    assert_eq!(role_keys(&ciam, id, city.id).await, vec!["energy-manager"]);
    let link = ciam
        .store()
        .credential_by_federated_link(CITY_IDP, "city-anna")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(link.identity, id);
    // No password was made up for her.
    assert!(
        !ciam
            .store()
            .credentials_of_identity(id)
            .await
            .unwrap()
            .iter()
            .any(|c| matches!(c.kind, CredentialKind::Password { .. }))
    );
    let events = world.events().await;
    assert!(events.iter().any(|e| e.identity == Some(id)
        && matches!(&e.kind, EventKind::FederatedAccountCreated { provider, lead: false, .. } if provider == CITY_IDP)));
    assert!(events.iter().any(|e| e.identity == Some(id)
        && matches!(
            e.kind,
            EventKind::FederatedLinkAdded {
                proof: LinkProof::NewAccount,
                ..
            }
        )));

    // The attempt completes once.
    assert!(matches!(
        login.complete_federated(&first, anna.clone(), None).await,
        Err(LoginError::AttemptExpired)
    ));

    // Next time the link decides (not the email), and the mapped roles follow the IdP.
    let again = home_realm(&ciam, "anna.virtanen@citygroup.example").await;
    let moved = FederatedClaims {
        email: Some(EmailAddress::parse("a.virtanen@citygroup.example").unwrap()),
        ..claims(
            CITY_IDP,
            "city-anna",
            "anna.virtanen@citygroup.example",
            &["finance"],
        )
    };
    let second = signed_in(login.complete_federated(&again, moved, None).await.unwrap());
    assert_eq!(second.session.identity, id);
    assert_eq!(role_keys(&ciam, id, city.id).await, vec!["finance"]);
}

#[tokio::test]
async fn unknown_people_are_refused_without_just_in_time_and_outside_the_domains() {
    let world = World::new().await;
    let (ciam, _, _) = city_with_idp(&world, false).await;
    let login = ciam.login();
    let first = home_realm(&ciam, "new.person@citygroup.example").await;
    assert!(matches!(
        login
            .complete_federated(
                &first,
                claims(CITY_IDP, "city-new", "new.person@citygroup.example", &[]),
                None
            )
            .await,
        Err(LoginError::NotProvisioned)
    ));
    assert!(
        ciam.store()
            .credential_by_federated_link(CITY_IDP, "city-new")
            .await
            .unwrap()
            .is_none()
    );
    assert!(world.events().await.iter().any(|e| matches!(
        e.kind,
        EventKind::SignInFailed {
            step: FailedStep::Federated,
            ..
        }
    )));

    // With just-in-time creation on, City Group's IdP still cannot create people of other
    // domains (it is authoritative for its own domains only).
    let world = World::new().await;
    let (ciam, _, _) = city_with_idp(&world, true).await;
    let first = home_realm(&ciam, "x@citygroup.example").await;
    assert!(matches!(
        ciam.login()
            .complete_federated(
                &first,
                claims(CITY_IDP, "city-outsider", "someone@kokomedia.example", &[]),
                None
            )
            .await,
        Err(LoginError::EmailOutsideOrganization)
    ));
    // Claims for another provider, or without a subject, do not complete the attempt.
    let first = home_realm(&ciam, "x@citygroup.example").await;
    assert!(matches!(
        ciam.login()
            .complete_federated(
                &first,
                claims(
                    "https://evil.example",
                    "city-anna",
                    "anna@citygroup.example",
                    &[]
                ),
                None
            )
            .await,
        Err(LoginError::WrongStep)
    ));
    assert!(matches!(
        ciam.login()
            .complete_federated(
                &first,
                claims(CITY_IDP, "", "anna@citygroup.example", &[]),
                None
            )
            .await,
        Err(LoginError::IncompleteClaims { .. })
    ));
}

#[tokio::test]
async fn an_existing_account_links_only_after_its_password() {
    let world = World::new().await;
    let (ciam, city, jeremy) = city_with_idp(&world, true).await;
    let login = ciam.login();
    let first = home_realm(&ciam, JEREMY).await;
    let step = login
        .complete_federated(
            &first,
            claims(CITY_IDP, "city-jeremy", JEREMY, &["energy"]),
            None,
        )
        .await
        .unwrap();
    let LoginStep::LinkAccount {
        attempt: link,
        email,
        provider,
    } = step
    else {
        panic!("the same email must not link by itself, got {step:?}")
    };
    assert_eq!(email, JEREMY);
    assert_eq!(provider, "City Group login");
    assert!(
        ciam.store()
            .credential_by_federated_link(CITY_IDP, "city-jeremy")
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        login
            .password(&link, &Password::new("not his password"))
            .await,
        Err(LoginError::InvalidCredentials)
    ));
    let started = signed_in(login.password(&link, &password()).await.unwrap());
    assert_eq!(started.session.identity, jeremy);
    assert_eq!(
        started.session.methods,
        vec![AuthMethod::Fed, AuthMethod::Pwd]
    );
    assert!(
        world
            .events()
            .await
            .iter()
            .any(|e| e.identity == Some(jeremy)
                && matches!(
                    e.kind,
                    EventKind::FederatedLinkAdded {
                        proof: LinkProof::Password,
                        ..
                    }
                ))
    );
    assert!(
        role_keys(&ciam, jeremy, city.id)
            .await
            .contains(&"energy-manager".to_owned())
    );

    // From now on the IdP alone signs him in.
    let again = home_realm(&ciam, JEREMY).await;
    let started = signed_in(
        login
            .complete_federated(
                &again,
                claims(CITY_IDP, "city-jeremy", JEREMY, &["energy"]),
                None,
            )
            .await
            .unwrap(),
    );
    assert_eq!(started.session.identity, jeremy);
    assert_eq!(started.session.methods, vec![AuthMethod::Fed]);
}

#[tokio::test]
async fn a_trusted_verified_email_links_within_the_organizations_domains() {
    let world = World::new().await;
    let (ciam, city, jeremy) = city_with_idp(&world, false).await;
    let trusted = IdentityProviderConnection {
        email_linking: EmailLinking::TrustVerifiedEmail,
        ..city_connection(&ciam, false)
    };
    let stored = ciam
        .identity_providers()
        .connections(&Principal::System, Some(city.id))
        .await
        .unwrap();
    ciam.identity_providers()
        .update_connection(&Principal::System, CITY_IDP, stored[0].version, trusted)
        .await
        .unwrap();
    let first = home_realm(&ciam, JEREMY).await;
    let started = signed_in(
        ciam.login()
            .complete_federated(&first, claims(CITY_IDP, "city-jeremy", JEREMY, &[]), None)
            .await
            .unwrap(),
    );
    assert_eq!(started.session.identity, jeremy);
    assert!(world.events().await.iter().any(|e| matches!(
        e.kind,
        EventKind::FederatedLinkAdded {
            proof: LinkProof::VerifiedEmail,
            ..
        }
    )));
}

#[tokio::test]
async fn disabled_people_and_removed_members_cannot_sign_in_through_the_idp() {
    let world = World::new().await;
    let (ciam, city, _) = city_with_idp(&world, true).await;
    let login = ciam.login();
    let anna = || {
        claims(
            CITY_IDP,
            "city-anna",
            "anna.virtanen@citygroup.example",
            &[],
        )
    };
    let first = home_realm(&ciam, "anna.virtanen@citygroup.example").await;
    let id = signed_in(
        login
            .complete_federated(&first, anna(), None)
            .await
            .unwrap(),
    )
    .session
    .identity;

    // Removed from City Group: the IdP cannot bring her back (just-in-time or not).
    let membership = ciam
        .store()
        .membership_of(id, city.id)
        .await
        .unwrap()
        .unwrap();
    world
        .ciam
        .administration()
        .remove_member(&world.customer_service, membership.id)
        .await
        .unwrap();
    let again = home_realm(&ciam, "anna.virtanen@citygroup.example").await;
    assert!(matches!(
        login.complete_federated(&again, anna(), None).await,
        Err(LoginError::AccountUnavailable)
    ));
    let membership = ciam
        .store()
        .membership_of(id, city.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(membership.status, MembershipStatus::Removed);

    // Disabled: refused too.
    world
        .ciam
        .administration()
        .disable(&world.customer_service, id, "left the company")
        .await
        .unwrap();
    let again = home_realm(&ciam, "anna.virtanen@citygroup.example").await;
    assert!(matches!(
        login.complete_federated(&again, anna(), None).await,
        Err(LoginError::AccountUnavailable)
    ));
}

#[tokio::test]
async fn the_organizations_mfa_policy_applies_unless_the_idp_asserted_trusted_mfa() {
    let world = World::new().await;
    let (ciam, city, _) = city_with_idp(&world, true).await;
    world
        .ciam
        .organizations()
        .configure(
            &world.customer_service,
            city.id,
            None,
            Branding::default(),
            OrgPolicy {
                require_mfa: true,
                allow_join_requests: true,
            },
        )
        .await
        .unwrap();
    let login = ciam.login();
    // Jeremy links first (password), then City Group requires a second factor: SMS.
    let first = home_realm(&ciam, JEREMY).await;
    let link = attempt(
        login
            .complete_federated(&first, claims(CITY_IDP, "city-jeremy", JEREMY, &[]), None)
            .await
            .unwrap(),
    );
    let step = login.password(&link, &password()).await.unwrap();
    assert!(
        matches!(&step, LoginStep::SecondFactor { options, .. } if options == &vec![SecondFactor::Sms]),
        "{step:?}"
    );
    // The IdP's own MFA does not count while the connection does not trust it.
    let mfa = FederatedClaims {
        mfa: true,
        ..claims(CITY_IDP, "city-jeremy", JEREMY, &[])
    };
    let first = home_realm(&ciam, JEREMY).await;
    assert!(matches!(
        login
            .complete_federated(&first, mfa.clone(), None)
            .await
            .unwrap(),
        LoginStep::SecondFactor { .. }
    ));
    let stored = ciam
        .identity_providers()
        .connections(&Principal::System, Some(city.id))
        .await
        .unwrap();
    ciam.identity_providers()
        .update_connection(
            &Principal::System,
            CITY_IDP,
            stored[0].version,
            IdentityProviderConnection {
                trust_idp_mfa: true,
                ..city_connection(&ciam, true)
            },
        )
        .await
        .unwrap();
    // Trusted but not asserted: our second factor.
    let first = home_realm(&ciam, JEREMY).await;
    assert!(matches!(
        login
            .complete_federated(&first, claims(CITY_IDP, "city-jeremy", JEREMY, &[]), None)
            .await
            .unwrap(),
        LoginStep::SecondFactor { .. }
    ));
    // Trusted and asserted: signed in, amr records it, level 2.
    let first = home_realm(&ciam, JEREMY).await;
    let started = signed_in(login.complete_federated(&first, mfa, None).await.unwrap());
    assert_eq!(
        started.session.methods,
        vec![AuthMethod::Fed, AuthMethod::Mfa]
    );
    assert_eq!(started.session.level(), 2);
}

#[tokio::test]
async fn a_new_google_user_joins_by_invitation_or_becomes_a_lead() {
    let world = World::new().await;
    let ciam = crate::login::auth_ciam(&world, None);
    ciam.identity_providers()
        .add_connection(
            &Principal::System,
            GOOGLE_ISSUER,
            None,
            google_connection(&ciam, None),
        )
        .await
        .unwrap();
    let login = ciam.login();
    let karl = || FederatedClaims {
        email: Some(EmailAddress::parse("karl.kearnes@gmail.com").unwrap()),
        email_verified: true,
        given_name: Some("Karl".into()),
        family_name: Some("Kearnes".into()),
        ..FederatedClaims::new(GOOGLE_ISSUER, "google-karl")
    };
    let first = login.start_at_provider(GOOGLE_ISSUER, None).await.unwrap();
    assert!(matches!(
        login.complete_federated(&first, karl(), None).await,
        Err(LoginError::NotProvisioned)
    ));

    // Policy: new Google users become leads of a prospects organization.
    let prospects = world.city_group().await;
    let stored = ciam
        .identity_providers()
        .connections(&Principal::System, None)
        .await
        .unwrap();
    ciam.identity_providers()
        .update_connection(
            &Principal::System,
            GOOGLE_ISSUER,
            stored[0].version,
            google_connection(&ciam, Some(prospects.id)),
        )
        .await
        .unwrap();
    // An unverified email is not enough to create anyone.
    let first = login.start_at_provider(GOOGLE_ISSUER, None).await.unwrap();
    let unverified = FederatedClaims {
        email_verified: false,
        ..karl()
    };
    assert!(matches!(
        login.complete_federated(&first, unverified, None).await,
        Err(LoginError::IncompleteClaims { .. })
    ));
    let first = login.start_at_provider(GOOGLE_ISSUER, None).await.unwrap();
    let started = signed_in(
        login
            .complete_federated(&first, karl(), None)
            .await
            .unwrap(),
    );
    assert_eq!(
        role_keys(&ciam, started.session.identity, prospects.id).await,
        vec!["lead"]
    );
    assert!(world.events().await.iter().any(|e| matches!(
        e.kind,
        EventKind::FederatedAccountCreated { lead: true, .. }
    )));
}

#[tokio::test]
async fn a_google_login_matching_an_account_needs_its_password_and_an_invitation_links_it() {
    let world = World::new().await;
    let (_, _, jeremy) = city_with_jeremy(&world, false).await;
    let ciam = crate::login::auth_ciam(&world, None);
    ciam.identity_providers()
        .add_connection(
            &Principal::System,
            GOOGLE_ISSUER,
            None,
            google_connection(&ciam, None),
        )
        .await
        .unwrap();
    let login = ciam.login();
    let google_jeremy = FederatedClaims {
        email: Some(EmailAddress::parse(JEREMY).unwrap()),
        email_verified: true,
        ..FederatedClaims::new(GOOGLE_ISSUER, "google-jeremy")
    };
    let first = login.start_at_provider(GOOGLE_ISSUER, None).await.unwrap();
    let link = attempt(
        login
            .complete_federated(&first, google_jeremy.clone(), None)
            .await
            .unwrap(),
    );
    let started = signed_in(login.password(&link, &password()).await.unwrap());
    assert_eq!(started.session.identity, jeremy);

    // Invitation acceptance with Google: the emailed token is the proof; no password is set.
    let city = world
        .store
        .organization_by_crm_account("ACC-1001")
        .await
        .unwrap()
        .unwrap();
    world
        .ciam
        .invitations()
        .invite(
            &world.scott,
            city.id,
            InvitationRequest {
                email: "mia.koski@citygroup.example".into(),
                given_name: Some("Mia".into()),
                family_name: Some("Koski".into()),
                business_roles: vec!["finance".into()],
                ..InvitationRequest::default()
            },
        )
        .await
        .unwrap();
    let token = world.invitation_token("mia.koski@citygroup.example");
    let first = login
        .start_invitation_at_provider(&token, GOOGLE_ISSUER, None)
        .await
        .unwrap();
    let mia = FederatedClaims {
        email: Some(EmailAddress::parse("mia.private@gmail.com").unwrap()),
        email_verified: true,
        ..FederatedClaims::new(GOOGLE_ISSUER, "google-mia")
    };
    let started = signed_in(
        login
            .complete_federated(&first, mia.clone(), None)
            .await
            .unwrap(),
    );
    let id = started.session.identity;
    let identity = ciam.store().identity(id).await.unwrap().unwrap();
    assert_eq!(identity.email.as_str(), "mia.koski@citygroup.example");
    assert_eq!(identity.name.full(), "Mia Koski");
    assert_eq!(role_keys(&ciam, id, city.id).await, vec!["finance"]);
    assert!(world.events().await.iter().any(|e| e.identity == Some(id)
        && matches!(
            e.kind,
            EventKind::FederatedLinkAdded {
                proof: LinkProof::Invitation,
                ..
            }
        )));
    // The invitation is used up; Google signs her in from now on.
    assert!(
        login
            .start_invitation_at_provider(&token, GOOGLE_ISSUER, None)
            .await
            .is_err()
    );
    let first = login.start_at_provider(GOOGLE_ISSUER, None).await.unwrap();
    assert_eq!(
        signed_in(login.complete_federated(&first, mia, None).await.unwrap())
            .session
            .identity,
        id
    );
}

#[tokio::test]
async fn an_invitation_is_accepted_with_the_company_login() {
    let world = World::new().await;
    let (ciam, city, _) = city_with_idp(&world, false).await;
    world
        .ciam
        .invitations()
        .invite(
            &world.scott,
            city.id,
            InvitationRequest {
                email: "olli.invited@citygroup.example".into(),
                given_name: Some("Olli".into()),
                family_name: Some("Invited".into()),
                business_roles: vec!["report-reader".into()],
                ..InvitationRequest::default()
            },
        )
        .await
        .unwrap();
    let token = world.invitation_token("olli.invited@citygroup.example");
    let login = ciam.login();
    // Another organization's IdP cannot be used for City Group's invitation.
    let koko = world
        .ciam
        .organizations()
        .upsert(
            &world.scott,
            ciam_core::organizations::OrganizationUpsert {
                crm_account_id: "ACC-KOKO".into(),
                name: "KOKO Media Inc.".into(),
                kind: ciam_core::organizations::OrgKind::Customer,
                parent_crm_account_id: None,
                email_domains: vec!["kokomedia.example".into()],
                suspended: false,
            },
        )
        .await
        .unwrap();
    ciam.identity_providers()
        .add_connection(
            &Principal::System,
            "https://idp.kokomedia.example/saml",
            Some(koko.id),
            IdentityProviderConnection::saml(
                "KOKO login",
                SamlIdpSettings {
                    metadata_xml: "<md:EntityDescriptor/>".into(),
                    allow_unsolicited: false,
                },
            ),
        )
        .await
        .unwrap();
    assert!(matches!(
        login
            .start_invitation_at_provider(&token, "https://idp.kokomedia.example/saml", None)
            .await,
        Err(LoginError::UnknownProvider)
    ));
    let first = login
        .start_invitation_at_provider(&token, CITY_IDP, None)
        .await
        .unwrap();
    let started = signed_in(
        login
            .complete_federated(
                &first,
                claims(CITY_IDP, "city-olli", "olli@citygroup.example", &["energy"]),
                None,
            )
            .await
            .unwrap(),
    );
    let id = started.session.identity;
    // The invitation's role stays; the mapped one is added.
    assert_eq!(
        role_keys(&ciam, id, city.id).await,
        vec!["energy-manager", "report-reader"]
    );
    // The link works without just-in-time creation from now on.
    let again = home_realm(&ciam, "olli.invited@citygroup.example").await;
    assert_eq!(
        signed_in(
            login
                .complete_federated(
                    &again,
                    claims(CITY_IDP, "city-olli", "olli@citygroup.example", &["energy"]),
                    None
                )
                .await
                .unwrap()
        )
        .session
        .identity,
        id
    );
}

#[tokio::test]
async fn connections_are_managed_by_administrators_and_validated() {
    let world = World::new().await;
    let city = world.city_group().await;
    let (jeremy, _) = world
        .member(
            &world.scott,
            city.id,
            InvitationRequest {
                email: JEREMY.into(),
                contact_person: true,
                ..InvitationRequest::default()
            },
        )
        .await;
    let ciam = auth_ciam(&world, None);
    let providers = ciam.identity_providers();
    // Customer service and an account manager may not; City Group's admin may for City Group.
    for principal in [&world.customer_service, &world.scott] {
        assert!(matches!(
            providers
                .add_connection(
                    principal,
                    CITY_IDP,
                    Some(city.id),
                    city_connection(&ciam, true)
                )
                .await,
            Err(FederationError::Denied(_))
        ));
    }
    providers
        .add_connection(
            &jeremy,
            CITY_IDP,
            Some(city.id),
            city_connection(&ciam, true),
        )
        .await
        .unwrap();
    assert!(matches!(
        providers
            .add_connection(
                &jeremy,
                CITY_IDP,
                Some(city.id),
                city_connection(&ciam, true)
            )
            .await,
        Err(FederationError::AlreadyExists)
    ));
    // ... but not Google, which is global.
    assert!(matches!(
        providers
            .add_connection(&jeremy, GOOGLE_ISSUER, None, google_connection(&ciam, None))
            .await,
        Err(FederationError::Denied(DenyReason::StaffOnly))
    ));
    // Validation: the key of an OIDC connection is its issuer; roles must exist; a secret
    // sealed by another deployment is refused; social connections map no roles.
    let other_key = providers
        .add_connection(
            &Principal::System,
            "https://other.example",
            Some(city.id),
            city_connection(&ciam, true),
        )
        .await;
    assert!(
        matches!(other_key, Err(FederationError::Invalid(_))),
        "{other_key:?}"
    );
    let unknown_role = IdentityProviderConnection {
        role_mapping: vec![ClaimRoleMapping {
            claim: "groups".into(),
            value: "x".into(),
            business_role: "no-such-role".into(),
        }],
        ..google_connection(&ciam, None)
    };
    assert!(matches!(
        providers
            .add_connection(&Principal::System, GOOGLE_ISSUER, None, unknown_role)
            .await,
        Err(FederationError::Invalid(_))
    ));
    let foreign = crate::login::auth_ciam_with_key(&world, [9; 32]);
    assert!(matches!(
        providers
            .add_connection(
                &Principal::System,
                GOOGLE_ISSUER,
                None,
                google_connection(&foreign, None)
            )
            .await,
        Err(FederationError::Invalid(_))
    ));
    // The secret is stored sealed, never in clear.
    let setting = ciam
        .store()
        .setting(ciam_core::settings::SettingKind::IdentityProvider, CITY_IDP)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(setting.organization, Some(city.id));
    assert!(!setting.body.to_string().contains("city-secret"));
    // Removing it ends home realm discovery.
    providers
        .remove_connection(&jeremy, CITY_IDP)
        .await
        .unwrap();
    assert!(matches!(
        ciam.login()
            .start("anyone@citygroup.example", None)
            .await
            .unwrap(),
        LoginStep::Password { .. }
    ));
    assert!(world.events().await.iter().any(|e| matches!(
        &e.kind,
        EventKind::SettingChanged { key, .. } if key == CITY_IDP
    )));
}

#[tokio::test]
async fn a_saml_connection_completes_through_the_same_rules() {
    let world = World::new().await;
    let (city, _, _) = city_with_jeremy(&world, false).await;
    let ciam = auth_ciam(&world, None);
    let entity_id = "https://sts.citygroup.example/adfs";
    ciam.identity_providers()
        .add_connection(
            &Principal::System,
            entity_id,
            Some(city.id),
            IdentityProviderConnection {
                just_in_time: true,
                ..IdentityProviderConnection::saml(
                    "City Group ADFS",
                    SamlIdpSettings {
                        metadata_xml:
                            "<md:EntityDescriptor entityID=\"https://sts.citygroup.example/adfs\"/>"
                                .into(),
                        allow_unsolicited: false,
                    },
                )
            },
        )
        .await
        .unwrap();
    let login = ciam.login();
    // Home realm discovery finds the SAML IdP; the SAML layer asks where the attempt goes.
    let step = login.start("pekka@citygroup.example", None).await.unwrap();
    let LoginStep::Federated { attempt, idp, .. } = step else {
        panic!("expected the IdP, got {step:?}")
    };
    assert_eq!(idp.protocol, FederationProtocol::Saml);
    let target = login.federated_attempt(&attempt).unwrap();
    assert_eq!(target.provider, entity_id);
    assert_eq!(target.organization, Some(city.id));
    assert_eq!(
        target.login_hint.as_deref(),
        Some("pekka@citygroup.example")
    );
    // A password attempt is not a federated one.
    let password_attempt =
        crate::login::attempt(login.start("someone@unknown.example", None).await.unwrap());
    assert!(matches!(
        login.federated_attempt(&password_attempt),
        Err(LoginError::WrongStep)
    ));
    let started = signed_in(
        login
            .complete_federated(
                &attempt,
                FederatedClaims {
                    email: Some(EmailAddress::parse("pekka@citygroup.example").unwrap()),
                    given_name: Some("Pekka".into()),
                    family_name: Some("Laine".into()),
                    ..FederatedClaims::new(entity_id, "S-1-5-21-1004")
                },
                Some("198.51.100.30"),
            )
            .await
            .unwrap(),
    );
    assert_eq!(started.session.methods, vec![AuthMethod::Fed]);
    assert!(world.events().await.iter().any(|e| matches!(
        &e.kind,
        EventKind::SignedIn { source: Some(source), .. } if source == "198.51.100.30"
    )));
}
