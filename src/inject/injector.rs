//! The streaming rewriter: feeds an HTML body through lol_html chunk by chunk and inserts the
//! snippet exactly once, before the anchor the parser finds, without ever holding the page.
//!
//! Rules (design.md §3): a page that already carries a code gets nothing; with
//! `duplicates: remove` every code after the first is removed. Our own injection counts as the
//! first code, so an origin code that appears after it is always removed: the proxy must never
//! be the cause of a double count.
//!
//! Removing an inline duplicate needs its whole text before deciding, so once a code is in the
//! page the text of later scripts that name a marker in their first [`HOLD_PROBE`] bytes is
//! held (up to [`SCRIPT_HOLD_LIMIT`]) and given back unchanged unless it turns out to be a code.
//! Other scripts, and every script before a code is found, are only scanned.
//!
//! Once a code is in the page at the end of `</head>` (the usual case: ours, just injected),
//! the rest of the page is not parsed unless it names a marker (see [`super::tail`]). To hand
//! over in a known parser state, the input is cut right after each possible `</head ...>` before
//! it reaches lol_html; [`Injector::parsing_everything`] is the same rewriter without the fast
//! path, which the tests compare it with.
//!
//! With `position: head_end` the head is not parsed either, as a rule: [`super::head`]'s scan
//! finds `</head>` while the bytes go out as they arrive (only a possible start of `</head>`
//! waits for the next chunk). Should the scan give up, lol_html reads the page from its first
//! byte, and what it gives for the bytes already sent is checked against them and dropped, as
//! after a restart of the tail.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use bytes::{Buf, Bytes, BytesMut};
use lol_html::html_content::{ContentType, TextChunk};
use lol_html::send::{Element, ElementContentHandlers, HtmlRewriter, Settings};
use lol_html::{bail_out, end, end_tag, MemorySettings, OutputSink, Selector};

use super::charset::{has_utf16_bom, rewriting_encoding, Charset};
use super::detect::{self, TextScanner};
use super::head::{HeadScan, Scan};
use super::tail::{Kept, Tail};
use crate::config::{Duplicates, Position};

/// Longest script text held back to decide whether it is a duplicate code. The vendor's loader
/// is about 500 bytes; a longer script is given back as it streams and only scanned.
pub const SCRIPT_HOLD_LIMIT: usize = 16 * 1024;

/// A held script whose first `HOLD_PROBE` bytes name no marker is released at once (see the
/// text handler).
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
    /// Where the start tag ended: text that does not begin there (after a comment, in SVG) is
    /// never held.
    tag_end: usize,
    /// A text chunk of this script was seen.
    seen_text: bool,
    held: String,
    scanner: TextScanner,
}

/// Drops the start of a restarted rewriter's output, which repeats bytes already sent, after
/// checking that it does.
struct Skip {
    expect: Vec<Bytes>,
    idx: usize,
    off: usize,
    left: usize,
    diverged: bool,
}

impl Skip {
    fn new(expect: Vec<Bytes>, len: usize) -> Self {
        Skip {
            expect,
            idx: 0,
            off: 0,
            left: len,
            diverged: false,
        }
    }

    /// Consumes the part of `chunk` that repeats sent bytes; returns the rest.
    fn consume<'a>(&mut self, mut chunk: &'a [u8]) -> &'a [u8] {
        while self.left > 0 && !chunk.is_empty() && !self.diverged {
            let e = &self.expect[self.idx][self.off..];
            let n = e.len().min(chunk.len());
            if e[..n] != chunk[..n] {
                self.diverged = true;
                break;
            }
            chunk = &chunk[n..];
            self.left -= n;
            self.off += n;
            if self.off == self.expect[self.idx].len() {
                self.idx += 1;
                self.off = 0;
            }
        }
        if self.diverged {
            &[]
        } else {
            chunk
        }
    }
}

#[derive(Default)]
struct State {
    out: BytesMut,
    /// A code is in the output (the origin's, or ours).
    code_present: bool,
    script: Option<ScriptScan>,
    outcome: Outcome,
    /// Where the parser found the end of `</head>`, in bytes of its input.
    head_end_at: Option<usize>,
    /// An `<svg>` or `<math>` start tag was seen (the parser may be in foreign content).
    foreign: bool,
    /// Output of a restarted rewriter still to be dropped.
    skip: Option<Skip>,
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

    /// Output, less what a restarted rewriter repeats.
    fn emit(&mut self, chunk: &[u8]) {
        let rest = match self.skip.as_mut() {
            Some(skip) => {
                let rest = skip.consume(chunk);
                if skip.left == 0 {
                    self.skip = None;
                }
                rest
            }
            None => chunk,
        };
        self.out.extend_from_slice(rest);
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
        lock(&self.0).emit(chunk);
    }
}

/// Whether the first `HOLD_PROBE` bytes of `held` followed by `s` name a marker (so the
/// answer does not depend on where the parser cut the text).
fn probe_names_marker(held: &str, s: &str) -> bool {
    let take = HOLD_PROBE.saturating_sub(held.len()).min(s.len());
    if held.is_empty() {
        return detect::mentions_marker(&s.as_bytes()[..take]);
    }
    let mut window = Vec::with_capacity(held.len() + take);
    window.extend_from_slice(held.as_bytes());
    window.extend_from_slice(&s.as_bytes()[..take]);
    detect::mentions_marker(&window)
}

