//! The rest of a page after its `</head>`, once a code is in: passed through without parsing.
//!
//! From there on the injector can change a page in one way only: removing a later code, which
//! needs a marker inside that script, either `_smid` or `SalesmanagoObject` in its text (within
//! its first [`HOLD_PROBE`] bytes) or `/static/sm.js` or the tracker path in its start tag. Its
//! outcome changes only for a script naming one of them, too. So the bytes go out as they come,
//! after a SIMD substring search for the text markers anywhere and for the `src` markers in
//! script start tags, and parsing resumes only when one appears: a fresh lol_html rewriter is
//! fed the page again from the end of `</head>`, a point where the parser's state is known (data
//! state, HTML namespace), and what it gives for the bytes already sent is checked against them
//! and dropped.
//!
//! For that restart to give the same page, nothing it could still change may have gone out: a
//! `<script` start tag that is not finished, and the first [`SCRIPT_WINDOW`] bytes after a
//! finished one, are held back until the window has passed (without a marker, or the restart
//! happens first). Finding them needs no parser: every script start tag begins with `<script`
//! and a space, `/` or `>`, and from there its end is found by the tokenizer's own attribute
//! states. Text that only looks like a start tag (in a comment, in a string) is held the same
//! way, which costs latency, never bytes; and the injector holds only script text that starts
//! right after its start tag, so a comment or CDATA section cannot push it out of the window.
//!
//! All bytes since `</head>` are kept (reference-counted, not copied) for the restart, up to a
//! limit; a longer page restarts there and is parsed to its end, as before.

use bytes::{Bytes, BytesMut};
use memchr::memmem;
use std::sync::LazyLock;

use super::attr::Attr;
use super::injector::HOLD_PROBE;

/// Bytes after a script start tag that are held back: the probe, and room for a marker that
/// starts inside it and for CDATA or comment syntax before the text.
pub const SCRIPT_WINDOW: usize = HOLD_PROBE + 64;

/// The most bytes kept for a restart (the response's parser memory limit may be lower).
pub const KEEP_LIMIT: usize = 1024 * 1024;

static SMID: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"_smid"));
static SMOBJ: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"SalesmanagoObject"));

/// What one pass over a chunk looks for: the text markers, and the first three bytes of
/// `<script` in every case (`<sc`, rare outside script tags, unlike `<s`); the pattern's index
/// in [`PATTERNS`] tells which.
const PATTERNS: [&[u8]; 6] = [
    b"_smid",
    b"SalesmanagoObject",
    b"<sc",
    b"<sC",
    b"<Sc",
    b"<SC",
];
/// The patterns from this index on start a possible script start tag.
const FIRST_OPEN: usize = 2;

/// One search for all [`PATTERNS`]: SIMD (Teddy) where the CPU has it, an automaton elsewhere.
/// None of the patterns can overlap another, so non-overlapping matches miss none.
enum Patterns {
    Packed(aho_corasick::packed::Searcher),
    Automaton(aho_corasick::AhoCorasick),
}

impl Patterns {
    fn new() -> Self {
        match aho_corasick::packed::Searcher::new(PATTERNS) {
            Some(s) => Patterns::Packed(s),
            None => Patterns::Automaton(
                aho_corasick::AhoCorasick::new(PATTERNS).expect("valid patterns"),
            ),
        }
    }

    /// Every match in `s`: (start, pattern index).
    fn each(&self, s: &[u8], mut f: impl FnMut(usize, usize)) {
        match self {
            Patterns::Packed(p) => p
                .find_iter(s)
                .for_each(|m| f(m.start(), m.pattern().as_usize())),
            Patterns::Automaton(a) => a
                .find_iter(s)
                .for_each(|m| f(m.start(), m.pattern().as_usize())),
        }
    }
}

static SEARCH: LazyLock<Patterns> = LazyLock::new(Patterns::new);

/// Compared without regard to case, as `is_code_src` does.
const STATIC_SM: &[u8] = b"/static/sm.js";
/// Where the `.` is in [`STATIC_SM`].
const STATIC_SM_DOT: usize = 10;

/// Finds the markers of script text (`_smid`, `SalesmanagoObject`) split between two chunks;
/// those inside one chunk are found by [`Scripts::scan`]'s single pass. (Those of a `src`,
/// which only count in a script start tag, are looked for in the tags.)
#[derive(Default)]
pub struct TextMarkers {
    carry: Vec<u8>,
}

