//! The dashboard: server-rendered pages that need no JavaScript. Filters are GET forms;
//! actions (personal link, erase, log out) are POST forms carrying the session's CSRF token.
//! Every stored value is written through [`Html::text`] or [`Html::attr`] (escaped), and
//! stored URLs are shown as text, never as links.

use http::{Response, StatusCode};

use super::api::PersonalLink;
use super::chart;
use super::html::{self, col, csrf_field, num_col, table, Html, Nav, Td};
use super::params::{self, Range};
use super::respond::{self, ApiError};
use super::routes::{with_id, Id};
use super::status::SiteStatus;
use super::time::{iso, short};
use super::{Admin, Ctx};
use crate::config::HostPattern;
use crate::store::reports::{Dimension, Point, Row, SiteSeen, Stats, TimelineEntry};

/// Rows in each table of the overview.
const TOP_ROWS: usize = 8;
/// Contacts per page of the list.
const CONTACTS_PER_PAGE: usize = 50;
/// Timeline entries on a contact or company card.
const TIMELINE: usize = 200;

pub fn dimension_title(d: Dimension) -> &'static str {
    match d {
        Dimension::Pages => "Pages",
        Dimension::EntryPages => "Entry pages",
        Dimension::ExitPages => "Exit pages",
        Dimension::Referrers => "Referrers",
        Dimension::UtmSource => "UTM sources",
        Dimension::UtmMedium => "UTM media",
        Dimension::UtmCampaign => "UTM campaigns",
        Dimension::Browsers => "Browsers",
        Dimension::Os => "Operating systems",
        Dimension::Devices => "Devices",
        Dimension::Companies => "Companies",
        Dimension::Sites => "Sites",
    }
}

/// Entry and exit pages count sessions, the others page views.
fn count_title(d: Dimension) -> &'static str {
    match d {
        Dimension::EntryPages | Dimension::ExitPages => "Sessions",
        _ => "Views",
    }
}

/// The site and range filters of a page, with the values as the user gave them (so links keep
/// them exactly).
struct Filters {
    site: Option<String>,
    range: Range,
    given: Vec<(&'static str, String)>,
}

impl Filters {
    /// The filter as query pairs, plus `extra`.
    fn href(&self, path: &str, extra: &[(&str, &str)]) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.given {
            s.append_pair(k, v);
        }
        for (k, v) in extra {
            s.append_pair(k, v);
        }
        let q = s.finish();
        if q.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{q}")
        }
    }
}

fn href(path: &str, pairs: &[(&str, &str)]) -> String {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{q}")
    }
}

fn stat_card(h: &mut Html, label: &'static str, value: &str) {
    h.raw("<div class=\"stat\"><span class=\"label\">")
        .text(label)
        .raw("</span><span class=\"value\">")
        .text(value)
        .raw("</span></div>");
}

/// A card for a longer value (a date).
fn small_card(h: &mut Html, label: &'static str, value: &str) {
    h.raw("<div class=\"stat small\"><span class=\"label\">")
        .text(label)
        .raw("</span><span class=\"value\">")
        .text(value)
        .raw("</span></div>");
}

fn rows_table(h: &mut Html, d: Dimension, rows: &[Row]) {
    let rows = rows
        .iter()
        .map(|r| {
            vec![
                Td::Text(r.key.clone()),
                Td::Num(r.pageviews),
                Td::Num(r.visitors),
            ]
        })
        .collect();
    table(
        h,
        &[
            col(dimension_title(d)),
            num_col(count_title(d)),
            num_col("Visitors"),
        ],
        rows,
        "Nothing recorded in this range.",
    );
}

