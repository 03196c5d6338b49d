//! The query strings of the GET routes, parsed and checked as their handlers do, without a request or a
//! database: what the `queries` fuzz target drives (no input may panic) beside the HTTP table test.

use axum::http::Uri;
use chrono::{TimeZone, Utc};
use serde::de::DeserializeOwned;

use crate::auth::JobScope;
use crate::error::AppError;

/// The routes whose queries [`check`] knows, by the name it takes.
pub const ROUTES: [&str; 10] = [
    "jobs",
    "energy",
    "waste",
    "window",
    "hourly",
    "year",
    "pue_page",
    "advice",
    "powercap",
    "statement",
];

fn parse<T: DeserializeOwned>(uri: &Uri) -> Result<T, AppError> {
    crate::extract::Query::<T>::try_from_uri(uri).map(|q| q.0)
}

/// Parses and checks `query` as route `route` of [`ROUTES`] does.
pub fn check(route: &str, query: &str) -> Result<(), AppError> {
    let uri: Uri = format!("/?{query}")
        .parse()
        .map_err(|_| AppError::bad_request("query: not a URI query"))?;
    match route {
        "jobs" => {
            let q: crate::service::jobs::list::ListQuery = parse(&uri)?;
            q.filter(&JobScope::All)?;
            q.sort()?;
            q.page()?;
        }
        "window" => {
            let w: super::jobs::query::Window = parse(&uri)?;
            let start = Utc
                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .single()
                .map_or(0, |t| t.timestamp_millis());
            w.bounds(start, start + 3_600_000)?;
            w.bounds(start, start)?;
            let _ = w.query();
        }
        "energy" => {
            let q: super::closure::PageQuery = parse(&uri)?;
            let (by, from, to) = super::closure::parse_query(&q)?;
            crate::service::closure::range(by, from, to, Utc::now().date_naive())?;
        }
        "waste" => {
            let q: super::closure::WasteQuery = parse(&uri)?;
            q.window(Utc::now())?;
        }
        "hourly" => {
            let r: super::pue::RangeQuery = parse(&uri)?;
            r.window(Utc::now())?;
        }
        "year" => {
            let _: super::pue::YearQuery = parse(&uri)?;
        }
        "pue_page" => {
            let _: super::pue::PageQuery = parse(&uri)?;
        }
        "advice" => {
            let _: super::pue::AdviceQuery = parse(&uri)?;
        }
        "powercap" => {
            let _: super::powercap::ComparisonQuery = parse(&uri)?;
        }
        "statement" => {
            let _: super::statements::StatementQuery = parse(&uri)?;
            let q: crate::service::jobs::list::ListQuery = parse(&uri)?;
            q.filter(&JobScope::All)?;
        }
        other => return Err(AppError::bad_request(format!("route: no route '{other}'"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_queries_are_refused_naming_the_parameter() {
        for (route, query, field) in [
            ("jobs", "offset=9223372036854775807", "offset"),
            ("jobs", "limit=0", "limit"),
            ("window", "from_min=1e300", "from_min"),
            ("hourly", "from=-262143-01-01T00:00:00Z", "from"),
            ("energy", "to=-262143-01-01", "to"),
            ("energy", "by=month&from=+262142-12-31", "from"),
            ("energy", "by=year", "by"),
            (
                "waste",
                "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
                "from",
            ),
            ("waste", "to=-262143-01-01T00:00:00Z", "to"),
        ] {
            let e = check(route, query).expect_err(query).to_string();
            assert!(e.starts_with(&format!("{field}:")), "{query}: {e}");
        }
        assert!(check("jobs", "sort=energy&order=desc").is_ok());
    }
}