/// Bytes kept from the end of one chunk to find a text marker split between two.
const TEXT_CARRY: usize = b"SalesmanagoObject".len() - 1;

fn names_text_marker(s: &[u8]) -> bool {
    SMID.find(s).is_some() || SMOBJ.find(s).is_some()
}

impl TextMarkers {
    /// Whether the end of the previous chunks joined to the start of `chunk` names a marker.
    pub fn in_seam(&mut self, chunk: &[u8]) -> bool {
        let found = seam(&mut self.carry, TEXT_CARRY, chunk, names_text_marker);
        keep_end(&mut self.carry, TEXT_CARRY, chunk);
        found
    }
}

/// Runs `find` on the seam (the last `keep` bytes before `chunk`, in `carry`, joined to its
/// first `keep`) and on `chunk`; then keeps the stream's last `keep` bytes in `carry`.
fn seam_and_chunk(
    carry: &mut Vec<u8>,
    keep: usize,
    chunk: &[u8],
    find: impl Fn(&[u8]) -> bool,
) -> bool {
    let found = seam(carry, keep, chunk, &find) || find(chunk);
    keep_end(carry, keep, chunk);
    found
}

/// Keeps the stream's last `keep` bytes in `carry`, which held those before `chunk` (and
/// maybe the seam's bytes of `chunk` after them).
fn keep_end(carry: &mut Vec<u8>, keep: usize, chunk: &[u8]) {
    if chunk.len() >= keep {
        carry.clear();
        carry.extend_from_slice(&chunk[chunk.len() - keep..]);
    } else {
        if carry.is_empty() {
            carry.extend_from_slice(chunk);
        }
        let excess = carry.len().saturating_sub(keep);
        carry.drain(..excess);
    }
}

/// Runs `find` on the last `keep` bytes before `chunk` (in `carry`) joined to its first.
fn seam(carry: &mut Vec<u8>, keep: usize, chunk: &[u8], find: impl Fn(&[u8]) -> bool) -> bool {
    if carry.is_empty() {
        return false;
    }
    carry.extend_from_slice(&chunk[..chunk.len().min(keep)]);
    find(carry)
}

/// The markers of a script `src`: `/static/sm.js` (any case) and the tracker path.
pub(super) struct SrcMarkers {
    tracker: Box<[u8]>,
    /// Where the first `.` is in the tracker path, if it has one: then one pass over the
    /// dots of a tag finds both markers.
    tracker_dot: Option<usize>,
    /// For a tracker path without a dot.
    finder: memmem::Finder<'static>,
    keep: usize,
}

impl SrcMarkers {
    pub(super) fn new(tracker_path: &str) -> Self {
        let tracker = tracker_path.as_bytes();
        SrcMarkers {
            tracker: tracker.into(),
            tracker_dot: memchr::memchr(b'.', tracker),
            finder: memmem::Finder::new(tracker).into_owned(),
            keep: tracker_path.len().max(STATIC_SM.len()) - 1,
        }
    }

    /// Whether `s` (a start tag, short) names a marker. This runs for every script start tag
    /// after `</head>`, so it reads the tag once, from dot to dot, rather than once per marker
    /// with a general substring search, whose set-up costs more than such a tag.
    pub(super) fn in_slice(&self, s: &[u8]) -> bool {
        let window = |i: usize, at: usize, len: usize| {
            i.checked_sub(at).and_then(|from| s.get(from..from + len))
        };
        let static_sm = |i: usize| {
            window(i, STATIC_SM_DOT, STATIC_SM.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(STATIC_SM))
        };
        match self.tracker_dot {
            Some(dot) => memchr::memchr_iter(b'.', s).any(|i| {
                static_sm(i) || window(i, dot, self.tracker.len()) == Some(&self.tracker[..])
            }),
            None => self.finder.find(s).is_some() || memchr::memchr_iter(b'.', s).any(static_sm),
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t' | b'\x0C')
}

/// What is known of one place that may start a script element.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// This many bytes of `<script` matched (1..=7); with 7, the byte after decides.
    Name(usize),
    /// Inside the start tag.
    Tag(Attr),
    /// The start tag ended; held until the stream reaches this offset.
    Text(usize),
}

#[derive(Debug)]
struct Candidate {
    start: usize,
    stage: Stage,
    /// The last bytes of the tag in earlier chunks, for a marker split between two.
    carry: Vec<u8>,
}

enum Step {
    /// Not a script start tag, or its window has passed.
    Done,
    /// Bytes from its start must still be held back.
    Hold,
    /// The start tag names a `src` marker.
    Marker,
}

impl Candidate {
    fn new(start: usize, matched: usize) -> Self {
        Candidate {
            start,
            stage: Stage::Name(matched),
            carry: Vec::new(),
        }
    }

