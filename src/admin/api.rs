//! The JSON (and CSV) API under `/api`, plus `/metrics` and `/readyz`. Times are ISO 8601 UTC
//! strings; the routes and their parameters are described in `openapi.json`.

use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::csv::{Cell, Csv};
use super::params::{self, Format, Query, Range};
use super::respond::{self, ApiError};
use super::routes::Id;
use super::status::{self, SiteStatus};
use super::time::iso;
use super::{Admin, Ctx};
use crate::identity::{issue_personal_link, Uuid, SMLINK_PARAM};
use crate::store::normalize_email;
use crate::store::reports::{
    Bucket, CompanyCard, CompanySummary, ContactCard, ContactSummary, Dimension, Point, Row, Stats,
    TimelineEntry,
};

/// Window of `/api/live`, in seconds (the [`crate::store::Reports::live_visitors`] contract).
pub const LIVE_WINDOW_SECS: u64 = 300;
/// Longest lifetime of a personal link, in days.
pub const MAX_LINK_DAYS: u32 = 3650;

pub fn contact_json(c: &ContactSummary) -> Value {
    json!({
        "id": c.id,
        "email": c.email,
        "first_seen": iso(c.first_seen_ms),
        "last_seen": iso(c.last_seen_ms),
        "pageviews": c.pageviews,
    })
}

pub fn company_json(c: &CompanySummary) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "first_seen": iso(c.first_seen_ms),
        "last_seen": iso(c.last_seen_ms),
        "visitors": c.visitors,
        "pageviews": c.pageviews,
    })
}

pub fn timeline_json(t: &TimelineEntry) -> Value {
    let props = t
        .props_json
        .as_deref()
        .map(|p| serde_json::from_str::<Value>(p).unwrap_or_else(|_| Value::String(p.into())));
    json!({
        "ts": iso(t.ts_ms),
        "kind": t.kind,
        "site": t.site,
        "url": t.url,
        "path": t.path,
        "title": t.title,
        "referrer": t.referrer,
        "engaged_ms": t.engaged_ms,
        "name": t.name,
        "props": props,
        "utm_campaign": t.utm_campaign,
        "identify_source": t.identify_source,
        "session_id": t.session_id,
    })
}

pub fn contact_card_json(c: &ContactCard) -> Value {
    let mut v = contact_json(&c.summary);
    v["sites"] = json!(c.sites);
    v["sessions"] = json!(c.sessions);
    v["engaged_ms"] = json!(c.engaged_ms);
    v["campaigns"] = json!(c.campaigns);
    v["company"] = json!(c.company);
    v["timeline"] = c.timeline.iter().map(timeline_json).collect();
    v
}

pub fn company_card_json(c: &CompanyCard) -> Value {
    let mut v = company_json(&c.summary);
    v["contacts"] = c.contacts.iter().map(contact_json).collect();
    v["pages"] = json!(c.pages);
    v["timeline"] = c.timeline.iter().map(timeline_json).collect();
    v
}

fn range_json(site: &Option<String>, r: &Range) -> Value {
    json!({ "site": site, "from": iso(r.from_ms), "to": iso(r.to_ms) })
}

/// The body of `POST /api/contacts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewContact {
    email: String,
    expires_days: Option<u32>,
}

/// A personal link: the query string to append to any page URL of a site, and its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalLink {
    pub link: String,
    pub expires_at_ms: Option<i64>,
}

fn expires_days(q: &Query) -> Result<Option<u32>, ApiError> {
    match q.get("expires_days") {
        None => Ok(None),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=MAX_LINK_DAYS).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::bad(
                "expires_days",
                format!("must be a whole number from 1 to {MAX_LINK_DAYS}"),
            )),
        },
    }
}

