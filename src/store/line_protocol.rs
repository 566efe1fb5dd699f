//! InfluxDB line protocol encoding (contract §4): readings and commands → lines.
//!
//! Pure and allocation-light; called by ingest and control before a line is queued for the
//! store. Field types are fixed per field (floats everywhere, `seq` an integer) so one point
//! can never make InfluxDB reject a batch for a type conflict. Timestamps are milliseconds;
//! writers send `precision=ms`.

use std::collections::BTreeMap;

use super::record::{AlarmPoint, CoordinatorPoint, FindingPoint, Record};
use crate::model::{Applied, Command, Reading, StationId};

/// Builds one line: measurement, tags, fields, timestamp, with the protocol's escaping.
#[derive(Debug)]
pub struct LineBuilder {
    buf: String,
    fields: usize,
}

impl LineBuilder {
    pub fn new(measurement: &str) -> Self {
        // A telemetry line is ~300 bytes; one allocation, no regrowth.
        let mut buf = String::with_capacity(384);
        escape(&mut buf, measurement, &[',', ' ']);
        Self { buf, fields: 0 }
    }

    /// Tags must all come before the first field.
    pub fn tag(mut self, key: &str, value: &str) -> Self {
        debug_assert_eq!(self.fields, 0, "tags before fields");
        if value.is_empty() {
            return self; // empty tag values are invalid line protocol
        }
        self.buf.push(',');
        escape(&mut self.buf, key, &[',', '=', ' ']);
        self.buf.push('=');
        escape(&mut self.buf, value, &[',', '=', ' ']);
        self
    }

    fn key(&mut self, key: &str) {
        self.buf.push(if self.fields == 0 { ' ' } else { ',' });
        escape(&mut self.buf, key, &[',', '=', ' ']);
        self.buf.push('=');
        self.fields += 1;
    }

    /// A float field; non-finite values are skipped (line protocol cannot carry them).
    pub fn float(mut self, key: &str, value: f64) -> Self {
        if value.is_finite() {
            self.key(key);
            push_float(&mut self.buf, value);
        }
        self
    }

    pub fn float_opt(self, key: &str, value: Option<f64>) -> Self {
        match value {
            Some(v) => self.float(key, v),
            None => self,
        }
    }

    pub fn int(mut self, key: &str, value: i64) -> Self {
        self.key(key);
        self.buf.push_str(itoa::Buffer::new().format(value));
        self.buf.push('i');
        self
    }

    pub fn boolean(mut self, key: &str, value: bool) -> Self {
        self.key(key);
        self.buf.push_str(if value { "true" } else { "false" });
        self
    }

    pub fn string(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        self.buf.push('"');
        escape(&mut self.buf, value, &['"', '\\']);
        self.buf.push('"');
        self
    }

    /// Finishes the line with a millisecond timestamp; `None` if it has no field.
    pub fn finish(mut self, ts_ms: i64) -> Option<String> {
        if self.fields == 0 {
            return None;
        }
        self.buf.push(' ');
        self.buf.push_str(itoa::Buffer::new().format(ts_ms));
        Some(self.buf)
    }
}

/// Writes a finite float so that it reads back as exactly `v`, always with a decimal point
/// (an unambiguous float for every reader).
///
/// Telemetry values are sensor readings with a few decimals: when `v` is exactly the double
/// nearest to a number with at most three decimals, it is written from that integer (two
/// integer formats, no float-to-decimal search). Anything else goes through ryu's shortest
/// round-trip form. Profiled: float formatting was 70 % of a telemetry line's cost with
/// `{:?}` and half of it with ryu alone.
fn push_float(buf: &mut String, v: f64) {
    let milli = (v * 1000.0).round();
    if milli.abs() < 1e15 && milli / 1000.0 == v {
        let m = milli as i64;
        if m < 0 {
            buf.push('-');
        }
        let m = m.unsigned_abs();
        buf.push_str(itoa::Buffer::new().format(m / 1000));
        buf.push('.');
        let frac = m % 1000;
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(frac + 1000); // "1ddd": keeps the leading zeros
        let trimmed = digits[1..].trim_end_matches('0');
        buf.push_str(if trimmed.is_empty() { "0" } else { trimmed });
    } else {
        buf.push_str(ryu::Buffer::new().format_finite(v));
    }
}

