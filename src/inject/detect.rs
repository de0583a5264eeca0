//! Recognising a monitoring code already in a page (design.md §3): a `<script>` whose text sets
//! `_smid` or `SalesmanagoObject`, or whose `src` ends in `/static/sm.js` or is the tracker path.

use memchr::memmem;
use std::sync::LazyLock;

static SMID: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"_smid"));
static SMOBJ: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"SalesmanagoObject"));

/// Whether a `<script type=...>` is one a browser runs (a JSON or template block is not code).
pub fn is_executable_type(type_attr: Option<&str>) -> bool {
    const EXECUTABLE: [&str; 18] = [
        "",
        "module",
        "text/javascript",
        "application/javascript",
        "application/ecmascript",
        "application/x-javascript",
        "application/x-ecmascript",
        "text/ecmascript",
        "text/jscript",
        "text/x-javascript",
        "text/x-ecmascript",
        "text/livescript",
        "text/javascript1.0",
        "text/javascript1.1",
        "text/javascript1.2",
        "text/javascript1.3",
        "text/javascript1.4",
        "text/javascript1.5",
    ];
    let Some(t) = type_attr else { return true };
    let mime = t.trim().split(';').next().unwrap_or("").trim();
    EXECUTABLE.iter().any(|e| mime.eq_ignore_ascii_case(e))
}

/// Whether a script `src` loads the vendor's loader or our tracker.
pub fn is_code_src(src: &str, tracker_path: &str) -> bool {
    let src = src.trim();
    let end = src.find(['?', '#']).unwrap_or(src.len());
    let without_query = &src[..end];
    const LOADER: &[u8] = b"/static/sm.js";
    let bytes = without_query.as_bytes();
    if bytes.len() >= LOADER.len()
        && bytes[bytes.len() - LOADER.len()..].eq_ignore_ascii_case(LOADER)
    {
        return true;
    }
    url_path(without_query) == tracker_path
}

/// The path of a URL that may be absolute (`https://h/p`), scheme-relative (`//h/p`) or a path.
fn url_path(url: &str) -> &str {
    let rest = if let Some(i) = url.find("://") {
        &url[i + 3..]
    } else if let Some(r) = url.strip_prefix("//") {
        r
    } else {
        return url;
    };
    match rest.find('/') {
        Some(i) => &rest[i..],
        None => "/",
    }
}

/// Whether script text assigns `_smid` or `SalesmanagoObject` (reading them, as some
/// integrations do, does not make a second code).
/// `complete`: `text` is the whole script; otherwise a marker at its very end is undecided
/// (`_smid =` may yet become `_smid ==`).
pub fn text_sets_code(text: &[u8], complete: bool) -> bool {
    assigns_after(&SMID, text, b"_smid".len(), complete)
        || assigns_after(&SMOBJ, text, b"SalesmanagoObject".len(), complete)
}

/// The client ID a code assigns (`_smid = 'abc'`, `"_smid": "abc"`), when it is a plain
/// quoted literal of `[A-Za-z0-9_-]{1,64}`: what the install status compares with ours.
pub fn assigned_client_id(text: &[u8]) -> Option<&str> {
    let mut from = 0;
    while let Some(i) = SMID.find(&text[from..]) {
        let mut j = from + i + b"_smid".len();
        from = j;
        let skip = |j: &mut usize, set: &[u8]| {
            while *j < text.len() && set.contains(&text[*j]) {
                *j += 1;
            }
        };
        skip(&mut j, b" \t\r\n'\"]");
        match (text.get(j), text.get(j + 1)) {
            (Some(b'='), Some(n)) if *n != b'=' => j += 1,
            (Some(b':'), _) => j += 1,
            _ => continue,
        }
        skip(&mut j, b" \t\r\n");
        let Some(&quote @ (b'\'' | b'"')) = text.get(j) else {
            continue;
        };
        let start = j + 1;
        let len = text[start..]
            .iter()
            .take(65)
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b'-')
            .count();
        if (1..=64).contains(&len) && text.get(start + len) == Some(&quote) {
            return std::str::from_utf8(&text[start..start + len]).ok();
        }
    }
    None
}

/// Whether text names `_smid` or `SalesmanagoObject` at all (assigning or not).
pub fn mentions_marker(text: &[u8]) -> bool {
    SMID.find(text).is_some() || SMOBJ.find(text).is_some()
}

/// Longest run that can hold one marker and its assignment, kept between text chunks.
pub const CARRY: usize = 96;

fn assigns_after(
    finder: &memmem::Finder<'_>,
    text: &[u8],
    marker_len: usize,
    complete: bool,
) -> bool {
    let mut from = 0;
    while let Some(i) = finder.find(&text[from..]) {
        let mut j = from + i + marker_len;
        // `_smid = ...`, `['SalesmanagoObject'] = ...`, `"_smid": ...` (object literal).
        while j < text.len()
            && matches!(text[j], b' ' | b'\t' | b'\r' | b'\n' | b'\'' | b'"' | b']')
        {
            j += 1;
        }
        if j < text.len() {
            let c = text[j];
            let next = text.get(j + 1).copied();
            let assignment = match (c, next) {
                (b'=', Some(n)) => n != b'=',
                (b'=', None) => complete,
                (b':', _) => true,
                _ => false,
            };
            if assignment {
                return true;
            }
        }
        from += i + marker_len;
    }
    false
}

