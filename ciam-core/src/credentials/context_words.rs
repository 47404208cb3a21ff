//! Context-specific words (ASVS 6.1.2, 6.2.11): a new password must not contain the name of the
//! service or company ([`super::PasswordPolicy::context_words`]), the person's own name or email
//! address, or the name of their organization. The comparison ignores case and every character
//! that is not a letter or a digit ("Smart-Plan 2026", "s.m.a.r.t.p.l.a.n" and "SMARTPLAN" all
//! contain `smartplan`).

use crate::contact::EmailAddress;
use crate::contact::PersonName;

/// Words shorter than this (after folding) are not looked for: a two-letter given name would
/// otherwise refuse most passwords.
pub const MIN_CONTEXT_WORD_LEN: usize = 4;

/// Legal-form suffixes left out of an organization's name ("City Group, Inc." gives
/// `citygroup`).
const LEGAL_FORMS: &[&str] = &[
    "inc", "ltd", "llc", "llp", "plc", "corp", "co", "gmbh", "ag", "sa", "sas", "sarl", "bv", "nv",
    "ab", "oy", "oyj", "as", "aps", "spa", "srl", "kg", "se", "limited", "company",
];

/// The words of one person's context that a new password of theirs must not contain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PasswordContext {
    words: Vec<String>,
}

/// Lower case, letters and digits only.
pub fn fold(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

impl PasswordContext {
    /// No words (the policy's own list still applies).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `text` as one word, when it is long enough once folded.
    pub fn word(mut self, text: &str) -> Self {
        let folded = fold(text);
        if folded.chars().count() >= MIN_CONTEXT_WORD_LEN && !self.words.contains(&folded) {
            self.words.push(folded);
        }
        self
    }

    /// The email's local part (whole and each piece between separators) and the first label
    /// of its domain.
    pub fn email(mut self, email: &EmailAddress) -> Self {
        let text = email.as_str();
        let (local, domain) = text.split_once('@').unwrap_or((text, ""));
        self = self.word(local);
        for piece in local.split(|c: char| !c.is_alphanumeric()) {
            self = self.word(piece);
        }
        if let Some(label) = domain.split('.').next() {
            self = self.word(label);
        }
        self
    }

    /// The person's given and family names.
    pub fn name(self, name: &PersonName) -> Self {
        self.word(&name.given).word(&name.family)
    }

    /// An organization's name, without its legal form.
    pub fn organization(self, name: &str) -> Self {
        let kept: Vec<&str> = name
            .split(|c: char| !c.is_alphanumeric())
            .filter(|part| !part.is_empty() && !LEGAL_FORMS.contains(&fold(part).as_str()))
            .collect();
        self.word(&kept.concat())
    }

    /// The words, folded.
    pub fn words(&self) -> &[String] {
        &self.words
    }
}

/// The first word of `policy_words` or `context` that `password` contains, as folded.
pub fn contained_word(
    password: &str,
    policy_words: &[String],
    context: &PasswordContext,
) -> Option<String> {
    let folded = fold(password);
    policy_words
        .iter()
        .map(|word| fold(word))
        .filter(|word| word.chars().count() >= MIN_CONTEXT_WORD_LEN)
        .chain(context.words.iter().cloned())
        .find(|word| folded.contains(word.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn the_service_name_is_found_whatever_the_case_and_separators() {
        let policy = words(&["SmartPlan"]);
        let none = PasswordContext::new();
        for password in [
            "smartplan-demo-2026",
            "My SMARTPLAN password",
            "s.m.a.r.t.p.l.a.n rocks",
            "Smart Plan_2026!",
        ] {
            assert_eq!(
                contained_word(password, &policy, &none).as_deref(),
                Some("smartplan"),
                "{password}"
            );
        }
        assert_eq!(
            contained_word("violet-harbour-lantern", &policy, &none),
            None
        );
    }

    #[test]
    fn the_persons_email_name_and_organization_are_found() {
        let email = EmailAddress::parse("jeremy.mills@citygroup.example").unwrap();
        let name = PersonName::parse("Jeremy", "Mills").unwrap();
        let context = PasswordContext::new()
            .email(&email)
            .name(&name)
            .organization("City Group, Inc.");
        assert_eq!(
            context.words(),
            ["jeremymills", "jeremy", "mills", "citygroup"]
        );
        for (password, word) in [
            ("Jeremy.Mills.2026", "jeremymills"),
            ("ilovejeremy!!", "jeremy"),
            ("MILLS-and-boon", "mills"),
            ("city-group-rules", "citygroup"),
            ("CityGroup2026", "citygroup"),
        ] {
            assert_eq!(
                contained_word(password, &[], &context).as_deref(),
                Some(word),
                "{password}"
            );
        }
        assert_eq!(
            contained_word("violet-harbour-lantern", &[], &context),
            None
        );
    }

    #[test]
    fn short_words_are_not_looked_for() {
        let name = PersonName::parse("Li", "Wu").unwrap();
        let context = PasswordContext::new().name(&name).organization("AB Oy");
        assert!(context.words().is_empty());
        assert_eq!(
            contained_word("lily-wuthering-heights", &[], &context),
            None
        );
        assert_eq!(contained_word("abcdefgh", &words(&["ab"]), &context), None);
    }
}
