//! Register maps: which contract field lives in which Modbus register, as data.
//!
//! A map is a TOML file a user writes from the PLC's manual (see `config/modbus/`). It is read
//! once, at config time, into a [`RegisterMap`]: validated with every error reported at once,
//! each with its line in the file, then compiled into the read requests the poller sends
//! ([`RegisterMap::read_plan`]) and the write requests that carry a command
//! ([`RegisterMap::write_plan`]). Encoding and decoding of one value (type, byte order, scale,
//! offset) live here too, so the poller only moves words.
//!
//! Addresses: the file says which numbering it uses (`address_base`): `0` is the address on the
//! wire (the PDU address), `1` is the 1-based register number most manuals print, and
//! `"modicon"` is the 5-digit 3xxxx (input) / 4xxxx (holding) numbering. Everything is
//! converted to wire addresses here; nothing else in the engine sees a manual number.

use std::fmt;

use serde::Deserialize;

/// Fields a map may read (contract §1).
pub const READ_FIELDS: &[&str] = &[
    "supply_temp_c",
    "return_temp_c",
    "flow_m3h",
    "heated_area_m2",
    "outdoor_temp_c",
    "indoor_temp_c",
    "primary_supply_temp_c",
    "primary_return_temp_c",
    "primary_flow_m3h",
    "valve_pct",
    "pump_pct",
    "heat_kw",
    "heat_energy_gj",
];

/// Command fields a map may write (contract §2.2), and two derived on/off values a coil (or a
/// holding register) may carry: `pump_enable` (1 when the command's `pump_pct` > 0) and
/// `manual_mode` (1 when its `mode` is manual).
pub const WRITE_FIELDS: &[&str] = &[
    "supply_setpoint_c",
    "valve_pct",
    "pump_pct",
    "flow_setpoint_m3h",
    "mode",
    "valid_for_s",
    "seq",
    "epoch",
    "pump_enable",
    "manual_mode",
];

/// The command fields that are on/off values, the only ones a coil may carry.
pub const WRITE_BITS: &[&str] = &["pump_enable", "manual_mode"];

/// Fields a heat plant's map may read (contract §7's plant telemetry, the outdoor
/// temperature, and the (epoch, seq) of the command the PLC applied).
pub const PLANT_READ_FIELDS: &[&str] = &[
    "supply_temp_c",
    "return_temp_c",
    "flow_m3h",
    "heat_kw",
    "diff_pressure_kpa",
    "pump_pct",
    "outdoor_temp_c",
    "applied_seq",
    "applied_epoch",
];

/// Command fields a heat plant's map may write (contract §7). `pressure_point` is a number on
/// the wire: 0 the plant's outlet, k the k-th of the plant's `pressure_points`.
pub const PLANT_WRITE_FIELDS: &[&str] = &[
    "supply_setpoint_c",
    "diff_pressure_setpoint_kpa",
    "pressure_point",
    "valid_for_s",
    "seq",
    "epoch",
];

/// What a map describes: a station's PLC or the heat plant's. Each has its own fields and the
/// ones it must map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Station,
    Plant,
}

impl Device {
    pub(super) fn read_fields(self) -> &'static [&'static str] {
        match self {
            Device::Station => READ_FIELDS,
            Device::Plant => PLANT_READ_FIELDS,
        }
    }

    pub(super) fn write_fields(self) -> &'static [&'static str] {
        match self {
            Device::Station => WRITE_FIELDS,
            Device::Plant => PLANT_WRITE_FIELDS,
        }
    }

    /// Telemetry fields without which a reading is refused.
    pub(super) fn required(self) -> &'static [&'static str] {
        match self {
            Device::Station => &["supply_temp_c", "return_temp_c", "flow_m3h"],
            Device::Plant => &[
                "supply_temp_c",
                "return_temp_c",
                "flow_m3h",
                "heat_kw",
                "diff_pressure_kpa",
                "pump_pct",
            ],
        }
    }
}

/// The Modbus table of a register. Coils and discrete inputs hold bits, addressed one bit
/// per address; input and holding registers hold 16-bit words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Input,
    Holding,
    Coil,
    DiscreteInput,
}

