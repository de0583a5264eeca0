//! The streaming rewriter: feeds an HTML body through lol_html chunk by chunk and inserts the
//! snippet exactly once, before the anchor the parser finds, without ever holding the page.
//!
//! Rules (design.md §3): a page that already carries a code gets nothing; with
//! `duplicates: remove` every code after the first is removed. Our own injection counts as the
//! first code, so an origin code that appears after it is always removed: the proxy must never
//! be the cause of a double count.
//!
//! Removing an inline duplicate needs its whole text before deciding, so once a code is in the
//! page the text of later scripts that mention a marker early (within [`HOLD_PROBE`] bytes) is
//! held (up to [`SCRIPT_HOLD_LIMIT`]) and given back unchanged unless it turns out to be a code.
//! Other scripts, and every script before a code is found, are only scanned.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use lol_html::html_content::ContentType;
use lol_html::send::{HtmlRewriter, Settings};
use lol_html::{bail_out, element, end, end_tag, text, MemorySettings, OutputSink};

use super::charset::{has_utf16_bom, rewriting_encoding, Charset};
use super::detect::{self, TextScanner};
use crate::config::{Duplicates, Position};

/// Longest script text held back to decide whether it is a duplicate code. The vendor's loader
/// is about 500 bytes; a longer script is given back as it streams and only scanned.
pub const SCRIPT_HOLD_LIMIT: usize = 16 * 1024;

/// A held script whose first bytes name no marker is released at once (see the text handler).
pub const HOLD_PROBE: usize = 512;

/// Where the snippet went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    HeadEnd,
    BodyEnd,
    DocumentEnd,
}

/// What happened to one document.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Where the snippet was inserted, if it was.
    pub injected: Option<Anchor>,
    /// The origin's page carried a code before any injection point, so nothing was added.
    pub already_tagged: bool,
    /// Codes removed because one came first.
    pub duplicates_removed: u32,
    /// Codes after the first that were left in place (`duplicates: keep`, or too long to hold).
    pub duplicates_kept: u32,
    /// The rewriter gave up (memory limit); the rest of the page went through unchanged.
    pub failure: Option<String>,
    /// The body could not be rewritten at all (UTF-16 byte-order mark): passed through.
    pub unsupported_charset: bool,
    /// Codes in the origin's page that set another client ID than ours (a site left with an
    /// old or wrong code: the install status warns about it).
    pub foreign_client_ids: u32,
}

/// Per-response settings of the injector.
#[derive(Debug, Clone)]
pub struct InjectorOptions {
    /// The `<script>` element to insert (with the page's CSP nonce, if any).
    pub snippet: Arc<str>,
    pub position: Position,
    pub duplicates: Duplicates,
    pub tracker_path: Arc<str>,
    /// Our client ID, to recognise codes that set another one.
    pub client_id: Arc<str>,
    pub charset: Charset,
    /// lol_html's memory limit for this response.
    pub max_buffer_bytes: usize,
}

struct ScriptScan {
    hold: bool,
    held: String,
    scanner: TextScanner,
}

#[derive(Default)]
struct State {
    out: BytesMut,
    /// A code is in the output (the origin's, or ours).
    code_present: bool,
    script: Option<ScriptScan>,
    outcome: Outcome,
}

enum Verdict {
    Keep,
    Remove,
}

impl State {
    fn may_inject(&self) -> bool {
        !self.code_present
    }

    fn injected(&mut self, at: Anchor) {
        self.code_present = true;
        self.outcome.injected = Some(at);
    }

    /// Whether a code found now could be removed, so later script text must be held.
    fn removal_possible(&self, duplicates: Duplicates) -> bool {
        self.code_present && (self.outcome.injected.is_some() || duplicates == Duplicates::Remove)
    }

    fn code_found(&mut self, duplicates: Duplicates, removable: bool) -> Verdict {
        if !self.code_present {
            self.code_present = true;
            self.outcome.already_tagged = true;
            Verdict::Keep
        } else if removable && (self.outcome.injected.is_some() || duplicates == Duplicates::Remove)
        {
            self.outcome.duplicates_removed += 1;
            Verdict::Remove
        } else {
            self.outcome.duplicates_kept += 1;
            Verdict::Keep
        }
    }
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    // Handlers never panic while holding the lock; a poisoned lock still holds valid state.
    s.lock().unwrap_or_else(|e| e.into_inner())
}

struct Sink(Shared);

impl OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        lock(&self.0).out.extend_from_slice(chunk);
    }
}

/// One response body being rewritten. Not `Sync` (lol_html's rewriter is only `Send`).
pub struct Injector {
    rewriter: Option<HtmlRewriter<'static, Sink>>,
    shared: Shared,
    started: bool,
}