    /// Advances over `s`, which starts at stream offset `at`.
    fn advance(&mut self, s: &[u8], at: usize, src: &SrcMarkers) -> Step {
        let mut i = 0;
        loop {
            match self.stage {
                Stage::Name(n) => {
                    let Some(&b) = s.get(i) else {
                        return Step::Hold;
                    };
                    i += 1;
                    self.stage = if n < 7 {
                        if b.to_ascii_lowercase() != b"<script"[n] {
                            return Step::Done;
                        }
                        Stage::Name(n + 1)
                    } else if is_space(b) {
                        Stage::Tag(Attr::BeforeName)
                    } else if b == b'/' {
                        Stage::Tag(Attr::SelfClosing)
                    } else if b == b'>' {
                        Stage::Text(at + i + SCRIPT_WINDOW)
                    } else {
                        return Step::Done;
                    };
                }
                Stage::Tag(mut attr) => {
                    let rest = &s[i..];
                    let end = attr.run(rest);
                    let region = &rest[..end.unwrap_or(rest.len())];
                    let find = |r: &[u8]| src.in_slice(r);
                    let marker = if end.is_some() {
                        seam(&mut self.carry, src.keep, region, find) || find(region)
                    } else {
                        // The tag goes on in the next chunk: keep its end for the seam.
                        seam_and_chunk(&mut self.carry, src.keep, region, find)
                    };
                    if marker {
                        return Step::Marker;
                    }
                    match end {
                        Some(n) => {
                            i += n;
                            self.stage = Stage::Text(at + i + SCRIPT_WINDOW);
                            self.carry = Vec::new();
                        }
                        None => {
                            self.stage = Stage::Tag(attr);
                            return Step::Hold;
                        }
                    }
                }
                Stage::Text(until) => {
                    return if at + s.len() < until {
                        Step::Hold
                    } else {
                        Step::Done
                    };
                }
            }
        }
    }
}

/// Finds what must be held back: possible script start tags and the windows after them; and
/// the markers of a `src` in those tags.
pub struct Scripts {
    open: Vec<Candidate>,
    src: SrcMarkers,
}

impl Scripts {
    pub fn new(tracker_path: &str) -> Self {
        Scripts {
            open: Vec::new(),
            src: SrcMarkers::new(tracker_path),
        }
    }

    /// Scans `chunk`, which starts at stream offset `at`: `Err` when it names a text marker or
    /// a script start tag names a `src` marker, else the offset from which bytes must be held back, if any.
    pub fn scan(&mut self, chunk: &[u8], at: usize) -> Result<Option<usize>, ()> {
        let mut marker = false;
        let src = &self.src;
        self.open.retain_mut(|c| match c.advance(chunk, at, src) {
            Step::Done => false,
            Step::Hold => true,
            Step::Marker => {
                marker = true;
                false
            }
        });
        // One pass for the text markers and `<sc` in any case (then the rest of `script`
        // byte by byte); a `<`, or `<s`, at the very end may begin a start tag too.
        let open = &mut self.open;
        let mut start = |i: usize, matched: usize| {
            let mut c = Candidate::new(at + i, matched);
            match c.advance(&chunk[i + matched..], at + i + matched, src) {
                Step::Done => false,
                Step::Hold => {
                    open.push(c);
                    false
                }
                Step::Marker => true,
            }
        };
        SEARCH.each(chunk, |i, pattern| {
            marker |= pattern < FIRST_OPEN || start(i, 3);
        });
        let n = chunk.len();
        if chunk.last() == Some(&b'<') {
            marker |= start(n - 1, 1);
        } else if n >= 2 && chunk[n - 2] == b'<' && chunk[n - 1].eq_ignore_ascii_case(&b's') {
            marker |= start(n - 2, 2);
        }
        if marker {
            return Err(());
        }
        Ok(self.open.iter().map(|c| c.start).min())
    }
}

/// The bytes since the hand-over, and how many have been sent.
pub struct Tail {
    kept: Vec<Bytes>,
    kept_len: usize,
    /// Stream offset up to which bytes went out.
    sent: usize,
    /// Where `sent` falls in `kept`: index and offset in that chunk.
    cursor: (usize, usize),
    markers: TextMarkers,
    scripts: Scripts,
    limit: usize,
}

/// What a restart needs: all bytes since the hand-over, and how many of them went out.
#[derive(Debug)]
pub struct Kept {
    pub chunks: Vec<Bytes>,
    pub sent: usize,
}

impl Tail {
    pub fn new(tracker_path: &str, limit: usize) -> Self {
        Tail {
            kept: Vec::new(),
            kept_len: 0,
            sent: 0,
            cursor: (0, 0),
            markers: TextMarkers::default(),
            scripts: Scripts::new(tracker_path),
            limit: limit.min(KEEP_LIMIT),
        }
    }

