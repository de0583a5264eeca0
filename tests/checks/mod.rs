//! The properties that hostile input must never break, written once and driven twice: by the
//! property tests (`tests/properties.rs`, random structured input, every `cargo test`) and by
//! the fuzz targets (`fuzz/fuzz_targets/*.rs`, coverage-guided, in CI for a bounded time).
//!
//! Each check takes raw input, runs one of smproxy's parsers or verifiers on it, and panics
//! when the property does not hold. A panic inside smproxy itself fails the same way.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use smproxy::collect::beacon::{self, Beacon};
use smproxy::config::{Duplicates, Position, Secret};
use smproxy::identity::{self, Keys, Uuid};
use smproxy::inject::charset::Charset;
use smproxy::inject::{Injector, InjectorOptions};

// ---- the injector -------------------------------------------------------------------------

/// The snippet the injector checks use: unique enough never to occur in an input by chance.
pub const SNIPPET: &str = "<script>var _smid='fuzzclient';window.__sm_probe=1;</script>";

pub fn injector_options(position: Position, duplicates: Duplicates) -> InjectorOptions {
    InjectorOptions {
        snippet: Arc::from(SNIPPET),
        position,
        duplicates,
        tracker_path: Arc::from("/_sm/sm.js"),
        client_id: Arc::from("fuzzclient"),
        charset: Charset::Undeclared,
        max_buffer_bytes: 1 << 20,
    }
}

/// The options a check derives from its input, so a fuzzer reaches every combination without
/// a header that would stop raw HTML seeds from working as they are.
pub fn options_for(selector: usize) -> (Position, Duplicates) {
    let position = if selector & 1 == 0 {
        Position::HeadEnd
    } else {
        Position::BodyEnd
    };
    let duplicates = if selector & 2 == 0 {
        Duplicates::Remove
    } else {
        Duplicates::Keep
    };
    (position, duplicates)
}

/// Feeds `input` to the injector in chunks of the given sizes (cycled; 0 counts as 1).
pub fn inject_in_chunks(opts: InjectorOptions, input: &[u8], sizes: &[usize]) -> Vec<u8> {
    inject_cut(opts, input, sizes, false)
}

/// [`inject_in_chunks`], with the last chunk given to `write_last` (as the proxy does) when
/// `last` is set, else to `write` followed by `finish`.
pub fn inject_cut(opts: InjectorOptions, input: &[u8], sizes: &[usize], last: bool) -> Vec<u8> {
    let mut inj = Injector::new(opts);
    let mut out = Vec::with_capacity(input.len() + SNIPPET.len());
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        let chunk = Bytes::copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        i += 1;
        if last && rest.is_empty() {
            out.extend_from_slice(&inj.write_last(chunk));
            return out;
        }
        out.extend_from_slice(&inj.write(chunk));
    }
    out.extend_from_slice(&inj.finish());
    out
}

