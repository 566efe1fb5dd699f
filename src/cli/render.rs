//! How the verbs print: fixed-decimal figures (`-` where there is none), right-aligned
//! tables without borders that fit 80 columns, sparklines, pretty JSON for `--json`.

use comfy_table::{presets, CellAlignment, Table};
use serde_json::Value;

/// The API's JSON as `--json` prints it.
pub(super) fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// A one-line sparkline of `values`.
pub(super) fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(*v), h.max(*v))
        });
    values
        .iter()
        .map(|v| {
            let x = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
            BARS[((x * 7.0).round() as usize).min(7)]
        })
        .collect()
}

pub(super) fn f(v: &Value, decimals: usize) -> String {
    v.as_f64()
        .map(|x| format!("{x:.decimals$}"))
        .unwrap_or_else(|| "-".into())
}

pub(super) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING).set_header(header.to_vec());
    for i in 1..header.len() {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}
