//! Which request and response bodies the audit log keeps, cut to a size and with personal data
//! and secrets replaced by `[REDACTED]`.

use landfall_config::AuditBodies;
use regex::Regex;

/// Built in, applied before the configured patterns: e-mail addresses, API keys and bearer
/// secrets, mainland China resident ID numbers, card numbers, and phone numbers.
const BUILT_IN: &[&str] = &[
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    r"\b(?:sk|lf|pk|rk)-[A-Za-z0-9_-]{16,}",
    r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}",
    r"\b\d{17}[\dXx]\b",
    r"\b\d{13,19}\b",
    r"\+?\b\d[\d -]{7,}\d\b",
];

pub(crate) const REDACTED: &str = "[REDACTED]";

#[derive(Debug)]
pub(crate) struct BodyPolicy {
    config: AuditBodies,
    redact: Option<Regex>,
}

impl BodyPolicy {
    /// # Errors
    /// A configured pattern that is not a regular expression (validation catches it first).
    pub(crate) fn new(config: &AuditBodies) -> Result<Self, regex::Error> {
        let redact = if config.tenants.is_empty() {
            None
        } else {
            let alternatives: Vec<String> = BUILT_IN
                .iter()
                .copied()
                .chain(config.redact.iter().map(String::as_str))
                .map(|pattern| format!("(?:{pattern})"))
                .collect();
            Some(Regex::new(&alternatives.join("|"))?)
        };
        Ok(Self {
            config: config.clone(),
            redact,
        })
    }

    pub(crate) fn keeps(&self, tenant_id: &str) -> bool {
        self.config.keeps(tenant_id)
    }

    pub(crate) fn max_bytes(&self) -> usize {
        self.config.max_bytes
    }

    /// `text` redacted and cut to `max_bytes` (on a character boundary); whether it was cut.
    pub(crate) fn keep(&self, text: &str) -> (String, bool) {
        let redacted = match &self.redact {
            Some(redact) => redact.replace_all(text, REDACTED).into_owned(),
            None => text.to_owned(),
        };
        let kept = prefix(&redacted, self.config.max_bytes);
        if kept.len() == redacted.len() {
            return (redacted, false);
        }
        (kept.to_owned(), true)
    }
}

/// The longest start of `text` of at most `max_bytes` that ends on a character boundary.
pub(crate) fn prefix(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut cut = max_bytes;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(redact: &[&str], max_bytes: usize) -> BodyPolicy {
        BodyPolicy::new(&AuditBodies {
            tenants: vec!["acme".to_owned()],
            max_bytes,
            redact: redact.iter().map(|p| (*p).to_owned()).collect(),
        })
        .unwrap()
    }

    #[test]
    fn personal_data_and_secrets_are_redacted() {
        let policy = policy(&[r"Project\s+\w+"], 10_000);
        let cases = [
            (
                "mail me at li.wei@example.com now",
                "mail me at [REDACTED] now",
            ),
            ("key lf-abcdefgh12345678-xyz ok", "key [REDACTED] ok"),
            ("身份证 11010519491231002X 号", "身份证 [REDACTED] 号"),
            ("card 4111111111111111.", "card [REDACTED]."),
            ("call +86 138 0013 8000 today", "call [REDACTED] today"),
            ("Project Falcon is secret", "[REDACTED] is secret"),
            ("nothing to hide, 42 apples", "nothing to hide, 42 apples"),
        ];
        for (input, expected) in cases {
            assert_eq!(policy.keep(input).0, expected, "{input}");
        }
    }

    #[test]
    fn long_bodies_are_cut_on_a_character_boundary() {
        let policy = policy(&[], 7);
        let (kept, cut) = policy.keep("数据数据数据");
        assert!(cut);
        assert_eq!(kept, "数据");
        assert_eq!(policy.keep("short"), ("short".to_owned(), false));
    }

    #[test]
    fn only_listed_tenants_keep_bodies() {
        let listed = policy(&[], 10);
        assert!(listed.keeps("acme"));
        assert!(!listed.keeps("beta"));
        let everyone = BodyPolicy::new(&AuditBodies {
            tenants: vec!["*".to_owned()],
            ..AuditBodies::default()
        })
        .unwrap();
        assert!(everyone.keeps("beta"));
    }
}
