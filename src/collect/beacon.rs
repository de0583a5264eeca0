//! The beacon wire format (see the table in `collect/mod.rs`): parsing and validating one
//! beacon from a POST body or a GET pixel's query string, and checking that it was sent by
//! one of the site's own pages. Pure: no I/O, no Pingora types.
//!
//! Everything a beacon carries ends up in the store and in dashboards, and anyone on the
//! internet can send one, so every field is bounded and typed here, once, before anything else
//! looks at it. The first bad field refuses the whole beacon with a short static reason naming
//! the field (`"title: too long"`, `"engaged_ms: required"`).
//!
//! Conventions where the table leaves room:
//!
//! - **Lengths**: text (`title`, `name`, `email`, `props` keys and values, `fields`, `lang`) is
//!   measured in characters, so a title in Polish is not penalised for its UTF-8 bytes; URLs,
//!   host names and the serialised `props` are measured in bytes, because that is what they
//!   cost to store. A URL must fit both as sent and as re-serialised by the parser (which
//!   percent-encodes and can make it longer).
//! - **Control characters** are refused in every string, except that tabs and line breaks in
//!   `title` become spaces (titles taken from the DOM often contain them) and surrounding
//!   whitespace of `title` and `email` is trimmed.
//! - **Absent values**: `null` is the same as leaving the field out; an empty (or, after
//!   trimming, blank) `referrer`, `title` or `email` is `None`; an empty `props` object is
//!   `None`. Other fields have a minimum length and an empty value is refused.
//! - **Fields of other types** are validated and kept when present (a `pageview` with a `name`
//!   keeps it); the handler reads only what the kind needs. Only the required fields depend on
//!   the type.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use url::Url;

use super::origin::{authority, header_authority};

/// The largest POST body accepted (the default of `collect.max_body_kib`).
pub const MAX_BODY: usize = 16 * 1024;

/// URLs (`url`, `referrer`, `target`), in bytes.
const MAX_URL: usize = 2048;
/// Characters.
const MAX_TITLE: usize = 512;
/// Bytes (ASCII only). BCP 47 tags are at most 35 characters.
const MAX_LANG: usize = 35;
/// A day: a tab left open longer than that is not engagement.
const MAX_ENGAGED_MS: i64 = 86_400_000;
/// Characters.
const MAX_NAME: usize = 100;
const MAX_PROPS: usize = 20;
/// Characters.
const MAX_PROP_KEY: usize = 64;
/// Characters.
const MAX_PROP_VALUE: usize = 256;
/// Bytes of the compact JSON the store keeps.
const MAX_PROPS_JSON: usize = 2048;
/// Characters, after trimming (the RFC 5321 limit of a forward path).
const MAX_EMAIL: usize = 254;
const MAX_FIELDS: usize = 50;
/// Characters.
const MAX_FIELD_NAME: usize = 64;
const MAX_HOSTS: usize = 20;
/// Bytes: a 253-byte DNS name and `:65535`.
const MAX_HOST: usize = 259;
/// Characters of a `utm_*` value.
const MAX_UTM: usize = 200;

/// What the tracker reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeaconKind {
    Pageview,
    Engagement,
    Event,
    Outbound,
    Form,
    Consent,
    Link,
}

impl BeaconKind {
    /// Every kind, in declaration order.
    pub const ALL: [BeaconKind; 7] = [
        BeaconKind::Pageview,
        BeaconKind::Engagement,
        BeaconKind::Event,
        BeaconKind::Outbound,
        BeaconKind::Form,
        BeaconKind::Consent,
        BeaconKind::Link,
    ];

    /// The name in the beacon's `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            BeaconKind::Pageview => "pageview",
            BeaconKind::Engagement => "engagement",
            BeaconKind::Event => "event",
            BeaconKind::Outbound => "outbound",
            BeaconKind::Form => "form",
            BeaconKind::Consent => "consent",
            BeaconKind::Link => "link",
        }
    }

    /// Case-sensitive, like the rest of the protocol.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// A validated beacon. Strings are within their limits and free of control characters.
#[derive(Debug, Clone, PartialEq)]
pub struct Beacon {
    pub kind: BeaconKind,
    /// The page, parsed (absolute http or https).
    pub url: Url,
    pub referrer: Option<String>,
    pub title: Option<String>,
    pub screen: Option<String>,
    pub lang: Option<String>,
    pub engaged_ms: Option<i64>,
    pub name: Option<String>,
    /// `props` re-serialised as compact JSON.
    pub props_json: Option<String>,
    pub target: Option<String>,
    /// As sent, trimmed (normalising is the store's job).
    pub email: Option<String>,
    pub fields: Vec<String>,
    pub consent: Option<bool>,
    /// Lower-cased host names, deduplicated.
    pub hosts: Vec<String>,
}

impl Beacon {
    /// The page's path, without query or fragment (what analytics group by).
    pub fn path(&self) -> &str {
        self.url.path()
    }

    /// A `utm_*` parameter of the page URL, e.g. `utm("source")` (or `utm("utm_source")`):
    /// decoded, control characters turned into spaces, trimmed, at most 200 characters; `None`
    /// when absent or blank. The first occurrence wins.
    pub fn utm(&self, key: &str) -> Option<String> {
        let wanted: Cow<str> = if key.starts_with("utm_") {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(format!("utm_{key}"))
        };
        let (_, value) = self.url.query_pairs().find(|(k, _)| *k == wanted)?;
        let cleaned: String = value
            .trim()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(MAX_UTM)
            .collect();
        let cleaned = cleaned.trim();
        (!cleaned.is_empty()).then(|| cleaned.to_owned())
    }

    /// The page's host as a `Host` header would carry it: lower-cased, with `:port` when the
    /// URL names a port other than the scheme's default (so it can be compared with the
    /// request's own `Host` and routed like one).
    pub fn page_authority(&self) -> String {
        authority(&self.url).unwrap_or_default()
    }
}

/// Why a beacon was refused: the HTTP status and a short reason for the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{status} {reason}")]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
}

/// A malformed beacon.
const fn bad(reason: &'static str) -> Rejection {
    Rejection {
        status: 400,
        reason,
    }
}

const BODY_TOO_LARGE: Rejection = Rejection {
    status: 413,
    reason: "body too large",
};
const UNSUPPORTED_TYPE: Rejection = Rejection {
    status: 415,
    reason: "unsupported content type",
};
const UNSUPPORTED_CHARSET: Rejection = Rejection {
    status: 415,
    reason: "unsupported charset",
};
const FOREIGN_ORIGIN: Rejection = Rejection {
    status: 403,
    reason: "foreign origin",
};
const FOREIGN_REFERER: Rejection = Rejection {
    status: 403,
    reason: "foreign referer",
};
const ORIGIN_REQUIRED: Rejection = Rejection {
    status: 403,
    reason: "origin required",
};

/// The reasons one field can be refused for. A [`Rejection`] carries a `&'static str`, so
/// each field's messages are spelled out at compile time by [`field!`].
struct Field {
    /// The field's slot in [`Fields`] (its place in [`FIELDS_ALL`]).
    id: usize,
    name: &'static str,
    required: &'static str,
    wrong_type: &'static str,
    empty: &'static str,
    too_long: &'static str,
    too_many: &'static str,
    control: &'static str,
    invalid: &'static str,
}

/// `field!(id, "title", "a string", "what a bad format means")`.
macro_rules! field {
    ($id:literal, $name:literal, $expected:literal, $invalid:literal) => {
        Field {
            id: $id,
            name: $name,
            required: concat!($name, ": required"),
            wrong_type: concat!($name, ": must be ", $expected),
            empty: concat!($name, ": empty"),
            too_long: concat!($name, ": too long"),
            too_many: concat!($name, ": too many"),
            control: concat!($name, ": control characters"),
            invalid: concat!($name, ": ", $invalid),
        }
    };
}

