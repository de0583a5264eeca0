//! HMAC-SHA256 signing keys with rotation: the first key signs, every key verifies.
//!
//! Each key has a short public id (the first bytes of an HMAC of a fixed label under that
//! key), carried in tokens so that verification can tell "signed by a key we no longer have"
//! from "tampered with". The id reveals nothing about the key.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Minimum length of a key, in bytes.
pub const MIN_KEY_LEN: usize = 32;
/// Length of a key id, in bytes.
pub const KEY_ID_LEN: usize = 4;
/// Length of a signature (a full HMAC-SHA256 tag), in bytes.
pub const TAG_LEN: usize = 32;

/// Why a list of secrets cannot be used as keys. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("at least one key is required")]
    Empty,
    #[error("key #{index} is shorter than {MIN_KEY_LEN} bytes")]
    TooShort { index: usize },
}

/// Why a signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No key in the list has this key id (retired, or from another installation).
    #[error("signed with an unknown key")]
    UnknownKey,
    /// A key with this id exists but the signature does not match (tampered data).
    #[error("bad signature")]
    BadSignature,
}

#[derive(Clone)]
struct Key {
    id: [u8; KEY_ID_LEN],
    /// HMAC state already keyed; cloned for every use.
    mac: HmacSha256,
}

/// The signing keys. `Debug` shows only how many there are.
#[derive(Clone)]
pub struct Keys {
    keys: Vec<Key>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keys([{} redacted])", self.keys.len())
    }
}

impl Keys {
    /// Builds the keys from secrets, the first one being the signing key. Every secret must be
    /// at least [`MIN_KEY_LEN`] bytes long.
    pub fn new(secrets: &[Secret]) -> Result<Self, KeyError> {
        if secrets.is_empty() {
            return Err(KeyError::Empty);
        }
        let mut keys = Vec::with_capacity(secrets.len());
        for (index, secret) in secrets.iter().enumerate() {
            let bytes = secret.expose().as_bytes();
            if bytes.len() < MIN_KEY_LEN {
                return Err(KeyError::TooShort { index });
            }
            let mac = HmacSha256::new_from_slice(bytes).expect("HMAC accepts keys of any length");
            let mut idmac = mac.clone();
            idmac.update(b"smproxy key id\0");
            let tag = idmac.finalize().into_bytes();
            let mut id = [0u8; KEY_ID_LEN];
            id.copy_from_slice(&tag[..KEY_ID_LEN]);
            keys.push(Key { id, mac });
        }
        Ok(Keys { keys })
    }

    /// How many keys there are (always at least one).
    pub fn count(&self) -> usize {
        self.keys.len()
    }

    /// The id of the signing (first) key.
    pub fn signing_key_id(&self) -> [u8; KEY_ID_LEN] {
        self.keys[0].id
    }

    fn tag(mac: &HmacSha256, label: &str, data: &[u8]) -> HmacSha256 {
        let mut mac = mac.clone();
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        mac
    }

    /// Signs `data` for the purpose `label` with the first key; returns that key's id and the
    /// tag. The label separates purposes: a tag made for one label never verifies for another.
    pub fn sign(&self, label: &str, data: &[u8]) -> ([u8; KEY_ID_LEN], [u8; TAG_LEN]) {
        let key = &self.keys[0];
        let tag = Self::tag(&key.mac, label, data).finalize().into_bytes();
        (key.id, tag.into())
    }

    /// Checks `tag` over `label` + `data` with the key(s) whose id is `key_id`, in constant
    /// time.
    pub fn verify(
        &self,
        key_id: &[u8],
        label: &str,
        data: &[u8],
        tag: &[u8],
    ) -> Result<(), SignatureError> {
        let mut known = false;
        for key in self.keys.iter().filter(|k| k.id[..] == *key_id) {
            known = true;
            if Self::tag(&key.mac, label, data).verify_slice(tag).is_ok() {
                return Ok(());
            }
        }
        Err(if known {
            SignatureError::BadSignature
        } else {
            SignatureError::UnknownKey
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s.to_owned())
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn rejects_empty_and_short_keys() {
        assert_eq!(Keys::new(&[]).unwrap_err(), KeyError::Empty);
        let short = "x".repeat(31);
        let err = Keys::new(&[secret(A), secret(&short)]).unwrap_err();
        assert_eq!(err, KeyError::TooShort { index: 1 });
        assert!(!err.to_string().contains(&short));
        assert!(Keys::new(&[secret(&"x".repeat(32))]).is_ok());
    }

    #[test]
    fn debug_never_shows_keys() {
        let keys = Keys::new(&[secret(A), secret(B)]).unwrap();
        let dbg = format!("{keys:?}");
        assert_eq!(dbg, "Keys([2 redacted])");
        assert!(!dbg.contains("aaaa"));
        assert_eq!(keys.count(), 2);
    }

    #[test]
    fn sign_and_verify_with_rotation() {
        let old = Keys::new(&[secret(A)]).unwrap();
        let (id, tag) = old.sign("smclient", b"data");
        assert_eq!(old.verify(&id, "smclient", b"data", &tag), Ok(()));

        // rotated: B signs, A still verifies
        let rotated = Keys::new(&[secret(B), secret(A)]).unwrap();
        assert_eq!(rotated.verify(&id, "smclient", b"data", &tag), Ok(()));
        assert_ne!(rotated.sign("smclient", b"data").0, id);

        // retired: A removed
        let retired = Keys::new(&[secret(B)]).unwrap();
        assert_eq!(
            retired.verify(&id, "smclient", b"data", &tag),
            Err(SignatureError::UnknownKey)
        );
    }

    #[test]
    fn label_data_and_tag_are_all_bound() {
        let keys = Keys::new(&[secret(A)]).unwrap();
        let (id, tag) = keys.sign("smids", b"data");
        let bad = Err(SignatureError::BadSignature);
        assert_eq!(keys.verify(&id, "smclient", b"data", &tag), bad);
        assert_eq!(keys.verify(&id, "smids", b"datA", &tag), bad);
        let mut t = tag;
        t[31] ^= 1;
        assert_eq!(keys.verify(&id, "smids", b"data", &t), bad);
        assert_eq!(keys.verify(&id, "smids", b"data", &tag[..16]), bad);
        assert_eq!(keys.verify(&id, "smids", b"data", &[]), bad);
        // label/data boundary is unambiguous
        let (_, t2) = keys.sign("smid", b"sdata");
        assert_ne!(t2, tag);
    }

    #[test]
    fn key_ids_are_stable_and_distinct() {
        let a1 = Keys::new(&[secret(A)]).unwrap();
        let a2 = Keys::new(&[secret(A)]).unwrap();
        let b = Keys::new(&[secret(B)]).unwrap();
        assert_eq!(a1.signing_key_id(), a2.signing_key_id());
        assert_ne!(a1.signing_key_id(), b.signing_key_id());
        assert_eq!(
            b.verify(&[1, 2, 3], "x", b"", &[0; 32]),
            Err(SignatureError::UnknownKey)
        );
    }
}
