//! [`Reports`] for [`PostgresStore`]: the statements of the SQLite reports (`sqlite_reports`)
//! in PostgreSQL's dialect, following the definitions in [`super::reports`]; Rust only fills
//! empty time buckets and assembles the results.
//!
//! A report made of several statements runs them in one `REPEATABLE READ READ ONLY`
//! transaction, so they all see one snapshot while other instances keep writing.
//!
//! Values from visitors only ever reach SQL as bound parameters. The only text formatted into
//! statements is fixed in this file: column names chosen by [`Dimension`] and the scope clause.
//! Every report over a [`Filter`] binds `$1` = from, `$2` = to, `$3` = site (NULL for all
//! sites) and numbers its own parameters from `$4`.

use postgres::types::ToSql;
use postgres::{GenericClient, IsolationLevel, Row as PgRow, Transaction};
use serde_json::Value;

use super::reports::{
    Bucket, CompanyCard, CompanySummary, ContactCard, ContactSummary, Dimension, Erased, Filter,
    Point, Reports, Row, SiteSeen, Stats, TimelineEntry, COMPANY_PAGES, LIVE_WINDOW_MS,
    MAX_BUCKETS,
};
use super::{PostgresStore, StoreError};

type Param<'a> = &'a (dyn ToSql + Sync);

/// The events a report over `f` counts: real browsers, the site if one is given, the range.
/// Two texts rather than `($3 IS NULL OR site = $3)`, so the planner sees which index fits.
fn scope(f: &Filter) -> &'static str {
    if f.site.is_some() {
        "is_bot = 0 AND site = $3 AND ts_ms >= $1 AND ts_ms < $2"
    } else {
        "is_bot = 0 AND ts_ms >= $1 AND ts_ms < $2 AND $3::text IS NULL"
    }
}

/// The ids of a contact's events (`$1` = the contact); see `THEIR_EVENTS` in
/// `sqlite_reports` and [`Reports::contact`].
const THEIR_EVENTS: &str = "
their(id) AS (
    SELECT id FROM events WHERE contact_id = $1
    UNION
    SELECT id FROM events
    WHERE contact_id IS NULL
      AND visitor_id IN (SELECT visitor_id FROM visitor_contacts WHERE contact_id = $1)
    UNION
    SELECT id FROM events
    WHERE contact_id IS NULL
      AND smids IN (SELECT smids FROM events WHERE contact_id = $1 AND smids IS NOT NULL)
)";

const THEIR_ROWS: &str = "their JOIN events AS e ON e.id = their.id";

const TIMELINE_COLUMNS: &str = "e.ts_ms, e.kind, e.site, e.url, e.path, e.title, e.referrer, \
                                e.engaged_ms, e.name, e.props_json, e.utm_campaign, \
                                e.identify_source, e.session_id";

