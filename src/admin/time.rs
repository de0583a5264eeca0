//! UTC dates and times as ISO 8601 text, for the `from`/`to` parameters and every time the
//! admin side prints.
//!
//! Hand-written instead of a date crate: the admin side needs exactly two things, reading
//! `YYYY-MM-DD[THH:MM[:SS[.fff]][Z|±HH:MM]]` and printing UTC, and the calendar arithmetic
//! behind both is the well-known days-from-civil conversion (proleptic Gregorian calendar),
//! checked below against known dates and a round trip over every day of four centuries.

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// Days from 1970-01-01 to the given date (negative before it).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // 0..=399
    let mp = (m + 9) % 12; // March = 0 ... February = 11
    let doy = (153 * mp + 2) / 5 + d - 1; // 0..=365
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // 0..=146096
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01: (year, month 1–12, day 1–31).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A parsed `from`/`to` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// A date without a time: its UTC midnight, in ms.
    Date(i64),
    /// A date and time, converted to UTC, in ms.
    DateTime(i64),
}

/// Reads an ISO 8601 date (`2026-03-01`) or date-time (`2026-03-01T10:30`,
/// `2026-03-01T10:30:15Z`, `2026-03-01T10:30:15.250+02:00`; a space may stand for the `T`).
/// Without an offset the time is UTC. Years 1970 to 9999. A `+` in a query string decodes to a
/// space, so a space where an offset's sign belongs is read as `+`.
pub fn parse_moment(s: &str) -> Option<Moment> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])? as u32;
    let day = digits(&b[8..10])? as u32;
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
    {
        return None;
    }
    let midnight = days_from_civil(year, month, day) * DAY_MS;
    if b.len() == 10 {
        return Some(Moment::Date(midnight));
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let rest = &b[11..];
    if rest.len() < 5 || rest[2] != b':' {
        return None;
    }
    let hour = digits(&rest[0..2])?;
    let minute = digits(&rest[3..5])?;
    let mut i = 5;
    let mut second = 0;
    let mut millis = 0;
    if rest.get(i) == Some(&b':') {
        second = digits(rest.get(i + 1..i + 3)?)?;
        i += 3;
        if rest.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while rest.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            let frac = &rest[start..i];
            if frac.is_empty() || frac.len() > 9 {
                return None;
            }
            // Milliseconds: the first three digits, padded.
            let mut ms = 0;
            for k in 0..3 {
                ms = ms * 10 + frac.get(k).map_or(0, |d| i64::from(d - b'0'));
            }
            millis = ms;
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let offset_min = match &rest[i..] {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-' | b' '), h1, h2, b':', m1, m2]
        | [sign @ (b'+' | b'-' | b' '), h1, h2, m1, m2] => {
            let oh = digits(&[*h1, *h2])?;
            let om = digits(&[*m1, *m2])?;
            if oh > 23 || om > 59 {
                return None;
            }
            let v = oh * 60 + om;
            if *sign == b'-' {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let local = midnight + ((hour * 60 + minute) * 60 + second) * 1000 + millis;
    Some(Moment::DateTime(local - offset_min * 60_000))
}

fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
}

/// `2026-03-01T10:30:15Z`, with `.250` milliseconds only when there are any.
pub fn iso(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let in_day = ms.rem_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(days);
    let (secs, millis) = (in_day / 1000, in_day % 1000);
    let (h, min, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if millis == 0 {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{millis:03}Z")
    }
}

/// `2026-03-01` (UTC).
pub fn iso_date(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `2026-03-01 10:30` (UTC), for tables.
pub fn short(ms: i64) -> String {
    let in_day = ms.rem_euclid(DAY_MS) / 60_000;
    format!("{} {:02}:{:02}", iso_date(ms), in_day / 60, in_day % 60)
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso_date(1_700_000_000_000), "2023-11-14");
        assert_eq!(short(1_700_000_000_000), "2023-11-14 22:13");
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        let start = days_from_civil(1970, 1, 1);
        let end = days_from_civil(2370, 1, 1);
        let mut expected = (1970, 1, 1);
        for days in start..end {
            assert_eq!(civil_from_days(days), expected, "day {days}");
            assert_eq!(days_from_civil(expected.0, expected.1, expected.2), days);
            let (y, m, d) = expected;
            expected = if d < days_in_month(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }

    #[test]
    fn parses_dates_and_datetimes() {
        let day = days_from_civil(2026, 3, 1) * DAY_MS;
        assert_eq!(parse_moment("2026-03-01"), Some(Moment::Date(day)));
        let t = day + (10 * 60 + 30) * 60_000;
        assert_eq!(parse_moment("2026-03-01T10:30"), Some(Moment::DateTime(t)));
        assert_eq!(
            parse_moment("2026-03-01t10:30:00z"),
            Some(Moment::DateTime(t))
        );
        assert_eq!(
            parse_moment("2026-03-01 10:30:00Z"),
            Some(Moment::DateTime(t))
        );
        assert_eq!(
            parse_moment("2026-03-01T10:30:15.25Z"),
            Some(Moment::DateTime(t + 15_250))
        );
        assert_eq!(
            parse_moment("2026-03-01T12:30:00+02:00"),
            Some(Moment::DateTime(t))
        );
        // `+` decoded from a query string as a space.
        assert_eq!(
            parse_moment("2026-03-01T12:30:00 02:00"),
            Some(Moment::DateTime(t))
        );
        assert_eq!(
            parse_moment("2026-03-01T09:00-0130"),
            Some(Moment::DateTime(t))
        );
        assert_eq!(
            parse_moment("2024-02-29"),
            Some(Moment::Date(days_from_civil(2024, 2, 29) * DAY_MS))
        );
    }

    #[test]
    fn rejects_what_is_not_a_date() {
        for bad in [
            "",
            "2026",
            "2026-3-01",
            "2026-02-30",
            "2023-02-29",
            "2026-13-01",
            "2026-00-10",
            "1969-12-31",
            "2026-03-01T24:00",
            "2026-03-01T10:60",
            "2026-03-01T10:30:60",
            "2026-03-01T10",
            "2026-03-01T10:30:00.Z",
            "2026-03-01T10:30:00+2",
            "2026-03-01T10:30:00+25:00",
            "2026-03-01X10:30",
            "2026-03-01T10:30:00Zjunk",
            "yesterday",
            "２０２６-03-01",
            "+2026-03-01",
        ] {
            assert_eq!(parse_moment(bad), None, "{bad:?}");
        }
    }
}