impl Admin {
    /// Issues a personal link (`?smlink=<token>`) for a contact id, which must be a UUID (as
    /// every id the store creates is).
    pub fn personal_link(
        &self,
        contact_id: &str,
        expires_days: Option<u32>,
        now_ms: i64,
    ) -> Result<PersonalLink, ApiError> {
        let uuid = Uuid::try_parse(contact_id).map_err(|_| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "this contact's id is not a UUID, so no personal link can carry it",
            )
        })?;
        let now = u64::try_from(now_ms / 1000).unwrap_or(0);
        let expires = expires_days.map(|d| now + u64::from(d) * 86_400);
        let token = issue_personal_link(&self.keys, uuid, now, expires);
        Ok(PersonalLink {
            link: format!("?{SMLINK_PARAM}={token}"),
            expires_at_ms: expires.map(|e| e as i64 * 1000),
        })
    }

    pub(super) async fn sites_status(&self) -> Result<Vec<SiteStatus>, ApiError> {
        let reports = self.reports.clone();
        let seen = Self::blocking(move || reports.sites_seen()).await?;
        Ok(status::sites(&self.settings, &self.metrics, &seen))
    }

    pub(super) async fn api(&self, id: Id, ctx: &Ctx) -> Result<Response<Vec<u8>>, ApiError> {
        let q = &ctx.query;
        let headers = &ctx.req.headers;
        match id {
            Id::Readyz => {
                q.only(&[])?;
                Ok(self.ready().await)
            }
            Id::Metrics => {
                q.only(&[])?;
                Ok(respond::body(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.metrics.render().into_bytes(),
                ))
            }
            Id::ApiOpenapi => {
                q.only(&[])?;
                Ok(respond::body(
                    StatusCode::OK,
                    "application/json",
                    OPENAPI.as_bytes().to_vec(),
                ))
            }
            Id::ApiStatus => {
                q.only(&["format"])?;
                let format = params::format(q, headers)?;
                let sites = self.sites_status().await?;
                Ok(match format {
                    Format::Json => respond::json(StatusCode::OK, &json!({ "sites": sites })),
                    Format::Csv => respond::csv("status.csv", status_csv(&sites)),
                })
            }
            Id::ApiStats => {
                q.only(&["site", "from", "to", "format"])?;
                let site = params::site(q, &self.settings)?;
                let range = params::range(q, ctx.now_ms)?;
                let format = params::format(q, headers)?;
                let (reports, f) = (self.reports.clone(), range.filter(site.clone()));
                let stats = Self::blocking(move || reports.stats(&f)).await?;
                Ok(match format {
                    Format::Json => {
                        let mut v = range_json(&site, &range);
                        merge(&mut v, json!(stats));
                        respond::json(StatusCode::OK, &v)
                    }
                    Format::Csv => respond::csv("stats.csv", stats_csv(&site, &range, &stats)),
                })
            }
            Id::ApiTimeseries => {
                q.only(&["site", "from", "to", "bucket", "format"])?;
                let site = params::site(q, &self.settings)?;
                let range = params::range(q, ctx.now_ms)?;
                let bucket = params::bucket(q, &range)?;
                let format = params::format(q, headers)?;
                let (reports, f) = (self.reports.clone(), range.filter(site.clone()));
                let points = Self::blocking(move || reports.timeseries(&f, bucket)).await?;
                Ok(match format {
                    Format::Json => {
                        let mut v = range_json(&site, &range);
                        v["bucket"] = json!(bucket);
                        v["points"] = points.iter().map(point_json).collect();
                        respond::json(StatusCode::OK, &v)
                    }
                    Format::Csv => respond::csv("timeseries.csv", timeseries_csv(&points)),
                })
            }
            Id::ApiBreakdown => {
                q.only(&["site", "from", "to", "dimension", "limit", "format"])?;
                let site = params::site(q, &self.settings)?;
                let range = params::range(q, ctx.now_ms)?;
                let dimension = params::dimension(q)?;
                let limit = params::limit(q, "limit", 10, 1000)?;
                let format = params::format(q, headers)?;
                let (reports, f) = (self.reports.clone(), range.filter(site.clone()));
                let rows = Self::blocking(move || reports.breakdown(&f, dimension, limit)).await?;
                Ok(match format {
                    Format::Json => {
                        let mut v = range_json(&site, &range);
                        v["dimension"] = json!(dimension);
                        v["rows"] = json!(rows);
                        respond::json(StatusCode::OK, &v)
                    }
                    Format::Csv => respond::csv(
                        &format!("breakdown-{}.csv", dimension.as_str()),
                        breakdown_csv(dimension, &rows),
                    ),
                })
            }
            Id::ApiLive => {
                q.only(&["site", "format"])?;
                let site = params::site(q, &self.settings)?;
                let format = params::format(q, headers)?;
                let (reports, s, now) = (self.reports.clone(), site.clone(), ctx.now_ms);
                let n = Self::blocking(move || reports.live_visitors(s.as_deref(), now)).await?;
                Ok(match format {
                    Format::Json => respond::json(
                        StatusCode::OK,
                        &json!({
                            "site": site,
                            "visitors": n,
                            "window_seconds": LIVE_WINDOW_SECS,
                            "at": iso(now),
                        }),
                    ),
                    Format::Csv => {
                        let mut c = Csv::new();
                        c.header(&["site", "visitors", "window_seconds", "at"]);
                        c.row(&[
                            site.as_deref().into(),
                            n.into(),
                            LIVE_WINDOW_SECS.into(),
                            (&iso(now)).into(),
                        ]);
                        respond::csv("live.csv", c.finish())
                    }
                })
            }
            Id::ApiContacts => {
                q.only(&["search", "limit", "offset", "format"])?;
                let search = q.get("search").map(str::to_owned);
                if search.as_ref().is_some_and(|s| s.chars().count() > 200) {
                    return Err(ApiError::bad("search", "at most 200 characters"));
                }
                let limit = params::limit(q, "limit", 50, 1000)?;
                let offset = params::offset(q, 1_000_000)?;
                let format = params::format(q, headers)?;
                let (reports, s) = (self.reports.clone(), search.clone());
                let list =
                    Self::blocking(move || reports.contacts(s.as_deref(), limit, offset)).await?;
                Ok(match format {
                    Format::Json => respond::json(
                        StatusCode::OK,
                        &json!({
                            "search": search,
                            "limit": limit,
                            "offset": offset,
                            "contacts": list.iter().map(contact_json).collect::<Vec<_>>(),
                        }),
                    ),
                    Format::Csv => respond::csv("contacts.csv", contacts_csv(&list)),
                })
            }
            Id::ApiContactCreate => {
                q.only(&[])?;
                let body: NewContact = serde_json::from_slice(&ctx.req.body).map_err(|e| {
                    ApiError::bad(
                        "body",
                        format!(
                            "expected JSON {{\"email\": \"...\"}} (optional \"expires_days\"): {e}"
                        ),
                    )
                })?;
                if let Some(d) = body.expires_days {
                    if !(1..=MAX_LINK_DAYS).contains(&d) {
                        return Err(ApiError::bad(
                            "expires_days",
                            format!("must be a whole number from 1 to {MAX_LINK_DAYS}"),
                        ));
                    }
                }
                let email = normalize_email(&body.email)
                    .ok_or_else(|| ApiError::bad("email", "not a valid email address"))?;
                let (store, e, now) = (self.store.clone(), email.clone(), ctx.now_ms);
                let id = Self::blocking(move || store.upsert_contact_by_email(&e, now)).await?;
                let link = self.personal_link(id.as_str(), body.expires_days, ctx.now_ms)?;
                Ok(respond::json(
                    StatusCode::CREATED,
                    &json!({
                        "id": id.as_str(),
                        "email": email,
                        "personal_link": link.link,
                        "expires_at": link.expires_at_ms.map(iso),
                    }),
                ))
            }
            Id::ApiContact => {
                q.only(&["timeline_limit"])?;
                let limit = params::limit(q, "timeline_limit", 100, 1000)?;
                let card = self.contact_card(ctx.id(), limit).await?;
                Ok(respond::json(StatusCode::OK, &contact_card_json(&card)))
            }
            Id::ApiContactErase => {
                q.only(&[])?;
                let (reports, id) = (self.reports.clone(), ctx.id().to_string());
                let erased = Self::blocking(move || reports.erase_contact(&id)).await?;
                if erased.contacts == 0 && erased.events == 0 && erased.visitor_links == 0 {
                    return Err(ApiError::not_found("no such contact"));
                }
                tracing::info!(
                    events = erased.events,
                    "admin: a contact was erased on request"
                );
                Ok(respond::json(
                    StatusCode::OK,
                    &json!({ "id": ctx.id(), "erased": erased }),
                ))
            }
            Id::ApiContactExport => {
                q.only(&[])?;
                let (reports, id) = (self.reports.clone(), ctx.id().to_string());
                let data = Self::blocking(move || reports.export_contact(&id))
                    .await?
                    .ok_or_else(|| ApiError::not_found("no such contact"))?;
                let mut bytes = serde_json::to_vec_pretty(&data).unwrap_or_default();
                bytes.push(b'\n');
                Ok(respond::attachment(
                    "application/json",
                    &format!("contact-{}.json", ctx.id()),
                    bytes,
                ))
            }
            Id::ApiContactLink => {
                q.only(&["expires_days"])?;
                let days = expires_days(q)?;
                self.contact_card(ctx.id(), 0).await?;
                let link = self.personal_link(ctx.id(), days, ctx.now_ms)?;
                Ok(respond::json(
                    StatusCode::OK,
                    &json!({
                        "id": ctx.id(),
                        "personal_link": link.link,
                        "expires_at": link.expires_at_ms.map(iso),
                    }),
                ))
            }
            Id::ApiCompanies => {
                q.only(&["site", "from", "to", "limit", "format"])?;
                let site = params::site(q, &self.settings)?;
                let range = params::range(q, ctx.now_ms)?;
                let limit = params::limit(q, "limit", 50, 1000)?;
                let format = params::format(q, headers)?;
                let (reports, f) = (self.reports.clone(), range.filter(site.clone()));
                let list = Self::blocking(move || reports.companies(&f, limit)).await?;
                Ok(match format {
                    Format::Json => {
                        let mut v = range_json(&site, &range);
                        v["companies"] = list.iter().map(company_json).collect();
                        respond::json(StatusCode::OK, &v)
                    }
                    Format::Csv => respond::csv("companies.csv", companies_csv(&list)),
                })
            }
            Id::ApiCompany => {
                q.only(&["site", "from", "to", "timeline_limit"])?;
                let site = params::site(q, &self.settings)?;
                let range = params::range(q, ctx.now_ms)?;
                let limit = params::limit(q, "timeline_limit", 100, 1000)?;
                let card = self
                    .company_card(ctx.id(), range.filter(site.clone()), limit)
                    .await?;
                let mut v = company_card_json(&card);
                merge(&mut v, range_json(&site, &range));
                Ok(respond::json(StatusCode::OK, &v))
            }
            _ => Err(ApiError::not_found("no such route")),
        }
    }

    pub(super) async fn contact_card(
        &self,
        id: &str,
        timeline: usize,
    ) -> Result<ContactCard, ApiError> {
        let (reports, id) = (self.reports.clone(), id.to_string());
        Self::blocking(move || reports.contact(&id, timeline))
            .await?
            .ok_or_else(|| ApiError::not_found("no such contact"))
    }

    pub(super) async fn company_card(
        &self,
        id: &str,
        f: crate::store::reports::Filter,
        timeline: usize,
    ) -> Result<CompanyCard, ApiError> {
        let id: i64 = id
            .parse()
            .map_err(|_| ApiError::not_found("no such company"))?;
        let reports = self.reports.clone();
        Self::blocking(move || reports.company(id, &f, timeline))
            .await?
            .ok_or_else(|| ApiError::not_found("no such company"))
    }
}

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