impl Table {
    /// A bit table (coils, discrete inputs): one `bool` per address.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::DiscreteInput)
    }

    /// The most addresses one read request may cover (Modbus: 125 words, 2,000 bits).
    fn request_limit(self, max_registers: u16) -> u32 {
        if self.is_bits() {
            2000
        } else {
            max_registers as u32
        }
    }
}

/// The register's data type on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    /// One bit of a coil or discrete input: 0 or 1.
    Bool,
    U16,
    I16,
    U32,
    I32,
    F32,
}

impl DataType {
    /// Registers the type occupies.
    pub fn words(self) -> u16 {
        match self {
            DataType::Bool | DataType::U16 | DataType::I16 => 1,
            _ => 2,
        }
    }

    /// The integer range a scaled value must fit (f32: finite).
    fn range(self) -> (f64, f64) {
        match self {
            DataType::Bool => (0.0, 1.0),
            DataType::U16 => (0.0, u16::MAX as f64),
            DataType::I16 => (i16::MIN as f64, i16::MAX as f64),
            DataType::U32 => (0.0, u32::MAX as f64),
            DataType::I32 => (i32::MIN as f64, i32::MAX as f64),
            DataType::F32 => (-(f32::MAX as f64), f32::MAX as f64),
        }
    }
}

/// Byte order of a value, named by where the bytes of the big-endian value `ABCD` land
/// (Telegraf's naming): `ABCD` high word first (contract: `big`), `CDAB` low word first
/// (`little`), `BADC` and `DCBA` the byte-swapped variants. For 16-bit types only whether the
/// bytes are swapped matters (`BADC`/`DCBA` swap them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ByteOrder {
    #[default]
    Abcd,
    Cdab,
    Badc,
    Dcba,
}

impl ByteOrder {
    pub(super) fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "ABCD" | "BIG" => ByteOrder::Abcd,
            "CDAB" | "LITTLE" => ByteOrder::Cdab,
            "BADC" => ByteOrder::Badc,
            "DCBA" => ByteOrder::Dcba,
            _ => return None,
        })
    }

    fn swap_bytes(self) -> bool {
        matches!(self, ByteOrder::Badc | ByteOrder::Dcba)
    }

    fn low_word_first(self) -> bool {
        matches!(self, ByteOrder::Cdab | ByteOrder::Dcba)
    }
}

/// What the engine does with a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read into the station's reading.
    Read,
    /// Written with each command (holding registers only).
    ReadWrite,
}

/// One mapped value, validated, at its wire address.
#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    pub field: String,
    pub table: Table,
    /// Wire (PDU) address of the first word.
    pub address: u16,
    pub data_type: DataType,
    pub order: ByteOrder,
    pub scale: f64,
    pub offset: f64,
    pub access: Access,
}

impl Register {
    /// The engineering value of this register's words (`words.len() == data_type.words()`).
    pub fn decode(&self, words: &[u16]) -> f64 {
        let fix = |w: u16| {
            if self.order.swap_bytes() {
                w.swap_bytes()
            } else {
                w
            }
        };
        let raw = match self.data_type {
            DataType::Bool => (words[0] != 0) as u8 as f64,
            DataType::U16 => fix(words[0]) as f64,
            DataType::I16 => fix(words[0]) as i16 as f64,
            t => {
                let (hi, lo) = if self.order.low_word_first() {
                    (fix(words[1]), fix(words[0]))
                } else {
                    (fix(words[0]), fix(words[1]))
                };
                let bits = ((hi as u32) << 16) | lo as u32;
                match t {
                    DataType::U32 => bits as f64,
                    DataType::I32 => bits as i32 as f64,
                    _ => f32::from_bits(bits) as f64,
                }
            }
        };
        raw * self.scale + self.offset
    }