fn timeline_table(h: &mut Html, entries: &[TimelineEntry]) {
    let rows = entries
        .iter()
        .map(|t| {
            let page = match &t.title {
                Some(title) if !title.is_empty() => format!("{title} — {}", t.path),
                _ => t.path.clone(),
            };
            let mut details = Vec::new();
            if let Some(name) = &t.name {
                details.push(name.clone());
            }
            if let Some(ms) = t.engaged_ms {
                details.push(format!("engaged {}", html::duration(ms as f64)));
            }
            if let Some(r) = &t.referrer {
                details.push(format!("from {r}"));
            }
            if let Some(c) = &t.utm_campaign {
                details.push(format!("campaign {c}"));
            }
            if let Some(s) = &t.identify_source {
                details.push(format!("identified by {s}"));
            }
            vec![
                Td::Text(short(t.ts_ms)),
                Td::Text(t.site.clone()),
                Td::Text(t.kind.clone()),
                Td::Text(page),
                Td::Text(details.join(" · ")),
            ]
        })
        .collect();
    table(
        h,
        &[
            col("Time (UTC)"),
            col("Site"),
            col("Event"),
            col("Page"),
            col("Details"),
        ],
        rows,
        "No events.",
    );
}

fn site_status_cards(h: &mut Html, sites: &[SiteStatus]) {
    h.raw("<div class=\"sites\">");
    for s in sites {
        h.raw(if s.alert.is_some() {
            "<article class=\"site alert-card\">"
        } else {
            "<article class=\"site ok\">"
        });
        h.raw("<h3>").text(&s.name).raw("</h3><p class=\"hosts\">");
        h.text(&s.hosts.join(", ")).raw("</p>");
        match (s.alert, s.last_seen_ms) {
            (Some(alert), _) => {
                h.raw("<p class=\"badge bad\">").text(alert).raw("</p>");
            }
            (None, Some(last)) => {
                h.raw("<p class=\"badge good\">Code detected · last event ")
                    .text(&short(last))
                    .raw(" UTC</p>");
            }
            (None, None) => {
                h.raw("<p class=\"badge good\">Code detected</p>");
            }
        }
        h.raw("<dl class=\"counters\">");
        for (label, n) in [
            ("Pages injected", s.pages_injected),
            ("Already tagged", s.pages_already_tagged),
            ("Duplicates removed", s.duplicates_removed),
            ("Rewrite failures", s.rewrite_failures),
        ] {
            h.raw("<div><dt>")
                .text(label)
                .raw("</dt><dd>")
                .text(&html::group_digits(n))
                .raw("</dd></div>");
        }
        h.raw("</dl>");
        if !s.warnings.is_empty() {
            h.raw("<ul class=\"warnings\">");
            for w in &s.warnings {
                h.raw("<li>").text(w).raw("</li>");
            }
            h.raw("</ul>");
        }
        h.raw("</article>");
    }
    h.raw("</div>");
}

/// Everything the overview reads from the store, in one blocking call.
struct OverviewData {
    seen: Vec<SiteSeen>,
    stats: Stats,
    points: Vec<Point>,
    live: u64,
    tops: Vec<(Dimension, Vec<Row>)>,
}

