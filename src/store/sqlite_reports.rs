//! [`Reports`] for [`SqliteStore`]: every figure is one or a few SQL statements over `events`
//! (aggregates, window functions for entry and exit pages), following the definitions in
//! [`super::reports`]; Rust only fills empty time buckets and assembles the results.
//!
//! Reads use [`SqliteStore::reader`], a read-only connection separate from the writer's in WAL
//! mode, and a report made of several statements runs them in one read transaction so they
//! all see the same snapshot. Erasing a contact writes, so it takes the writing connection.
//!
//! Values from visitors only ever reach SQL as bound parameters. The only text formatted into
//! statements is fixed in this file: column names chosen by [`Dimension`] and the scope clause
//! (with or without the site), two texts rather than `(:site IS NULL OR site = :site)`, which
//! SQLite cannot plan with an index on `site`.

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row as SqlRow, ToSql, TransactionBehavior};
use serde_json::{Map, Value};

use super::reports::{
    Bucket, CompanyCard, CompanySummary, ContactCard, ContactSummary, Dimension, Erased, Filter,
    Point, Reports, Row, SiteSeen, Stats, TimelineEntry, COMPANY_PAGES, LIVE_WINDOW_MS,
    MAX_BUCKETS,
};
use super::{SqliteStore, StoreError};

/// Named parameters of a statement.
type Params<'a> = Vec<(&'static str, &'a dyn ToSql)>;

/// The events a report over `f` counts: real browsers, the site if one is given, the range.
fn scope(f: &Filter) -> &'static str {
    if f.site.is_some() {
        "is_bot = 0 AND site = :site AND ts_ms >= :from AND ts_ms < :to"
    } else {
        "is_bot = 0 AND ts_ms >= :from AND ts_ms < :to"
    }
}

/// The parameters of [`scope`].
fn scope_params(f: &Filter) -> Params<'_> {
    let mut p: Params<'_> = vec![(":from", &f.from_ms), (":to", &f.to_ms)];
    if let Some(site) = &f.site {
        p.push((":site", site));
    }
    p
}

/// The ids of a contact's events (`:contact`): those carrying their `contact_id`, and events
/// attributed to no one that come from a visitor linked to them or carry the cross-site
/// identity (`smids`) of one of their events. See [`Reports::contact`].
///
/// A UNION of three index lookups (`contact_id`, `visitor_id`, `smids`) rather than one OR,
/// which SQLite would answer by scanning the table. The unary `+` keeps SQLite from looking
/// up `contact_id IS NULL` in `events_contact`, which matches most of the table.
const THEIR_EVENTS: &str = "
their(id) AS (
    SELECT id FROM events WHERE contact_id = :contact
    UNION
    SELECT id FROM events
    WHERE +contact_id IS NULL
      AND visitor_id IN (SELECT visitor_id FROM visitor_contacts WHERE contact_id = :contact)
    UNION
    SELECT id FROM events
    WHERE +contact_id IS NULL
      AND smids IN (SELECT smids FROM events WHERE contact_id = :contact AND smids IS NOT NULL)
)";

/// The contact's events (`e`) after [`THEIR_EVENTS`]. CROSS JOIN fixes the order, so SQLite
/// fetches those few rows by id instead of scanning an index on a filter column (`kind`,
/// `company`) and testing each row for membership.
const THEIR_ROWS: &str = "their CROSS JOIN events AS e ON e.id = their.id";

/// Qualified with `e`, the events' name in every query that selects them.
const TIMELINE_COLUMNS: &str = "e.ts_ms, e.kind, e.site, e.url, e.path, e.title, e.referrer, \
                                e.engaged_ms, e.name, e.props_json, e.utm_campaign, \
                                e.identify_source, e.session_id";