fn escape(buf: &mut String, s: &str, special: &[char]) {
    // Names and ids rarely need escaping: copy them whole when they are plain identifiers.
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'/'))
    {
        buf.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\n' => buf.push_str("\\n"),
            c if special.contains(&c) => {
                buf.push('\\');
                buf.push(c);
            }
            c => buf.push(c),
        }
    }
}

fn with_tags(m: &str, station: &StationId, tags: &BTreeMap<String, String>) -> LineBuilder {
    tags.iter().fold(
        LineBuilder::new(m).tag("station", station.as_str()),
        |b, (k, v)| b.tag(k, v),
    )
}

/// `telemetry` line: every numeric field plus derived `heat_kw`, `delta_t_k`, `heat_w_m2`.
/// `config_area_m2` is used when the reading has no area. Derived fields are rounded to
/// 0.001 (1 W, 1 mK, 1 mW/m²): finer digits are float noise, not information.
pub fn telemetry(
    r: &Reading,
    tags: &BTreeMap<String, String>,
    config_area_m2: Option<f64>,
) -> String {
    let area = r.heated_area_m2.or(config_area_m2);
    let milli = |x: f64| (x * 1000.0).round() / 1000.0;
    let heat_kw = r.heat_kw();
    let mut b = with_tags("telemetry", &r.station, tags)
        .float("supply_temp_c", r.supply_temp_c)
        .float("return_temp_c", r.return_temp_c)
        .float("flow_m3h", r.flow_m3h)
        .float_opt("heated_area_m2", area)
        .float_opt("outdoor_temp_c", r.outdoor_temp_c)
        .float_opt("indoor_temp_c", r.indoor_temp_c)
        .float_opt("valve_pct", r.valve_pct)
        .float_opt("pump_pct", r.pump_pct)
        .float("heat_kw", milli(heat_kw))
        .float("delta_t_k", milli(r.delta_t_k()))
        .float_opt(
            "heat_w_m2",
            area.filter(|a| *a > 0.0)
                .map(|a| milli(heat_kw * 1000.0 / a)),
        );
    for (k, v) in &r.extra {
        b = b.float(k, *v);
    }
    // supply_temp_c is always present, so the line always has a field.
    b.finish(r.ts_ms).unwrap_or_default()
}

/// `command` line, stamped with the time it was sent.
pub fn command(station: &StationId, tags: &BTreeMap<String, String>, c: &Command) -> String {
    with_tags("command", station, tags)
        .tag("mode", c.mode.as_str())
        .float("supply_setpoint_c", c.supply_setpoint_c)
        .float("valve_pct", c.valve_pct)
        .float("pump_pct", c.pump_pct)
        .float("flow_setpoint_m3h", c.flow_setpoint_m3h)
        .int("seq", i64::try_from(c.seq).unwrap_or(i64::MAX))
        .finish(c.ts)
        .unwrap_or_default()
}

/// `operator_action` line: who did what, with "before -> after" as its detail.
pub fn operator_action(a: &Applied, user: &str, ts_ms: i64) -> Option<String> {
    LineBuilder::new("operator_action")
        .tag("station", &a.station)
        .tag("action", &a.action)
        .tag("user", user)
        .string("detail", &format!("{} -> {}", a.before, a.after))
        .finish(ts_ms)
}

/// `alarm` line: one raise or clear.
pub fn alarm(a: &AlarmPoint) -> Option<String> {
    LineBuilder::new("alarm")
        .tag("station", &a.station)
        .tag("kind", a.kind)
        .tag("severity", a.severity)
        .boolean("active", a.active)
        .string("message", &a.message)
        .float("value", a.value)
        .int("id", a.id as i64)
        .finish(a.ts_ms)
}

