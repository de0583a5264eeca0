//! Which responses get the monitoring code: full HTML documents fetched as documents, with a
//! body. Everything else passes through untouched, with the reason counted.

use http::{Method, StatusCode};

use crate::config::PathPattern;

/// Why a response was passed through without injection (a label of the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    /// `inject.enabled: false`.
    Disabled,
    /// Not GET (HEAD has no body; other methods are not page views).
    Method,
    /// `inject.exclude_paths`.
    ExcludedPath,
    /// `Sec-Fetch-Dest` present and not `document`: HTML fetched by a script or as a resource.
    FetchDest,
    /// 1xx, 204, 206, 304, redirects: no document to inject into.
    Status,
    /// Not `text/html` or `application/xhtml+xml`.
    NotHtml,
    /// A charset that is not ASCII-compatible (UTF-16).
    Charset,
    /// A `Content-Encoding` smproxy cannot decode.
    ContentEncoding,
    /// A protocol upgrade (WebSocket).
    Upgrade,
}

impl Skip {
    pub const ALL: [Skip; 9] = [
        Skip::Disabled,
        Skip::Method,
        Skip::ExcludedPath,
        Skip::FetchDest,
        Skip::Status,
        Skip::NotHtml,
        Skip::Charset,
        Skip::ContentEncoding,
        Skip::Upgrade,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Skip::Disabled => "disabled",
            Skip::Method => "method",
            Skip::ExcludedPath => "excluded_path",
            Skip::FetchDest => "fetch_dest",
            Skip::Status => "status",
            Skip::NotHtml => "not_html",
            Skip::Charset => "charset",
            Skip::ContentEncoding => "content_encoding",
            Skip::Upgrade => "upgrade",
        }
    }

    pub fn index(self) -> usize {
        Skip::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }
}

/// What is known of the request before the origin answers.
pub fn check_request(
    enabled: bool,
    method: &Method,
    path: &str,
    sec_fetch_dest: Option<&str>,
    upgrade: bool,
    exclude: &[PathPattern],
) -> Result<(), Skip> {
    if !enabled {
        return Err(Skip::Disabled);
    }
    if upgrade {
        return Err(Skip::Upgrade);
    }
    if method != Method::GET {
        return Err(Skip::Method);
    }
    if let Some(dest) = sec_fetch_dest {
        if !dest.trim().eq_ignore_ascii_case("document") {
            return Err(Skip::FetchDest);
        }
    }
    if exclude.iter().any(|p| p.matches(path)) {
        return Err(Skip::ExcludedPath);
    }
    Ok(())
}

/// Statuses whose body is a document: 200 and the error pages a template renders.
pub fn check_status(status: StatusCode) -> Result<(), Skip> {
    let s = status.as_u16();
    if s == 200 || s == 203 || (400..600).contains(&s) {
        Ok(())
    } else {
        Err(Skip::Status)
    }
}

/// Whether a `Content-Type` is an HTML document.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), Skip> {
    let Some(ct) = content_type else {
        return Err(Skip::NotHtml);
    };
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("text/html") || mime.eq_ignore_ascii_case("application/xhtml+xml")
    {
        Ok(())
    } else {
        Err(Skip::NotHtml)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let ex = [PathPattern::new("/admin/*")];
        assert!(check_request(true, &Method::GET, "/", None, false, &ex).is_ok());
        assert!(check_request(true, &Method::GET, "/", Some("document"), false, &ex).is_ok());
        assert_eq!(
            check_request(true, &Method::HEAD, "/", None, false, &ex),
            Err(Skip::Method)
        );
        assert_eq!(
            check_request(true, &Method::POST, "/", None, false, &ex),
            Err(Skip::Method)
        );
        assert_eq!(
            check_request(true, &Method::GET, "/", Some("empty"), false, &ex),
            Err(Skip::FetchDest)
        );
        assert_eq!(
            check_request(true, &Method::GET, "/", Some("iframe"), false, &ex),
            Err(Skip::FetchDest)
        );
        assert_eq!(
            check_request(true, &Method::GET, "/admin/x", None, false, &ex),
            Err(Skip::ExcludedPath)
        );
        assert_eq!(
            check_request(false, &Method::GET, "/", None, false, &ex),
            Err(Skip::Disabled)
        );
        assert_eq!(
            check_request(true, &Method::GET, "/", None, true, &ex),
            Err(Skip::Upgrade)
        );
    }

    #[test]
    fn statuses_and_types() {
        for ok in [200, 404, 410, 500, 503] {
            assert!(
                check_status(StatusCode::from_u16(ok).unwrap()).is_ok(),
                "{ok}"
            );
        }
        for no in [101, 204, 206, 301, 302, 304, 307] {
            assert_eq!(
                check_status(StatusCode::from_u16(no).unwrap()),
                Err(Skip::Status),
                "{no}"
            );
        }
        assert!(check_content_type(Some("text/html; charset=utf-8")).is_ok());
        assert!(check_content_type(Some("TEXT/HTML")).is_ok());
        assert!(check_content_type(Some("application/xhtml+xml")).is_ok());
        assert_eq!(
            check_content_type(Some("application/json")),
            Err(Skip::NotHtml)
        );
        assert_eq!(check_content_type(None), Err(Skip::NotHtml));
    }
}