    /// Takes one chunk: `Ok` with the bytes that can go out now, or `Err` when the rest must
    /// be parsed (a marker appeared, or too much would be kept).
    pub fn write(&mut self, chunk: Bytes) -> Result<Bytes, Kept> {
        self.take_chunk(chunk, false)
    }

    /// [`Tail::write`] for the page's last chunk, then [`Tail::finish`], in one piece: when
    /// nothing before the chunk is held, that is a slice of it, not a copy joining two.
    pub fn write_last(&mut self, chunk: Bytes) -> Result<Bytes, Kept> {
        self.take_chunk(chunk, true)
    }

    fn take_chunk(&mut self, chunk: Bytes, last: bool) -> Result<Bytes, Kept> {
        if chunk.is_empty() {
            return Ok(if last { self.finish() } else { chunk });
        }
        let hold = if self.markers.in_seam(&chunk) || self.kept_len + chunk.len() > self.limit {
            Err(())
        } else {
            self.scripts.scan(&chunk, self.kept_len)
        };
        self.kept_len += chunk.len();
        self.kept.push(chunk);
        match hold {
            Ok(_) if last => Ok(self.finish()),
            Ok(hold) => Ok(self.take(hold.unwrap_or(self.kept_len))),
            Err(()) => Err(Kept {
                chunks: std::mem::take(&mut self.kept),
                sent: self.sent,
            }),
        }
    }

    /// The end of the page: everything not sent yet.
    pub fn finish(&mut self) -> Bytes {
        self.take(self.kept_len)
    }