const TYPE: Field = field!(0, "type", "a string", "unknown");
const URL: Field = field!(1, "url", "a string", "must be an absolute http(s) URL");
const REFERRER: Field = field!(2, "referrer", "a string", "must be an absolute URL");
const TITLE: Field = field!(3, "title", "a string", "invalid");
const SCREEN: Field = field!(4, "screen", "a string", "must be WxH");
const LANG: Field = field!(5, "lang", "a string", "must be A-Za-z0-9-");
const ENGAGED_MS: Field = field!(6, "engaged_ms", "an integer", "out of range");
const NAME: Field = field!(7, "name", "a string", "invalid");
const PROPS: Field = field!(8, "props", "an object", "nested values not allowed");
const TARGET: Field = field!(9, "target", "a string", "must be an absolute http(s) URL");
const EMAIL: Field = field!(10, "email", "a string", "invalid");
const FIELDS: Field = field!(11, "fields", "an array of strings", "invalid");
const CONSENT: Field = field!(12, "consent", "a boolean", "invalid");
const HOSTS: Field = field!(13, "hosts", "an array of strings", "must be host names");

/// Every field, each at its `id`.
const FIELDS_ALL: [&Field; 14] = [
    &TYPE,
    &URL,
    &REFERRER,
    &TITLE,
    &SCREEN,
    &LANG,
    &ENGAGED_MS,
    &NAME,
    &PROPS,
    &TARGET,
    &EMAIL,
    &FIELDS,
    &CONSENT,
    &HOSTS,
];

/// A field's value as sent. Strings, the common case, stay borrowed from the body when JSON
/// needed no unescaping; anything else is an ordinary JSON value.
#[derive(Debug)]
enum Slot<'a> {
    Str(Cow<'a, str>),
    Other(Value),
}

/// A beacon's known fields as sent, each in its [`Field::id`] slot: what reading the body into
/// a JSON object would give for them (a repeated key: the last one; `null`: absent), without
/// building a map, and without building the values of unknown fields at all.
#[derive(Debug, Default)]
struct Fields<'a> {
    slots: [Option<Slot<'a>>; FIELDS_ALL.len()],
}

impl<'a> Fields<'a> {
    fn slot(&self, field: &Field) -> Option<&Slot<'a>> {
        self.slots[field.id].as_ref()
    }

    fn set(&mut self, field: &Field, slot: Option<Slot<'a>>) {
        self.slots[field.id] = slot;
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Fields<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Fields::default();
                while let Some(Text(key)) = map.next_key()? {
                    match FIELDS_ALL.iter().find(|f| f.name == key) {
                        Some(field) => fields.set(field, map.next_value()?),
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(fields)
            }
        }
        d.deserialize_map(ObjectVisitor)
    }
}

/// A JSON string, borrowed when it can be.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }

            fn visit_string<E: de::Error>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

impl<'de> Deserialize<'de> for Slot<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SlotVisitor;
        impl<'de> Visitor<'de> for SlotVisitor {
            type Value = Slot<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Slot<'de>, E> {
                Ok(Slot::Str(Cow::Borrowed(s)))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Slot<'de>, E> {
                Ok(Slot::Str(Cow::Owned(s.to_owned())))
            }

            fn visit_string<E: de::Error>(self, s: String) -> Result<Slot<'de>, E> {
                Ok(Slot::Str(Cow::Owned(s)))
            }

            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Slot<'de>, E> {
                Ok(Slot::Other(Value::Bool(b)))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Slot<'de>, E> {
                Ok(Slot::Other(Value::from(n)))
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Slot<'de>, E> {
                Ok(Slot::Other(Value::from(n)))
            }

            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Slot<'de>, E> {
                Ok(Slot::Other(Value::from(n)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Slot<'de>, A::Error> {
                Value::deserialize(SeqAccessDeserializer::new(seq)).map(Slot::Other)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Slot<'de>, A::Error> {
                Value::deserialize(MapAccessDeserializer::new(map)).map(Slot::Other)
            }
        }
        d.deserialize_any(SlotVisitor)
    }
}

/// Parses a POST body. `content_type` is the raw header.
pub fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<Beacon, Rejection> {
    check_content_type(content_type)?;
    if body.len() > MAX_BODY {
        return Err(BODY_TOO_LARGE);
    }
    let text = std::str::from_utf8(body).map_err(|_| bad("invalid utf-8"))?;
    let obj: Fields = serde_json::from_str(text).map_err(|e| match e.classify() {
        // Well-formed JSON of another type than an object (the only data error possible:
        // every field takes any value).
        serde_json::error::Category::Data => bad("not a JSON object"),
        _ => bad("invalid json"),
    })?;
    validate(kind(&obj)?, &obj)
}

/// The query parameters the pixel reads. Everything else is ignored like any unknown field:
/// `props` has no query form, `email` and `fields` do not belong in a URL that ends up in
/// access logs, and the `hosts` answer cannot be delivered in a GIF.
const QUERY_FIELDS: [&Field; 7] = [&TYPE, &URL, &REFERRER, &TITLE, &SCREEN, &LANG, &NAME];

/// Parses a GET pixel's query string (without `?`); `url` defaults to `referer`.
///
/// Only `pageview` (the default) and `event` exist as pixels. A repeated parameter counts
/// once, the first time; an empty `url=` is the same as none (templates render it when they
/// do not know the page).
pub fn parse_query(query: &str, referer: Option<&str>) -> Result<Beacon, Rejection> {
    let mut obj = Fields::default();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let wanted = QUERY_FIELDS.iter().find(|f| f.name == key);
        if let Some(field) = wanted.filter(|f| obj.slot(f).is_none()) {
            obj.set(field, Some(Slot::Str(value)));
        }
    }
    if matches!(obj.slot(&URL), Some(Slot::Str(url)) if url.is_empty()) {
        obj.set(&URL, None);
    }
    if let Some(referer) = referer.filter(|r| !r.is_empty()) {
        if obj.slot(&URL).is_none() {
            obj.set(&URL, Some(Slot::Str(Cow::Borrowed(referer))));
        }
    }
    let kind = match get_str(&obj, &TYPE)? {
        None => BeaconKind::Pageview,
        Some(name) => BeaconKind::from_name(name).ok_or(bad(TYPE.invalid))?,
    };
    if !matches!(kind, BeaconKind::Pageview | BeaconKind::Event) {
        return Err(bad("type: not allowed on GET"));
    }
    validate(kind, &obj)
}

/// `Origin` (or, without it, `Referer`) must name a host that `is_site_host` accepts.
///
/// The collect endpoint is reachable from anywhere, and a beacon can be posted by a page of
/// any site (`sendBeacon` and `<img>` need no CORS permission), carrying the visitor's
/// cookies. Without this check another site could forge page views, events or form
/// identifications in the name of our visitors. Browsers send `Origin` on POSTs; `null`
/// (sandboxed frames, `file:`) and its absence fall back to `Referer`, which the GET pixel
/// relies on. A request with neither is refused: a real browser on the site sends at least one.
///
/// `is_site_host` gets what a `Host` header would carry: the lower-cased host plus `:port`
/// when the URL names a non-default port (`shop.test:8080`, `[::1]:8080`, `shop.test`).
/// Only http(s) origins can be the site's.
pub fn check_origin(
    origin: Option<&str>,
    referer: Option<&str>,
    is_site_host: impl Fn(&str) -> bool,
) -> Result<(), Rejection> {
    let origin = origin.filter(|o| o.trim() != "null");
    let (header, foreign) = match (origin, referer) {
        (Some(origin), _) => (origin, FOREIGN_ORIGIN),
        (None, Some(referer)) => (referer, FOREIGN_REFERER),
        (None, None) => return Err(ORIGIN_REQUIRED),
    };
    match header_authority(header) {
        Some(host) if is_site_host(&host) => Ok(()),
        _ => Err(foreign),
    }
}

