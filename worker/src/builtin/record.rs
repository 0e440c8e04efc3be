//! `key\tvalue` records, the stable hash that partitions them, and the
//! orders `sort` and `merge` put them in.

use std::cmp::Ordering;

use super::settings::Settings;
use crate::task::TaskError;

/// Longest piece of a bad line quoted in an error message.
const QUOTE_BYTES_MAX: usize = 80;

/// FNV-1a, 64 bits: a fixed, fast, well-spread hash of `bytes`, the same
/// in every process and on every machine (std's hasher is seeded randomly
/// per process, so two workers would disagree on a key's partition).
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// The partition of `key` among `partitions` (0 and 1 both mean a single
/// partition, 0).
pub fn hash_partition(key: &[u8], partitions: u32) -> u32 {
    if partitions <= 1 {
        return 0;
    }
    (fnv1a_64(key) % u64::from(partitions)) as u32
}

/// `bytes` for an error message: lossily decoded, cut to a bounded length.
pub(crate) fn quote(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(QUOTE_BYTES_MAX)];
    let text = format!("{:?}", String::from_utf8_lossy(cut));
    if cut.len() < bytes.len() {
        format!("{text}...")
    } else {
        text
    }
}

/// Where the tab is in `line` (its length when there is none) and, when
/// `numeric`, the value parsed as a decimal `i64` (else 0).
pub(crate) fn parse_line(line: &[u8], numeric: bool) -> Result<(usize, i64), String> {
    let tab = line
        .iter()
        .position(|&byte| byte == b'\t')
        .unwrap_or(line.len());
    if !numeric {
        return Ok((tab, 0));
    }
    let value = line.get(tab + 1..).unwrap_or_default();
    let parsed = std::str::from_utf8(value)
        .ok()
        .filter(|text| !text.starts_with('+'))
        .and_then(|text| text.parse::<i64>().ok());
    match parsed {
        Some(number) => Ok((tab, number)),
        None if tab == line.len() => Err(format!(
            "{} has no tab: expected a `key<TAB>number` record",
            quote(line)
        )),
        None => Err(format!(
            "the value {} of key {} is not a decimal 64-bit integer",
            quote(value),
            quote(&line[..tab])
        )),
    }
}

/// One parsed record; the line is kept whole so it is written back as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// The line, without its `\n`.
    pub(crate) line: Vec<u8>,
    /// Where the key ends: the first tab, or the line's length.
    pub(crate) tab: usize,
    /// The value as a number, when the reader needed one; else 0.
    pub(crate) value: i64,
}

impl Record {
    /// Parses `line`; see [`parse_line`].
    pub(crate) fn parse(line: Vec<u8>, numeric: bool) -> Result<Self, String> {
        let (tab, value) = parse_line(&line, numeric)?;
        Ok(Self { line, tab, value })
    }

    /// The bytes before the first tab.
    pub(crate) fn key(&self) -> &[u8] {
        &self.line[..self.tab]
    }

    /// What holding this record in memory costs, roughly.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.line.capacity() + std::mem::size_of::<Self>()
    }
}

/// Which field `sort` and `merge` order records by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SortBy {
    /// The key, bytewise.
    Key,
    /// The value as a number; equal values by key, ascending.
    Value,
}

/// An order of records, from the `sort_by` and `order` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SortSpec {
    pub(crate) by: SortBy,
    /// `order=desc`: reverses the `sort_by` field's order (not the
    /// tie-break by key, which stays ascending).
    pub(crate) descending: bool,
}

impl SortSpec {
    /// Reads `sort_by` (`key` | `value`) and `order` (`asc` | `desc`).
    pub(crate) fn read(settings: &Settings<'_>) -> Result<Self, TaskError> {
        let by = match settings.choice("sort_by", &["key", "value"])? {
            "key" => SortBy::Key,
            _ => SortBy::Value,
        };
        let descending = settings.choice("order", &["asc", "desc"])? == "desc";
        Ok(Self { by, descending })
    }

    /// True when records must have numeric values.
    pub(crate) fn numeric(&self) -> bool {
        self.by == SortBy::Value
    }

    /// `ordering` of the sort field, turned around for `desc`.
    pub(crate) fn directed(&self, ordering: Ordering) -> Ordering {
        if self.descending {
            ordering.reverse()
        } else {
            ordering
        }
    }

    /// How `a` and `b` compare in this order.
    pub(crate) fn compare(&self, a: &Record, b: &Record) -> Ordering {
        match self.by {
            SortBy::Key => self.directed(a.key().cmp(b.key())),
            SortBy::Value => self
                .directed(a.value.cmp(&b.value))
                .then_with(|| a.key().cmp(b.key())),
        }
    }

    /// The settings that give this order, for messages.
    pub(crate) fn describe(&self) -> String {
        let by = match self.by {
            SortBy::Key => "key",
            SortBy::Value => "value",
        };
        let order = if self.descending { "desc" } else { "asc" };
        format!("sort_by={by} order={order}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_64_matches_the_published_test_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn hash_partition_is_in_range_and_single_without_partitions() {
        assert_eq!(hash_partition(b"anything", 0), 0);
        assert_eq!(hash_partition(b"anything", 1), 0);
        assert_eq!(
            hash_partition(b"foobar", 7),
            (0x85944171f73967e8u64 % 7) as u32
        );
        let mut seen = [false; 5];
        for word in 0..100u32 {
            seen[hash_partition(word.to_string().as_bytes(), 5) as usize] = true;
        }
        assert!(
            seen.iter().all(|&hit| hit),
            "100 keys reach all 5 partitions"
        );
    }

    #[test]
    fn records_split_at_the_first_tab() {
        let record = Record::parse(b"k\tv\tw".to_vec(), false).unwrap();
        assert_eq!((record.key(), record.tab), (&b"k"[..], 1));
        let record = Record::parse(b"no tab".to_vec(), false).unwrap();
        assert_eq!(record.key(), b"no tab");
        let record = Record::parse(b"w\t-42".to_vec(), true).unwrap();
        assert_eq!(record.value, -42);
    }

    #[test]
    fn numeric_values_must_be_plain_integers() {
        for bad in [
            &b"w\t"[..],
            b"w\t1.5",
            b"w\t+3",
            b"w\t 3",
            b"w\t3\r",
            b"w\t\xff",
            b"w\t99999999999999999999",
        ] {
            let err = Record::parse(bad.to_vec(), true).unwrap_err();
            assert!(err.contains("is not a decimal 64-bit integer"), "{err}");
        }
        let err = Record::parse(b"just a word".to_vec(), true).unwrap_err();
        assert!(err.contains("has no tab"), "{err}");
    }

    #[test]
    fn value_order_breaks_ties_by_key_ascending_also_when_descending() {
        let spec = SortSpec {
            by: SortBy::Value,
            descending: true,
        };
        let rec = |line: &str| Record::parse(line.as_bytes().to_vec(), true).unwrap();
        let mut records = [rec("b\t1"), rec("a\t1"), rec("c\t5"), rec("z\t-2")];
        records.sort_by(|a, b| spec.compare(a, b));
        let lines: Vec<&[u8]> = records.iter().map(|r| &r.line[..]).collect();
        assert_eq!(lines, [&b"c\t5"[..], b"a\t1", b"b\t1", b"z\t-2"]);
    }

    #[test]
    fn quotes_are_bounded() {
        let long = vec![b'x'; 1000];
        let quoted = quote(&long);
        assert!(quoted.len() < 100 && quoted.ends_with("..."), "{quoted}");
        assert_eq!(quote(b"a\xffb"), "\"a\u{fffd}b\"");
    }
}
