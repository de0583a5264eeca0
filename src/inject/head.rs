//! The head of a page without lol_html: finds its `</head>` end tag with a byte scan, for the
//! usual page whose head holds no monitoring code, so the snippet can go in and the fast path
//! of [`super::tail`] take over without parsing the head at all.
//!
//! The scan follows the tokenizer only as far as it needs to know that a `</head>` is a real
//! end tag: tags (quoted attribute values can hold a `>`), comments, doctypes, and the text of
//! `script`, `style`, `title` and the other elements whose text is not markup (a `</head>` in
//! them is text), which ends at the first `</name` followed by a space, `/` or `>`. It gives up
//! on anything it does not follow the way lol_html does, and on anything that could make the
//! page's outcome other than "snippet before `</head>`": a marker of a code in a script's start
//! tag or text, a script that may escape twice (`<!--` then `<script`), SVG or MathML,
//! `<plaintext>`, a start tag before `<head>` that leaves an element open (its end tag would
//! end the head; `<html>`, void elements and whole `<script>`, `<title>`, `<style>` ... elements
//! are followed), a second `<head>`, `<body>`, `</html>`, an end tag `</head ...>` with more
//! than its name, a head longer than the limit. The injector then parses the page from its
//! first byte with lol_html, which gives back the bytes already sent unchanged (they hold no
//! code and no end tag it would put the snippet before), so giving up costs time, never bytes.

use memchr::memmem;
use std::sync::LazyLock;

use super::attr::Attr;
use super::detect;
use super::tail::SrcMarkers;

/// What the scan knows after the bytes seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The `</head>` end tag starts at this offset: the snippet goes right before it, and
    /// the page after its `>` is in the data state with no script open.
    HeadEnd(usize),
    /// Not decided: more bytes are needed.
    More,
    /// The head must be parsed.
    GiveUp,
}

/// A resumable scan of a document's first bytes; call [`HeadScan::scan`] each time more
/// arrive, with the bytes from [`HeadScan::resume_at`] (or earlier) on.
pub struct HeadScan {
    src: SrcMarkers,
    /// Where the first construct not yet complete starts, in bytes of the document (inside
    /// an open element's text: a few bytes before where it was read to).
    pos: usize,
    head_open: bool,
    head_seen: bool,
    /// The text of a `script` or raw-text element whose end has not arrived yet.
    text: Option<OpenText>,
}

/// The text of a `script` or raw-text element whose end tag has not arrived: read as it comes,
/// not again with every chunk (a long inline script cut between chunks would be).
#[derive(Debug, Clone, Copy)]
struct OpenText {
    /// The element's name, lower case (`script`, `style`, `noscript`, ...): `len` bytes.
    name: [u8; 9],
    len: usize,
    script: bool,
    /// Where the text starts, in bytes of the document.
    start: usize,
    /// Read up to here: no end tag starts, and (in a script) no marker and no double escape
    /// is complete, before `checked - OVERLAP`.
    checked: usize,
    /// Where a script's first `<!--` starts: a `<script` after it may escape twice.
    escape: Option<usize>,
}

/// Bytes read again before where an open text was read to: enough for what may have been cut
/// there (`</noscript` and the byte after it, `SalesmanagoObject`, `<script`).
const OVERLAP: usize = 24;

static COMMENT_END: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"-->"));
static COMMENT_BANG_END: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"--!>"));
static SCRIPT_ESCAPE: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"<!--"));

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t' | b'\x0C')
}

/// Where the tag name starting at `b[from]` ends (at a space, `/` or `>`), if it does in `b`.
fn name_end(b: &[u8], from: usize) -> Option<usize> {
    b[from..]
        .iter()
        .position(|&c| is_space(c) || c == b'/' || c == b'>')
        .map(|n| from + n)
}

