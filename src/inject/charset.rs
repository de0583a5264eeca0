//! The character encoding of an HTML response, from its `Content-Type` or byte-order mark.
//! Only ASCII-compatible encodings can be rewritten; the rest pass through unchanged.

use encoding_rs::Encoding;
use lol_html::AsciiCompatibleEncoding;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Charset {
    /// An ASCII-compatible encoding was declared in the header.
    Declared(AsciiCompatibleEncoding),
    /// Not declared (or an unknown label): a `<meta charset>` may declare it; HTML allows only
    /// ASCII-compatible ones there (a `<meta>` saying UTF-16 means UTF-8).
    Undeclared,
    /// UTF-16 and the like: cannot be rewritten.
    Unsupported,
}

/// The encoding the rewriter parses with, whatever the page's ASCII-compatible charset.
///
/// Everything the injector looks at is ASCII (tag and attribute names, the `_smid` markers),
/// and every ASCII-compatible encoding keeps ASCII bytes as they are. windows-1252 maps every
/// byte to a character and back, so text that lol_html decodes and encodes again (script text
/// seen by a handler) comes out byte for byte as it came in, even where the page's bytes are
/// invalid in its declared charset. Parsing with the declared UTF-8 would turn such bytes
/// into U+FFFD.
pub fn rewriting_encoding() -> AsciiCompatibleEncoding {
    AsciiCompatibleEncoding::new(encoding_rs::WINDOWS_1252)
        .unwrap_or_else(AsciiCompatibleEncoding::utf_8)
}

/// The `charset` parameter of a `Content-Type` value.
pub fn from_content_type(content_type: &str) -> Charset {
    let label = content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').trim_matches('\''))
    });
    match label.and_then(|l| Encoding::for_label(l.as_bytes())) {
        None => Charset::Undeclared,
        Some(enc) => match AsciiCompatibleEncoding::new(enc) {
            Some(a) => Charset::Declared(a),
            None => Charset::Unsupported,
        },
    }
}

/// Whether the body starts with a UTF-16 byte-order mark (which overrides any declaration).
pub fn has_utf16_bom(first_bytes: &[u8]) -> bool {
    first_bytes.starts_with(&[0xFF, 0xFE]) || first_bytes.starts_with(&[0xFE, 0xFF])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_charsets() {
        assert_eq!(from_content_type("text/html"), Charset::Undeclared);
        assert!(matches!(
            from_content_type("text/html; charset=windows-1252"),
            Charset::Declared(_)
        ));
        assert!(matches!(
            from_content_type("text/html;charset=\"UTF-8\""),
            Charset::Declared(_)
        ));
        assert_eq!(
            from_content_type("text/html; charset=utf-16le"),
            Charset::Unsupported
        );
        assert_eq!(
            from_content_type("text/html; charset=UTF-16"),
            Charset::Unsupported
        );
        assert_eq!(
            from_content_type("text/html; charset=bogus"),
            Charset::Undeclared
        );
        assert!(has_utf16_bom(&[0xFF, 0xFE, b'<']));
        assert!(!has_utf16_bom(b"<html>"));
    }
}