/// `coordinator` line: a station's district offset after an update, its load ratio and the
/// district's target ratio.
pub fn coordinator(c: &CoordinatorPoint<'_>) -> Option<String> {
    with_tags("coordinator", c.station, c.tags)
        .float("offset_k", c.offset_k)
        .float("load_ratio", c.load_ratio)
        .float_opt("target_ratio", c.target_ratio)
        .finish(c.ts_ms)
}

/// `finding` line: a suspected fault named or cleared, with its evidence.
pub fn finding(f: &FindingPoint) -> Option<String> {
    LineBuilder::new("finding")
        .tag("station", &f.station)
        .tag("kind", f.kind)
        .boolean("active", f.active)
        .float("confidence", f.confidence)
        .string("evidence", &f.evidence)
        .int("since_ms", f.since_ms)
        .finish(f.ts_ms)
}

/// `plant` line: an accepted plant reading, its units' heat as `unit_<name>_kw` fields.
pub fn plant(id: &str, r: &crate::model::PlantReading) -> Option<String> {
    let mut b = LineBuilder::new("plant")
        .tag("plant", id)
        .float("supply_temp_c", r.supply_temp_c)
        .float("return_temp_c", r.return_temp_c)
        .float("flow_m3h", r.flow_m3h)
        .float("heat_kw", r.heat_kw)
        .float("diff_pressure_kpa", r.diff_pressure_kpa)
        .float("pump_pct", r.pump_pct);
    for (name, kw) in &r.units {
        b = b.float(&format!("unit_{name}_kw"), *kw);
    }
    b.finish(r.ts_ms)
}

/// `network_point` line: a pressure point's differential pressure.
pub fn network_point(point: &str, r: &crate::model::PointReading) -> Option<String> {
    LineBuilder::new("network_point")
        .tag("point", point)
        .float("diff_pressure_kpa", r.diff_pressure_kpa)
        .finish(r.ts_ms)
}

/// `plant_command` line: what the plant was told and why.
pub fn plant_command(c: &super::record::PlantCommandPoint<'_>) -> Option<String> {
    LineBuilder::new("plant_command")
        .tag("plant", c.plant)
        .tag("pressure_point", c.pressure_point)
        .int("seq", c.seq as i64)
        .int("epoch", c.epoch as i64)
        .float("supply_setpoint_c", c.supply_setpoint_c)
        .float("diff_pressure_setpoint_kpa", c.diff_pressure_setpoint_kpa)
        .float("curve_c", c.curve_c)
        .float("trim_k", c.trim_k)
        .float_opt("critical_demand_pct", c.critical.map(|x| x.1))
        .string("critical", c.critical.map_or("", |x| x.0))
        .string("basis", c.basis)
        .int("fresh_stations", c.fresh_stations as i64)
        .finish(c.ts_ms)
}

