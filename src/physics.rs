//! District-heating arithmetic shared by the controllers and the storage encoder.
//!
//! Pure functions, no state. Figures from `domain.md` §3.1: Q\[kW\] = 1.163 × V\[m³/h\] × ΔT\[K\]
//! (water at ~50 °C: ρ·cp / 3600 ≈ 1.163 kJ/(m³·K) per hour).

/// kW per (m³/h · K) for water in the secondary range.
pub const KW_PER_M3H_K: f64 = 1.163;

/// Heat power in kW carried by `flow_m3h` at a temperature difference `delta_t_k`.
pub fn heat_kw(flow_m3h: f64, delta_t_k: f64) -> f64 {
    KW_PER_M3H_K * flow_m3h * delta_t_k
}

/// Flow in m³/h that carries `heat_kw` at `delta_t_k` (0 when ΔT ≤ 0).
pub fn flow_m3h(heat_kw: f64, delta_t_k: f64) -> f64 {
    if delta_t_k <= 0.0 {
        0.0
    } else {
        heat_kw / (KW_PER_M3H_K * delta_t_k)
    }
}

/// Station heat demand in kW: heat index × area × (T_in − T_out)/(T_in − T_design), never negative.
pub fn heat_demand_kw(
    heat_index_w_m2: f64,
    area_m2: f64,
    outdoor_c: f64,
    indoor_design_c: f64,
    outdoor_design_c: f64,
) -> f64 {
    let span = indoor_design_c - outdoor_design_c;
    if span <= 0.0 {
        return 0.0;
    }
    let load = ((indoor_design_c - outdoor_c) / span).max(0.0);
    heat_index_w_m2 * area_m2 * load / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_station_matches_domain_table() {
        // 100,000 m² at 45 W/m², −10 °C design: 4.5 MW, ≈ 258 m³/h at ΔT 15 K.
        let q = heat_demand_kw(45.0, 100_000.0, -10.0, 18.0, -10.0);
        assert!((q - 4500.0).abs() < 1e-9);
        let v = flow_m3h(q, 15.0);
        assert!((v - 257.95).abs() < 0.1, "{v}");
        assert!((heat_kw(v, 15.0) - q).abs() < 1e-9);
        // Half the load at +4 °C outdoor.
        assert!((heat_demand_kw(45.0, 100_000.0, 4.0, 18.0, -10.0) - 2250.0).abs() < 1e-9);
        // No demand above the indoor design temperature.
        assert_eq!(heat_demand_kw(45.0, 100_000.0, 25.0, 18.0, -10.0), 0.0);
    }
}
