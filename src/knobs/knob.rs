//! What one knob is, whatever it turns: the unit its number counts, the range it
//! documents, its flag and lab setters, and the one check (`Knob::check`) that every flag
//! and every setter runs, so a value outside the range is refused the same way
//! everywhere, with a message naming the range in the unit it was given in.
//!
//! `knobs.rs` declares the knobs themselves (one table); this file knows nothing of them.

use std::fmt;

/// Why a knob refused a value: the message names the knob's range in the unit the value
/// was given in ("must be in 1..=31536000 s (up to 1 year), got 0").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

pub const SECOND_MS: u64 = 1000;
pub const MINUTE_MS: u64 = 60 * SECOND_MS;
pub const HOUR_MS: u64 = 60 * MINUTE_MS;
pub const DAY_MS: u64 = 24 * HOUR_MS;
pub const YEAR_MS: u64 = 365 * DAY_MS;

/// What a knob's number counts. A flag or a setter may take it in another unit of the
/// same measure (`--ttl` and `set_ttl` in seconds, the field in ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Ms,
    Secs,
    Bytes,
    Percent,
    /// A number of things (entries in a batch).
    Count,
    /// A plain number (a ratio, a factor).
    Number,
    /// One of a mode's names.
    Mode,
    /// On or off.
    Switch,
}

impl Unit {
    /// The placeholder `--help` shows after the flag.
    pub fn value_name(self) -> &'static str {
        match self {
            Unit::Ms => "MS",
            Unit::Secs => "SECS",
            Unit::Bytes => "BYTES",
            Unit::Percent => "PERCENT",
            Unit::Count => "N",
            Unit::Number => "NUMBER",
            Unit::Mode => "MODE",
            Unit::Switch => "on|off",
        }
    }

    /// What follows a number in this unit.
    fn suffix(self) -> &'static str {
        match self {
            Unit::Ms => " ms",
            Unit::Secs => " s",
            Unit::Bytes => " bytes",
            Unit::Percent => " percent",
            Unit::Count | Unit::Number | Unit::Mode | Unit::Switch => "",
        }
    }

    /// How many `field` units one of these is, when both measure the same thing.
    pub fn in_units_of(self, field: Unit) -> Option<u64> {
        match (self, field) {
            (given, field) if given == field => Some(1),
            (Unit::Secs, Unit::Ms) => Some(SECOND_MS),
            _ => None,
        }
    }

    /// `value` in the largest unit that divides it, when that reads differently: 31536000 s
    /// is "1 year", 16777216 bytes "16 MiB", 60000 ms "1 min".
    fn human(self, value: u64) -> Option<String> {
        const TIME: [(u64, &str, &str); 6] = [
            (YEAR_MS, " year", " years"),
            (DAY_MS, " day", " days"),
            (HOUR_MS, " h", " h"),
            (MINUTE_MS, " min", " min"),
            (SECOND_MS, " s", " s"),
            (1, " ms", " ms"),
        ];
        const SIZE: [(u64, &str, &str); 3] = [
            (1 << 20, " MiB", " MiB"),
            (1 << 10, " KiB", " KiB"),
            (1, " bytes", " bytes"),
        ];
        let (base, steps): (u64, &[(u64, &str, &str)]) = match self {
            Unit::Ms => (value, &TIME),
            Unit::Secs => (value.checked_mul(SECOND_MS)?, &TIME),
            Unit::Bytes => (value, &SIZE),
            Unit::Percent | Unit::Count | Unit::Number | Unit::Mode | Unit::Switch => return None,
        };
        let (size, one, many) = steps
            .iter()
            .find(|(size, ..)| base >= *size && base % size == 0)?;
        let n = base / size;
        let text = format!("{n}{}", if n == 1 { one } else { many });
        (text != format!("{value}{}", self.suffix())).then_some(text)
    }
}

/// The values a knob documents and accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    /// Whole numbers from `lo` to `hi`, both included (in the knob's field unit).
    Whole { lo: u64, hi: u64 },
    /// Real numbers from `lo` to `hi`, each end included unless it is open.
    Real {
        lo: f64,
        hi: f64,
        lo_open: bool,
        hi_open: bool,
    },
    /// One of these names.
    Names(&'static [&'static str]),
    /// On (true) or off (false).
    Switch,
}

