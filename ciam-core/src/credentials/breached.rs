//! Breached passwords (ASVS 6.2.12): the port [`BreachedPasswords`], consulted for every new
//! password beside the shipped common list, and an offline adapter, [`PwnedPasswordsFile`],
//! that reads the downloadable "Pwned Passwords" list of Have I Been Pwned: one line per SHA-1
//! hash, `HEX40:COUNT`, ordered by hash. The file (tens of gigabytes) is never loaded: each
//! lookup is a binary search over byte offsets, about 40 small reads. No network lookup is
//! made: the password's hash never leaves the process.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::Password;

/// Why the breach list could not be consulted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BreachError {
    /// The list cannot be read (missing file, permissions, I/O error).
    #[error("the breached-password list {path} cannot be read: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// What the system said.
        reason: String,
    },
    /// The list is not in the `HEX40:COUNT` format.
    #[error(
        "the breached-password list {path} is not a list of SHA-1 hashes (HEX40:COUNT lines) near byte {offset}"
    )]
    Malformed {
        /// The file.
        path: String,
        /// Where the bad line starts.
        offset: u64,
    },
}

/// A corpus of breached passwords. Object safe; implementations must not send the password
/// (or a full hash of it) anywhere.
#[async_trait::async_trait]
pub trait BreachedPasswords: Send + Sync {
    /// How many times `password` appears in the corpus (0: not found).
    async fn times_seen(&self, password: &Password) -> Result<u64, BreachError>;
}

/// The "Pwned Passwords" SHA-1 list of Have I Been Pwned, ordered by hash, as a file.
#[derive(Clone, Debug)]
pub struct PwnedPasswordsFile {
    path: PathBuf,
}

/// The upper-case hexadecimal SHA-1 of `text`.
pub fn sha1_hex(text: &str) -> String {
    hex::encode_upper(Sha1::digest(text.as_bytes()))
}

const HASH_LEN: usize = 40;
/// Bytes read at each probe: more than one line of the list.
const PROBE: usize = 128;

impl PwnedPasswordsFile {
    /// Opens the list at `path`, checking that it can be read and that its first line is of
    /// the `HEX40:COUNT` form (a wrong file is refused at start-up, not at the first
    /// registration).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BreachError> {
        let list = Self {
            path: path.as_ref().to_path_buf(),
        };
        let mut file = list.file()?;
        let len = list.len(&file)?;
        if len > 0 {
            list.line_at(&mut file, 0, len)?;
        }
        Ok(list)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn unreadable(&self, error: &std::io::Error) -> BreachError {
        BreachError::Unreadable {
            path: self.path.display().to_string(),
            reason: error.to_string(),
        }
    }

    fn malformed(&self, offset: u64) -> BreachError {
        BreachError::Malformed {
            path: self.path.display().to_string(),
            offset,
        }
    }

    fn file(&self) -> Result<File, BreachError> {
        File::open(&self.path).map_err(|error| self.unreadable(&error))
    }

    fn len(&self, file: &File) -> Result<u64, BreachError> {
        file.metadata()
            .map(|meta| meta.len())
            .map_err(|error| self.unreadable(&error))
    }

