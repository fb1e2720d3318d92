//! Standard Webhooks signatures (standardwebhooks.com): what a receiver
//! checks to know a call is ours and unaltered.
//!
//! Each call carries `webhook-id` (stable across the retries of one job),
//! `webhook-timestamp` (the attempt's time, Unix seconds) and
//! `webhook-signature`: one signature per key, space-separated, over
//! `id.timestamp.body` with the exact body bytes sent.
//! - `whsec_` keys (24 to 64 bytes, base64) sign `v1,` (HMAC-SHA256);
//! - `whsk_` keys (a 32-byte Ed25519 seed, base64) sign `v1a,`, and their
//!   public keys are shown as `whpk_` (base64 of the 32-byte public key).
//!
//! Keys are never printed: [`Signer`]'s `Debug` shows only their kinds, and
//! a key that cannot be used is named by its place in the list.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use ring::hmac;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

/// The header of the message id.
pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
/// The header of the attempt's time, in Unix seconds.
pub const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// The header of the signatures.
pub const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// Symmetric secrets are 24 to 64 bytes long (the specification's range).
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
/// An Ed25519 seed.
const SEED_BYTES: usize = 32;
/// Most keys that sign at once: a rotation needs two or three, and each
/// key costs every call a signature, so a tenant's Secret cannot make our
/// calls slow or their headers huge.
pub const MAX_KEYS: usize = 8;

/// Why a list of keys cannot sign; never holds a key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The list is empty.
    #[error("holds no key")]
    Empty,
    /// A key has neither prefix.
    #[error("key {0} is neither a whsec_ nor a whsk_ key")]
    Prefix(usize),
    /// A key is not base64 after its prefix.
    #[error("key {0} is not base64 after its prefix")]
    Base64(usize),
    /// A `whsec_` key's length is outside 24 to 64 bytes.
    #[error("key {0} (whsec_) is {1} bytes long: it must be 24 to 64")]
    SecretLength(usize, usize),
    /// A `whsk_` key is not a 32-byte seed.
    #[error("key {0} (whsk_) is {1} bytes long: an Ed25519 seed is 32")]
    SeedLength(usize, usize),
    /// More keys than [`MAX_KEYS`].
    #[error("holds {0} keys: at most {MAX_KEYS} may sign")]
    TooMany(usize),
}

enum Key {
    /// `v1`: HMAC-SHA256.
    Symmetric(hmac::Key),
    /// `v1a`: Ed25519.
    Asymmetric(Ed25519KeyPair),
}

/// The keys a destination signs with, all of them used on every call.
pub struct Signer {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<&str> = self
            .keys
            .iter()
            .map(|key| match key {
                Key::Symmetric(_) => "v1",
                Key::Asymmetric(_) => "v1a",
            })
            .collect();
        f.debug_struct("Signer").field("keys", &kinds).finish()
    }
}

impl Signer {
    /// The keys in `text`, separated by whitespace; keys are numbered from
    /// 1 in errors.
    pub fn parse(text: &[u8]) -> Result<Self, KeyError> {
        let text = String::from_utf8_lossy(text);
        let count = text.split_whitespace().count();
        if count > MAX_KEYS {
            return Err(KeyError::TooMany(count));
        }
        let keys = text
            .split_whitespace()
            .enumerate()
            .map(|(at, key)| parse_key(at + 1, key))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self { keys })
    }

    /// The `whpk_` public key of each `whsk_` key, in order.
    pub fn public_keys(&self) -> Vec<String> {
        self.keys
            .iter()
            .filter_map(|key| match key {
                Key::Asymmetric(pair) => Some(format!("whpk_{}", STANDARD.encode(pair.public_key().as_ref()))),
                Key::Symmetric(_) => None,
            })
            .collect()
    }

    /// The `webhook-signature` value for message `id` sent at `timestamp`
    /// with `body`: every key's signature, space-separated.
    pub fn signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut content = Vec::with_capacity(id.len() + body.len() + 24);
        content.extend_from_slice(id.as_bytes());
        content.push(b'.');
        content.extend_from_slice(timestamp.to_string().as_bytes());
        content.push(b'.');
        content.extend_from_slice(body);
        let signatures: Vec<String> = self
            .keys
            .iter()
            .map(|key| match key {
                Key::Symmetric(key) => format!("v1,{}", STANDARD.encode(hmac::sign(key, &content))),
                Key::Asymmetric(pair) => format!("v1a,{}", STANDARD.encode(pair.sign(&content))),
            })
            .collect();
        signatures.join(" ")
    }

    /// Adds the three headers for message `id`, sent at `timestamp` with
    /// `body`, replacing any of the same names.
    pub fn sign(&self, headers: &mut HeaderMap, id: &str, timestamp: i64, body: &[u8]) -> Result<(), String> {
        let id_value = HeaderValue::try_from(id).map_err(|e| format!("webhook-id {id:?}: {e}"))?;
        headers.insert(WEBHOOK_ID, id_value);
        headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
        let signature = HeaderValue::try_from(self.signature(id, timestamp, body))
            .map_err(|e| format!("webhook-signature: {e}"))?;
        headers.insert(WEBHOOK_SIGNATURE, signature);
        Ok(())
    }
}