/// The start of the first `</name` (any case) in `b[from..]` followed by a space, `/` or `>`:
/// where the text of a `name` element ends. `Err` when `b` ends before it can be told.
fn text_end(b: &[u8], from: usize, name: &[u8]) -> Result<usize, ()> {
    let mut i = from;
    // A `<` and a look at the next byte: cheaper than a substring search set up per call.
    while let Some(n) = memchr::memchr(b'<', &b[i..]) {
        let at = i + n;
        if b.get(at + 1) != Some(&b'/') {
            i = at + 1;
            continue;
        }
        let name_at = at + 2;
        let after = name_at + name.len();
        if b.len() < after + 1 {
            // `</scr` at the end: cannot tell yet.
            if b[name_at..].eq_ignore_ascii_case(&name[..b.len() - name_at]) {
                return Err(());
            }
            i = at + 2;
            continue;
        }
        if b[name_at..after].eq_ignore_ascii_case(name) {
            let c = b[after];
            if is_space(c) || c == b'/' || c == b'>' {
                return Ok(at);
            }
        }
        i = at + 2;
    }
    Err(())
}

/// What the scan must do with a start tag, by its name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Head,
    Html,
    /// Never stays open: lol_html's void elements (`selectors_vm/stack.rs`).
    Void,
    Script,
    /// Raw text or RCDATA (lol_html's tree builder simulation): ends at its end tag, nothing
    /// inside matters.
    Raw,
    /// Changes what follows in ways the scan does not follow.
    GiveUp,
    /// Any other element: its text is markup.
    Other,
}

/// The kind of the start tag `name`, in any case: one lower-cased copy and one `match`, as
/// this runs for every start tag of the head.
fn kind(name: &[u8]) -> Kind {
    let mut low = [0u8; 9];
    let Some(low) = low.get_mut(..name.len()) else {
        return Kind::Other;
    };
    for (l, c) in low.iter_mut().zip(name) {
        *l = c.to_ascii_lowercase();
    }
    match &*low {
        b"head" => Kind::Head,
        b"html" => Kind::Html,
        b"script" => Kind::Script,
        b"style" | b"iframe" | b"xmp" | b"noembed" | b"noframes" | b"noscript" | b"title"
        | b"textarea" => Kind::Raw,
        b"body" | b"frameset" | b"svg" | b"math" | b"plaintext" | b"template" => Kind::GiveUp,
        b"area" | b"base" | b"basefont" | b"bgsound" | b"br" | b"col" | b"embed" | b"hr"
        | b"img" | b"input" | b"keygen" | b"link" | b"meta" | b"param" | b"source" | b"track"
        | b"wbr" => Kind::Void,
        _ => Kind::Other,
    }
}

impl HeadScan {
    pub fn new(tracker_path: &str) -> Self {
        HeadScan {
            src: SrcMarkers::new(tracker_path),
            pos: 0,
            head_open: false,
            head_seen: false,
            text: None,
        }
    }

    /// Where the first construct not yet complete starts: the next [`HeadScan::scan`] needs
    /// the document's bytes from here on, and every byte before it has been decided (it is
    /// what the parser would give back unchanged, unless a later byte makes the scan give up).
    pub fn resume_at(&self) -> usize {
        self.pos
    }

    /// Scans `b`, the document's bytes from its offset `base` (at most
    /// [`HeadScan::resume_at`]) to all seen so far: the bytes already scanned are not read
    /// again, except a construct that was not complete. Offsets returned are the document's.
    pub fn scan(&mut self, b: &[u8], base: usize) -> Scan {
        debug_assert!(base <= self.pos && self.pos <= base + b.len());
        let mut at = self.pos - base;
        loop {
            if self.text.is_some() {
                match self.text_continues(b, base) {
                    Ok(Step::Next(to)) => at = to,
                    Ok(Step::GiveUp) => return Scan::GiveUp,
                    Ok(Step::HeadEnd) => unreachable!("text ends at its own end tag"),
                    // `pos` is set where the text is to be read again from.
                    Err(()) => return Scan::More,
                }
                continue;
            }
            let Some(n) = memchr::memchr(b'<', &b[at..]) else {
                self.pos = base + b.len();
                return Scan::More;
            };
            let i = at + n;
            match self.construct(b, i, base) {
                Ok(Step::Next(to)) => at = to,
                Ok(Step::HeadEnd) => return Scan::HeadEnd(base + i),
                Ok(Step::GiveUp) => return Scan::GiveUp,
                Err(()) => {
                    self.pos = base + i;
                    return Scan::More;
                }
            }
        }
    }

