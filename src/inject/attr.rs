//! Where a start tag ends: the tokenizer's attribute states after the tag's name, run over
//! bytes from a table, so that the head scan and the tail's script tags can skip a tag without
//! a parser.
//!
//! A `>` ends the tag anywhere but inside a quoted value, and a quote opens a value only right
//! after `=` (and spaces); everything else only moves between the states that decide those
//! two. One table lookup per byte does that (a `match` on state and byte cost about twice the
//! instructions), and a quoted value, often the longest part of a tag (a URL, a `content`), is
//! skipped with `memchr` for its closing quote.

/// The tokenizer's states inside a start tag, after its name (lol_html's, which differ from
/// the standard's only in ways that do not move the end of the tag). The quoted states come
/// last, so that one comparison tells the table's loop when to leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Attr {
    BeforeName = 0,
    Name = 1,
    AfterName = 2,
    BeforeValue = 3,
    Unquoted = 4,
    SelfClosing = 5,
    DoubleQuoted = 6,
    SingleQuoted = 7,
}

/// The states by number, as [`NEXT`] gives them.
const STATES: [Attr; 8] = [
    Attr::BeforeName,
    Attr::Name,
    Attr::AfterName,
    Attr::BeforeValue,
    Attr::Unquoted,
    Attr::SelfClosing,
    Attr::DoubleQuoted,
    Attr::SingleQuoted,
];

/// Not a state: the byte read was the `>` that ends the tag.
const END: u8 = 8;
/// The first number in [`NEXT`]'s answers that makes its loop stop: a quoted state or [`END`].
const LEAVE: u8 = Attr::DoubleQuoted as u8;

const fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t' | b'\x0C')
}

/// One step of the tokenizer from an unquoted state.
const fn step(state: Attr, b: u8) -> u8 {
    if b == b'>' {
        return END;
    }
    let next = match state {
        Attr::BeforeName | Attr::SelfClosing if is_space(b) => Attr::BeforeName,
        Attr::BeforeName | Attr::SelfClosing | Attr::Name | Attr::AfterName if b == b'/' => {
            Attr::SelfClosing
        }
        Attr::Name | Attr::AfterName if b == b'=' => Attr::BeforeValue,
        Attr::Name | Attr::AfterName if is_space(b) => Attr::AfterName,
        // Anything else starts or goes on with a name (after `/` it is read again as in a
        // name's start).
        Attr::BeforeName | Attr::SelfClosing | Attr::Name | Attr::AfterName => Attr::Name,
        Attr::BeforeValue if is_space(b) => Attr::BeforeValue,
        Attr::BeforeValue if b == b'"' => Attr::DoubleQuoted,
        Attr::BeforeValue if b == b'\'' => Attr::SingleQuoted,
        Attr::BeforeValue => Attr::Unquoted,
        Attr::Unquoted if is_space(b) => Attr::BeforeName,
        Attr::Unquoted => Attr::Unquoted,
        // Never asked: quoted values are skipped with `memchr`.
        Attr::DoubleQuoted | Attr::SingleQuoted => state,
    };
    next as u8
}

/// `NEXT[state][byte]` for the unquoted states: the next state's number, or [`END`].
static NEXT: [[u8; 256]; LEAVE as usize] = {
    let mut table = [[0u8; 256]; LEAVE as usize];
    let mut s = 0;
    while s < LEAVE as usize {
        let mut b = 0;
        while b < 256 {
            table[s][b] = step(STATES[s], b as u8);
            b += 1;
        }
        s += 1;
    }
    table
};

