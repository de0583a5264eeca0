//! Who the visitor is and what we may remember: reads the identity cookies of a request,
//! decides consent, and writes the `Set-Cookie` values that create, roll, change or forget the
//! identity. Pure: headers in, header values out, time passed in.
//!
//! Cookies (see `identity`): `smuuid` (anonymous visitor, a UUID), `smclient` (the contact,
//! signed), `smids` (the cross-site identity with its contact, signed), and `smconsent`
//! (`1`/`0`: the visitor's answer to `sm('consent', ...)`, so later requests know it).

use uuid::Uuid;

use crate::config::{ConsentMode, ConsentSettings, CookieSettings};
use crate::identity::{
    self, delete_cookie, is_uuid, read_cookie, set_cookie, verify_client, verify_ids, CookieAttrs,
    Keys, SMCLIENT, SMIDS, SMUUID,
};

/// The consent cookie's name (the visitor's own answer given through the tracker).
pub const SMCONSENT: &str = "smconsent";

/// What the request says about consent, before the configuration weighs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Signals {
    /// `Sec-GPC: 1`: the browser asks not to be tracked; no identifier is ever set.
    pub gpc: bool,
    /// `DNT: 1`, honoured like GPC when `consent.respect_dnt` is on.
    pub dnt: bool,
    /// The user agent is a robot: counted apart, never given cookies.
    pub bot: bool,
}

/// The identity a request carries, after verification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visitor {
    /// A well-formed `smuuid`.
    pub visitor_id: Option<String>,
    /// From a valid `smclient`.
    pub contact: Option<Uuid>,
    /// From a valid `smids`: the cross-site id and its contact.
    pub ids: Option<(Uuid, Option<Uuid>)>,
    /// The visitor's own answer (`smconsent`), or the consent manager's cookie.
    pub consent: Option<bool>,
    /// Identity cookies present but forged, tampered, signed with an unknown key or malformed:
    /// ignored, counted, and replaced (or deleted) on the response.
    pub rejected: u32,
}

impl Visitor {
    /// The cross-site id to store on events.
    pub fn ids_text(&self) -> Option<String> {
        self.ids.map(|(id, _)| id.hyphenated().to_string())
    }

    /// The contact to store on events: `smclient`, else the contact `smids` carries.
    pub fn contact_text(&self) -> Option<String> {
        self.contact
            .or(self.ids.and_then(|(_, c)| c))
            .map(|c| c.hyphenated().to_string())
    }
}

/// Reads, decides and writes visitor identity for one configuration.
pub struct Identities {
    keys: Keys,
    cookies: CookieSettings,
    consent: ConsentSettings,
}

