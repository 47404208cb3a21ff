//! Records kept in memory for the paths that read them on every request (role resolution,
//! single sign-on), for at most [`crate::Policy::catalog_max_age`].
//!
//! [`RecentReads`] holds the rule in one place: a record read at `t` is reused while
//! `now - t` is under the maximum age (a clock that went back counts as stale); a change made
//! here forgets what it touched, and a read that began before such a change does not store what
//! it read. [`CatalogCache`] keeps services and business roles with it (changes through the
//! same [`crate::Ciam`]'s [`crate::services::Catalog`] empty it after their commit), and
//! ciam-saml's SP registrations keep their parsed service providers with it. Changes made by
//! another process on the same store (another node) take effect within the maximum age.
//!
//! Only found records are kept: a key that names nothing is asked of the store every time, so
//! a service defined on another node is seen at once.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration, Utc};

use crate::ids::BusinessRoleId;
use crate::services::{BusinessRole, Service};
use crate::store::{Store, StoreError};

/// A record and when it was read from the store.
struct Entry<V> {
    read_at: DateTime<Utc>,
    value: Arc<V>,
}

/// Taken before a read from the store; [`RecentReads::keep`] stores what the read found only
/// if nothing was forgotten since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadTicket(u64);

/// Values read from a store, each reused for a maximum age after it was read.
pub struct RecentReads<K, V> {
    max_age: Duration,
    /// Bumped by every [`RecentReads::forget`] and [`RecentReads::clear`].
    generation: AtomicU64,
    entries: Mutex<HashMap<K, Entry<V>>>,
}

impl<K, V> std::fmt::Debug for RecentReads<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentReads")
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash, V> RecentReads<K, V> {
    /// Values are reused for `max_age` after they were read (zero or less: never).
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            generation: AtomicU64::new(0),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether values are reused at all.
    pub fn reuses(&self) -> bool {
        self.max_age > Duration::zero()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Entry<V>>> {
        // The map holds plain data: a panic elsewhere cannot leave it half changed.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `key` if it was read less than the maximum age before `now`.
    pub fn fresh<Q>(&self, key: &Q, now: DateTime<Utc>) -> Option<Arc<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = self.lock();
        let entry = entries.get(key)?;
        let age = now - entry.read_at;
        (age >= Duration::zero() && age < self.max_age).then(|| Arc::clone(&entry.value))
    }

    /// The value of `key` however old it is (to compare with what the store says now).
    pub fn any<Q>(&self, key: &Q) -> Option<Arc<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().get(key).map(|entry| Arc::clone(&entry.value))
    }

    /// Take this before reading from the store.
    pub fn ticket(&self) -> ReadTicket {
        ReadTicket(self.generation.load(Ordering::SeqCst))
    }

    /// Keeps `value`, read from the store at `now` after `ticket` was taken, unless something
    /// was forgotten since (then the read may be older than that change).
    pub fn keep(&self, ticket: ReadTicket, key: K, value: Arc<V>, now: DateTime<Utc>) {
        let mut entries = self.lock();
        if self.generation.load(Ordering::SeqCst) == ticket.0 {
            entries.insert(
                key,
                Entry {
                    read_at: now,
                    value,
                },
            );
        }
    }

    /// Forgets `key` (after a change to it, also one that failed: it may have lost to a
    /// concurrent change).
    pub fn forget<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.lock().remove(key);
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.lock().clear();
    }

    /// The value of `key`: fresh from here, else from `read` (kept when found).
    async fn read_through<Q, F>(
        &self,
        key: &Q,
        now: DateTime<Utc>,
        read: impl FnOnce() -> F,
    ) -> Result<Option<Arc<V>>, StoreError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        F: Future<Output = Result<Option<V>, StoreError>>,
    {
        if !self.reuses() {
            return Ok(read().await?.map(Arc::new));
        }
        if let Some(hit) = self.fresh(key, now) {
            return Ok(Some(hit));
        }
        let ticket = self.ticket();
        let Some(value) = read().await? else {
            return Ok(None);
        };
        let value = Arc::new(value);
        self.keep(ticket, key.to_owned(), Arc::clone(&value), now);
        Ok(Some(value))
    }
}

/// The services and business roles of one [`crate::Ciam`].
#[derive(Debug)]
pub(crate) struct CatalogCache {
    services_by_key: RecentReads<String, Service>,
    business_roles: RecentReads<BusinessRoleId, BusinessRole>,
}

impl CatalogCache {
    /// A cache keeping records for `max_age` (zero or less: off).
    pub(crate) fn new(max_age: Duration) -> Self {
        Self {
            services_by_key: RecentReads::new(max_age),
            business_roles: RecentReads::new(max_age),
        }
    }

    /// Forgets everything (after a change to services or business roles).
    pub(crate) fn invalidate(&self) {
        self.services_by_key.clear();
        self.business_roles.clear();
    }

    /// The service with `key`, from the cache while fresh, else from `store`.
    pub(crate) async fn service_by_key(
        &self,
        store: &dyn Store,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Arc<Service>>, StoreError> {
        self.services_by_key
            .read_through(key, now, || store.service_by_key(key))
            .await
    }

    /// The business role `id`, from the cache while fresh, else from `store`.
    pub(crate) async fn business_role(
        &self,
        store: &dyn Store,
        id: BusinessRoleId,
        now: DateTime<Utc>,
    ) -> Result<Option<Arc<BusinessRole>>, StoreError> {
        self.business_roles
            .read_through(&id, now, || store.business_role(id))
            .await
    }
}