    /// The kept bytes from `sent` to `to`, sliced (not copied) when they are in one chunk.
    fn take(&mut self, to: usize) -> Bytes {
        if to <= self.sent {
            return Bytes::new();
        }
        let n = to - self.sent;
        let (mut idx, mut off) = self.cursor;
        // Skip chunks already sent to their end.
        while off == self.kept[idx].len() {
            idx += 1;
            off = 0;
        }
        let first = &self.kept[idx];
        let out = if first.len() - off >= n {
            let out = first.slice(off..off + n);
            off += n;
            out
        } else {
            let mut buf = BytesMut::with_capacity(n);
            let mut left = n;
            while left > 0 {
                let c = &self.kept[idx];
                let k = (c.len() - off).min(left);
                buf.extend_from_slice(&c[off..off + k]);
                left -= k;
                off += k;
                if off == c.len() && left > 0 {
                    idx += 1;
                    off = 0;
                }
            }
            buf.freeze()
        };
        self.cursor = (idx, off);
        self.sent = to;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the stream cut in two at `cut` names a marker, for the tail.
    fn marker_found(text: &[u8], cut: usize) -> bool {
        let mut t = Tail::new("/_sm/sm.js", 1 << 20);
        let first = t.write(Bytes::copy_from_slice(&text[..cut]));
        first.is_err() || t.write(Bytes::copy_from_slice(&text[cut..])).is_err()
    }

    #[test]
    fn src_markers_are_found_with_any_tracker_path() {
        for (tracker, tag, expected) in [
            ("/_sm/sm.js", &b" src=/_sm/sm.js>"[..], true),
            ("/_sm/sm.js", b" src=/_sm/sm.jsx>", true),
            ("/_sm/sm.js", b" src=/_sm/sm_js>", false),
            ("/_sm/sm.js", b" src=/a/STATIC/SM.JS>", true),
            ("/_sm/sm.js", b" src=static/sm.js>", false),
            ("/t.a.js", b" src=/t.a.js>", true),
            ("/t.a.js", b" src=/t.b.js /t.a.j>", false),
            ("/track", b" src=/track?x>", true),
            ("/track", b" src=/trac>", false),
            ("/track", b" src=/static/sm.js>", true),
            ("/a.", b" data-x=/a.", true),
        ] {
            let src = SrcMarkers::new(tracker);
            assert_eq!(
                src.in_slice(tag),
                expected,
                "{tracker} in {}",
                String::from_utf8_lossy(tag)
            );
        }
    }

    #[test]
    fn markers_are_found_in_and_across_chunks() {
        let texts: [(&[u8], bool); 8] = [
            (b"<p>var _smid = 1</p>", true),
            (b"w['SalesmanagoObject']", true),
            (b"<script src=\"https://x/STATIC/Sm.Js\"></script>", true),
            (b"<script defer src=/_sm/sm.js?v=1>", true),
            (
                b"<script async\n src='/a.js' data-x='/_sm/sm.js'></script>",
                true,
            ),
            // A src marker counts only in a script start tag.
            (b"<p>/static/sm.js</p><img src=/_sm/sm.js>", false),
            (b"<p>nothing here.js</p><script src=/x.js></script>", false),
            (b"<script>var s = '/static/sm.js';</script>", false),
        ];
        for (text, expected) in texts {
            for cut in 0..=text.len() {
                assert_eq!(
                    marker_found(text, cut),
                    expected,
                    "{} cut at {cut}",
                    String::from_utf8_lossy(text)
                );
            }
            // One byte at a time.
            let mut t = Tail::new("/_sm/sm.js", 1 << 20);
            let found = text
                .iter()
                .any(|b| t.write(Bytes::copy_from_slice(&[*b])).is_err());
            assert_eq!(found, expected, "{}", String::from_utf8_lossy(text));
        }
    }

    /// What must be held at the end of `s`, worked out the slow way.
    fn expected_hold(s: &[u8]) -> Option<usize> {
        let text = String::from_utf8_lossy(s).to_ascii_lowercase();
        let mut earliest = None;
        for (p, _) in text.match_indices('<') {
            let rest = &text[p..];
            if rest.len() < 8 {
                if "<script".starts_with(rest) || rest.len() == 7 && rest == "<script" {
                    earliest = earliest.or(Some(p));
                }
                continue;
            }
            if !rest.starts_with("<script") || !matches!(rest.as_bytes()[7], b' ' | b'>') {
                continue;
            }
            // The tests' tags have one quoted attribute at most, which may contain `>`.
            let after = &rest[7..];
            let end = match after.find('\'') {
                Some(q) if q < after.find('>').unwrap_or(usize::MAX) => after[q + 1..]
                    .find('\'')
                    .and_then(|q2| after[q + 1 + q2..].find('>').map(|g| q + 1 + q2 + g)),
                _ => after.find('>'),
            };
            match end {
                None => earliest = earliest.or(Some(p)),
                Some(g) if p + 7 + g + 1 + SCRIPT_WINDOW > s.len() => {
                    earliest = earliest.or(Some(p))
                }
                Some(_) => {}
            }
        }
        earliest
    }

    #[test]
    fn start_tags_and_windows_are_held() {
        let filler = "x".repeat(SCRIPT_WINDOW);
        let input = format!("<p>a</p><SCRIPT type='a>b' >{filler}</script><p><script>");
        let input = input.as_bytes();
        for cut in 0..=input.len() {
            let mut s = Scripts::new("/_sm/sm.js");
            let first = s.scan(&input[..cut], 0).unwrap();
            assert_eq!(first, expected_hold(&input[..cut]), "cut {cut}");
            let second = s.scan(&input[cut..], cut).unwrap();
            assert_eq!(second, expected_hold(input), "cut {cut}");
        }
        assert_eq!(expected_hold(input), Some(input.len() - 8));
    }

    #[test]
    fn the_single_pass_finds_script_tags_in_any_case_and_markers_not_near_misses() {
        // Start tags in mixed case, cut everywhere: held like the lowercase one.
        for tag in ["<script>", "<SCRIPT>", "<sCrIpT>", "<Script >", "<scRIPT/>"] {
            let input = format!("<p>a</p>{tag}var a;");
            let input = input.as_bytes();
            for cut in 0..=input.len() {
                let mut s = Scripts::new("/_sm/sm.js");
                s.scan(&input[..cut], 0).unwrap();
                assert_eq!(s.scan(&input[cut..], cut), Ok(Some(8)), "{tag} cut {cut}");
            }
        }
        // Near misses of both kinds of marker: not held, no restart.
        for input in [
            "<sc><Sc x><SC>_smi d SalesmanagoObjec _SMID salesmanagoObject",
            "<style>a</style><span><section><svg><scrip><scriptx>",
        ] {
            let mut t = Tail::new("/_sm/sm.js", 1 << 20);
            let out = t.write(Bytes::copy_from_slice(input.as_bytes())).unwrap();
            assert_eq!(&out[..], input.as_bytes());
        }
        // Markers right at a chunk's start and end, and several in one chunk.
        for input in ["_smid<p>", "<p>_smid", "SalesmanagoObject", "<sc _smid <SC"] {
            let mut s = Scripts::new("/_sm/sm.js");
            assert_eq!(s.scan(input.as_bytes(), 0), Err(()), "{input}");
        }
    }

    #[test]
    fn things_that_are_not_script_tags_are_not_held() {
        for input in [
            "<p><scripts>x</scripts><scrip>",
            "<p>a < b</p>",
            "</script>",
        ] {
            let mut s = Scripts::new("/_sm/sm.js");
            assert_eq!(s.scan(input.as_bytes(), 0), Ok(None), "{input}");
        }
        let mut s = Scripts::new("/_sm/sm.js");
        assert_eq!(s.scan(b"<p><scr", 0), Ok(Some(3)));
        assert_eq!(s.scan(b"ipx>", 7), Ok(None));
    }

    #[test]
    fn the_last_chunk_goes_out_as_itself() {
        let mut t = Tail::new("/_sm/sm.js", 1 << 20);
        t.write(Bytes::from_static(b"<p>one</p>")).unwrap();
        let last = Bytes::from_static(b"<p>two</p><script>var a;</script>");
        let out = t.write_last(last.clone()).unwrap();
        assert_eq!(out, last);
        assert_eq!(out.as_ptr(), last.as_ptr(), "a slice, not a copy");
        // Held bytes of the chunk before come first.
        let mut t = Tail::new("/_sm/sm.js", 1 << 20);
        assert_eq!(
            &t.write(Bytes::from_static(b"<p>one<scr")).unwrap()[..],
            b"<p>one"
        );
        let out = t.write_last(Bytes::from_static(b"ipt></script>")).unwrap();
        assert_eq!(&out[..], b"<script></script>");
        assert_eq!(&t.write_last(Bytes::new()).unwrap()[..], b"");
        // A marker in the last chunk still hands the page to the parser.
        let mut t = Tail::new("/_sm/sm.js", 1 << 20);
        let kept = t
            .write_last(Bytes::from_static(b"<script>_smid"))
            .unwrap_err();
        assert_eq!(kept.sent, 0);
    }

    #[test]
    fn kept_bytes_go_out_sliced_and_held_bytes_later() {
        let mut t = Tail::new("/_sm/sm.js", 1 << 20);
        let a = t.write(Bytes::from_static(b"<p>one</p><scr")).unwrap();
        assert_eq!(&a[..], b"<p>one</p>");
        let b = t
            .write(Bytes::from_static(b"ipt>var a;</script><p>"))
            .unwrap();
        assert_eq!(&b[..], b"");
        let c = t.finish();
        assert_eq!(&c[..], b"<script>var a;</script><p>");
        let mut t = Tail::new("/_sm/sm.js", 1 << 20);
        t.write(Bytes::from_static(b"<p>one</p>")).unwrap();
        let kept = t
            .write(Bytes::from_static(b"<script>var _smid"))
            .unwrap_err();
        assert_eq!(kept.sent, 10);
        assert_eq!(kept.chunks.len(), 2);
    }
}
