//! The `--retain-finished` duration (`90s`, `30m`, `12h`, `7d`). Which
//! pipelines are due is the core's (`Core::finished_before`), from their
//! journaled finish times.

use std::time::Duration;

/// Parses a duration such as `90s`, `30m`, `12h` or `7d` (a whole number
/// and one unit); at least one second.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration like 90s, 30m, 12h or 7d");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let secs = number.checked_mul(unit_secs).ok_or_else(bad)?;
    if secs == 0 {
        return Err(format!("{text:?}: the retention must be at least 1s"));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_one_unit_and_refuse_the_rest() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in [
            "",
            "7",
            "d",
            "7w",
            "1.5h",
            "-1d",
            "7d2h",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration("0s").unwrap_err().contains("at least 1s"));
    }
}
