//! `heatgrid top`: a live full-screen view of every station and the active alarms.
//!
//! A client of the engine's API like the other operator verbs (`cli`): it polls
//! `/api/v1/status`, `/stations` and `/alarms` every `--interval-ms` and redraws with ratatui.
//! Keys: `s` cycles the sort (id, error, age, heat), `f` shows only stations that need
//! attention (stale or not in auto), `q` or Esc quits.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use serde_json::Value;

use super::remote::Remote;

const SORTS: [&str; 4] = ["id", "error", "age", "heat"];

struct View {
    status: Value,
    stations: Vec<Value>,
    alarms: Vec<Value>,
    error: Option<String>,
}

async fn fetch(http: &reqwest::Client, remote: &Remote, path: &str) -> Result<Value, String> {
    let mut req = http.get(format!("{}{path}", remote.api.trim_end_matches('/')));
    if let Some(t) = &remote.token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("engine unreachable: {e}"))?;
    let ok = resp.status().is_success();
    let v: Value = resp.json().await.map_err(|e| e.to_string())?;
    if ok {
        Ok(v)
    } else {
        Err(v["error"].as_str().unwrap_or("error").to_owned())
    }
}

async fn refresh(http: &reqwest::Client, remote: &Remote, view: &mut View) {
    let r = async {
        let status = fetch(http, remote, "/api/v1/status").await?;
        let stations = fetch(http, remote, "/api/v1/stations").await?;
        let alarms = fetch(http, remote, "/api/v1/alarms").await?;
        Ok::<_, String>((status, stations, alarms))
    }
    .await;
    match r {
        Ok((status, stations, alarms)) => {
            view.status = status;
            view.stations = stations["stations"].as_array().cloned().unwrap_or_default();
            view.alarms = alarms["active"].as_array().cloned().unwrap_or_default();
            view.error = None;
        }
        Err(e) => view.error = Some(e),
    }
}

fn num(v: &Value, d: usize) -> String {
    v.as_f64()
        .map(|x| format!("{x:.d$}"))
        .unwrap_or_else(|| "-".into())
}

fn error_k(r: &Value) -> f64 {
    match (r["supply_temp_c"].as_f64(), r["supply_setpoint_c"].as_f64()) {
        (Some(a), Some(b)) => (a - b).abs(),
        _ => f64::INFINITY,
    }
}

/// One frame: the fleet's header, the station table, the active alarms.
fn draw(f: &mut ratatui::Frame, view: &View, sort: usize, attention: bool) {
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(5),
        Constraint::Length(view.alarms.len().clamp(1, 8) as u16 + 2),
    ])
    .areas(f.area());
    f.render_widget(
        Paragraph::new(header(view, sort, attention))
            .block(Block::default().borders(Borders::BOTTOM)),
        head,
    );
    f.render_widget(station_table(view, sort, attention), body);
    f.render_widget(
        Paragraph::new(alarm_lines(view))
            .block(Block::default().borders(Borders::TOP).title("alarms")),
        foot,
    );
}

fn header(view: &View, sort: usize, attention: bool) -> String {
    let s = &view.status;
    format!(
        "heatgrid top  {} stations: {} online, {} stale, {} manual, {} alarms{}\n\
         readings {}, rejected {}, backlog {} | sort: {} (s) filter: {} (f) quit (q)",
        s["stations"]["total"],
        s["stations"]["online"],
        s["stations"]["stale"],
        s["stations"]["manual"],
        view.alarms.len(),
        view.error
            .as_ref()
            .map(|e| format!("  ERROR: {e}"))
            .unwrap_or_default(),
        s["ingest"]["readings_accepted"],
        s["ingest"]["readings_rejected"],
        s["storage"]["spool_points"],
        SORTS[sort],
        if attention { "attention" } else { "all" },
    )
}

fn station_table(view: &View, sort: usize, attention: bool) -> Table<'_> {
    let mut rows: Vec<&Value> = view
        .stations
        .iter()
        .filter(|r| !attention || r["stale"] == true || r["mode"] != "auto")
        .collect();
    let key = |r: &Value, k: &str| r[k].as_f64().unwrap_or(f64::INFINITY);
    match SORTS[sort] {
        "error" => rows.sort_by(|a, b| error_k(b).total_cmp(&error_k(a))),
        "age" => rows.sort_by(|a, b| key(b, "age_s").total_cmp(&key(a, "age_s"))),
        "heat" => rows.sort_by(|a, b| key(b, "heat_kw").total_cmp(&key(a, "heat_kw"))),
        _ => {}
    }
    Table::new(
        rows.iter().map(|r| {
            Row::new(vec![
                r["id"].as_str().unwrap_or("?").to_owned(),
                num(&r["supply_temp_c"], 1),
                num(&r["supply_setpoint_c"], 1),
                num(&r["return_temp_c"], 1),
                num(&r["flow_m3h"], 0),
                num(&r["valve_pct"], 1),
                num(&r["pump_pct"], 1),
                num(&r["heat_kw"], 0),
                if r["stale"] == true {
                    "STALE".into()
                } else {
                    r["mode"].as_str().unwrap_or("-").to_owned()
                },
            ])
        }),
        [
            Constraint::Length(10),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Length(7),
        ],
    )
    .header(
        Row::new(vec![
            "station", "supply", "setpt", "return", "flow", "valve", "pump", "heat kW", "state",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD)),
    )
}

fn alarm_lines(view: &View) -> Vec<Line<'_>> {
    if view.alarms.is_empty() {
        vec![Line::from("no active alarms")]
    } else {
        view.alarms
            .iter()
            .take(8)
            .map(|a| {
                Line::from(format!(
                    "{:>4} {:<8} {:<20} {:<8} {}{}",
                    a["id"],
                    a["station"].as_str().unwrap_or("?"),
                    a["kind"].as_str().unwrap_or("?"),
                    a["severity"].as_str().unwrap_or("?"),
                    a["message"].as_str().unwrap_or(""),
                    if a["acked_by"].is_null() {
                        ""
                    } else {
                        " (acked)"
                    },
                ))
            })
            .collect()
    }
}

/// Runs the live view until the user quits.
pub fn run(remote: Remote, interval: Duration) -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("heatgrid: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let mut view = View {
        status: Value::Null,
        stations: Vec::new(),
        alarms: Vec::new(),
        error: None,
    };
    rt.block_on(refresh(&http, &remote, &mut view));
    if let Some(e) = &view.error {
        eprintln!("heatgrid: {e}");
        return std::process::ExitCode::from(3);
    }
    let mut terminal = ratatui::init();
    let (mut sort, mut attention) = (0usize, false);
    let mut last = Instant::now();
    let result = loop {
        let drawn = terminal.draw(|f| draw(f, &view, sort, attention));
        if let Err(e) = drawn {
            break Err(e.to_string());
        }
        let wait = interval.saturating_sub(last.elapsed());
        match event::poll(wait) {
            Ok(true) => {
                if let Ok(Event::Key(k)) = event::read() {
                    if k.kind == KeyEventKind::Press {
                        match k.code {
                            KeyCode::Char('q') | KeyCode::Esc => break Ok(()),
                            KeyCode::Char('s') => sort = (sort + 1) % SORTS.len(),
                            KeyCode::Char('f') => attention = !attention,
                            _ => {}
                        }
                    }
                }
            }
            Ok(false) => {}
            Err(e) => break Err(e.to_string()),
        }
        if last.elapsed() >= interval {
            rt.block_on(refresh(&http, &remote, &mut view));
            last = Instant::now();
        }
    };
    ratatui::restore();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heatgrid: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
