//! CSV exports (RFC 4180), safe to open in a spreadsheet.
//!
//! Every text cell is quoted (inner quotes doubled), so commas, quotes and line breaks in
//! visitor-supplied values never break a row. A text cell that a spreadsheet would read as a
//! formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`,
//! which spreadsheets show as text: a page title such as `=HYPERLINK(...)` stays a title.
//! Numbers are written bare. Lines end with CRLF.

/// A CSV document being written.
#[derive(Debug, Default)]
pub struct Csv {
    out: String,
}

/// One cell.
#[derive(Debug, Clone, Copy)]
pub enum Cell<'a> {
    Text(&'a str),
    Int(i64),
    Float(f64),
    Empty,
}

impl<'a> From<&'a str> for Cell<'a> {
    fn from(s: &'a str) -> Self {
        Cell::Text(s)
    }
}

impl<'a> From<&'a String> for Cell<'a> {
    fn from(s: &'a String) -> Self {
        Cell::Text(s)
    }
}

impl<'a> From<Option<&'a str>> for Cell<'a> {
    fn from(s: Option<&'a str>) -> Self {
        s.map_or(Cell::Empty, Cell::Text)
    }
}

impl From<u64> for Cell<'_> {
    fn from(n: u64) -> Self {
        Cell::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<i64> for Cell<'_> {
    fn from(n: i64) -> Self {
        Cell::Int(n)
    }
}

impl From<f64> for Cell<'_> {
    fn from(n: f64) -> Self {
        Cell::Float(n)
    }
}

impl From<bool> for Cell<'_> {
    fn from(b: bool) -> Self {
        Cell::Text(if b { "true" } else { "false" })
    }
}

impl Csv {
    pub fn new() -> Self {
        Csv::default()
    }

    /// A header row of column names.
    pub fn header(&mut self, names: &[&str]) -> &mut Self {
        let cells: Vec<Cell> = names.iter().map(|n| Cell::Text(n)).collect();
        self.row(&cells)
    }

    pub fn row(&mut self, cells: &[Cell]) -> &mut Self {
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            match *cell {
                Cell::Text(s) => push_text(&mut self.out, s),
                Cell::Int(n) => self.out.push_str(&n.to_string()),
                Cell::Float(f) if f.is_finite() => {
                    let mut s = format!("{f:.4}");
                    while s.contains('.') && (s.ends_with('0') || s.ends_with('.')) {
                        s.pop();
                    }
                    self.out.push_str(&s);
                }
                Cell::Float(_) | Cell::Empty => {}
            }
        }
        self.out.push_str("\r\n");
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// True when a spreadsheet would evaluate a cell starting like `s`.
pub fn looks_like_formula(s: &str) -> bool {
    matches!(
        s.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    )
}

fn push_text(out: &mut String, s: &str) {
    out.push('"');
    if looks_like_formula(s) {
        out.push('\'');
    }
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_every_text_cell() {
        let mut c = Csv::new();
        c.header(&["key", "pageviews"]);
        c.row(&["a,b".into(), 3u64.into()]);
        c.row(&["say \"hi\"\nthere".into(), Cell::Empty]);
        c.row(&[Cell::Float(0.5), Cell::Float(2.0), Cell::Float(f64::NAN)]);
        assert_eq!(
            c.finish(),
            "\"key\",\"pageviews\"\r\n\"a,b\",3\r\n\"say \"\"hi\"\"\nthere\",\r\n0.5,2,\r\n"
        );
    }

    #[test]
    fn formulas_become_text() {
        for (input, cell) in [
            (
                "=HYPERLINK(\"http://x\")",
                "\"'=HYPERLINK(\"\"http://x\"\")\"",
            ),
            ("+1+1", "\"'+1+1\""),
            ("-2+3", "\"'-2+3\""),
            ("@SUM(A1)", "\"'@SUM(A1)\""),
            ("\tcmd", "\"'\tcmd\""),
            ("\r=1", "\"'\r=1\""),
            ("a=1", "\"a=1\""),
            ("", "\"\""),
        ] {
            let mut c = Csv::new();
            c.row(&[input.into()]);
            assert_eq!(c.finish(), format!("{cell}\r\n"), "{input:?}");
        }
        // Numbers are not text cells: negative numbers stay numbers.
        let mut c = Csv::new();
        c.row(&[Cell::Int(-5)]);
        assert_eq!(c.finish(), "-5\r\n");
    }
}