fn timeline_entry(r: &SqlRow<'_>) -> rusqlite::Result<TimelineEntry> {
    Ok(TimelineEntry {
        ts_ms: r.get(0)?,
        kind: r.get(1)?,
        site: r.get(2)?,
        url: r.get(3)?,
        path: r.get(4)?,
        title: r.get(5)?,
        referrer: r.get(6)?,
        engaged_ms: r.get(7)?,
        name: r.get(8)?,
        props_json: r.get(9)?,
        utm_campaign: r.get(10)?,
        identify_source: r.get(11)?,
        session_id: r.get(12)?,
    })
}

/// A count from SQL (never negative) as the reports' unsigned type.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A `LIMIT` or `OFFSET` value; anything beyond `i64::MAX` means "no limit" anyway.
fn sql_int(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn ratio(num: i64, den: i64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn query_rows<T>(
    conn: &Connection,
    sql: &str,
    params: &[(&str, &dyn ToSql)],
    map: impl FnMut(&SqlRow<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, map)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn breakdown_row(r: &SqlRow<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        key: r.get(0)?,
        pageviews: count(r.get(1)?),
        visitors: count(r.get(2)?),
    })
}

/// The ordering every breakdown shares; the key is the first column.
const BREAKDOWN_ORDER: &str = "ORDER BY 2 DESC, 3 DESC, 1 LIMIT :limit";

/// The column a dimension of page views groups by, for the dimensions that are one column.
fn dimension_column(d: Dimension) -> Option<&'static str> {
    Some(match d {
        Dimension::Pages => "path",
        Dimension::UtmSource => "utm_source",
        Dimension::UtmMedium => "utm_medium",
        Dimension::UtmCampaign => "utm_campaign",
        Dimension::Browsers => "browser",
        Dimension::Os => "os",
        Dimension::Devices => "device",
        Dimension::Companies => "company",
        Dimension::Sites => "site",
        Dimension::EntryPages | Dimension::ExitPages | Dimension::Referrers => return None,
    })
}

/// The statement of a breakdown over the events matching `scope` (a WHERE clause). Parameters:
/// those of the scope and `:limit`.
fn breakdown_sql(d: Dimension, scope: &str) -> String {
    if let Some(col) = dimension_column(d) {
        // `col <> ''` is also false for NULL: both mean "no value".
        return format!(
            "SELECT {col}, count(*), count(DISTINCT visitor_id) FROM events
             WHERE {scope} AND kind = 'pageview' AND {col} <> ''
             GROUP BY {col} {BREAKDOWN_ORDER}"
        );
    }
    match d {
        Dimension::EntryPages | Dimension::ExitPages => {
            let dir = if d == Dimension::EntryPages {
                "ASC"
            } else {
                "DESC"
            };
            // Ties in time are broken by insertion order (`id`). The unary `+` keeps SQLite
            // from walking a whole index on `session_id` for its order instead of the period
            // (files that have not had migration 5 yet still have `events_session`).
            format!(
                "WITH pv AS (
                     SELECT visitor_id, path,
                            row_number() OVER (
                                PARTITION BY session_id ORDER BY ts_ms {dir}, id {dir}
                            ) AS n
                     FROM events
                     WHERE {scope} AND kind = 'pageview' AND +session_id IS NOT NULL
                 )
                 SELECT path, count(*), count(DISTINCT visitor_id) FROM pv
                 WHERE n = 1 AND path <> ''
                 GROUP BY path {BREAKDOWN_ORDER}"
            )
        }
        // The host of the referrer and of the page: what follows `scheme://`, up to the first
        // `/`, `?` or `#`, without user information before an `@`. Stored URLs were parsed
        // and serialised by the collector, so this is their host (and port, if any).
        //
        // Most page views come from a link on the same site; string functions on every one
        // would cost more than reading the rows, so `pv` first drops those whose referrer
        // starts with the page's own `http(s)://authority/` (`o` is its length): the hosts
        // would be equal anyway. MATERIALIZED keeps SQLite from copying each expression into
        // every place the next step uses it.
        _ => format!(
            "WITH pv AS MATERIALIZED (
                 SELECT visitor_id, referrer, url FROM (
                     SELECT visitor_id, referrer, url,
                            CASE WHEN substr(url, 1, 7) = 'http://'
                                   OR substr(url, 1, 8) = 'https://'
                                 THEN instr(substr(url, 9), '/') + 8 ELSE 0 END AS o
                     FROM events
                     WHERE {scope} AND kind = 'pageview' AND instr(referrer, '://') > 0
                 )
                 WHERE o = 8 OR o = 0 OR substr(referrer, 1, o) <> substr(url, 1, o)
             ),
             rest AS MATERIALIZED (
                 SELECT visitor_id,
                        substr(referrer, instr(referrer, '://') + 3) AS r,
                        substr(url, instr(url, '://') + 3) AS u
                 FROM pv
             ),
             authority AS MATERIALIZED (
                 SELECT visitor_id,
                        substr(r, 1, min(instr(r || '/', '/'), instr(r || '?', '?'),
                                         instr(r || '#', '#')) - 1) AS r,
                        substr(u, 1, min(instr(u || '/', '/'), instr(u || '?', '?'),
                                         instr(u || '#', '#')) - 1) AS u
                 FROM rest
             ),
             host AS MATERIALIZED (
                 SELECT visitor_id,
                        lower(substr(r, instr(r, '@') + 1)) AS r,
                        lower(substr(u, instr(u, '@') + 1)) AS u
                 FROM authority
             )
             SELECT r, count(*), count(DISTINCT visitor_id) FROM host
             WHERE r <> '' AND r <> u
             GROUP BY r {BREAKDOWN_ORDER}"
        ),
    }
}