impl Identities {
    pub fn new(keys: Keys, cookies: CookieSettings, consent: ConsentSettings) -> Self {
        Identities {
            keys,
            cookies,
            consent,
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The identity in the request's `Cookie` header values.
    pub fn read<'a, I>(&self, cookie_headers: I) -> Visitor
    where
        I: IntoIterator<Item = &'a [u8]> + Clone,
    {
        let mut v = Visitor::default();
        if let Some(raw) = read_cookie(cookie_headers.clone(), SMUUID) {
            if is_uuid(raw) {
                v.visitor_id = Some(raw.to_ascii_lowercase());
            } else {
                v.rejected += 1;
            }
        }
        if let Some(raw) = read_cookie(cookie_headers.clone(), SMCLIENT) {
            match verify_client(&self.keys, raw) {
                Ok(c) => v.contact = Some(c.contact_id),
                Err(_) => v.rejected += 1,
            }
        }
        if let Some(raw) = read_cookie(cookie_headers.clone(), SMIDS) {
            match verify_ids(&self.keys, raw) {
                Ok(c) => v.ids = Some((c.ids_id, c.contact_id)),
                Err(_) => v.rejected += 1,
            }
        }
        v.consent = match read_cookie(cookie_headers.clone(), SMCONSENT) {
            Some("1") => Some(true),
            Some("0") => Some(false),
            _ => None,
        };
        if v.consent.is_none() {
            if let Some(name) = &self.consent.cookie {
                if let Some(value) = read_cookie(cookie_headers, name) {
                    v.consent = Some(match &self.consent.cookie_value {
                        Some(want) => value == want,
                        None => !matches!(
                            value.to_ascii_lowercase().as_str(),
                            "" | "0" | "false" | "no" | "denied" | "deny"
                        ),
                    });
                }
            }
        }
        v
    }

    /// May this visitor be given identifiers and have events stored about them?
    pub fn allowed(&self, v: &Visitor, s: Signals) -> bool {
        if s.bot || s.gpc || (s.dnt && self.consent.respect_dnt) {
            return false;
        }
        match self.consent.mode {
            ConsentMode::None => v.consent != Some(false),
            ConsentMode::Required => v.consent == Some(true),
        }
    }

    /// May events be stored at all (identifiers or not)? With `consent.mode: required`, not
    /// before consent; a GPC or DNT visitor is still counted, anonymously.
    pub fn may_store(&self, v: &Visitor, s: Signals) -> bool {
        match self.consent.mode {
            ConsentMode::None => v.consent != Some(false) || s.bot,
            ConsentMode::Required => v.consent == Some(true) && !s.gpc,
        }
    }

    fn attrs(&self, host: &str, https: bool) -> CookieAttrs {
        CookieAttrs::for_host(host, https)
            .js_readable(self.cookies.js_readable)
            .max_age_days(self.cookies.max_age_days)
    }

    /// Cookies for a page or beacon answer: a new `smuuid`/`smids` for a visitor without one,
    /// replacements for rejected cookies, and with `roll`, every identity cookie again so its
    /// `Max-Age` starts over. Fills in the ids it creates on `v`. Nothing when not allowed.
    pub fn ensure(
        &self,
        v: &mut Visitor,
        host: &str,
        https: bool,
        roll: bool,
        now: u64,
    ) -> Vec<String> {
        let attrs = self.attrs(host, https);
        let mut out = Vec::new();
        let fresh_visitor = v.visitor_id.is_none();
        if fresh_visitor {
            v.visitor_id = Some(identity::new_visitor_id());
        }
        if fresh_visitor || roll || v.rejected > 0 {
            out.extend(
                v.visitor_id
                    .as_deref()
                    .and_then(|id| set_cookie(SMUUID, id, &attrs).ok()),
            );
        }
        let fresh_ids = v.ids.is_none();
        if fresh_ids {
            v.ids = Some((identity::time_ordered_uuid(), v.contact));
        }
        if fresh_ids || roll || v.rejected > 0 {
            out.extend(self.ids_cookie(v, &attrs, now));
        }
        if let Some(contact) = v.contact {
            if roll || v.rejected > 0 {
                out.extend(self.client_cookie(contact, &attrs, now));
            }
        } else if v.rejected > 0 {
            out.extend(delete_cookie(SMCLIENT, &attrs).ok());
        }
        out
    }

    /// `v` is `contact` from now on: `smclient` and `smids` (same cross-site id) for it.
    pub fn identify(
        &self,
        v: &mut Visitor,
        contact: Uuid,
        host: &str,
        https: bool,
        now: u64,
    ) -> Vec<String> {
        let attrs = self.attrs(host, https);
        v.contact = Some(contact);
        let ids = v.ids.map_or_else(identity::time_ordered_uuid, |(id, _)| id);
        v.ids = Some((ids, Some(contact)));
        let mut out = Vec::new();
        out.extend(self.client_cookie(contact, &attrs, now));
        out.extend(self.ids_cookie(v, &attrs, now));
        out
    }

    /// Adopts the cross-site identity an `_smx` link carried (`smids`, and `smclient` when it
    /// names a contact).
    pub fn adopt(
        &self,
        v: &mut Visitor,
        ids: Uuid,
        contact: Option<Uuid>,
        host: &str,
        https: bool,
        now: u64,
    ) -> Vec<String> {
        let attrs = self.attrs(host, https);
        v.ids = Some((ids, contact.or(v.contact)));
        let mut out = Vec::new();
        if let Some(c) = contact {
            v.contact = Some(c);
            out.extend(self.client_cookie(c, &attrs, now));
        }
        out.extend(self.ids_cookie(v, &attrs, now));
        out
    }

    /// The visitor's consent answer: remembered in `smconsent`; a refusal also deletes every
    /// identifier (they must not outlive the refusal).
    pub fn answer_consent(
        &self,
        v: &mut Visitor,
        granted: bool,
        host: &str,
        https: bool,
    ) -> Vec<String> {
        let attrs = self.attrs(host, https);
        v.consent = Some(granted);
        let mut out = Vec::new();
        out.extend(set_cookie(SMCONSENT, if granted { "1" } else { "0" }, &attrs).ok());
        if !granted {
            *v = Visitor {
                consent: Some(false),
                ..Visitor::default()
            };
            for name in [SMUUID, SMCLIENT, SMIDS] {
                out.extend(delete_cookie(name, &attrs).ok());
            }
        }
        out
    }

    /// Deletes identifiers a visitor should not have (GPC, no consent) if they carry any.
    pub fn forget_if_present(&self, v: &Visitor, host: &str, https: bool) -> Vec<String> {
        if v.visitor_id.is_none() && v.contact.is_none() && v.ids.is_none() && v.rejected == 0 {
            return Vec::new();
        }
        let attrs = self.attrs(host, https);
        [SMUUID, SMCLIENT, SMIDS]
            .into_iter()
            .filter_map(|name| delete_cookie(name, &attrs).ok())
            .collect()
    }

    fn client_cookie(&self, contact: Uuid, attrs: &CookieAttrs, now: u64) -> Option<String> {
        set_cookie(
            SMCLIENT,
            &identity::issue_client(&self.keys, contact, now),
            attrs,
        )
        .ok()
    }

    fn ids_cookie(&self, v: &Visitor, attrs: &CookieAttrs, now: u64) -> Option<String> {
        let (ids, contact) = v.ids?;
        set_cookie(
            SMIDS,
            &identity::issue_ids(&self.keys, ids, contact, now),
            attrs,
        )
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn ids(mode: ConsentMode) -> Identities {
        Identities::new(
            Keys::new(&[Secret::new("k".repeat(32))]).unwrap(),
            CookieSettings {
                secrets: vec![],
                js_readable: false,
                max_age_days: 395,
            },
            ConsentSettings {
                mode,
                cookie: Some("cmp".into()),
                cookie_value: None,
                respect_dnt: true,
            },
        )
    }

    fn read(i: &Identities, cookie: &str) -> Visitor {
        i.read([cookie.as_bytes()])
    }

    fn pairs(set_cookies: &[String]) -> String {
        set_cookies
            .iter()
            .map(|c| c.split(';').next().unwrap())
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn new_visitor_gets_smuuid_and_smids_once() {
        let i = ids(ConsentMode::None);
        let mut v = read(&i, "");
        assert!(i.allowed(&v, Signals::default()));
        let set = i.ensure(&mut v, "www.shop.example.com", true, false, 1000);
        assert_eq!(set.len(), 2);
        assert!(set[0].starts_with("smuuid="));
        assert!(set[0]
            .contains("; Domain=example.com; Max-Age=34128000; SameSite=Lax; Secure; HttpOnly"));
        assert!(set[1].starts_with("smids="));
        // The browser sends them back: nothing more to set unless rolling.
        let mut again = read(&i, &pairs(&set));
        assert_eq!(again.visitor_id, v.visitor_id);
        assert_eq!(again.ids, v.ids);
        assert!(i
            .ensure(&mut again, "www.shop.example.com", true, false, 1001)
            .is_empty());
        assert_eq!(
            i.ensure(&mut again, "www.shop.example.com", true, true, 1001)
                .len(),
            2
        );
    }

    #[test]
    fn forged_cookies_are_ignored_counted_and_replaced() {
        let i = ids(ConsentMode::None);
        let other = Identities::new(
            Keys::new(&[Secret::new("x".repeat(32))]).unwrap(),
            i.cookies.clone(),
            i.consent.clone(),
        );
        let contact = Uuid::new_v4();
        let foreign = identity::issue_client(&other.keys, contact, 1);
        let mut v = read(
            &i,
            &format!("smclient={foreign}; smuuid=not-a-uuid; smids=abc.def"),
        );
        assert_eq!(v.contact, None);
        assert_eq!(v.visitor_id, None);
        assert_eq!(v.ids, None);
        assert_eq!(v.rejected, 3);
        let set = i.ensure(&mut v, "shop.example", false, false, 5);
        let names: Vec<_> = set.iter().map(|c| c.split('=').next().unwrap()).collect();
        assert_eq!(names, ["smuuid", "smids", "smclient"]);
        assert!(set[2].starts_with("smclient=; ") && set[2].contains("Max-Age=0"));
    }

    #[test]
    fn identify_keeps_the_cross_site_id_and_signs_the_contact() {
        let i = ids(ConsentMode::None);
        let mut v = read(&i, "");
        i.ensure(&mut v, "a.example", false, false, 1);
        let before = v.ids.unwrap().0;
        let contact = Uuid::new_v4();
        let set = i.identify(&mut v, contact, "a.example", false, 2);
        let back = read(&i, &pairs(&set));
        assert_eq!(back.contact, Some(contact));
        assert_eq!(back.ids, Some((before, Some(contact))));
        assert_eq!(back.contact_text(), Some(contact.to_string()));
    }

    #[test]
    fn consent_required_needs_an_answer_or_the_cmp_cookie() {
        let i = ids(ConsentMode::Required);
        let s = Signals::default();
        assert!(!i.allowed(&read(&i, ""), s));
        assert!(!i.may_store(&read(&i, ""), s));
        assert!(i.allowed(&read(&i, "smconsent=1"), s));
        assert!(!i.allowed(&read(&i, "smconsent=0; cmp=yes"), s));
        assert!(i.allowed(&read(&i, "cmp=yes"), s));
        assert!(!i.allowed(&read(&i, "cmp=false"), s));
        let gpc = Signals { gpc: true, ..s };
        assert!(!i.allowed(&read(&i, "smconsent=1"), gpc));
        assert!(!i.may_store(&read(&i, "smconsent=1"), gpc));
    }

    #[test]
    fn consent_none_respects_refusal_gpc_dnt_and_bots() {
        let i = ids(ConsentMode::None);
        let v = read(&i, "");
        assert!(i.allowed(&v, Signals::default()));
        for s in [
            Signals {
                gpc: true,
                ..Default::default()
            },
            Signals {
                dnt: true,
                ..Default::default()
            },
            Signals {
                bot: true,
                ..Default::default()
            },
        ] {
            assert!(!i.allowed(&v, s), "{s:?}");
            assert!(i.may_store(&v, s), "counted anonymously: {s:?}");
        }
        let refused = read(&i, "smconsent=0");
        assert!(!i.allowed(&refused, Signals::default()));
        assert!(!i.may_store(&refused, Signals::default()));
    }

    #[test]
    fn refusing_consent_deletes_every_identifier() {
        let i = ids(ConsentMode::None);
        let mut v = read(&i, "");
        i.ensure(&mut v, "a.example", false, false, 1);
        let set = i.answer_consent(&mut v, false, "a.example", false);
        assert_eq!(set.len(), 4);
        assert!(set[0].starts_with("smconsent=0;"));
        assert!(set[1..]
            .iter()
            .all(|c| c.contains("=; ") && c.contains("Max-Age=0")));
        assert_eq!(v.visitor_id, None);
        assert_eq!(v.consent, Some(false));
    }

    #[test]
    fn adopting_a_link_sets_smids_and_smclient() {
        let i = ids(ConsentMode::None);
        let mut v = read(&i, "");
        let (x, c) = (Uuid::new_v4(), Uuid::new_v4());
        let set = i.adopt(&mut v, x, Some(c), "b.example", false, 9);
        let back = read(&i, &pairs(&set));
        assert_eq!(back.ids, Some((x, Some(c))));
        assert_eq!(back.contact, Some(c));
    }
}