impl Range {
    pub const fn whole(lo: u64, hi: u64) -> Self {
        Range::Whole { lo, hi }
    }

    /// (lo, hi): neither end included.
    pub const fn open(lo: f64, hi: f64) -> Self {
        Range::Real {
            lo,
            hi,
            lo_open: true,
            hi_open: true,
        }
    }

    /// [lo, hi]: both ends included.
    pub const fn closed(lo: f64, hi: f64) -> Self {
        Range::Real {
            lo,
            hi,
            lo_open: false,
            hi_open: false,
        }
    }

    /// (lo, hi]: `hi` included, `lo` not.
    pub const fn open_closed(lo: f64, hi: f64) -> Self {
        Range::Real {
            lo,
            hi,
            lo_open: true,
            hi_open: false,
        }
    }
}

/// What kind of argument a knob takes, as a lab's signature names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Whole,
    Real,
    Name,
    Switch,
}

impl Kind {
    /// The argument's type in a lab function's signature.
    pub fn lab_type(self) -> &'static str {
        match self {
            Kind::Whole => "int",
            Kind::Real => "number",
            Kind::Name => "string",
            Kind::Switch => "bool",
        }
    }
}

/// A knob's value in its field's unit, after its range was checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Whole(u64),
    Real(f64),
    Name(&'static str),
    Switch(bool),
}

/// What a flag or a setter was given, before it is checked: a lab passes -5 or NaN as
/// readily as 5.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Input<'a> {
    Whole(i64),
    Real(f64),
    Name(&'a str),
    Switch(bool),
}

impl fmt::Display for Input<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Whole(n) => write!(f, "{n}"),
            Input::Real(x) => write!(f, "{x}"),
            Input::Name(name) => write!(f, "{name:?}"),
            Input::Switch(on) => write!(f, "{on}"),
        }
    }
}

/// A type a knob's field may have, and how it travels as a `Value`.
pub trait KnobType: Copy {
    fn to_value(self) -> Value;
    /// `None` when `value` is of another kind (a bug in the table, which the tests catch).
    fn from_value(value: Value) -> Option<Self>;
}

impl KnobType for u64 {
    fn to_value(self) -> Value {
        Value::Whole(self)
    }

    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Whole(n) => Some(n),
            Value::Real(_) | Value::Name(_) | Value::Switch(_) => None,
        }
    }
}

impl KnobType for usize {
    fn to_value(self) -> Value {
        Value::Whole(self as u64)
    }

    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Whole(n) => usize::try_from(n).ok(),
            Value::Real(_) | Value::Name(_) | Value::Switch(_) => None,
        }
    }
}

impl KnobType for f64 {
    fn to_value(self) -> Value {
        Value::Real(self)
    }

    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Real(x) => Some(x),
            Value::Whole(_) | Value::Name(_) | Value::Switch(_) => None,
        }
    }
}

impl KnobType for bool {
    fn to_value(self) -> Value {
        Value::Switch(self)
    }

    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Switch(on) => Some(on),
            Value::Whole(_) | Value::Real(_) | Value::Name(_) => None,
        }
    }
}

/// A knob's `serve`/`run` flag, e.g. `--ttl` in seconds.
#[derive(Debug)]
pub struct Flag {
    /// The flag without its dashes.
    pub long: &'static str,
    pub unit: Unit,
}

/// A lab function that sets a knob, e.g. `set_ttl(secs)`.
#[derive(Debug)]
pub struct Setter {
    pub name: &'static str,
    /// The argument's name, as the signature and the errors show it.
    pub arg: &'static str,
    pub unit: Unit,
}

