//! Password hashing with argon2id: OWASP parameters by default, off the async executor on the
//! hasher's own threads (one per core), each reusing its argon2 memory buffer.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::{PasswordHash, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::clock::RandomSource;

/// A password as typed by its owner. Redacted `Debug`, no `Display`.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Wraps a password exactly as typed (no trimming, no normalization).
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The password text. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A stored password hash in PHC string format. Redacted `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHashString(String);

impl PasswordHashString {
    /// Wraps a hash read from a store or an import; checks that it parses and that its
    /// algorithm is one this library verifies: argon2id/argon2i/argon2d and
    /// `pbkdf2-sha256` PHC strings, and bcrypt (`$2a$`, `$2b$`, `$2y$`) strings. Imported
    /// hashes are replaced by argon2id with the current parameters at the first successful
    /// sign-in.
    pub fn parse(phc: &str) -> Result<Self, PasswordError> {
        match legacy::algorithm_of(phc) {
            Some(_) => Ok(Self(phc.to_owned())),
            None => Err(PasswordError::MalformedHash),
        }
    }

    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHashString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algorithm = self.0.split('$').nth(1).unwrap_or("?");
        write!(f, "PasswordHashString({algorithm}, <redacted>)")
    }
}

/// Errors of password policy and hashing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// Shorter than the policy minimum.
    #[error("the password must have at least {min} characters")]
    TooShort {
        /// Minimum length.
        min: usize,
    },
    /// Longer than the policy maximum.
    #[error("the password must have at most {max} characters")]
    TooLong {
        /// Maximum length.
        max: usize,
    },
    /// The password is on the list of common passwords.
    #[error("the password is too common; choose another")]
    TooCommon,
    /// The password contains a word of its context: the service's or company's name, the
    /// person's name or email address, their organization's name.
    #[error(
        "the password contains \"{word}\", which is easy to guess here; choose one without the service's name, your name, your email address or your organization's name"
    )]
    ContextWord {
        /// The word found (lower case, separators removed).
        word: String,
    },
    /// The password is in the breached-password list.
    #[error("this password has appeared in a data breach, so attackers try it; choose another")]
    Breached,
    /// The breached-password list could not be consulted, and the policy refuses new
    /// passwords until it can ([`BreachCheckFailure::Refuse`]).
    #[error(
        "the password cannot be checked against known breaches right now; try again in a few minutes"
    )]
    BreachCheckUnavailable,
    /// The stored hash is not a PHC string this library understands.
    #[error("the stored password hash is malformed")]
    MalformedHash,
    /// The argon2 parameters are out of range.
    #[error("invalid password hashing parameters")]
    InvalidParams,
    /// Hashing could not run (the hashing threads are gone).
    #[error("password hashing is unavailable")]
    Unavailable,
}

/// What a new password gets when the breached-password list cannot be consulted (the file is
/// missing or unreadable).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BreachCheckFailure {
    /// Refuse the new password with [`PasswordError::BreachCheckUnavailable`] (fail closed;
    /// the default): nobody sets a password that was not checked.
    #[default]
    Refuse,
    /// Log a warning and accept it (fail open): availability over the check.
    Allow,
}

/// Rules for new passwords (NIST SP 800-63B: length, no composition rules, refused lists).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Minimum length in characters (default 8).
    pub min_len: usize,
    /// Maximum length in characters (default 128).
    pub max_len: usize,
    /// Refuse passwords on the shipped list of the 10 000 most common ones (default true).
    pub reject_common: bool,
    /// Words no new password may contain, compared without case and separators: the names of
    /// the service and the company (default none; SmartPlan sets `smartplan`). Words shorter
    /// than [`super::MIN_CONTEXT_WORD_LEN`] are ignored.
    pub context_words: Vec<String>,
    /// What happens when the breached-password list cannot be consulted (default: refuse).
    pub breach_check_failure: BreachCheckFailure,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_len: 8,
            max_len: 128,
            reject_common: true,
            context_words: Vec::new(),
            breach_check_failure: BreachCheckFailure::Refuse,
        }
    }
}

impl PasswordPolicy {
    /// Checks a new password exactly as typed, with the person's context words
    /// ([`super::PasswordContext`]) besides the policy's own.
    pub fn check_for(
        &self,
        password: &Password,
        context: &super::PasswordContext,
    ) -> Result<(), PasswordError> {
        self.check(password)?;
        match super::context_words::contained_word(password.expose(), &[], context) {
            Some(word) => Err(PasswordError::ContextWord { word }),
            None => Ok(()),
        }
    }

    /// Checks a new password exactly as typed: length, the common list and the policy's own
    /// context words (not the person's: see [`PasswordPolicy::check_for`]).
    pub fn check(&self, password: &Password) -> Result<(), PasswordError> {
        let len = password.expose().chars().count();
        if len < self.min_len {
            return Err(PasswordError::TooShort { min: self.min_len });
        }
        if len > self.max_len {
            return Err(PasswordError::TooLong { max: self.max_len });
        }
        if self.reject_common && super::common_passwords::contains(password.expose()) {
            return Err(PasswordError::TooCommon);
        }
        let none = super::PasswordContext::new();
        if let Some(word) =
            super::context_words::contained_word(password.expose(), &self.context_words, &none)
        {
            return Err(PasswordError::ContextWord { word });
        }
        Ok(())
    }
}

/// argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Parallelism.
    pub parallelism: u32,
}

impl PasswordParams {
    /// OWASP's recommendation: m=19456 KiB, t=2, p=1. The default.
    pub const OWASP: Self = Self {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };

    /// Cheap parameters for tests only (m=64 KiB, t=1, p=1). Never in production.
    pub const INSECURE_FAST_FOR_TESTS: Self = Self {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
}

impl Default for PasswordParams {
    fn default() -> Self {
        Self::OWASP
    }
}

/// Result of verifying a password against a stored hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    /// The password does not match.
    Mismatch,
    /// The password matches and the hash uses the current parameters.
    Match,
    /// The password matches; the hash should be replaced by this one (new parameters).
    MatchRehashed(PasswordHashString),
}

/// The password work a [`PasswordHasher`] (and its clones) has done since it was made: what
/// each operation costs, counted rather than timed. Sign-in proves with it that an unknown
/// email costs the same work as a wrong password (one argon2id verification at the current
/// parameters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashingWork {
    /// New argon2id hashes computed with the current parameters (new passwords, upgrades of
    /// outdated hashes, the dummy hash).
    pub hashes: u64,
    /// Verifications against argon2id hashes with the current parameters.
    pub current_verifications: u64,
    /// Verifications against any other hash (imported bcrypt or PBKDF2, argon2 with other
    /// parameters).
    pub other_verifications: u64,
}

impl HashingWork {
    /// The work done between `earlier` and `self`.
    pub fn since(&self, earlier: &HashingWork) -> HashingWork {
        HashingWork {
            hashes: self.hashes.saturating_sub(earlier.hashes),
            current_verifications: self
                .current_verifications
                .saturating_sub(earlier.current_verifications),
            other_verifications: self
                .other_verifications
                .saturating_sub(earlier.other_verifications),
        }
    }
}

#[derive(Debug, Default)]
struct WorkCounters {
    hashes: AtomicU64,
    current_verifications: AtomicU64,
    other_verifications: AtomicU64,
}

/// A job for the hashing threads.
type HashingJob = Box<dyn FnOnce() + Send>;

/// The threads that hash: as many as hashes may run at once, started with the hasher and
/// stopped when its last clone is dropped. The same few threads do every hash, each reusing
/// its argon2 memory, instead of whichever threads of Tokio's blocking pool are free.
struct HashingThreads {
    jobs: std::sync::mpsc::Sender<HashingJob>,
}

impl HashingThreads {
    fn start(count: usize) -> Result<Self, PasswordError> {
        let (jobs, queue) = std::sync::mpsc::channel::<HashingJob>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for n in 0..count.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("ciam-argon2-{n}"))
                .spawn(move || {
                    loop {
                        // One idle thread waits on the queue; the others wait for the lock.
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            // Every hasher clone is gone.
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|_| PasswordError::Unavailable)?;
        }
        Ok(Self { jobs })
    }
}

/// Hashes and verifies passwords on its own threads, at most one hash per core at a time.
#[derive(Clone)]
pub struct PasswordHasher {
    params: PasswordParams,
    permits: Arc<Semaphore>,
    threads: Arc<HashingThreads>,
    work: Arc<WorkCounters>,
    /// Counts the hashes running at once (tests only).
    #[cfg(test)]
    gauge: Arc<tests::Gauge>,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// A hasher with `params`, allowing as many concurrent hashes as the machine has cores.
    pub fn new(params: PasswordParams) -> Result<Self, PasswordError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_concurrency(params, cores)
    }

    fn with_concurrency(params: PasswordParams, permits: usize) -> Result<Self, PasswordError> {
        argon2_for(params)?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(permits.max(1))),
            threads: Arc::new(HashingThreads::start(permits)?),
            work: Arc::default(),
            #[cfg(test)]
            gauge: Arc::default(),
        })
    }

    /// The current parameters.
    pub fn params(&self) -> PasswordParams {
        self.params
    }

    /// The work done so far by this hasher and its clones.
    pub fn work(&self) -> HashingWork {
        HashingWork {
            hashes: self.work.hashes.load(Ordering::Relaxed),
            current_verifications: self.work.current_verifications.load(Ordering::Relaxed),
            other_verifications: self.work.other_verifications.load(Ordering::Relaxed),
        }
    }

    /// Hashes a password with a fresh random salt.
    pub async fn hash(
        &self,
        password: &Password,
        random: &dyn RandomSource,
    ) -> Result<PasswordHashString, PasswordError> {
        let mut salt_bytes = [0u8; 16];
        random.fill(&mut salt_bytes);
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|_| PasswordError::Unavailable)?;
        let params = self.params;
        let password = password.clone();
        let work = self.work.clone();
        self.run(move || {
            let argon2 = argon2_for(params)?;
            work.hashes.fetch_add(1, Ordering::Relaxed);
            hash_with_buffer(&argon2, password.expose(), &salt)
        })
        .await
    }

    /// Verifies `password` against `stored`; a match on outdated parameters returns the new hash.
    pub async fn verify(
        &self,
        password: &Password,
        stored: &PasswordHashString,
        random: &dyn RandomSource,
    ) -> Result<Verification, PasswordError> {
        let mut salt_bytes = [0u8; 16];
        random.fill(&mut salt_bytes);
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|_| PasswordError::Unavailable)?;
        let params = self.params;
        let password = password.clone();
        let stored = stored.clone();
        let work = self.work.clone();
        self.run(move || {
            let argon2 = argon2_for(params)?;
            let current = match legacy::algorithm_of(stored.as_str()) {
                Some(legacy::Algorithm::Bcrypt) => {
                    work.other_verifications.fetch_add(1, Ordering::Relaxed);
                    if !legacy::verify_bcrypt(password.expose(), stored.as_str()) {
                        return Ok(Verification::Mismatch);
                    }
                    false
                }
                Some(legacy::Algorithm::Pbkdf2Sha256) => {
                    work.other_verifications.fetch_add(1, Ordering::Relaxed);
                    if !legacy::verify_pbkdf2(password.expose(), stored.as_str()) {
                        return Ok(Verification::Mismatch);
                    }
                    false
                }
                Some(legacy::Algorithm::Argon2) => {
                    let parsed = PasswordHash::new(stored.as_str())
                        .map_err(|_| PasswordError::MalformedHash)?;
                    let current = is_current(&parsed, params);
                    let counter = match current {
                        true => &work.current_verifications,
                        false => &work.other_verifications,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    let matched = match current {
                        // The common case: reuse this thread's memory buffer.
                        true => verify_with_buffer(&argon2, params, password.expose(), &parsed),
                        false => None,
                    };
                    let matched = match matched {
                        Some(matched) => matched,
                        None => argon2
                            .verify_password(password.expose().as_bytes(), &parsed)
                            .is_ok(),
                    };
                    if !matched {
                        return Ok(Verification::Mismatch);
                    }
                    current
                }
                None => return Err(PasswordError::MalformedHash),
            };
            if current {
                return Ok(Verification::Match);
            }
            work.hashes.fetch_add(1, Ordering::Relaxed);
            hash_with_buffer(&argon2, password.expose(), &salt).map(Verification::MatchRehashed)
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        // The threads alone bound how many hashes run at once; the permit also keeps queued
        // work out of their queue until a thread is free, so a caller that gives up while
        // waiting (a closed connection) costs no hash.
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Unavailable)?;
        #[cfg(test)]
        let gauge = self.gauge.clone();
        let (done, result) = tokio::sync::oneshot::channel();
        self.threads
            .jobs
            .send(Box::new(move || {
                #[cfg(test)]
                let _running = gauge.enter();
                // The caller may have gone away meanwhile: nothing to tell then.
                let _ = done.send(work());
            }))
            .map_err(|_| PasswordError::Unavailable)?;
        result.await.map_err(|_| PasswordError::Unavailable)?
    }
}

mod legacy {
    //! Verification of imported hashes (bcrypt, PBKDF2-SHA256) and recognition of formats.

    use argon2::password_hash::{PasswordHash, PasswordVerifier as _};

    /// A hash family this library verifies.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) enum Algorithm {
        Argon2,
        Pbkdf2Sha256,
        Bcrypt,
    }

    pub(super) fn algorithm_of(stored: &str) -> Option<Algorithm> {
        if ["$2a$", "$2b$", "$2y$"]
            .iter()
            .any(|prefix| stored.starts_with(prefix))
        {
            return stored
                .parse::<bcrypt::HashParts>()
                .ok()
                .map(|_| Algorithm::Bcrypt);
        }
        let parsed = PasswordHash::new(stored).ok()?;
        match parsed.algorithm.as_str() {
            "argon2id" | "argon2i" | "argon2d" => Some(Algorithm::Argon2),
            "pbkdf2-sha256" => Some(Algorithm::Pbkdf2Sha256),
            _ => None,
        }
    }

    pub(super) fn verify_bcrypt(password: &str, stored: &str) -> bool {
        bcrypt::verify(password, stored).unwrap_or(false)
    }

    pub(super) fn verify_pbkdf2(password: &str, stored: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return false;
        };
        pbkdf2::Pbkdf2
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    }
}

thread_local! {
    /// argon2's working memory, kept per hashing thread and reused by every hash and every
    /// verification at the current parameters (no 19 MiB allocation per sign-in).
    static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Verifies an argon2id hash made with `params` using this thread's reused buffer; `None` when
/// the hash cannot be handled this way (the caller then uses the allocating path).
fn verify_with_buffer(
    argon2: &Argon2<'_>,
    params: PasswordParams,
    password: &str,
    parsed: &PasswordHash<'_>,
) -> Option<bool> {
    use subtle::ConstantTimeEq as _;
    let expected = parsed.hash?;
    let mut salt = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
    let mut out = vec![0u8; expected.len()];
    let _ = params;
    let blocks_needed = argon2.params().block_count();
    BLOCKS.with(|cell| {
        let mut blocks = cell.try_borrow_mut().ok()?;
        if blocks.len() != blocks_needed {
            blocks.resize(blocks_needed, argon2::Block::default());
        }
        argon2
            .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut blocks[..])
            .ok()?;
        Some(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
    })
}

/// Hashes `password` with `salt` into a PHC string, using this thread's reused buffer (the
/// same buffer verification uses: no 19 MiB allocation per new password).
fn hash_with_buffer(
    argon2: &Argon2<'_>,
    password: &str,
    salt: &SaltString,
) -> Result<PasswordHashString, PasswordError> {
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_bytes)
        .map_err(|_| PasswordError::Unavailable)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let blocks_needed = argon2.params().block_count();
    BLOCKS.with(|cell| {
        let mut blocks = cell
            .try_borrow_mut()
            .map_err(|_| PasswordError::Unavailable)?;
        if blocks.len() != blocks_needed {
            blocks.resize(blocks_needed, argon2::Block::default());
        }
        argon2
            .hash_password_into_with_memory(
                password.as_bytes(),
                salt_bytes,
                &mut out,
                &mut blocks[..],
            )
            .map_err(|_| PasswordError::Unavailable)
    })?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: argon2::password_hash::ParamsString::try_from(argon2.params())
            .map_err(|_| PasswordError::InvalidParams)?,
        salt: Some(salt.as_salt()),
        hash: Some(
            argon2::password_hash::Output::new(&out).map_err(|_| PasswordError::Unavailable)?,
        ),
    };
    Ok(PasswordHashString(hash.to_string()))
}

fn argon2_for(params: PasswordParams) -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    )
    .map_err(|_| PasswordError::InvalidParams)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn is_current(hash: &PasswordHash<'_>, params: PasswordParams) -> bool {
    if hash.algorithm.as_str() != "argon2id" {
        return false;
    }
    let get = |name: &str| hash.params.get_decimal(name);
    get("m") == Some(params.memory_kib)
        && get("t") == Some(params.iterations)
        && get("p") == Some(params.parallelism)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SeededRandom;
    use argon2::password_hash::PasswordHasher as _;

    #[tokio::test]
    async fn hashes_verify_and_upgrade() {
        let random = SeededRandom::new(7);
        let old = PasswordHasher::new(PasswordParams::INSECURE_FAST_FOR_TESTS).unwrap();
        let password = Password::new("correct horse battery");
        let hash = old.hash(&password, &random).await.unwrap();
        assert!(hash.as_str().starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert_eq!(
            old.verify(&password, &hash, &random).await.unwrap(),
            Verification::Match
        );
        assert_eq!(
            old.verify(&Password::new("wrong"), &hash, &random)
                .await
                .unwrap(),
            Verification::Mismatch
        );
        let newer = PasswordHasher::new(PasswordParams {
            memory_kib: 128,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap();
        let Verification::MatchRehashed(upgraded) =
            newer.verify(&password, &hash, &random).await.unwrap()
        else {
            panic!("expected a rehash")
        };
        assert!(upgraded.as_str().contains("m=128"));
    }

    #[test]
    fn policy_checks_length_as_typed() {
        let policy = PasswordPolicy::default();
        assert!(policy.check(&Password::new("short")).is_err());
        assert!(policy.check(&Password::new("        ")).is_ok());
        assert!(policy.check(&Password::new("x".repeat(129))).is_err());
        assert_eq!(
            format!("{:?}", Password::new("secret")),
            "Password(<redacted>)"
        );
    }

    #[tokio::test]
    async fn imported_bcrypt_and_pbkdf2_hashes_verify_and_upgrade() {
        let random = SeededRandom::new(8);
        let hasher = PasswordHasher::new(PasswordParams::INSECURE_FAST_FOR_TESTS).unwrap();
        let password = Password::new("imported from the old portal");

        let bcrypt_hash = bcrypt::hash(password.expose(), 4).unwrap();
        let pbkdf2_hash = pbkdf2::Pbkdf2
            .hash_password_customized(
                password.expose().as_bytes(),
                Some(pbkdf2::Algorithm::Pbkdf2Sha256.ident()),
                None,
                pbkdf2::Params {
                    rounds: 1_000,
                    output_length: 32,
                },
                &SaltString::encode_b64(b"0123456789abcdef").unwrap(),
            )
            .unwrap()
            .to_string();
        let argon2i_hash = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        )
        .hash_password(
            password.expose().as_bytes(),
            &SaltString::encode_b64(b"fedcba9876543210").unwrap(),
        )
        .unwrap()
        .to_string();
        assert!(pbkdf2_hash.starts_with("$pbkdf2-sha256$"), "{pbkdf2_hash}");
        for imported in [bcrypt_hash, pbkdf2_hash, argon2i_hash] {
            let stored = PasswordHashString::parse(&imported).unwrap();
            assert_eq!(
                hasher
                    .verify(&Password::new("wrong guess"), &stored, &random)
                    .await
                    .unwrap(),
                Verification::Mismatch,
                "{imported}"
            );
            let Verification::MatchRehashed(upgraded) =
                hasher.verify(&password, &stored, &random).await.unwrap()
            else {
                panic!("an imported hash must be upgraded: {imported}")
            };
            assert!(
                upgraded
                    .as_str()
                    .starts_with("$argon2id$v=19$m=64,t=1,p=1$")
            );
        }
        assert_eq!(
            PasswordHashString::parse("$md5$abc$def").unwrap_err(),
            PasswordError::MalformedHash
        );
        assert!(PasswordHashString::parse("$2b$04$tooshort").is_err());
    }

    #[test]
    fn policy_rejects_common_passwords() {
        let policy = PasswordPolicy::default();
        assert_eq!(
            policy.check(&Password::new("password123")),
            Err(PasswordError::TooCommon)
        );
        assert_eq!(
            policy.check(&Password::new("qwertyuiop")),
            Err(PasswordError::TooCommon)
        );
        assert!(
            policy
                .check(&Password::new("correct horse battery staple"))
                .is_ok()
        );
        let lax = PasswordPolicy {
            reject_common: false,
            ..PasswordPolicy::default()
        };
        assert!(lax.check(&Password::new("password123")).is_ok());
    }

    #[test]
    fn policy_refuses_context_words_of_the_service_and_the_person() {
        let policy = PasswordPolicy {
            context_words: vec!["SmartPlan".to_owned()],
            ..PasswordPolicy::default()
        };
        let word = |w: &str| Err(PasswordError::ContextWord { word: w.to_owned() });
        assert_eq!(
            policy.check(&Password::new("Smart-Plan-2026!")),
            word("smartplan")
        );
        let email = crate::contact::EmailAddress::parse("karl.kearnes@kokomedia.example").unwrap();
        let name = crate::contact::PersonName::parse("Karl", "Kearnes").unwrap();
        let about = super::super::PasswordContext::new()
            .email(&email)
            .name(&name)
            .organization("KOKO Media Inc.");
        assert_eq!(
            policy.check_for(&Password::new("KARL.kearnes.1990"), &about),
            word("karlkearnes")
        );
        assert_eq!(
            policy.check_for(&Password::new("koko-media-forever"), &about),
            word("kokomedia")
        );
        assert!(
            policy
                .check_for(&Password::new("violet-harbour-lantern"), &about)
                .is_ok()
        );
        assert_eq!(
            policy.check_for(&Password::new("violet-smartplan-lantern"), &about),
            word("smartplan")
        );
        // The message names the word and what to leave out.
        let message = PasswordError::ContextWord {
            word: "kokomedia".to_owned(),
        }
        .to_string();
        assert!(message.contains("\"kokomedia\"") && message.contains("organization"));
    }

    #[tokio::test]
    async fn current_hashes_verify_with_the_reused_buffer() {
        let random = SeededRandom::new(11);
        let params = PasswordParams::INSECURE_FAST_FOR_TESTS;
        let hasher = PasswordHasher::new(params).unwrap();
        let password = Password::new("buffer reuse works");
        let hash = hasher.hash(&password, &random).await.unwrap();
        let parsed = PasswordHash::new(hash.as_str()).unwrap();
        let argon2 = argon2_for(params).unwrap();
        for _ in 0..2 {
            assert_eq!(
                verify_with_buffer(&argon2, params, password.expose(), &parsed),
                Some(true)
            );
            assert_eq!(
                verify_with_buffer(&argon2, params, "another one", &parsed),
                Some(false)
            );
        }
    }

    /// Counts the hashes running at once and remembers the most.
    #[derive(Debug, Default)]
    pub(super) struct Gauge {
        running: std::sync::atomic::AtomicUsize,
        peak: std::sync::atomic::AtomicUsize,
        /// The names of the threads that hashed.
        threads: std::sync::Mutex<std::collections::BTreeSet<String>>,
    }

    pub(super) struct Running<'a>(&'a Gauge);

    impl Gauge {
        pub(super) fn enter(&self) -> Running<'_> {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.running.fetch_add(1, SeqCst) + 1;
            self.peak.fetch_max(now, SeqCst);
            let name = std::thread::current().name().unwrap_or("").to_owned();
            self.threads.lock().unwrap().insert(name);
            Running(self)
        }
    }

    impl Drop for Running<'_> {
        fn drop(&mut self) {
            self.0
                .running
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn at_most_the_permitted_hashes_run_at_once() {
        let params = PasswordParams {
            memory_kib: 8 * 1024,
            iterations: 2,
            parallelism: 1,
        };
        for permits in [1, 2] {
            let hasher = PasswordHasher::with_concurrency(params, permits).unwrap();
            let mut tasks = Vec::new();
            for i in 0..8u64 {
                let hasher = hasher.clone();
                tasks.push(tokio::spawn(async move {
                    let random = SeededRandom::new(i);
                    hasher
                        .hash(&Password::new(format!("password number {i}")), &random)
                        .await
                        .unwrap()
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            let peak = hasher.gauge.peak.load(std::sync::atomic::Ordering::SeqCst);
            assert!(
                peak >= 1 && peak <= permits,
                "peak {peak} with {permits} permits"
            );
            // Every hash ran on the hasher's own threads, never on a Tokio thread.
            let threads = hasher.gauge.threads.lock().unwrap().clone();
            assert!(
                !threads.is_empty()
                    && threads.len() <= permits
                    && threads.iter().all(|name| name.starts_with("ciam-argon2-")),
                "hashed on {threads:?} with {permits} permits"
            );
        }
        // One permit per core by default.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let hasher = PasswordHasher::new(PasswordParams::INSECURE_FAST_FOR_TESTS).unwrap();
        assert_eq!(hasher.permits.available_permits(), cores);
    }

    #[tokio::test]
    async fn new_hashes_use_the_reused_buffer_and_match_the_reference() {
        let params = PasswordParams::INSECURE_FAST_FOR_TESTS;
        let argon2 = argon2_for(params).unwrap();
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let password = "buffered hashing works";
        let ours = hash_with_buffer(&argon2, password, &salt).unwrap();
        let reference = argon2
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string();
        assert_eq!(ours.as_str(), reference);
        // The buffer is this thread's, sized for the parameters, and kept for the next use.
        let blocks = BLOCKS.with(|cell| cell.borrow().len());
        assert_eq!(blocks, argon2.params().block_count());
        let hasher = PasswordHasher::new(params).unwrap();
        let random = SeededRandom::new(3);
        let hash = hasher
            .hash(&Password::new(password), &random)
            .await
            .unwrap();
        assert_eq!(
            hasher
                .verify(&Password::new(password), &hash, &random)
                .await
                .unwrap(),
            Verification::Match
        );
    }

    #[test]
    fn owasp_is_the_default() {
        assert_eq!(PasswordParams::default(), PasswordParams::OWASP);
    }
}