    /// The construct that starts with the `<` at `b[i]`; `Err` when `b` ends inside it.
    fn construct(&mut self, b: &[u8], i: usize, base: usize) -> Result<Step, ()> {
        let &next = b.get(i + 1).ok_or(())?;
        match next {
            b'!' => {
                let rest = &b[i + 2..];
                if rest.len() < 2 && b"--".starts_with(rest) {
                    return Err(());
                }
                if rest.starts_with(b"--") {
                    self.comment(b, i + 4)
                } else {
                    // A doctype or a bogus comment ends at the first `>`.
                    let n = memchr::memchr(b'>', rest).ok_or(())?;
                    Ok(Step::Next(i + 2 + n + 1))
                }
            }
            b'?' => {
                let n = memchr::memchr(b'>', &b[i + 2..]).ok_or(())?;
                Ok(Step::Next(i + 2 + n + 1))
            }
            b'/' => {
                let &first = b.get(i + 2).ok_or(())?;
                if !first.is_ascii_alphabetic() {
                    return Ok(Step::GiveUp);
                }
                let end = name_end(b, i + 2).ok_or(())?;
                let name = &b[i + 2..end];
                if name.eq_ignore_ascii_case(b"head") {
                    return Ok(if self.head_open && b[end] == b'>' {
                        Step::HeadEnd
                    } else {
                        Step::GiveUp
                    });
                }
                if name.eq_ignore_ascii_case(b"html") || name.eq_ignore_ascii_case(b"body") {
                    return Ok(Step::GiveUp);
                }
                let n = Attr::BeforeName.run(&b[end..]).ok_or(())?;
                Ok(Step::Next(end + n))
            }
            c if c.is_ascii_alphabetic() => self.start_tag(b, i, base),
            // Text.
            _ => Ok(Step::Next(i + 1)),
        }
    }

    fn comment(&self, b: &[u8], body: usize) -> Result<Step, ()> {
        let rest = &b[body..];
        if rest.len() < 2 && b"->".starts_with(rest) {
            return Err(());
        }
        // `<!-->` and `<!--->` end where they begin: rare, left to the parser.
        if rest.starts_with(b">") || rest.starts_with(b"->") {
            return Ok(Step::GiveUp);
        }
        let Some(n) = COMMENT_END.find(rest) else {
            // `--!>` ends a comment too.
            return if COMMENT_BANG_END.find(rest).is_some() {
                Ok(Step::GiveUp)
            } else {
                Err(())
            };
        };
        if COMMENT_BANG_END.find(&rest[..n + 3]).is_some() {
            return Ok(Step::GiveUp);
        }
        Ok(Step::Next(body + n + 3))
    }

    fn start_tag(&mut self, b: &[u8], i: usize, base: usize) -> Result<Step, ()> {
        let name_to = name_end(b, i + 1).ok_or(())?;
        let name = &b[i + 1..name_to];
        let n = Attr::BeforeName.run(&b[name_to..]).ok_or(())?;
        let end = name_to + n;
        let kind = kind(name);
        if kind == Kind::Head {
            if self.head_seen || b[end - 2] == b'/' {
                return Ok(Step::GiveUp);
            }
            self.head_seen = true;
            self.head_open = true;
            return Ok(Step::Next(end));
        }
        if kind == Kind::Html && !self.head_seen {
            return Ok(Step::Next(end));
        }
        // lol_html ends an element when an end tag closes one of its ancestors: an element
        // left open before `<head>` (an `<a>`, a `<div>`) would end the head at its end tag,
        // not at `</head>`. So before `<head>` only elements that leave nothing open may come:
        // void ones (`<meta charset>` first is common), which lol_html never puts on its
        // stack, and those whose text is not markup, which end at their own end tag (found
        // below, as in the head).
        if !self.head_seen && !matches!(kind, Kind::Void | Kind::Script | Kind::Raw) {
            return Ok(Step::GiveUp);
        }
        match kind {
            Kind::GiveUp | Kind::Html | Kind::Head => Ok(Step::GiveUp),
            Kind::Void | Kind::Other => Ok(Step::Next(end)),
            Kind::Raw | Kind::Script => {
                let script = kind == Kind::Script;
                if script && self.src.in_slice(&b[i..end]) {
                    return Ok(Step::GiveUp);
                }
                // The start tag is complete: its text is read from here on as it comes.
                let mut low = [0u8; 9];
                low[..name.len()].copy_from_slice(name);
                low.make_ascii_lowercase();
                self.text = Some(OpenText {
                    name: low,
                    len: name.len(),
                    script,
                    start: base + end,
                    checked: base + end,
                    escape: None,
                });
                Ok(Step::Next(end))
            }
        }
    }

