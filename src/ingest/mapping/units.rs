//! Units a foreign payload may use, and their conversion to and from the contract's units
//! (°C, m³/h, kW, GJ, %, m²). Each unit belongs to one quantity; a mapping may give a field
//! only a unit of the field's own quantity (`config/mapping.rs` checks it).

/// What a contract field measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    Temperature,
    Flow,
    Power,
    Energy,
    Percent,
    Area,
    /// Counters and words (`seq`, `mode`, `valid_for_s`, `epoch`): carried as they are.
    Plain,
}

impl Quantity {
    /// The quantity of a contract reading or command field.
    pub fn of(field: &str) -> Quantity {
        match field {
            f if f.ends_with("_temp_c") || f == "supply_setpoint_c" => Quantity::Temperature,
            f if f.ends_with("_m3h") => Quantity::Flow,
            "heat_kw" => Quantity::Power,
            "heat_energy_gj" => Quantity::Energy,
            "valve_pct" | "pump_pct" => Quantity::Percent,
            "heated_area_m2" => Quantity::Area,
            _ => Quantity::Plain,
        }
    }
}

/// A unit: `contract = value × factor + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    pub quantity: Quantity,
    factor: f64,
    offset: f64,
}

/// Every unit name accepted, its quantity, factor and offset to the contract's unit.
const UNITS: &[(&str, Quantity, f64, f64)] = &[
    ("°C", Quantity::Temperature, 1.0, 0.0),
    ("C", Quantity::Temperature, 1.0, 0.0),
    ("K", Quantity::Temperature, 1.0, -273.15),
    ("m3/h", Quantity::Flow, 1.0, 0.0),
    ("m³/h", Quantity::Flow, 1.0, 0.0),
    ("l/h", Quantity::Flow, 0.001, 0.0),
    ("l/s", Quantity::Flow, 3.6, 0.0),
    ("kW", Quantity::Power, 1.0, 0.0),
    ("W", Quantity::Power, 0.001, 0.0),
    ("MW", Quantity::Power, 1000.0, 0.0),
    ("GJ", Quantity::Energy, 1.0, 0.0),
    ("MWh", Quantity::Energy, 3.6, 0.0),
    ("kWh", Quantity::Energy, 0.0036, 0.0),
    ("%", Quantity::Percent, 1.0, 0.0),
    ("fraction", Quantity::Percent, 100.0, 0.0),
    ("m2", Quantity::Area, 1.0, 0.0),
    ("m²", Quantity::Area, 1.0, 0.0),
];

impl Unit {
    /// The contract's own unit for `field` (no conversion).
    pub fn contract(field: &str) -> Unit {
        Unit {
            quantity: Quantity::of(field),
            factor: 1.0,
            offset: 0.0,
        }
    }

    /// A unit by name for `field`. `Err` names the units the field's quantity accepts.
    pub fn parse(name: &str, field: &str) -> Result<Unit, String> {
        let quantity = Quantity::of(field);
        let accepted: Vec<&str> = UNITS
            .iter()
            .filter(|u| u.1 == quantity)
            .map(|u| u.0)
            .collect();
        match UNITS.iter().find(|u| u.0 == name) {
            Some(&(_, q, factor, offset)) if q == quantity => Ok(Unit {
                quantity,
                factor,
                offset,
            }),
            _ if accepted.is_empty() => Err(format!("{field} takes no unit")),
            _ => Err(format!(
                "{name:?} is not a unit of {field} (one of: {})",
                accepted.join(", ")
            )),
        }
    }

    /// A value in this unit, in the contract's unit.
    pub fn to_contract(&self, v: f64) -> f64 {
        v * self.factor + self.offset
    }

    /// A value in the contract's unit, in this unit.
    pub fn from_contract(&self, v: f64) -> f64 {
        (v - self.offset) / self.factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_match_their_definitions_and_invert() {
        let u = |n, f| Unit::parse(n, f).unwrap();
        assert!((u("K", "supply_temp_c").to_contract(334.35) - 61.2).abs() < 1e-9);
        assert_eq!(u("l/h", "flow_m3h").to_contract(2_400.0), 2.4);
        assert!((u("l/s", "flow_m3h").to_contract(1.0) - 3.6).abs() < 1e-12);
        assert_eq!(u("W", "heat_kw").to_contract(125_000.0), 125.0);
        assert!((u("MWh", "heat_energy_gj").to_contract(10.0) - 36.0).abs() < 1e-9);
        assert!((u("kWh", "heat_energy_gj").to_contract(1000.0) - 3.6).abs() < 1e-9);
        assert_eq!(u("fraction", "valve_pct").to_contract(0.42), 42.0);
        for (name, field, v) in [
            ("K", "supply_setpoint_c", 58.3),
            ("l/h", "flow_setpoint_m3h", 12.5),
            ("fraction", "pump_pct", 61.0),
        ] {
            let unit = u(name, field);
            assert!((unit.to_contract(unit.from_contract(v)) - v).abs() < 1e-9);
        }
    }

    #[test]
    fn a_unit_of_another_quantity_is_refused_with_the_accepted_ones() {
        let e = Unit::parse("kW", "flow_m3h").unwrap_err();
        assert!(e.contains("m3/h") && e.contains("l/h"), "{e}");
        assert!(Unit::parse("degF", "supply_temp_c").is_err());
        assert_eq!(Unit::parse("s", "seq").unwrap_err(), "seq takes no unit");
    }
}