static SCRIPT: LazyLock<Selector> = LazyLock::new(|| parse_selector("script"));
static HEAD: LazyLock<Selector> = LazyLock::new(|| parse_selector("head"));
static BODY: LazyLock<Selector> = LazyLock::new(|| parse_selector("body"));
static FOREIGN: LazyLock<Selector> = LazyLock::new(|| parse_selector("svg, math"));

fn parse_selector(s: &str) -> Selector {
    s.parse().expect("a valid selector")
}

fn rewriter(opts: &InjectorOptions, shared: &Shared) -> HtmlRewriter<'static, Sink> {
    let dup = opts.duplicates;
    let tracker_path = opts.tracker_path.clone();
    let client_id = opts.client_id.clone();

    let sh = shared.clone();
    let script_start = move |el: &mut Element<'_, '_>| {
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
            tag_end: el.source_location().bytes().end,
            seen_text: false,
            held: String::new(),
            scanner: TextScanner::default(),
        });
        Ok(())
    };

    let sh = shared.clone();
    let script_text = move |t: &mut TextChunk<'_>| {
        let mut st = lock(&sh);
        let Some(scan) = st.script.as_mut() else {
            return Ok(());
        };
        let s = t.as_str();
        if !scan.seen_text {
            scan.seen_text = true;
            // Only text that starts right after the start tag is held: a code is plain script
            // text, and the fast path relies on where the held bytes can be.
            if t.source_location().bytes().start != scan.tag_end {
                scan.hold = false;
            }
        }
        if scan.hold {
            // The vendor's code sets `_smid` in its first line: a script whose first
            // HOLD_PROBE bytes name neither marker is not a code we could remove, and goes
            // through as it streams, without a copy.
            let probe_clear = scan.held.len() < HOLD_PROBE
                && scan.held.len() + s.len() >= HOLD_PROBE
                && !probe_names_marker(&scan.held, s);
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
    };

    let script = ElementContentHandlers::default()
        .element(script_start)
        .text(script_text);

    // The end of `</head>` is recorded whatever the position: it is where the fast path can
    // take over.
    let sh = shared.clone();
    let snippet = opts.snippet.clone();
    let at_head = opts.position == Position::HeadEnd;
    let head = ElementContentHandlers::default().element(move |el: &mut Element<'_, '_>| {
        let sh = sh.clone();
        let snippet = snippet.clone();
        el.on_end_tag(end_tag!(move |end| {
            let mut st = lock(&sh);
            if at_head && st.may_inject() {
                end.before(&snippet, ContentType::Html);
                st.injected(Anchor::HeadEnd);
            }
            st.head_end_at = Some(end.source_location().bytes().end);
            Ok(())
        }))
    });

    // </body> is the anchor for body_end, and the fallback for head_end when </head> is
    // omitted (legal HTML); then the document end.
    let sh = shared.clone();
    let snippet = opts.snippet.clone();
    let body = ElementContentHandlers::default().element(move |el: &mut Element<'_, '_>| {
        let sh = sh.clone();
        let snippet = snippet.clone();
        el.on_end_tag(end_tag!(move |end| {
            let mut st = lock(&sh);
            if st.may_inject() {
                end.before(&snippet, ContentType::Html);
                st.injected(Anchor::BodyEnd);
            }
            Ok(())
        }))
    });

    let sh = shared.clone();
    let foreign = ElementContentHandlers::default().element(move |_el: &mut Element<'_, '_>| {
        lock(&sh).foreign = true;
        Ok(())
    });

    let sh = shared.clone();
    let snippet = opts.snippet.clone();
    let document_end = end!(move |end| {
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
    });

    let sh = shared.clone();
    let bail = bail_out!(move |_err, bail| {
        // Held script text precedes the input that lol_html flushes raw after this.
        let held = lock(&sh).script.take().filter(|s| s.hold).map(|s| s.held);
        // BailOut writes straight to the sink, which takes the lock: released above.
        if let Some(held) = held.filter(|h| !h.is_empty()) {
            bail.append(&held, ContentType::Html);
        }
    });

    let settings = Settings::new_send()
        .with_strict(false)
        .with_encoding(rewriting_encoding())
        .with_graceful_bail_out_on_content_handler_error(true)
        .with_memory_settings(
            MemorySettings::new()
                .with_max_allowed_memory_usage(opts.max_buffer_bytes)
                .with_graceful_bail_out_on_memory_limit_exceeded(true),
        )
        .append_element_content_handler((Cow::Borrowed(&*SCRIPT), script))
        .append_element_content_handler((Cow::Borrowed(&*HEAD), head))
        .append_element_content_handler((Cow::Borrowed(&*BODY), body))
        .append_element_content_handler((Cow::Borrowed(&*FOREIGN), foreign))
        .append_document_content_handler(document_end)
        .append_bail_out_handler(bail);
    HtmlRewriter::new(settings, Sink(shared.clone()))
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t' | b'\x0C')
}

/// Finds where a `</head>` end tag may end, so the parser can be stopped right there and the
/// fast path take over from a known state.
#[derive(Default)]
struct HeadCut {
    /// Bytes of `</head` matched; 7: a space or `/` followed, the tag ends at the next `>`.
    matched: usize,
}

