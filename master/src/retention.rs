//! Retention of finished pipelines: which are due for deletion, and the
//! `--retain-finished` duration (`90s`, `30m`, `12h`, `7d`).

use std::collections::HashMap;
use std::time::Duration;

/// Updates `finished_since` (pipeline id -> when first seen finished) with
/// the pipelines finished now, and returns those finished for `retain_ms`
/// or longer. A pipeline no longer finished (retried) loses its entry, so
/// its clock starts again when it finishes again.
pub fn due(
    finished_since: &mut HashMap<String, u64>,
    finished_now: Vec<String>,
    now_ms: u64,
    retain_ms: u64,
) -> Vec<String> {
    let mut still = HashMap::with_capacity(finished_now.len());
    for id in finished_now {
        let since = finished_since.get(&id).copied().unwrap_or(now_ms);
        still.insert(id, since);
    }
    *finished_since = still;
    let mut due: Vec<String> = finished_since
        .iter()
        .filter(|&(_, &since)| now_ms.saturating_sub(since) >= retain_ms)
        .map(|(id, _)| id.clone())
        .collect();
    due.sort();
    due
}

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

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_pipeline_is_due_once_finished_for_the_retention() {
        let mut since = HashMap::new();
        assert!(due(&mut since, ids(&["a"]), 1_000, 500).is_empty());
        assert!(due(&mut since, ids(&["a", "b"]), 1_400, 500).is_empty());
        assert_eq!(due(&mut since, ids(&["a", "b"]), 1_500, 500), ids(&["a"]));
        assert_eq!(
            due(&mut since, ids(&["a", "b"]), 1_900, 500),
            ids(&["a", "b"])
        );
    }

    #[test]
    fn a_pipeline_retried_meanwhile_starts_its_clock_again() {
        let mut since = HashMap::new();
        due(&mut since, ids(&["a"]), 1_000, 500);
        due(&mut since, ids(&[]), 1_200, 500); // retried: running again
        assert!(due(&mut since, ids(&["a"]), 1_600, 500).is_empty());
        assert_eq!(due(&mut since, ids(&["a"]), 2_100, 500), ids(&["a"]));
    }

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