    /// The words that carry engineering value `value`: (value − offset) / scale, rounded to the
    /// integer type. A value that does not fit the type is an error, never a wrapped integer.
    pub fn encode(&self, value: f64) -> Result<Vec<u16>, EncodeError> {
        let raw = (value - self.offset) / self.scale;
        let raw = if self.data_type == DataType::F32 {
            raw
        } else {
            raw.round()
        };
        let (lo, hi) = self.data_type.range();
        if !raw.is_finite() || raw < lo || raw > hi {
            return Err(EncodeError {
                field: self.field.clone(),
                value,
                raw,
                data_type: self.data_type,
            });
        }
        let fix = |w: u16| {
            if self.order.swap_bytes() {
                w.swap_bytes()
            } else {
                w
            }
        };
        Ok(match self.data_type {
            DataType::Bool => vec![(raw != 0.0) as u16],
            DataType::U16 => vec![fix(raw as u16)],
            DataType::I16 => vec![fix(raw as i16 as u16)],
            t => {
                let bits = match t {
                    DataType::U32 => raw as u32,
                    DataType::I32 => raw as i32 as u32,
                    _ => (raw as f32).to_bits(),
                };
                let (hi, lo) = (fix((bits >> 16) as u16), fix(bits as u16));
                if self.order.low_word_first() {
                    vec![lo, hi]
                } else {
                    vec![hi, lo]
                }
            }
        })
    }

    pub(super) fn end(&self) -> u32 {
        self.address as u32 + self.data_type.words() as u32
    }
}

/// A command value that does not fit its register.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodeError {
    pub field: String,
    pub value: f64,
    pub raw: f64,
    pub data_type: DataType,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {} needs raw value {} which does not fit {:?}",
            self.field, self.value, self.raw, self.data_type
        )
    }
}

/// One read request: `count` words (bits, in a bit table) from `address` of `table`, and the
/// registers inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadBlock {
    pub table: Table,
    pub address: u16,
    pub count: u16,
    /// Indexes into [`RegisterMap::registers`].
    pub registers: Vec<usize>,
    /// Addresses inside the block that no register maps: read, then ignored.
    pub unmapped: u16,
}

/// One write request of a command: `words` from `address` of `table` (holding registers), or
/// one bit (coils: `words == [0 | 1]`).
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRun {
    pub table: Table,
    pub address: u16,
    pub words: Vec<u16>,
}

/// How commands are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteFunction {
    /// Function 16 (write multiple registers), one request per contiguous run.
    #[default]
    Multiple,
    /// Function 6 (write single register), one request per word.
    Single,
}

/// A validated register map.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterMap {
    pub device: String,
    pub registers: Vec<Register>,
    pub write_function: WriteFunction,
}

impl RegisterMap {
    /// The read requests for one poll: registers sorted by table and address and, when
    /// `coalesce`, merged into requests of at most `max_registers` words (2,000 bits) across
    /// gaps of at most `max_gap` unmapped addresses, whose values are read and ignored (one
    /// request with a few idle words beats a round trip each; Telegraf's read optimisation
    /// does the same). `max_gap = 0` merges adjacent registers only.
    pub fn read_plan(&self, coalesce: bool, max_registers: u16, max_gap: u16) -> Vec<ReadBlock> {
        let mut idx: Vec<usize> = (0..self.registers.len())
            .filter(|&i| self.registers[i].access == Access::Read)
            .collect();
        idx.sort_by_key(|&i| (self.registers[i].table, self.registers[i].address));
        let mut blocks: Vec<ReadBlock> = Vec::new();
        for i in idx {
            let r = &self.registers[i];
            let words = r.data_type.words();
            if let Some(b) = blocks.last_mut() {
                let end = b.address as u32 + b.count as u32;
                let gap = (r.address as u32).saturating_sub(end);
                let span = r.end().saturating_sub(b.address as u32);
                if coalesce
                    && b.table == r.table
                    && r.address as u32 >= end
                    && gap <= max_gap as u32
                    && span <= r.table.request_limit(max_registers).max(words as u32)
                {
                    b.count = span as u16;
                    b.unmapped += gap as u16;
                    b.registers.push(i);
                    continue;
                }
            }
            blocks.push(ReadBlock {
                table: r.table,
                address: r.address,
                count: words,
                registers: vec![i],
                unmapped: 0,
            });
        }
        blocks
    }

    /// Decodes one poll: `words[k]` answers `plan[k]`. Returns (field, value) pairs.
    pub fn decode(&self, plan: &[ReadBlock], words: &[Vec<u16>]) -> Vec<(&str, f64)> {
        let mut out = Vec::new();
        for (b, w) in plan.iter().zip(words) {
            for &i in &b.registers {
                let r = &self.registers[i];
                let at = (r.address - b.address) as usize;
                if let Some(slice) = w.get(at..at + r.data_type.words() as usize) {
                    out.push((r.field.as_str(), r.decode(slice)));
                }
            }
        }
        out
    }

