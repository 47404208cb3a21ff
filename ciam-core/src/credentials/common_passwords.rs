//! The shipped list of the 10 000 most common passwords (see `common_passwords.LICENSE`), which
//! [`super::PasswordPolicy`] refuses for new passwords.

use std::collections::HashSet;
use std::sync::LazyLock;

static LIST: &str = include_str!("common_passwords.txt");

static SET: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| LIST.lines().filter(|line| !line.is_empty()).collect());

/// How many passwords the shipped list holds.
pub fn count() -> usize {
    SET.len()
}

/// Whether `password` is on the list. The list is lower case; the comparison ignores case so
/// that `Password1` counts as `password1`.
pub fn contains(password: &str) -> bool {
    SET.contains(password) || SET.contains(password.to_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    #[test]
    fn holds_ten_thousand_entries() {
        assert!(super::count() >= 10_000, "{}", super::count());
        assert!(super::contains("password"));
        assert!(super::contains("Password1"));
        assert!(super::contains("qwertyuiop"));
        assert!(!super::contains("correct horse battery staple"));
    }
}
