//! Tenant isolation through the HTTP API, as a property: random worlds (organizations and
//! sub-organizations, contracts in every state, people with memberships, mandates, business
//! roles and staff roles, join requests, invitations, a registration), random signed-in
//! principals, and random administrative requests on random targets sent through the real
//! router (org-admin pages and back-office pages, CSRF tokens included by the test client).
//!
//! **Oracle**: an independent re-statement of the rules of DESIGN.md §3 ("Authorization") in
//! [`Rights`], computed from the store's records as they were before the request; it does not
//! call `ciam_core::authz::authorize` nor `Ciam::principals`, so a mistake there is caught
//! rather than copied. For every request:
//!
//! - every change between the store before and after (organizations, contracts, identities,
//!   memberships, invitations, join requests, registrations) must be one the acting person may
//!   make under those rules ([`unjustified`]): a business role added or taken away needs
//!   OrgAdmin or ServiceManager of each of its services (with an effective contract of the
//!   mandate's organization), a mandate needs OrgAdmin or the same mandate, removal needs user
//!   management and every mandate the member holds, and so on; staff roles count only in the
//!   active provider organization and only on customer-side organizations (Administrator
//!   everywhere); a disabled identity, a removed membership, a suspended organization or an
//!   ended contract grants nothing;
//! - a refused request (4xx, or a sign-in redirect) changes nothing, records no event and sends
//!   no mail;
//! - no request answers 5xx;
//! - a page that reads (`GET /admin/orgs/{id}`, `…/users`, `…/users/{identity}`,
//!   `/backoffice/organizations/{id}`) answers 200 only to someone who may view the
//!   organization, shows a member only of that organization, and never shows the email of a
//!   person who is not a member there.
//!
//! The world is written straight into a fresh `MemoryStore` per case (no password hashing;
//! sessions are records with known tokens, so a disabled person can hold a live session),
//! which keeps 10 000 cases to well under a minute in a debug build. `PROPTEST_CASES`
//! overrides the number of cases. A failure is shrunk by proptest to a minimal world and
//! request sequence.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use ciam_core::authz::Actor;
use ciam_core::contact::{EmailAddress, PersonName};
use ciam_core::credentials::{PasswordHashString, PasswordHasher, PasswordParams};
use ciam_core::identities::{
    Identity, IdentityStatus, Mandate, Membership, MembershipStatus, StaffRole,
};
use ciam_core::ids::{
    BusinessRoleId, ContractId, IdentityId, InvitationId, JoinRequestId, MembershipId,
    OrgRegistrationId, OrganizationId, ServiceId, SessionId,
};
use ciam_core::invitations::{Invitation, InvitationKind, InvitationStatus};
use ciam_core::organizations::{
    Branding, Contract, ContractStatus, OrgKind, OrgPolicy, OrgStatus, Organization,
};
use ciam_core::registrations::{Applicant, JoinRequest, OrgRegistration, RequestStatus};
use ciam_core::secrets::SecretToken;
use ciam_core::services::{BusinessRole, RoleGrant, Service};
use ciam_core::sessions::{AuthMethod, Session};
use ciam_core::store::{EventQuery, PageRequest};
use ciam_core::{ChangeSet, SeededRandom};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use uuid::Uuid;

use crate::support::{self, Client, Options, TestApp, TestResponse};

// ---------------------------------------------------------------------------------------------
// The generated world
// ---------------------------------------------------------------------------------------------

/// The two services of every world.
const SERVICES: [&str; 2] = ["svc-a", "svc-b"];
/// Business roles: key and the services (indexes into [`SERVICES`]) they grant in. The last
/// one grants in no service (like `lead`): assigning it is user management.
const ROLES: [(&str, &[usize]); 4] = [
    ("role-a", &[0]),
    ("role-b", &[1]),
    ("role-ab", &[0, 1]),
    ("role-plain", &[]),
];

/// How a contract stands.
#[derive(Clone, Copy, Debug)]
enum ContractState {
    Active,
    Suspended,
    Ended,
    /// Active, but its validity ended yesterday.
    Expired,
    /// Active, but valid only from tomorrow.
    NotYet,
}

#[derive(Clone, Debug)]
struct ContractSpec {
    /// Bit 0: svc-a, bit 1: svc-b.
    services: u8,
    state: ContractState,
}

#[derive(Clone, Debug)]
struct OrgSpec {
    /// Resolved modulo the organization's index: 0 (or none) is no parent.
    parent: Option<u8>,
    partner: bool,
    suspended: bool,
    contracts: Vec<ContractSpec>,
}

#[derive(Clone, Debug)]
struct MembershipSpec {
    /// Organization index modulo the number of organizations (0 is the provider).
    org: u8,
    status: MembershipStatus,
    /// Bits: OrgAdmin, UserManager, ServiceManager(svc-a), ServiceManager(svc-b).
    mandates: u8,
    /// Bits over [`ROLES`].
    roles: u8,
    /// Bits: Administrator, CustomerService, BackOffice, AccountManager (held anywhere; they
    /// count only in the provider organization).
    staff: u8,
}

#[derive(Clone, Debug)]
struct PersonSpec {
    status: IdentityStatus,
    memberships: Vec<MembershipSpec>,
}

#[derive(Clone, Debug)]
struct WorldSpec {
    /// Customer (or partner) organizations; the provider is organization 0.
    orgs: Vec<OrgSpec>,
    people: Vec<PersonSpec>,
    /// Pending join requests, by organization index.
    join_requests: Vec<u8>,
    /// Invitations: organization index and whether held for review (else pending).
    invitations: Vec<(u8, bool)>,
    /// A pending organization registration.
    registration: bool,
}

