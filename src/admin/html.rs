//! Building HTML safely.
//!
//! [`Html`] only accepts markup as `&'static str` (text written in this source code); every
//! other string goes through [`escape`], as element text ([`Html::text`]) or as a quoted
//! attribute value ([`Html::attr`]). So a value from the store (page titles, URLs, referrers,
//! names, e-mails: all visitor-supplied) can never become markup, by construction. The SVG
//! chart is built the same way.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Escapes text for HTML element content and for quoted attribute values (also in SVG):
/// `& < > " '`.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s
        .bytes()
        .any(|b| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\''))
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Markup under construction. See the module documentation.
#[derive(Debug, Default, Clone)]
pub struct Html(String);

impl Html {
    pub fn new() -> Self {
        Html(String::with_capacity(4096))
    }

    /// Markup written in the source code.
    pub fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.0.push_str(markup);
        self
    }

    /// Text, escaped.
    pub fn text(&mut self, text: &str) -> &mut Self {
        self.0.push_str(&escape(text));
        self
    }

    /// An integer (never needs escaping).
    pub fn num(&mut self, n: impl Into<i128>) -> &mut Self {
        let _ = write!(self.0, "{}", n.into());
        self
    }

    /// A finite number with at most `decimals` decimals (for SVG coordinates); 0 otherwise.
    pub fn float(&mut self, v: f64, decimals: usize) -> &mut Self {
        let v = if v.is_finite() { v } else { 0.0 };
        let _ = write!(self.0, "{v:.decimals$}");
        self
    }

    /// ` name="value"`, the value escaped.
    pub fn attr(&mut self, name: &'static str, value: &str) -> &mut Self {
        self.0.push(' ');
        self.0.push_str(name);
        self.0.push_str("=\"");
        self.0.push_str(&escape(value));
        self.0.push('"');
        self
    }

    /// Appends other (already safe) markup.
    pub fn push(&mut self, other: &Html) -> &mut Self {
        self.0.push_str(&other.0);
        self
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The section of the dashboard a page belongs to (highlighted in the navigation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Breakdown,
    Contacts,
    Companies,
    None,
}

/// A whole page: header with navigation and (when logged in with a session) the log-out
/// button, then `body`. `csrf` is the session's token, `None` without a session.
pub fn page(title: &str, nav: Nav, csrf: Option<&str>, body: &Html) -> Html {
    let mut h = Html::new();
    h.raw("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")
        .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
        .raw("<meta name=\"referrer\" content=\"no-referrer\">")
        .raw("<title>")
        .text(title)
        .raw(" · smproxy</title><link rel=\"stylesheet\" href=\"/static/style.css\">")
        .raw("<link rel=\"icon\" href=\"data:,\"></head><body>");
    h.raw("<header class=\"top\"><a class=\"brand\" href=\"/\">smproxy</a>");
    if nav != Nav::None {
        h.raw("<nav>");
        for (n, href, label) in [
            (Nav::Overview, "/", "Overview"),
            (Nav::Breakdown, "/breakdown", "Breakdowns"),
            (Nav::Contacts, "/contacts", "Contacts"),
            (Nav::Companies, "/companies", "Companies"),
        ] {
            h.raw("<a").attr("href", href);
            if n == nav {
                h.raw(" class=\"active\" aria-current=\"page\"");
            }
            h.raw(">").text(label).raw("</a>");
        }
        h.raw("<a href=\"/api/openapi.json\">API</a></nav>");
        if let Some(csrf) = csrf {
            h.raw("<form class=\"logout\" method=\"post\" action=\"/logout\">");
            csrf_field(&mut h, csrf);
            h.raw("<button type=\"submit\" class=\"link\">Log out</button></form>");
        }
    }
    h.raw("</header><main>")
        .push(body)
        .raw("</main></body></html>\n");
    h
}

/// The hidden CSRF field of a POST form.
pub fn csrf_field(h: &mut Html, csrf: &str) {
    h.raw("<input type=\"hidden\" name=\"csrf\"")
        .attr("value", csrf)
        .raw(">");
}

/// A column of a table: its heading and whether it holds numbers (right-aligned).
pub struct Col {
    pub title: &'static str,
    pub numeric: bool,
}

pub const fn col(title: &'static str) -> Col {
    Col {
        title,
        numeric: false,
    }
}

pub const fn num_col(title: &'static str) -> Col {
    Col {
        title,
        numeric: true,
    }
}

/// A cell's content.
pub enum Td {
    Text(String),
    Num(u64),
    /// Text linking to an admin URL (built by this code, never a stored URL).
    Link {
        href: String,
        text: String,
    },
    Muted(&'static str),
}

/// A table; `empty` is shown when there are no rows.
pub fn table(h: &mut Html, cols: &[Col], rows: Vec<Vec<Td>>, empty: &'static str) {
    if rows.is_empty() {
        h.raw("<p class=\"empty\">").text(empty).raw("</p>");
        return;
    }
    h.raw("<div class=\"scroll\"><table><thead><tr>");
    for c in cols {
        if c.numeric {
            h.raw("<th class=\"num\">");
        } else {
            h.raw("<th>");
        }
        h.text(c.title).raw("</th>");
    }
    h.raw("</tr></thead><tbody>");
    for row in rows {
        h.raw("<tr>");
        for (i, cell) in row.into_iter().enumerate() {
            let numeric = cols.get(i).is_some_and(|c| c.numeric);
            h.raw(if numeric {
                "<td class=\"num\">"
            } else {
                "<td>"
            });
            match cell {
                Td::Text(t) => {
                    h.text(&t);
                }
                Td::Num(n) => {
                    h.text(&group_digits(n));
                }
                Td::Link { href, text } => {
                    h.raw("<a")
                        .attr("href", &href)
                        .raw(">")
                        .text(&text)
                        .raw("</a>");
                }
                Td::Muted(t) => {
                    h.raw("<span class=\"muted\">").text(t).raw("</span>");
                }
            }
            h.raw("</td>");
        }
        h.raw("</tr>");
    }
    h.raw("</tbody></table></div>");
}

/// `12345678` → `12 345 678` (thin spaces would be nicer, plain ones copy better).
pub fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// A duration in ms as `1 h 02 min`, `3 min 05 s` or `12 s`.
pub fn duration(ms: f64) -> String {
    let secs = if ms.is_finite() && ms > 0.0 {
        (ms / 1000.0).round() as u64
    } else {
        0
    };
    if secs >= 3600 {
        format!("{} h {:02} min", secs / 3600, secs / 60 % 60)
    } else if secs >= 60 {
        format!("{} min {:02} s", secs / 60, secs % 60)
    } else {
        format!("{secs} s")
    }
}

/// A ratio 0..1 as a percentage.
pub fn percent(r: f64) -> String {
    if r.is_finite() {
        format!("{:.1} %", r * 100.0)
    } else {
        "–".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<img src=x onerror=alert(1)>"),
            "&lt;img src=x onerror=alert(1)&gt;"
        );
        assert_eq!(escape("a & \"b\" 'c'"), "a &amp; &quot;b&quot; &#39;c&#39;");
        assert!(matches!(escape("plain text"), Cow::Borrowed(_)));
    }

    #[test]
    fn attributes_and_text_are_escaped() {
        let mut h = Html::new();
        h.raw("<a")
            .attr("href", "/x?a=1&b=\"><script>")
            .raw(">")
            .text("</a><script>alert(1)</script>")
            .raw("</a>");
        assert_eq!(
            h.as_str(),
            "<a href=\"/x?a=1&amp;b=&quot;&gt;&lt;script&gt;\">&lt;/a&gt;&lt;script&gt;alert(1)&lt;/script&gt;</a>"
        );
    }

    #[test]
    fn tables_escape_every_cell() {
        let mut h = Html::new();
        table(
            &mut h,
            &[col("Page"), num_col("Views")],
            vec![vec![Td::Text("<b>x</b>".into()), Td::Num(1234567)]],
            "none",
        );
        assert!(h.as_str().contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(h.as_str().contains("1 234 567"));
        assert!(!h.as_str().contains("<b>"));
    }

    #[test]
    fn formats() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1 000");
        assert_eq!(duration(65_000.0), "1 min 05 s");
        assert_eq!(duration(3_725_000.0), "1 h 02 min");
        assert_eq!(duration(f64::NAN), "0 s");
        assert_eq!(percent(0.256), "25.6 %");
    }
}