fn point_json(p: &Point) -> Value {
    json!({ "ts": iso(p.ts_ms), "pageviews": p.pageviews, "visitors": p.visitors })
}

pub fn status_csv(sites: &[SiteStatus]) -> String {
    let mut c = Csv::new();
    let mut header = vec![
        "name",
        "hosts",
        "detected",
        "first_seen",
        "last_seen",
        "pages_injected",
        "pages_already_tagged",
        "duplicates_removed",
        "duplicates_kept",
        "rewrite_failures",
    ];
    let reasons: Vec<String> = crate::inject::Skip::ALL
        .iter()
        .map(|s| format!("skipped_{}", s.label()))
        .collect();
    header.extend(reasons.iter().map(String::as_str));
    header.extend(["alert", "warnings"]);
    c.header(&header);
    for s in sites {
        let hosts = s.hosts.join(" ");
        let warnings = s.warnings.join("; ");
        let mut row: Vec<Cell> = vec![
            (&s.name).into(),
            (&hosts).into(),
            s.detected.into(),
            s.first_seen.as_deref().into(),
            s.last_seen.as_deref().into(),
            s.pages_injected.into(),
            s.pages_already_tagged.into(),
            s.duplicates_removed.into(),
            s.duplicates_kept.into(),
            s.rewrite_failures.into(),
        ];
        row.extend(
            crate::inject::Skip::ALL
                .iter()
                .map(|r| Cell::from(s.skipped.get(r.label()).copied().unwrap_or(0))),
        );
        row.push(s.alert.into());
        row.push((&warnings).into());
        c.row(&row);
    }
    c.finish()
}