impl HeadCut {
    /// The index just past the next possible end of `</head>` in `s`.
    fn next(&mut self, s: &[u8]) -> Option<usize> {
        const NAME: &[u8] = b"</head";
        let mut i = 0;
        while i < s.len() {
            match self.matched {
                0 => {
                    let j = memchr::memchr(b'<', &s[i..])?;
                    i += j + 1;
                    self.matched = 1;
                }
                7 => {
                    let j = memchr::memchr(b'>', &s[i..])?;
                    self.matched = 0;
                    return Some(i + j + 1);
                }
                6 => {
                    let b = s[i];
                    if b == b'>' {
                        self.matched = 0;
                        return Some(i + 1);
                    } else if is_space(b) || b == b'/' {
                        self.matched = 7;
                        i += 1;
                    } else {
                        // `</header`: read this byte again from the start.
                        self.matched = 0;
                    }
                }
                n => {
                    if s[i].to_ascii_lowercase() == NAME[n] {
                        self.matched += 1;
                        i += 1;
                    } else {
                        self.matched = 0;
                    }
                }
            }
        }
        None
    }
}

enum Mode {
    /// Before `</head>`, with the head scan (see [`super::head`]): bytes are held until it
    /// finds the end tag or gives up.
    Head(Box<HeadHeld>),
    /// lol_html parses every byte.
    Parse(Box<HtmlRewriter<'static, Sink>>),
    /// After `</head>`: bytes pass through until a marker appears.
    Tail(Box<Tail>),
    /// Nothing more to do: the rest passes through unchanged.
    Pass,
}

/// The most head bytes kept for the head scan (the chunks as received, not copies, which the
/// parser reads again from byte 0 should the scan give up): past this the head is parsed.
/// The longest head of the corpus is 73 KB. lol_html's memory limit may make this lower, so
/// that the parser could never have failed on them.
const HEAD_LIMIT: usize = 128 * 1024;

/// The most chunks the head scan reads again its unfinished part of.
const HEAD_CHUNKS: usize = 64;

/// The head while it is scanned. Bytes go out as they arrive, as themselves, unless they may
/// be the start of `</head>` (where the snippet goes) or another end tag that ends the head:
/// should the scan give up later, the parser reads the page again from byte 0 and what it
/// gives for the bytes already sent is checked and dropped. Only the construct cut between two
/// chunks is copied (into `cut`), so that the scan can read it whole, and the chunk that holds
/// `</head>`, to put the snippet in.
struct HeadHeld {
    scan: HeadScan,
    /// The page from its first byte, for the parser should the scan give up.
    chunks: Vec<Bytes>,
    /// Bytes received.
    len: usize,
    /// Bytes sent.
    sent: usize,
    /// The bytes from `sent` to `len`, not sent yet: a few, that may begin `</head>`.
    unsent: Bytes,
    /// A copy of the bytes from where the scan resumes to `len`: a construct not complete yet.
    cut: BytesMut,
    limit: usize,
}

impl HeadHeld {
    /// Scans `chunk`, which starts at byte `from` of the page.
    fn scan_chunk(&mut self, chunk: &[u8], from: usize) -> Scan {
        if !self.cut.is_empty() {
            // The cut construct and as much of this chunk as it takes, in one piece; then the
            // rest of the chunk where it is.
            let base = self.scan.resume_at();
            let mut taken = 0;
            loop {
                let more = self.cut.len().max(256).min(chunk.len() - taken);
                self.cut.extend_from_slice(&chunk[taken..taken + more]);
                taken += more;
                let r = self.scan.scan(&self.cut, base);
                let at = self.scan.resume_at();
                if r != Scan::More || taken == chunk.len() {
                    Buf::advance(&mut self.cut, at - base);
                    return r;
                }
                if at >= from {
                    self.cut.clear();
                    break;
                }
            }
        }
        let r = self.scan.scan(chunk, from);
        if r == Scan::More {
            self.cut
                .extend_from_slice(&chunk[self.scan.resume_at() - from..]);
        }
        r
    }

    /// After a scan that needs more bytes: what can go out of what was not sent and `chunk`.
    fn send(&mut self, chunk: Bytes) -> Bytes {
        // Bytes once sent stay sent: a construct that was not held when shorter is not held
        // when longer (`may_end_head` is false for every extension of what it is false for).
        let keep_from = if may_end_head(&self.cut) {
            self.scan.resume_at().max(self.sent)
        } else {
            self.len
        };
        let pending = join(std::mem::take(&mut self.unsent), chunk);
        let n = keep_from - self.sent;
        self.unsent = pending.slice(n..);
        self.sent = keep_from;
        pending.slice(..n)
    }
}

/// Whether an unfinished construct may be an end tag the parser would put the snippet before
/// (`</head>`, `</body>`), one that ends the head otherwise (`</html>`), or a `<body>` start
/// tag: those bytes wait until the scan has decided.
fn may_end_head(b: &[u8]) -> bool {
    let prefix_of = |name: &[u8], names: &[&[u8]]| {
        names
            .iter()
            .any(|n| name.len() <= n.len() && name.eq_ignore_ascii_case(&n[..name.len()]))
    };
    match b {
        [b'<'] => true,
        [b'<', b'/', name @ ..] => prefix_of(name, &[b"head", b"body", b"html"]),
        [b'<', name @ ..] => prefix_of(name, &[b"body"]),
        _ => false,
    }
}

/// What the end of `</head>` means for the fast path.
enum HeadEnd {
    NotYet,
    /// A code is in and the parser state is known: the fast path takes over.
    Tail,
    /// Went by otherwise: the page is parsed to its end.
    Passed,
}

/// One response body being rewritten. Not `Sync` (lol_html's rewriter is only `Send`).
pub struct Injector {
    mode: Mode,
    shared: Shared,
    opts: InjectorOptions,
    started: bool,
    /// A first chunk of one byte that may begin a byte-order mark, held until the next byte
    /// says whether it does: the answer must not depend on where the body was cut.
    first_byte: Option<u8>,
    /// Bytes given to the current rewriter.
    fed: usize,
    /// Looking for the end of `</head>` to hand over to the fast path.
    head_cut: Option<HeadCut>,
    /// After a restart, until its output has caught up: the input from the first byte not
    /// sent before, to send as is should the restart not repeat what was sent.
    since_sent: Option<Vec<Bytes>>,
}

impl Injector {
    pub fn new(opts: InjectorOptions) -> Self {
        Self::build(opts, true)
    }