/// A contact's row as a summary, with the page views among their events.
fn contact_summary(
    conn: &Connection,
    id: String,
    email: Option<String>,
    first_seen_ms: i64,
    last_seen_ms: i64,
) -> Result<ContactSummary, StoreError> {
    let pageviews: i64 = conn
        .prepare_cached(&format!(
            "WITH {THEIR_EVENTS}
             SELECT count(*) FROM {THEIR_ROWS} WHERE e.is_bot = 0 AND e.kind = 'pageview'"
        ))?
        .query_row(&[(":contact", &id as &dyn ToSql)][..], |r| r.get(0))?;
    Ok(ContactSummary {
        id,
        email,
        first_seen_ms,
        last_seen_ms,
        pageviews: count(pageviews),
    })
}

/// Contact rows (`id, email, first_seen, last_seen`) from `sql` as summaries.
fn contact_summaries(
    conn: &Connection,
    sql: &str,
    params: &[(&str, &dyn ToSql)],
) -> Result<Vec<ContactSummary>, StoreError> {
    let rows: Vec<(String, Option<String>, i64, i64)> = query_rows(conn, sql, params, |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    rows.into_iter()
        .map(|(id, email, first, last)| contact_summary(conn, id, email, first, last))
        .collect()
}

/// One SQL value as JSON: integers and text as they are, blobs (none in the schema) as
/// arrays of bytes.
fn json_value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => Value::from(f),
        ValueRef::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::from(b.to_vec()),
    }
}

/// Every row of `sql` as a JSON object of all its columns, so an export keeps columns added
/// by later migrations without changes here.
fn json_rows(
    conn: &Connection,
    sql: &str,
    params: &[(&str, &dyn ToSql)],
) -> Result<Vec<Value>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let names: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut obj = Map::new();
        for (i, name) in names.iter().enumerate() {
            obj.insert(name.clone(), json_value(row.get_ref(i)?));
        }
        out.push(Value::Object(obj));
    }
    Ok(out)
}

