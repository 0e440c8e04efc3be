//! Reading a built-in task's settings from its unit's config: defaults,
//! limits, and errors that name the task, the key and the bad value.

use std::collections::BTreeMap;

use crate::lines::LINE_BYTES_MAX_DEFAULT;
use crate::task::{TaskError, UnitContext};

/// The key every built-in task reads.
pub(crate) const LINE_BYTES_MAX_KEY: &str = "line_bytes_max";
/// Largest `line_bytes_max` accepted (1 GiB): a line is held whole in
/// memory.
pub(crate) const LINE_BYTES_MAX_LIMIT: u64 = 1024 * 1024 * 1024;
/// Largest size setting accepted (1 TiB): catches a unit mistake before it
/// turns into an allocation failure.
pub(crate) const SIZE_BYTES_LIMIT: u64 = 1024 * 1024 * 1024 * 1024;

/// One task's view of its config.
pub(crate) struct Settings<'a> {
    task: &'static str,
    config: &'a BTreeMap<String, String>,
}

impl<'a> Settings<'a> {
    /// `unit`'s config for `task`, which reads `known` (and
    /// `line_bytes_max`); any other key is an error.
    pub(crate) fn new(
        task: &'static str,
        unit: &'a UnitContext,
        known: &[&str],
    ) -> Result<Self, TaskError> {
        for key in unit.config.keys() {
            if key != LINE_BYTES_MAX_KEY && !known.contains(&key.as_str()) {
                let mut keys: Vec<&str> = known.to_vec();
                keys.push(LINE_BYTES_MAX_KEY);
                keys.sort_unstable();
                return Err(TaskError::new(format!(
                    "{task}: unknown config key {key:?}; {task} reads: {}",
                    keys.join(", ")
                )));
            }
        }
        Ok(Self {
            task,
            config: &unit.config,
        })
    }

    /// The raw value of `key`, if set.
    pub(crate) fn get(&self, key: &str) -> Option<&'a str> {
        self.config.get(key).map(String::as_str)
    }

    /// The error for `key`'s value, saying `why` it is wrong.
    pub(crate) fn invalid(&self, key: &str, why: impl std::fmt::Display) -> TaskError {
        let value = self.get(key).unwrap_or_default();
        TaskError::new(format!("{}: config {key} = {value:?}: {why}", self.task))
    }

    /// A size in bytes between 1 and `max`, `default` when unset.
    pub(crate) fn bytes(&self, key: &str, default: u64, max: u64) -> Result<u64, TaskError> {
        let Some(text) = self.get(key) else {
            return Ok(default);
        };
        match parse_bytes(text) {
            Some(bytes) if (1..=max).contains(&bytes) => Ok(bytes),
            Some(_) => Err(self.invalid(key, format!("must be from 1 to {max} bytes"))),
            None => Err(self.invalid(
                key,
                "not a size: expected a whole number of bytes, optionally with KiB, MiB or GiB",
            )),
        }
    }

    /// A count between `min` and `max`, `default` when unset.
    pub(crate) fn count(
        &self,
        key: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, TaskError> {
        let Some(text) = self.get(key) else {
            return Ok(default);
        };
        match text.parse::<u64>() {
            Ok(count) if (min..=max).contains(&count) => Ok(count),
            _ => Err(self.invalid(key, format!("must be a whole number from {min} to {max}"))),
        }
    }

    /// One of `allowed`; the first one when unset.
    pub(crate) fn choice(
        &self,
        key: &str,
        allowed: &[&'static str],
    ) -> Result<&'static str, TaskError> {
        let Some(text) = self.get(key) else {
            return Ok(allowed[0]);
        };
        allowed
            .iter()
            .find(|choice| **choice == text)
            .copied()
            .ok_or_else(|| self.invalid(key, format!("must be one of: {}", allowed.join(", "))))
    }

    /// The `line_bytes_max` setting.
    pub(crate) fn line_bytes_max(&self) -> Result<usize, TaskError> {
        let bytes = self.bytes(
            LINE_BYTES_MAX_KEY,
            LINE_BYTES_MAX_DEFAULT as u64,
            LINE_BYTES_MAX_LIMIT,
        )?;
        Ok(bytes as usize)
    }
}

/// `123`, `123B`, `16KiB`, `16MiB`, `2GiB` (a space before the suffix is
/// fine) as bytes; `None` when it is not a size or overflows.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    let unit: u64 = match suffix.trim_start() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(config: &[(&str, &str)]) -> UnitContext {
        UnitContext {
            config: config
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
            ..UnitContext::default()
        }
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_bytes("0"), Some(0));
        assert_eq!(parse_bytes("123"), Some(123));
        assert_eq!(parse_bytes("123B"), Some(123));
        assert_eq!(parse_bytes("1KiB"), Some(1024));
        assert_eq!(parse_bytes("16 MiB"), Some(16 << 20));
        assert_eq!(parse_bytes("2GiB"), Some(2 << 30));
        for bad in [
            "",
            "MiB",
            "-1",
            "1.5MiB",
            "1MB",
            "1 mib",
            "99999999999999999999",
            "18446744073709551615GiB",
        ] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn defaults_apply_and_bad_values_name_the_key() {
        let unit = unit(&[("a", "7KiB"), ("b", "0"), ("c", "x"), ("d", "desc")]);
        let settings = Settings::new("t", &unit, &["a", "b", "c", "d", "e"]).unwrap();
        assert_eq!(settings.bytes("a", 1, 1 << 20).unwrap(), 7 * 1024);
        assert_eq!(settings.bytes("e", 5, 10).unwrap(), 5);
        let err = settings.bytes("b", 5, 10).unwrap_err();
        assert_eq!(
            err.message(),
            "t: config b = \"0\": must be from 1 to 10 bytes"
        );
        let err = settings.bytes("a", 5, 10).unwrap_err();
        assert!(err.message().contains("from 1 to 10 bytes"), "{err}");
        let err = settings.count("c", 1, 1, 9).unwrap_err();
        assert_eq!(
            err.message(),
            "t: config c = \"x\": must be a whole number from 1 to 9"
        );
        assert_eq!(settings.choice("d", &["asc", "desc"]).unwrap(), "desc");
        assert_eq!(settings.choice("e", &["asc", "desc"]).unwrap(), "asc");
        let err = settings.choice("c", &["asc", "desc"]).unwrap_err();
        assert!(err.message().contains("must be one of: asc, desc"), "{err}");
        assert_eq!(settings.line_bytes_max().unwrap(), LINE_BYTES_MAX_DEFAULT);
    }

    #[test]
    fn unknown_keys_are_refused_with_the_known_ones() {
        let unit = unit(&[("sort_memory_byte", "1")]);
        let err = Settings::new("sort", &unit, &["sort_by", "sort_memory_bytes"])
            .err()
            .unwrap();
        assert_eq!(
            err.message(),
            "sort: unknown config key \"sort_memory_byte\"; sort reads: line_bytes_max, sort_by, sort_memory_bytes"
        );
    }
}
