//! Validation of names and relative paths that end up in store paths.

use super::limits::{NAME_BYTES_MAX, PATH_COMPONENT_BYTES_MAX, TEXT_BYTES_MAX};

/// Bytes of a client's text echoed in an error message, at most: a refusal
/// must not send back (or log) whatever size the client sent.
pub const ECHO_BYTES_MAX: usize = 100;

/// `text` quoted for an error message, cut to [`ECHO_BYTES_MAX`] bytes
/// with "..." after the quote when cut.
pub fn shown(text: &str) -> String {
    if text.len() <= ECHO_BYTES_MAX {
        return format!("{text:?}");
    }
    format!("{:?}...", truncate(text, ECHO_BYTES_MAX))
}

/// Checks a pipeline, group, parameter or worker name: it becomes a path
/// component of output prefixes, so it must be short and unambiguous.
/// Returns the reason it is refused, phrased to follow "`what` ...".
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("{what} {} {why}", shown(name)));
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
        return Err(format!(
            "output name {} contains a control character",
            shown(name)
        ));
    }
    if name.contains('\\') {
        return Err(format!("output name {} contains a backslash", shown(name)));
    }
    for part in name.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!(
                "output name {} must be a relative path without empty, '.' or '..' parts",
                shown(name)
            ));
        }
        if part.len() > PATH_COMPONENT_BYTES_MAX {
            return Err(format!(
                "output name {} has a part longer than {PATH_COMPONENT_BYTES_MAX} bytes \
                 (no file system takes it)",
                shown(name)
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
    fn echoed_text_is_cut_and_long_path_parts_refused() {
        let long = "x".repeat(10_000);
        let err = check_name("group", &long).unwrap_err();
        assert!(err.len() < 200, "{err}");
        assert!(
            err.contains("...") && err.contains("longer than 64 bytes"),
            "{err}"
        );
        assert!(check_relative_path(&format!("dir/{}", "y".repeat(255))).is_ok());
        let err = check_relative_path(&format!("dir/{}", "y".repeat(256))).unwrap_err();
        assert!(err.contains("longer than 255 bytes"), "{err}");
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