impl Admin {
    pub(super) async fn page(&self, id: Id, ctx: &Ctx) -> Result<Response<Vec<u8>>, ApiError> {
        match id {
            Id::Logout => Ok(self.logout(ctx)),
            Id::Overview => self.overview(ctx).await,
            Id::Breakdown => self.breakdown_page(ctx).await,
            Id::Contacts => self.contacts_page(ctx).await,
            Id::Contact => self.contact_page(ctx, None).await,
            Id::ContactLink => {
                let days = match ctx.form("expires_days").filter(|v| !v.is_empty()) {
                    None => None,
                    Some(v) => match v.parse::<u32>() {
                        Ok(n) if (1..=super::api::MAX_LINK_DAYS).contains(&n) => Some(n),
                        _ => {
                            return Err(ApiError::bad(
                                "expires_days",
                                "must be empty or a whole number of days",
                            ))
                        }
                    },
                };
                self.contact_card(ctx.id(), 0).await?;
                let link = self.personal_link(ctx.id(), days, ctx.now_ms)?;
                self.contact_page(ctx, Some(link)).await
            }
            Id::ContactErase => {
                if ctx.form("confirm").as_deref() != Some("yes") {
                    return Err(ApiError::bad(
                        "confirm",
                        "tick the confirmation box to erase the contact",
                    ));
                }
                let (reports, cid) = (self.reports.clone(), ctx.id().to_string());
                let erased = Self::blocking(move || reports.erase_contact(&cid)).await?;
                if erased.contacts == 0 && erased.events == 0 && erased.visitor_links == 0 {
                    return Err(ApiError::not_found("no such contact"));
                }
                tracing::info!(
                    events = erased.events,
                    "admin: a contact was erased on request"
                );
                Ok(respond::redirect(&href(
                    "/contacts",
                    &[("erased", &erased.events.to_string())],
                )))
            }
            Id::Companies => self.companies_page(ctx).await,
            Id::Company => self.company_page(ctx).await,
            _ => Err(ApiError::not_found("no such page")),
        }
    }

    fn filters(&self, ctx: &Ctx) -> Result<Filters, ApiError> {
        let q = &ctx.query;
        let site = params::site(q, &self.settings)?;
        let range = params::range(q, ctx.now_ms)?;
        let given = ["site", "from", "to"]
            .into_iter()
            .filter_map(|k| q.get(k).map(|v| (k, v.to_string())))
            .collect();
        Ok(Filters { site, range, given })
    }

    /// The GET form of site and date range; `extra` adds fields before the button.
    fn filter_form(
        &self,
        h: &mut Html,
        action: &'static str,
        f: &Filters,
        extra: &dyn Fn(&mut Html),
    ) {
        h.raw("<form class=\"filters\" method=\"get\"")
            .attr("action", action)
            .raw("><label>Site <select name=\"site\"><option value=\"\">All sites</option>");
        for s in &self.settings.sites {
            h.raw("<option").attr("value", &s.name);
            if f.site.as_deref() == Some(s.name.as_str()) {
                h.raw(" selected");
            }
            h.raw(">").text(&s.name).raw("</option>");
        }
        h.raw("</select></label><label>From <input type=\"date\" name=\"from\"")
            .attr("value", &f.range.from_date())
            .raw("></label><label>To <input type=\"date\" name=\"to\"")
            .attr("value", &f.range.to_date())
            .raw("></label>");
        extra(h);
        h.raw("<button type=\"submit\">Apply</button></form>");
    }

    fn render(&self, ctx: &Ctx, title: &str, nav: Nav, body: &Html) -> Response<Vec<u8>> {
        respond::html(
            StatusCode::OK,
            html::page(title, nav, ctx.auth.csrf(), body),
        )
    }