fn timeline_entry(r: &PgRow) -> TimelineEntry {
    TimelineEntry {
        ts_ms: r.get(0),
        kind: r.get(1),
        site: r.get(2),
        url: r.get(3),
        path: r.get(4),
        title: r.get(5),
        referrer: r.get(6),
        engaged_ms: r.get(7),
        name: r.get(8),
        props_json: r.get(9),
        utm_campaign: r.get(10),
        identify_source: r.get(11),
        session_id: r.get(12),
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

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

fn breakdown_row(r: &PgRow) -> Row {
    Row {
        key: r.get(0),
        pageviews: count(r.get(1)),
        visitors: count(r.get(2)),
    }
}

/// Every text column is `COLLATE "C"`, so ordering by the key is byte order, as in SQLite.
const BREAKDOWN_ORDER: &str = "ORDER BY 2 DESC, 3 DESC, 1";

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

/// The statement of a breakdown over the events matching `scope`; `limit` is the parameter
/// holding the limit (e.g. `$4`).
fn breakdown_sql(d: Dimension, scope: &str, limit: &str) -> String {
    if let Some(col) = dimension_column(d) {
        return format!(
            "SELECT {col}, count(*), count(DISTINCT visitor_id) FROM events
             WHERE {scope} AND kind = 'pageview' AND {col} <> ''
             GROUP BY {col} {BREAKDOWN_ORDER} LIMIT {limit}"
        );
    }
    match d {
        Dimension::EntryPages | Dimension::ExitPages => {
            let dir = if d == Dimension::EntryPages {
                "ASC"
            } else {
                "DESC"
            };
            format!(
                "WITH pv AS (
                     SELECT visitor_id, path,
                            row_number() OVER (
                                PARTITION BY session_id ORDER BY ts_ms {dir}, id {dir}
                            ) AS n
                     FROM events
                     WHERE {scope} AND kind = 'pageview' AND session_id IS NOT NULL
                 )
                 SELECT path, count(*), count(DISTINCT visitor_id) FROM pv
                 WHERE n = 1 AND path <> ''
                 GROUP BY path {BREAKDOWN_ORDER} LIMIT {limit}"
            )
        }
        // The referrer's host as in `sqlite_reports` (same string steps, `strpos` for
        // `instr`, `LEAST` for the scalar `min`), so both backends derive the same key.
        _ => format!(
            "WITH pv AS (
                 SELECT visitor_id, referrer, url FROM (
                     SELECT visitor_id, referrer, url,
                            CASE WHEN substr(url, 1, 7) = 'http://'
                                   OR substr(url, 1, 8) = 'https://'
                                 THEN strpos(substr(url, 9), '/') + 8 ELSE 0 END AS o
                     FROM events
                     WHERE {scope} AND kind = 'pageview' AND strpos(referrer, '://') > 0
                 ) AS t
                 WHERE o = 8 OR o = 0 OR substr(referrer, 1, o) <> substr(url, 1, o)
             ),
             rest AS (
                 SELECT visitor_id,
                        substr(referrer, strpos(referrer, '://') + 3) AS r,
                        substr(url, strpos(url, '://') + 3) AS u
                 FROM pv
             ),
             authority AS (
                 SELECT visitor_id,
                        substr(r, 1, LEAST(strpos(r || '/', '/'), strpos(r || '?', '?'),
                                           strpos(r || '#', '#')) - 1) AS r,
                        substr(u, 1, LEAST(strpos(u || '/', '/'), strpos(u || '?', '?'),
                                           strpos(u || '#', '#')) - 1) AS u
                 FROM rest
             ),
             host AS (
                 SELECT visitor_id,
                        lower(substr(r, strpos(r, '@') + 1)) AS r,
                        lower(substr(u, strpos(u, '@') + 1)) AS u
                 FROM authority
             )
             SELECT r, count(*), count(DISTINCT visitor_id) FROM host
             WHERE r <> '' AND r <> u
             GROUP BY r {BREAKDOWN_ORDER} LIMIT {limit}"
        ),
    }
}

/// A contact's row as a summary, with the page views among their events.
fn contact_summary(
    tx: &mut impl GenericClient,
    id: String,
    email: Option<String>,
    first_seen_ms: i64,
    last_seen_ms: i64,
) -> Result<ContactSummary, StoreError> {
    let pageviews: i64 = tx
        .query_one(
            &format!(
                "WITH {THEIR_EVENTS}
                 SELECT count(*) FROM {THEIR_ROWS} WHERE e.is_bot = 0 AND e.kind = 'pageview'"
            ),
            &[&id],
        )?
        .get(0);
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
    tx: &mut impl GenericClient,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Vec<ContactSummary>, StoreError> {
    let rows: Vec<(String, Option<String>, i64, i64)> = tx
        .query(sql, params)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    rows.into_iter()
        .map(|(id, email, first, last)| contact_summary(tx, id, email, first, last))
        .collect()
}

/// Every row of `sql` (which selects `row_to_json(...)::text`) as JSON, so an export keeps
/// columns added by later migrations without changes here.
fn json_rows(
    tx: &mut impl GenericClient,
    sql: &str,
    params: &[Param<'_>],
) -> Result<Vec<Value>, StoreError> {
    tx.query(sql, params)?
        .iter()
        .map(|r| {
            let text: String = r.get(0);
            serde_json::from_str(&text)
                .map_err(|e| StoreError::Unavailable(format!("row_to_json gave bad JSON: {e}")))
        })
        .collect()
}

impl PostgresStore {
    /// A transaction whose statements all see one snapshot.
    fn snapshot<'c>(client: &'c mut postgres::Client) -> Result<Transaction<'c>, postgres::Error> {
        client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
    }
}

