//! Finds where an HTTP/1 request head ends in bytes that arrive in pieces, so the header
//! deadline can stop before the body: the body is timed by Pingora's per-read timeout only.

/// Scans a request head chunk by chunk for its end: a line feed followed, after any carriage
/// returns, by another (`\r\n\r\n`, and the bare `\n\n` that Pingora's parser also accepts).
///
/// Empty lines before the request line do not count: a server ignores them (RFC 9112 §2.2),
/// so a client could otherwise send `\r\n\r\n` first and then trickle the real head forever.
#[derive(Debug, Default, Clone, Copy)]
pub struct HeadEnd {
    /// A byte other than CR/LF has been seen: the request line has started.
    started: bool,
    /// The last non-CR byte was a line feed.
    after_lf: bool,
}

impl HeadEnd {
    /// Feeds the next bytes of the stream; the offset just past the head's end if it is in
    /// `chunk` (bytes after it belong to the body or the next request).
    pub fn feed(&mut self, chunk: &[u8]) -> Option<usize> {
        for (i, &b) in chunk.iter().enumerate() {
            match b {
                b'\n' if self.after_lf && self.started => {
                    *self = HeadEnd::default();
                    return Some(i + 1);
                }
                b'\n' => self.after_lf = true,
                b'\r' => {}
                _ => {
                    self.started = true;
                    self.after_lf = false;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end of `input` fed in pieces of `size` bytes, as an offset into the whole input.
    fn end_in_pieces(input: &[u8], size: usize) -> Option<usize> {
        let mut scan = HeadEnd::default();
        let mut offset = 0;
        for piece in input.chunks(size) {
            if let Some(end) = scan.feed(piece) {
                return Some(offset + end);
            }
            offset += piece.len();
        }
        None
    }

    #[test]
    fn finds_the_blank_line_at_any_split() {
        let head = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
        for size in 1..=head.len() {
            assert_eq!(
                end_in_pieces(head, size),
                Some(head.len()),
                "pieces of {size}"
            );
        }
    }

    #[test]
    fn the_body_after_the_head_is_not_scanned() {
        let req = b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n\r\n\r\n";
        assert_eq!(end_in_pieces(req, 7), Some(req.len() - 4));
    }

    #[test]
    fn bare_line_feeds_end_a_head_too() {
        assert_eq!(end_in_pieces(b"GET / HTTP/1.1\nHost: a\n\nxx", 3), Some(24));
        assert_eq!(
            end_in_pieces(b"GET / HTTP/1.1\r\nHost: a\r\n\nxx", 3),
            Some(26)
        );
    }

    #[test]
    fn an_unfinished_head_has_no_end() {
        assert_eq!(
            end_in_pieces(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ", 1),
            None
        );
        assert_eq!(end_in_pieces(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 1), None);
    }

    #[test]
    fn empty_lines_before_the_request_line_do_not_end_it() {
        let req = b"\r\n\r\n\n\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(end_in_pieces(req, 1), Some(req.len()));
        assert_eq!(end_in_pieces(b"\r\n\r\n\r\n", 2), None);
    }

    #[test]
    fn each_head_on_a_connection_is_found_after_a_reset() {
        let mut scan = HeadEnd::default();
        assert_eq!(scan.feed(b"GET /a HTTP/1.1\r\n\r\n"), Some(19));
        assert_eq!(scan.feed(b"\r\n"), None, "a new head has not started");
        assert_eq!(scan.feed(b"GET /b HTTP/1.1\r\n\r\n"), Some(19));
    }
}