    async fn overview(&self, ctx: &Ctx) -> Result<Response<Vec<u8>>, ApiError> {
        let f = self.filters(ctx)?;
        let bucket = params::bucket(&ctx.query, &f.range)?;
        let mut dims = vec![
            Dimension::Pages,
            Dimension::EntryPages,
            Dimension::Referrers,
            Dimension::UtmSource,
            Dimension::UtmMedium,
            Dimension::UtmCampaign,
            Dimension::Browsers,
            Dimension::Os,
            Dimension::Devices,
            Dimension::Companies,
        ];
        if f.site.is_none() && self.settings.sites.len() > 1 {
            dims.insert(0, Dimension::Sites);
        }
        let (reports, filter, now) = (
            self.reports.clone(),
            f.range.filter(f.site.clone()),
            ctx.now_ms,
        );
        let data = Self::blocking(move || {
            Ok(OverviewData {
                seen: reports.sites_seen()?,
                stats: reports.stats(&filter)?,
                points: reports.timeseries(&filter, bucket)?,
                live: reports.live_visitors(filter.site.as_deref(), now)?,
                tops: dims
                    .into_iter()
                    .map(|d| Ok((d, reports.breakdown(&filter, d, TOP_ROWS)?)))
                    .collect::<Result<_, crate::store::StoreError>>()?,
            })
        })
        .await?;
        let sites = super::status::sites(&self.settings, &self.metrics, &data.seen);

        let mut h = Html::new();
        h.raw("<h1>Overview</h1>");
        self.filter_form(&mut h, "/", &f, &|_| {});
        h.raw("<section><h2>Install status</h2>");
        site_status_cards(&mut h, &sites);
        h.raw("</section><section><h2>Traffic <span class=\"muted\">")
            .text(&format!(
                "{} – {} (UTC)",
                f.range.from_date(),
                f.range.to_date()
            ))
            .raw("</span></h2><div class=\"stats\">");
        let s = &data.stats;
        stat_card(&mut h, "Page views", &html::group_digits(s.pageviews));
        stat_card(&mut h, "Visitors", &html::group_digits(s.visitors));
        stat_card(&mut h, "Sessions", &html::group_digits(s.sessions));
        stat_card(
            &mut h,
            "Views per session",
            &format!("{:.2}", s.views_per_session),
        );
        stat_card(&mut h, "Bounce rate", &html::percent(s.bounce_rate));
        stat_card(&mut h, "Engaged time", &html::duration(s.mean_engaged_ms));
        stat_card(&mut h, "Contacts", &html::group_digits(s.contacts));
        stat_card(&mut h, "Live (5 min)", &html::group_digits(data.live));
        h.raw("</div>");
        h.push(&chart::timeseries(&data.points, bucket));
        h.raw("<p class=\"downloads\">Download CSV: <a")
            .attr("href", &f.href("/api/stats", &[("format", "csv")]))
            .raw(">stats</a> · <a")
            .attr(
                "href",
                &f.href(
                    "/api/timeseries",
                    &[
                        ("bucket", super::api::bucket_name(bucket)),
                        ("format", "csv"),
                    ],
                ),
            )
            .raw(">time series</a></p></section><section class=\"tops\">");
        for (d, rows) in &data.tops {
            h.raw("<article><h2>")
                .text(dimension_title(*d))
                .raw("</h2>");
            rows_table(&mut h, *d, rows);
            h.raw("<p class=\"more\"><a")
                .attr("href", &f.href("/breakdown", &[("dimension", d.as_str())]))
                .raw(">Show all →</a></p></article>");
        }
        h.raw("</section>");
        Ok(self.render(ctx, "Overview", Nav::Overview, &h))
    }

    async fn breakdown_page(&self, ctx: &Ctx) -> Result<Response<Vec<u8>>, ApiError> {
        let f = self.filters(ctx)?;
        let dimension = if ctx.query.get("dimension").is_none() {
            Dimension::Pages
        } else {
            params::dimension(&ctx.query)?
        };
        let limit = params::limit(&ctx.query, "limit", 100, 1000)?;
        let (reports, filter) = (self.reports.clone(), f.range.filter(f.site.clone()));
        let rows = Self::blocking(move || reports.breakdown(&filter, dimension, limit)).await?;

        let mut h = Html::new();
        h.raw("<h1>").text(dimension_title(dimension)).raw("</h1>");
        let limit_text = limit.to_string();
        self.filter_form(&mut h, "/breakdown", &f, &|h: &mut Html| {
            h.raw("<label>Breakdown <select name=\"dimension\">");
            for d in Dimension::ALL {
                h.raw("<option").attr("value", d.as_str());
                if d == dimension {
                    h.raw(" selected");
                }
                h.raw(">").text(dimension_title(d)).raw("</option>");
            }
            h.raw("</select></label><label>Rows <input type=\"number\" name=\"limit\" min=\"1\" max=\"1000\"")
                .attr("value", &limit_text)
                .raw("></label>");
        });
        rows_table(&mut h, dimension, &rows);
        h.raw("<p class=\"downloads\"><a")
            .attr(
                "href",
                &f.href(
                    "/api/breakdown",
                    &[
                        ("dimension", dimension.as_str()),
                        ("limit", &limit_text),
                        ("format", "csv"),
                    ],
                ),
            )
            .raw(">Download CSV</a></p>");
        Ok(self.render(ctx, dimension_title(dimension), Nav::Breakdown, &h))
    }

