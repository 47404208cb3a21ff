//! Typed identifiers: one newtype per record kind, so that an organization id can never be
//! passed where an identity id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::RandomSource;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Draws a new random (version 4) identifier from the injected randomness.
            pub fn generate(random: &dyn RandomSource) -> Self {
                let mut bytes = [0u8; 16];
                random.fill(&mut bytes);
                Self(uuid::Builder::from_random_bytes(bytes).into_uuid())
            }

            /// Draws a new time-ordered (version 7) identifier: the milliseconds of `at`, then
            /// 74 random bits. For records written in bulk (imports): ids of one batch sit
            /// together in the stores' indexes instead of landing on random pages. The creation
            /// time can be read from such an id.
            pub fn generate_at(at: chrono::DateTime<chrono::Utc>, random: &dyn RandomSource) -> Self {
                let mut bytes = [0u8; 10];
                random.fill(&mut bytes);
                let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
                Self(uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid())
            }

            /// Wraps an existing UUID (for stores reading their rows back).
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// Identifies an [`Organization`](crate::organizations::Organization).
    OrganizationId
);
id_type!(
    /// Identifies a [`Contract`](crate::organizations::Contract).
    ContractId
);
id_type!(
    /// Identifies an [`Identity`](crate::identities::Identity): one person.
    IdentityId
);
id_type!(
    /// Identifies a [`Membership`](crate::identities::Membership) of an identity in an organization.
    MembershipId
);
id_type!(
    /// Identifies a [`Service`](crate::services::Service).
    ServiceId
);
id_type!(
    /// Identifies a [`BusinessRole`](crate::services::BusinessRole).
    BusinessRoleId
);
id_type!(
    /// Identifies an [`Invitation`](crate::invitations::Invitation).
    InvitationId
);
id_type!(
    /// Identifies a batch of invitations sent together.
    BatchId
);
id_type!(
    /// Identifies an [`OrgRegistration`](crate::registrations::OrgRegistration).
    OrgRegistrationId
);
id_type!(
    /// Identifies a [`JoinRequest`](crate::registrations::JoinRequest).
    JoinRequestId
);
id_type!(
    /// Identifies a [`Credential`](crate::credentials::Credential).
    CredentialId
);
id_type!(
    /// Identifies a [`Session`](crate::sessions::Session).
    SessionId
);
id_type!(
    /// Identifies a [`DomainEvent`](crate::events::DomainEvent); stable, for de-duplication downstream.
    EventId
);
id_type!(
    /// Identifies a [`Setting`](crate::settings::Setting): one piece of stored configuration.
    SettingId
);
