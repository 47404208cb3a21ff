//! Services and business roles kept in memory for the paths that read them on every request
//! (role resolution, single sign-on), for at most [`crate::Policy::catalog_max_age`].
//!
//! Changes made through the same [`crate::Ciam`] (its [`crate::services::Catalog`]) take
//! effect at once: they empty the cache after their commit. Changes made by another process
//! on the same store (another node) take effect within the maximum age. A zero maximum age
//! (the default) reads the store every time.
//!
//! Only found records are kept: a key that names nothing is asked of the store every time,
//! so a service defined on another node is seen at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration, Utc};

use crate::ids::BusinessRoleId;
use crate::services::{BusinessRole, Service};
use crate::store::{Store, StoreError};

/// A record and when it was read from the store.
struct Entry<T> {
    read_at: DateTime<Utc>,
    record: Arc<T>,
}

impl<T> Entry<T> {
    fn fresh(&self, now: DateTime<Utc>, max_age: Duration) -> Option<Arc<T>> {
        // A clock that went back counts as stale too.
        let age = now - self.read_at;
        (age >= Duration::zero() && age < max_age).then(|| Arc::clone(&self.record))
    }
}

#[derive(Default)]
struct Entries {
    services_by_key: HashMap<String, Entry<Service>>,
    business_roles: HashMap<BusinessRoleId, Entry<BusinessRole>>,
}

/// The cache of one [`crate::Ciam`].
pub(crate) struct CatalogCache {
    max_age: Duration,
    /// Bumped by every invalidation: a read that began before one does not store what it read
    /// (it may be older than the change that invalidated).
    generation: AtomicU64,
    entries: Mutex<Entries>,
}

impl std::fmt::Debug for CatalogCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogCache")
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl CatalogCache {
    /// A cache keeping records for `max_age` (zero or less: off).
    pub(crate) fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            generation: AtomicU64::new(0),
            entries: Mutex::new(Entries::default()),
        }
    }

    fn enabled(&self) -> bool {
        self.max_age > Duration::zero()
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // The map holds plain data: a panic elsewhere cannot leave it half changed.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets everything (after a change to services or business roles).
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut entries = self.lock();
        entries.services_by_key.clear();
        entries.business_roles.clear();
    }

    /// The service with `key`, from the cache while fresh, else from `store`.
    pub(crate) async fn service_by_key(
        &self,
        store: &dyn Store,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Arc<Service>>, StoreError> {
        if !self.enabled() {
            return Ok(store.service_by_key(key).await?.map(Arc::new));
        }
        if let Some(hit) = self
            .lock()
            .services_by_key
            .get(key)
            .and_then(|entry| entry.fresh(now, self.max_age))
        {
            return Ok(Some(hit));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let Some(service) = store.service_by_key(key).await? else {
            return Ok(None);
        };
        let service = Arc::new(service);
        let mut entries = self.lock();
        if self.generation.load(Ordering::SeqCst) == generation {
            entries.services_by_key.insert(
                key.to_owned(),
                Entry {
                    read_at: now,
                    record: Arc::clone(&service),
                },
            );
        }
        Ok(Some(service))
    }

    /// The business role `id`, from the cache while fresh, else from `store`.
    pub(crate) async fn business_role(
        &self,
        store: &dyn Store,
        id: BusinessRoleId,
        now: DateTime<Utc>,
    ) -> Result<Option<Arc<BusinessRole>>, StoreError> {
        if !self.enabled() {
            return Ok(store.business_role(id).await?.map(Arc::new));
        }
        if let Some(hit) = self
            .lock()
            .business_roles
            .get(&id)
            .and_then(|entry| entry.fresh(now, self.max_age))
        {
            return Ok(Some(hit));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let Some(role) = store.business_role(id).await? else {
            return Ok(None);
        };
        let role = Arc::new(role);
        let mut entries = self.lock();
        if self.generation.load(Ordering::SeqCst) == generation {
            entries.business_roles.insert(
                id,
                Entry {
                    read_at: now,
                    record: Arc::clone(&role),
                },
            );
        }
        Ok(Some(role))
    }
}