/// A transparent 1×1 GIF, the answer to the pixel.
pub const PIXEL_GIF: &[u8] = &[
    b'G', b'I', b'F', b'8', b'9', b'a', // signature and version
    0x01, 0x00, 0x01, 0x00, // 1×1
    0x80, 0x00, 0x00, // global colour table of two entries
    0x00, 0x00, 0x00, 0xff, 0xff, 0xff, // black, white
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, // colour 0 is transparent
    0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, // image at 0,0, 1×1
    0x02, 0x02, 0x44, 0x01, 0x00, // LZW data: one pixel of colour 0
    0x3b, // trailer
];

/// Only JSON sent as JSON or as `sendBeacon`'s text, and only in UTF-8: anything else (a
/// form post, say) is not the tracker.
fn check_content_type(content_type: Option<&str>) -> Result<(), Rejection> {
    let mut parts = content_type.ok_or(UNSUPPORTED_TYPE)?.split(';');
    let mime = parts.next().unwrap_or_default().trim();
    if !mime.eq_ignore_ascii_case("text/plain") && !mime.eq_ignore_ascii_case("application/json") {
        return Err(UNSUPPORTED_TYPE);
    }
    for param in parts {
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        if !key.trim().eq_ignore_ascii_case("charset") {
            continue;
        }
        let charset = value.trim().trim_matches('"');
        if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
            return Err(UNSUPPORTED_CHARSET);
        }
    }
    Ok(())
}

/// The beacon's `type`.
fn kind(obj: &Fields) -> Result<BeaconKind, Rejection> {
    let name = get_str(obj, &TYPE)?.ok_or(bad(TYPE.required))?;
    BeaconKind::from_name(name).ok_or(bad(TYPE.invalid))
}

/// Every field in table order (so the first bad one in that order is reported), then the
/// fields the kind requires.
fn validate(kind: BeaconKind, obj: &Fields) -> Result<Beacon, Rejection> {
    let beacon = Beacon {
        kind,
        url: page_url(obj)?,
        referrer: referrer(obj)?,
        title: title(obj)?,
        screen: screen(obj)?,
        lang: lang(obj)?,
        engaged_ms: engaged_ms(obj)?,
        name: name(obj)?,
        props_json: props(obj)?,
        target: target(obj)?,
        email: email(obj)?,
        fields: fields(obj)?,
        consent: consent(obj)?,
        hosts: hosts(obj)?,
    };
    let missing = match kind {
        BeaconKind::Engagement if beacon.engaged_ms.is_none() => Some(&ENGAGED_MS),
        BeaconKind::Event if beacon.name.is_none() => Some(&NAME),
        BeaconKind::Outbound if beacon.target.is_none() => Some(&TARGET),
        BeaconKind::Consent if beacon.consent.is_none() => Some(&CONSENT),
        _ => None,
    };
    match missing {
        Some(field) => Err(bad(field.required)),
        None => Ok(beacon),
    }
}

/// A field that is not a string; `null` counts as absent (a tracker may well send
/// `"title": null`).
fn get<'a>(obj: &'a Fields, field: &Field) -> Result<Option<&'a Value>, Rejection> {
    match obj.slot(field) {
        None => Ok(None),
        Some(Slot::Other(v)) => Ok(Some(v)),
        Some(Slot::Str(_)) => Err(bad(field.wrong_type)),
    }
}

fn get_str<'a>(obj: &'a Fields, field: &Field) -> Result<Option<&'a str>, Rejection> {
    match obj.slot(field) {
        None => Ok(None),
        Some(Slot::Str(s)) => Ok(Some(s)),
        Some(Slot::Other(_)) => Err(bad(field.wrong_type)),
    }
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Text of 1..=`max` characters without control characters.
fn check_text(s: &str, field: &Field, max: usize) -> Result<(), Rejection> {
    if s.is_empty() {
        Err(bad(field.empty))
    } else if has_control(s) {
        Err(bad(field.control))
    } else if s.chars().count() > max {
        Err(bad(field.too_long))
    } else {
        Ok(())
    }
}

/// An absolute URL of any scheme. Control characters are refused before parsing because the
/// parser would silently drop tabs and line breaks, accepting a URL the browser never had.
fn absolute_url(s: &str, field: &Field) -> Result<Url, Rejection> {
    if s.len() > MAX_URL {
        return Err(bad(field.too_long));
    }
    if has_control(s) {
        return Err(bad(field.control));
    }
    let url = Url::parse(s).map_err(|_| bad(field.invalid))?;
    if url.as_str().len() > MAX_URL {
        return Err(bad(field.too_long));
    }
    Ok(url)
}

/// An absolute http(s) URL with a host.
fn http_url(s: &str, field: &Field) -> Result<Url, Rejection> {
    let url = absolute_url(s, field)?;
    let web = matches!(url.scheme(), "http" | "https");
    if !web || url.host_str().is_none_or(str::is_empty) {
        return Err(bad(field.invalid));
    }
    Ok(url)
}

fn page_url(obj: &Fields) -> Result<Url, Rejection> {
    let raw = get_str(obj, &URL)?.ok_or(bad(URL.required))?;
    http_url(raw, &URL)
}

/// Any absolute URL: apps refer with their own schemes (`android-app://…`).
fn referrer(obj: &Fields) -> Result<Option<String>, Rejection> {
    match get_str(obj, &REFERRER)? {
        None | Some("") => Ok(None),
        Some(raw) => absolute_url(raw, &REFERRER).map(|u| Some(u.into())),
    }
}

/// Line breaks and tabs become spaces: DOM titles often contain them and refusing the page
/// view over it would lose real traffic.
fn title(obj: &Fields) -> Result<Option<String>, Rejection> {
    let Some(raw) = get_str(obj, &TITLE)? else {
        return Ok(None);
    };
    let spaced: String = raw
        .chars()
        .map(|c| {
            if matches!(c, '\t' | '\n' | '\r') {
                ' '
            } else {
                c
            }
        })
        .collect();
    let title = spaced.trim();
    if title.is_empty() {
        return Ok(None);
    }
    check_text(title, &TITLE, MAX_TITLE)?;
    Ok(Some(title.to_owned()))
}

/// `WxH`, each 1–5 ASCII digits.
fn screen(obj: &Fields) -> Result<Option<String>, Rejection> {
    let Some(raw) = get_str(obj, &SCREEN)? else {
        return Ok(None);
    };
    let dimension = |d: &str| (1..=5).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit());
    match raw.split_once('x') {
        Some((w, h)) if dimension(w) && dimension(h) => Ok(Some(raw.to_owned())),
        _ => Err(bad(SCREEN.invalid)),
    }
}

/// A language tag as `navigator.language` gives it; not checked against BCP 47 beyond its
/// alphabet.
fn lang(obj: &Fields) -> Result<Option<String>, Rejection> {
    let Some(raw) = get_str(obj, &LANG)? else {
        return Ok(None);
    };
    if raw.is_empty() {
        Err(bad(LANG.empty))
    } else if raw.len() > MAX_LANG {
        Err(bad(LANG.too_long))
    } else if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Err(bad(LANG.invalid))
    } else {
        Ok(Some(raw.to_owned()))
    }
}

/// A whole number of milliseconds (`1500.5` and `"1500"` are refused).
fn engaged_ms(obj: &Fields) -> Result<Option<i64>, Rejection> {
    let Some(value) = get(obj, &ENGAGED_MS)? else {
        return Ok(None);
    };
    let ms = match value.as_i64() {
        Some(ms) => ms,
        // an integer beyond i64 is still an integer, just out of range
        None if value.is_u64() => return Err(bad(ENGAGED_MS.invalid)),
        None => return Err(bad(ENGAGED_MS.wrong_type)),
    };
    if (0..=MAX_ENGAGED_MS).contains(&ms) {
        Ok(Some(ms))
    } else {
        Err(bad(ENGAGED_MS.invalid))
    }
}