    async fn contacts_page(&self, ctx: &Ctx) -> Result<Response<Vec<u8>>, ApiError> {
        let q = &ctx.query;
        let search = q.get("search").map(str::to_owned);
        if search.as_ref().is_some_and(|s| s.chars().count() > 200) {
            return Err(ApiError::bad("search", "at most 200 characters"));
        }
        let offset = params::offset(q, 1_000_000)?;
        let (reports, s) = (self.reports.clone(), search.clone());
        let mut list =
            Self::blocking(move || reports.contacts(s.as_deref(), CONTACTS_PER_PAGE + 1, offset))
                .await?;
        let more = list.len() > CONTACTS_PER_PAGE;
        list.truncate(CONTACTS_PER_PAGE);

        let mut h = Html::new();
        h.raw("<h1>Contacts</h1>");
        if let Some(n) = q.get("erased").and_then(|v| v.parse::<u64>().ok()) {
            h.raw("<p class=\"notice\" role=\"status\">")
                .text(&format!("The contact was erased, with {n} event(s)."))
                .raw("</p>");
        }
        h.raw("<form class=\"filters\" method=\"get\" action=\"/contacts\"><label>Search <input type=\"search\" name=\"search\" placeholder=\"e-mail or id\"")
            .attr("value", search.as_deref().unwrap_or(""))
            .raw("></label><button type=\"submit\">Search</button></form>");
        let rows = list
            .iter()
            .map(|c| {
                vec![
                    Td::Link {
                        href: with_id("/contacts/", &c.id, ""),
                        text: c
                            .email
                            .clone()
                            .unwrap_or_else(|| format!("(no e-mail) {}", c.id)),
                    },
                    Td::Text(short(c.first_seen_ms)),
                    Td::Text(short(c.last_seen_ms)),
                    Td::Num(c.pageviews),
                ]
            })
            .collect();
        table(
            &mut h,
            &[
                col("Contact"),
                col("First seen (UTC)"),
                col("Last seen (UTC)"),
                num_col("Page views"),
            ],
            rows,
            if search.is_some() {
                "No contact matches."
            } else {
                "No contacts yet."
            },
        );
        let s = search.as_deref().unwrap_or("");
        h.raw("<nav class=\"pager\">");
        if offset > 0 {
            let prev = offset.saturating_sub(CONTACTS_PER_PAGE).to_string();
            h.raw("<a")
                .attr(
                    "href",
                    &href("/contacts", &[("search", s), ("offset", &prev)]),
                )
                .raw(">← Previous</a>");
        }
        if more {
            let next = (offset + CONTACTS_PER_PAGE).to_string();
            h.raw("<a")
                .attr(
                    "href",
                    &href("/contacts", &[("search", s), ("offset", &next)]),
                )
                .raw(">Next →</a>");
        }
        h.raw("</nav><p class=\"downloads\"><a")
            .attr(
                "href",
                &href(
                    "/api/contacts",
                    &[("search", s), ("limit", "1000"), ("format", "csv")],
                ),
            )
            .raw(">Download CSV</a> (up to 1000 contacts)</p>");
        Ok(self.render(ctx, "Contacts", Nav::Contacts, &h))
    }