pub fn stats_csv(site: &Option<String>, r: &Range, s: &Stats) -> String {
    let mut c = Csv::new();
    c.header(&[
        "site",
        "from",
        "to",
        "pageviews",
        "visitors",
        "sessions",
        "views_per_session",
        "bounce_rate",
        "mean_engaged_ms",
        "contacts",
    ]);
    c.row(&[
        site.as_deref().into(),
        (&iso(r.from_ms)).into(),
        (&iso(r.to_ms)).into(),
        s.pageviews.into(),
        s.visitors.into(),
        s.sessions.into(),
        s.views_per_session.into(),
        s.bounce_rate.into(),
        s.mean_engaged_ms.into(),
        s.contacts.into(),
    ]);
    c.finish()
}

pub fn timeseries_csv(points: &[Point]) -> String {
    let mut c = Csv::new();
    c.header(&["ts", "pageviews", "visitors"]);
    for p in points {
        c.row(&[
            (&iso(p.ts_ms)).into(),
            p.pageviews.into(),
            p.visitors.into(),
        ]);
    }
    c.finish()
}

pub fn breakdown_csv(d: Dimension, rows: &[Row]) -> String {
    let mut c = Csv::new();
    c.header(&[d.as_str(), "pageviews", "visitors"]);
    for r in rows {
        c.row(&[(&r.key).into(), r.pageviews.into(), r.visitors.into()]);
    }
    c.finish()
}

