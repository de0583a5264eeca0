//! Compact signed tokens for cookie values (`smclient`, `smids`) and link parameters (`_smx`,
//! `smlink`).
//!
//! Format: `payload.sig`, both base64url without padding, so a token only ever contains
//! `[A-Za-z0-9_.-]` and is shorter than [`MAX_TOKEN_LEN`] characters.
//!
//! The payload is binary:
//!
//! | bytes | field                                                        |
//! |-------|--------------------------------------------------------------|
//! | 1     | format version (1)                                           |
//! | 1     | purpose (1 `smclient`, 2 `smids`, 3 `smx`, 4 `smlink`)       |
//! | 4     | key id of the signing key                                    |
//! | rest  | the purpose's fields; UUIDs as 16 bytes, times as u64 BE, an optional field as a 0/1 flag byte then the value |
//!
//! `sig` is HMAC-SHA256 over the purpose label, a zero byte and the *encoded* payload text. The
//! purpose is bound twice (in the payload and by the label), so a value signed for one purpose
//! never verifies for another, and [`TokenError::WrongPurpose`] is only reported for a genuine
//! token of another purpose.
//!
//! Times are unix seconds, passed in by the caller.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::domain::normalize_host;
use super::keys::{Keys, SignatureError, KEY_ID_LEN, TAG_LEN};

/// Every token is strictly shorter than this; longer input is refused before decoding.
pub const MAX_TOKEN_LEN: usize = 200;
/// The longest lifetime of an `_smx` sibling-site link token, in seconds.
pub const SITE_LINK_MAX_TTL_SECS: u64 = 120;

const VERSION: u8 = 1;
const HEADER_LEN: usize = 2 + KEY_ID_LEN;
const HOST_HASH_LEN: usize = 8;

/// What a token is for. The label is the domain-separation string of its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `smclient` cookie: the identified contact.
    Client,
    /// `smids` cookie: the cross-site identity.
    Ids,
    /// `_smx` parameter: carries `smids` to a sibling site.
    SiteLink,
    /// `smlink` parameter: a personal link identifying a contact.
    PersonalLink,
}

impl Purpose {
    pub fn label(self) -> &'static str {
        match self {
            Purpose::Client => "smclient",
            Purpose::Ids => "smids",
            Purpose::SiteLink => "smx",
            Purpose::PersonalLink => "smlink",
        }
    }

    fn code(self) -> u8 {
        match self {
            Purpose::Client => 1,
            Purpose::Ids => 2,
            Purpose::SiteLink => 3,
            Purpose::PersonalLink => 4,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Purpose::Client,
            2 => Purpose::Ids,
            3 => Purpose::SiteLink,
            4 => Purpose::PersonalLink,
            _ => return None,
        })
    }
}

/// Why a token was refused. Each variant has a stable name for counters ([`Self::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this format at all (bad characters, length, encoding or layout).
    #[error("malformed token")]
    Malformed,
    /// Signed by a key that is not in the key list (retired or foreign).
    #[error("token signed with an unknown key")]
    UnknownKey,
    /// The signature does not match: the token was altered.
    #[error("token signature mismatch")]
    Tampered,
    /// A genuine token, but made for another purpose.
    #[error("token made for another purpose")]
    WrongPurpose,
    /// Past its expiry time.
    #[error("token expired")]
    Expired,
    /// An `_smx` token issued for another host.
    #[error("token issued for another host")]
    WrongHost,
}

impl TokenError {
    /// A short stable name, e.g. for a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::UnknownKey => "unknown_key",
            TokenError::Tampered => "tampered",
            TokenError::WrongPurpose => "wrong_purpose",
            TokenError::Expired => "expired",
            TokenError::WrongHost => "wrong_host",
        }
    }
}

/// The contents of an `smclient` cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientClaims {
    pub contact_id: Uuid,
    pub issued_at: u64,
}

/// The contents of an `smids` cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdsClaims {
    pub ids_id: Uuid,
    pub contact_id: Option<Uuid>,
    pub issued_at: u64,
}

/// The contents of an `_smx` sibling-site link token (its host has been checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteLinkClaims {
    pub ids_id: Uuid,
    pub contact_id: Option<Uuid>,
    pub expires_at: u64,
}