/// One administrative request. Indexes are reduced modulo what exists.
#[derive(Clone, Debug)]
enum Act {
    ViewOrganization {
        org: u8,
    },
    ViewUsers {
        org: u8,
    },
    ViewUser {
        org: u8,
        person: u8,
    },
    SetRoles {
        org: u8,
        person: u8,
        ticked: u8,
        forged: bool,
    },
    SetMandates {
        org: u8,
        person: u8,
        ticked: u8,
        forged: bool,
    },
    Remove {
        org: u8,
        person: u8,
    },
    DecideJoin {
        org: u8,
        request: u8,
        approve: bool,
    },
    Invite {
        org: u8,
        ticked: u8,
        forged: bool,
    },
    Resend {
        org: u8,
        invitation: u8,
    },
    Revoke {
        org: u8,
        invitation: u8,
    },
    StaffViewOrganization {
        org: u8,
    },
    StaffCreateOrganization {
        forged: bool,
    },
    StaffInviteContact {
        org: u8,
        ticked: u8,
    },
    StaffDecideRegistration {
        approve: bool,
    },
    StaffRelease {
        invitation: u8,
    },
    StaffRefuse {
        invitation: u8,
    },
}

#[derive(Clone, Debug)]
struct Step {
    actor: u8,
    act: Act,
}

fn contract_spec() -> impl Strategy<Value = ContractSpec> {
    (
        0u8..4,
        prop_oneof![
            4 => Just(ContractState::Active),
            1 => Just(ContractState::Suspended),
            1 => Just(ContractState::Ended),
            1 => Just(ContractState::Expired),
            1 => Just(ContractState::NotYet),
        ],
    )
        .prop_map(|(services, state)| ContractSpec { services, state })
}

fn org_spec() -> impl Strategy<Value = OrgSpec> {
    (
        prop::option::weighted(0.5, any::<u8>()),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.15),
        prop::collection::vec(contract_spec(), 0..=2),
    )
        .prop_map(|(parent, partner, suspended, contracts)| OrgSpec {
            parent,
            partner,
            suspended,
            contracts,
        })
}

/// A bit set whose bits are each set with probability `p`.
fn bits(count: usize, p: f64) -> impl Strategy<Value = u8> {
    prop::collection::vec(prop::bool::weighted(p), count).prop_map(|set| {
        set.iter()
            .enumerate()
            .fold(0u8, |acc, (i, on)| if *on { acc | (1 << i) } else { acc })
    })
}

fn membership_spec() -> impl Strategy<Value = MembershipSpec> {
    (
        any::<u8>(),
        prop_oneof![
            6 => Just(MembershipStatus::Active),
            1 => Just(MembershipStatus::PendingApproval),
            1 => Just(MembershipStatus::Removed),
        ],
        bits(4, 0.3),
        bits(4, 0.3),
        bits(4, 0.2),
    )
        .prop_map(|(org, status, mandates, roles, staff)| MembershipSpec {
            org,
            status,
            mandates,
            roles,
            staff,
        })
}

fn person_spec() -> impl Strategy<Value = PersonSpec> {
    (
        prop_oneof![
            8 => Just(IdentityStatus::Active),
            1 => Just(IdentityStatus::Disabled),
            1 => Just(IdentityStatus::Invited),
        ],
        prop::collection::vec(membership_spec(), 1..=2),
    )
        .prop_map(|(status, memberships)| PersonSpec {
            status,
            memberships,
        })
}

fn world_spec() -> impl Strategy<Value = WorldSpec> {
    (
        prop::collection::vec(org_spec(), 1..=3),
        prop::collection::vec(person_spec(), 2..=5),
        prop::collection::vec(any::<u8>(), 0..=2),
        prop::collection::vec((any::<u8>(), prop::bool::weighted(0.3)), 0..=2),
        any::<bool>(),
    )
        .prop_map(
            |(orgs, people, join_requests, invitations, registration)| WorldSpec {
                orgs,
                people,
                join_requests,
                invitations,
                registration,
            },
        )
}

fn act() -> impl Strategy<Value = Act> {
    let org = any::<u8>;
    prop_oneof![
        1 => org().prop_map(|org| Act::ViewOrganization { org }),
        2 => org().prop_map(|org| Act::ViewUsers { org }),
        2 => (org(), any::<u8>()).prop_map(|(org, person)| Act::ViewUser { org, person }),
        4 => (org(), any::<u8>(), any::<u8>(), any::<bool>())
            .prop_map(|(org, person, ticked, forged)| Act::SetRoles { org, person, ticked, forged }),
        4 => (org(), any::<u8>(), any::<u8>(), any::<bool>())
            .prop_map(|(org, person, ticked, forged)| Act::SetMandates { org, person, ticked, forged }),
        3 => (org(), any::<u8>()).prop_map(|(org, person)| Act::Remove { org, person }),
        2 => (org(), any::<u8>(), any::<bool>())
            .prop_map(|(org, request, approve)| Act::DecideJoin { org, request, approve }),
        2 => (org(), any::<u8>(), any::<bool>())
            .prop_map(|(org, ticked, forged)| Act::Invite { org, ticked, forged }),
        1 => (org(), any::<u8>()).prop_map(|(org, invitation)| Act::Resend { org, invitation }),
        1 => (org(), any::<u8>()).prop_map(|(org, invitation)| Act::Revoke { org, invitation }),
        1 => org().prop_map(|org| Act::StaffViewOrganization { org }),
        1 => any::<bool>().prop_map(|forged| Act::StaffCreateOrganization { forged }),
        1 => (org(), any::<u8>()).prop_map(|(org, ticked)| Act::StaffInviteContact { org, ticked }),
        1 => any::<bool>().prop_map(|approve| Act::StaffDecideRegistration { approve }),
        1 => any::<u8>().prop_map(|invitation| Act::StaffRelease { invitation }),
        1 => any::<u8>().prop_map(|invitation| Act::StaffRefuse { invitation }),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (any::<u8>(), act()).prop_map(|(actor, act)| Step { actor, act }),
        1..=3,
    )
}

// ---------------------------------------------------------------------------------------------
// Writing the world into the store
// ---------------------------------------------------------------------------------------------

/// Ids of what was written, by index.
struct World {
    app: TestApp,
    now: DateTime<Utc>,
    orgs: Vec<OrganizationId>,
    people: Vec<IdentityId>,
    emails: Vec<String>,
    tokens: Vec<String>,
    join_requests: Vec<JoinRequestId>,
    invitations: Vec<InvitationId>,
    registrations: Vec<OrgRegistrationId>,
}