fn occurrences(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return Vec::new();
    }
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// The injector's contract on any input, whole and cut at `sizes`:
/// - the output is the input with the snippet inserted exactly once when the outcome says it
///   was injected, and the input unchanged when it was not (already tagged, UTF-16, failed);
/// - when duplicates were removed, the output is no longer than the input plus the snippet and
///   still carries the snippet if it was injected;
/// - cutting the input into other chunks gives the same bytes (unless the rewriter gave up on
///   its memory limit, which may happen at a different point);
/// - nothing panics.
pub fn injector_contract(input: &[u8], sizes: &[usize], selector: usize) {
    let (position, duplicates) = options_for(selector);
    let opts = injector_options(position, duplicates);
    let mut whole = Injector::new(opts.clone());
    let mut out = whole.write(Bytes::copy_from_slice(input)).to_vec();
    out.extend_from_slice(&whole.finish());
    let outcome = whole.outcome();
    let snippet = SNIPPET.as_bytes();

    if outcome.unsupported_charset {
        assert!(out == input, "a UTF-16 body must pass through unchanged");
    }
    if outcome.duplicates_removed == 0 {
        match outcome.injected {
            Some(anchor) => {
                let before = occurrences(input, snippet).len();
                let at = occurrences(&out, snippet);
                assert_eq!(
                    at.len(),
                    before + 1,
                    "injected at {anchor:?}: the snippet must be added exactly once"
                );
                let plus_one = at.iter().any(|&i| {
                    out[..i] == input[..i.min(input.len())]
                        && out[i + snippet.len()..] == input[i.min(input.len())..]
                });
                assert!(plus_one, "output is not the input plus one snippet");
            }
            None => assert!(
                out == input,
                "not injected ({outcome:?}): the output must be the input unchanged"
            ),
        }
    } else {
        assert!(
            out.len() <= input.len() + snippet.len(),
            "removing duplicates must not add anything but the snippet"
        );
        if outcome.injected.is_some() {
            assert!(
                !occurrences(&out, snippet).is_empty(),
                "the snippet is gone"
            );
        }
    }
    assert!(
        !(outcome.injected.is_some() && outcome.already_tagged),
        "a page cannot be both tagged already and injected: {outcome:?}"
    );

    if outcome.failure.is_none() {
        // The fast paths (the head scan, the tail after `</head>`) must give what parsing
        // every byte gives.
        let mut full = Injector::parsing_everything(opts.clone());
        let mut reference = full.write(Bytes::copy_from_slice(input)).to_vec();
        reference.extend_from_slice(&full.finish());
        if full.outcome().failure.is_none() {
            assert!(
                reference == out,
                "the fast path and parsing every byte disagree"
            );
        }
    }
    if outcome.failure.is_none() && !sizes.is_empty() {
        let chunked = inject_in_chunks(opts.clone(), input, sizes);
        assert!(
            chunked == out,
            "cutting the input at {sizes:?} changed the output"
        );
        let ended = inject_cut(opts, input, sizes, true);
        assert!(
            ended == out,
            "ending the input at {sizes:?} with write_last changed the output"
        );
    }
}

// ---- the collect payload ------------------------------------------------------------------

/// Content types a beacon may arrive with, chosen by the check's selector.
pub const CONTENT_TYPES: [Option<&str>; 6] = [
    Some("text/plain;charset=UTF-8"),
    Some("application/json"),
    Some("text/plain"),
    None,
    Some("application/x-www-form-urlencoded"),
    Some("text/plain; charset=iso-8859-1"),
];

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// What every accepted beacon guarantees to the rest of the program, whatever was sent.
pub fn accepted_beacon_is_clean(b: &Beacon) {
    assert!(matches!(b.url.scheme(), "http" | "https"), "{}", b.url);
    assert!(b.url.as_str().len() <= 2048, "url too long");
    for (what, value, max_chars) in [
        ("referrer", &b.referrer, 2048),
        ("title", &b.title, 512),
        ("screen", &b.screen, 11),
        ("lang", &b.lang, 35),
        ("name", &b.name, 100),
        ("target", &b.target, 2048),
        ("email", &b.email, 254),
        ("props", &b.props_json, 2048),
    ] {
        if let Some(v) = value {
            assert!(v.chars().count() <= max_chars, "{what} over its limit");
            if what != "props" {
                assert!(!has_control(v), "{what} carries a control character");
            }
        }
    }
    if let Some(ms) = b.engaged_ms {
        assert!((0..=86_400_000).contains(&ms), "engaged_ms {ms}");
    }
    assert!(b.fields.len() <= 50);
    for f in &b.fields {
        assert!(
            f.chars().count() <= 64 && !has_control(f),
            "field name {f:?}"
        );
    }
    assert!(b.hosts.len() <= 20);
    for h in &b.hosts {
        assert!(
            h.len() <= 259 && *h == h.to_ascii_lowercase() && !has_control(h),
            "host {h:?}"
        );
    }
    if let Some(json) = &b.props_json {
        let v: serde_json::Value = serde_json::from_str(json).expect("props are JSON");
        assert!(v.is_object());
    }
    for key in ["source", "medium", "campaign"] {
        if let Some(u) = b.utm(key) {
            assert!(u.chars().count() <= 200 && !has_control(&u), "utm_{key}");
        }
    }
    let _ = b.page_authority();
    let _ = b.path();
}

