//! Query parameters of the analytics routes and dashboard filters.
//!
//! - `site`: a configured site name; absent means all sites; an unknown name is `404`.
//! - `from`, `to`: ISO 8601 dates or date-times, UTC unless an offset is given (see
//!   [`super::time::parse_moment`]). `from` as a date means that day's midnight. `to` as a date
//!   **includes that day** (the range ends at the next midnight), so `from=2026-03-01&to=2026-03-01`
//!   is the whole of 1 March; `to` as a date-time is the exclusive end. Default: the last seven
//!   days including today (UTC); only `from`: until the end of today; only `to`: the seven days
//!   before it. `from` must be before `to`.
//! - An empty value counts as absent (what an empty form field sends); any parameter the route
//!   does not know, or one given twice, is a `400` naming it.

use http::HeaderMap;

use super::respond::ApiError;
use super::time::{self, Moment, DAY_MS};
use crate::config::Settings;
use crate::store::reports::{Bucket, Dimension, Filter};

/// Most buckets a time series may have.
pub const MAX_BUCKETS: i64 = 10_000;

/// The decoded query string.
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        Query(
            query
                .map(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .into_owned()
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    /// Refuses parameters outside `allowed`, and parameters given twice.
    pub fn only(&self, allowed: &[&'static str]) -> Result<(), ApiError> {
        for (i, (k, _)) in self.0.iter().enumerate() {
            let Some(name) = allowed.iter().find(|a| **a == k.as_str()) else {
                let msg = if allowed.is_empty() {
                    "unknown parameter: this route takes none".to_string()
                } else {
                    format!("unknown parameter: this route takes {}", allowed.join(", "))
                };
                return Err(ApiError::bad(k.as_str(), msg));
            };
            if self.0[..i].iter().any(|(o, _)| o == k) {
                return Err(ApiError::bad(*name, "given more than once"));
            }
        }
        Ok(())
    }

    /// The value of `name`, if given and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// The `site` parameter: a configured site's name, or all sites.
pub fn site(q: &Query, settings: &Settings) -> Result<Option<String>, ApiError> {
    match q.get("site") {
        None => Ok(None),
        Some(name) if settings.sites.iter().any(|s| s.name == name) => Ok(Some(name.to_string())),
        Some(name) => {
            Err(ApiError::not_found(format!("no site is named '{name}'")).with_parameter("site"))
        }
    }
}

/// A half-open time range in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Range {
    /// The first day, as a date input shows it.
    pub fn from_date(&self) -> String {
        time::iso_date(self.from_ms)
    }

    /// The last day included (the day of the last millisecond).
    pub fn to_date(&self) -> String {
        time::iso_date(self.to_ms - 1)
    }

    pub fn filter(&self, site: Option<String>) -> Filter {
        Filter {
            site,
            from_ms: self.from_ms,
            to_ms: self.to_ms,
        }
    }
}

/// `from` and `to`, with the defaults described in the module documentation.
pub fn range(q: &Query, now_ms: i64) -> Result<Range, ApiError> {
    let read = |name: &'static str| -> Result<Option<Moment>, ApiError> {
        match q.get(name) {
            None => Ok(None),
            Some(v) => time::parse_moment(v).map(Some).ok_or_else(|| {
                ApiError::bad(
                    name,
                    format!("'{v}' is not an ISO 8601 date (2026-03-01) or date-time (2026-03-01T10:30:00Z)"),
                )
            }),
        }
    };
    let from = read("from")?;
    let to = read("to")?;
    let end_of_today = (now_ms.div_euclid(DAY_MS) + 1) * DAY_MS;
    let to_ms = match to {
        None => end_of_today,
        Some(Moment::Date(midnight)) => midnight + DAY_MS,
        Some(Moment::DateTime(t)) => t,
    };
    let from_ms = match from {
        None => to_ms - 7 * DAY_MS,
        Some(Moment::Date(t) | Moment::DateTime(t)) => t,
    };
    if from_ms >= to_ms {
        return Err(ApiError::bad("from", "must be before 'to'"));
    }
    Ok(Range { from_ms, to_ms })
}

/// `bucket=hour|day`; default: hours for ranges up to two days, else days.
pub fn bucket(q: &Query, range: &Range) -> Result<Bucket, ApiError> {
    let b = match q.get("bucket") {
        None if range.to_ms - range.from_ms <= 2 * DAY_MS => Bucket::Hour,
        None | Some("day") => Bucket::Day,
        Some("hour") => Bucket::Hour,
        Some(other) => {
            return Err(ApiError::bad(
                "bucket",
                format!("'{other}' is not one of hour, day"),
            ))
        }
    };
    let n = (range.to_ms - range.from_ms + b.millis() - 1) / b.millis();
    if n > MAX_BUCKETS {
        return Err(ApiError::bad(
            "bucket",
            format!("the range has {n} buckets of this size, at most {MAX_BUCKETS} are allowed"),
        ));
    }
    Ok(b)
}

/// `dimension=`, required.
pub fn dimension(q: &Query) -> Result<Dimension, ApiError> {
    let all: Vec<&str> = Dimension::ALL.iter().map(|d| d.as_str()).collect();
    match q.get("dimension") {
        None => Err(ApiError::bad(
            "dimension",
            format!("is required: one of {}", all.join(", ")),
        )),
        Some(v) => Dimension::parse(v).ok_or_else(|| {
            ApiError::bad(
                "dimension",
                format!("'{v}' is not one of {}", all.join(", ")),
            )
        }),
    }
}

/// A count parameter between 1 and `max`.
pub fn limit(q: &Query, name: &'static str, default: usize, max: usize) -> Result<usize, ApiError> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad(
                name,
                format!("must be a whole number from 1 to {max}"),
            )),
        },
    }
}

