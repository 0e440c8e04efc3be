//! Query strings and form bodies, read with errors that name the
//! parameter: a malformed or unknown one is a 400 that says which.

use std::str::FromStr;

use super::error::HttpError;

/// `text` percent-encoded: every byte but the unreserved ones (and those in
/// `also_keep`) escaped, for a path segment (`also_keep` empty) or a query
/// value that holds a path (`b"/"`).
pub fn percent_encode(text: &str, also_keep: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) || also_keep.contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Rows a page shows when the query does not say.
pub const PAGE_ROWS_DEFAULT: usize = 50;

/// The name-value pairs of a query string or a form.
#[derive(Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Refuses a parameter not in `known`.
    pub fn only(self, known: &[&str]) -> Result<Params, HttpError> {
        if let Some((name, _)) = self.0.iter().find(|(n, _)| !known.contains(&n.as_str())) {
            return Err(HttpError::bad_request(format!(
                "unknown parameter {name:?}; this accepts {}",
                known.join(", ")
            )));
        }
        Ok(self)
    }

    /// The value of `name` (the last one given), if given and not empty.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A number of at most `max`; `default` when not given.
    pub fn number<T>(&self, name: &str, default: T, max: T) -> Result<T, HttpError>
    where
        T: FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(text) = self.text(name) else {
            return Ok(default);
        };
        match text.parse::<T>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(HttpError::bad_request(format!(
                "parameter {name:?} must be a whole number from 0 to {max}, not {text:?}"
            ))),
        }
    }

    /// One of `allowed`, or None when not given.
    pub fn one_of(
        &self,
        name: &str,
        allowed: &[&'static str],
    ) -> Result<Option<&'static str>, HttpError> {
        let Some(text) = self.text(name) else {
            return Ok(None);
        };
        match allowed.iter().find(|a| **a == text) {
            Some(found) => Ok(Some(*found)),
            None => Err(HttpError::bad_request(format!(
                "parameter {name:?} must be one of {}, not {text:?}",
                allowed.join(", ")
            ))),
        }
    }

    /// A yes/no: `true`/`false` (or `on`, `1`, `0`, as forms send them);
    /// false when not given.
    pub fn flag(&self, name: &str) -> Result<bool, HttpError> {
        match self.text(name) {
            None => Ok(false),
            Some("true" | "on" | "1" | "yes") => Ok(true),
            Some("false" | "off" | "0" | "no") => Ok(false),
            Some(other) => Err(HttpError::bad_request(format!(
                "parameter {name:?} must be true or false, not {other:?}"
            ))),
        }
    }

    /// A text that must be given.
    pub fn required(&self, name: &str) -> Result<&str, HttpError> {
        self.text(name)
            .ok_or_else(|| HttpError::bad_request(format!("parameter {name:?} is required")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn errors_name_the_parameter() {
        let p = params(&[("limit", "x"), ("state", "weird"), ("down", "maybe")]);
        let e = p.number::<usize>("limit", 5, 10).unwrap_err();
        assert!(e.message.contains("\"limit\""), "{}", e.message);
        let e = p.one_of("state", &["failed"]).unwrap_err();
        assert!(e.message.contains("\"state\""), "{}", e.message);
        let e = p.flag("down").unwrap_err();
        assert!(e.message.contains("\"down\""), "{}", e.message);
        let e = params(&[("bogus", "1")]).only(&["limit"]).unwrap_err();
        assert!(e.message.contains("\"bogus\""), "{}", e.message);
        assert_eq!(params(&[("limit", "11")]).number("limit", 5, 10).ok(), None);
        assert_eq!(params(&[]).number("limit", 5, 10).ok(), Some(5));
    }
}
