//! API key ids and secrets. A secret reads `lf-<id>-<random>`: the id part finds the record
//! directly, and only the SHA-256 of the whole secret is stored, compared in constant time.
//! (A slow password hash buys nothing for 190 random bits and would cost every request.)

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const SECRET_PREFIX: &str = "lf-";
const KEY_ID_PREFIX: &str = "key_";
const ID_CHARS: usize = 16;
const RANDOM_CHARS: usize = 32;

/// A freshly made key: its record id and the secret shown once to its owner.
pub(crate) struct NewSecret {
    pub id: String,
    pub secret: String,
}

pub(crate) fn generate() -> NewSecret {
    let mut rng = rand::rng();
    let id_part = random_base62(&mut rng, ID_CHARS);
    let random = random_base62(&mut rng, RANDOM_CHARS);
    NewSecret {
        id: format!("{KEY_ID_PREFIX}{id_part}"),
        secret: format!("{SECRET_PREFIX}{id_part}-{random}"),
    }
}

fn random_base62(rng: &mut impl Rng, length: usize) -> String {
    (0..length)
        .map(|_| char::from(rng.sample(Alphanumeric)))
        .collect()
}

/// The key id a presented secret claims, if it has the shape of one of ours.
pub(crate) fn key_id(secret: &str) -> Option<String> {
    let rest = secret.strip_prefix(SECRET_PREFIX)?;
    let (id_part, random) = rest.split_once('-')?;
    let well_formed = id_part.len() == ID_CHARS
        && random.len() == RANDOM_CHARS
        && rest
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-');
    well_formed.then(|| format!("{KEY_ID_PREFIX}{id_part}"))
}

pub(crate) fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Whether `secret` hashes to `stored`, without an early exit on the first differing byte.
pub(crate) fn matches(secret: &str, stored: &[u8]) -> bool {
    digest(secret).ct_eq(stored).into()
}

/// The last characters of a secret, shown in listings to tell keys apart.
pub(crate) fn hint(secret: &str) -> String {
    secret
        .get(secret.len().saturating_sub(4)..)
        .unwrap_or_default()
        .to_owned()
}

/// An operator-supplied admin key, compared in constant time.
#[must_use]
pub fn admin_key_matches(presented: &str, configured: &str) -> bool {
    // Comparing digests keeps the comparison constant-time even when lengths differ.
    digest(presented).ct_eq(&digest(configured)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_parse_back_to_their_id() {
        let made = generate();
        assert_eq!(key_id(&made.secret).as_deref(), Some(made.id.as_str()));
        assert!(matches(&made.secret, &digest(&made.secret)));
        assert!(!matches(&made.secret, &digest("lf-other")));
        assert_eq!(hint(&made.secret).len(), 4);
    }

    #[test]
    fn malformed_secrets_have_no_id() {
        for bad in [
            "",
            "sk-abc",
            "lf-",
            "lf-short-x",
            "lf-AAAAAAAAAAAAAAAA-short",
            "lf-AAAAAAAAAAAAAAAA-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB!",
        ] {
            assert_eq!(key_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn admin_keys_compare_exactly() {
        assert!(admin_key_matches("0123456789abcdef", "0123456789abcdef"));
        assert!(!admin_key_matches("0123456789abcde", "0123456789abcdef"));
    }
}