impl Reports for PostgresStore {
    fn stats(&self, f: &Filter) -> Result<Stats, StoreError> {
        let mut client = self.client()?;
        let mut tx = Self::snapshot(&mut client)?;
        let scope_sql = scope(f);
        let site = f.site.as_deref();
        let p: [Param<'_>; 3] = [&f.from_ms, &f.to_ms, &site];
        let r = tx.query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE kind = 'pageview'),
                        count(DISTINCT visitor_id),
                        count(DISTINCT session_id),
                        count(DISTINCT contact_id),
                        coalesce(sum(engaged_ms) FILTER (WHERE kind = 'engagement'), 0)::float8
                 FROM events WHERE {scope_sql}"
            ),
            &p,
        )?;
        let (pageviews, visitors, sessions, contacts, engaged): (i64, i64, i64, i64, f64) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        let r = tx.query_one(
            &format!(
                "SELECT count(*), count(*) FILTER (WHERE n = 1), coalesce(sum(n), 0)::int8 FROM (
                     SELECT count(*) AS n FROM events
                     WHERE {scope_sql} AND kind = 'pageview' AND session_id IS NOT NULL
                     GROUP BY session_id
                 ) AS s"
            ),
            &p,
        )?;
        let (viewed, bounced, session_views): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
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

        let site = f.site.as_deref();
        let rows = self.client()?.query(
            &format!(
                "SELECT (ts_ms - $4) / $5 AS i,
                        count(*) FILTER (WHERE kind = 'pageview'),
                        count(DISTINCT visitor_id)
                 FROM events WHERE {} GROUP BY i",
                scope(f)
            ),
            &[&f.from_ms, &f.to_ms, &site, &start, &size],
        )?;
        for r in rows {
            let (i, pageviews, visitors): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
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
        let site = f.site.as_deref();
        let limit = sql_int(limit);
        Ok(self
            .client()?
            .query(
                &breakdown_sql(d, scope(f), "$4"),
                &[&f.from_ms, &f.to_ms, &site, &limit],
            )?
            .iter()
            .map(breakdown_row)
            .collect())
    }

    fn live_visitors(&self, site: Option<&str>, now_ms: i64) -> Result<u64, StoreError> {
        let from = now_ms.saturating_sub(LIVE_WINDOW_MS);
        let sql = if site.is_some() {
            "SELECT count(DISTINCT visitor_id) FROM events
             WHERE is_bot = 0 AND site = $3 AND ts_ms >= $1 AND ts_ms <= $2"
        } else {
            "SELECT count(DISTINCT visitor_id) FROM events
             WHERE is_bot = 0 AND ts_ms >= $1 AND ts_ms <= $2 AND $3::text IS NULL"
        };
        let n: i64 = self
            .client()?
            .query_one(sql, &[&from, &now_ms, &site])?
            .get(0);
        Ok(count(n))
    }

    fn sites_seen(&self) -> Result<Vec<SiteSeen>, StoreError> {
        // The distinct sites by skipping through `events_site_bot_ts` (one index seek per
        // site, as in SQLite), then each site's figures from the same index.
        Ok(self
            .client()?
            .query(
                "WITH RECURSIVE sites(site) AS (
                     (SELECT site FROM events ORDER BY site LIMIT 1)
                     UNION ALL
                     SELECT (SELECT e.site FROM events AS e WHERE e.site > sites.site
                             ORDER BY e.site LIMIT 1)
                     FROM sites WHERE sites.site IS NOT NULL
                 )
                 SELECT * FROM (
                     SELECT site,
                            (SELECT min(ts_ms) FROM events
                             WHERE site = sites.site AND is_bot = 0) AS first,
                            (SELECT max(ts_ms) FROM events
                             WHERE site = sites.site AND is_bot = 0) AS last,
                            (SELECT count(*) FROM events
                             WHERE site = sites.site AND is_bot = 0) AS n
                     FROM sites WHERE site IS NOT NULL
                 ) AS s
                 WHERE first IS NOT NULL
                 ORDER BY site",
                &[],
            )?
            .iter()
            .map(|r| SiteSeen {
                site: r.get(0),
                first_seen_ms: r.get(1),
                last_seen_ms: r.get(2),
                events: count(r.get(3)),
            })
            .collect())
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
        let mut client = self.client()?;
        let mut tx = Self::snapshot(&mut client)?;
        // Emails are stored lower-case; ids are folded here (ASCII only under "C", as in
        // SQLite).
        let search = search.map(str::to_lowercase);
        let (limit, offset) = (sql_int(limit), sql_int(offset));
        let list = contact_summaries(
            &mut tx,
            "SELECT id, email, first_seen, last_seen FROM contacts
             WHERE $1::text IS NULL OR strpos(email, $1) > 0 OR strpos(lower(id), $1) > 0
             ORDER BY last_seen DESC, id
             LIMIT $2 OFFSET $3",
            &[&search, &limit, &offset],
        )?;
        tx.commit()?;
        Ok(list)
    }

    fn contact(&self, id: &str, timeline_limit: usize) -> Result<Option<ContactCard>, StoreError> {
        let mut client = self.client()?;
        let mut tx = Self::snapshot(&mut client)?;
        let row = tx.query_opt(
            "SELECT id, email, first_seen, last_seen FROM contacts WHERE id = $1",
            &[&id],
        )?;
        let Some(row) = row else {
            return Ok(None);
        };
        let summary = contact_summary(&mut tx, row.get(0), row.get(1), row.get(2), row.get(3))?;
        let id = summary.id.as_str();

        let r = tx.query_one(
            &format!(
                "WITH {THEIR_EVENTS}
                 SELECT count(DISTINCT e.session_id),
                        coalesce(sum(e.engaged_ms) FILTER (WHERE e.kind = 'engagement'), 0)::int8
                 FROM {THEIR_ROWS} WHERE e.is_bot = 0"
            ),
            &[&id],
        )?;
        let (sessions, engaged_ms): (i64, i64) = (r.get(0), r.get(1));
        let sites = tx
            .query(
                &format!(
                    "WITH {THEIR_EVENTS}
                     SELECT DISTINCT e.site FROM {THEIR_ROWS} WHERE e.is_bot = 0
                     ORDER BY e.site"
                ),
                &[&id],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let campaigns = tx
            .query(
                &format!(
                    "WITH {THEIR_EVENTS}
                     SELECT DISTINCT e.utm_campaign FROM {THEIR_ROWS}
                     WHERE e.is_bot = 0 AND e.utm_campaign <> ''
                     ORDER BY e.utm_campaign"
                ),
                &[&id],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let company = tx
            .query_opt(
                &format!(
                    "WITH {THEIR_EVENTS}
                     SELECT e.company FROM {THEIR_ROWS}
                     WHERE e.is_bot = 0 AND e.company <> ''
                     GROUP BY e.company ORDER BY count(*) DESC, e.company LIMIT 1"
                ),
                &[&id],
            )?
            .map(|r| r.get(0));
        let limit = sql_int(timeline_limit);
        let timeline = tx
            .query(
                &format!(
                    "WITH {THEIR_EVENTS}
                     SELECT {TIMELINE_COLUMNS} FROM {THEIR_ROWS} WHERE e.is_bot = 0
                     ORDER BY e.ts_ms DESC, e.id DESC LIMIT $2"
                ),
                &[&id, &limit],
            )?
            .iter()
            .map(timeline_entry)
            .collect();
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
        let mut client = self.client()?;
        let mut tx = Self::snapshot(&mut client)?;
        let Some(contact) = json_rows(
            &mut tx,
            "SELECT row_to_json(c)::text FROM contacts AS c WHERE id = $1",
            &[&id],
        )?
        .into_iter()
        .next() else {
            return Ok(None);
        };
        let links = json_rows(
            &mut tx,
            "SELECT row_to_json(l)::text FROM visitor_contacts AS l
             WHERE contact_id = $1 ORDER BY visitor_id",
            &[&id],
        )?;
        let events = json_rows(
            &mut tx,
            &format!(
                "WITH {THEIR_EVENTS}
                 SELECT row_to_json(e)::text FROM {THEIR_ROWS} ORDER BY e.ts_ms, e.id"
            ),
            &[&id],
        )?;
        tx.commit()?;
        Ok(Some(serde_json::json!({
            "contact": contact,
            "visitor_links": links,
            "events": events,
        })))
    }

    fn erase_contact(&self, id: &str) -> Result<Erased, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        // A visitor's session is its latest event's: it goes with the events.
        let events = tx.execute(
            &format!("WITH {THEIR_EVENTS} DELETE FROM events WHERE id IN (SELECT id FROM their)"),
            &[&id],
        )?;
        let visitor_links =
            tx.execute("DELETE FROM visitor_contacts WHERE contact_id = $1", &[&id])?;
        let contacts = tx.execute("DELETE FROM contacts WHERE id = $1", &[&id])?;
        tx.commit()?;
        Ok(Erased {
            contacts,
            events,
            visitor_links,
        })
    }

    fn companies(&self, f: &Filter, limit: usize) -> Result<Vec<CompanySummary>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let site = f.site.as_deref();
        let limit = sql_int(limit);
        Ok(self
            .client()?
            .query(
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
                     LIMIT $4",
                    scope(f)
                ),
                &[&f.from_ms, &f.to_ms, &site, &limit],
            )?
            .iter()
            .map(company_summary)
            .collect())
    }

    fn company(
        &self,
        id: i64,
        f: &Filter,
        timeline_limit: usize,
    ) -> Result<Option<CompanyCard>, StoreError> {
        let mut client = self.client()?;
        let mut tx = Self::snapshot(&mut client)?;
        let row = tx.query_opt(
            "SELECT id, name, first_seen, last_seen FROM companies WHERE id = $1",
            &[&id],
        )?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (id, name, first_seen_ms, last_seen_ms): (i64, String, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let scope_sql = format!("{} AND company = $4", scope(f));
        let site = f.site.as_deref();
        let p: [Param<'_>; 4] = [&f.from_ms, &f.to_ms, &site, &name];

        let r = tx.query_one(
            &format!(
                "SELECT count(DISTINCT visitor_id), count(*) FILTER (WHERE kind = 'pageview')
                 FROM events WHERE {scope_sql}"
            ),
            &p,
        )?;
        let (visitors, pageviews): (i64, i64) = (r.get(0), r.get(1));
        let contacts = contact_summaries(
            &mut tx,
            &format!(
                "SELECT id, email, first_seen, last_seen FROM contacts
                 WHERE id IN (SELECT contact_id FROM events WHERE {scope_sql})
                 ORDER BY last_seen DESC, id"
            ),
            &p,
        )?;
        let pages_limit = sql_int(COMPANY_PAGES);
        let timeline_limit = sql_int(timeline_limit);
        let pages = tx
            .query(
                &breakdown_sql(Dimension::Pages, &scope_sql, "$5"),
                &[p[0], p[1], p[2], p[3], &pages_limit],
            )?
            .iter()
            .map(breakdown_row)
            .collect();
        let timeline = tx
            .query(
                &format!(
                    "SELECT {TIMELINE_COLUMNS} FROM events AS e WHERE {scope_sql}
                     ORDER BY e.ts_ms DESC, e.id DESC LIMIT $5"
                ),
                &[p[0], p[1], p[2], p[3], &timeline_limit],
            )?
            .iter()
            .map(timeline_entry)
            .collect();
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

fn company_summary(r: &PgRow) -> CompanySummary {
    CompanySummary {
        id: r.get(0),
        name: r.get(1),
        first_seen_ms: r.get(2),
        last_seen_ms: r.get(3),
        visitors: count(r.get(4)),
        pageviews: count(r.get(5)),
    }
}
