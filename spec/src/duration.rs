//! Durations as people write them in pipeline files and on command lines:
//! a whole number and one unit (`500ms`, `90s`, `30m`, `12h`, `7d`), or a
//! bare `0`. Shared by the pipeline file's `retry_delay` (and `tmctl
//! config`), which takes units up to hours, and `taskmaster serve
//! --retain-finished`, which takes days too.

/// A unit's name and its length in milliseconds.
pub type Units = &'static [(&'static str, u64)];

/// `ms`, `s`, `m` and `h`.
pub const UP_TO_HOURS: Units = &[("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];
/// [`UP_TO_HOURS`] and `d`.
pub const UP_TO_DAYS: Units = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// The duration in milliseconds, or None if `text` is not one in `units`
/// (or does not fit in a u64). Surrounding spaces are ignored.
pub fn parse_ms(text: &str, units: Units) -> Option<u64> {
    let text = text.trim();
    if text == "0" {
        return Some(0);
    }
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let &(_, unit_ms) = units.iter().find(|(name, _)| *name == unit)?;
    number.parse::<u64>().ok()?.checked_mul(unit_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_number_and_one_unit_or_a_bare_zero() {
        let cases = [
            ("0", 0),
            ("500ms", 500),
            ("90s", 90_000),
            ("30m", 1_800_000),
            ("12h", 43_200_000),
            ("7d", 604_800_000),
            (" 3s ", 3_000),
        ];
        for (text, ms) in cases {
            assert_eq!(parse_ms(text, UP_TO_DAYS), Some(ms), "{text}");
        }
        for bad in [
            "",
            "7",
            "d",
            "7w",
            "5 s",
            "1.5h",
            "-1d",
            "7d2h",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_ms(bad, UP_TO_DAYS), None, "{bad:?} accepted");
        }
        assert_eq!(parse_ms("12h", UP_TO_HOURS), Some(43_200_000));
        assert_eq!(parse_ms("1d", UP_TO_HOURS), None);
    }
}