    /// An injector that parses every byte of the page (no fast path after `</head>`): the
    /// reference the fast path is compared with in tests and benchmarks.
    pub fn parsing_everything(opts: InjectorOptions) -> Self {
        Self::build(opts, false)
    }

    fn build(opts: InjectorOptions, fast: bool) -> Self {
        let shared: Shared = Arc::new(Mutex::new(State::default()));
        let mut inj = Injector {
            mode: Mode::Pass,
            shared,
            opts,
            started: false,
            first_byte: None,
            fed: 0,
            head_cut: None,
            since_sent: None,
        };
        if inj.opts.charset == Charset::Unsupported {
            lock(&inj.shared).outcome.unsupported_charset = true;
            inj.started = true;
        } else if fast && inj.opts.position == Position::HeadEnd {
            inj.mode = Mode::Head(Box::new(HeadHeld {
                scan: HeadScan::new(&inj.opts.tracker_path),
                chunks: Vec::new(),
                len: 0,
                sent: 0,
                unsent: Bytes::new(),
                cut: BytesMut::new(),
                limit: HEAD_LIMIT.min(inj.opts.max_buffer_bytes / 8),
            }));
        } else {
            inj.mode = Mode::Parse(Box::new(rewriter(&inj.opts, &inj.shared)));
            inj.head_cut = fast.then(HeadCut::default);
        }
        inj
    }

    /// Takes one chunk while the head scan runs.
    fn head_write(&mut self, chunk: Bytes) -> Bytes {
        let Mode::Head(h) = &mut self.mode else {
            return chunk;
        };
        let from = h.len;
        h.len += chunk.len();
        h.chunks.push(chunk.clone());
        match h.scan_chunk(&chunk, from) {
            // `</head>` is never in the bytes sent (`may_end_head` held its start back); were it
            // there, the parser would have to place the snippet.
            Scan::HeadEnd(at) if at >= h.sent => {
                let base = h.sent;
                let all = join(std::mem::take(&mut h.unsent), chunk);
                self.head_found(all, at - base)
            }
            Scan::More if h.len <= h.limit && h.chunks.len() < HEAD_CHUNKS => h.send(chunk),
            Scan::More | Scan::GiveUp | Scan::HeadEnd(_) => self.parse_head(),
        }
    }

    /// The head scan found `</head>` at `all[at..]`: the snippet goes before it and the fast
    /// path takes the rest, as after a parsed head.
    fn head_found(&mut self, all: Bytes, at: usize) -> Bytes {
        let end = at + b"</head>".len();
        lock(&self.shared).injected(Anchor::HeadEnd);
        let mut tail = Box::new(Tail::new(
            &self.opts.tracker_path,
            self.opts.max_buffer_bytes,
        ));
        let rest = tail.write(all.slice(end..));
        self.mode = Mode::Tail(tail);
        let rest = match rest {
            Ok(out) => out,
            Err(kept) => self.restart(kept),
        };
        // One buffer for the head, the snippet and what the tail lets out of this chunk: the
        // page's bytes are copied once, not once per piece and again to join them.
        let snippet = self.opts.snippet.as_bytes();
        let mut out = BytesMut::with_capacity(end + snippet.len() + rest.len());
        out.extend_from_slice(&all[..at]);
        out.extend_from_slice(snippet);
        out.extend_from_slice(&all[at..end]);
        out.extend_from_slice(&rest);
        out.freeze()
    }

    /// The head scan gave up: lol_html parses the page from its first byte, as without it,
    /// and what it gives for the bytes already sent is checked and dropped.
    fn parse_head(&mut self) -> Bytes {
        let Mode::Head(h) = std::mem::replace(
            &mut self.mode,
            Mode::Parse(Box::new(rewriter(&self.opts, &self.shared))),
        ) else {
            unreachable!("parse_head is called in the head mode");
        };
        self.fed = 0;
        self.head_cut = Some(HeadCut::default());
        if h.sent > 0 {
            self.skip_sent(&h.chunks, h.sent);
        }
        let mut out = Bytes::new();
        for c in h.chunks {
            out = join(out, self.write_started(c));
        }
        out
    }

    /// Rewrites one chunk; returns what can be sent now (possibly empty).
    pub fn write(&mut self, chunk: Bytes) -> Bytes {
        // The byte-order mark is in the first bytes of the (decoded) body, whichever chunks
        // bring them.
        let chunk = if !self.started && !chunk.is_empty() {
            let chunk = match self.first_byte.take() {
                Some(b) => {
                    let mut joined = BytesMut::with_capacity(1 + chunk.len());
                    joined.extend_from_slice(&[b]);
                    joined.extend_from_slice(&chunk);
                    joined.freeze()
                }
                None => chunk,
            };
            if let [b @ (0xFF | 0xFE)] = chunk[..] {
                self.first_byte = Some(b);
                return Bytes::new();
            }
            self.started = true;
            if has_utf16_bom(&chunk) {
                self.mode = Mode::Pass;
                self.head_cut = None;
                lock(&self.shared).outcome.unsupported_charset = true;
                return chunk;
            }
            chunk
        } else {
            chunk
        };
        if let Some(raw) = self.since_sent.as_mut() {
            raw.push(chunk.clone());
        }
        self.write_started(chunk)
    }