/// The line of any record (`None`: nothing to store, e.g. no field).
pub fn encode(r: &Record<'_>) -> Option<String> {
    match r {
        Record::Reading {
            reading,
            tags,
            area_m2,
        } => Some(telemetry(reading, tags, *area_m2)),
        Record::Command {
            station,
            tags,
            command,
        } => Some(self::command(station, tags, command)),
        Record::Alarm(a) => alarm(a),
        Record::OperatorAction {
            applied,
            user,
            ts_ms,
        } => operator_action(applied, user, *ts_ms),
        Record::Coordinator(c) => coordinator(c),
        Record::Finding(f) => finding(f),
        Record::Plant { plant: id, reading } => plant(id, reading),
        Record::NetworkPoint { point, reading } => network_point(point, reading),
        Record::PlantCommand(c) => plant_command(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Mode;

    #[test]
    fn escaping_follows_the_protocol() {
        let line = LineBuilder::new("my meas,x")
            .tag("k ey", "v=a,l")
            .float("f", 1.0)
            .int("n", -3)
            .boolean("b", true)
            .string("s", "say \"hi\" \\ now")
            .float("nan", f64::NAN)
            .finish(5)
            .unwrap();
        assert_eq!(
            line,
            r#"my\ meas\,x,k\ ey=v\=a\,l f=1.0,n=-3i,b=true,s="say \"hi\" \\ now" 5"#
        );
        assert!(LineBuilder::new("m").finish(1).is_none());
    }

    #[test]
    fn floats_read_back_exactly_with_a_decimal_point() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "0.0"),
            (52.4, "52.4"),
            (-6.5, "-6.5"),
            (-0.25, "-0.25"),
            (100000.0, "100000.0"),
            (0.001, "0.001"),
            (12.599999999999994, "12.599999999999994"),
            (1e20, "1e20"),
            (1.5e-7, "1.5e-7"),
        ];
        for (v, text) in cases {
            let mut s = String::new();
            push_float(&mut s, v);
            assert_eq!(s, text, "{v:?}");
        }
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..100_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Both short decimals (the fast path) and arbitrary doubles (ryu).
            let v = if rng % 2 == 0 {
                (rng % 2_000_000) as f64 / 1000.0 - 1000.0
            } else {
                f64::from_bits(rng >> 2)
            };
            if !v.is_finite() {
                continue;
            }
            let mut s = String::new();
            push_float(&mut s, v);
            assert!(s.contains('.') || s.contains('e'), "{s}");
            assert_eq!(s.parse::<f64>().unwrap(), v, "{s}");
        }
    }

    #[test]
    fn a_finding_line_carries_its_kind_and_quoted_evidence() {
        let f = FindingPoint {
            station: "st-1".into(),
            kind: "fouling",
            active: true,
            confidence: 0.75,
            evidence: "UA fell 20 % (\"clean\" 150 → 120 kW/K)".into(),
            since_ms: 1_000,
            ts_ms: 2_000,
        };
        assert_eq!(
            finding(&f).unwrap(),
            "finding,station=st-1,kind=fouling active=true,confidence=0.75,\
             evidence=\"UA fell 20 % (\\\"clean\\\" 150 → 120 kW/K)\",since_ms=1000i 2000"
        );
    }

    #[test]
    fn telemetry_and_command_lines() {
        let st = StationId::new("st-1").unwrap();
        let r = Reading {
            station: st.clone(),
            ts_ms: 1_764_262_800_000,
            supply_temp_c: 55.0,
            return_temp_c: 45.0,
            flow_m3h: 100.0,
            heated_area_m2: None,
            outdoor_temp_c: Some(-5.0),
            indoor_temp_c: None,
            valve_pct: None,
            pump_pct: None,
            heat_kw: None,
            extra: vec![("dp_kpa".into(), 120.0)],
        };
        let tags = BTreeMap::from([("district".to_owned(), "north".to_owned())]);
        let line = telemetry(&r, &tags, Some(50_000.0));
        assert_eq!(
            line,
            "telemetry,station=st-1,district=north supply_temp_c=55.0,return_temp_c=45.0,\
             flow_m3h=100.0,heated_area_m2=50000.0,outdoor_temp_c=-5.0,heat_kw=1163.0,\
             delta_t_k=10.0,heat_w_m2=23.26,dp_kpa=120.0 1764262800000"
        );
        let c = Command {
            seq: 42,
            ts: 1_764_262_805_000,
            mode: Mode::Auto,
            supply_setpoint_c: 53.0,
            valve_pct: 43.5,
            pump_pct: 76.0,
            flow_setpoint_m3h: 236.0,
            valid_for_s: 300,
            epoch: None,
        };
        assert_eq!(
            command(&st, &BTreeMap::new(), &c),
            "command,station=st-1,mode=auto supply_setpoint_c=53.0,valve_pct=43.5,pump_pct=76.0,\
             flow_setpoint_m3h=236.0,seq=42i 1764262805000"
        );
    }
}