/// Kept exactly as sent (not trimmed): it is the site's own identifier.
fn name(obj: &Fields) -> Result<Option<String>, Rejection> {
    let Some(raw) = get_str(obj, &NAME)? else {
        return Ok(None);
    };
    check_text(raw, &NAME, MAX_NAME)?;
    Ok(Some(raw.to_owned()))
}

/// A flat object, re-serialised compactly so the store gets bounded, well-formed JSON.
fn props(obj: &Fields) -> Result<Option<String>, Rejection> {
    let Some(value) = get(obj, &PROPS)? else {
        return Ok(None);
    };
    let Value::Object(map) = value else {
        return Err(bad(PROPS.wrong_type));
    };
    if map.len() > MAX_PROPS {
        return Err(bad(PROPS.too_many));
    }
    for (key, value) in map {
        check_prop_key(key)?;
        check_prop_value(value)?;
    }
    if map.is_empty() {
        return Ok(None);
    }
    let json = value.to_string();
    if json.len() > MAX_PROPS_JSON {
        return Err(bad("props: too large"));
    }
    Ok(Some(json))
}

fn check_prop_key(key: &str) -> Result<(), Rejection> {
    if key.is_empty() {
        Err(bad("props: empty key"))
    } else if has_control(key) {
        Err(bad(PROPS.control))
    } else if key.chars().count() > MAX_PROP_KEY {
        Err(bad("props: key too long"))
    } else {
        Ok(())
    }
}

/// Scalars only: nested values would make the stored text unbounded in shape and useless to
/// the flat reports built on it.
fn check_prop_value(value: &Value) -> Result<(), Rejection> {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
        Value::String(s) if has_control(s) => Err(bad(PROPS.control)),
        Value::String(s) if s.chars().count() > MAX_PROP_VALUE => Err(bad("props: value too long")),
        Value::String(_) => Ok(()),
        Value::Array(_) | Value::Object(_) => Err(bad(PROPS.invalid)),
    }
}

/// The link target of an outbound click.
fn target(obj: &Fields) -> Result<Option<String>, Rejection> {
    match get_str(obj, &TARGET)? {
        None => Ok(None),
        Some(raw) => http_url(raw, &TARGET).map(|u| Some(u.into())),
    }
}

/// Only bounded and clean here; whether it is an address at all is the store's call, where it
/// is normalised.
fn email(obj: &Fields) -> Result<Option<String>, Rejection> {
    let Some(raw) = get_str(obj, &EMAIL)? else {
        return Ok(None);
    };
    let email = raw.trim();
    if email.is_empty() {
        return Ok(None);
    }
    check_text(email, &EMAIL, MAX_EMAIL)?;
    Ok(Some(email.to_owned()))
}

/// An array of at most `max` strings (absent: empty).
fn string_list<'a>(obj: &'a Fields, field: &Field, max: usize) -> Result<Vec<&'a str>, Rejection> {
    let Some(value) = get(obj, field)? else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        return Err(bad(field.wrong_type));
    };
    if items.len() > max {
        return Err(bad(field.too_many));
    }
    items
        .iter()
        .map(|item| item.as_str().ok_or(bad(field.wrong_type)))
        .collect()
}

/// Form field names, in the order sent.
fn fields(obj: &Fields) -> Result<Vec<String>, Rejection> {
    string_list(obj, &FIELDS, MAX_FIELDS)?
        .into_iter()
        .map(|name| check_text(name, &FIELDS, MAX_FIELD_NAME).map(|()| name.to_owned()))
        .collect()
}

fn consent(obj: &Fields) -> Result<Option<bool>, Rejection> {
    match get(obj, &CONSENT)? {
        None => Ok(None),
        Some(value) => value.as_bool().map(Some).ok_or(bad(CONSENT.wrong_type)),
    }
}