    /// [`Injector::write`] past the byte-order mark.
    fn write_started(&mut self, chunk: Bytes) -> Bytes {
        match &mut self.mode {
            Mode::Pass if self.since_sent.is_none() => chunk,
            Mode::Pass => {
                lock(&self.shared).emit(&chunk);
                self.take_output(false)
            }
            Mode::Tail(tail) => match tail.write(chunk) {
                Ok(out) => out,
                Err(kept) => self.restart(kept),
            },
            Mode::Head(_) => self.head_write(chunk),
            Mode::Parse(_) => match self.parse(&chunk) {
                None => self.take_output(false),
                Some(at) => self.hand_over(&chunk, at),
            },
        }
    }

    /// [`Injector::write`] for the last chunk, then [`Injector::finish`]: the usual last
    /// chunk, on the fast path, goes out as a slice of itself rather than joined to an empty
    /// or short end in a fresh buffer.
    pub fn write_last(&mut self, chunk: Bytes) -> Bytes {
        if let Mode::Tail(tail) = &mut self.mode {
            match tail.write_last(chunk) {
                Ok(out) => {
                    self.mode = Mode::Pass;
                    return out;
                }
                Err(kept) => {
                    let out = self.restart(kept);
                    return join(out, self.finish());
                }
            }
        }
        let out = self.write(chunk);
        join(out, self.finish())
    }

    /// Ends the document (runs the document-end fallback); returns the last bytes to send.
    pub fn finish(&mut self) -> Bytes {
        if let Some(b) = self.first_byte.take() {
            // A one-byte body: not a byte-order mark after all.
            self.started = true;
            let first = self.write(Bytes::copy_from_slice(&[b]));
            let rest = self.finish_document();
            if first.is_empty() {
                return rest;
            }
            let mut joined = BytesMut::with_capacity(first.len() + rest.len());
            joined.extend_from_slice(&first);
            joined.extend_from_slice(&rest);
            return joined.freeze();
        }
        self.finish_document()
    }

    fn finish_document(&mut self) -> Bytes {
        match std::mem::replace(&mut self.mode, Mode::Pass) {
            mode @ Mode::Head(_) => {
                // The document ended before the scan could tell: parse it.
                self.mode = mode;
                let head = self.parse_head();
                let rest = self.finish_document();
                join(head, rest)
            }
            Mode::Tail(mut tail) => tail.finish(),
            Mode::Parse(rw) => {
                if let Err(e) = rw.end() {
                    lock(&self.shared).outcome.failure = Some(e.to_string());
                }
                self.take_output(true)
            }
            Mode::Pass => self.take_output(true),
        }
    }

    pub fn outcome(&self) -> Outcome {
        lock(&self.shared).outcome.clone()
    }

    /// Whether the rest of the page is passing through without parsing (tests).
    #[cfg(test)]
    fn on_fast_path(&self) -> bool {
        matches!(self.mode, Mode::Tail(_))
    }

    /// Feeds `chunk` to the rewriter, in pieces that end where `</head>` may end; returns
    /// where in `chunk` the fast path takes over, if it does.
    fn parse(&mut self, chunk: &[u8]) -> Option<usize> {
        let mut from = 0;
        loop {
            let cut = self
                .head_cut
                .as_mut()
                .and_then(|h| h.next(&chunk[from..]))
                .map(|n| from + n);
            let to = cut.unwrap_or(chunk.len());
            if !self.feed(&chunk[from..to]) {
                // lol_html gave up and flushed what it had; the rest goes as it is.
                lock(&self.shared).emit(&chunk[to..]);
                return None;
            }
            match self.head_end() {
                HeadEnd::Tail => return Some(to),
                HeadEnd::NotYet | HeadEnd::Passed => {}
            }
            cut?;
            from = to;
        }
    }

    fn head_end(&mut self) -> HeadEnd {
        if self.head_cut.is_none() {
            return HeadEnd::NotYet;
        }
        let st = lock(&self.shared);
        let Some(at) = st.head_end_at else {
            return HeadEnd::NotYet;
        };
        let ready = at == self.fed
            && st.code_present
            && !st.foreign
            && st.script.is_none()
            && st.skip.is_none();
        drop(st);
        // Decided once.
        self.head_cut = None;
        if ready {
            HeadEnd::Tail
        } else {
            HeadEnd::Passed
        }
    }

    /// Hands over to the fast path at `chunk[at..]`.
    fn hand_over(&mut self, chunk: &Bytes, at: usize) -> Bytes {
        let head = self.take_output(false);
        let mut tail = Box::new(Tail::new(
            &self.opts.tracker_path,
            self.opts.max_buffer_bytes,
        ));
        let rest = tail.write(chunk.slice(at..));
        self.mode = Mode::Tail(tail);
        let rest = match rest {
            Ok(out) => out,
            Err(kept) => self.restart(kept),
        };
        join(head, rest)
    }