/// Finds a marker in script text that arrives in chunks, keeping a short carry-over so a
/// marker split between two chunks is still found.
#[derive(Default, Debug)]
pub struct TextScanner {
    carry: String,
    found: bool,
    client_id: Option<String>,
}

impl TextScanner {
    pub fn feed(&mut self, chunk: &str) {
        if chunk.is_empty() || (self.found && self.client_id.is_some()) {
            return;
        }
        let text = if self.carry.is_empty() {
            chunk
        } else {
            self.carry.push_str(chunk);
            self.carry.as_str()
        };
        if !self.found {
            self.found = text_sets_code(text.as_bytes(), false);
        }
        if self.client_id.is_none() {
            self.client_id = assigned_client_id(text.as_bytes()).map(str::to_owned);
        }
        if !(self.found && self.client_id.is_some()) {
            let joined = if self.carry.is_empty() {
                chunk
            } else {
                self.carry.as_str()
            };
            let mut start = joined.len().saturating_sub(CARRY);
            while !joined.is_char_boundary(start) {
                start += 1;
            }
            // In place: the carry is reused from chunk to chunk.
            if self.carry.is_empty() {
                self.carry.push_str(&chunk[start..]);
            } else {
                self.carry.drain(..start);
            }
        }
    }

    /// Whether the whole text, now complete, sets a code.
    pub fn finish(&mut self) -> bool {
        self.found || text_sets_code(self.carry.as_bytes(), true)
    }

    /// The client ID the text assigns, if seen (see [`assigned_client_id`]).
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_loader_is_a_code() {
        let vendor =
            "var _smid = \"abc\";\n(function(w, r, a, sm, s ) {\nw['SalesmanagoObject'] = r;";
        assert!(text_sets_code(vendor.as_bytes(), true));
        assert!(text_sets_code(b"window._smid='x'", true));
        assert!(text_sets_code(b"w[\"SalesmanagoObject\"]=r", true));
    }

    #[test]
    fn reading_the_variables_is_not_a_code() {
        assert!(!text_sets_code(b"if (window._smid == 'x') {}", true));
        assert!(!text_sets_code(b"console.log(_smid)", true));
        assert!(!text_sets_code(b"var SalesmanagoObjectName", true));
        assert!(!text_sets_code(b"var x = 1;", true));
    }

    #[test]
    fn markers_split_across_chunks_are_found() {
        let text = "var a=1; var _smid = 'x';";
        for cut in 0..text.len() {
            let mut s = TextScanner::default();
            s.feed(&text[..cut]);
            s.feed(&text[cut..]);
            assert!(s.finish(), "cut at {cut}");
        }
    }

    #[test]
    fn comparison_split_after_the_equals_sign_is_not_a_code() {
        let text = "if (window._smid == 'x') {}";
        for cut in 0..text.len() {
            let mut s = TextScanner::default();
            s.feed(&text[..cut]);
            s.feed(&text[cut..]);
            assert!(!s.finish(), "cut at {cut}");
        }
    }

    #[test]
    fn the_client_id_of_a_code_is_read() {
        assert_eq!(
            assigned_client_id(b"var _smid = \"abc-1_Z\";"),
            Some("abc-1_Z")
        );
        assert_eq!(assigned_client_id(b"window._smid='x'"), Some("x"));
        assert_eq!(assigned_client_id(b"{\"_smid\": \"q9\"}"), Some("q9"));
        assert_eq!(
            assigned_client_id(b"if (_smid == 'x') {}; var _smid = id;"),
            None
        );
        assert_eq!(assigned_client_id(b"_smid = 'has space'"), None);
        assert_eq!(assigned_client_id(b"_smid = 'unterminated"), None);
        let text = "var a=1; var _smid = 'other-client';";
        for cut in 0..text.len() {
            let mut s = TextScanner::default();
            s.feed(&text[..cut]);
            s.feed(&text[cut..]);
            assert!(s.finish(), "cut at {cut}");
            assert_eq!(s.client_id(), Some("other-client"), "cut at {cut}");
        }
    }

    #[test]
    fn sources() {
        assert!(is_code_src(
            "https://www.salesmanago.pl/static/sm.js",
            "/_sm/sm.js"
        ));
        assert!(is_code_src("//cdn.example/static/sm.js?v=1", "/_sm/sm.js"));
        assert!(is_code_src("/_sm/sm.js?v=abc", "/_sm/sm.js"));
        assert!(is_code_src("https://shop.example/_sm/sm.js", "/_sm/sm.js"));
        assert!(!is_code_src("/static/sm.json", "/_sm/sm.js"));
        assert!(!is_code_src("/js/app.js", "/_sm/sm.js"));
    }

    #[test]
    fn executable_types() {
        assert!(is_executable_type(None));
        assert!(is_executable_type(Some("text/javascript")));
        assert!(is_executable_type(Some(" Module ")));
        assert!(!is_executable_type(Some("application/ld+json")));
        assert!(!is_executable_type(Some("text/template")));
    }
}