impl Reports for SqliteStore {
    fn stats(&self, f: &Filter) -> Result<Stats, StoreError> {
        let mut conn = self.reader()?;
        let tx = conn.transaction()?;
        let scope_sql = scope(f);
        let p = scope_params(f);
        let (pageviews, visitors, sessions, contacts, engaged): (i64, i64, i64, i64, f64) = tx
            .prepare_cached(&format!(
                "SELECT count(*) FILTER (WHERE kind = 'pageview'),
                        count(DISTINCT visitor_id),
                        count(DISTINCT session_id),
                        count(DISTINCT contact_id),
                        total(engaged_ms) FILTER (WHERE kind = 'engagement')
                 FROM events WHERE {scope_sql}"
            ))?
            .query_row(&*p, |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?;
        let (viewed, bounced, session_views): (i64, i64, i64) = tx
            .prepare_cached(&format!(
                "SELECT count(*), coalesce(sum(n = 1), 0), coalesce(sum(n), 0) FROM (
                     SELECT count(*) AS n FROM events
                     WHERE {scope_sql} AND kind = 'pageview' AND +session_id IS NOT NULL
                     GROUP BY session_id
                 )"
            ))?
            .query_row(&*p, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        tx.commit()?;
        Ok(Stats {
            pageviews: count(pageviews),
            visitors: count(visitors),
            sessions: count(sessions),
            views_per_session: ratio(session_views, viewed),
            bounce_rate: ratio(bounced, viewed),
            mean_engaged_ms: if viewed == 0 {
                0.0
            } else {
                engaged / viewed as f64
            },
            contacts: count(contacts),
        })
    }

    fn timeseries(&self, f: &Filter, bucket: Bucket) -> Result<Vec<Point>, StoreError> {
        if f.from_ms >= f.to_ms {
            return Ok(Vec::new());
        }
        let size = bucket.millis();
        // In i128: the bucket of `from` may start before i64::MIN, and `to - start` may not
        // fit in an i64 for absurd ranges; both are refused below.
        let start = i128::from(f.from_ms).div_euclid(i128::from(size)) * i128::from(size);
        let buckets = (i128::from(f.to_ms) - start + i128::from(size) - 1) / i128::from(size);
        let too_many = || {
            StoreError::InvalidRequest(format!("a time series of more than {MAX_BUCKETS} buckets"))
        };
        if buckets > MAX_BUCKETS as i128 {
            return Err(too_many());
        }
        let start = i64::try_from(start).map_err(|_| too_many())?;
        let mut points: Vec<Point> = (0..buckets as i64)
            .map(|i| Point {
                ts_ms: start + i * size,
                pageviews: 0,
                visitors: 0,
            })
            .collect();

        let conn = self.reader()?;
        let mut p = scope_params(f);
        p.push((":start", &start));
        p.push((":size", &size));
        // `ts_ms - :start` cannot overflow: it is below `to - start`, checked above.
        let rows: Vec<(i64, i64, i64)> = query_rows(
            &conn,
            &format!(
                "SELECT (ts_ms - :start) / :size AS i,
                        count(*) FILTER (WHERE kind = 'pageview'),
                        count(DISTINCT visitor_id)
                 FROM events WHERE {} GROUP BY i",
                scope(f)
            ),
            &p,
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        for (i, pageviews, visitors) in rows {
            if let Some(point) = usize::try_from(i).ok().and_then(|i| points.get_mut(i)) {
                point.pageviews = count(pageviews);
                point.visitors = count(visitors);
            }
        }
        Ok(points)
    }

    fn breakdown(&self, f: &Filter, d: Dimension, limit: usize) -> Result<Vec<Row>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let conn = self.reader()?;
        let limit = sql_int(limit);
        let mut p = scope_params(f);
        p.push((":limit", &limit));
        query_rows(&conn, &breakdown_sql(d, scope(f)), &p, breakdown_row)
    }

    fn live_visitors(&self, site: Option<&str>, now_ms: i64) -> Result<u64, StoreError> {
        let from = now_ms.saturating_sub(LIVE_WINDOW_MS);
        let conn = self.reader()?;
        let sql = if site.is_some() {
            "SELECT count(DISTINCT visitor_id) FROM events
             WHERE is_bot = 0 AND site = :site AND ts_ms >= :from AND ts_ms <= :now"
        } else {
            "SELECT count(DISTINCT visitor_id) FROM events
             WHERE is_bot = 0 AND ts_ms >= :from AND ts_ms <= :now"
        };
        let mut p: Params<'_> = vec![(":from", &from), (":now", &now_ms)];
        if let Some(site) = &site {
            p.push((":site", site));
        }
        let n: i64 = conn.prepare_cached(sql)?.query_row(&*p, |r| r.get(0))?;
        Ok(count(n))
    }

    fn sites_seen(&self) -> Result<Vec<SiteSeen>, StoreError> {
        let conn = self.reader()?;
        // The distinct sites by skipping through `events_site_bot_ts` (one seek per site),
        // then each site's figures from the same index: a few seeks and a count of index
        // entries instead of reading every row.
        query_rows(
            &conn,
            "WITH RECURSIVE sites(site) AS (
                 SELECT (SELECT min(site) FROM events)
                 UNION ALL
                 SELECT (SELECT min(site) FROM events WHERE site > sites.site)
                 FROM sites WHERE sites.site IS NOT NULL
             )
             SELECT * FROM (
                 SELECT site,
                        (SELECT min(ts_ms) FROM events WHERE site = sites.site AND is_bot = 0)
                            AS first,
                        (SELECT max(ts_ms) FROM events WHERE site = sites.site AND is_bot = 0),
                        (SELECT count(*) FROM events WHERE site = sites.site AND is_bot = 0)
                 FROM sites WHERE site IS NOT NULL
             )
             WHERE first IS NOT NULL
             ORDER BY site",
            &[],
            |r| {
                Ok(SiteSeen {
                    site: r.get(0)?,
                    first_seen_ms: r.get(1)?,
                    last_seen_ms: r.get(2)?,
                    events: count(r.get(3)?),
                })
            },
        )
    }