    async fn contact_page(
        &self,
        ctx: &Ctx,
        link: Option<PersonalLink>,
    ) -> Result<Response<Vec<u8>>, ApiError> {
        let card = self.contact_card(ctx.id(), TIMELINE).await?;
        let c = &card.summary;
        let title = c.email.clone().unwrap_or_else(|| "Contact".to_string());
        let csrf = ctx.auth.csrf().unwrap_or("");

        let mut h = Html::new();
        h.raw("<p class=\"crumbs\"><a href=\"/contacts\">Contacts</a></p><h1>")
            .text(&title)
            .raw("</h1><p class=\"muted\">Id <code>")
            .text(&c.id)
            .raw("</code></p>");
        if let Some(link) = &link {
            h.raw("<div class=\"notice\" role=\"status\"><p>Personal link: add it to the address of any page of your sites")
                .raw(match link.expires_at_ms {
                    Some(_) => "; it expires ",
                    None => "; it does not expire",
                });
            if let Some(exp) = link.expires_at_ms {
                h.text(&iso(exp));
            }
            h.raw(".</p><input class=\"copy\" type=\"text\" readonly aria-label=\"Personal link\"")
                .attr("value", &link.link)
                .raw(">");
            let examples: Vec<String> = self
                .settings
                .sites
                .iter()
                .filter_map(|s| {
                    s.hosts.iter().find_map(|h| match h {
                        HostPattern::Exact(name) => Some(format!("https://{name}/{}", link.link)),
                        _ => None,
                    })
                })
                .collect();
            if !examples.is_empty() {
                h.raw("<p>For example:</p><ul>");
                for e in &examples {
                    h.raw("<li><code>").text(e).raw("</code></li>");
                }
                h.raw("</ul>");
            }
            h.raw("</div>");
        }
        h.raw("<div class=\"stats\">");
        small_card(&mut h, "First seen (UTC)", &short(c.first_seen_ms));
        small_card(&mut h, "Last seen (UTC)", &short(c.last_seen_ms));
        stat_card(&mut h, "Page views", &html::group_digits(c.pageviews));
        stat_card(&mut h, "Sessions", &html::group_digits(card.sessions));
        stat_card(
            &mut h,
            "Engaged time",
            &html::duration(card.engaged_ms as f64),
        );
        h.raw("</div><dl class=\"facts\"><div><dt>Sites</dt><dd>");
        h.text(&none_if_empty(&card.sites.join(", ")));
        h.raw("</dd></div><div><dt>Campaigns</dt><dd>")
            .text(&none_if_empty(&card.campaigns.join(", ")))
            .raw("</dd></div><div><dt>Company</dt><dd>")
            .text(card.company.as_deref().unwrap_or("–"))
            .raw("</dd></div></dl>");

        h.raw("<section class=\"actions\"><form method=\"post\"")
            .attr("action", &with_id("/contacts/", &c.id, "/link"))
            .raw(">");
        csrf_field(&mut h, csrf);
        h.raw("<label>Link expires <select name=\"expires_days\"><option value=\"\">never</option><option value=\"30\">in 30 days</option><option value=\"90\">in 90 days</option><option value=\"365\">in a year</option></select></label>")
            .raw("<button type=\"submit\">Generate personal link</button></form>");
        h.raw("<p><a class=\"button\"")
            .attr("href", &with_id("/api/contacts/", &c.id, "/export"))
            .raw(">Export all data (JSON)</a></p>");
        h.raw("<form class=\"danger\" method=\"post\"")
            .attr("action", &with_id("/contacts/", &c.id, "/erase"))
            .raw(">");
        csrf_field(&mut h, csrf);
        h.raw("<label><input type=\"checkbox\" name=\"confirm\" value=\"yes\" required> Delete this contact and every event attributed to them; this cannot be undone</label>")
            .raw("<button type=\"submit\" class=\"danger\">Erase contact</button></form></section>");

        h.raw("<h2>Timeline</h2>");
        timeline_table(&mut h, &card.timeline);
        Ok(self.render(ctx, &title, Nav::Contacts, &h))
    }