fn id(kind: u128, index: usize) -> Uuid {
    Uuid::from_u128((kind << 64) | index as u128)
}

fn email(text: &str) -> EmailAddress {
    EmailAddress::parse(text).unwrap()
}

fn name(given: &str) -> PersonName {
    PersonName {
        given: given.to_owned(),
        family: "Example".to_owned(),
    }
}

fn applicant(address: &str, hash: &PasswordHashString) -> Applicant {
    Applicant {
        email: email(address),
        name: name("Applicant"),
        phone: None,
        password_hash: hash.clone(),
        email_challenge: None,
        phone_challenge: None,
        codes_sent: 1,
    }
}

fn mandates_of(bits: u8, services: &[ServiceId]) -> BTreeSet<Mandate> {
    let mut out = BTreeSet::new();
    if bits & 1 != 0 {
        out.insert(Mandate::OrgAdmin);
    }
    if bits & 2 != 0 {
        out.insert(Mandate::UserManager);
    }
    for (i, service) in services.iter().enumerate() {
        if bits & (4 << i) != 0 {
            out.insert(Mandate::ServiceManager(*service));
        }
    }
    out
}

fn staff_of(bits: u8) -> BTreeSet<StaffRole> {
    [
        StaffRole::Administrator,
        StaffRole::CustomerService,
        StaffRole::BackOffice,
        StaffRole::AccountManager,
    ]
    .into_iter()
    .enumerate()
    .filter(|(i, _)| bits & (1 << i) != 0)
    .map(|(_, role)| role)
    .collect()
}

/// A PHC string for applicants (cheap parameters; nobody signs in with it).
async fn applicant_hash() -> PasswordHashString {
    PasswordHasher::new(PasswordParams::INSECURE_FAST_FOR_TESTS)
        .unwrap()
        .hash(
            &ciam_core::credentials::Password::new("applicant password"),
            &SeededRandom::new(3),
        )
        .await
        .unwrap()
}