impl Injector {
    pub fn new(opts: InjectorOptions) -> Self {
        let shared: Shared = Arc::new(Mutex::new(State::default()));
        if opts.charset == Charset::Unsupported {
            let mut st = lock(&shared);
            st.outcome.unsupported_charset = true;
            drop(st);
            return Injector {
                rewriter: None,
                shared,
                started: true,
            };
        }

        let dup = opts.duplicates;
        let tracker_path = opts.tracker_path.clone();
        let client_id = opts.client_id.clone();

        let sh = shared.clone();
        let script_start = element!("script", move |el| {
            let mut st = lock(&sh);
            st.script = None;
            if !detect::is_executable_type(el.get_attribute("type").as_deref()) {
                return Ok(());
            }
            if let Some(src) = el.get_attribute("src") {
                // A script with src runs the file, never its own text.
                if detect::is_code_src(&src, &tracker_path) {
                    if let Verdict::Remove = st.code_found(dup, true) {
                        el.remove();
                    }
                }
                return Ok(());
            }
            let hold = st.removal_possible(dup);
            st.script = Some(ScriptScan {
                hold,
                held: String::new(),
                scanner: TextScanner::default(),
            });
            Ok(())
        });

        let sh = shared.clone();
        let script_text = text!("script", move |t| {
            let mut st = lock(&sh);
            let Some(scan) = st.script.as_mut() else {
                return Ok(());
            };
            let s = t.as_str();
            if scan.hold {
                // The vendor's code sets `_smid` in its first line: a script whose first
                // HOLD_PROBE bytes name neither marker is not a code we could remove, and goes
                // through as it streams, without a copy.
                let probe_clear = {
                    let held = scan.held.as_bytes();
                    let take = (HOLD_PROBE + 32).saturating_sub(held.len()).min(s.len());
                    held.len() + s.len() >= HOLD_PROBE
                        && !detect::mentions_marker(held)
                        && !detect::mentions_marker(&s.as_bytes()[..take])
                };
                if probe_clear || scan.held.len() + s.len() > SCRIPT_HOLD_LIMIT {
                    scan.hold = false;
                    let held = std::mem::take(&mut scan.held);
                    scan.scanner.feed(&held);
                    scan.scanner.feed(s);
                    if !held.is_empty() {
                        t.before(&held, ContentType::Html);
                    }
                } else {
                    scan.held.push_str(s);
                    t.remove();
                }
            } else {
                scan.scanner.feed(s);
            }
            if !t.last_in_text_node() {
                return Ok(());
            }
            let Some(mut scan) = st.script.take() else {
                return Ok(());
            };
            let (is_code, their_id) = if scan.hold {
                let text = scan.held.as_bytes();
                (
                    detect::text_sets_code(text, true),
                    detect::assigned_client_id(text),
                )
            } else {
                (scan.scanner.finish(), scan.scanner.client_id())
            };
            if is_code && their_id.is_some_and(|id| id != &*client_id) {
                st.outcome.foreign_client_ids += 1;
            }
            let verdict = if is_code {
                st.code_found(dup, scan.hold)
            } else {
                Verdict::Keep
            };
            if let (Verdict::Keep, true) = (verdict, scan.hold) {
                if !scan.held.is_empty() {
                    t.replace(&scan.held, ContentType::Html);
                }
            }
            Ok(())
        });

        let anchor_handler = |sh: Shared, snippet: Arc<str>, at: Anchor| {
            move |el: &mut lol_html::send::Element<'_, '_>| {
                let sh = sh.clone();
                let snippet = snippet.clone();
                el.on_end_tag(end_tag!(move |end| {
                    let mut st = lock(&sh);
                    if st.may_inject() {
                        end.before(&snippet, ContentType::Html);
                        st.injected(at);
                    }
                    Ok(())
                }))
            }
        };

        let mut settings = Settings::new_send()
            .with_strict(false)
            .with_encoding(rewriting_encoding())
            .with_graceful_bail_out_on_content_handler_error(true)
            .with_memory_settings(
                MemorySettings::new()
                    .with_max_allowed_memory_usage(opts.max_buffer_bytes)
                    .with_graceful_bail_out_on_memory_limit_exceeded(true),
            )
            .append_element_content_handler(script_start)
            .append_element_content_handler(script_text);
        if opts.position == Position::HeadEnd {
            settings = settings.append_element_content_handler(element!(
                "head",
                anchor_handler(shared.clone(), opts.snippet.clone(), Anchor::HeadEnd)
            ));
        }
        // </body> is the anchor for body_end, and the fallback for head_end when </head> is
        // omitted (legal HTML); then the document end.
        settings = settings.append_element_content_handler(element!(
            "body",
            anchor_handler(shared.clone(), opts.snippet.clone(), Anchor::BodyEnd)
        ));
        let sh = shared.clone();
        let snippet = opts.snippet.clone();
        settings = settings.append_document_content_handler(end!(move |end| {
            let inject = {
                let mut st = lock(&sh);
                let may = st.may_inject();
                if may {
                    st.injected(Anchor::DocumentEnd);
                }
                may
            };
            // DocumentEnd writes straight to the sink, which takes the lock: release it first.
            if inject {
                end.append(&snippet, ContentType::Html);
            }
            Ok(())
        }));
        let sh = shared.clone();
        settings = settings.append_bail_out_handler(bail_out!(move |_err, bail| {
            // Held script text precedes the input that lol_html flushes raw after this.
            let held = lock(&sh).script.take().filter(|s| s.hold).map(|s| s.held);
            // BailOut writes straight to the sink, which takes the lock: released above.
            if let Some(held) = held.filter(|h| !h.is_empty()) {
                bail.append(&held, ContentType::Html);
            }
        }));

        let rewriter = HtmlRewriter::new(settings, Sink(shared.clone()));
        Injector {
            rewriter: Some(rewriter),
            shared,
            started: false,
        }
    }