impl Attr {
    /// Runs over `s`; returns the index just past the `>` that ends the tag, if it is in `s`
    /// (else `self` is the state at the end of `s`, to go on with the next bytes).
    pub(super) fn run(&mut self, s: &[u8]) -> Option<usize> {
        let mut state = *self as u8;
        let mut i = 0;
        loop {
            if state != END && state >= LEAVE {
                let q = if state == Attr::DoubleQuoted as u8 {
                    b'"'
                } else {
                    b'\''
                };
                let Some(n) = memchr::memchr(q, &s[i..]) else {
                    *self = STATES[state as usize];
                    return None;
                };
                i += n + 1;
                // After a quoted value, what follows is read as before a name.
                state = Attr::BeforeName as u8;
            }
            while state < LEAVE {
                let Some(&b) = s.get(i) else {
                    *self = STATES[state as usize];
                    return None;
                };
                i += 1;
                state = NEXT[state as usize][b as usize];
            }
            if state == END {
                return Some(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The states as the tokenizer's rules say, one `match` per byte: what the table must do.
    fn reference(state: &mut Attr, s: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < s.len() {
            if let Attr::DoubleQuoted | Attr::SingleQuoted = *state {
                let q = if *state == Attr::DoubleQuoted {
                    b'"'
                } else {
                    b'\''
                };
                i += s[i..].iter().position(|&c| c == q)? + 1;
                *state = Attr::BeforeName;
                continue;
            }
            let b = s[i];
            i += 1;
            *state = match (*state, b) {
                (_, b'>') => return Some(i),
                (Attr::BeforeName, b) if is_space(b) => Attr::BeforeName,
                (Attr::BeforeName, b'/') => Attr::SelfClosing,
                (Attr::BeforeName, _) => Attr::Name,
                (Attr::Name, b) if is_space(b) => Attr::AfterName,
                (Attr::Name, b'=') => Attr::BeforeValue,
                (Attr::Name, b'/') => Attr::SelfClosing,
                (Attr::Name, _) => Attr::Name,
                (Attr::AfterName, b) if is_space(b) => Attr::AfterName,
                (Attr::AfterName, b'/') => Attr::SelfClosing,
                (Attr::AfterName, b'=') => Attr::BeforeValue,
                (Attr::AfterName, _) => Attr::Name,
                (Attr::BeforeValue, b) if is_space(b) => Attr::BeforeValue,
                (Attr::BeforeValue, b'"') => Attr::DoubleQuoted,
                (Attr::BeforeValue, b'\'') => Attr::SingleQuoted,
                (Attr::BeforeValue, _) => Attr::Unquoted,
                (Attr::Unquoted, b) if is_space(b) => Attr::BeforeName,
                (Attr::Unquoted, _) => Attr::Unquoted,
                (Attr::SelfClosing, b) if is_space(b) => Attr::BeforeName,
                (Attr::SelfClosing, b'/') => Attr::SelfClosing,
                (Attr::SelfClosing, _) => Attr::Name,
                (Attr::DoubleQuoted | Attr::SingleQuoted, _) => unreachable!(),
            };
        }
        None
    }

    fn end_of(tag: &str) -> Option<usize> {
        Attr::BeforeName.run(tag.as_bytes())
    }

    #[test]
    fn a_tag_ends_at_the_first_gt_outside_quoted_values() {
        assert_eq!(end_of(" src=a.js>x"), Some(10));
        assert_eq!(end_of(" src=\"a>b\">x"), Some(11));
        assert_eq!(end_of(" src='a>b'>x"), Some(11));
        assert_eq!(end_of(" data-x = \"a>\" >"), Some(16));
        assert_eq!(end_of(">"), Some(1));
        assert_eq!(end_of("/>"), Some(2));
        // A quote only opens a value after `=`: elsewhere it is part of a name or a value.
        assert_eq!(end_of(" a\"b>c\""), Some(5));
        assert_eq!(end_of(" a=b\"c>d\""), Some(7));
        assert_eq!(end_of(" a=\"x\"=\"y>\""), Some(10));
        assert_eq!(end_of(" a / = \"b>\">"), Some(10));
        assert_eq!(end_of(" async defer src=\"x\""), None);
    }

    #[test]
    fn a_tag_cut_anywhere_goes_on_from_the_state_it_was_left_in() {
        let tag = b" type=\"module\" data-a='x>y' b=c/ d = \"e\" async>rest";
        let whole = Attr::BeforeName.run(tag);
        assert_eq!(whole, Some(tag.len() - 4));
        for cut in 0..tag.len() {
            let mut state = Attr::BeforeName;
            let found = match state.run(&tag[..cut]) {
                Some(n) => Some(n),
                None => state.run(&tag[cut..]).map(|n| cut + n),
            };
            assert_eq!(found, whole, "cut at {cut}");
        }
    }

    fn any_state() -> impl Strategy<Value = Attr> {
        (0..STATES.len()).prop_map(|i| STATES[i])
    }

    /// Bytes rich in what matters to a tag: quotes, `=`, `/`, `>`, spaces, letters.
    fn tag_bytes() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => prop::sample::select(b" \t\n\x0C\r=/\"'>".to_vec()),
            4 => prop::sample::select(b"abcXYZ-_.:0".to_vec()),
            1 => any::<u8>(),
        ];
        prop::collection::vec(byte, 0..64)
    }

    proptest! {
        #[test]
        fn the_table_runs_as_the_tokenizer_rules_say(start in any_state(), s in tag_bytes()) {
            let (mut table, mut rules) = (start, start);
            let found = table.run(&s);
            prop_assert_eq!(found, reference(&mut rules, &s));
            if found.is_none() {
                prop_assert_eq!(table, rules);
            }
        }
    }
}