    /// Gives bytes to the rewriter; false when it gave up (the mode is then `Pass`).
    fn feed(&mut self, piece: &[u8]) -> bool {
        let Mode::Parse(rw) = &mut self.mode else {
            lock(&self.shared).emit(piece);
            return false;
        };
        self.fed += piece.len();
        if let Err(e) = rw.write(piece) {
            // Graceful bail-out: lol_html has flushed every byte it had not emitted, as is.
            self.mode = Mode::Pass;
            self.head_cut = None;
            lock(&self.shared).outcome.failure = Some(e.to_string());
            return false;
        }
        true
    }

    /// A marker after `</head>` (or more bytes than can be kept): parses again from there,
    /// with a fresh rewriter, and drops what it gives for the bytes already sent.
    fn restart(&mut self, kept: Kept) -> Bytes {
        self.mode = Mode::Parse(Box::new(rewriter(&self.opts, &self.shared)));
        self.fed = 0;
        self.head_cut = None;
        if kept.sent > 0 {
            self.skip_sent(&kept.chunks, kept.sent);
        }
        for c in &kept.chunks {
            self.feed(c);
        }
        self.take_output(false)
    }

    /// A fresh rewriter is about to read `chunks` again, of which the first `sent` bytes went
    /// out: its output for them is checked against them and dropped, and the raw input from
    /// there on is kept to fail open with, until it catches up.
    fn skip_sent(&mut self, chunks: &[Bytes], sent: usize) {
        let mut expect = Vec::new();
        let mut unsent = Vec::new();
        let mut left = sent;
        for c in chunks {
            let n = c.len().min(left);
            if n > 0 {
                expect.push(c.slice(..n));
            }
            if n < c.len() {
                unsent.push(c.slice(n..));
            }
            left -= n;
        }
        lock(&self.shared).skip = Some(Skip::new(expect, sent));
        self.since_sent = Some(unsent);
    }

    fn take_output(&mut self, end: bool) -> Bytes {
        let mut st = lock(&self.shared);
        let Some(skip) = &st.skip else {
            self.since_sent = None;
            return st.out.split().freeze();
        };
        if skip.diverged || end {
            // The restart did not give back the bytes already sent: cannot happen when the
            // fast path held back everything the rewriter could change. Fail open.
            st.skip = None;
            st.out.clear();
            st.outcome.failure =
                Some("the rewriter restarted after </head> did not repeat the page".into());
            drop(st);
            self.mode = Mode::Pass;
            let raw = self.since_sent.take().unwrap_or_default();
            let mut out = BytesMut::with_capacity(raw.iter().map(Bytes::len).sum());
            for c in &raw {
                out.extend_from_slice(c);
            }
            return out.freeze();
        }
        st.out.split().freeze()
    }
}

fn join(a: Bytes, b: Bytes) -> Bytes {
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
    let mut out = BytesMut::with_capacity(a.len() + b.len());
    out.extend_from_slice(&a);
    out.extend_from_slice(&b);
    out.freeze()
}

/// Rewrites a whole document at once (tests, benchmarks, the fuzzer).
pub fn rewrite_all(opts: InjectorOptions, input: &[u8], chunk: usize) -> (Vec<u8>, Outcome) {
    run_all(Injector::new(opts), input, chunk)
}

/// [`rewrite_all`] with an injector that parses every byte: the reference for the fast path.
pub fn rewrite_all_parsing_everything(
    opts: InjectorOptions,
    input: &[u8],
    chunk: usize,
) -> (Vec<u8>, Outcome) {
    run_all(Injector::parsing_everything(opts), input, chunk)
}

fn run_all(mut inj: Injector, input: &[u8], chunk: usize) -> (Vec<u8>, Outcome) {
    let mut out = Vec::with_capacity(input.len() + 1024);
    let mut chunks = input.chunks(chunk.max(1)).peekable();
    while let Some(c) = chunks.next() {
        let c = Bytes::copy_from_slice(c);
        if chunks.peek().is_some() {
            out.extend_from_slice(&inj.write(c));
        } else {
            // As the proxy ends a body.
            out.extend_from_slice(&inj.write_last(c));
            return (out, inj.outcome());
        }
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
    fn a_byte_order_mark_split_across_chunks_is_still_seen() {
        let input = b"\xff\xfe<html><head></head><body></body></html>";
        for cut in 1..4 {
            let (out, oc) = rewrite_all(opts(Position::HeadEnd, Duplicates::Remove), input, cut);
            assert_eq!(out, input, "cut every {cut} bytes");
            assert!(oc.unsupported_charset, "cut every {cut} bytes");
        }
        // A lone first byte that could begin a mark but does not: rewritten as usual.
        let input = b"\xfe<html><head></head></html>";
        let (out, oc) = rewrite_all(opts(Position::HeadEnd, Duplicates::Remove), input, 1);
        assert!(!oc.unsupported_charset);
        assert_eq!(oc.injected, Some(Anchor::HeadEnd));
        assert_eq!(out.len(), input.len() + SNIP.len());
        let mut whole = Injector::new(opts(Position::HeadEnd, Duplicates::Remove));
        let mut expected = whole.write(Bytes::from_static(b"\xff")).to_vec();
        expected.extend_from_slice(&whole.finish());
        let (out, oc) = rewrite_all(opts(Position::HeadEnd, Duplicates::Remove), b"\xff", 1);
        assert_eq!(out, expected);
        assert!(!oc.unsupported_charset);
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

    /// The fast path's output and outcome, at every chunk size up to 64 and whole, are those
    /// of the injector that parses every byte.
    fn same_as_parsing_everything(input: &str, o: InjectorOptions) -> (String, Outcome) {
        let input = input.as_bytes();
        let (expected, outcome) = rewrite_all_parsing_everything(o.clone(), input, input.len());
        for size in (1..=64).chain([input.len()]) {
            let (reference, oc) = rewrite_all_parsing_everything(o.clone(), input, size);
            assert_eq!(
                String::from_utf8_lossy(&reference),
                String::from_utf8_lossy(&expected),
                "reference, chunk size {size}"
            );
            assert_eq!(oc, outcome, "reference, chunk size {size}");
            let (fast, oc) = rewrite_all(o.clone(), input, size);
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&expected),
                "fast path, chunk size {size}"
            );
            assert_eq!(oc, outcome, "fast path, chunk size {size}");
        }
        (String::from_utf8(expected).unwrap(), outcome)
    }

    const CODE: &str = "<script>var _smid = 'abc'; w['SalesmanagoObject'] = r;</script>";

    #[test]
    fn the_fast_path_takes_over_after_head_end() {
        let mut inj = Injector::new(opts(Position::HeadEnd, Duplicates::Remove));
        let out = inj.write(Bytes::from_static(b"<html><head></head><body><p>x</p>"));
        assert!(inj.on_fast_path());
        // Everything after </head> goes out at once, as the same bytes.
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("<html><head>{SNIP}</head><body><p>x</p>")
        );
        let b = Bytes::from_static(b"<p>more</p><script>var a;</script></body>");
        let out = inj.write(b.clone());
        assert_eq!(out.as_ptr(), b.as_ptr(), "sliced, not copied");
        assert!(inj.on_fast_path());
        // A page with SVG in its head is parsed to the end.
        let mut inj = Injector::new(opts(Position::HeadEnd, Duplicates::Remove));
        inj.write(Bytes::from_static(b"<head><svg></svg></head><body>"));
        assert!(!inj.on_fast_path());
        // So is a page that has no code by </head>.
        let mut inj = Injector::new(opts(Position::BodyEnd, Duplicates::Remove));
        inj.write(Bytes::from_static(b"<head></head><body>"));
        assert!(!inj.on_fast_path());
    }

