//! Reading a register map file: the TOML as written (`RawMap`), checked into a
//! [`RegisterMap`] with every problem reported at once, each with its line in the file.
//!
//! Where it sits: `config/` calls [`RegisterMap::parse`] once per map file; the fuzz target
//! `register_map` feeds it arbitrary text.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::map::{
    Access, ByteOrder, DataType, Device, Register, RegisterMap, Table, WriteFunction, WRITE_BITS,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    device: Option<String>,
    address_base: Option<toml::Value>,
    #[serde(default)]
    write_function: WriteFunction,
    #[serde(default)]
    register: Vec<toml::Spanned<RawRegister>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegister {
    field: String,
    table: Table,
    address: u32,
    #[serde(rename = "type")]
    data_type: DataType,
    order: Option<String>,
    #[serde(default = "one")]
    scale: f64,
    #[serde(default)]
    offset: f64,
    #[serde(default = "read")]
    access: String,
}

fn one() -> f64 {
    1.0
}

fn read() -> String {
    "read".into()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Base {
    Zero,
    One,
    Modicon,
}

impl RegisterMap {
    /// Parses and validates a station's map file; `Err` lists every problem, each with its
    /// line.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        Self::parse_for(text, Device::Station)
    }

    /// Parses and validates the map file of a `device`; `Err` lists every problem, each with
    /// its line.
    pub fn parse_for(text: &str, device: Device) -> Result<Self, Vec<String>> {
        let raw: RawMap = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let line_of = |pos: usize| {
            text.as_bytes()[..pos.min(text.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1
        };
        let mut errors = Vec::new();
        let base = address_base(&raw, &mut errors);
        let mut registers = Vec::new();
        for spanned in &raw.register {
            let line = line_of(spanned.span().start);
            let r = spanned.get_ref();
            let mut err = |m: String| errors.push(format!("line {line}: {} {m}", r.field));
            if let Some(reg) = register(r, base, device, &mut err) {
                registers.push((line, reg));
            }
        }
        duplicates_and_overlaps(&registers, &mut errors);
        for &required in device.required() {
            if !raw
                .register
                .iter()
                .any(|r| r.get_ref().field == required && r.get_ref().access == "read")
            {
                errors.push(format!(
                    "{required} is required in telemetry (contract §1) but not mapped"
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(RegisterMap {
            device: raw.device.unwrap_or_else(|| "unnamed device".into()),
            registers: registers.into_iter().map(|(_, r)| r).collect(),
            write_function: raw.write_function,
        })
    }
}

fn address_base(raw: &RawMap, errors: &mut Vec<String>) -> Base {
    match &raw.address_base {
        None => {
            errors.push(
                "address_base is required: 0 (wire addresses), 1 (register numbers from 1) \
                 or \"modicon\" (0xxxx coil / 1xxxx discrete input / 3xxxx input / 4xxxx holding)"
                    .to_owned(),
            );
            Base::Zero
        }
        Some(toml::Value::Integer(0)) => Base::Zero,
        Some(toml::Value::Integer(1)) => Base::One,
        Some(toml::Value::String(s)) if s == "modicon" => Base::Modicon,
        Some(v) => {
            errors.push(format!("address_base = {v}: expected 0, 1 or \"modicon\""));
            Base::Zero
        }
    }
}

/// One `[[register]]`, checked; `None` if it cannot be placed at all (its problems are in
/// `err`).
fn register(
    r: &RawRegister,
    base: Base,
    device: Device,
    err: &mut impl FnMut(String),
) -> Option<Register> {
    let access = match r.access.as_str() {
        "read" => Access::Read,
        "read_write" | "read-write" | "write" => Access::ReadWrite,
        a => {
            err(format!(
                "access = {a:?}: expected \"read\" or \"read_write\""
            ));
            return None;
        }
    };
    check_field(r, access, device, err);
    let address = match (base, r.table) {
        (Base::Zero, _) => Some(r.address),
        (Base::One, _) => r.address.checked_sub(1),
        (Base::Modicon, Table::Input) => (30_001..=39_999)
            .contains(&r.address)
            .then(|| r.address - 30_001),
        (Base::Modicon, Table::Holding) => (40_001..=49_999)
            .contains(&r.address)
            .then(|| r.address - 40_001),
        (Base::Modicon, Table::Coil) => (1..=9_999).contains(&r.address).then(|| r.address - 1),
        (Base::Modicon, Table::DiscreteInput) => (10_001..=19_999)
            .contains(&r.address)
            .then(|| r.address - 10_001),
    };
    let Some(address) = address.and_then(|a| u16::try_from(a).ok()) else {
        err(format!(
            "address {} is not valid with address_base {} for the {:?} table",
            r.address, base, r.table
        ));
        return None;
    };
    if address as u32 + r.data_type.words() as u32 > 65_536 {
        err(format!("address {} runs past the last register", r.address));
    }
    let order = match &r.order {
        None => ByteOrder::default(),
        Some(o) => ByteOrder::parse(o).unwrap_or_else(|| {
            err(format!(
                "order = {o:?}: expected ABCD (big), CDAB (little), BADC or DCBA"
            ));
            ByteOrder::default()
        }),
    };
    if !r.scale.is_finite() || r.scale == 0.0 {
        err(format!("scale = {} must be finite and non-zero", r.scale));
    }
    if !r.offset.is_finite() {
        err(format!("offset = {} must be finite", r.offset));
    }
    Some(Register {
        field: r.field.clone(),
        table: r.table,
        address,
        data_type: r.data_type,
        order,
        scale: r.scale,
        offset: r.offset,
        access,
    })
}

/// What a field may be where it is: contract fields in registers; free status bits (stored
/// as 0/1, e.g. `pump_running`, `alarm_pump_fault`) and the on/off command values in coils
/// and discrete inputs; writes only to holding registers and coils.
fn check_field(r: &RawRegister, access: Access, device: Device, err: &mut impl FnMut(String)) {
    let (reads, writes) = (device.read_fields(), device.write_fields());
    let bits = r.table.is_bits();
    if bits != (r.data_type == DataType::Bool) {
        err(if bits {
            format!(
                "is in the {:?} table, so its type must be \"bool\"",
                r.table
            )
        } else {
            "has type \"bool\", which only coils and discrete inputs hold".to_owned()
        });
    }
    let field = r.field.as_str();
    match access {
        Access::ReadWrite if !matches!(r.table, Table::Holding | Table::Coil) => {
            err("is written, so it must be in the holding or coil table".into())
        }
        Access::ReadWrite if bits && (device == Device::Plant || !WRITE_BITS.contains(&field)) => {
            err(format!(
                "is not an on/off command value a coil can carry (known: {})",
                WRITE_BITS.join(", ")
            ))
        }
        Access::ReadWrite if !writes.contains(&field) => err(format!(
            "is not a field heatgrid can write (known: {})",
            writes.join(", ")
        )),
        Access::Read if bits && (reads.contains(&field) || !status_name(field)) => err(
            "is not a status bit name: a bit is stored under its own name of 1–64 \
                 lowercase letters, digits and _ (e.g. pump_running), not a measured field"
                .into(),
        ),
        Access::Read if !bits && !reads.contains(&field) => err(format!(
            "is not a field heatgrid can read (known: {})",
            reads.join(", ")
        )),
        _ => {}
    }
}

/// A status bit's own name: stored as a field of the station's telemetry point.
fn status_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !matches!(s, "ts" | "seq" | "station")
}

/// A field mapped twice (per direction), or two registers sharing a word.
fn duplicates_and_overlaps(registers: &[(usize, Register)], errors: &mut Vec<String>) {
    let mut seen = BTreeMap::new();
    for (line, r) in registers {
        if let Some(first) = seen.insert((r.field.clone(), r.access == Access::Read), *line) {
            errors.push(format!(
                "line {line}: {} is mapped twice (first on line {first})",
                r.field
            ));
        }
    }
    for (i, (line, a)) in registers.iter().enumerate() {
        for (line_b, b) in &registers[..i] {
            if a.table == b.table && (a.address as u32) < b.end() && (b.address as u32) < a.end() {
                errors.push(format!(
                    "line {line}: {} overlaps {} (line {line_b}) in the {:?} table",
                    a.field, b.field, a.table
                ));
            }
        }
    }
}

impl fmt::Display for Base {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Base::Zero => "0",
            Base::One => "1",
            Base::Modicon => "modicon",
        })
    }
}