async fn build_world(spec: &WorldSpec, hash: &PasswordHashString) -> World {
    let app = support::build(Options {
        seed: None,
        ..Options::default()
    })
    .await;
    let now = app.clock_now();
    let mut changes = ChangeSet::new();

    let services: Vec<ServiceId> = (0..SERVICES.len())
        .map(|i| ServiceId::from_uuid(id(1, i)))
        .collect();
    for (i, key) in SERVICES.iter().enumerate() {
        changes.put(Service {
            id: services[i],
            version: 0,
            key: (*key).to_owned(),
            name: format!("Service {key}"),
            app_roles: ["read".to_owned()].into_iter().collect(),
        });
    }
    let roles: Vec<BusinessRoleId> = (0..ROLES.len())
        .map(|i| BusinessRoleId::from_uuid(id(2, i)))
        .collect();
    for (i, (key, in_services)) in ROLES.iter().enumerate() {
        changes.put(BusinessRole {
            id: roles[i],
            version: 0,
            key: (*key).to_owned(),
            name: format!("Role {key}"),
            grants: in_services
                .iter()
                .map(|s| RoleGrant {
                    service: services[*s],
                    app_role: "read".to_owned(),
                })
                .collect(),
        });
    }

    let org_count = spec.orgs.len() + 1;
    let orgs: Vec<OrganizationId> = (0..org_count)
        .map(|i| OrganizationId::from_uuid(id(3, i)))
        .collect();
    let organization = |i: usize, kind, status, parent| Organization {
        id: orgs[i],
        version: 0,
        kind,
        status,
        name: format!("Organization {i}"),
        parent,
        crm_account_id: Some(format!("ACC-{i}")),
        email_domains: BTreeSet::new(),
        join_code: None,
        branding: Branding::default(),
        policy: OrgPolicy::default(),
        created_at: now,
        updated_at: now,
    };
    changes.put(organization(0, OrgKind::Provider, OrgStatus::Active, None));
    let mut contract_index = 0;
    for (k, org) in spec.orgs.iter().enumerate() {
        let i = k + 1;
        let parent = org
            .parent
            .map(|p| usize::from(p) % i)
            .filter(|p| *p != 0)
            .map(|p| orgs[p]);
        let kind = if org.partner {
            OrgKind::Partner
        } else {
            OrgKind::Customer
        };
        let status = if org.suspended {
            OrgStatus::Suspended
        } else {
            OrgStatus::Active
        };
        changes.put(organization(i, kind, status, parent));
        for contract in &org.contracts {
            let (status, valid_from, valid_until) = match contract.state {
                ContractState::Active => (ContractStatus::Active, None, None),
                ContractState::Suspended => (ContractStatus::Suspended, None, None),
                ContractState::Ended => (ContractStatus::Ended, None, None),
                ContractState::Expired => {
                    (ContractStatus::Active, None, Some(now - Duration::days(1)))
                }
                ContractState::NotYet => {
                    (ContractStatus::Active, Some(now + Duration::days(1)), None)
                }
            };
            changes.put(Contract {
                id: ContractId::from_uuid(id(4, contract_index)),
                version: 0,
                organization: orgs[i],
                crm_contract_id: format!("CON-{contract_index}"),
                services: services
                    .iter()
                    .enumerate()
                    .filter(|(s, _)| contract.services & (1 << s) != 0)
                    .map(|(_, s)| *s)
                    .collect(),
                status,
                valid_from,
                valid_until,
                access_ended_at: None,
                created_at: now,
                updated_at: now,
            });
            contract_index += 1;
        }
    }

    let mut people = Vec::new();
    let mut emails = Vec::new();
    let mut tokens = Vec::new();
    let mut membership_index = 0;
    for (p, person) in spec.people.iter().enumerate() {
        let identity = IdentityId::from_uuid(id(5, p));
        let address = format!("person{p}@isolation.example");
        changes.put(Identity {
            id: identity,
            version: 0,
            email: email(&address),
            email_verified: true,
            phone: None,
            phone_verified: false,
            name: name(&format!("Person{p}")),
            status: person.status,
            crm_contact_id: None,
            pending_email: None,
            pending_phone: None,
            disabled_reason: (person.status == IdentityStatus::Disabled)
                .then(|| "disabled by the test".to_owned()),
            created_at: now,
            updated_at: now,
        });
        let mut seen = BTreeSet::new();
        for membership in &person.memberships {
            let org = usize::from(membership.org) % org_count;
            if !seen.insert(org) {
                continue;
            }
            changes.put(Membership {
                id: MembershipId::from_uuid(id(6, membership_index)),
                version: 0,
                identity,
                organization: orgs[org],
                status: membership.status,
                business_roles: roles
                    .iter()
                    .enumerate()
                    .filter(|(r, _)| membership.roles & (1 << r) != 0)
                    .map(|(_, r)| *r)
                    .collect(),
                mandates: mandates_of(membership.mandates, &services),
                staff_roles: staff_of(membership.staff),
                crm_lead_id: None,
                created_at: now,
                updated_at: now,
            });
            membership_index += 1;
        }
        // A live session, whatever the person's status (as if signed in before a change).
        let token = format!("isolation-session-{p}");
        changes.put(Session {
            id: SessionId::from_uuid(id(7, p)),
            version: 0,
            token_hash: SecretToken::from_presented(token.clone()).hash(),
            identity,
            methods: vec![AuthMethod::Pwd],
            created_at: now,
            last_seen_at: now,
            idle_expires_at: now + Duration::hours(1),
            absolute_expires_at: now + Duration::hours(8),
            revoked: None,
        });
        people.push(identity);
        emails.push(address);
        tokens.push(token);
    }

    let customer = |index: u8| 1 + usize::from(index) % spec.orgs.len();
    let mut join_requests = Vec::new();
    for (j, org) in spec.join_requests.iter().enumerate() {
        let request = JoinRequestId::from_uuid(id(8, j));
        changes.put(JoinRequest {
            id: request,
            version: 0,
            organization: orgs[customer(*org)],
            applicant: applicant(&format!("joiner{j}@isolation.example"), hash),
            status: RequestStatus::PendingApproval,
            identity: None,
            created_at: now,
            updated_at: now,
        });
        join_requests.push(request);
    }
    let mut invitations = Vec::new();
    for (n, (org, held)) in spec.invitations.iter().enumerate() {
        let invitation = InvitationId::from_uuid(id(9, n));
        changes.put(Invitation {
            id: invitation,
            version: 0,
            organization: orgs[customer(*org)],
            email: email(&format!("invitee{n}@isolation.example")),
            name: None,
            kind: InvitationKind::Member,
            business_roles: BTreeSet::new(),
            mandates: BTreeSet::new(),
            staff_roles: BTreeSet::new(),
            status: if *held {
                InvitationStatus::HeldForReview
            } else {
                InvitationStatus::Pending
            },
            token_hash: (!held)
                .then(|| SecretToken::from_presented(format!("invitation-{n}")).hash()),
            expires_at: now + Duration::days(7),
            invited_by: Actor::System,
            batch: None,
            accepted_by: None,
            created_at: now,
            updated_at: now,
        });
        invitations.push(invitation);
    }
    let mut registrations = Vec::new();
    if spec.registration {
        let registration = OrgRegistrationId::from_uuid(id(10, 0));
        changes.put(OrgRegistration {
            id: registration,
            version: 0,
            organization_name: "Registering Oy".to_owned(),
            business_id: None,
            email_domain: None,
            applicant: applicant("registrant@isolation.example", hash),
            status: RequestStatus::PendingApproval,
            organization: None,
            created_at: now,
            updated_at: now,
        });
        registrations.push(registration);
    }
    app.state.store.commit(changes).await.unwrap();
    World {
        app,
        now,
        orgs,
        people,
        emails,
        tokens,
        join_requests,
        invitations,
        registrations,
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots of the store
// ---------------------------------------------------------------------------------------------

/// Everything an administrative request could change (sessions aside: every request touches
/// its own, and a removal ends the member's).
#[derive(Clone, Debug, PartialEq)]
struct Snapshot {
    orgs: BTreeMap<OrganizationId, Organization>,
    contracts: BTreeMap<ContractId, Contract>,
    identities: BTreeMap<IdentityId, Identity>,
    memberships: BTreeMap<MembershipId, Membership>,
    invitations: BTreeMap<InvitationId, Invitation>,
    join_requests: BTreeMap<JoinRequestId, JoinRequest>,
    registrations: BTreeMap<OrgRegistrationId, OrgRegistration>,
    roles: BTreeMap<BusinessRoleId, BusinessRole>,
    services: BTreeSet<ServiceId>,
    events: usize,
    mails: usize,
}

async fn snapshot(world: &World) -> Snapshot {
    let store = &world.app.state.store;
    let mut snap = Snapshot {
        orgs: BTreeMap::new(),
        contracts: BTreeMap::new(),
        identities: BTreeMap::new(),
        memberships: BTreeMap::new(),
        invitations: BTreeMap::new(),
        join_requests: BTreeMap::new(),
        registrations: BTreeMap::new(),
        roles: BTreeMap::new(),
        services: BTreeSet::new(),
        events: 0,
        mails: world.app.mail.len(),
    };
    for org in store.search_organizations("", 500).await.unwrap() {
        for contract in store.contracts_of_organization(org.id).await.unwrap() {
            snap.contracts.insert(contract.id, contract);
        }
        for invitation in store
            .invitations_of_organization(org.id, &[], 500)
            .await
            .unwrap()
        {
            snap.invitations.insert(invitation.id, invitation);
        }
        let members = store
            .members_of_organization(org.id, PageRequest::first(500))
            .await
            .unwrap();
        for member in members.items {
            snap.memberships
                .insert(member.membership.id, member.membership);
        }
        snap.orgs.insert(org.id, org);
    }
    for identity in store.search_identities("", 500).await.unwrap() {
        for membership in store.memberships_of_identity(identity.id).await.unwrap() {
            snap.memberships.insert(membership.id, membership);
        }
        snap.identities.insert(identity.id, identity);
    }
    for id in &world.join_requests {
        if let Some(request) = store.join_request(*id).await.unwrap() {
            snap.join_requests.insert(*id, request);
        }
    }
    for id in &world.registrations {
        if let Some(registration) = store.org_registration(*id).await.unwrap() {
            snap.registrations.insert(*id, registration);
        }
    }
    for role in store.business_roles().await.unwrap() {
        snap.roles.insert(role.id, role);
    }
    snap.services = store
        .services()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    snap.events = store
        .events(EventQuery {
            limit: 1000,
            ..EventQuery::default()
        })
        .await
        .unwrap()
        .len();
    snap
}

// ---------------------------------------------------------------------------------------------
// The oracle: the rules, restated
// ---------------------------------------------------------------------------------------------

/// What the acting person may do in one organization (or globally, for `org: None`), from the
/// records alone.
#[derive(Clone, Debug, Default)]
struct Rights {
    /// Administrator: everything, everywhere.
    admin: bool,
    /// Staff roles that apply here (customer-side targets only).
    customer_service: bool,
    back_office: bool,
    account_manager: bool,
    /// Any staff role held (back-office pages are for staff only).
    staff: bool,
    /// Any mandate in an organization covering the target.
    any_mandate: bool,
    org_admin: bool,
    user_manager: bool,
    /// Services whose roles the person assigns here.
    managed: BTreeSet<ServiceId>,
}

impl Rights {
    fn of(
        snap: &Snapshot,
        now: DateTime<Utc>,
        actor: IdentityId,
        org: Option<OrganizationId>,
    ) -> Self {
        let mut rights = Self::default();
        let Some(identity) = snap.identities.get(&actor) else {
            return rights;
        };
        if identity.status != IdentityStatus::Active {
            return rights;
        }
        // Memberships that count: active, in an active organization.
        let counting: Vec<&Membership> = snap
            .memberships
            .values()
            .filter(|m| m.identity == actor && m.status == MembershipStatus::Active)
            .filter(|m| {
                snap.orgs
                    .get(&m.organization)
                    .is_some_and(|o| o.status == OrgStatus::Active)
            })
            .collect();
        let staff: BTreeSet<StaffRole> = counting
            .iter()
            .filter(|m| snap.orgs[&m.organization].kind == OrgKind::Provider)
            .flat_map(|m| m.staff_roles.iter().copied())
            .collect();
        let customer_side = org.is_none_or(|o| snap.orgs[&o].kind != OrgKind::Provider);
        rights.staff = !staff.is_empty();
        rights.admin = staff.contains(&StaffRole::Administrator);
        rights.customer_service = customer_side && staff.contains(&StaffRole::CustomerService);
        rights.back_office = customer_side && staff.contains(&StaffRole::BackOffice);
        rights.account_manager = customer_side && staff.contains(&StaffRole::AccountManager);
        let Some(org) = org else {
            return rights;
        };
        // The organization and its ancestors: a mandate there covers it.
        let mut lineage = vec![org];
        let mut next = snap.orgs[&org].parent;
        while let Some(parent) = next {
            if lineage.contains(&parent) {
                break;
            }
            lineage.push(parent);
            next = snap.orgs.get(&parent).and_then(|o| o.parent);
        }
        let covering: Vec<&&Membership> = counting
            .iter()
            .filter(|m| lineage.contains(&m.organization))
            .collect();
        rights.any_mandate = covering.iter().any(|m| !m.mandates.is_empty());
        rights.org_admin = covering
            .iter()
            .any(|m| m.mandates.contains(&Mandate::OrgAdmin));
        rights.user_manager = rights.org_admin
            || covering
                .iter()
                .any(|m| m.mandates.contains(&Mandate::UserManager));
        for service in &snap.services {
            let manages = rights.org_admin
                || covering.iter().any(|m| {
                    m.mandates.contains(&Mandate::ServiceManager(*service))
                        && snap.contracts.values().any(|c| {
                            c.organization == m.organization
                                && c.status == ContractStatus::Active
                                && c.valid_from.is_none_or(|from| from <= now)
                                && c.valid_until.is_none_or(|until| now < until)
                                && c.services.contains(service)
                        })
                });
            if manages {
                rights.managed.insert(*service);
            }
        }
        rights
    }

    fn view(&self) -> bool {
        self.admin
            || self.customer_service
            || self.back_office
            || self.account_manager
            || self.any_mandate
    }

    /// Give or take away a mandate (delegation).
    fn delegate(&self, mandate: &Mandate) -> bool {
        self.admin || self.customer_service || self.mandate_rule(mandate)
    }

    fn mandate_rule(&self, mandate: &Mandate) -> bool {
        match mandate {
            Mandate::OrgAdmin => self.org_admin,
            Mandate::UserManager => self.user_manager,
            Mandate::ServiceManager(service) => self.managed.contains(service),
        }
    }

    /// Add or take away a business role granting in `services`.
    fn assign(&self, services: &BTreeSet<ServiceId>) -> bool {
        self.admin
            || self.customer_service
            || if services.is_empty() {
                self.user_manager
            } else {
                services.iter().all(|s| self.managed.contains(s))
            }
    }

    /// Approve or reject join requests; remove members.
    fn manage_members(&self) -> bool {
        self.admin || self.customer_service || self.user_manager
    }

    /// Invite (with these roles and mandates), resend, revoke.
    fn invite(&self, services: &BTreeSet<ServiceId>, mandates: &BTreeSet<Mandate>) -> bool {
        self.admin
            || self.customer_service
            || self.account_manager
            || (self.user_manager
                && services.iter().all(|s| self.managed.contains(s))
                && mandates.iter().all(|m| self.mandate_rule(m)))
    }
}

fn role_services(snap: &Snapshot, roles: &BTreeSet<BusinessRoleId>) -> BTreeSet<ServiceId> {
    roles
        .iter()
        .filter_map(|r| snap.roles.get(r))
        .flat_map(|r| r.services())
        .collect()
}

/// The changes between `before` and `after` that `actor` may not make under the rules.
fn unjustified(
    before: &Snapshot,
    after: &Snapshot,
    now: DateTime<Utc>,
    actor: IdentityId,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let rights = |org: Option<OrganizationId>| Rights::of(before, now, actor, org);

    // Registrations and join requests decided.
    let mut approved_registrations = Vec::new();
    for (id, after_reg) in &after.registrations {
        let Some(before_reg) = before.registrations.get(id) else {
            wrong.push(format!("registration {id} appeared"));
            continue;
        };
        if before_reg == after_reg {
            continue;
        }
        let global = rights(None);
        if !(global.admin || global.back_office)
            || before_reg.status != RequestStatus::PendingApproval
        {
            wrong.push(format!("registration {id} decided without the right"));
        }
        if matches!(after_reg.status, RequestStatus::Approved { .. }) {
            approved_registrations.push(after_reg);
        }
    }
    let mut approved_joins = Vec::new();
    for (id, after_req) in &after.join_requests {
        let before_req = &before.join_requests[id];
        if before_req == after_req {
            continue;
        }
        if !rights(Some(before_req.organization)).manage_members()
            || before_req.status != RequestStatus::PendingApproval
            || before_req.organization != after_req.organization
        {
            wrong.push(format!("join request {id} decided without the right"));
        }
        if matches!(after_req.status, RequestStatus::Approved { .. }) {
            approved_joins.push(after_req);
        }
    }

    // Organizations: created by an account manager, or by approving a registration.
    for (id, org) in &after.orgs {
        match before.orgs.get(id) {
            Some(old) if old == org => {}
            Some(_) => wrong.push(format!("organization {id} changed")),
            None => {
                let global = rights(None);
                let from_registration = approved_registrations
                    .iter()
                    .any(|r| r.organization == Some(*id));
                if !(global.admin || global.account_manager || from_registration) {
                    wrong.push(format!("organization {id} created without the right"));
                }
            }
        }
    }
    for (id, contract) in &after.contracts {
        match before.contracts.get(id) {
            Some(old) if old == contract => {}
            Some(_) => wrong.push(format!("contract {id} changed")),
            None if !before.orgs.contains_key(&contract.organization) => {}
            None => wrong.push(format!("contract {id} created in an existing organization")),
        }
    }

    // Identities: only new ones, from an approved join request or registration.
    let mut new_people: BTreeMap<IdentityId, BTreeSet<OrganizationId>> = BTreeMap::new();
    for (id, identity) in &after.identities {
        match before.identities.get(id) {
            Some(old) if old == identity => {}
            Some(_) => wrong.push(format!("identity {id} changed")),
            None => {
                let joined = approved_joins
                    .iter()
                    .filter(|r| r.identity == Some(*id))
                    .map(|r| r.organization);
                let registered = approved_registrations
                    .iter()
                    .filter(|r| r.applicant.email == identity.email)
                    .filter_map(|r| r.organization);
                let orgs: BTreeSet<_> = joined.chain(registered).collect();
                if orgs.is_empty() {
                    wrong.push(format!("identity {id} created without a decision"));
                }
                new_people.insert(*id, orgs);
            }
        }
    }

    for (id, membership) in &after.memberships {
        let Some(old) = before.memberships.get(id) else {
            let fits = new_people
                .get(&membership.identity)
                .is_some_and(|orgs| orgs.contains(&membership.organization));
            if !fits {
                wrong.push(format!("membership {id} created without a decision"));
            }
            continue;
        };
        if old == membership {
            continue;
        }
        let here = rights(Some(old.organization));
        if old.identity != membership.identity
            || old.organization != membership.organization
            || old.staff_roles != membership.staff_roles
            || old.crm_lead_id != membership.crm_lead_id
        {
            wrong.push(format!(
                "membership {id}: owner, organization or staff roles changed"
            ));
        }
        let changed_roles: BTreeSet<_> = old
            .business_roles
            .symmetric_difference(&membership.business_roles)
            .copied()
            .collect();
        for role in &changed_roles {
            let services = role_services(before, &[*role].into_iter().collect());
            if !here.assign(&services) {
                wrong.push(format!(
                    "membership {id}: role {role} changed without the right"
                ));
            }
        }
        for mandate in old.mandates.symmetric_difference(&membership.mandates) {
            if !here.delegate(mandate) {
                wrong.push(format!(
                    "membership {id}: mandate {mandate} changed without the right"
                ));
            }
        }
        if old.status != membership.status {
            let removal = membership.status == MembershipStatus::Removed;
            // Removing a member takes away what they hold there: their mandates, and in the
            // provider organization their staff roles (only an Administrator changes those).
            let takes_staff_roles = before.orgs[&old.organization].kind == OrgKind::Provider
                && !old.staff_roles.is_empty();
            if !removal
                || !here.manage_members()
                || !old.mandates.iter().all(|m| here.delegate(m))
                || (takes_staff_roles && !here.admin)
            {
                wrong.push(format!(
                    "membership {id}: status {:?} -> {:?} without the right",
                    old.status, membership.status
                ));
            }
        }
    }
    for id in before.memberships.keys() {
        if !after.memberships.contains_key(id) {
            wrong.push(format!("membership {id} vanished"));
        }
    }

    for (id, invitation) in &after.invitations {
        let services = role_services(before, &invitation.business_roles);
        match before.invitations.get(id) {
            None => {
                let here = rights(Some(invitation.organization));
                if !here.invite(&services, &invitation.mandates)
                    || !invitation.staff_roles.is_empty()
                {
                    wrong.push(format!("invitation {id} created without the right"));
                }
            }
            Some(old) if old == invitation => {}
            Some(old) => {
                let here = rights(Some(old.organization));
                let allowed = if old.status == InvitationStatus::HeldForReview {
                    here.admin || here.back_office
                } else {
                    here.invite(&BTreeSet::new(), &BTreeSet::new())
                };
                if !allowed
                    || old.organization != invitation.organization
                    || old.email != invitation.email
                    || old.business_roles != invitation.business_roles
                    || old.mandates != invitation.mandates
                    || old.staff_roles != invitation.staff_roles
                {
                    wrong.push(format!("invitation {id} changed without the right"));
                }
            }
        }
    }
    wrong
}

// ---------------------------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------------------------

static STEPS: AtomicUsize = AtomicUsize::new(0);
static CHANGED: AtomicUsize = AtomicUsize::new(0);
static REFUSED: AtomicUsize = AtomicUsize::new(0);
static READ: AtomicUsize = AtomicUsize::new(0);

fn pick<T: Copy>(items: &[T], index: u8) -> Option<T> {
    (!items.is_empty()).then(|| items[usize::from(index) % items.len()])
}

/// An id that names nothing, for requests and invitations when the world has none.
const NOWHERE: &str = "00000000-0000-4000-8000-00000000dead";

fn or_nowhere<T: ToString>(item: Option<T>) -> String {
    item.map_or_else(|| NOWHERE.to_owned(), |i| i.to_string())
}

/// What a request reads, for the checks on pages that answer 200.
enum Read {
    Nothing,
    Org(OrganizationId),
    Member(OrganizationId, IdentityId),
    Staff(OrganizationId),
}

struct Request {
    path: String,
    form: Option<Vec<(String, String)>>,
    read: Read,
}

fn request(world: &World, act: &Act, serial: usize) -> Request {
    let org = |i: u8| world.orgs[usize::from(i) % world.orgs.len()];
    let person = |i: u8| world.people[usize::from(i) % world.people.len()];
    let other_org = |i: u8| world.orgs[(usize::from(i) + 1) % world.orgs.len()];
    let role_fields = |ticked: u8| -> Vec<(String, String)> {
        ROLES
            .iter()
            .enumerate()
            .filter(|(r, _)| ticked & (1 << r) != 0)
            .map(|(_, (key, _))| (format!("role_{key}"), "on".to_owned()))
            .collect()
    };
    let field = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let get = |path: String, read| Request {
        path,
        form: None,
        read,
    };
    let post = |path: String, form: Vec<(String, String)>| Request {
        path,
        form: Some(form),
        read: Read::Nothing,
    };
    match *act {
        Act::ViewOrganization { org: o } => {
            get(format!("/admin/orgs/{}", org(o)), Read::Org(org(o)))
        }
        Act::ViewUsers { org: o } => get(
            format!("/admin/orgs/{}/users?status=all", org(o)),
            Read::Org(org(o)),
        ),
        Act::ViewUser { org: o, person: p } => get(
            format!("/admin/orgs/{}/users/{}", org(o), person(p)),
            Read::Member(org(o), person(p)),
        ),
        Act::SetRoles {
            org: o,
            person: p,
            ticked,
            forged,
        } => {
            let mut form = role_fields(ticked);
            if forged {
                form.push(field("organization", &other_org(o).to_string()));
                form.push(field("identity", &person(p.wrapping_add(1)).to_string()));
                form.push(field("business_roles", "role-ab"));
                form.push(field("mandates", "org_admin"));
            }
            post(
                format!("/admin/orgs/{}/users/{}/roles", org(o), person(p)),
                form,
            )
        }
        Act::SetMandates {
            org: o,
            person: p,
            ticked,
            forged,
        } => {
            let mut form = Vec::new();
            if ticked & 1 != 0 {
                form.push(field("user_manager", "on"));
            }
            for (i, key) in SERVICES.iter().enumerate() {
                if ticked & (2 << i) != 0 {
                    form.push(field(&format!("service_{key}"), "on"));
                }
            }
            if forged {
                form.push(field("org_admin", "on"));
                form.push(field("mandate", "org_admin"));
                form.push(field("staff_roles", "administrator"));
                form.push(field("organization", &other_org(o).to_string()));
            }
            post(
                format!("/admin/orgs/{}/users/{}/mandates", org(o), person(p)),
                form,
            )
        }
        Act::Remove { org: o, person: p } => post(
            format!("/admin/orgs/{}/users/{}/remove", org(o), person(p)),
            Vec::new(),
        ),
        Act::DecideJoin {
            org: o,
            request,
            approve,
        } => post(
            format!(
                "/admin/orgs/{}/approvals/{}",
                org(o),
                or_nowhere(pick(&world.join_requests, request))
            ),
            vec![
                field("decision", if approve { "approve" } else { "reject" }),
                field("reason", "no"),
            ],
        ),
        Act::Invite {
            org: o,
            ticked,
            forged,
        } => {
            let mut form = vec![
                field("email", &format!("new{serial}@invited.example")),
                field("given_name", "New"),
                field("family_name", "Person"),
            ];
            form.extend(role_fields(ticked));
            if forged {
                form.push(field("contact_person", "on"));
                form.push(field("mandates", "org_admin"));
                form.push(field("org_admin", "on"));
                form.push(field("staff_roles", "administrator"));
                form.push(field("organization", &other_org(o).to_string()));
            }
            post(format!("/admin/orgs/{}/invitations", org(o)), form)
        }
        Act::Resend { org: o, invitation } => post(
            format!(
                "/admin/orgs/{}/invitations/{}/resend",
                org(o),
                or_nowhere(pick(&world.invitations, invitation))
            ),
            Vec::new(),
        ),
        Act::Revoke { org: o, invitation } => post(
            format!(
                "/admin/orgs/{}/invitations/{}/revoke",
                org(o),
                or_nowhere(pick(&world.invitations, invitation))
            ),
            Vec::new(),
        ),
        Act::StaffViewOrganization { org: o } => get(
            format!("/backoffice/organizations/{}", org(o)),
            Read::Staff(org(o)),
        ),
        Act::StaffCreateOrganization { forged } => {
            let mut form = vec![
                field("name", &format!("Created {serial}")),
                field("crm_account_id", &format!("ACC-NEW-{serial}")),
                field("email_domain", ""),
            ];
            if forged {
                form.push(field("kind", "provider"));
                form.push(field("parent_crm_account_id", "ACC-1"));
                form.push(field("status", "active"));
            }
            post("/backoffice/organizations".to_owned(), form)
        }
        Act::StaffInviteContact { org: o, ticked } => {
            let mut form = vec![
                field("email", &format!("contact{serial}@invited.example")),
                field("given_name", "Contact"),
                field("family_name", "Person"),
            ];
            form.extend(role_fields(ticked));
            post(
                format!("/backoffice/organizations/{}/contact-person", org(o)),
                form,
            )
        }
        Act::StaffDecideRegistration { approve } => post(
            format!(
                "/backoffice/registrations/{}",
                or_nowhere(world.registrations.first())
            ),
            vec![
                field("decision", if approve { "approve" } else { "reject" }),
                field("reason", "not a customer"),
            ],
        ),
        Act::StaffRelease { invitation } => post(
            format!(
                "/backoffice/invitations/{}/release",
                or_nowhere(pick(&world.invitations, invitation))
            ),
            Vec::new(),
        ),
        Act::StaffRefuse { invitation } => post(
            format!(
                "/backoffice/invitations/{}/revoke",
                or_nowhere(pick(&world.invitations, invitation))
            ),
            Vec::new(),
        ),
    }
}

async fn send(client: &mut Client, request: &Request) -> TestResponse {
    match &request.form {
        None => client.get(&request.path).await,
        Some(form) => {
            let fields: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            client.post_form(&request.path, &fields).await
        }
    }
}

/// Whether the response refused the request (nothing may have changed then).
fn refused(response: &TestResponse) -> bool {
    let to_sign_in = response
        .location()
        .is_some_and(|location| location.starts_with("/signin"));
    response.status.is_client_error() || to_sign_in
}

/// Checks of a page that answered 200.
fn check_read(
    world: &World,
    before: &Snapshot,
    actor: usize,
    read: &Read,
    body: &str,
) -> Result<(), String> {
    let rights = |org| Rights::of(before, world.now, world.people[actor], Some(org));
    let member_of = |identity: IdentityId, org: OrganizationId| {
        before
            .memberships
            .values()
            .any(|m| m.identity == identity && m.organization == org)
    };
    let org = match *read {
        Read::Nothing => return Ok(()),
        Read::Org(org) => org,
        Read::Member(org, identity) => {
            if !member_of(identity, org) {
                return Err(format!("{identity} is shown as a member of {org}"));
            }
            org
        }
        Read::Staff(org) => {
            if !rights(org).staff {
                return Err("a back-office page was shown to someone without a staff role".into());
            }
            org
        }
    };
    if !rights(org).view() {
        return Err(format!(
            "organization {org} was shown to someone who may not view it"
        ));
    }
    if matches!(read, Read::Staff(_)) {
        return Ok(());
    }
    for (p, address) in world.emails.iter().enumerate() {
        if p != actor && !member_of(world.people[p], org) && body.contains(address.as_str()) {
            return Err(format!(
                "the page of {org} shows {address}, not a member there"
            ));
        }
    }
    Ok(())
}

async fn run_case(
    spec: &WorldSpec,
    steps: &[Step],
    hash: &PasswordHashString,
) -> Result<(), String> {
    let world = build_world(spec, hash).await;
    let mut client = world.app.client();
    for (serial, step) in steps.iter().enumerate() {
        let actor = usize::from(step.actor) % world.people.len();
        client
            .jar
            .insert("smartplan_session".to_owned(), world.tokens[actor].clone());
        let request = request(&world, &step.act, serial);
        let before = snapshot(&world).await;
        let response = send(&mut client, &request).await;
        let after = snapshot(&world).await;
        STEPS.fetch_add(1, Ordering::Relaxed);
        let context = || {
            format!(
                "step {serial}: person{actor} {} {} answered {} ({})",
                if request.form.is_some() {
                    "POST"
                } else {
                    "GET"
                },
                request.path,
                response.status,
                response.body.chars().take(300).collect::<String>()
            )
        };
        if response.status.is_server_error() {
            return Err(format!("server error: {}", context()));
        }
        if refused(&response) {
            REFUSED.fetch_add(1, Ordering::Relaxed);
            if before != after {
                return Err(format!(
                    "a refused request changed the store: {}",
                    context()
                ));
            }
            continue;
        }
        if response.status == StatusCode::OK && request.form.is_none() {
            READ.fetch_add(1, Ordering::Relaxed);
            check_read(&world, &before, actor, &request.read, &response.body)
                .map_err(|e| format!("{e}: {}", context()))?;
        }
        let wrong = unjustified(&before, &after, world.now, world.people[actor]);
        if !wrong.is_empty() {
            return Err(format!("{}: {}", wrong.join("; "), context()));
        }
        if before != after {
            CHANGED.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// The property: see the module documentation. 10 000 cases unless `PROPTEST_CASES` says
/// otherwise.
#[test]
fn administrative_requests_stay_within_the_actors_rights() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hash = runtime.block_on(applicant_hash());
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let started = std::time::Instant::now();
    let result = runner.run(&(world_spec(), steps()), |(spec, steps)| {
        runtime
            .block_on(run_case(&spec, &steps, &hash))
            .map_err(TestCaseError::fail)
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let (steps, changed, refused, read) = (
        STEPS.load(Ordering::Relaxed),
        CHANGED.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed),
        READ.load(Ordering::Relaxed),
    );
    eprintln!(
        "isolation: {cases} cases, {steps} requests ({changed} changed something, {refused} refused, {read} pages read) in {:?}",
        started.elapsed()
    );
    // Not vacuous: both sides of the property were exercised.
    assert!(
        changed * 20 >= steps,
        "too few requests changed something: {changed} of {steps}"
    );
    assert!(
        refused * 5 >= steps,
        "too few requests were refused: {refused} of {steps}"
    );
    assert!(
        read * 50 >= steps,
        "too few pages were read: {read} of {steps}"
    );
}