    /// Rewrites one chunk; returns what can be sent now (possibly empty).
    pub fn write(&mut self, chunk: Bytes) -> Bytes {
        // The byte-order mark is in the first bytes of the (decoded) body, whichever chunk
        // brings them.
        if !self.started && !chunk.is_empty() {
            self.started = true;
            if has_utf16_bom(&chunk) {
                self.rewriter = None;
                lock(&self.shared).outcome.unsupported_charset = true;
                return chunk;
            }
        }
        let Some(rw) = self.rewriter.as_mut() else {
            return chunk;
        };
        if let Err(e) = rw.write(&chunk) {
            // Graceful bail-out: lol_html has flushed every byte it had not emitted, as is.
            self.rewriter = None;
            lock(&self.shared).outcome.failure = Some(e.to_string());
        }
        self.take_output()
    }

    /// Ends the document (runs the document-end fallback); returns the last bytes to send.
    pub fn finish(&mut self) -> Bytes {
        if let Some(rw) = self.rewriter.take() {
            if let Err(e) = rw.end() {
                lock(&self.shared).outcome.failure = Some(e.to_string());
            }
        }
        self.take_output()
    }

    pub fn outcome(&self) -> Outcome {
        lock(&self.shared).outcome.clone()
    }

    fn take_output(&mut self) -> Bytes {
        lock(&self.shared).out.split().freeze()
    }
}