    #[test]
    fn codes_after_head_end_are_found_by_the_fast_path() {
        let pre = "<!doctype html><html><head><title>t</title></head><body><p>text</p>";
        let long = format!("<script>var a = 1; /* {} */</script>", "x".repeat(2000));
        let cases = [
            format!("{pre}{CODE}</body></html>"),
            format!("{pre}<p>a</p>{long}{CODE}<p>b</p>{CODE}</body></html>"),
            format!("{pre}<script src=\"https://cdn.example/STATIC/sm.js?v=2\"></script></body>"),
            format!("{pre}<script type='a>b' src=/static/sm.js></script><p>after</p>"),
            format!("{pre}<script\nsrc=\"/_sm/sm.js\" async></script>"),
            format!("{pre}<!-- {CODE} --><textarea>{CODE}</textarea><style>/* _smid */</style>"),
            format!("{pre}<div title=\"{}\">x</div>", CODE.replace('"', "'")),
            format!(
                "{pre}<script>/* {} */ var _smid = 'late';</script>",
                "y".repeat(600)
            ),
            format!("{pre}<script a=>var _smid = 'q';</script>"),
            format!("{pre}<svg><script><!-- c -->var _smid = 'svg';</script></svg>"),
            format!("{pre}<svg><script>var _smid = 'svg';</script></svg><p>x</p>"),
            format!(
                "{pre}<script>document.write('<script src=x><\\/script>'); var _smid='d';</script>"
            ),
            format!("{pre}<script><!--<script>--></script>var _smid='e';</script>{CODE}"),
            format!("{pre}<script>var _smid = 'unterminated';"),
            format!("{pre}<script>var a = 1;"),
            format!("{pre}<scr{CODE}ipt>"),
            format!("{pre}<p>_smid</p><script>var b=2;</script>{CODE}"),
            format!("{pre}<plaintext>{CODE}"),
            format!("<html><head>{CODE}</head><body>{CODE}<p>x</p>{CODE}</body></html>"),
            "<html><head></HEAD ><body><script src='/static/sm.js'></script>".to_string(),
            "<html><head></head foo=\">\"><body><script>var _smid='f'</script>".to_string(),
            "<html><head><title></head></title></head><body>x</body>".to_string(),
            "<html><head></head><body><p>no code at all</p></body></html>".to_string(),
        ];
        for input in &cases {
            for dup in [Duplicates::Remove, Duplicates::Keep] {
                for position in [Position::HeadEnd, Position::BodyEnd] {
                    same_as_parsing_everything(input, opts(position, dup));
                }
            }
        }
        let (out, oc) =
            same_as_parsing_everything(&cases[1], opts(Position::HeadEnd, Duplicates::Keep));
        assert_eq!(oc.duplicates_removed, 2);
        assert_eq!(out.matches("_smid").count(), 1);
    }

    #[test]
    fn held_scripts_are_decided_on_their_first_bytes_wherever_the_text_is_cut() {
        // A marker that ends just inside the probe, and one just past it.
        for (at, removed) in [(HOLD_PROBE - 10, 1), (HOLD_PROBE - 3, 0)] {
            let text = format!("{}var _smid = 'x';", " ".repeat(at - 4));
            let input = format!("<html><head></head><body><script>{text}</script></body>");
            let (_, oc) =
                same_as_parsing_everything(&input, opts(Position::HeadEnd, Duplicates::Remove));
            assert_eq!(oc.duplicates_removed, removed, "marker at {at}");
        }
    }

