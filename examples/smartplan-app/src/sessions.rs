//! In-memory sessions and pending single sign-on requests.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// At most this many sessions and pending requests are kept; expired ones go first.
const MAX_ENTRIES: usize = 10_000;

/// Who signed in, as the IdP asserted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SignedInPerson {
    pub(crate) name_id: String,
    pub(crate) email: Option<String>,
    pub(crate) given_name: Option<String>,
    pub(crate) family_name: Option<String>,
    pub(crate) organization_id: Option<String>,
    pub(crate) organization_name: Option<String>,
    pub(crate) roles: Vec<String>,
    pub(crate) authn_context: Option<String>,
    pub(crate) signed_in_at: DateTime<Utc>,
    pub(crate) expires_at: DateTime<Utc>,
}

/// A single sign-on request sent to the IdP, waiting for its response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingRequest {
    pub(crate) return_to: String,
    pub(crate) expires_at: DateTime<Utc>,
}

#[derive(Default)]
struct Tables {
    sessions: HashMap<String, SignedInPerson>,
    pending: HashMap<String, PendingRequest>,
}

/// Sessions by cookie value, pending requests by request id.
#[derive(Default)]
pub(crate) struct SessionTable {
    tables: Mutex<Tables>,
}

fn make_room<T>(
    map: &mut HashMap<String, T>,
    now: DateTime<Utc>,
    expiry: impl Fn(&T) -> DateTime<Utc>,
) {
    map.retain(|_, value| expiry(value) > now);
    if map.len() >= MAX_ENTRIES {
        // Still full of live entries: drop the ones closest to expiry.
        let mut by_expiry: Vec<(DateTime<Utc>, String)> =
            map.iter().map(|(k, v)| (expiry(v), k.clone())).collect();
        by_expiry.sort();
        for (_, key) in by_expiry.into_iter().take(MAX_ENTRIES / 10) {
            map.remove(&key);
        }
    }
}

impl SessionTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn start_pending(
        &self,
        request_id: String,
        pending: PendingRequest,
        now: DateTime<Utc>,
    ) {
        let mut tables = self.lock();
        make_room(&mut tables.pending, now, |p| p.expires_at);
        tables.pending.insert(request_id, pending);
    }

    /// Takes the pending request (single use); `None` when unknown or expired.
    pub(crate) fn take_pending(
        &self,
        request_id: &str,
        now: DateTime<Utc>,
    ) -> Option<PendingRequest> {
        self.lock()
            .pending
            .remove(request_id)
            .filter(|p| p.expires_at > now)
    }

    pub(crate) fn start_session(&self, id: String, person: SignedInPerson, now: DateTime<Utc>) {
        let mut tables = self.lock();
        make_room(&mut tables.sessions, now, |s| s.expires_at);
        tables.sessions.insert(id, person);
    }

    pub(crate) fn session(&self, id: &str, now: DateTime<Utc>) -> Option<SignedInPerson> {
        let mut tables = self.lock();
        match tables.sessions.get(id) {
            Some(person) if person.expires_at > now => Some(person.clone()),
            Some(_) => {
                tables.sessions.remove(id);
                None
            }
            None => None,
        }
    }

    pub(crate) fn end_session(&self, id: &str) -> bool {
        self.lock().sessions.remove(id).is_some()
    }
}
