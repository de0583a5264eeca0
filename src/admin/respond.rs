//! Responses: every one carries the security headers; errors are JSON for the API and tools,
//! an HTML page for the dashboard.

use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

use super::html::{self, Html, Nav};

/// The dashboard's Content-Security-Policy: no scripts at all, styles only from
/// `/static/style.css`, forms only to this listener, never framed.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'";

/// Adds the headers every admin response has.
pub fn finish(mut r: Response<Vec<u8>>) -> Response<Vec<u8>> {
    let len = r.body().len();
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

pub fn body(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub fn text(status: StatusCode, text: &str) -> Response<Vec<u8>> {
    body(
        status,
        "text/plain; charset=utf-8",
        text.as_bytes().to_vec(),
    )
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    body(status, "application/json", bytes)
}

pub fn html(status: StatusCode, page: Html) -> Response<Vec<u8>> {
    body(
        status,
        "text/html; charset=utf-8",
        page.into_string().into_bytes(),
    )
}

/// A download: `filename` is built by this code (safe characters only).
pub fn attachment(content_type: &'static str, filename: &str, bytes: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = body(StatusCode::OK, content_type, bytes);
    let safe: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

pub fn csv(filename: &str, text: String) -> Response<Vec<u8>> {
    attachment("text/csv; charset=utf-8", filename, text.into_bytes())
}

/// `303 See Other` to a path of this listener.
pub fn redirect(location: &str) -> Response<Vec<u8>> {
    let mut r = text(StatusCode::SEE_OTHER, "");
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Why a request failed, as the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The query parameter or body field at fault.
    pub parameter: Option<String>,
}

impl ApiError {
    pub fn bad(parameter: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            parameter: Some(parameter.into()),
        }
    }

    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            parameter: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unavailable() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store did not answer; try again later",
        )
    }

    pub fn with_parameter(mut self, parameter: &str) -> Self {
        self.parameter = Some(parameter.to_string());
        self
    }

    pub fn to_json(&self) -> Response<Vec<u8>> {
        let mut v = json!({ "error": self.message });
        if let Some(p) = &self.parameter {
            v["parameter"] = json!(p);
        }
        json(self.status, &v)
    }

    pub fn to_html(&self, csrf: Option<&str>) -> Response<Vec<u8>> {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let mut b = Html::new();
        b.raw("<h1>").text(title).raw("</h1><p class=\"alert\">");
        if let Some(p) = &self.parameter {
            b.raw("<code>").text(p).raw("</code>: ");
        }
        b.text(&self.message)
            .raw("</p><p><a href=\"/\">Back to the overview</a></p>");
        html(self.status, html::page(title, Nav::None, csrf, &b))
    }
}