    #[test]
    fn the_head_goes_out_as_it_arrives_but_for_what_may_begin_head_end() {
        let mut inj = Injector::new(opts(Position::HeadEnd, Duplicates::Remove));
        // A cut start tag goes out at once, as itself.
        let first = "<!doctype html><html><head><title>t</title><meta a=b><scr";
        let out = inj.write(Bytes::from(first));
        assert_eq!(&out[..], first.as_bytes());
        // `</he` may be `</head>`: held until it is decided.
        let out = inj.write(Bytes::from("ipt>var a;</script><link rel=x></HE"));
        assert_eq!(&out[..], b"ipt>var a;</script><link rel=x>");
        let out = inj.write_last(Bytes::from("AD><body></body></html>"));
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            format!("{SNIP}</HEAD><body></body></html>")
        );
        assert_eq!(inj.outcome().injected, Some(Anchor::HeadEnd));
        for (cut, held) in [
            ("<", true),
            ("</", true),
            ("</h", true),
            ("</BODY", true),
            ("</htm", true),
            ("<bo", true),
            ("</hx", false),
            ("</title", false),
            ("<h", false),
            ("<!-", false),
            ("<meta a='</head>", false),
        ] {
            assert_eq!(may_end_head(cut.as_bytes()), held, "{cut}");
        }
    }

    #[test]
    fn a_head_scan_that_gives_up_after_sending_is_parsed_again_from_the_first_byte() {
        let metas = "<meta name=x content=y>\n".repeat(12);
        let lates = [
            CODE,
            "<script src=/_sm/sm.js></script>",
            "<svg><title>x</title></svg>",
            "<body><p>early body</p>",
            "<head>",
            "<template><p></p></template>",
            "</head foo>",
            "<!--> -->",
        ];
        for late in lates {
            let input = format!(
                "<!doctype html><html><head><title>t</title>{metas}{late}<link rel=a></head>\
                 <body><p>x</p>{CODE}</body></html>"
            );
            for dup in [Duplicates::Remove, Duplicates::Keep] {
                let (_, outcome) = same_as_parsing_everything(&input, opts(Position::HeadEnd, dup));
                assert_eq!(outcome.failure, None, "{late}");
            }
            // The first chunk went out before the scan gave up.
            let mut inj = Injector::new(opts(Position::HeadEnd, Duplicates::Remove));
            let cut = input.find(late).unwrap();
            let out = inj.write(Bytes::copy_from_slice(&input.as_bytes()[..cut]));
            assert_eq!(&out[..], &input.as_bytes()[..cut], "{late}");
            let mut all = out.to_vec();
            all.extend_from_slice(
                &inj.write_last(Bytes::copy_from_slice(&input.as_bytes()[cut..])),
            );
            let (expected, _) = rewrite_all_parsing_everything(
                opts(Position::HeadEnd, Duplicates::Remove),
                input.as_bytes(),
                1 << 20,
            );
            assert!(all == expected, "{late}");
            assert_eq!(inj.outcome().failure, None, "{late}");
        }
    }

    #[test]
    fn a_head_longer_than_what_is_kept_is_parsed_from_its_first_byte() {
        let o = opts(Position::HeadEnd, Duplicates::Remove);
        let metas = "<meta name=x content=y>\n".repeat(HEAD_LIMIT / 24 + 512);
        let input = format!("<html><head>{metas}</head><body>{CODE}</body></html>");
        let (expected, outcome) =
            rewrite_all_parsing_everything(o.clone(), input.as_bytes(), input.len());
        assert_eq!(outcome.injected, Some(Anchor::HeadEnd));
        assert_eq!(outcome.duplicates_removed, 1);
        for size in [4096, 16 * 1024, input.len()] {
            let (out, oc) = rewrite_all(o.clone(), input.as_bytes(), size);
            assert!(out == expected, "chunks of {size}");
            assert_eq!(oc, outcome, "chunks of {size}");
        }
        // Past the limit, before `</head>`, the parser has taken over.
        let mut inj = Injector::new(o);
        let mut sent = Vec::new();
        for c in input.as_bytes()[..HEAD_LIMIT + 4096].chunks(4096) {
            sent.extend_from_slice(&inj.write(Bytes::copy_from_slice(c)));
        }
        assert!(matches!(inj.mode, Mode::Parse(_)));
        assert!(expected.starts_with(&sent));
    }

    #[test]
    fn a_page_longer_than_what_is_kept_is_parsed_from_there_on() {
        let mut o = opts(Position::HeadEnd, Duplicates::Remove);
        o.max_buffer_bytes = 64 * 1024;
        let para =
            "<p>Some text, <a href='/x.html'>a link</a> and <script>var n = 1;</script></p>\n";
        let filler = para.repeat(3 * 64 * 1024 / para.len());
        for tail in [String::new(), CODE.to_string()] {
            let input = format!("<html><head></head><body>{filler}{tail}</body></html>");
            let (expected, outcome) =
                rewrite_all_parsing_everything(o.clone(), input.as_bytes(), input.len());
            for size in [700, 4096, 16 * 1024, input.len()] {
                let (out, oc) = rewrite_all(o.clone(), input.as_bytes(), size);
                assert!(out == expected, "chunks of {size}");
                assert_eq!(oc, outcome, "chunks of {size}");
            }
            assert_eq!(outcome.duplicates_removed, u32::from(!tail.is_empty()));
        }
    }
}
