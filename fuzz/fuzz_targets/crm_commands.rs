//! Fuzzes the CRM API's JSON bodies: arbitrary bytes deserialized as every provisioning request
//! type (the bodies `POST /api/v1/invitations` and `/api/v1/leads/invitations` take as they are,
//! and the tagged `Command` that carries every other body's fields), then validated and run
//! through `Provisioner::execute` as the CRM, with and without an idempotency key, against a
//! fresh in-memory world.
//!
//! Checks beyond "no panic": a command survives a JSON round trip unchanged (the idempotency
//! fingerprint is the hash of its JSON), a refused command reports at least one field, and a
//! retry with the same idempotency key answers the same.
#![no_main]

#[path = "../common/world.rs"]
mod world;

use ciam_crm::CommandError;
use ciam_crm::commands::{
    ChangeContractRequest, Command, IdentityQuery, InviteBatchRequest, InviteLeadsRequest,
    InviteRequest, OrganizationQuery, UpsertContactRequest, UpsertContractRequest,
    UpsertOrganizationRequest,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

fn parse<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    serde_json::from_slice(data).ok()
}

/// Every body the API deserializes, as a command.
fn commands(data: &[u8]) -> Vec<Command> {
    [
        parse::<Command>(data),
        parse::<UpsertOrganizationRequest>(data).map(Command::UpsertOrganization),
        parse::<UpsertContractRequest>(data).map(Command::UpsertContract),
        parse::<ChangeContractRequest>(data).map(Command::ChangeContract),
        parse::<UpsertContactRequest>(data).map(Command::UpsertContact),
        parse::<InviteRequest>(data).map(Command::Invite),
        parse::<InviteBatchRequest>(data).map(Command::InviteBatch),
        parse::<InviteLeadsRequest>(data).map(Command::InviteLeads),
        parse::<OrganizationQuery>(data).map(Command::GetOrganization),
        parse::<IdentityQuery>(data).map(Command::FindIdentity),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fuzz_target!(|data: &[u8]| {
    for command in commands(data) {
        // Round trip: what the idempotency fingerprint hashes is the command itself.
        let json = serde_json::to_vec(&command).unwrap_or_default();
        let again: Option<Command> = parse(&json);
        assert_eq!(
            again.as_ref(),
            Some(&command),
            "JSON round trip changed the command"
        );
        let _ = world::block_on(async {
            let Some(w) = world::world().await else {
                return;
            };
            let first = w
                .provisioner
                .execute(&w.crm, Some("fuzz-key"), command.clone())
                .await;
            if let Err(CommandError::Invalid(errors)) = &first {
                assert!(!errors.is_empty(), "a refusal without a field");
            }
            if let Ok(first) = &first {
                if !command.is_query() {
                    let retry = w
                        .provisioner
                        .execute(&w.crm, Some("fuzz-key"), command.clone())
                        .await;
                    assert_eq!(
                        retry.as_ref().ok(),
                        Some(first),
                        "a retry answered otherwise"
                    );
                }
            }
            // And without a key, run again (the upserts are idempotent, invitations refused
            // or re-sent): must not panic.
            let _ = w.provisioner.execute(&w.crm, None, command).await;
        });
    }
});
