//! Visitor identity: everything needed to recognise a visitor across requests and sibling
//! sites with first-party, server-set cookies — signing keys, signed tokens, `Set-Cookie`
//! values, registrable domains and visitor ids.
//!
//! Pure logic: no Pingora types, no I/O, time passed in as unix seconds. The proxy reads the
//! cookies with [`read_cookie`], checks signed values with the `verify_*` functions of
//! [`token`] (a forged or tampered value is simply ignored), and writes cookies with
//! [`set_cookie`] and [`CookieAttrs::for_host`].
//!
//! - [`keys`]: HMAC-SHA256 keys with rotation (first signs, all verify).
//! - [`token`]: compact `payload.sig` tokens for `smclient`, `smids`, `_smx` and `smlink`.
//! - [`cookies`]: `Set-Cookie` values and `Cookie` header parsing.
//! - [`domain`]: host normalisation and the registrable domain.

pub mod cookies;
pub mod domain;
pub mod keys;
pub mod token;

pub use cookies::{
    delete_cookie, read_cookie, set_cookie, CookieAttrs, CookieError, DEFAULT_MAX_AGE_DAYS,
    SMCLIENT, SMIDS, SMLINK_PARAM, SMUUID, SMX_PARAM,
};
pub use domain::{normalize_host, registrable_domain};
pub use keys::{KeyError, Keys};
pub use token::{
    issue_client, issue_ids, issue_personal_link, issue_site_link, verify_client, verify_ids,
    verify_personal_link, verify_site_link, ClientClaims, IdsClaims, PersonalLinkClaims, Purpose,
    SiteLinkClaims, TokenError, SITE_LINK_MAX_TTL_SECS,
};
pub use uuid::Uuid;

/// A new anonymous visitor id (`smuuid`): a random UUID v4, lower-case and hyphenated. Not
/// time-ordered: the cookie contract says v4, and an anonymous id should not tell when the
/// visitor first came.
pub fn new_visitor_id() -> String {
    Uuid::new_v4().hyphenated().to_string()
}

/// A new UUID in the version 7 layout (RFC 9562): the current Unix time in milliseconds in
/// the first 48 bits, then 74 random bits (from the same generator as `Uuid::new_v4`).
///
/// Used for the ids the proxy and the store create by the thousand (cross-site identities,
/// sessions) because every event is indexed by them: ids that sort by creation time
/// put each new index entry next to the previous ones, at the end of the index, where a random
/// id would land on a different page of the index for every event, and the store would then
/// write a whole page per index per event. Same 36-character text as any UUID, so nothing that
/// reads an id changes; 74 random bits keep two ids of the same millisecond apart.
pub fn time_ordered_uuid() -> Uuid {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let random = Uuid::new_v4().into_bytes();
    let mut tail = [0u8; 10];
    tail.copy_from_slice(&random[6..]);
    uuid::Builder::from_unix_timestamp_millis(millis, &tail).into_uuid()
}

/// True when `s` is a UUID in the hyphenated 36-character form (any case, any version).
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36 && Uuid::try_parse(s).is_ok()
}

/// The current time in unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visitor_ids_are_v4_uuids() {
        let a = new_visitor_id();
        let b = new_visitor_id();
        assert_ne!(a, b);
        assert!(is_uuid(&a));
        assert_eq!(a.len(), 36);
        assert_eq!(a, a.to_ascii_lowercase());
        assert_eq!(Uuid::parse_str(&a).unwrap().get_version_num(), 4);
        assert_eq!(a.as_bytes()[14], b'4');
    }

    #[test]
    fn time_ordered_uuids_carry_the_time_and_differ_within_a_millisecond() {
        let before = unix_now();
        let ids: Vec<Uuid> = (0..1000).map(|_| time_ordered_uuid()).collect();
        let after = unix_now();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        for id in &ids {
            assert_eq!(id.get_version_num(), 7);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            let (secs, _) = id.get_timestamp().expect("a v7 UUID has a time").to_unix();
            assert!(
                (before..=after).contains(&secs),
                "{secs} not in {before}..={after}"
            );
        }
    }

    #[test]
    fn uuid_recognition() {
        assert!(is_uuid("0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert!(is_uuid("0F8FAD5B-D9CB-469F-A165-70867728950E"));
        assert!(is_uuid("00000000-0000-0000-0000-000000000000"));
        for bad in [
            "",
            "0f8fad5bd9cb469fa16570867728950e",
            "{0f8fad5b-d9cb-469f-a165-70867728950e}",
            "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
            "0f8fad5b-d9cb-469f-a165-70867728950",
            "0f8fad5b-d9cb-469f-a165-70867728950g",
            "0f8fad5b-d9cb-469f-a165-70867728950e0",
            "0f8fad5b_d9cb_469f_a165_70867728950e",
            "ééééééééééééééééé-ééé",
            "------------------------------------",
        ] {
            assert!(!is_uuid(bad), "{bad}");
        }
    }

    #[test]
    fn clock_is_sane() {
        assert!(unix_now() > 1_600_000_000);
    }

    #[test]
    fn end_to_end_cookie_flow() {
        let keys = Keys::new(&[crate::config::Secret::new("k".repeat(32))]).unwrap();
        let now = 1_760_000_000;
        let contact = Uuid::new_v4();
        let value = issue_client(&keys, contact, now);
        let attrs = CookieAttrs::for_host("www.shop.example.com", true);
        let header = set_cookie(SMCLIENT, &value, &attrs).unwrap();
        assert!(header.contains("; Domain=example.com;"));
        let pair = header.split(';').next().unwrap();
        let read = read_cookie([pair], SMCLIENT).unwrap();
        assert_eq!(verify_client(&keys, read).unwrap().contact_id, contact);
    }
}