    /// Reads on in the open text; `Next` at its end tag, `Err` (with `pos` set) when `b` ends
    /// first. A script gives up as soon as its text so far names a marker or may escape twice,
    /// which its whole text then does too.
    fn text_continues(&mut self, b: &[u8], base: usize) -> Result<Step, ()> {
        let mut t = self.text.expect("an open text");
        let from = t.checked.saturating_sub(OVERLAP).max(t.start) - base;
        let name = &t.name[..t.len];
        let end = text_end(b, from, name);
        // What is surely text (no end tag before `to`), with bytes of an end tag that may be
        // cut at `b`'s end, which can make none of the patterns below.
        let to = *end.as_ref().unwrap_or(&b.len());
        if t.script {
            let region = &b[from..to];
            if detect::mentions_marker(region) {
                return Ok(Step::GiveUp);
            }
            if t.escape.is_none() {
                t.escape = SCRIPT_ESCAPE.find(region).map(|n| base + from + n);
            }
            if let Some(e) = t.escape {
                if script_tag_after(&b[(e.max(base + from) - base)..to]) {
                    return Ok(Step::GiveUp);
                }
            }
        }
        match end {
            Ok(close) => {
                self.text = None;
                Ok(Step::Next(close))
            }
            Err(()) => {
                t.checked = base + b.len();
                self.pos = t.checked.saturating_sub(OVERLAP).max(t.start);
                self.text = Some(t);
                Err(())
            }
        }
    }
}

/// Whether `s` holds `<script` in any case. After a `<!--` in script text, one may take the
/// tokenizer into its double-escaped state, where `</script>` does not end the text; without
/// one, a `<!--` (escaped state) does not move the end of the text.
fn script_tag_after(s: &[u8]) -> bool {
    memchr::memchr_iter(b'<', s).any(|i| {
        s[i..]
            .get(..7)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"<script"))
    })
}

enum Step {
    /// The construct ends here.
    Next(usize),
    HeadEnd,
    GiveUp,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACKER: &str = "/_sm/sm.js";

    /// The scan of `doc` fed in pieces cut at every point (the second given all bytes, or
    /// only those from where the scan resumes), then whole, then byte by byte: all must agree.
    fn scan_all_cuts(doc: &[u8]) -> Scan {
        let whole = HeadScan::new(TRACKER).scan(doc, 0);
        for cut in 0..=doc.len() {
            for from_resume in [false, true] {
                let mut s = HeadScan::new(TRACKER);
                let first = s.scan(&doc[..cut], 0);
                let r = match first {
                    Scan::More if from_resume => {
                        let base = s.resume_at();
                        assert!(base <= cut);
                        s.scan(&doc[base..], base)
                    }
                    Scan::More => s.scan(doc, 0),
                    decided => decided,
                };
                assert_eq!(
                    r,
                    whole,
                    "cut at {cut} of {:?}",
                    String::from_utf8_lossy(doc)
                );
            }
        }
        // Byte by byte, each time from where the scan resumes.
        let mut s = HeadScan::new(TRACKER);
        let mut r = Scan::More;
        for n in 1..=doc.len() {
            let base = s.resume_at();
            r = s.scan(&doc[base..n], base);
            if r != Scan::More {
                break;
            }
        }
        assert_eq!(r, whole, "byte by byte");
        whole
    }

    fn at_head_end(doc: &str) -> usize {
        match scan_all_cuts(doc.as_bytes()) {
            Scan::HeadEnd(at) => at,
            other => panic!("{other:?} for {doc}"),
        }
    }