    fn contacts(
        &self,
        search: Option<&str>,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<ContactSummary>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.reader()?;
        let tx = conn.transaction()?;
        // Emails are stored lower-case (`normalize_email`); ids are folded here. SQLite's
        // lower() folds ASCII only, which covers UUIDs and the vendor's ids.
        let search = search.map(str::to_lowercase);
        let (limit, offset) = (sql_int(limit), sql_int(offset));
        let p: Params<'_> = vec![
            (":search", &search),
            (":limit", &limit),
            (":offset", &offset),
        ];
        let list = contact_summaries(
            &tx,
            "SELECT id, email, first_seen, last_seen FROM contacts
             WHERE :search IS NULL OR instr(email, :search) > 0 OR instr(lower(id), :search) > 0
             ORDER BY last_seen DESC, id
             LIMIT :limit OFFSET :offset",
            &p,
        )?;
        tx.commit()?;
        Ok(list)
    }

    fn contact(&self, id: &str, timeline_limit: usize) -> Result<Option<ContactCard>, StoreError> {
        let mut conn = self.reader()?;
        let tx = conn.transaction()?;
        let row: Option<(String, Option<String>, i64, i64)> = tx
            .prepare_cached("SELECT id, email, first_seen, last_seen FROM contacts WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()?;
        let Some((id, email, first, last)) = row else {
            return Ok(None);
        };
        let summary = contact_summary(&tx, id, email, first, last)?;

        let p: Params<'_> = vec![(":contact", &summary.id)];
        let (sessions, engaged_ms): (i64, i64) = tx
            .prepare_cached(&format!(
                "WITH {THEIR_EVENTS}
                 SELECT count(DISTINCT e.session_id),
                        coalesce(sum(e.engaged_ms) FILTER (WHERE e.kind = 'engagement'), 0)
                 FROM {THEIR_ROWS} WHERE e.is_bot = 0"
            ))?
            .query_row(&*p, |r| Ok((r.get(0)?, r.get(1)?)))?;
        let sites = query_rows(
            &tx,
            &format!(
                "WITH {THEIR_EVENTS}
                 SELECT DISTINCT e.site FROM {THEIR_ROWS} WHERE e.is_bot = 0
                 ORDER BY e.site"
            ),
            &p,
            |r| r.get(0),
        )?;
        let campaigns = query_rows(
            &tx,
            &format!(
                "WITH {THEIR_EVENTS}
                 SELECT DISTINCT e.utm_campaign FROM {THEIR_ROWS}
                 WHERE e.is_bot = 0 AND e.utm_campaign <> ''
                 ORDER BY e.utm_campaign"
            ),
            &p,
            |r| r.get(0),
        )?;
        let company = tx
            .prepare_cached(&format!(
                "WITH {THEIR_EVENTS}
                 SELECT e.company FROM {THEIR_ROWS}
                 WHERE e.is_bot = 0 AND e.company <> ''
                 GROUP BY e.company ORDER BY count(*) DESC, e.company LIMIT 1"
            ))?
            .query_row(&*p, |r| r.get(0))
            .optional()?;
        let limit = sql_int(timeline_limit);
        let mut tp = p.clone();
        tp.push((":limit", &limit));
        let timeline = query_rows(
            &tx,
            &format!(
                "WITH {THEIR_EVENTS}
                 SELECT {TIMELINE_COLUMNS} FROM {THEIR_ROWS} WHERE e.is_bot = 0
                 ORDER BY e.ts_ms DESC, e.id DESC LIMIT :limit"
            ),
            &tp,
            timeline_entry,
        )?;
        drop((p, tp));
        tx.commit()?;
        Ok(Some(ContactCard {
            summary,
            sites,
            sessions: count(sessions),
            engaged_ms,
            campaigns,
            company,
            timeline,
        }))
    }

    fn export_contact(&self, id: &str) -> Result<Option<Value>, StoreError> {
        let mut conn = self.reader()?;
        let tx = conn.transaction()?;
        let p: Params<'_> = vec![(":contact", &id)];
        let Some(contact) = json_rows(&tx, "SELECT * FROM contacts WHERE id = :contact", &p)?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let links = json_rows(
            &tx,
            "SELECT * FROM visitor_contacts WHERE contact_id = :contact ORDER BY visitor_id",
            &p,
        )?;
        let events = json_rows(
            &tx,
            &format!(
                "WITH {THEIR_EVENTS}
                 SELECT e.* FROM {THEIR_ROWS} ORDER BY e.ts_ms, e.id"
            ),
            &p,
        )?;
        drop(p);
        tx.commit()?;
        Ok(Some(serde_json::json!({
            "contact": contact,
            "visitor_links": links,
            "events": events,
        })))
    }

    fn erase_contact(&self, id: &str) -> Result<Erased, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let p: Params<'_> = vec![(":contact", &id)];
        // A visitor's session is its latest event's: it goes with the events.
        let events = tx
            .prepare_cached(&format!(
                "WITH {THEIR_EVENTS} DELETE FROM events WHERE id IN their"
            ))?
            .execute(&*p)?;
        let visitor_links = tx
            .prepare_cached("DELETE FROM visitor_contacts WHERE contact_id = :contact")?
            .execute(&*p)?;
        let contacts = tx
            .prepare_cached("DELETE FROM contacts WHERE id = :contact")?
            .execute(&*p)?;
        drop(p);
        tx.commit()?;
        Ok(Erased {
            contacts: contacts as u64,
            events: events as u64,
            visitor_links: visitor_links as u64,
        })
    }

    fn companies(&self, f: &Filter, limit: usize) -> Result<Vec<CompanySummary>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let conn = self.reader()?;
        let limit = sql_int(limit);
        let mut p = scope_params(f);
        p.push((":limit", &limit));
        query_rows(
            &conn,
            &format!(
                "SELECT c.id, c.name, c.first_seen, c.last_seen, a.visitors, a.pageviews
                 FROM (
                     SELECT company,
                            count(DISTINCT visitor_id) AS visitors,
                            count(*) FILTER (WHERE kind = 'pageview') AS pageviews
                     FROM events WHERE {} AND company <> ''
                     GROUP BY company
                 ) AS a
                 JOIN companies AS c ON c.name = a.company
                 ORDER BY a.visitors DESC, a.pageviews DESC, c.name
                 LIMIT :limit",
                scope(f)
            ),
            &p,
            company_summary,
        )
    }

    fn company(
        &self,
        id: i64,
        f: &Filter,
        timeline_limit: usize,
    ) -> Result<Option<CompanyCard>, StoreError> {
        let mut conn = self.reader()?;
        let tx = conn.transaction()?;
        let row: Option<(i64, String, i64, i64)> = tx
            .prepare_cached("SELECT id, name, first_seen, last_seen FROM companies WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()?;
        let Some((id, name, first_seen_ms, last_seen_ms)) = row else {
            return Ok(None);
        };
        let scope_sql = format!("{} AND company = :company", scope(f));
        let mut p = scope_params(f);
        p.push((":company", &name));

        let (visitors, pageviews): (i64, i64) = tx
            .prepare_cached(&format!(
                "SELECT count(DISTINCT visitor_id), count(*) FILTER (WHERE kind = 'pageview')
                 FROM events WHERE {scope_sql}"
            ))?
            .query_row(&*p, |r| Ok((r.get(0)?, r.get(1)?)))?;
        let contacts = contact_summaries(
            &tx,
            &format!(
                "SELECT id, email, first_seen, last_seen FROM contacts
                 WHERE id IN (SELECT contact_id FROM events WHERE {scope_sql})
                 ORDER BY last_seen DESC, id"
            ),
            &p,
        )?;
        let pages_limit = sql_int(COMPANY_PAGES);
        let timeline_limit = sql_int(timeline_limit);
        let mut pp = p.clone();
        pp.push((":limit", &pages_limit));
        let pages = query_rows(
            &tx,
            &breakdown_sql(Dimension::Pages, &scope_sql),
            &pp,
            breakdown_row,
        )?;
        let mut tp = p.clone();
        tp.push((":limit", &timeline_limit));
        let timeline = query_rows(
            &tx,
            &format!(
                "SELECT {TIMELINE_COLUMNS} FROM events AS e WHERE {scope_sql}
                 ORDER BY e.ts_ms DESC, e.id DESC LIMIT :limit"
            ),
            &tp,
            timeline_entry,
        )?;
        drop((p, pp, tp));
        tx.commit()?;
        Ok(Some(CompanyCard {
            summary: CompanySummary {
                id,
                name,
                first_seen_ms,
                last_seen_ms,
                visitors: count(visitors),
                pageviews: count(pageviews),
            },
            contacts,
            pages,
            timeline,
        }))
    }
}

