//! `GET /api/v1/report?from=&to=&format=json|csv|html`: the energy report of a period (see
//! [`crate::report`]), for viewers and operators; `heatgrid report` and the web control
//! room's Reports page read it.
//!
//! Where it sits: beside the other read handlers of [`super::http`]; it reads the database
//! (or the local files) through the configured [`crate::report::source::Source`].

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::auth::{authorize, ApiError, Role};
use super::ApiState;
use crate::report::Report;

const HOUR_MS: i64 = 3_600_000;
/// The longest period a report covers.
const MAX_DAYS: i64 = 400;

#[derive(Debug, serde::Deserialize)]
pub(super) struct Period {
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

/// `2026-11-01` (midnight UTC) or RFC 3339 (`2026-11-01T00:00:00+08:00`), in ms.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let t = if s.len() == 10 {
        time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
            .map(|d| d.midnight().assume_utc())
            .map_err(|e| e.to_string())
    } else {
        OffsetDateTime::parse(s, &Rfc3339).map_err(|e| e.to_string())
    };
    t.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|e| format!("{s:?} is neither a date (2026-11-01) nor RFC 3339: {e}"))
}

/// The period asked for, in whole hours (`from` down, `to` up): by default the last 7 days.
fn period(p: &Period) -> Result<(i64, i64), String> {
    let now = crate::clock::now_ms();
    let to = match &p.to {
        Some(s) => parse_time(s)?,
        None => now,
    };
    let from = match &p.from {
        Some(s) => parse_time(s)?,
        None => to - 7 * 24 * HOUR_MS,
    };
    let from = from - from.rem_euclid(HOUR_MS);
    let to = to + (HOUR_MS - to.rem_euclid(HOUR_MS)) % HOUR_MS;
    if to <= from {
        return Err("the period ends before it starts".into());
    }
    if to - from > MAX_DAYS * 24 * HOUR_MS {
        return Err(format!("a report covers at most {MAX_DAYS} days"));
    }
    Ok((from, to))
}

pub(super) async fn report(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Query(p): Query<Period>,
) -> Result<Response, ApiError> {
    authorize(&st.tokens, &headers, Role::Viewer)?;
    let bad = |e: String| ApiError(StatusCode::BAD_REQUEST, e);
    let format = p.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "csv" | "html") {
        return Err(bad(format!("format {format:?}: json, csv or html")));
    }
    let (from, to) = period(&p).map_err(bad)?;
    let source = st
        .reports
        .as_ref()
        .as_ref()
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, e.clone()))?;
    let data = source
        .read(from, to)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, e))?;
    let ids: Vec<String> = st
        .stations
        .iter()
        .map(|s| s.id.as_str().to_owned())
        .collect();
    let r = Report::build(&data, &ids, (from, to), &source.describe());
    let typed = |body: String, ct: &'static str| {
        let mut resp = body.into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        resp
    };
    Ok(match format {
        "csv" => typed(crate::report::render::csv(&r), "text/csv; charset=utf-8"),
        "html" => typed(crate::report::render::html(&r), "text/html; charset=utf-8"),
        _ => Json(r).into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_whole_hours_and_bounded() {
        let p = |from: &str, to: &str| {
            period(&Period {
                from: Some(from.into()),
                to: Some(to.into()),
                format: None,
            })
        };
        let (f, t) = p("2026-11-01", "2026-12-01").unwrap();
        assert_eq!(t - f, 30 * 24 * HOUR_MS);
        assert_eq!(f, parse_time("2026-11-01T00:00:00Z").unwrap());
        // Beijing's midnight is 16:00 UTC the day before.
        assert_eq!(
            parse_time("2026-11-01T00:00:00+08:00").unwrap(),
            parse_time("2026-10-31T16:00:00Z").unwrap()
        );
        let (f, t) = p("2026-11-01T10:20:00Z", "2026-11-01T12:05:00Z").unwrap();
        assert_eq!((t - f) / HOUR_MS, 3, "10:00 to 13:00");
        assert!(p("2026-12-01", "2026-11-01")
            .unwrap_err()
            .contains("before"));
        assert!(p("2025-01-01", "2026-12-01")
            .unwrap_err()
            .contains("at most"));
        assert!(p("yesterday", "2026-12-01")
            .unwrap_err()
            .contains("neither"));
    }
}