/// One knob of a settings struct `S`: its field, range, flag, setters and doc, and how
/// to read and write it.
#[derive(Debug)]
pub struct Knob<S: 'static> {
    /// The field of `S` it sets (and its flag's id).
    pub field: &'static str,
    /// What it does, in one line (as a doc comment gives it: `doc()` trims it).
    pub(super) doc: &'static str,
    /// The unit of the field, in which `range` is given.
    pub unit: Unit,
    pub range: Range,
    pub flag: Flag,
    /// Every lab function that sets it (the TTL has one in seconds and one in ms).
    pub setters: &'static [Setter],
    /// Reads its field.
    pub(super) read: fn(&S) -> Value,
    /// Writes its field; false when the value is of another kind.
    pub(super) write: fn(&mut S, Value) -> bool,
}

impl<S: Default> Knob<S> {
    /// What it does, in one line.
    pub fn doc(&self) -> &'static str {
        self.doc.trim()
    }

    pub fn kind(&self) -> Kind {
        match self.range {
            Range::Whole { .. } => Kind::Whole,
            Range::Real { .. } => Kind::Real,
            Range::Names(_) => Kind::Name,
            Range::Switch => Kind::Switch,
        }
    }

    /// Its value in `settings`.
    pub fn get(&self, settings: &S) -> Value {
        (self.read)(settings)
    }

    /// Its default: its value in `S::default()`.
    pub fn default_value(&self) -> Value {
        self.get(&S::default())
    }

    /// Set it in `settings` to a value `check` returned.
    pub fn put(&self, settings: &mut S, value: Value) -> Result<(), Refused> {
        if (self.write)(settings, value) {
            Ok(())
        } else {
            Err(Refused(format!(
                "the {} knob does not take {value:?}",
                self.field
            )))
        }
    }

    /// `input`, given in `unit` (a flag's or a setter's), as a value of this knob — or,
    /// when it is outside the range, why, naming the range in that unit.
    pub fn check(&self, unit: Unit, input: Input) -> Result<Value, Refused> {
        self.judge(unit, input).map_err(Refused)
    }

    /// `check`'s verdict, its refusal as text.
    fn judge(&self, unit: Unit, input: Input) -> Result<Value, String> {
        let refused = || format!("must be in {}, got {input}", self.describe_range(unit));
        match (self.range, input) {
            (Range::Whole { lo, hi }, Input::Whole(n)) => {
                let per = unit
                    .in_units_of(self.unit)
                    .ok_or_else(|| format!("{} is not counted in {unit:?}", self.field))?;
                u64::try_from(n)
                    .ok()
                    .and_then(|n| n.checked_mul(per))
                    .filter(|v| (lo..=hi).contains(v))
                    .map(Value::Whole)
                    .ok_or_else(refused)
            }
            (Range::Whole { .. }, Input::Real(_)) => Err(format!(
                "must be a whole number in {}, got {input}",
                self.describe_range(unit)
            )),
            (Range::Real { .. }, Input::Whole(n)) => self.judge(unit, Input::Real(n as f64)),
            (
                Range::Real {
                    lo,
                    hi,
                    lo_open,
                    hi_open,
                },
                Input::Real(x),
            ) => {
                let above_lo = if lo_open { x > lo } else { x >= lo };
                let below_hi = if hi_open { x < hi } else { x <= hi };
                // NaN is neither above nor below anything, so it is refused here too.
                if above_lo && below_hi {
                    Ok(Value::Real(x))
                } else {
                    Err(refused())
                }
            }
            (Range::Names(names), Input::Name(name)) => names
                .iter()
                .find(|known| **known == name)
                .map(|known| Value::Name(known))
                .ok_or_else(|| {
                    format!(
                        "unknown {} {name:?}; known: {}",
                        self.field,
                        names.join(", ")
                    )
                }),
            (Range::Switch, Input::Switch(on)) => Ok(Value::Switch(on)),
            (Range::Names(_), Input::Whole(_) | Input::Real(_) | Input::Switch(_))
            | (Range::Whole { .. } | Range::Real { .. }, Input::Name(_) | Input::Switch(_))
            | (Range::Switch, Input::Whole(_) | Input::Real(_) | Input::Name(_)) => Err(format!(
                "must be {}, got {input}",
                self.describe_range(unit)
            )),
        }
    }

    /// A flag's text as a value of this knob (the flag's unit), or what is wrong with it.
    pub fn parse_flag(&self, text: &str) -> Result<Value, Refused> {
        let input = match self.kind() {
            Kind::Whole => Input::Whole(text.trim().parse().map_err(|_| {
                Refused(format!(
                    "must be a whole number in {}, got {text:?}",
                    self.describe_range(self.flag.unit)
                ))
            })?),
            Kind::Real => Input::Real(text.trim().parse().map_err(|_| {
                Refused(format!(
                    "must be a number in {}, got {text:?}",
                    self.describe_range(self.flag.unit)
                ))
            })?),
            Kind::Name => Input::Name(text),
            Kind::Switch => Input::Switch(match text.trim() {
                "on" | "true" | "yes" => true,
                "off" | "false" | "no" => false,
                _ => {
                    return Err(Refused(format!(
                        "must be {}, got {text:?}",
                        self.describe_range(self.flag.unit)
                    )))
                }
            }),
        };
        self.check(self.flag.unit, input)
    }

    /// The range as given in `unit`: "1..=31536000 s (up to 1 year)", "(0, 1)",
    /// "one of delete, double-delete, lease".
    pub fn describe_range(&self, unit: Unit) -> String {
        match self.range {
            Range::Whole { lo, hi } => {
                let per = unit.in_units_of(self.unit).unwrap_or(1);
                let (lo, hi) = (lo.div_ceil(per), hi / per);
                let range = format!("{lo}..={hi}{}", unit.suffix());
                match unit.human(hi) {
                    Some(human) => format!("{range} (up to {human})"),
                    None => range,
                }
            }
            Range::Real {
                lo,
                hi,
                lo_open,
                hi_open,
            } => format!(
                "{}{lo}, {hi}{}{}",
                if lo_open { "(" } else { "[" },
                if hi_open { ")" } else { "]" },
                unit.suffix()
            ),
            Range::Names(names) => format!("one of {}", names.join(", ")),
            Range::Switch => "true (on) or false (off)".to_string(),
        }
    }

    /// `value` as said in `unit`: 60000 ms in seconds is "60 s".
    pub fn describe(&self, value: Value, unit: Unit) -> String {
        match value {
            Value::Whole(n) => {
                let per = unit.in_units_of(self.unit).unwrap_or(1);
                if n % per == 0 {
                    format!("{}{}", n / per, unit.suffix())
                } else {
                    format!("{}{}", n as f64 / per as f64, unit.suffix())
                }
            }
            Value::Real(x) => format!("{x}{}", unit.suffix()),
            Value::Name(name) => name.to_string(),
            Value::Switch(on) => on.to_string(),
        }
    }

    /// The `--help` line of its flag: what it does, its range and its default.
    pub fn flag_help(&self) -> String {
        let unit = self.flag.unit;
        format!(
            "{} [range: {}] [default: {}]",
            self.doc(),
            self.describe_range(unit),
            self.describe(self.default_value(), unit)
        )
    }

    /// The `cachelab api` line of one of its setters: what it does, its range and default.
    pub fn setter_doc(&self, setter: &Setter) -> String {
        let range = self.describe_range(setter.unit);
        let default = self.describe(self.default_value(), setter.unit);
        match self.range {
            Range::Names(_) | Range::Switch => {
                format!("{}: {range}; default {default}.", self.doc())
            }
            Range::Whole { .. } | Range::Real { .. } => {
                format!("{}. Range {range}; default {default}.", self.doc())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_amounts_are_also_said_in_the_largest_unit_that_divides_them() {
        assert_eq!(Unit::Secs.human(365 * 86_400).as_deref(), Some("1 year"));
        assert_eq!(Unit::Ms.human(YEAR_MS).as_deref(), Some("1 year"));
        assert_eq!(Unit::Secs.human(2 * 86_400).as_deref(), Some("2 days"));
        assert_eq!(Unit::Ms.human(60_000).as_deref(), Some("1 min"));
        assert_eq!(Unit::Bytes.human(16 << 20).as_deref(), Some("16 MiB"));
        assert_eq!(Unit::Ms.human(1500), None, "1500 ms reads best as it is");
        assert_eq!(Unit::Count.human(100_000), None);
    }
}
