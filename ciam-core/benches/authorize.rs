//! In-memory authorization decision time: [`ciam_core::authorize`] for principals and targets
//! shaped like SmartPlan's (a contact person of a sub-organized customer, a service manager,
//! a staff member), allowed and denied.
//!
//! `cargo bench -p ciam-core --bench authorize` (DESIGN.md §8: a decision under 1 µs).
#![expect(missing_docs, reason = "benchmark harness")]

use std::collections::BTreeSet;
use std::hint::black_box;

use ciam_core::authz::{Action, OrgGrant, OrgTarget, Principal, Target, UserPrincipal, authorize};
use ciam_core::identities::{Mandate, StaffRole};
use ciam_core::ids::{IdentityId, OrganizationId, ServiceId};
use ciam_core::organizations::OrgKind;
use criterion::{Criterion, criterion_group, criterion_main};
use uuid::Uuid;

fn org(n: u128) -> OrganizationId {
    OrganizationId::from_uuid(Uuid::from_u128(n))
}

fn service(n: u128) -> ServiceId {
    ServiceId::from_uuid(Uuid::from_u128(0x5e00 + n))
}

/// A person with `memberships` grants; the first one carries `mandates`.
fn person(memberships: u128, mandates: BTreeSet<Mandate>, staff: BTreeSet<StaffRole>) -> Principal {
    let covered: BTreeSet<ServiceId> = (0..3).map(service).collect();
    let grants = (0..memberships)
        .map(|n| OrgGrant {
            organization: org(100 + n),
            mandates: if n == 0 {
                mandates.clone()
            } else {
                BTreeSet::new()
            },
            covered_services: covered.clone(),
        })
        .collect();
    Principal::User(UserPrincipal {
        identity: IdentityId::from_uuid(Uuid::from_u128(1)),
        active: true,
        staff_roles: staff,
        grants,
    })
}

fn decisions(c: &mut Criterion) {
    // A sub-organization two levels below the contact person's organization.
    let sub_org = Target::Organization(OrgTarget {
        id: org(900),
        kind: OrgKind::Customer,
        ancestors: vec![org(800), org(100)],
    });
    let other_org = Target::Organization(OrgTarget {
        id: org(7000),
        kind: OrgKind::Customer,
        ancestors: vec![org(7001)],
    });
    let contact_person = person(3, BTreeSet::from([Mandate::OrgAdmin]), BTreeSet::new());
    let service_manager = person(
        3,
        BTreeSet::from([Mandate::ServiceManager(service(1))]),
        BTreeSet::new(),
    );
    let customer_service = person(
        1,
        BTreeSet::new(),
        BTreeSet::from([StaffRole::CustomerService]),
    );
    let invite = Action::InviteMember {
        role_services: BTreeSet::from([service(1), service(2)]),
        mandates: BTreeSet::from([Mandate::UserManager]),
    };
    let assign = Action::AssignBusinessRoles {
        role_services: BTreeSet::from([service(1)]),
    };

    let mut group = c.benchmark_group("authorize");
    group.bench_function("contact_person_invites_in_sub_org_allowed", |b| {
        b.iter(|| {
            authorize(
                black_box(&contact_person),
                black_box(&invite),
                black_box(&sub_org),
            )
        });
    });
    group.bench_function("contact_person_in_other_org_denied", |b| {
        b.iter(|| {
            authorize(
                black_box(&contact_person),
                black_box(&invite),
                black_box(&other_org),
            )
        });
    });
    group.bench_function("service_manager_assigns_roles_allowed", |b| {
        b.iter(|| {
            authorize(
                black_box(&service_manager),
                black_box(&assign),
                black_box(&sub_org),
            )
        });
    });
    group.bench_function("service_manager_invites_with_mandate_denied", |b| {
        b.iter(|| {
            authorize(
                black_box(&service_manager),
                black_box(&invite),
                black_box(&sub_org),
            )
        });
    });
    group.bench_function("customer_service_removes_member_allowed", |b| {
        b.iter(|| {
            authorize(
                black_box(&customer_service),
                black_box(&Action::RemoveMember),
                black_box(&other_org),
            )
        });
    });
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
