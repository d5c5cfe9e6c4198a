//! Human-friendly units used by configuration keys: durations (`"10s"`,
//! `"500ms"`, `"1h"`) and byte sizes (`"128MiB"`, `"64MB"`, `1048576`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// A duration written as a number and a unit: `ms`, `s`, `m`, `h`, `d`
/// (`"250ms"`, `"10s"`, `"1h"`). A bare number is rejected: the unit is
/// always explicit, so `roll_interval = 10` cannot mean ten of the wrong thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for HumanDuration {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| {
                UnitError(format!(
                    "`{s}` has no unit; write it like \"500ms\", \"10s\", \"5m\", \"1h\" or \"1d\""
                ))
            })?;
        let (num, unit) = s.split_at(split);
        let value: f64 = num
            .parse()
            .map_err(|_| UnitError(format!("`{s}` does not start with a number")))?;
        let scale = match unit.trim() {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            other => {
                return Err(UnitError(format!(
                    "unknown unit `{other}` in `{s}`; expected ms, s, m, h or d"
                )));
            }
        };
        Ok(Self(Duration::from_secs_f64(value * scale)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0.as_millis())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// A size in bytes: an integer, or a string with a unit: `B`, `KB`/`KiB`,
/// `MB`/`MiB`, `GB`/`GiB` (decimal and binary units as written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Number of bytes.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let value: f64 = num
            .parse()
            .map_err(|_| UnitError(format!("`{s}` does not start with a number")))?;
        let scale: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            other => {
                return Err(UnitError(format!(
                    "unknown unit `{other}` in `{s}`; expected B, KB, KiB, MB, MiB, GB or GiB"
                )));
            }
        };
        Ok(Self((value * scale as f64) as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte size such as 1048576, \"64MiB\" or \"1GB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a byte size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

crate::message_error! {
    /// Why a duration or size is not one: the value and how to write it.
    pub struct UnitError;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(
            "250ms".parse::<HumanDuration>().unwrap().get(),
            Duration::from_millis(250)
        );
        assert_eq!(
            "10s".parse::<HumanDuration>().unwrap().get(),
            Duration::from_secs(10)
        );
        assert_eq!(
            "1.5m".parse::<HumanDuration>().unwrap().get(),
            Duration::from_secs(90)
        );
        assert_eq!(
            "1h".parse::<HumanDuration>().unwrap().get(),
            Duration::from_secs(3600)
        );
        assert!(
            "10".parse::<HumanDuration>()
                .unwrap_err()
                .0
                .contains("no unit")
        );
        assert!(
            "10y"
                .parse::<HumanDuration>()
                .unwrap_err()
                .0
                .contains("unknown unit")
        );
    }

    #[test]
    fn parses_sizes() {
        assert_eq!("64MiB".parse::<ByteSize>().unwrap().get(), 64 << 20);
        assert_eq!("1GB".parse::<ByteSize>().unwrap().get(), 1_000_000_000);
        assert_eq!("512".parse::<ByteSize>().unwrap().get(), 512);
        assert!("5 parsecs".parse::<ByteSize>().is_err());
        let v: ByteSize = toml::from_str::<toml::Table>("x = 42")
            .unwrap()
            .get("x")
            .unwrap()
            .clone()
            .try_into()
            .unwrap();
        assert_eq!(v.get(), 42);
    }
}
