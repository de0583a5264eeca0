//! The time-series chart of the overview: inline SVG drawn on the server (bars for page views,
//! a line for visitors), styled by classes from the stylesheet, with a `<title>` per bucket so
//! hovering shows the numbers without any script. Built with [`Html`], so every piece of text
//! is escaped.

use super::html::{group_digits, Html};
use super::time;
use crate::store::reports::{Bucket, Point};

const W: f64 = 760.0;
const H: f64 = 240.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// The smallest of 1, 2, 5 × 10^k at least `v` (and at least 1).
pub fn nice_max(v: u64) -> u64 {
    let mut scale = 1u64;
    loop {
        for m in [1, 2, 5] {
            let candidate = scale.saturating_mul(m);
            if candidate >= v.max(1) {
                return candidate;
            }
        }
        scale = scale.saturating_mul(10);
        if scale == u64::MAX {
            return u64::MAX;
        }
    }
}

fn label(ts_ms: i64, bucket: Bucket) -> String {
    match bucket {
        Bucket::Day => time::iso_date(ts_ms),
        Bucket::Hour => time::short(ts_ms),
    }
}

/// The chart of `points`, or a short note when there are none.
pub fn timeseries(points: &[Point], bucket: Bucket) -> Html {
    let mut h = Html::new();
    if points.is_empty() {
        h.raw("<p class=\"empty\">No data in this range.</p>");
        return h;
    }
    let max = nice_max(
        points
            .iter()
            .map(|p| p.pageviews.max(p.visitors))
            .max()
            .unwrap_or(0),
    );
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let step = plot_w / points.len() as f64;
    let bar_w = (step * 0.8).max(1.0);
    let y = |v: u64| TOP + plot_h - (v as f64 / max as f64) * plot_h;

    h.raw("<svg class=\"chart\" viewBox=\"0 0 760 240\" role=\"img\" aria-label=\"Page views (bars) and visitors (line) over time\" xmlns=\"http://www.w3.org/2000/svg\">");
    // Grid lines and their values.
    let mut grid = vec![0, max / 2, max];
    grid.dedup();
    for v in grid {
        let gy = y(v);
        h.raw("<line class=\"grid\" x1=\"")
            .float(LEFT, 1)
            .raw("\" x2=\"")
            .float(W - RIGHT, 1)
            .raw("\" y1=\"")
            .float(gy, 1)
            .raw("\" y2=\"")
            .float(gy, 1)
            .raw("\"/><text class=\"axis\" text-anchor=\"end\" x=\"")
            .float(LEFT - 6.0, 1)
            .raw("\" y=\"")
            .float(gy + 4.0, 1)
            .raw("\">")
            .text(&group_digits(v))
            .raw("</text>");
    }
    // Page view bars, each with its numbers as a tooltip.
    for (i, p) in points.iter().enumerate() {
        let x = LEFT + step * i as f64 + (step - bar_w) / 2.0;
        let top = y(p.pageviews);
        h.raw("<rect class=\"bar\" x=\"")
            .float(x, 2)
            .raw("\" y=\"")
            .float(top, 2)
            .raw("\" width=\"")
            .float(bar_w, 2)
            .raw("\" height=\"")
            .float(TOP + plot_h - top, 2)
            .raw("\"><title>")
            .text(&format!(
                "{}: {} page views, {} visitors",
                label(p.ts_ms, bucket),
                group_digits(p.pageviews),
                group_digits(p.visitors)
            ))
            .raw("</title></rect>");
    }
    // Visitors as a line through the middle of the bars.
    h.raw("<polyline class=\"line\" points=\"");
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            h.raw(" ");
        }
        h.float(LEFT + step * (i as f64 + 0.5), 2)
            .raw(",")
            .float(y(p.visitors), 2);
    }
    h.raw("\"/>");
    // First, middle and last bucket under the axis.
    let mut shown: Vec<usize> = vec![0, points.len() / 2, points.len() - 1];
    shown.dedup();
    for (n, i) in shown.iter().enumerate() {
        let anchor = match (n, shown.len()) {
            (0, _) => "start",
            (n, len) if n + 1 == len => "end",
            _ => "middle",
        };
        let x = match anchor {
            "start" => LEFT,
            "end" => W - RIGHT,
            _ => LEFT + step * (*i as f64 + 0.5),
        };
        h.raw("<text class=\"axis\" x=\"")
            .float(x, 1)
            .raw("\" y=\"")
            .float(H - 8.0, 1)
            .raw("\" text-anchor=\"");
        h.raw(match anchor {
            "start" => "start",
            "end" => "end",
            _ => "middle",
        });
        h.raw("\">")
            .text(&label(points[*i].ts_ms, bucket))
            .raw("</text>");
    }
    h.raw("</svg>");
    h.raw("<p class=\"legend\"><span class=\"key bar\"></span>Page views <span class=\"key line\"></span>Visitors</p>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_maxima() {
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(1), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(11), 20);
        assert_eq!(nice_max(4999), 5000);
        assert_eq!(nice_max(u64::MAX), u64::MAX);
    }

    #[test]
    fn one_bar_per_point_with_a_tooltip() {
        let points: Vec<Point> = (0..24)
            .map(|i| Point {
                ts_ms: i * 3_600_000,
                pageviews: i as u64,
                visitors: (i / 2) as u64,
            })
            .collect();
        let svg = timeseries(&points, Bucket::Hour).into_string();
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 24);
        assert!(svg.contains("<title>1970-01-01 23:00: 23 page views, 11 visitors</title>"));
        assert!(svg.contains(">1970-01-01 00:00</text>"));
        assert!(!svg.contains("NaN"));
        let empty = timeseries(&[], Bucket::Day).into_string();
        assert!(empty.contains("No data"));
        let one = timeseries(&points[..1], Bucket::Day).into_string();
        assert_eq!(one.matches("<rect").count(), 1);
    }
}