/// Hosts as `link.host` gives them (with a port when the link has one), lower-cased and
/// deduplicated in order. Only their alphabet is checked: they are looked up among the
/// configured sites, never used to build anything.
fn hosts(obj: &Fields) -> Result<Vec<String>, Rejection> {
    let mut hosts: Vec<String> = Vec::new();
    for raw in string_list(obj, &HOSTS, MAX_HOSTS)? {
        let host = raw.to_ascii_lowercase();
        if host.is_empty() {
            return Err(bad(HOSTS.empty));
        }
        if host.len() > MAX_HOST {
            return Err(bad(HOSTS.too_long));
        }
        let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-:[]".contains(&b);
        if !host.bytes().all(allowed) {
            return Err(bad(HOSTS.invalid));
        }
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map};

    use super::*;

    const SENDBEACON: Option<&str> = Some("text/plain;charset=UTF-8");

    fn post(value: Value) -> Result<Beacon, Rejection> {
        parse_body(SENDBEACON, value.to_string().as_bytes())
    }

    /// The status and reason of a beacon that must be refused.
    fn refused(value: Value) -> (u16, &'static str) {
        match post(value) {
            Ok(b) => panic!("accepted: {b:?}"),
            Err(r) => (r.status, r.reason),
        }
    }

    /// A minimal beacon of `kind` on the shop's home page, plus `extra` fields.
    fn beacon(kind: &str, extra: Value) -> Value {
        let mut value = json!({"type": kind, "url": "https://shop.test/"});
        for (k, v) in extra.as_object().unwrap() {
            value[k] = v.clone();
        }
        value
    }

    fn pageview(extra: Value) -> Value {
        beacon("pageview", extra)
    }

    /// What a beacon of `kind` with nothing but `url` parses to.
    fn bare(kind: BeaconKind, url: &str) -> Beacon {
        Beacon {
            kind,
            url: Url::parse(url).unwrap(),
            referrer: None,
            title: None,
            screen: None,
            lang: None,
            engaged_ms: None,
            name: None,
            props_json: None,
            target: None,
            email: None,
            fields: Vec::new(),
            consent: None,
            hosts: Vec::new(),
        }
    }

    fn parsed_url(url: &str) -> Beacon {
        post(json!({"type": "pageview", "url": url})).unwrap()
    }

    // --- content type, size, encoding, JSON ---

    #[test]
    fn accepts_the_tracker_content_types() {
        let body = pageview(json!({})).to_string();
        for ct in [
            "text/plain;charset=UTF-8",
            "text/plain",
            "application/json",
            "Application/JSON; charset=utf-8",
            "TEXT/PLAIN; Charset=\"UTF-8\"",
            "text/plain;charset=utf8",
        ] {
            let b = parse_body(Some(ct), body.as_bytes()).unwrap();
            assert_eq!(b.kind, BeaconKind::Pageview, "{ct}");
        }
    }

    #[test]
    fn refuses_other_content_types_with_415() {
        let body = pageview(json!({})).to_string();
        let cases = [
            (None, "unsupported content type"),
            (Some(""), "unsupported content type"),
            (Some("text/html"), "unsupported content type"),
            (
                Some("application/x-www-form-urlencoded"),
                "unsupported content type",
            ),
            (Some("text/plainer"), "unsupported content type"),
            (Some("text/plain;charset=iso-8859-1"), "unsupported charset"),
            (
                Some("application/json; charset=utf-16"),
                "unsupported charset",
            ),
        ];
        for (ct, reason) in cases {
            let r = parse_body(ct, body.as_bytes()).unwrap_err();
            assert_eq!((r.status, r.reason), (415, reason), "{ct:?}");
        }
    }

    #[test]
    fn body_size_limit_is_16_kib() {
        let fill = |len: usize| {
            let head = pageview(json!({})).to_string();
            let mut body = head.clone();
            body.insert_str(1, &" ".repeat(len - head.len()));
            body
        };
        let exact = fill(MAX_BODY);
        assert_eq!(exact.len(), MAX_BODY);
        assert!(parse_body(SENDBEACON, exact.as_bytes()).is_ok());

        let over = fill(MAX_BODY + 1);
        let r = parse_body(SENDBEACON, over.as_bytes()).unwrap_err();
        assert_eq!((r.status, r.reason), (413, "body too large"));

        let megabyte = vec![b'a'; 1 << 20];
        let r = parse_body(SENDBEACON, &megabyte).unwrap_err();
        assert_eq!((r.status, r.reason), (413, "body too large"));
    }

    #[test]
    fn invalid_utf8_is_400() {
        let body = b"{\"type\":\"pageview\",\"url\":\"https://shop.test/\xff\"}";
        let r = parse_body(SENDBEACON, body).unwrap_err();
        assert_eq!((r.status, r.reason), (400, "invalid utf-8"));
    }

    #[test]
    fn malformed_json_is_400() {
        for (body, reason) in [
            ("", "invalid json"),
            ("{", "invalid json"),
            ("{\"type\":'pageview'}", "invalid json"),
            ("[]", "not a JSON object"),
            ("\"pageview\"", "not a JSON object"),
            ("null", "not a JSON object"),
        ] {
            let r = parse_body(SENDBEACON, body.as_bytes()).unwrap_err();
            assert_eq!((r.status, r.reason), (400, reason), "{body:?}");
        }
    }

    // --- type and url ---

    #[test]
    fn type_is_required_and_known() {
        let url = "https://shop.test/";
        assert_eq!(refused(json!({"url": url})), (400, "type: required"));
        assert_eq!(
            refused(json!({"type": null, "url": url})),
            (400, "type: required")
        );
        assert_eq!(
            refused(json!({"type": 1, "url": url})),
            (400, "type: must be a string")
        );
        assert_eq!(
            refused(json!({"type": "click", "url": url})),
            (400, "type: unknown")
        );
        assert_eq!(
            refused(json!({"type": "PAGEVIEW", "url": url})),
            (400, "type: unknown")
        );
    }

    #[test]
    fn url_must_be_absolute_http() {
        assert_eq!(refused(json!({"type": "pageview"})), (400, "url: required"));
        assert_eq!(
            refused(json!({"type": "pageview", "url": 5})),
            (400, "url: must be a string")
        );
        for bad_url in [
            "",
            "/relative",
            "shop.test/page",
            "ftp://shop.test/",
            "javascript:alert(1)",
            "http://",
        ] {
            assert_eq!(
                refused(json!({"type": "pageview", "url": bad_url})),
                (400, "url: must be an absolute http(s) URL"),
                "{bad_url:?}"
            );
        }
        assert_eq!(
            refused(json!({"type": "pageview", "url": "https://shop.test/\na"})),
            (400, "url: control characters")
        );
    }

    #[test]
    fn url_is_capped_at_2048_bytes() {
        let base = "https://shop.test/";
        let at_limit = format!("{base}{}", "a".repeat(MAX_URL - base.len()));
        assert_eq!(parsed_url(&at_limit).url.as_str(), at_limit);
        let over = format!("{at_limit}a");
        assert_eq!(
            refused(json!({"type": "pageview", "url": over})),
            (400, "url: too long")
        );
        // short as sent, but percent-encoding makes it longer than the limit
        let spaces = format!("{base}{}", "a b".repeat(500));
        assert!(spaces.len() < MAX_URL);
        assert_eq!(
            refused(json!({"type": "pageview", "url": spaces})),
            (400, "url: too long")
        );
    }

    // --- pageview fields ---

    #[test]
    fn referrer_accepts_any_absolute_url_and_empty() {
        let r = |v: Value| post(pageview(json!({ "referrer": v })));
        assert_eq!(r(json!("")).unwrap().referrer, None);
        assert_eq!(r(json!(null)).unwrap().referrer, None);
        assert_eq!(
            r(json!("https://www.google.com/"))
                .unwrap()
                .referrer
                .as_deref(),
            Some("https://www.google.com/")
        );
        assert_eq!(
            r(json!("android-app://com.google.android.gm/"))
                .unwrap()
                .referrer
                .as_deref(),
            Some("android-app://com.google.android.gm/")
        );
        assert_eq!(
            refused(pageview(json!({"referrer": "google"}))),
            (400, "referrer: must be an absolute URL")
        );
        assert_eq!(
            refused(pageview(json!({"referrer": 1}))),
            (400, "referrer: must be a string")
        );
        let long = format!("https://a.test/{}", "x".repeat(MAX_URL));
        assert_eq!(
            refused(pageview(json!({ "referrer": long }))),
            (400, "referrer: too long")
        );
    }

    #[test]
    fn title_line_breaks_become_spaces() {
        let b = post(pageview(json!({"title": "\n  Shop\tHome\r\n"}))).unwrap();
        assert_eq!(b.title.as_deref(), Some("Shop Home"));
        let b = post(pageview(json!({"title": " \n "}))).unwrap();
        assert_eq!(b.title, None);
    }

    #[test]
    fn title_limits() {
        // characters, not bytes: 512 two-byte letters fit
        let polish = "ż".repeat(MAX_TITLE);
        let b = post(pageview(json!({ "title": polish }))).unwrap();
        assert_eq!(b.title.as_deref(), Some(polish.as_str()));
        assert_eq!(
            refused(pageview(json!({ "title": "a".repeat(MAX_TITLE + 1) }))),
            (400, "title: too long")
        );
        assert_eq!(
            refused(pageview(json!({"title": "bell\u{7}"}))),
            (400, "title: control characters")
        );
        assert_eq!(
            refused(pageview(json!({"title": ["a"]}))),
            (400, "title: must be a string")
        );
    }

    #[test]
    fn screen_is_w_x_h() {
        let b = post(pageview(json!({"screen": "1920x1080"}))).unwrap();
        assert_eq!(b.screen.as_deref(), Some("1920x1080"));
        assert!(post(pageview(json!({"screen": "99999x1"}))).is_ok());
        for bad_screen in [
            "",
            "1920X1080",
            "1920 x 1080",
            "123456x1",
            "x1080",
            "1920x",
            "1x2x3",
            "-1x5",
            "１x1",
        ] {
            assert_eq!(
                refused(pageview(json!({ "screen": bad_screen }))),
                (400, "screen: must be WxH"),
                "{bad_screen:?}"
            );
        }
        assert_eq!(
            refused(pageview(json!({"screen": 1920}))),
            (400, "screen: must be a string")
        );
    }

    #[test]
    fn lang_alphabet_and_length() {
        let b = post(pageview(json!({"lang": "pl-PL"}))).unwrap();
        assert_eq!(b.lang.as_deref(), Some("pl-PL"));
        let longest = "a".repeat(MAX_LANG);
        assert!(post(pageview(json!({ "lang": longest }))).is_ok());
        assert_eq!(refused(pageview(json!({"lang": ""}))), (400, "lang: empty"));
        assert_eq!(
            refused(pageview(json!({ "lang": "a".repeat(MAX_LANG + 1) }))),
            (400, "lang: too long")
        );
        for bad_lang in ["en_US", "en US", "zh-漢"] {
            assert_eq!(
                refused(pageview(json!({ "lang": bad_lang }))),
                (400, "lang: must be A-Za-z0-9-"),
                "{bad_lang:?}"
            );
        }
    }

    #[test]
    fn hosts_are_lower_cased_and_deduplicated() {
        let b = post(pageview(json!({
            "hosts": ["Blog.Test:8080", "shop.test", "blog.test:8080", "[::1]:3000", "SHOP.TEST"]
        })))
        .unwrap();
        assert_eq!(b.hosts, ["blog.test:8080", "shop.test", "[::1]:3000"]);
        assert_eq!(
            post(pageview(json!({"hosts": null}))).unwrap().hosts.len(),
            0
        );
    }

    #[test]
    fn hosts_limits() {
        let many: Vec<String> = (0..=MAX_HOSTS).map(|i| format!("h{i}.test")).collect();
        assert_eq!(
            refused(pageview(json!({ "hosts": many }))),
            (400, "hosts: too many")
        );
        for bad_host in ["blog.test/path", "blog test", "user@blog.test", "bløg.test"] {
            assert_eq!(
                refused(pageview(json!({ "hosts": [bad_host] }))),
                (400, "hosts: must be host names"),
                "{bad_host:?}"
            );
        }
        assert_eq!(
            refused(pageview(json!({"hosts": [""]}))),
            (400, "hosts: empty")
        );
        assert_eq!(
            refused(pageview(json!({ "hosts": ["a".repeat(MAX_HOST + 1)] }))),
            (400, "hosts: too long")
        );
        assert_eq!(
            refused(pageview(json!({"hosts": "blog.test"}))),
            (400, "hosts: must be an array of strings")
        );
        assert_eq!(
            refused(pageview(json!({"hosts": [1]}))),
            (400, "hosts: must be an array of strings")
        );
    }

    #[test]
    fn unknown_fields_are_ignored_and_null_is_absent() {
        let b = post(pageview(json!({
            "future": {"nested": [1, 2]},
            "title": null,
            "engaged_ms": null,
        })))
        .unwrap();
        assert_eq!(b, bare(BeaconKind::Pageview, "https://shop.test/"));
    }

    /// Each field's slot is its own.
    #[test]
    fn every_field_has_its_own_slot() {
        for (i, field) in FIELDS_ALL.iter().enumerate() {
            assert_eq!(field.id, i, "{}", field.name);
        }
    }

    /// The typed reading gives what a JSON object would: the last of a repeated key wins
    /// (also when it is `null`), escaped keys and values are decoded, and an unknown field's
    /// value is skipped whatever it holds.
    #[test]
    fn repeated_and_escaped_keys_read_like_a_json_object() {
        let body = r#"{"type":"pageview","url":"https://shop.test/",
            "title":"first","title":"second",
            "lang":"en","lang":null,
            "ur\u006c":"https://shop.test/p\u00e9",
            "future":{"deep":[[[{"x":"\u0000"}]]]}}"#;
        let b = parse_body(SENDBEACON, body.as_bytes()).unwrap();
        assert_eq!(b.title.as_deref(), Some("second"));
        assert_eq!(b.lang, None);
        assert_eq!(b.url.as_str(), "https://shop.test/p%C3%A9");
        let engaged =
            r#"{"type":"engagement","url":"https://shop.test/","engaged_ms":"5","engaged_ms":5}"#;
        assert_eq!(
            parse_body(SENDBEACON, engaged.as_bytes())
                .unwrap()
                .engaged_ms,
            Some(5)
        );
        let string_last =
            r#"{"type":"engagement","url":"https://shop.test/","engaged_ms":5,"engaged_ms":"5"}"#;
        let r = parse_body(SENDBEACON, string_last.as_bytes()).unwrap_err();
        assert_eq!(r.reason, "engaged_ms: must be an integer");
    }

    #[test]
    fn fields_of_other_kinds_are_validated_and_kept() {
        let b = post(pageview(json!({"name": "signup"}))).unwrap();
        assert_eq!(b.name.as_deref(), Some("signup"));
        assert_eq!(
            refused(pageview(json!({"engaged_ms": -5}))),
            (400, "engaged_ms: out of range")
        );
    }

    // --- engagement ---

    #[test]
    fn engaged_ms_range_and_type() {
        let e = |v: Value| post(beacon("engagement", json!({ "engaged_ms": v })));
        assert_eq!(e(json!(0)).unwrap().engaged_ms, Some(0));
        assert_eq!(e(json!(86_400_000)).unwrap().engaged_ms, Some(86_400_000));
        for (v, reason) in [
            (json!(-1), "engaged_ms: out of range"),
            (json!(86_400_001), "engaged_ms: out of range"),
            (json!(u64::MAX), "engaged_ms: out of range"),
            (json!(1500.5), "engaged_ms: must be an integer"),
            (json!("1500"), "engaged_ms: must be an integer"),
            (json!(true), "engaged_ms: must be an integer"),
        ] {
            let r = e(v.clone()).unwrap_err();
            assert_eq!((r.status, r.reason), (400, reason), "{v}");
        }
        assert_eq!(
            refused(beacon("engagement", json!({}))),
            (400, "engaged_ms: required")
        );
    }

    // --- event ---

    #[test]
    fn event_name_is_required_and_bounded() {
        assert_eq!(refused(beacon("event", json!({}))), (400, "name: required"));
        assert_eq!(
            refused(beacon("event", json!({"name": ""}))),
            (400, "name: empty")
        );
        assert_eq!(
            refused(beacon("event", json!({ "name": "n".repeat(MAX_NAME + 1) }))),
            (400, "name: too long")
        );
        assert_eq!(
            refused(beacon("event", json!({"name": "a\u{0}b"}))),
            (400, "name: control characters")
        );
        assert_eq!(
            refused(beacon("event", json!({"name": 7}))),
            (400, "name: must be a string")
        );
        let longest = "n".repeat(MAX_NAME);
        let b = post(beacon("event", json!({ "name": longest }))).unwrap();
        assert_eq!(b.name, Some(longest));
    }

    #[test]
    fn props_are_stored_as_compact_json() {
        let b = post(beacon(
            "event",
            json!({"name": "buy", "props": {"a": "x", "b": 1.5, "c": true, "d": null}}),
        ))
        .unwrap();
        assert_eq!(
            b.props_json.as_deref(),
            Some(r#"{"a":"x","b":1.5,"c":true,"d":null}"#)
        );
        let b = post(beacon("event", json!({"name": "buy", "props": {}}))).unwrap();
        assert_eq!(b.props_json, None);
    }

    #[test]
    fn a_long_number_is_stored_as_the_closest_double() {
        // 1.00000000007000000001e99 written out in full: an inexact float parser rounds it
        // one ulp off, and its stored text then reads back as yet another value.
        let digits = format!("100000000007000000001{}", "0".repeat(79));
        let body = format!(
            r#"{{"type":"event","url":"http://shop.example/","name":"n","props":{{"a":{digits}}}}}"#
        );
        let b = parse_body(SENDBEACON, body.as_bytes()).unwrap();
        let stored = b.props_json.unwrap();
        assert_eq!(stored, r#"{"a":1.00000000007e+99}"#);
        // The same body read whole as JSON holds the same number.
        let whole: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(whole["props"].to_string(), stored);
        let again = format!(
            r#"{{"type":"event","url":"http://shop.example/","name":"n","props":{stored}}}"#
        );
        let b = parse_body(SENDBEACON, again.as_bytes()).unwrap();
        assert_eq!(b.props_json.as_deref(), Some(stored.as_str()));
    }

    #[test]
    fn props_must_be_flat_and_small() {
        let ev = |props: Value| refused(beacon("event", json!({"name": "buy", "props": props})));
        assert_eq!(
            ev(json!({"a": {"b": 1}})),
            (400, "props: nested values not allowed")
        );
        assert_eq!(
            ev(json!({"a": [1]})),
            (400, "props: nested values not allowed")
        );
        assert_eq!(ev(json!([1])), (400, "props: must be an object"));
        assert_eq!(ev(json!("a=1")), (400, "props: must be an object"));

        let many: Map<String, Value> = (0..=MAX_PROPS)
            .map(|i| (format!("k{i}"), json!(i)))
            .collect();
        assert_eq!(ev(Value::Object(many)), (400, "props: too many"));

        assert_eq!(ev(json!({"": 1})), (400, "props: empty key"));
        let long_key = "k".repeat(MAX_PROP_KEY + 1);
        assert_eq!(ev(json!({ long_key: 1 })), (400, "props: key too long"));
        assert_eq!(
            ev(json!({"a": "v".repeat(MAX_PROP_VALUE + 1)})),
            (400, "props: value too long")
        );
        assert_eq!(
            ev(json!({"a": "line\nbreak"})),
            (400, "props: control characters")
        );
        assert_eq!(
            ev(json!({"a\u{1b}": 1})),
            (400, "props: control characters")
        );

        // each value within limits, together over 2048 bytes
        let big: Map<String, Value> = (0..10)
            .map(|i| (format!("k{i}"), json!("v".repeat(MAX_PROP_VALUE))))
            .collect();
        assert_eq!(ev(Value::Object(big)), (400, "props: too large"));
    }

    // --- outbound ---

    #[test]
    fn outbound_target_is_required_http_url() {
        assert_eq!(
            refused(beacon("outbound", json!({}))),
            (400, "target: required")
        );
        assert_eq!(
            refused(beacon("outbound", json!({"target": "/local"}))),
            (400, "target: must be an absolute http(s) URL")
        );
        assert_eq!(
            refused(beacon("outbound", json!({"target": "mailto:a@b.test"}))),
            (400, "target: must be an absolute http(s) URL")
        );
        let long = format!("https://a.test/{}", "x".repeat(MAX_URL));
        assert_eq!(
            refused(beacon("outbound", json!({ "target": long }))),
            (400, "target: too long")
        );
    }

    // --- form ---

    #[test]
    fn form_email_is_trimmed_and_optional() {
        let f = |extra: Value| post(beacon("form", extra)).unwrap();
        assert_eq!(
            f(json!({"email": "  Ann@Example.TEST \n"}))
                .email
                .as_deref(),
            Some("Ann@Example.TEST")
        );
        assert_eq!(f(json!({"email": "   "})).email, None);
        assert_eq!(f(json!({})).email, None);
        // format is the store's business
        assert_eq!(
            f(json!({"email": "not an address"})).email.as_deref(),
            Some("not an address")
        );
        assert_eq!(
            refused(beacon(
                "form",
                json!({ "email": "a".repeat(MAX_EMAIL + 1) })
            )),
            (400, "email: too long")
        );
        assert_eq!(
            refused(beacon("form", json!({"email": "a\u{0}@b.test"}))),
            (400, "email: control characters")
        );
        assert_eq!(
            refused(beacon("form", json!({"email": ["a@b.test"]}))),
            (400, "email: must be a string")
        );
    }

    #[test]
    fn form_fields_are_bounded_names() {
        let b = post(beacon(
            "form",
            json!({"fields": ["email", "name", "email"]}),
        ))
        .unwrap();
        assert_eq!(b.fields, ["email", "name", "email"]);
        let many: Vec<String> = (0..=MAX_FIELDS).map(|i| format!("f{i}")).collect();
        assert_eq!(
            refused(beacon("form", json!({ "fields": many }))),
            (400, "fields: too many")
        );
        assert_eq!(
            refused(beacon("form", json!({"fields": [""]}))),
            (400, "fields: empty")
        );
        assert_eq!(
            refused(beacon(
                "form",
                json!({ "fields": ["f".repeat(MAX_FIELD_NAME + 1)] })
            )),
            (400, "fields: too long")
        );
        assert_eq!(
            refused(beacon("form", json!({"fields": [{"name": "email"}]}))),
            (400, "fields: must be an array of strings")
        );
        assert_eq!(
            refused(beacon("form", json!({"fields": "email"}))),
            (400, "fields: must be an array of strings")
        );
    }

    // --- consent ---

    #[test]
    fn consent_is_a_required_bool() {
        let c = |v: Value| post(beacon("consent", json!({ "consent": v })));
        assert_eq!(c(json!(true)).unwrap().consent, Some(true));
        assert_eq!(c(json!(false)).unwrap().consent, Some(false));
        let r = c(json!("true")).unwrap_err();
        assert_eq!((r.status, r.reason), (400, "consent: must be a boolean"));
        let r = c(json!(null)).unwrap_err();
        assert_eq!((r.status, r.reason), (400, "consent: required"));
    }

    // --- every kind round-trips ---

    #[test]
    fn good_beacons_of_every_kind_round_trip() {
        let url = "https://shop.test/p?utm_source=news";
        let cases = [
            (
                json!({"type": "pageview", "url": url, "referrer": "https://www.google.com/",
                       "title": "Product", "screen": "390x844", "lang": "en-GB",
                       "hosts": ["blog.test"]}),
                Beacon {
                    referrer: Some("https://www.google.com/".into()),
                    title: Some("Product".into()),
                    screen: Some("390x844".into()),
                    lang: Some("en-GB".into()),
                    hosts: vec!["blog.test".into()],
                    ..bare(BeaconKind::Pageview, url)
                },
            ),
            (
                json!({"type": "engagement", "url": url, "engaged_ms": 12_345}),
                Beacon {
                    engaged_ms: Some(12_345),
                    ..bare(BeaconKind::Engagement, url)
                },
            ),
            (
                json!({"type": "event", "url": url, "name": "add_to_cart",
                       "props": {"sku": "A-1", "qty": 2}}),
                Beacon {
                    name: Some("add_to_cart".into()),
                    props_json: Some(r#"{"qty":2,"sku":"A-1"}"#.into()),
                    ..bare(BeaconKind::Event, url)
                },
            ),
            (
                json!({"type": "outbound", "url": url, "target": "https://partner.test/x"}),
                Beacon {
                    target: Some("https://partner.test/x".into()),
                    ..bare(BeaconKind::Outbound, url)
                },
            ),
            (
                json!({"type": "form", "url": url, "email": "ann@example.test",
                       "fields": ["email", "company"]}),
                Beacon {
                    email: Some("ann@example.test".into()),
                    fields: vec!["email".into(), "company".into()],
                    ..bare(BeaconKind::Form, url)
                },
            ),
            (
                json!({"type": "consent", "url": url, "consent": true}),
                Beacon {
                    consent: Some(true),
                    ..bare(BeaconKind::Consent, url)
                },
            ),
            (
                json!({"type": "link", "url": url, "hosts": ["blog.test", "docs.test:8443"]}),
                Beacon {
                    hosts: vec!["blog.test".into(), "docs.test:8443".into()],
                    ..bare(BeaconKind::Link, url)
                },
            ),
        ];
        for (body, expected) in cases {
            let got = parse_body(Some("application/json"), body.to_string().as_bytes());
            assert_eq!(got, Ok(expected), "{body}");
        }
        // every kind was covered
        for kind in BeaconKind::ALL {
            assert_eq!(BeaconKind::from_name(kind.as_str()), Some(kind));
        }
    }

    // --- GET pixel ---

    #[test]
    fn pixel_defaults_to_a_pageview_of_the_referer() {
        let b = parse_query("", Some("https://shop.test/about")).unwrap();
        assert_eq!(b, bare(BeaconKind::Pageview, "https://shop.test/about"));
    }

    #[test]
    fn pixel_reads_the_same_fields() {
        let q = "type=pageview&url=https%3A%2F%2Fshop.test%2Fa%3Futm_source%3Dmail\
                 &referrer=https%3A%2F%2Fsearch.test%2F&title=Hello+World\
                 &screen=1280x720&lang=de";
        let b = parse_query(q, Some("https://shop.test/other")).unwrap();
        assert_eq!(
            b,
            Beacon {
                referrer: Some("https://search.test/".into()),
                title: Some("Hello World".into()),
                screen: Some("1280x720".into()),
                lang: Some("de".into()),
                ..bare(BeaconKind::Pageview, "https://shop.test/a?utm_source=mail")
            }
        );
    }

    #[test]
    fn pixel_events_need_a_name() {
        let b = parse_query(
            "type=event&name=newsletter_open",
            Some("https://shop.test/"),
        )
        .unwrap();
        assert_eq!(b.kind, BeaconKind::Event);
        assert_eq!(b.name.as_deref(), Some("newsletter_open"));
        let r = parse_query("type=event", Some("https://shop.test/")).unwrap_err();
        assert_eq!((r.status, r.reason), (400, "name: required"));
    }

    #[test]
    fn pixel_refuses_other_types() {
        let referer = Some("https://shop.test/");
        for (q, reason) in [
            ("type=engagement&engaged_ms=5", "type: not allowed on GET"),
            ("type=consent&consent=true", "type: not allowed on GET"),
            ("type=form", "type: not allowed on GET"),
            ("type=bogus", "type: unknown"),
            ("type=", "type: unknown"),
        ] {
            let r = parse_query(q, referer).unwrap_err();
            assert_eq!((r.status, r.reason), (400, reason), "{q}");
        }
    }

    #[test]
    fn pixel_url_falls_back_to_referer() {
        let r = parse_query("type=pageview", None).unwrap_err();
        assert_eq!((r.status, r.reason), (400, "url: required"));
        let r = parse_query("url=", Some("")).unwrap_err();
        assert_eq!((r.status, r.reason), (400, "url: required"));
        // an explicit url wins; an empty one does not
        let b = parse_query("url=https://shop.test/x", Some("https://shop.test/y")).unwrap();
        assert_eq!(b.path(), "/x");
        let b = parse_query("url=", Some("https://shop.test/y")).unwrap();
        assert_eq!(b.path(), "/y");
        // the referer is validated like any url
        let r = parse_query("", Some("android-app://com.example/")).unwrap_err();
        assert_eq!(
            (r.status, r.reason),
            (400, "url: must be an absolute http(s) URL")
        );
    }

    #[test]
    fn pixel_ignores_body_only_fields_and_repeats() {
        let q = "title=first&title=second&props=%7B%22a%22%3A1%7D&email=a%40b.test\
                 &hosts=blog.test&engaged_ms=x";
        let b = parse_query(q, Some("https://shop.test/")).unwrap();
        assert_eq!(
            b,
            Beacon {
                title: Some("first".into()),
                ..bare(BeaconKind::Pageview, "https://shop.test/")
            }
        );
    }

    #[test]
    fn pixel_applies_the_body_limits() {
        let referer = Some("https://shop.test/");
        let q = format!("title={}", "t".repeat(MAX_TITLE + 1));
        let r = parse_query(&q, referer).unwrap_err();
        assert_eq!((r.status, r.reason), (400, "title: too long"));
        let r = parse_query("screen=big", referer).unwrap_err();
        assert_eq!((r.status, r.reason), (400, "screen: must be WxH"));
        let r = parse_query("type=event&name=a%07b", referer).unwrap_err();
        assert_eq!((r.status, r.reason), (400, "name: control characters"));
    }

    // --- origin ---

    fn shop(host: &str) -> bool {
        host == "shop.test" || host == "shop.test:8080"
    }

    fn origin(o: Option<&str>, r: Option<&str>) -> Result<(), (u16, &'static str)> {
        check_origin(o, r, shop).map_err(|r| (r.status, r.reason))
    }

    #[test]
    fn origin_of_the_site_passes() {
        assert_eq!(origin(Some("https://shop.test"), None), Ok(()));
        assert_eq!(origin(Some("HTTPS://SHOP.TEST"), None), Ok(()));
        assert_eq!(origin(Some("http://shop.test:8080"), None), Ok(()));
        // a default port is not part of the host, as in a Host header
        assert_eq!(origin(Some("https://shop.test:443"), None), Ok(()));
        // Origin decides; Referer is not consulted
        assert_eq!(
            origin(Some("https://shop.test"), Some("https://evil.test/")),
            Ok(())
        );
    }

    #[test]
    fn foreign_origin_is_403() {
        let foreign = Err((403, "foreign origin"));
        assert_eq!(origin(Some("https://evil.test"), None), foreign);
        assert_eq!(origin(Some("https://shop.test:9999"), None), foreign);
        assert_eq!(origin(Some("https://shop.test.evil.test"), None), foreign);
        assert_eq!(origin(Some("chrome-extension://shop.test"), None), foreign);
        assert_eq!(origin(Some("garbage"), None), foreign);
        assert_eq!(origin(Some(""), None), foreign);
        // a matching Referer does not rescue a foreign Origin
        assert_eq!(
            origin(Some("https://evil.test"), Some("https://shop.test/")),
            foreign
        );
    }

    #[test]
    fn without_origin_the_referer_decides() {
        assert_eq!(origin(None, Some("https://shop.test/page?q=1")), Ok(()));
        assert_eq!(origin(Some("null"), Some("https://shop.test/page")), Ok(()));
        assert_eq!(
            origin(None, Some("https://evil.test/page")),
            Err((403, "foreign referer"))
        );
        assert_eq!(
            origin(Some("null"), Some("https://evil.test/")),
            Err((403, "foreign referer"))
        );
    }

    #[test]
    fn origin_or_referer_is_required() {
        assert_eq!(origin(None, None), Err((403, "origin required")));
        assert_eq!(origin(Some("null"), None), Err((403, "origin required")));
    }

    #[test]
    fn origin_callback_gets_a_host_header_value() {
        let seen = std::cell::RefCell::new(Vec::new());
        let record = |h: &str| {
            seen.borrow_mut().push(h.to_owned());
            true
        };
        check_origin(Some("https://Shop.Test:8080"), None, record).unwrap();
        check_origin(None, Some("http://[::1]:3000/x"), record).unwrap();
        check_origin(Some("http://shop.test:80"), None, record).unwrap();
        assert_eq!(
            *seen.borrow(),
            ["shop.test:8080", "[::1]:3000", "shop.test"]
        );
    }

    // --- helpers ---

    #[test]
    fn path_is_the_url_path() {
        assert_eq!(parsed_url("https://shop.test/a/b?x=1#top").path(), "/a/b");
        assert_eq!(parsed_url("https://shop.test").path(), "/");
    }

    #[test]
    fn utm_parameters_from_the_page_url() {
        let b = parsed_url(
            "https://shop.test/?utm_source=News+Letter&utm_medium=email\
             &utm_campaign=spring%20sale&utm_source=second&utm_term=",
        );
        assert_eq!(b.utm("source").as_deref(), Some("News Letter"));
        assert_eq!(b.utm("utm_source").as_deref(), Some("News Letter"));
        assert_eq!(b.utm("medium").as_deref(), Some("email"));
        assert_eq!(b.utm("campaign").as_deref(), Some("spring sale"));
        assert_eq!(b.utm("term"), None);
        assert_eq!(b.utm("content"), None);

        let long = parsed_url(&format!(
            "https://shop.test/?utm_source={}",
            "s".repeat(300)
        ));
        assert_eq!(long.utm("source").map(|s| s.chars().count()), Some(MAX_UTM));
        let dirty = parsed_url("https://shop.test/?utm_source=a%0Ab%00");
        assert_eq!(dirty.utm("source").as_deref(), Some("a b"));
    }

    #[test]
    fn page_authority_is_what_a_host_header_carries() {
        assert_eq!(
            parsed_url("https://Shop.Test/x").page_authority(),
            "shop.test"
        );
        assert_eq!(
            parsed_url("http://shop.test:8080/x").page_authority(),
            "shop.test:8080"
        );
        assert_eq!(
            parsed_url("https://shop.test:443/").page_authority(),
            "shop.test"
        );
        assert_eq!(
            parsed_url("http://[::1]:3000/").page_authority(),
            "[::1]:3000"
        );
    }

    #[test]
    fn pixel_is_a_43_byte_transparent_gif() {
        assert_eq!(PIXEL_GIF.len(), 43);
        assert!(PIXEL_GIF.starts_with(b"GIF89a"));
        assert_eq!(&PIXEL_GIF[6..10], &[1, 0, 1, 0], "1x1");
        // graphic control extension with the transparency flag set
        assert_eq!(&PIXEL_GIF[19..23], &[0x21, 0xf9, 0x04, 0x01]);
        assert_eq!(PIXEL_GIF.last(), Some(&0x3b));
    }

    #[test]
    fn rejection_displays_status_and_reason() {
        assert_eq!(bad("title: too long").to_string(), "400 title: too long");
    }
}