    /// The write requests for one command: coils one by one, then runs of contiguous holding
    /// registers, the run holding `seq` last (a PLC can take a new `seq` as "the command is
    /// complete"). `value` gives each command field's engineering value.
    pub fn write_plan(
        &self,
        value: impl Fn(&str) -> Option<f64>,
    ) -> Result<Vec<WriteRun>, EncodeError> {
        let mut regs: Vec<&Register> = self
            .registers
            .iter()
            .filter(|r| r.access == Access::ReadWrite)
            .collect();
        regs.sort_by_key(|r| (r.table != Table::Coil, r.address));
        let mut runs: Vec<(WriteRun, bool)> = Vec::new();
        for r in regs {
            let Some(v) = value(&r.field) else { continue };
            let is_seq = r.field == "seq";
            // `seq` and `epoch` are counters: a register narrower than one carries it modulo
            // its range.
            let v = if is_seq || r.field == "epoch" {
                v.rem_euclid(r.data_type.range().1 + 1.0)
            } else {
                v
            };
            let words = r.encode(v)?;
            match runs.last_mut() {
                Some((run, seq))
                    if r.table == Table::Holding
                        && run.table == Table::Holding
                        && self.write_function == WriteFunction::Multiple
                        && run.address as u32 + run.words.len() as u32 == r.address as u32
                        && run.words.len() + words.len() <= 123 =>
                {
                    run.words.extend(words);
                    *seq |= is_seq;
                }
                _ => {
                    if self.write_function == WriteFunction::Single || r.table == Table::Coil {
                        for (k, word) in words.into_iter().enumerate() {
                            let run = WriteRun {
                                table: r.table,
                                address: r.address + k as u16,
                                words: vec![word],
                            };
                            runs.push((run, is_seq));
                        }
                    } else {
                        let run = WriteRun {
                            table: r.table,
                            address: r.address,
                            words,
                        };
                        runs.push((run, is_seq));
                    }
                }
            }
        }
        runs.sort_by_key(|(_, seq)| *seq);
        Ok(runs.into_iter().map(|(run, _)| run).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIM_MAP: &str = include_str!("../../../config/modbus/heatgrid-sim.toml");

    fn reg(t: DataType, order: ByteOrder, scale: f64) -> Register {
        Register {
            field: "x".into(),
            table: Table::Holding,
            address: 0,
            data_type: t,
            order,
            scale,
            offset: 0.0,
            access: Access::ReadWrite,
        }
    }

    #[test]
    fn the_shipped_maps_are_valid() {
        let m = RegisterMap::parse(SIM_MAP).unwrap();
        assert!(m.registers.len() >= 10);
        let ecl = include_str!("../../../config/modbus/example-ecl-comfort.toml");
        RegisterMap::parse(ecl).unwrap();
    }

    #[test]
    fn a_plant_map_has_the_plants_fields_and_a_stations_map_is_not_one() {
        let text = include_str!("../../../config/modbus/heatgrid-sim-plant.toml");
        let m = RegisterMap::parse_for(text, Device::Plant).unwrap();
        let plan = m
            .write_plan(|f| match f {
                "supply_setpoint_c" => Some(92.5),
                "diff_pressure_setpoint_kpa" => Some(64.0),
                "pressure_point" => Some(3.0),
                "valid_for_s" => Some(600.0),
                "epoch" => Some(0.0),
                "seq" => Some(70_000.0),
                _ => None,
            })
            .unwrap();
        // One run from the setpoint to the seq, seq last.
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].address, 100);
        assert_eq!(plan[0].words, vec![9250, 640, 3, 600, 0, 0, 1, 4464]);
        // A station's map lacks the plant's pressure, and a station's command field is not
        // the plant's.
        let errs = RegisterMap::parse_for(SIM_MAP, Device::Plant).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.contains("diff_pressure_kpa is required")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("mode is not a field heatgrid can write")),
            "{errs:?}"
        );
        assert!(RegisterMap::parse(text).is_err());
    }

    #[test]
    fn every_error_is_reported_with_its_line() {
        let text = "device = \"x\"\naddress_base = 1\n\
            [[register]]\nfield = \"supply_temp_c\"\ntable = \"input\"\naddress = 0\ntype = \"i16\"\n\
            [[register]]\nfield = \"suply_temp_c\"\ntable = \"input\"\naddress = 5\ntype = \"i16\"\n\
            [[register]]\nfield = \"valve_pct\"\ntable = \"input\"\naddress = 9\ntype = \"u16\"\naccess = \"read_write\"\n\
            [[register]]\nfield = \"flow_m3h\"\ntable = \"input\"\naddress = 6\ntype = \"u32\"\norder = \"XYZW\"\nscale = 0.0\n";
        let errs = RegisterMap::parse(text).unwrap_err();
        let all = errs.join("\n");
        assert!(
            all.contains("line 3: supply_temp_c address 0 is not valid"),
            "{all}"
        );
        assert!(all.contains("line 8: suply_temp_c is not a field"), "{all}");
        assert!(
            all.contains("line 13: valve_pct is written, so it must be in the holding"),
            "{all}"
        );
        assert!(all.contains("line 19: flow_m3h order = \"XYZW\""), "{all}");
        assert!(
            all.contains("scale = 0 must be finite and non-zero"),
            "{all}"
        );
        assert!(all.contains("return_temp_c is required"), "{all}");
        assert!(errs.len() >= 6, "{all}");
    }

    #[test]
    fn address_bases_convert_to_wire_addresses() {
        let body = |a: &str, b: &str, c: &str| {
            format!(
                "[[register]]\nfield = \"supply_temp_c\"\ntable = \"input\"\naddress = {a}\ntype = \"i16\"\n\
                 [[register]]\nfield = \"return_temp_c\"\ntable = \"input\"\naddress = {b}\ntype = \"i16\"\n\
                 [[register]]\nfield = \"flow_m3h\"\ntable = \"holding\"\naddress = {c}\ntype = \"u16\"\n"
            )
        };
        let addrs = |text: String| -> Vec<u16> {
            RegisterMap::parse(&text)
                .unwrap()
                .registers
                .iter()
                .map(|r| r.address)
                .collect()
        };
        assert_eq!(
            addrs(format!("address_base = 0\n{}", body("0", "1", "7"))),
            [0, 1, 7]
        );
        assert_eq!(
            addrs(format!("address_base = 1\n{}", body("1", "2", "8"))),
            [0, 1, 7]
        );
        assert_eq!(
            addrs(format!(
                "address_base = \"modicon\"\n{}",
                body("30001", "30002", "40008")
            )),
            [0, 1, 7]
        );
        // A 4xxxx number for an input register is a mistake, not a silent wrong address.
        assert!(RegisterMap::parse(&format!(
            "address_base = \"modicon\"\n{}",
            body("40001", "30002", "40008")
        ))
        .is_err());
    }

    #[test]
    fn four_byte_orders_round_trip_and_match_known_words() {
        // 123456.0_f32 = 0x47F1_2000.
        let v = 123_456.0;
        let cases = [
            (ByteOrder::Abcd, [0x47F1, 0x2000]),
            (ByteOrder::Cdab, [0x2000, 0x47F1]),
            (ByteOrder::Badc, [0xF147, 0x0020]),
            (ByteOrder::Dcba, [0x0020, 0xF147]),
        ];
        for (order, words) in cases {
            let r = reg(DataType::F32, order, 1.0);
            assert_eq!(r.encode(v).unwrap(), words, "{order:?}");
            assert_eq!(r.decode(&words), v, "{order:?}");
        }
        let r = reg(DataType::I32, ByteOrder::Cdab, 0.01);
        assert_eq!(r.encode(-1.5).unwrap(), [0xFF6A, 0xFFFF]);
        assert_eq!(r.decode(&[0xFF6A, 0xFFFF]), -1.5);
        let r = reg(DataType::I16, ByteOrder::Abcd, 0.1);
        assert_eq!(r.decode(&[0xFF9C]), -10.0);
    }

    #[test]
    fn out_of_range_writes_are_errors_never_wrapped() {
        let r = reg(DataType::U16, ByteOrder::Abcd, 0.01);
        assert_eq!(r.encode(655.35).unwrap(), [65_535]);
        assert!(r.encode(655.36).is_err());
        assert!(r.encode(-0.01).is_err());
        assert!(r.encode(f64::NAN).is_err());
        let r = reg(DataType::I16, ByteOrder::Abcd, 0.1);
        assert!(r.encode(3276.8).is_err());
        assert_eq!(r.encode(-3276.8).unwrap(), [0x8000]);
    }

    #[test]
    fn reads_coalesce_within_the_request_limit() {
        let m = RegisterMap::parse(SIM_MAP).unwrap();
        let plan = m.read_plan(true, 125, 0);
        assert_eq!(plan.len(), 1, "{plan:?}");
        let split = m.read_plan(true, 4, 0);
        assert!(split.iter().all(|b| b.count <= 4));
        assert_eq!(
            split.iter().map(|b| b.count as usize).sum::<usize>(),
            plan[0].count as usize
        );
        let single = m.read_plan(false, 125, 10);
        assert_eq!(
            single.len(),
            m.registers
                .iter()
                .filter(|r| r.access == Access::Read)
                .count()
        );
    }

    #[test]
    fn writes_put_seq_last() {
        let text = "address_base = 0\nwrite_function = \"multiple\"\n\
            [[register]]\nfield = \"supply_temp_c\"\ntable = \"input\"\naddress = 0\ntype = \"i16\"\n\
            [[register]]\nfield = \"return_temp_c\"\ntable = \"input\"\naddress = 1\ntype = \"i16\"\n\
            [[register]]\nfield = \"flow_m3h\"\ntable = \"input\"\naddress = 2\ntype = \"u16\"\n\
            [[register]]\nfield = \"seq\"\ntable = \"holding\"\naddress = 0\ntype = \"u32\"\naccess = \"read_write\"\n\
            [[register]]\nfield = \"valve_pct\"\ntable = \"holding\"\naddress = 10\ntype = \"u16\"\nscale = 0.1\naccess = \"read_write\"\n";
        let m = RegisterMap::parse(text).unwrap();
        let plan = m
            .write_plan(|f| match f {
                "seq" => Some(70_000.0),
                "valve_pct" => Some(43.46),
                _ => None,
            })
            .unwrap();
        let runs: Vec<_> = plan.into_iter().map(|r| (r.address, r.words)).collect();
        assert_eq!(runs, vec![(10, vec![435]), (0, vec![1, 4_464])]);
    }

    #[test]
    fn an_epoch_register_goes_out_with_the_command_modulo_its_range() {
        let text = "address_base = 0\nwrite_function = \"multiple\"\n\
            [[register]]\nfield = \"supply_temp_c\"\ntable = \"input\"\naddress = 0\ntype = \"i16\"\n\
            [[register]]\nfield = \"return_temp_c\"\ntable = \"input\"\naddress = 1\ntype = \"i16\"\n\
            [[register]]\nfield = \"flow_m3h\"\ntable = \"input\"\naddress = 2\ntype = \"u16\"\n\
            [[register]]\nfield = \"epoch\"\ntable = \"holding\"\naddress = 0\ntype = \"u16\"\naccess = \"read_write\"\n\
            [[register]]\nfield = \"seq\"\ntable = \"holding\"\naddress = 1\ntype = \"u16\"\naccess = \"read_write\"\n";
        let m = RegisterMap::parse(text).unwrap();
        let plan = m
            .write_plan(|f| match f {
                "epoch" => Some(65_538.0),
                "seq" => Some(7.0),
                _ => None,
            })
            .unwrap();
        // One request, epoch and seq together (the run holding seq goes last).
        let runs: Vec<_> = plan.into_iter().map(|r| (r.address, r.words)).collect();
        assert_eq!(runs, vec![(0, vec![2, 7])]);
    }

    /// A controller with parameters scattered over five blocks (input 100–101, 110, 118–119,
    /// 300; holding 40) and two status bits.
    const SCATTERED: &str = "address_base = 0\n\
        [[register]]\nfield = \"supply_temp_c\"\ntable = \"input\"\naddress = 100\ntype = \"i16\"\nscale = 0.1\n\
        [[register]]\nfield = \"return_temp_c\"\ntable = \"input\"\naddress = 101\ntype = \"i16\"\nscale = 0.1\n\
        [[register]]\nfield = \"outdoor_temp_c\"\ntable = \"input\"\naddress = 110\ntype = \"i16\"\nscale = 0.1\n\
        [[register]]\nfield = \"flow_m3h\"\ntable = \"input\"\naddress = 118\ntype = \"f32\"\n\
        [[register]]\nfield = \"valve_pct\"\ntable = \"input\"\naddress = 300\ntype = \"u16\"\n\
        [[register]]\nfield = \"heated_area_m2\"\ntable = \"holding\"\naddress = 40\ntype = \"u32\"\n\
        [[register]]\nfield = \"pump_running\"\ntable = \"discrete_input\"\naddress = 3\ntype = \"bool\"\n\
        [[register]]\nfield = \"alarm_pump_fault\"\ntable = \"discrete_input\"\naddress = 9\ntype = \"bool\"\n\
        [[register]]\nfield = \"pump_enable\"\ntable = \"coil\"\naddress = 0\ntype = \"bool\"\naccess = \"read_write\"\n\
        [[register]]\nfield = \"seq\"\ntable = \"holding\"\naddress = 50\ntype = \"u16\"\naccess = \"read_write\"\n";

    #[test]
    fn reads_coalesce_across_small_gaps_and_ignore_the_unmapped_words() {
        let m = RegisterMap::parse(SCATTERED).unwrap();
        let blocks = |plan: &[ReadBlock]| -> Vec<(Table, u16, u16, u16)> {
            plan.iter()
                .map(|b| (b.table, b.address, b.count, b.unmapped))
                .collect()
        };
        // Without gaps: every block is a request (input ×4, holding, discrete ×2).
        assert_eq!(m.read_plan(true, 125, 0).len(), 7);
        // A gap of 10: input 100–119 in one request (5 mapped + 15 idle words), 300 alone (too far),
        // the bits 3–9 in one.
        let plan = m.read_plan(true, 125, 10);
        assert_eq!(
            blocks(&plan),
            [
                (Table::Input, 100, 20, 15),
                (Table::Input, 300, 1, 0),
                (Table::Holding, 40, 2, 0),
                (Table::DiscreteInput, 3, 7, 5),
            ]
        );
        // The request limit still holds: 20 words do not fit 16.
        assert!(m
            .read_plan(true, 16, 10)
            .iter()
            .all(|b| b.count <= 16 || b.table.is_bits()));
        // Decoding picks the mapped words out and ignores the rest, whatever they hold.
        let mut input = vec![0xDEAD_u16; 20];
        input[0] = 524;
        input[1] = 398;
        input[10] = (-65_i16) as u16;
        input[18..20].copy_from_slice(&[0x4370, 0x8000]); // 240.5 f32
        let mut bits = vec![1_u16; 7];
        bits[6] = 0;
        let words = vec![input, vec![55], vec![1, 0x86A0], bits];
        let got: std::collections::BTreeMap<&str, f64> =
            m.decode(&plan, &words).into_iter().collect();
        let near = |f: &str, v: f64| assert!((got[f] - v).abs() < 1e-9, "{f}: {}", got[f]);
        near("supply_temp_c", 52.4);
        near("return_temp_c", 39.8);
        near("outdoor_temp_c", -6.5);
        assert_eq!(got["flow_m3h"], 240.5);
        assert_eq!(got["valve_pct"], 55.0);
        assert_eq!(got["heated_area_m2"], 100_000.0);
        assert_eq!(got["pump_running"], 1.0);
        assert_eq!(got["alarm_pump_fault"], 0.0);
        assert_eq!(got.len(), 8);
    }

    #[test]
    fn a_coil_carries_an_on_off_command_value_before_the_seq_run() {
        let m = RegisterMap::parse(SCATTERED).unwrap();
        let plan = m
            .write_plan(|f| match f {
                "pump_enable" => Some(1.0),
                "seq" => Some(9.0),
                _ => None,
            })
            .unwrap();
        let runs: Vec<_> = plan
            .into_iter()
            .map(|r| (r.table, r.address, r.words))
            .collect();
        assert_eq!(
            runs,
            [(Table::Coil, 0, vec![1]), (Table::Holding, 50, vec![9])]
        );
    }
}