fn parse_key(at: usize, key: &str) -> Result<Key, KeyError> {
    let decode = |encoded: &str| STANDARD.decode(encoded).map_err(|_| KeyError::Base64(at));
    if let Some(encoded) = key.strip_prefix("whsec_") {
        let secret = decode(encoded)?;
        if !SECRET_BYTES.contains(&secret.len()) {
            return Err(KeyError::SecretLength(at, secret.len()));
        }
        return Ok(Key::Symmetric(hmac::Key::new(hmac::HMAC_SHA256, &secret)));
    }
    if let Some(encoded) = key.strip_prefix("whsk_") {
        let seed = decode(encoded)?;
        if seed.len() != SEED_BYTES {
            return Err(KeyError::SeedLength(at, seed.len()));
        }
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| KeyError::SeedLength(at, seed.len()))?;
        return Ok(Key::Asymmetric(pair));
    }
    Err(KeyError::Prefix(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's worked example (its reference libraries' tests).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_specifications_example() {
        let signer = Signer::parse(SECRET.as_bytes()).expect("key");
        assert_eq!(signer.signature(ID, TIMESTAMP, BODY), SIGNATURE);
        assert!(signer.public_keys().is_empty());
    }

    #[test]
    fn every_key_signs_in_order_and_ed25519_keys_show_their_public_key() {
        let seed = [7u8; 32];
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("seed");
        let text = format!("{SECRET}\n  whsk_{}\t", STANDARD.encode(seed));
        let signer = Signer::parse(text.as_bytes()).expect("keys");
        let signature = signer.signature(ID, TIMESTAMP, BODY);
        let parts: Vec<&str> = signature.split(' ').collect();
        assert_eq!(parts.len(), 2, "{signature}");
        assert_eq!(parts[0], SIGNATURE);
        let v1a = STANDARD
            .decode(parts[1].strip_prefix("v1a,").expect("v1a"))
            .expect("base64");
        let public = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, pair.public_key().as_ref());
        public
            .verify(
                format!("{ID}.{TIMESTAMP}.")
                    .as_bytes()
                    .iter()
                    .chain(BODY)
                    .copied()
                    .collect::<Vec<_>>()
                    .as_slice(),
                &v1a,
            )
            .expect("verifies");
        assert_eq!(
            signer.public_keys(),
            vec![format!("whpk_{}", STANDARD.encode(pair.public_key().as_ref()))]
        );
    }

    #[test]
    fn unusable_keys_are_named_by_place_never_printed() {
        let short = format!("whsec_{}", STANDARD.encode([1u8; 16]));
        let long = format!("whsec_{}", STANDARD.encode([1u8; 65]));
        let seed = format!("whsk_{}", STANDARD.encode([1u8; 31]));
        let many = [SECRET; MAX_KEYS + 1].join(" ");
        let cases: [(String, KeyError); 7] = [
            (String::new(), KeyError::Empty),
            (" \n\t".to_owned(), KeyError::Empty),
            (format!("{SECRET} s3cr3t-plain"), KeyError::Prefix(2)),
            ("whsec_not*base64".to_owned(), KeyError::Base64(1)),
            (format!("{short} {long}"), KeyError::SecretLength(1, 16)),
            (format!("{SECRET} {seed}"), KeyError::SeedLength(2, 31)),
            (many, KeyError::TooMany(MAX_KEYS + 1)),
        ];
        for (text, want) in cases {
            let error = Signer::parse(text.as_bytes()).expect_err(&want.to_string());
            assert_eq!(error, want, "{text:?}");
            assert!(!error.to_string().contains("s3cr3t"));
        }
        let signer = Signer::parse(SECRET.as_bytes()).expect("key");
        assert!(!format!("{signer:?}").contains("MfKQ"), "{signer:?}");
        assert_eq!(
            Signer::parse(long.as_bytes()).expect_err("long"),
            KeyError::SecretLength(1, 65)
        );
    }

    #[test]
    fn headers_carry_id_timestamp_and_signature() {
        let signer = Signer::parse(SECRET.as_bytes()).expect("key");
        let mut headers = HeaderMap::new();
        headers.insert(WEBHOOK_SIGNATURE, HeaderValue::from_static("forged"));
        signer.sign(&mut headers, ID, TIMESTAMP, BODY).expect("signed");
        assert_eq!(headers[WEBHOOK_ID], ID);
        assert_eq!(headers[WEBHOOK_TIMESTAMP], "1614265330");
        assert_eq!(headers[WEBHOOK_SIGNATURE], SIGNATURE);
        assert_eq!(headers.get_all(WEBHOOK_SIGNATURE).iter().count(), 1);
    }
}