/// The contents of an `smlink` personal link token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersonalLinkClaims {
    pub contact_id: Uuid,
    pub issued_at: u64,
    pub expires_at: Option<u64>,
}

// ---- issuing ----------------------------------------------------------------------------

fn host_hash(host: &str) -> [u8; HOST_HASH_LEN] {
    let host = normalize_host(host).unwrap_or_default();
    let digest = Sha256::new()
        .chain_update(b"smx host\0")
        .chain_update(host.as_bytes())
        .finalize();
    let mut out = [0u8; HOST_HASH_LEN];
    out.copy_from_slice(&digest[..HOST_HASH_LEN]);
    out
}

fn put_uuid(buf: &mut Vec<u8>, id: Uuid) {
    buf.extend_from_slice(id.as_bytes());
}

fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_be_bytes());
}

fn put_opt_uuid(buf: &mut Vec<u8>, id: Option<Uuid>) {
    match id {
        Some(id) => {
            buf.push(1);
            put_uuid(buf, id);
        }
        None => buf.push(0),
    }
}

fn seal(keys: &Keys, purpose: Purpose, body: &[u8]) -> String {
    let mut payload = Vec::with_capacity(HEADER_LEN + body.len());
    payload.push(VERSION);
    payload.push(purpose.code());
    payload.extend_from_slice(&keys.signing_key_id());
    payload.extend_from_slice(body);
    let mut token = URL_SAFE_NO_PAD.encode(&payload);
    let (_, tag) = keys.sign(purpose.label(), token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut token);
    debug_assert!(token.len() < MAX_TOKEN_LEN);
    token
}

/// An `smclient` cookie value for `contact_id`.
pub fn issue_client(keys: &Keys, contact_id: Uuid, now: u64) -> String {
    let mut body = Vec::with_capacity(24);
    put_uuid(&mut body, contact_id);
    put_u64(&mut body, now);
    seal(keys, Purpose::Client, &body)
}

/// An `smids` cookie value.
pub fn issue_ids(keys: &Keys, ids_id: Uuid, contact_id: Option<Uuid>, now: u64) -> String {
    let mut body = Vec::with_capacity(41);
    put_uuid(&mut body, ids_id);
    put_opt_uuid(&mut body, contact_id);
    put_u64(&mut body, now);
    seal(keys, Purpose::Ids, &body)
}

/// An `_smx` token that only `target_host` accepts, until `now + ttl_secs` (`ttl_secs` is
/// capped at [`SITE_LINK_MAX_TTL_SECS`]). The host is normalised like [`normalize_host`] and
/// stored as a hash.
pub fn issue_site_link(
    keys: &Keys,
    ids_id: Uuid,
    contact_id: Option<Uuid>,
    target_host: &str,
    now: u64,
    ttl_secs: u64,
) -> String {
    let expires_at = now.saturating_add(ttl_secs.min(SITE_LINK_MAX_TTL_SECS));
    let mut body = Vec::with_capacity(49);
    put_uuid(&mut body, ids_id);
    put_opt_uuid(&mut body, contact_id);
    put_u64(&mut body, expires_at);
    body.extend_from_slice(&host_hash(target_host));
    seal(keys, Purpose::SiteLink, &body)
}

/// An `smlink` personal link token, valid until `expires_at` if given.
pub fn issue_personal_link(
    keys: &Keys,
    contact_id: Uuid,
    now: u64,
    expires_at: Option<u64>,
) -> String {
    let mut body = Vec::with_capacity(33);
    put_uuid(&mut body, contact_id);
    put_u64(&mut body, now);
    match expires_at {
        Some(t) => {
            body.push(1);
            put_u64(&mut body, t);
        }
        None => body.push(0),
    }
    seal(keys, Purpose::PersonalLink, &body)
}

// ---- verifying --------------------------------------------------------------------------

