//! `heatgrid report`: the engine's energy report of a period (`GET /api/v1/report`), written
//! here as CSV or a printable HTML page by the same code the API uses, or shown as JSON.

use reqwest::Method;

use super::remote::{Failure, Remote};
use super::render::pretty;

/// `heatgrid report`: the engine's report of the period, as CSV, a printable page or JSON,
/// to standard output or `out`.
pub async fn report(
    remote: &Remote,
    (from, to): (Option<String>, Option<String>),
    format: &str,
    out: Option<std::path::PathBuf>,
) -> Result<String, Failure> {
    let mut query = Vec::new();
    for (k, v) in [("from", from), ("to", to)] {
        if let Some(v) = v {
            query.push(format!("{k}={}", v.replace('+', "%2B")));
        }
    }
    let path = format!("/api/v1/report?{}", query.join("&"));
    let v = super::remote::call_within(
        remote,
        Method::GET,
        &path,
        None,
        std::time::Duration::from_secs(180),
    )
    .await?;
    let text = match format {
        "json" => pretty(&v),
        _ => {
            let r: crate::report::Report = serde_json::from_value(v)
                .map_err(|e| Failure(2, format!("the engine's report: {e}")))?;
            if format == "html" {
                crate::report::render::html(&r)
            } else {
                crate::report::render::csv(&r)
            }
        }
    };
    match out {
        None => Ok(text),
        Some(path) => {
            std::fs::write(&path, text)
                .map_err(|e| Failure(2, format!("{}: {e}", path.display())))?;
            Ok(format!("report written to {}\n", path.display()))
        }
    }
}
