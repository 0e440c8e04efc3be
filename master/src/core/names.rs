//! Validation of names and relative paths that end up in store paths.

use super::limits::{NAME_BYTES_MAX, TEXT_BYTES_MAX};

/// Checks a pipeline, group, parameter or worker name: it becomes a path
/// component of output prefixes, so it must be short and unambiguous.
/// Returns the reason it is refused, phrased to follow "`what` ...".
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("{what} {name:?} {why}"));
    if name.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if name.len() > NAME_BYTES_MAX {
        return refuse(&format!("is longer than {NAME_BYTES_MAX} bytes"));
    }
    if name.contains('/') || name.contains('\\') {
        return refuse("contains a path separator");
    }
    if name.contains("..") {
        return refuse("contains \"..\"");
    }
    if name.chars().any(char::is_control) {
        return refuse("contains a control character");
    }
    if name.starts_with('.') {
        return refuse("starts with '.'");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return refuse("may only use letters, digits, '_', '-' and '.'");
    }
    Ok(())
}

/// Checks an output file name relative to an attempt's prefix: components
/// separated by '/', none empty, "." or "..", no control characters, so the
/// name can never escape the attempt's directory.
pub fn check_relative_path(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("output name is empty".into());
    }
    if name.len() > TEXT_BYTES_MAX {
        return Err(format!("output name is longer than {TEXT_BYTES_MAX} bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("output name {name:?} contains a control character"));
    }
    if name.contains('\\') {
        return Err(format!("output name {name:?} contains a backslash"));
    }
    for part in name.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!(
                "output name {name:?} must be a relative path without empty, '.' or '..' parts"
            ));
        }
    }
    Ok(())
}

/// Cuts `text` to at most `bytes_max` bytes on a character boundary.
pub fn truncate(text: &str, bytes_max: usize) -> String {
    if text.len() <= bytes_max {
        return text.to_string();
    }
    let mut end = bytes_max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_what_would_break_paths() {
        assert!(check_name("group", "extract-2026.v1").is_ok());
        for bad in [
            "", "a/b", "..", "a..b", "bad\u{7}", ".hidden", "sp ace", "x\\y",
        ] {
            assert!(check_name("group", bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_name("group", &"a".repeat(65)).is_err());
        let err = check_name("group", "a/b").unwrap_err();
        assert_eq!(err, "group \"a/b\" contains a path separator");
    }

    #[test]
    fn relative_paths_cannot_escape() {
        assert!(check_relative_path("part-00000").is_ok());
        assert!(check_relative_path("sub/dir/file.txt").is_ok());
        for bad in ["", "/abs", "../up", "a/../b", "a//b", "./a", "a/", "nul\0"] {
            assert!(check_relative_path(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