/// Decodes and authenticates `token` for `expected`; returns the body (after the header).
fn open(keys: &Keys, expected: Purpose, token: &str) -> Result<Vec<u8>, TokenError> {
    if token.len() >= MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let (payload_b64, sig_b64) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| TokenError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| TokenError::Malformed)?;
    if tag.len() != TAG_LEN || payload.len() < HEADER_LEN || payload[0] != VERSION {
        return Err(TokenError::Malformed);
    }
    let claimed = Purpose::from_code(payload[1]).ok_or(TokenError::Malformed)?;
    keys.verify(
        &payload[2..HEADER_LEN],
        claimed.label(),
        payload_b64.as_bytes(),
        &tag,
    )
    .map_err(|e| match e {
        SignatureError::UnknownKey => TokenError::UnknownKey,
        SignatureError::BadSignature => TokenError::Tampered,
    })?;
    if claimed != expected {
        return Err(TokenError::WrongPurpose);
    }
    Ok(payload[HEADER_LEN..].to_vec())
}

/// Reads fields from an authenticated body; any length mismatch is `Malformed`.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], TokenError> {
        if self.0.len() < N {
            return Err(TokenError::Malformed);
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        Ok(head.try_into().expect("length checked"))
    }

    fn uuid(&mut self) -> Result<Uuid, TokenError> {
        Ok(Uuid::from_bytes(self.take::<16>()?))
    }

    fn u64(&mut self) -> Result<u64, TokenError> {
        Ok(u64::from_be_bytes(self.take::<8>()?))
    }

    fn flag(&mut self) -> Result<bool, TokenError> {
        match self.take::<1>()? {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(TokenError::Malformed),
        }
    }

    fn opt_uuid(&mut self) -> Result<Option<Uuid>, TokenError> {
        if self.flag()? {
            Ok(Some(self.uuid()?))
        } else {
            Ok(None)
        }
    }

    fn end(self) -> Result<(), TokenError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(TokenError::Malformed)
        }
    }
}

/// Verifies an `smclient` cookie value.
pub fn verify_client(keys: &Keys, token: &str) -> Result<ClientClaims, TokenError> {
    let body = open(keys, Purpose::Client, token)?;
    let mut r = Reader(&body);
    let claims = ClientClaims {
        contact_id: r.uuid()?,
        issued_at: r.u64()?,
    };
    r.end()?;
    Ok(claims)
}

/// Verifies an `smids` cookie value.
pub fn verify_ids(keys: &Keys, token: &str) -> Result<IdsClaims, TokenError> {
    let body = open(keys, Purpose::Ids, token)?;
    let mut r = Reader(&body);
    let claims = IdsClaims {
        ids_id: r.uuid()?,
        contact_id: r.opt_uuid()?,
        issued_at: r.u64()?,
    };
    r.end()?;
    Ok(claims)
}

/// Verifies an `_smx` token received on a request for `expected_host` (the request's own
/// host, any case, port allowed) at time `now`. Refused from the expiry second on.
pub fn verify_site_link(
    keys: &Keys,
    token: &str,
    expected_host: &str,
    now: u64,
) -> Result<SiteLinkClaims, TokenError> {
    let body = open(keys, Purpose::SiteLink, token)?;
    let mut r = Reader(&body);
    let claims = SiteLinkClaims {
        ids_id: r.uuid()?,
        contact_id: r.opt_uuid()?,
        expires_at: r.u64()?,
    };
    let hash = r.take::<HOST_HASH_LEN>()?;
    r.end()?;
    if now >= claims.expires_at {
        return Err(TokenError::Expired);
    }
    if normalize_host(expected_host).is_none() || hash != host_hash(expected_host) {
        return Err(TokenError::WrongHost);
    }
    Ok(claims)
}