/// `parse_body` on any bytes: never panics; an accepted beacon is clean; a refusal is a 4xx
/// with a reason; the same input always gives the same answer.
pub fn beacon_body_contract(body: &[u8], selector: usize) {
    let ct = CONTENT_TYPES[selector % CONTENT_TYPES.len()];
    let first = beacon::parse_body(ct, body);
    match &first {
        Ok(b) => accepted_beacon_is_clean(b),
        Err(r) => {
            assert!((400..500).contains(&r.status), "{r:?}");
            assert!(!r.reason.is_empty());
        }
    }
    assert_eq!(first, beacon::parse_body(ct, body), "not deterministic");
    // The body is read field by field, never into a JSON object: it must answer exactly as
    // the same object written out plainly does (repeated keys resolved, escapes decoded).
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) {
        let plain = serde_json::to_vec(&map).expect("a JSON object serialises");
        if body.len() <= beacon::MAX_BODY && plain.len() <= beacon::MAX_BODY {
            assert_eq!(
                first,
                beacon::parse_body(ct, &plain),
                "read unlike a JSON object"
            );
        }
    }
}

/// `parse_query` (the pixel) and `check_origin` on any text: same guarantees.
pub fn beacon_query_contract(query: &str, referer: Option<&str>) {
    match beacon::parse_query(query, referer) {
        Ok(b) => accepted_beacon_is_clean(&b),
        Err(r) => assert!((400..500).contains(&r.status), "{r:?}"),
    }
    let site = |h: &str| h == "shop.example" || h == "shop.example:8080";
    // Accepted exactly when the header is an http(s) URL whose authority, as the URL parser
    // reads it, is the site's (the endpoint reads a browser's `Origin` without the parser: it
    // must never disagree with it either way).
    let names_the_site = |header: &str| {
        url::Url::parse(header.trim()).is_ok_and(|u| {
            let authority = match (u.host_str(), u.port()) {
                (Some(h), Some(p)) => format!("{}:{p}", h.to_ascii_lowercase()),
                (Some(h), None) => h.to_ascii_lowercase(),
                (None, _) => return false,
            };
            matches!(u.scheme(), "http" | "https") && site(&authority)
        })
    };
    assert_eq!(
        beacon::check_origin(Some(query), None, site).is_ok(),
        names_the_site(query) && query.trim() != "null",
        "origin {query:?}"
    );
    assert_eq!(
        beacon::check_origin(None, Some(query), site).is_ok(),
        names_the_site(query),
        "referer {query:?}"
    );
}

// ---- cookies and link tokens --------------------------------------------------------------

pub const KEY_NEW: &str = "fuzz-key-new-0123456789abcdef0123456789";
pub const KEY_OLD: &str = "fuzz-key-old-0123456789abcdef0123456789";

/// The verifying keys of the checks: the new key signs, the old one still verifies.
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        Keys::new(&[Secret::new(KEY_NEW.into()), Secret::new(KEY_OLD.into())]).unwrap()
    })
}

pub fn keys_of(secrets: &[&str]) -> Keys {
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new((*s).into())).collect();
    Keys::new(&secrets).unwrap()
}

pub const HOST: &str = "blog.shop.example";

