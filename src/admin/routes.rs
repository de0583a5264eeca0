//! Every route of the admin listener, in one table: the router matches requests against it
//! and a unit test checks it against the OpenAPI document.

/// What a route answers with, which decides how access is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No token needed (`/healthz`, the login page, the stylesheet).
    Public,
    /// A dashboard page (HTML): a GET without a session is redirected to `/login`.
    Page,
    /// JSON (or CSV) under `/api`: refused with a JSON `401`.
    Api,
    /// Plain text for tools (`/metrics`, `/readyz`): refused with a text `401`.
    Ops,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    Healthz,
    Readyz,
    Metrics,
    Style,
    LoginPage,
    Login,
    Logout,
    Overview,
    Breakdown,
    Contacts,
    Contact,
    ContactLink,
    ContactErase,
    Companies,
    Company,
    ApiStatus,
    ApiStats,
    ApiTimeseries,
    ApiBreakdown,
    ApiLive,
    ApiContacts,
    ApiContactCreate,
    ApiContact,
    ApiContactErase,
    ApiContactExport,
    ApiContactLink,
    ApiCompanies,
    ApiCompany,
    ApiOpenapi,
}

#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    /// Literal segments and `{id}`, which matches one non-empty segment.
    pub pattern: &'static str,
    pub id: Id,
    pub kind: Kind,
}

const fn r(method: &'static str, pattern: &'static str, id: Id, kind: Kind) -> Route {
    Route {
        method,
        pattern,
        id,
        kind,
    }
}

pub const ROUTES: &[Route] = &[
    r("GET", "/healthz", Id::Healthz, Kind::Public),
    r("GET", "/readyz", Id::Readyz, Kind::Ops),
    r("GET", "/metrics", Id::Metrics, Kind::Ops),
    r("GET", "/static/style.css", Id::Style, Kind::Public),
    r("GET", "/login", Id::LoginPage, Kind::Public),
    r("POST", "/login", Id::Login, Kind::Public),
    r("POST", "/logout", Id::Logout, Kind::Page),
    r("GET", "/", Id::Overview, Kind::Page),
    r("GET", "/breakdown", Id::Breakdown, Kind::Page),
    r("GET", "/contacts", Id::Contacts, Kind::Page),
    r("GET", "/contacts/{id}", Id::Contact, Kind::Page),
    r("POST", "/contacts/{id}/link", Id::ContactLink, Kind::Page),
    r("POST", "/contacts/{id}/erase", Id::ContactErase, Kind::Page),
    r("GET", "/companies", Id::Companies, Kind::Page),
    r("GET", "/companies/{id}", Id::Company, Kind::Page),
    r("GET", "/api/status", Id::ApiStatus, Kind::Api),
    r("GET", "/api/stats", Id::ApiStats, Kind::Api),
    r("GET", "/api/timeseries", Id::ApiTimeseries, Kind::Api),
    r("GET", "/api/breakdown", Id::ApiBreakdown, Kind::Api),
    r("GET", "/api/live", Id::ApiLive, Kind::Api),
    r("GET", "/api/contacts", Id::ApiContacts, Kind::Api),
    r("POST", "/api/contacts", Id::ApiContactCreate, Kind::Api),
    r("GET", "/api/contacts/{id}", Id::ApiContact, Kind::Api),
    r(
        "DELETE",
        "/api/contacts/{id}",
        Id::ApiContactErase,
        Kind::Api,
    ),
    r(
        "GET",
        "/api/contacts/{id}/export",
        Id::ApiContactExport,
        Kind::Api,
    ),
    r(
        "GET",
        "/api/contacts/{id}/link",
        Id::ApiContactLink,
        Kind::Api,
    ),
    r("GET", "/api/companies", Id::ApiCompanies, Kind::Api),
    r("GET", "/api/companies/{id}", Id::ApiCompany, Kind::Api),
    r("GET", "/api/openapi.json", Id::ApiOpenapi, Kind::Api),
];

/// The result of matching a request.
#[derive(Debug)]
pub enum Match {
    Found {
        route: Route,
        param: Option<String>,
    },
    /// The path exists with other methods (for `405` and `Allow`).
    WrongMethod {
        allow: Vec<&'static str>,
    },
    NotFound,
}

/// Finds the route of `method` and `path` (HEAD is matched as GET).
pub fn find(method: &str, path: &str) -> Match {
    let method = if method == "HEAD" { "GET" } else { method };
    let mut allow = Vec::new();
    for route in ROUTES {
        let Some(param) = match_path(route.pattern, path) else {
            continue;
        };
        if route.method == method {
            return Match::Found {
                route: *route,
                param,
            };
        }
        allow.push(route.method);
    }
    if allow.is_empty() {
        Match::NotFound
    } else {
        if allow.contains(&"GET") {
            allow.push("HEAD");
        }
        Match::WrongMethod { allow }
    }
}

/// `Some(param)` when `path` matches `pattern`; the `{id}` segment percent-decoded.
fn match_path(pattern: &str, path: &str) -> Option<Option<String>> {
    let mut pat = pattern.split('/');
    let mut segs = path.split('/');
    let mut param = None;
    loop {
        match (pat.next(), segs.next()) {
            (None, None) => return Some(param),
            (Some("{id}"), Some(seg)) if !seg.is_empty() => param = Some(percent_decode(seg)?),
            (Some(p), Some(seg)) if p == seg => {}
            _ => return None,
        }
    }
}

/// `%XX` escapes decoded; `None` for a bad escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `/contacts/` + the id, percent-encoded for a path segment.
pub fn with_id(prefix: &str, id: &str, suffix: &str) -> String {
    let mut out = String::from(prefix);
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(suffix);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_literal_and_parameter_segments() {
        match find("GET", "/api/contacts/abc%20d") {
            Match::Found { route, param } => {
                assert_eq!(route.id, Id::ApiContact);
                assert_eq!(param.as_deref(), Some("abc d"));
            }
            m => panic!("{m:?}"),
        }
        match find("HEAD", "/healthz") {
            Match::Found { route, .. } => assert_eq!(route.id, Id::Healthz),
            m => panic!("{m:?}"),
        }
        assert!(matches!(find("GET", "/api/contacts/"), Match::NotFound));
        assert!(matches!(find("GET", "/api/contacts/a/b"), Match::NotFound));
        assert!(matches!(find("GET", "/api/contacts/%zz"), Match::NotFound));
        assert!(matches!(find("GET", "/nope"), Match::NotFound));
        match find("PUT", "/api/contacts/x") {
            Match::WrongMethod { allow } => assert_eq!(allow, ["GET", "DELETE", "HEAD"]),
            m => panic!("{m:?}"),
        }
    }

    #[test]
    fn every_route_is_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.pattern == b.pattern),
                    "{} {}",
                    a.method,
                    a.pattern
                );
                assert_ne!(a.id, b.id);
            }
        }
    }

    #[test]
    fn ids_are_encoded_in_links() {
        assert_eq!(
            with_id("/contacts/", "a b/c", "/link"),
            "/contacts/a%20b%2Fc/link"
        );
        assert_eq!(
            with_id("/contacts/", "0b8e-AZ_x.y~", ""),
            "/contacts/0b8e-AZ_x.y~"
        );
    }
}