fn company_summary(r: &SqlRow<'_>) -> rusqlite::Result<CompanySummary> {
    Ok(CompanySummary {
        id: r.get(0)?,
        name: r.get(1)?,
        first_seen_ms: r.get(2)?,
        last_seen_ms: r.get(3)?,
        visitors: count(r.get(4)?),
        pageviews: count(r.get(5)?),
    })
}

#[cfg(test)]
mod tests {
    use super::super::sqlite::query_plan as plan;
    use super::*;

    /// The look-ups of one id or company find their rows through the indexes that leave out
    /// the events without a value (migration 6): a value compared with `=` or `IN` is never
    /// NULL, and SQLite proves it.
    #[test]
    fn contact_and_company_look_ups_use_the_partial_indexes() {
        let store = SqliteStore::open_in_memory().unwrap();
        let conn = store.lock();
        let their = plan(&conn, &format!("WITH {THEIR_EVENTS} SELECT id FROM their"));
        for index in ["events_contact", "events_visitor_ts", "events_smids"] {
            assert!(their.contains(&format!("INDEX {index} ")), "{their}");
        }
        assert!(!their.contains("SCAN events"), "{their}");
        for site in [None, Some("shop".to_owned())] {
            let f = Filter {
                site,
                from_ms: 0,
                to_ms: 1,
            };
            let card = plan(
                &conn,
                &format!(
                    "SELECT count(*) FROM events WHERE {} AND company = :company",
                    scope(&f)
                ),
            );
            assert!(card.contains("INDEX events_company_ts "), "{card}");
        }
    }
}