pub fn contacts_csv(list: &[ContactSummary]) -> String {
    let mut c = Csv::new();
    c.header(&["id", "email", "first_seen", "last_seen", "pageviews"]);
    for s in list {
        c.row(&[
            (&s.id).into(),
            s.email.as_deref().into(),
            (&iso(s.first_seen_ms)).into(),
            (&iso(s.last_seen_ms)).into(),
            s.pageviews.into(),
        ]);
    }
    c.finish()
}

pub fn companies_csv(list: &[CompanySummary]) -> String {
    let mut c = Csv::new();
    c.header(&[
        "id",
        "name",
        "first_seen",
        "last_seen",
        "visitors",
        "pageviews",
    ]);
    for s in list {
        c.row(&[
            s.id.into(),
            (&s.name).into(),
            (&iso(s.first_seen_ms)).into(),
            (&iso(s.last_seen_ms)).into(),
            s.visitors.into(),
            s.pageviews.into(),
        ]);
    }
    c.finish()
}

/// `bucket` as the API names it.
pub fn bucket_name(b: Bucket) -> &'static str {
    match b {
        Bucket::Hour => "hour",
        Bucket::Day => "day",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::admin::routes::ROUTES;

    #[test]
    fn openapi_documents_exactly_the_routes_of_the_router() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let methods = ["get", "post", "put", "delete", "patch", "head", "options"];
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .expect("path item")
                    .keys()
                    .filter(|k| methods.contains(&k.as_str()))
                    .map(move |m| (m.to_uppercase(), path.clone()))
            })
            .collect();
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.pattern.to_string()))
            .collect();
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(
            missing.is_empty(),
            "routes missing from openapi.json: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "openapi.json documents unknown routes: {extra:?}"
        );
    }

    #[test]
    fn openapi_references_resolve() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        fn walk(v: &Value, doc: &Value) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        let pointer = r.strip_prefix('#').expect("local reference");
                        assert!(doc.pointer(pointer).is_some(), "dangling {r}");
                    }
                    m.values().for_each(|x| walk(x, doc));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, doc)),
                _ => {}
            }
        }
        walk(&doc, &doc);
    }

    #[test]
    fn csv_exports_guard_visitor_values() {
        let rows = [Row {
            key: "=HYPERLINK(\"http://evil.example\",\"x\")".into(),
            pageviews: 2,
            visitors: 1,
        }];
        assert_eq!(
            breakdown_csv(Dimension::Pages, &rows),
            "\"pages\",\"pageviews\",\"visitors\"\r\n\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\",2,1\r\n"
        );
        let contacts = [ContactSummary {
            id: "c1".into(),
            email: Some("@evil,\"x\"@example.com".into()),
            first_seen_ms: 0,
            last_seen_ms: 0,
            pageviews: 1,
        }];
        let text = contacts_csv(&contacts);
        assert!(text.contains("\"'@evil,\"\"x\"\"@example.com\""), "{text}");
    }
}