    #[test]
    fn finds_the_end_tag_past_text_that_only_looks_like_it() {
        let cases = [
            "<!doctype html><html><head><title>t</title></head><body>",
            "<HTML><HEAD><TITLE>T</TITLE></HEAD>",
            "<html><head><script>var s='</head>';</script></head>",
            "<html><head><SCRIPT type=x>a</SCRIPTX></head>b</Script ></head>",
            "<html><head><!-- </head> --><meta content=\"</head>\"></head>",
            "<head><meta a='>' b=\"'>\" c=d>e</head>",
            "<head><style>p{}</head></style><title></head></title></head>",
            "<head><noscript><img src=x></noscript><textarea></head></textarea></head>",
            "<head><?php </head> ?><!x </head>></head>",
            "<head><link rel=x/><p>a < b</p></head>",
            "<head><script>a</script\n></head>",
            "<head><script><!-- x = '</head>'; //--></script></head>",
            "<head><script><!-- <scrip></script><script>--><script></script></head>",
            "\u{feff}<head></head>",
            "<!doctype html><meta charset=utf-8><head><title>t</title></head>",
            "<html><META http-equiv=x content='</head>'/><link rel=a><head></head>",
            "<html><script>var s='</head>';</script><head></head>",
            "<title></head></title><style>a{}</style><noscript></head></noscript><head></head>",
            "<base href=/><br><img src=x><wbr><head><meta a=b></head>",
            // Long texts, read piece by piece: ends and near-misses far from where they start.
            "<head><script>var a = '0123456789012345678901234567890123456789 </scrip </scriptx';\
             var b = '<!-- not an escape that matters --> _smi d SalesmanagoObjec';</script></head>",
            "<head><style>p { color: red } /* 0123456789012345678901234567890123456789 */\
             </STYLE ></head>",
            "<head><noscript><img src=x> 0123456789012345678901234567890123456789 </noscript\
             ></head>",
        ];
        for doc in cases {
            let at = at_head_end(doc);
            assert_eq!(&doc[at..at + 7].to_ascii_lowercase(), "</head>", "{doc}");
            assert_eq!(doc.to_ascii_lowercase().rfind("</head>"), Some(at), "{doc}");
        }
    }

    #[test]
    fn gives_up_on_what_it_does_not_follow() {
        let cases = [
            "<head><script>var _smid = 'a';</script></head>",
            "<head><script>w['SalesmanagoObject']=1</script></head>",
            "<head><script src='https://x/STATIC/SM.JS'></script></head>",
            "<head><script src=/_sm/sm.js async></script></head>",
            "<head><script><!-- <script></script> --></script></head>",
            "<head><script><!-- a <SCRIPT>b</script></head>",
            "<head><script>var a = '0123456789012345678901234567890123456789'; _smid = 1;\
             </script></head>",
            "<head><script>var a = '01234567890123456789012345678901234567890123456789';\
             var b = 'SalesmanagoObject';</script></head>",
            "<head><script>/* <!-- */ var a = '0123456789012345678901234567890123456789';\
             /* <Script> */</script></head>",
            "<head><svg></svg></head>",
            "<head><math></math></head>",
            "<head><plaintext></head>",
            "<head><head></head>",
            "<head/></head>",
            "<head><body></head>",
            "<head></html></head>",
            "<head></head foo>",
            "<head></head/>",
            "<head><!--> </head>",
            "<head><!---> </head>",
            "<head><!-- --!> </head>",
            "<head></ a></head>",
            "<head><template></template></head>",
            "</head>",
            "<html></head>",
            "<a><head><title>t</title></a></head>",
            "<div><head></div></head>",
            "<meta><p><head></p></head>",
            "<metax><head></head>",
            "<script>var _smid='a';</script><head></head>",
            "<script src=/_sm/sm.js></script><head></head>",
            "<title>t</title></head>",
            "<meta></head>",
            "<svg><head></head>",
        ];
        for doc in cases {
            assert_eq!(scan_all_cuts(doc.as_bytes()), Scan::GiveUp, "{doc}");
        }
    }

    #[test]
    fn near_misses_are_not_markers_or_ends() {
        let cases = [
            "<head><script>var smid = 1, _smi = 2;</script></head>",
            "<head><script src=/static/sm.min.js></script><script src=/_sm/sm.j></script></head>",
            "<head><header></header><headx></head>",
            "<head><scripts><p>_smid</p><style>_smid</style></head>",
            "<head><title>SalesmanagoObject</title></head>",
        ];
        for doc in cases {
            at_head_end(doc);
        }
    }

    #[test]
    fn waits_for_the_bytes_that_decide() {
        for doc in [
            "<head>",
            "<head></head",
            "<head><script>a</scrip",
            "<head><!-- x -",
            "<head><meta a='>",
            "<head><!",
            "<head></",
        ] {
            assert_eq!(
                HeadScan::new(TRACKER).scan(doc.as_bytes(), 0),
                Scan::More,
                "{doc}"
            );
        }
    }
}