/// Rewrites a whole document at once (tests, benchmarks, the fuzzer).
pub fn rewrite_all(opts: InjectorOptions, input: &[u8], chunk: usize) -> (Vec<u8>, Outcome) {
    let mut inj = Injector::new(opts);
    let mut out = Vec::with_capacity(input.len() + 1024);
    for c in input.chunks(chunk.max(1)) {
        out.extend_from_slice(&inj.write(Bytes::copy_from_slice(c)));
    }
    out.extend_from_slice(&inj.finish());
    (out, inj.outcome())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNIP: &str = "<script>var _smid='X';</script>";

    fn opts(position: Position, duplicates: Duplicates) -> InjectorOptions {
        InjectorOptions {
            snippet: Arc::from(SNIP),
            position,
            duplicates,
            tracker_path: Arc::from("/_sm/sm.js"),
            client_id: Arc::from("testclient"),
            charset: Charset::Undeclared,
            max_buffer_bytes: 1 << 20,
        }
    }

    /// Rewrites `input` whole and at every chunk size up to 64 (and a few random cuts), and
    /// checks all give the same output.
    fn run(input: &str, o: InjectorOptions) -> (String, Outcome) {
        let (whole, outcome) = rewrite_all(o.clone(), input.as_bytes(), input.len().max(1));
        for size in 1..=64.min(input.len().max(1)) {
            let (out, oc) = rewrite_all(o.clone(), input.as_bytes(), size);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&whole),
                "chunk size {size}"
            );
            assert_eq!(oc, outcome, "chunk size {size}");
        }
        (String::from_utf8(whole).unwrap(), outcome)
    }

    fn head(input: &str) -> (String, Outcome) {
        run(input, opts(Position::HeadEnd, Duplicates::Remove))
    }

    #[test]
    fn before_head_end() {
        let (out, oc) = head("<html><head><title>t</title></head><body>x</body></html>");
        assert_eq!(
            out,
            format!("<html><head><title>t</title>{SNIP}</head><body>x</body></html>")
        );
        assert_eq!(oc.injected, Some(Anchor::HeadEnd));
    }

    #[test]
    fn upper_case_anchor() {
        let (out, _) = head("<HTML><HEAD><TITLE>t</TITLE></HEAD><BODY>x</BODY></HTML>");
        assert_eq!(
            out,
            format!("<HTML><HEAD><TITLE>t</TITLE>{SNIP}</HEAD><BODY>x</BODY></HTML>")
        );
    }

    #[test]
    fn anchors_that_are_not_tags_are_ignored() {
        let input = "<html><head><script>var s='</head>';</script><!-- </head> -->\
<meta content=\"</head>\"></head><body><textarea></head></body></textarea></body></html>";
        let (out, oc) = head(input);
        let expected = input.replacen("\"></head>", &format!("\">{SNIP}</head>"), 1);
        assert_eq!(out, expected);
        assert_eq!(oc.injected, Some(Anchor::HeadEnd));
    }

    #[test]
    fn omitted_head_and_body_fall_back_to_document_end() {
        let (out, oc) = head("<!doctype html><title>t</title><p>hello");
        assert_eq!(
            out,
            format!("<!doctype html><title>t</title><p>hello{SNIP}")
        );
        assert_eq!(oc.injected, Some(Anchor::DocumentEnd));
    }

    #[test]
    fn omitted_head_end_falls_back_to_body_end() {
        let (out, oc) = head("<html><head><title>t</title><body><p>x</p></body></html>");
        assert_eq!(
            out,
            format!("<html><head><title>t</title><body><p>x</p>{SNIP}</body></html>")
        );
        assert_eq!(oc.injected, Some(Anchor::BodyEnd));
    }

    #[test]
    fn body_end_position() {
        let (out, oc) = run(
            "<html><head></head><body><p>x</p></body></html>",
            opts(Position::BodyEnd, Duplicates::Remove),
        );
        assert_eq!(
            out,
            format!("<html><head></head><body><p>x</p>{SNIP}</body></html>")
        );
        assert_eq!(oc.injected, Some(Anchor::BodyEnd));
    }

    #[test]
    fn existing_code_in_head_means_nothing_injected() {
        let input = "<html><head><script>var _smid = 'abc';</script></head><body></body></html>";
        let (out, oc) = head(input);
        assert_eq!(out, input);
        assert!(oc.already_tagged);
        assert_eq!(oc.injected, None);
    }

    #[test]
    fn a_code_with_another_client_id_is_counted() {
        let input = "<html><head><script>var _smid = 'abc';</script></head><body></body></html>";
        assert_eq!(head(input).1.foreign_client_ids, 1);
        let ours = "<html><head><script>var _smid = 'testclient';</script></head></html>";
        assert_eq!(head(ours).1.foreign_client_ids, 0);
    }

    #[test]
    fn existing_src_code_means_nothing_injected() {
        let input =
            "<html><head><script src=\"https://cdn.example/static/sm.js\"></script></head></html>";
        let (out, oc) = head(input);
        assert_eq!(out, input);
        assert!(oc.already_tagged);
    }

    #[test]
    fn double_code_with_remove_keeps_the_first() {
        let code = "<script>var _smid = 'abc'; w['SalesmanagoObject'] = r;</script>";
        let input = format!(
            "<html><head>{code}</head><body><p>x</p>{code}<script>var ok=1;</script></body></html>"
        );
        let (out, oc) = head(&input);
        assert_eq!(
            out,
            format!("<html><head>{code}</head><body><p>x</p><script></script><script>var ok=1;</script></body></html>")
        );
        assert!(oc.already_tagged);
        assert_eq!(oc.duplicates_removed, 1);
    }

    #[test]
    fn double_code_with_keep_is_left_alone() {
        let code = "<script>var _smid = 'abc';</script>";
        let input = format!("<html><head>{code}</head><body>{code}</body></html>");
        let (out, oc) = run(&input, opts(Position::HeadEnd, Duplicates::Keep));
        assert_eq!(out, input);
        assert_eq!(oc.duplicates_kept, 1);
    }

    #[test]
    fn origin_code_after_our_injection_is_removed_even_with_keep() {
        let code = "<script>var _smid = 'abc';</script>";
        let input = format!("<html><head></head><body>{code}</body></html>");
        let (out, oc) = run(&input, opts(Position::HeadEnd, Duplicates::Keep));
        assert_eq!(
            out,
            format!("<html><head>{SNIP}</head><body><script></script></body></html>")
        );
        assert_eq!(oc.injected, Some(Anchor::HeadEnd));
        assert_eq!(oc.duplicates_removed, 1);
    }

    #[test]
    fn json_and_reading_scripts_are_not_codes() {
        let input = "<html><head><script type=\"application/ld+json\">{\"_smid\": 1}</script>\
<script>if (window._smid == 'x') {}</script></head><body></body></html>";
        let (out, oc) = head(input);
        assert!(oc.injected.is_some());
        assert!(!oc.already_tagged);
        assert_eq!(out.matches(SNIP).count(), 1);
    }

    #[test]
    fn scripts_after_injection_are_given_back_unchanged() {
        let input = "<html><head></head><body><script>var a = '<\u{e9}>' + \"</scr\" + 1;</script>\
<script></script><script src=x.js></script></body></html>";
        let (out, _) = head(input);
        assert_eq!(out, input.replacen("</head>", &format!("{SNIP}</head>"), 1));
    }

    #[test]
    fn a_late_marker_in_a_long_script_is_counted_not_removed() {
        let code = "<script>var _smid = 'abc';</script>";
        let filler = "/* ".to_string() + &"x".repeat(HOLD_PROBE * 2) + " */";
        let input = format!("<html><head>{code}</head><body><script>{filler} var _smid = 'b';</script></body></html>");
        let (out, oc) = head(&input);
        assert_eq!(out, input);
        assert_eq!(oc.duplicates_kept, 1);
        assert_eq!(oc.duplicates_removed, 0);
    }

    #[test]
    fn long_scripts_stream_through() {
        let long = "x".repeat(SCRIPT_HOLD_LIMIT * 3);
        let input =
            format!("<html><head></head><body><script>var a='{long}';</script></body></html>");
        let (out, _) = rewrite_all(
            opts(Position::HeadEnd, Duplicates::Remove),
            input.as_bytes(),
            1000,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            input.replacen("</head>", &format!("{SNIP}</head>"), 1)
        );
    }

    #[test]
    fn windows_1252_bytes_survive() {
        let mut o = opts(Position::HeadEnd, Duplicates::Remove);
        o.charset = super::super::charset::from_content_type("text/html; charset=windows-1252");
        let input: Vec<u8> = b"<html><head><title>caf\xe9</title></head><body><script>var s='\xe9\x80\x81';</script></body></html>".to_vec();
        let (out, oc) = rewrite_all(o, &input, 7);
        let mut expected = input.clone();
        let at = expected.windows(7).position(|w| w == b"</head>").unwrap();
        expected.splice(at..at, SNIP.bytes());
        assert_eq!(out, expected);
        assert!(oc.injected.is_some());
    }

    #[test]
    fn invalid_utf8_survives() {
        let input: &[u8] =
            b"<html><head></head><body><script>var s='\xff\xfe\xc3';</script></body></html>";
        let (out, _) = rewrite_all(opts(Position::HeadEnd, Duplicates::Remove), input, 5);
        let mut expected = input.to_vec();
        let at = expected.windows(7).position(|w| w == b"</head>").unwrap();
        expected.splice(at..at, SNIP.bytes());
        assert_eq!(out, expected);
    }

    #[test]
    fn utf16_passes_through() {
        let mut o = opts(Position::HeadEnd, Duplicates::Remove);
        o.charset = Charset::Unsupported;
        let input = b"\xff\xfe<\x00h\x00";
        let (out, oc) = rewrite_all(o, input, 3);
        assert_eq!(out, input);
        assert!(oc.unsupported_charset);
        let (out, oc) = rewrite_all(opts(Position::HeadEnd, Duplicates::Remove), input, 3);
        assert_eq!(out, input);
        assert!(oc.unsupported_charset);
    }

    #[test]
    fn memory_limit_fails_open_with_the_rest_unchanged() {
        let mut o = opts(Position::HeadEnd, Duplicates::Remove);
        o.max_buffer_bytes = 2048;
        let big_attr = "a".repeat(10_000);
        let input = format!("<html><head><title>t</title></head><body><script data-x=\"{big_attr}\"></script><p>end</p></body></html>");
        let (out, oc) = rewrite_all(o, input.as_bytes(), 512);
        assert!(oc.failure.is_some());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            input.replacen("</head>", &format!("{SNIP}</head>"), 1)
        );
    }

    #[test]
    fn xhtml_snippet_is_well_formed() {
        let s = crate::snippet::Snippet::new("abc", "/_sm/sm.js");
        let body = s
            .html()
            .trim_start_matches("<script>")
            .trim_end_matches("</script>");
        assert!(!body.contains('&') && !body.contains('<'), "{body}");
    }
}