    /// Reads up to `buf.len()` bytes at `offset`; how many were read.
    fn read_at(&self, file: &mut File, offset: u64, buf: &mut [u8]) -> Result<usize, BreachError> {
        file.seek(SeekFrom::Start(offset))
            .map_err(|error| self.unreadable(&error))?;
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(self.unreadable(&error)),
            }
        }
        Ok(filled)
    }

    /// The offset of the first line starting at or after `at` (`len` when none).
    fn line_start(&self, file: &mut File, at: u64, len: u64) -> Result<u64, BreachError> {
        if at == 0 {
            return Ok(0);
        }
        let mut offset = at - 1;
        let mut buf = [0u8; PROBE];
        while offset < len {
            let read = self.read_at(file, offset, &mut buf)?;
            if read == 0 {
                break;
            }
            if let Some(newline) = buf[..read].iter().position(|b| *b == b'\n') {
                return Ok(offset + newline as u64 + 1);
            }
            offset += read as u64;
        }
        Ok(len)
    }

    /// The hash (upper case) and count of the line starting at `offset`.
    fn line_at(
        &self,
        file: &mut File,
        offset: u64,
        len: u64,
    ) -> Result<([u8; HASH_LEN], u64), BreachError> {
        let mut buf = [0u8; PROBE];
        let read = self.read_at(file, offset, &mut buf)?;
        let line = &buf[..read];
        let end = line
            .iter()
            .position(|b| *b == b'\n')
            .unwrap_or(if offset + read as u64 == len { read } else { 0 });
        let line = line[..end].strip_suffix(b"\r").unwrap_or(&line[..end]);
        let (hash, count) = match line.iter().position(|b| *b == b':') {
            Some(colon) => (&line[..colon], &line[colon + 1..]),
            None => (line, &b""[..]),
        };
        if hash.len() != HASH_LEN || !hash.iter().all(u8::is_ascii_hexdigit) {
            return Err(self.malformed(offset));
        }
        let count = std::str::from_utf8(count)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .ok_or_else(|| self.malformed(offset))?;
        let mut key = [0u8; HASH_LEN];
        for (slot, byte) in key.iter_mut().zip(hash) {
            *slot = byte.to_ascii_uppercase();
        }
        Ok((key, count))
    }

    /// How often the SHA-1 `target` (upper-case hex) is listed: a binary search for the first
    /// line whose hash is not below `target`.
    pub fn count_of_hash(&self, target: &str) -> Result<u64, BreachError> {
        let target = target.to_ascii_uppercase();
        let target = target.as_bytes();
        let mut file = self.file()?;
        let len = self.len(&file)?;
        // Invariant: every line starting before the line at `lo` is below `target`; the line
        // starting at or after `hi` (if any) is not.
        let (mut lo, mut hi) = (0u64, len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let start = self.line_start(&mut file, mid, len)?;
            let below = start < len && self.line_at(&mut file, start, len)?.0.as_slice() < target;
            if below {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let start = self.line_start(&mut file, lo, len)?;
        if start >= len {
            return Ok(0);
        }
        let (hash, count) = self.line_at(&mut file, start, len)?;
        Ok(if hash.as_slice() == target { count } else { 0 })
    }
}

#[async_trait::async_trait]
impl BreachedPasswords for PwnedPasswordsFile {
    async fn times_seen(&self, password: &Password) -> Result<u64, BreachError> {
        let hash = sha1_hex(password.expose());
        let list = self.clone();
        tokio::task::spawn_blocking(move || list.count_of_hash(&hash))
            .await
            .map_err(|error| BreachError::Unreadable {
                path: self.path.display().to_string(),
                reason: error.to_string(),
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list of `passwords` (with counts) in the download's format, sorted by hash, with CRLF
    /// line ends, plus `filler` random-looking hashes around them.
    fn list_file(passwords: &[(&str, u64)], filler: usize) -> tempfile::NamedTempFile {
        let mut lines: Vec<String> = passwords
            .iter()
            .map(|(password, count)| format!("{}:{count}", sha1_hex(password)))
            .collect();
        for n in 0..filler {
            lines.push(format!(
                "{}:{}",
                sha1_hex(&format!("filler-{n}")),
                n % 7 + 1
            ));
        }
        lines.sort();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, (lines.join("\r\n") + "\r\n").as_bytes()).unwrap();
        file
    }

    #[test]
    fn listed_passwords_are_found_with_their_count_and_others_are_not() {
        let file = list_file(
            &[("P@ssw0rd!", 52_256), ("violet-harbour-lantern", 3)],
            5_000,
        );
        let list = PwnedPasswordsFile::open(file.path()).unwrap();
        assert_eq!(list.count_of_hash(&sha1_hex("P@ssw0rd!")).unwrap(), 52_256);
        assert_eq!(
            list.count_of_hash(&sha1_hex("violet-harbour-lantern"))
                .unwrap(),
            3
        );
        assert_eq!(
            list.count_of_hash(&sha1_hex("filler-4999")).unwrap(),
            4999 % 7 + 1
        );
        assert_eq!(list.count_of_hash(&sha1_hex("not in the list")).unwrap(), 0);
        // Lower-case hashes are the same hashes.
        assert_eq!(
            list.count_of_hash(&sha1_hex("P@ssw0rd!").to_lowercase())
                .unwrap(),
            52_256
        );
    }

    #[test]
    fn every_line_of_a_list_is_found_including_the_first_and_the_last() {
        let file = list_file(&[], 300);
        let text = std::fs::read_to_string(file.path()).unwrap();
        let list = PwnedPasswordsFile::open(file.path()).unwrap();
        for line in text.lines() {
            let (hash, count) = line.split_once(':').unwrap();
            assert_eq!(
                list.count_of_hash(hash).unwrap(),
                count.parse::<u64>().unwrap()
            );
        }
        // Below the first and above the last.
        assert_eq!(list.count_of_hash(&"0".repeat(40)).unwrap(), 0);
        assert_eq!(list.count_of_hash(&"F".repeat(40)).unwrap(), 0);
    }

    #[test]
    fn an_empty_list_finds_nothing_and_a_missing_or_wrong_file_is_an_error() {
        let empty = tempfile::NamedTempFile::new().unwrap();
        let list = PwnedPasswordsFile::open(empty.path()).unwrap();
        assert_eq!(list.count_of_hash(&sha1_hex("anything")).unwrap(), 0);

        let missing = PwnedPasswordsFile::open("/nonexistent/pwned-passwords.txt");
        assert!(
            matches!(missing, Err(BreachError::Unreadable { .. })),
            "{missing:?}"
        );

        let mut wrong = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut wrong, b"password123\nletmein\n").unwrap();
        let refused = PwnedPasswordsFile::open(wrong.path());
        assert!(
            matches!(refused, Err(BreachError::Malformed { offset: 0, .. })),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn the_port_hashes_the_password_and_a_file_gone_later_is_an_error() {
        let file = list_file(&[("Summer2024!", 12)], 100);
        let list = PwnedPasswordsFile::open(file.path()).unwrap();
        let port: &dyn BreachedPasswords = &list;
        assert_eq!(port.times_seen(&Password::new("Summer2024!")).await, Ok(12));
        assert_eq!(port.times_seen(&Password::new("Summer2024?")).await, Ok(0));
        drop(file);
        assert!(matches!(
            port.times_seen(&Password::new("Summer2024!")).await,
            Err(BreachError::Unreadable { .. })
        ));
    }
}