/// Any string offered as a token: every verifier either refuses it or accepts a token that is
/// byte for byte the one the issuer makes for the claims read (no second spelling of a token
/// verifies, so a token cannot be altered and still pass). Nothing panics.
pub fn token_contract(token: &str, now: u64) {
    let keys = keys();
    let signer_of = |t: &str| {
        // Re-issue with the key that signed it (the new key, or the old one alone).
        if identity::verify_client(&keys_of(&[KEY_NEW]), t).is_ok()
            || identity::verify_ids(&keys_of(&[KEY_NEW]), t).is_ok()
            || identity::verify_site_link(&keys_of(&[KEY_NEW]), t, HOST, now).is_ok()
            || identity::verify_personal_link(&keys_of(&[KEY_NEW]), t, now).is_ok()
        {
            keys_of(&[KEY_NEW])
        } else {
            keys_of(&[KEY_OLD])
        }
    };
    if let Ok(c) = identity::verify_client(keys, token) {
        let again = identity::issue_client(&signer_of(token), c.contact_id, c.issued_at);
        assert_eq!(again, token, "smclient accepted in another spelling");
    }
    if let Ok(c) = identity::verify_ids(keys, token) {
        let again = identity::issue_ids(&signer_of(token), c.ids_id, c.contact_id, c.issued_at);
        assert_eq!(again, token, "smids accepted in another spelling");
    }
    if let Ok(c) = identity::verify_site_link(keys, token, HOST, now) {
        assert!(now < c.expires_at, "an expired _smx accepted");
        // The issuer caps the lifetime at 120 s; a token that says otherwise was not ours.
        let issued = c
            .expires_at
            .saturating_sub(identity::SITE_LINK_MAX_TTL_SECS);
        let again = identity::issue_site_link(
            &signer_of(token),
            c.ids_id,
            c.contact_id,
            HOST,
            issued,
            identity::SITE_LINK_MAX_TTL_SECS,
        );
        assert_eq!(again, token, "_smx accepted in another spelling");
        assert!(
            identity::verify_site_link(keys, token, "other.example", now).is_err(),
            "_smx accepted on another host"
        );
    }
    if let Ok(c) = identity::verify_personal_link(keys, token, now) {
        assert!(c.expires_at.is_none_or(|t| now < t), "an expired smlink");
        let again = identity::issue_personal_link(
            &signer_of(token),
            c.contact_id,
            c.issued_at,
            c.expires_at,
        );
        assert_eq!(again, token, "smlink accepted in another spelling");
    }
}