    async fn companies_page(&self, ctx: &Ctx) -> Result<Response<Vec<u8>>, ApiError> {
        let f = self.filters(ctx)?;
        let (reports, filter) = (self.reports.clone(), f.range.filter(f.site.clone()));
        let list = Self::blocking(move || reports.companies(&filter, 200)).await?;

        let mut h = Html::new();
        h.raw("<h1>Companies</h1>");
        self.filter_form(&mut h, "/companies", &f, &|_| {});
        let rows = list
            .iter()
            .map(|c| {
                vec![
                    Td::Link {
                        href: f.href(&format!("/companies/{}", c.id), &[]),
                        text: c.name.clone(),
                    },
                    Td::Num(c.visitors),
                    Td::Num(c.pageviews),
                    Td::Text(short(c.first_seen_ms)),
                    Td::Text(short(c.last_seen_ms)),
                ]
            })
            .collect();
        table(
            &mut h,
            &[
                col("Company"),
                num_col("Visitors"),
                num_col("Page views"),
                col("First seen (UTC)"),
                col("Last seen (UTC)"),
            ],
            rows,
            "No company visited in this range.",
        );
        h.raw("<p class=\"downloads\"><a")
            .attr(
                "href",
                &f.href("/api/companies", &[("limit", "1000"), ("format", "csv")]),
            )
            .raw(">Download CSV</a></p>");
        Ok(self.render(ctx, "Companies", Nav::Companies, &h))
    }

    async fn company_page(&self, ctx: &Ctx) -> Result<Response<Vec<u8>>, ApiError> {
        let f = self.filters(ctx)?;
        let card = self
            .company_card(ctx.id(), f.range.filter(f.site.clone()), TIMELINE)
            .await?;
        let c = &card.summary;

        let mut h = Html::new();
        h.raw("<p class=\"crumbs\"><a")
            .attr("href", &f.href("/companies", &[]))
            .raw(">Companies</a></p><h1>")
            .text(&c.name)
            .raw("</h1>");
        let action = format!("/companies/{}", c.id);
        h.raw("<form class=\"filters\" method=\"get\"")
            .attr("action", &action)
            .raw(">");
        h.raw("<input type=\"hidden\" name=\"site\"")
            .attr("value", f.site.as_deref().unwrap_or(""))
            .raw("><label>From <input type=\"date\" name=\"from\"")
            .attr("value", &f.range.from_date())
            .raw("></label><label>To <input type=\"date\" name=\"to\"")
            .attr("value", &f.range.to_date())
            .raw("></label><button type=\"submit\">Apply</button></form>");
        h.raw("<div class=\"stats\">");
        stat_card(&mut h, "Visitors", &html::group_digits(c.visitors));
        stat_card(&mut h, "Page views", &html::group_digits(c.pageviews));
        small_card(&mut h, "First seen (UTC)", &short(c.first_seen_ms));
        small_card(&mut h, "Last seen (UTC)", &short(c.last_seen_ms));
        h.raw("</div><h2>Contacts</h2>");
        let rows = card
            .contacts
            .iter()
            .map(|p| {
                vec![
                    Td::Link {
                        href: with_id("/contacts/", &p.id, ""),
                        text: p
                            .email
                            .clone()
                            .unwrap_or_else(|| format!("(no e-mail) {}", p.id)),
                    },
                    Td::Text(short(p.last_seen_ms)),
                    Td::Num(p.pageviews),
                ]
            })
            .collect();
        table(
            &mut h,
            &[
                col("Contact"),
                col("Last seen (UTC)"),
                num_col("Page views"),
            ],
            rows,
            "No identified contact from this company.",
        );
        h.raw("<h2>Top pages</h2>");
        rows_table(&mut h, Dimension::Pages, &card.pages);
        h.raw("<h2>Timeline</h2>");
        timeline_table(&mut h, &card.timeline);
        Ok(self.render(ctx, &c.name, Nav::Companies, &h))
    }
}

fn none_if_empty(s: &str) -> String {
    if s.is_empty() {
        "–".to_string()
    } else {
        s.to_string()
    }
}
