//! The tracker script served at `tracker.path`: built once at start-up (the collect path filled
//! in, gzipped once), versioned by its content so the snippet's URL can be cached for a year,
//! and answered with `ETag`/`304` for clients that revalidate anyway.

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

/// The script as written; `"__SM_COLLECT__"` becomes the collect path.
const SOURCE: &str = include_str!("tracker.js");
const PLACEHOLDER: &str = "\"__SM_COLLECT__\"";

/// One year: the URL changes whenever the content does.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// An unversioned URL (a page that includes the tracker by hand) picks up upgrades soon.
const SHORT: &str = "public, max-age=300";

/// What to answer to a request for the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

#[derive(Debug, Clone)]
pub struct Tracker {
    plain: Bytes,
    gzip: Bytes,
    version: String,
}

impl Tracker {
    /// `collect_path` is validated by the configuration (`[A-Za-z0-9/._~-]`), so it needs no
    /// escaping inside a JavaScript string.
    pub fn new(collect_path: &str) -> Self {
        let script = SOURCE.replacen(PLACEHOLDER, &format!("\"{collect_path}\""), 1);
        let digest = Sha256::digest(script.as_bytes());
        let version = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        let mut gz = GzEncoder::new(Vec::new(), Compression::best());
        gz.write_all(script.as_bytes()).expect("writing to a Vec");
        let gzip = gz.finish().expect("writing to a Vec");
        Tracker {
            plain: Bytes::from(script),
            gzip: Bytes::from(gzip),
            version,
        }
    }

    /// The content hash that versions the URL.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The URL the snippet loads.
    pub fn src(&self, tracker_path: &str) -> String {
        format!("{tracker_path}?v={}", self.version)
    }

    pub fn gzipped_len(&self) -> usize {
        self.gzip.len()
    }

    /// The answer to `method` with the request's query, `If-None-Match` and `Accept-Encoding`.
    pub fn answer(
        &self,
        method: &http::Method,
        query: Option<&str>,
        if_none_match: Option<&str>,
        accept_encoding: Option<&str>,
    ) -> Answer {
        if method != http::Method::GET && method != http::Method::HEAD {
            return Answer {
                status: 405,
                headers: vec![("allow", "GET, HEAD".into())],
                body: Bytes::new(),
            };
        }
        let versioned = query
            .into_iter()
            .flat_map(|q| url::form_urlencoded::parse(q.as_bytes()))
            .any(|(k, v)| k == "v" && v == self.version.as_str());
        let gzip =
            accept_encoding.is_some_and(|ae| crate::codec::accepts(ae, crate::codec::Coding::Gzip));
        // One tag per representation (RFC 9110 8.8.3), the same hash underneath.
        let etag = if gzip {
            format!("\"{}-gz\"", self.version)
        } else {
            format!("\"{}\"", self.version)
        };
        let mut headers = vec![
            (
                "content-type",
                "application/javascript; charset=utf-8".to_string(),
            ),
            (
                "cache-control",
                (if versioned { IMMUTABLE } else { SHORT }).to_string(),
            ),
            ("etag", etag),
            ("vary", "Accept-Encoding".to_string()),
            ("x-content-type-options", "nosniff".to_string()),
        ];
        if if_none_match.is_some_and(|inm| self.matches(inm)) {
            return Answer {
                status: 304,
                headers,
                body: Bytes::new(),
            };
        }
        let body = if gzip {
            headers.push(("content-encoding", "gzip".to_string()));
            self.gzip.clone()
        } else {
            self.plain.clone()
        };
        headers.push(("content-length", body.len().to_string()));
        Answer {
            status: 200,
            headers,
            body,
        }
    }

    /// `If-None-Match` names this version, in either representation (weak comparison).
    fn matches(&self, if_none_match: &str) -> bool {
        if_none_match.split(',').any(|tag| {
            let tag = tag.trim();
            let tag = tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"');
            tag == "*" || tag == self.version || tag.strip_suffix("-gz") == Some(&self.version)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
        a.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn collect_path_is_filled_in_once() {
        let t = Tracker::new("/x/collect");
        let text = std::str::from_utf8(&t.plain).unwrap();
        assert!(!text.contains("__SM_COLLECT__"));
        assert_eq!(text.matches("\"/x/collect\"").count(), 1);
        assert_ne!(Tracker::new("/y").version(), t.version());
        assert_eq!(t.src("/_sm/sm.js"), format!("/_sm/sm.js?v={}", t.version()));
    }

    #[test]
    fn versioned_url_is_immutable_and_gzipped_when_accepted() {
        let t = Tracker::new("/_sm/collect");
        let q = format!("v={}", t.version());
        let a = t.answer(&http::Method::GET, Some(&q), None, Some("gzip, br"));
        assert_eq!(a.status, 200);
        assert_eq!(header(&a, "cache-control"), Some(IMMUTABLE));
        assert_eq!(header(&a, "content-encoding"), Some("gzip"));
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&a.body[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, t.plain);
        let plain = t.answer(&http::Method::GET, Some("v=old"), None, None);
        assert_eq!(header(&plain, "cache-control"), Some(SHORT));
        assert_eq!(header(&plain, "content-encoding"), None);
        assert_eq!(plain.body, t.plain);
        assert_eq!(
            header(&plain, "content-length"),
            Some(t.plain.len().to_string().as_str())
        );
    }

    #[test]
    fn revalidation_answers_304_for_the_current_version_only() {
        let t = Tracker::new("/_sm/collect");
        let first = t.answer(&http::Method::GET, None, None, Some("gzip"));
        let etag = header(&first, "etag").unwrap().to_string();
        let again = t.answer(&http::Method::GET, None, Some(&etag), Some("gzip"));
        assert_eq!(again.status, 304);
        assert!(again.body.is_empty());
        let weak = t.answer(&http::Method::GET, None, Some(&format!("W/{etag}")), None);
        assert_eq!(weak.status, 304);
        let stale = t.answer(&http::Method::GET, None, Some("\"0123abcd\""), None);
        assert_eq!(stale.status, 200);
    }

    #[test]
    fn only_get_and_head() {
        let t = Tracker::new("/_sm/collect");
        let a = t.answer(&http::Method::POST, None, None, None);
        assert_eq!(a.status, 405);
        assert_eq!(header(&a, "allow"), Some("GET, HEAD"));
    }
}