/// A genuine token with one change (`edit` picks what and where) is refused.
pub fn altered_token_is_refused(edit: &[u8], contact: [u8; 16], now: u64) {
    let keys = keys();
    let contact = Uuid::from_bytes(contact);
    let genuine = [
        identity::issue_client(keys, contact, now),
        identity::issue_ids(keys, contact, Some(contact), now),
        identity::issue_site_link(keys, contact, None, HOST, now, 120),
        identity::issue_personal_link(keys, contact, now, Some(now + 3600)),
    ];
    let which = usize::from(edit.first().copied().unwrap_or(0)) % genuine.len();
    let mut bytes = genuine[which].clone().into_bytes();
    let at = edit
        .get(1..3)
        .map_or(0, |b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        % bytes.len();
    let byte = edit.get(3).copied().unwrap_or(b'A');
    match edit.get(4).copied().unwrap_or(0) % 4 {
        0 if bytes[at] != byte => bytes[at] = byte,
        0 | 1 => {
            bytes.remove(at);
        }
        2 => bytes.insert(at, byte),
        _ => bytes.truncate(at),
    }
    let Ok(altered) = String::from_utf8(bytes) else {
        return;
    };
    if altered == genuine[which] {
        return;
    }
    let refused = match which {
        0 => identity::verify_client(keys, &altered).is_err(),
        1 => identity::verify_ids(keys, &altered).is_err(),
        2 => identity::verify_site_link(keys, &altered, HOST, now).is_err(),
        _ => identity::verify_personal_link(keys, &altered, now).is_err(),
    };
    assert!(refused, "an altered token was accepted: {altered}");
}

/// Any `Cookie` header: reading the identity never panics, a contact or cross-site id is only
/// believed from a verifying token, and every `Set-Cookie` written in answer is a valid header
/// value without a line break.
pub fn cookie_header_contract(header: &[u8], host: &str) {
    use smproxy::collect::visitor::{Identities, Signals};
    use smproxy::config::{ConsentMode, ConsentSettings, CookieSettings};
    let ids = Identities::new(
        keys().clone(),
        CookieSettings {
            secrets: vec![],
            js_readable: false,
            max_age_days: 395,
        },
        ConsentSettings {
            mode: ConsentMode::None,
            cookie: Some("cmp".into()),
            cookie_value: None,
            respect_dnt: true,
        },
    );
    let mut v = ids.read([header]);
    if v.contact.is_some() {
        let raw = identity::read_cookie([header], identity::SMCLIENT).expect("smclient read");
        assert!(identity::verify_client(keys(), raw).is_ok());
    }
    if let Some(id) = &v.visitor_id {
        assert!(identity::is_uuid(id));
    }
    let _ = ids.allowed(&v, Signals::default());
    let mut set = ids.ensure(&mut v, host, false, true, 1_760_000_000);
    set.extend(ids.forget_if_present(&v, host, true));
    for value in set {
        assert!(
            http::HeaderValue::from_str(&value).is_ok(),
            "not a header value: {value:?}"
        );
        assert!(!value.contains(['\r', '\n', '\0']));
    }
}

/// `set_cookie` with any value and host: refused, or a header value whose name=value pair is
/// exactly what was asked and nothing else (no injected attribute, no line break).
pub fn set_cookie_contract(value: &str, host: &str) {
    let attrs = identity::CookieAttrs::for_host(host, true);
    if let Ok(header) = identity::set_cookie(identity::SMUUID, value, &attrs) {
        assert!(http::HeaderValue::from_str(&header).is_ok(), "{header:?}");
        let pair = header.split(';').next().unwrap();
        assert_eq!(pair, format!("{}={value}", identity::SMUUID));
        assert!(!value.contains([';', '\r', '\n', ',', ' ']));
    }
}

// ---- the configuration --------------------------------------------------------------------

/// Any YAML text: the loader never panics, and each problem names a field path and a reason.
/// Texts that name a file for the loader to read (`companies.csv`) are outside the property:
/// a fuzzer must not read the machine's files.
pub fn config_contract(text: &str) {
    if text.contains("csv") {
        return;
    }
    if let Err(errors) = smproxy::config::parse_str(text) {
        assert!(!errors.0.is_empty());
        for e in &errors.0 {
            assert!(!e.path.is_empty(), "an error without a path: {e}");
            assert!(!e.reason.is_empty(), "an error without a reason: {e}");
        }
    }
}

/// A secret written where it does not belong (or too short to be a key) never appears in the
/// loader's errors or in the `Debug` of what it loaded.
pub fn config_never_echoes_a_secret(secret: &str, place: usize) {
    let base =
        "client_id: abc\nsites:\n  - name: s\n    hosts: ['*']\n    upstream: '127.0.0.1:1'\n";
    let quoted = serde_json::to_string(secret).unwrap();
    let extra = match place % 8 {
        0 => format!("cookies:\n  secret: {quoted}\n"),
        1 => format!("cookies: {quoted}\n"),
        2 => format!("admin:\n  token: {quoted}\n"),
        3 => format!("admin: {quoted}\n"),
        4 => format!("cookies:\n  secrets: [{quoted}, 42]\n"),
        5 => format!("admin:\n  token: {quoted}\n  listen: '0.0.0.0:1'\n"),
        6 => format!("cookies:\n  secret: {quoted}\n  secret_env: X\n"),
        _ => format!("{quoted}: 1\n"),
    };
    let text = format!("{base}{extra}");
    match smproxy::config::parse_str(&text) {
        Ok(settings) => {
            let dbg = format!("{settings:?}");
            assert!(!dbg.contains(secret), "Debug shows the secret: {dbg}");
        }
        Err(e) => {
            let shown = e.to_string();
            // A key name is not a secret (place 7 puts the text where a key goes).
            if place % 8 != 7 {
                assert!(
                    !shown.contains(secret),
                    "the error shows the secret: {shown}"
                );
            }
        }
    }
}