/// Verifies an `smlink` personal link token at time `now`.
pub fn verify_personal_link(
    keys: &Keys,
    token: &str,
    now: u64,
) -> Result<PersonalLinkClaims, TokenError> {
    let body = open(keys, Purpose::PersonalLink, token)?;
    let mut r = Reader(&body);
    let contact_id = r.uuid()?;
    let issued_at = r.u64()?;
    let expires_at = if r.flag()? { Some(r.u64()?) } else { None };
    r.end()?;
    if expires_at.is_some_and(|t| now >= t) {
        return Err(TokenError::Expired);
    }
    Ok(PersonalLinkClaims {
        contact_id,
        issued_at,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    const NOW: u64 = 1_760_000_000;

    fn keys_of(secrets: &[&str]) -> Keys {
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new((*s).into())).collect();
        Keys::new(&secrets).unwrap()
    }

    const KA: &str = "key-a-0123456789abcdef0123456789abcdef";
    const KB: &str = "key-b-0123456789abcdef0123456789abcdef";

    fn keys() -> Keys {
        keys_of(&[KA])
    }

    fn id(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn is_cookie_safe(s: &str) -> bool {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    }

    /// One valid token of each purpose, with its purpose.
    fn samples(k: &Keys) -> Vec<(Purpose, String)> {
        vec![
            (Purpose::Client, issue_client(k, id(1), NOW)),
            (Purpose::Ids, issue_ids(k, id(2), Some(id(3)), NOW)),
            (Purpose::Ids, issue_ids(k, id(2), None, NOW)),
            (
                Purpose::SiteLink,
                issue_site_link(k, id(2), Some(id(3)), "shop.example", NOW, 120),
            ),
            (
                Purpose::SiteLink,
                issue_site_link(k, id(2), None, "shop.example", NOW, 120),
            ),
            (
                Purpose::PersonalLink,
                issue_personal_link(k, id(4), NOW, Some(NOW + 3600)),
            ),
            (
                Purpose::PersonalLink,
                issue_personal_link(k, id(4), NOW, None),
            ),
        ]
    }

    fn verify_as(k: &Keys, p: Purpose, t: &str) -> Result<(), TokenError> {
        match p {
            Purpose::Client => verify_client(k, t).map(drop),
            Purpose::Ids => verify_ids(k, t).map(drop),
            Purpose::SiteLink => verify_site_link(k, t, "shop.example", NOW).map(drop),
            Purpose::PersonalLink => verify_personal_link(k, t, NOW).map(drop),
        }
    }

    const ALL: [Purpose; 4] = [
        Purpose::Client,
        Purpose::Ids,
        Purpose::SiteLink,
        Purpose::PersonalLink,
    ];

    #[test]
    fn round_trips() {
        let k = keys();
        let t = issue_client(&k, id(1), NOW);
        assert_eq!(
            verify_client(&k, &t),
            Ok(ClientClaims {
                contact_id: id(1),
                issued_at: NOW
            })
        );

        for contact in [None, Some(id(3))] {
            let t = issue_ids(&k, id(2), contact, NOW);
            assert_eq!(
                verify_ids(&k, &t),
                Ok(IdsClaims {
                    ids_id: id(2),
                    contact_id: contact,
                    issued_at: NOW
                })
            );
            let t = issue_site_link(&k, id(2), contact, "Shop.Example:443", NOW, 60);
            assert_eq!(
                verify_site_link(&k, &t, "shop.example", NOW + 59),
                Ok(SiteLinkClaims {
                    ids_id: id(2),
                    contact_id: contact,
                    expires_at: NOW + 60
                })
            );
        }

        for exp in [None, Some(NOW + 10)] {
            let t = issue_personal_link(&k, id(4), NOW, exp);
            assert_eq!(
                verify_personal_link(&k, &t, NOW),
                Ok(PersonalLinkClaims {
                    contact_id: id(4),
                    issued_at: NOW,
                    expires_at: exp
                })
            );
        }
    }

    #[test]
    fn tokens_are_cookie_safe_and_short() {
        let k = keys();
        for (_, t) in samples(&k) {
            assert!(is_cookie_safe(&t), "{t}");
            assert!(t.len() < MAX_TOKEN_LEN, "{} {t}", t.len());
            assert_eq!(t.matches('.').count(), 1);
        }
        // the longest host still makes a short token (the host is hashed)
        let host = format!("{}.example", "a".repeat(240));
        let t = issue_site_link(&k, id(2), Some(id(3)), &host, NOW, 120);
        assert!(t.len() < MAX_TOKEN_LEN);
        assert!(verify_site_link(&k, &t, &host, NOW).is_ok());
    }

    #[test]
    fn each_purpose_only_verifies_as_itself() {
        let k = keys();
        for (p, t) in samples(&k) {
            for q in ALL {
                let got = verify_as(&k, q, &t);
                if p == q {
                    assert_eq!(got, Ok(()), "{p:?}");
                } else {
                    assert_eq!(got, Err(TokenError::WrongPurpose), "{p:?} as {q:?}");
                }
            }
        }
    }

    #[test]
    fn relabelled_purpose_byte_is_tampering() {
        // change the purpose byte of a client token to `smids`: the signature no longer matches
        let k = keys();
        let t = issue_client(&k, id(1), NOW);
        let (p, s) = t.split_once('.').unwrap();
        let mut payload = URL_SAFE_NO_PAD.decode(p).unwrap();
        payload[1] = Purpose::Ids.code();
        let forged = format!("{}.{s}", URL_SAFE_NO_PAD.encode(&payload));
        assert_eq!(verify_ids(&k, &forged), Err(TokenError::Tampered));
        assert_eq!(verify_client(&k, &forged), Err(TokenError::Tampered));
    }

    #[test]
    fn any_single_character_change_fails() {
        let k = keys();
        const ALPHABET: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
        for (p, t) in samples(&k) {
            for i in 0..t.len() {
                for &c in ALPHABET {
                    if c == t.as_bytes()[i] {
                        continue;
                    }
                    let mut b = t.clone().into_bytes();
                    b[i] = c;
                    let m = String::from_utf8(b).unwrap();
                    assert!(verify_as(&k, p, &m).is_err(), "{p:?} pos {i} char {c}: {m}");
                }
            }
        }
    }

    #[test]
    fn tampering_payload_or_signature_is_reported_as_tampered() {
        let k = keys();
        let t = issue_ids(&k, id(2), Some(id(3)), NOW);
        let (p, s) = t.split_once('.').unwrap();

        // flip a bit in the body (after the 6-byte header, i.e. from char 8 on)
        let mut payload = URL_SAFE_NO_PAD.decode(p).unwrap();
        payload[10] ^= 0x01;
        let forged = format!("{}.{s}", URL_SAFE_NO_PAD.encode(&payload));
        assert_eq!(verify_ids(&k, &forged), Err(TokenError::Tampered));

        let mut tag = URL_SAFE_NO_PAD.decode(s).unwrap();
        tag[0] ^= 0x80;
        let forged = format!("{p}.{}", URL_SAFE_NO_PAD.encode(&tag));
        assert_eq!(verify_ids(&k, &forged), Err(TokenError::Tampered));

        // swapping signatures between tokens
        let other = issue_ids(&k, id(9), None, NOW);
        let (_, s2) = other.split_once('.').unwrap();
        assert_eq!(
            verify_ids(&k, &format!("{p}.{s2}")),
            Err(TokenError::Tampered)
        );
    }

    #[test]
    fn key_rotation() {
        let old = keys_of(&[KA]);
        let t = issue_client(&old, id(1), NOW);

        let rotated = keys_of(&[KB, KA]);
        assert!(
            verify_client(&rotated, &t).is_ok(),
            "retired key still listed"
        );
        // new tokens are signed with the first key
        let fresh = issue_client(&rotated, id(1), NOW);
        assert_eq!(verify_client(&old, &fresh), Err(TokenError::UnknownKey));
        assert!(verify_client(&keys_of(&[KB]), &fresh).is_ok());

        let removed = keys_of(&[KB]);
        assert_eq!(verify_client(&removed, &t), Err(TokenError::UnknownKey));
    }

    #[test]
    fn site_link_expiry() {
        let k = keys();
        let t = issue_site_link(&k, id(2), None, "shop.example", NOW, 120);
        assert!(verify_site_link(&k, &t, "shop.example", NOW + 119).is_ok());
        assert_eq!(
            verify_site_link(&k, &t, "shop.example", NOW + 120),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify_site_link(&k, &t, "shop.example", NOW + 86_400),
            Err(TokenError::Expired)
        );
        // the lifetime is capped at two minutes
        let t = issue_site_link(&k, id(2), None, "shop.example", NOW, 86_400);
        let c = verify_site_link(&k, &t, "shop.example", NOW).unwrap();
        assert_eq!(c.expires_at, NOW + SITE_LINK_MAX_TTL_SECS);
        assert_eq!(
            verify_site_link(&k, &t, "shop.example", NOW + 121),
            Err(TokenError::Expired)
        );
        // zero ttl: born expired
        let t = issue_site_link(&k, id(2), None, "shop.example", NOW, 0);
        assert_eq!(
            verify_site_link(&k, &t, "shop.example", NOW),
            Err(TokenError::Expired)
        );
        // u64 overflow does not wrap
        let t = issue_site_link(&k, id(2), None, "shop.example", u64::MAX - 5, 120);
        assert!(verify_site_link(&k, &t, "shop.example", u64::MAX - 1).is_ok());
    }

    #[test]
    fn site_link_host_binding() {
        let k = keys();
        let t = issue_site_link(&k, id(2), None, "shop.example", NOW, 120);
        for ok in [
            "shop.example",
            "SHOP.example",
            "shop.example:8443",
            "shop.example.",
        ] {
            assert!(verify_site_link(&k, &t, ok, NOW).is_ok(), "{ok}");
        }
        for bad in [
            "blog.example",
            "example",
            "www.shop.example",
            "",
            "shop.example.evil",
        ] {
            assert_eq!(
                verify_site_link(&k, &t, bad, NOW),
                Err(TokenError::WrongHost),
                "{bad}"
            );
        }
        // a token issued for an empty host is never accepted
        let t = issue_site_link(&k, id(2), None, "", NOW, 120);
        assert_eq!(
            verify_site_link(&k, &t, "", NOW),
            Err(TokenError::WrongHost)
        );
    }

    #[test]
    fn personal_link_expiry() {
        let k = keys();
        let t = issue_personal_link(&k, id(4), NOW, Some(NOW + 10));
        assert!(verify_personal_link(&k, &t, NOW + 9).is_ok());
        assert_eq!(
            verify_personal_link(&k, &t, NOW + 10),
            Err(TokenError::Expired)
        );
        let t = issue_personal_link(&k, id(4), NOW, None);
        assert!(verify_personal_link(&k, &t, u64::MAX).is_ok());
    }

    #[test]
    fn hostile_input_never_panics() {
        let k = keys();
        let valid = issue_client(&k, id(1), NOW);
        // correctly signed, a known key id, but no body
        let header_only = {
            let mut p = vec![VERSION, Purpose::Client.code()];
            p.extend_from_slice(&k.signing_key_id());
            let p = URL_SAFE_NO_PAD.encode(&p);
            let (_, tag) = k.sign("smclient", p.as_bytes());
            format!("{p}.{}", URL_SAFE_NO_PAD.encode(tag))
        };
        let huge = "A".repeat(1 << 20);
        let huge_dots = ".".repeat(100_000);
        let mut inputs: Vec<String> = vec![
            String::new(),
            ".".into(),
            "..".into(),
            "a.b.c".into(),
            "a..b".into(),
            ".abc".into(),
            "abc.".into(),
            "AAAA.AAAA".into(),
            "====.====".into(),
            "héllo.wörld".into(),
            "ñ".repeat(50),
            "😀.😀".into(),
            "\0\r\n;,".into(),
            huge,
            huge_dots,
            "A.".repeat(99),
            format!("{valid}.extra"),
            format!("{valid}{valid}"),
            format!(".{valid}"),
            valid[..valid.len() - 1].to_string(),
            valid.replace('.', ""),
            header_only.clone(),
        ];
        // random garbage from the token alphabet and from arbitrary bytes
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let len = rng.usize(0..250);
            let s: String = (0..len)
                .map(|_| {
                    let a = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
                    a[rng.usize(0..a.len())] as char
                })
                .collect();
            inputs.push(s);
            let s: String = (0..rng.usize(0..60)).map(|_| rng.char(..)).collect();
            inputs.push(s);
        }
        for s in &inputs {
            for p in ALL {
                assert!(verify_as(&k, p, s).is_err(), "{s:?}");
            }
        }
        assert_eq!(verify_client(&k, ""), Err(TokenError::Malformed));
        assert_eq!(
            verify_client(&k, &"A".repeat(1 << 20)),
            Err(TokenError::Malformed)
        );
        // a well-signed but truncated body is malformed, not accepted
        assert_eq!(verify_client(&k, &header_only), Err(TokenError::Malformed));
    }

    #[test]
    fn error_names_are_distinct() {
        let all = [
            TokenError::Malformed,
            TokenError::UnknownKey,
            TokenError::Tampered,
            TokenError::WrongPurpose,
            TokenError::Expired,
            TokenError::WrongHost,
        ];
        let mut names: Vec<_> = all.iter().map(|e| e.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }
}