/// An offset between 0 and `max`.
pub fn offset(q: &Query, max: usize) -> Result<usize, ApiError> {
    match q.get("offset") {
        None => Ok(0),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(ApiError::bad(
                "offset",
                format!("must be a whole number from 0 to {max}"),
            )),
        },
    }
}

/// JSON or CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

/// `format=json|csv`; without it, `Accept: text/csv` asks for CSV.
pub fn format(q: &Query, headers: &HeaderMap) -> Result<Format, ApiError> {
    match q.get("format") {
        Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some(other) => Err(ApiError::bad(
            "format",
            format!("'{other}' is not one of json, csv"),
        )),
        None => {
            let wants_csv = headers
                .get_all(http::header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|t| {
                    t.split(';')
                        .next()
                        .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv"))
                });
            Ok(if wants_csv { Format::Csv } else { Format::Json })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_772_368_200_000; // 2026-03-01T12:30:00Z

    fn day(y: i64, m: u32, d: u32) -> i64 {
        time::days_from_civil(y, m, d) * DAY_MS
    }

    #[test]
    fn default_range_is_the_last_seven_days_including_today() {
        let r = range(&Query::parse(None), NOW).unwrap();
        assert_eq!(r.to_ms, day(2026, 3, 2));
        assert_eq!(r.from_ms, day(2026, 2, 23));
        assert_eq!(r.from_date(), "2026-02-23");
        assert_eq!(r.to_date(), "2026-03-01");
    }

    #[test]
    fn a_to_date_includes_its_day() {
        let r = range(&Query::parse(Some("from=2026-01-05&to=2026-01-05")), NOW).unwrap();
        assert_eq!((r.from_ms, r.to_ms), (day(2026, 1, 5), day(2026, 1, 6)));
        let r = range(
            &Query::parse(Some("from=2026-01-05T10:00:00Z&to=2026-01-05T11:00:00Z")),
            NOW,
        )
        .unwrap();
        assert_eq!(r.to_ms - r.from_ms, 3_600_000);
        let r = range(&Query::parse(Some("to=2026-01-10&from=")), NOW).unwrap();
        assert_eq!(r.from_ms, day(2026, 1, 4));
    }

    #[test]
    fn bad_ranges_name_the_parameter() {
        for (q, p) in [
            ("from=yesterday", "from"),
            ("to=2026-02-30", "to"),
            ("from=2026-03-02&to=2026-03-01", "from"),
            ("from=2026-03-05", "from"),
        ] {
            let e = range(&Query::parse(Some(q)), NOW).unwrap_err();
            assert_eq!(e.parameter.as_deref(), Some(p), "{q}");
            assert_eq!(e.status, 400);
        }
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        let q = Query::parse(Some("site=a&sitee=b"));
        let e = q.only(&["site"]).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("sitee"));
        assert!(e.message.contains("takes site"), "{}", e.message);
        let e = Query::parse(Some("site=a&site=b"))
            .only(&["site"])
            .unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("site"));
        assert!(Query::parse(Some("site=a&from="))
            .only(&["site", "from"])
            .is_ok());
    }

    #[test]
    fn buckets_limits_formats() {
        let r = range(&Query::parse(Some("from=2026-03-01&to=2026-03-02")), NOW).unwrap();
        assert_eq!(bucket(&Query::parse(None), &r).unwrap(), Bucket::Hour);
        let week = range(&Query::parse(None), NOW).unwrap();
        assert_eq!(bucket(&Query::parse(None), &week).unwrap(), Bucket::Day);
        assert!(bucket(&Query::parse(Some("bucket=minute")), &r).is_err());
        let long = range(&Query::parse(Some("from=2000-01-01&to=2026-01-01")), NOW).unwrap();
        assert_eq!(
            bucket(&Query::parse(Some("bucket=hour")), &long)
                .unwrap_err()
                .parameter
                .as_deref(),
            Some("bucket")
        );
        assert_eq!(
            limit(&Query::parse(Some("limit=0")), "limit", 10, 100)
                .unwrap_err()
                .parameter
                .as_deref(),
            Some("limit")
        );
        assert!(limit(&Query::parse(Some("limit=x")), "limit", 10, 100).is_err());
        assert_eq!(
            limit(&Query::parse(Some("limit=100")), "limit", 10, 100).unwrap(),
            100
        );
        assert!(dimension(&Query::parse(Some("dimension=planets"))).is_err());
        assert_eq!(
            dimension(&Query::parse(Some("dimension=utm_source"))).unwrap(),
            Dimension::UtmSource
        );
        let mut h = HeaderMap::new();
        assert_eq!(format(&Query::parse(None), &h).unwrap(), Format::Json);
        h.insert(
            "accept",
            "application/json;q=0.5, text/csv".parse().unwrap(),
        );
        assert_eq!(format(&Query::parse(None), &h).unwrap(), Format::Csv);
        assert_eq!(
            format(&Query::parse(Some("format=json")), &h).unwrap(),
            Format::Json
        );
        assert!(format(&Query::parse(Some("format=xml")), &h).is_err());
    }
}
