//! First-party collection: the tracker script, the beacons it sends, and everything needed to
//! turn a beacon into a stored event (who the visitor is, where they come from, whether they
//! are a robot).
//!
//! Reading order: [`beacon`] (the wire format and its validation), [`origin`] (whose page sent
//! it), [`tracker`] (the script and how it is served), [`client_ip`], [`company`], [`bots`] and
//! [`user_agent`], [`rate_limit`].
//!
//! # The beacon protocol (tracker → smproxy)
//!
//! `POST {collect.path}` with `Content-Type: text/plain;charset=UTF-8` (what `sendBeacon`
//! sends) or `application/json`, body at most `collect.max_body_kib` (16 KiB), one JSON object:
//!
//! | field        | type                         | for                                   |
//! |--------------|------------------------------|---------------------------------------|
//! | `type`       | string, required             | `pageview`, `engagement`, `event`, `outbound`, `form`, `consent`, `link` |
//! | `url`        | absolute http(s) URL ≤ 2048  | required: the page (its host must be the site's) |
//! | `referrer`   | URL ≤ 2048 or `""`           | pageview                              |
//! | `title`      | string ≤ 512                 | pageview                              |
//! | `screen`     | `"WxH"`, 1–5 digits each     | pageview                              |
//! | `lang`       | string ≤ 35 of `A-Za-z0-9-`  | pageview                              |
//! | `engaged_ms` | integer 0..=86 400 000       | engagement (required)                 |
//! | `name`       | string 1..=100               | event (required)                      |
//! | `props`      | object ≤ 20 keys             | event: keys ≤ 64 chars, values string ≤ 256 / number / bool / null |
//! | `target`     | absolute http(s) URL ≤ 2048  | outbound (required)                   |
//! | `email`      | string ≤ 254                 | form (optional: a form without one is still a `form` event) |
//! | `fields`     | array ≤ 50 of string ≤ 64    | form: the field *names* (never values) |
//! | `consent`    | bool                         | consent (required)                    |
//! | `hosts`      | array ≤ 20 of host names     | pageview, link: hosts of links on the page that may be sibling sites |
//!
//! Unknown fields are ignored (an older proxy behind a newer tracker keeps working). A field of
//! the wrong type or over its limit rejects the whole beacon with `400` and a short reason.
//!
//! The answer is `204 No Content` (with any `Set-Cookie`), or `200` with
//! `{"links":{"<host>":"<_smx token>",...}}` when `hosts` named sibling sites and the visitor
//! has an identity to carry; a `consent` beacon that grants consent the visitor did not have
//! gets `200` with `{"resend":true}` (the page view sent before it was dropped). Errors: `400` (malformed), `403` (foreign `Origin`/`Referer` or a
//! page URL of another site), `413` (body too large), `415` (content type), `429` (rate limit),
//! `503` (the contact store did not answer in time, form identification only).
//!
//! `GET {collect.path}?type=pageview&url=...` is the image pixel for pages without scripts: the
//! same fields as query parameters (`url` defaults to the `Referer`), answered with a 1×1 GIF.

pub mod beacon;
pub mod bots;
pub mod client_ip;
pub mod collector;
pub mod company;
pub mod origin;
pub mod rate_limit;
pub mod tracker;
pub mod user_agent;
pub mod visitor;
