//! `inputs` entries that are object URLs (`s3://bucket/in/*.txt`): listed
//! in the bucket instead of globbed on disk, with the sizes the listing
//! gives, so they are cut into units like local files.
//!
//! The bucket is listed under the key's literal part up to its last `/`
//! before the first glob character (`*`, `?`, `[`); the rest of each key is
//! matched with `glob`'s patterns, where `*` and `?` stop at `/` as they
//! do on disk (`**` crosses it). Credentials, region and endpoint come from
//! the `AWS_*` variables, as on the master and workers.

use std::future::Future;

use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use taskmaster_spec::object_url::{OBJECT_URL_SCHEME, open_bucket, split_object_url};

/// Most objects one listing may look at, so a pattern over a huge bucket
/// fails instead of running on.
pub const LISTED_OBJECTS_MAX: usize = 1_000_000;

/// Why an object URL pattern could not be expanded.
#[derive(Debug)]
pub enum ListError {
    /// The pattern itself is malformed.
    BadPattern(String),
    /// The bucket could not be listed.
    Store(String),
}

/// The objects `pattern` matches, as `(URL, size in bytes)`.
pub fn list_objects(pattern: &str) -> Result<Vec<(String, u64)>, ListError> {
    let (bucket, key_pattern) =
        split_object_url(pattern).map_err(|e| ListError::BadPattern(e.to_string()))?;
    if key_pattern.is_empty() {
        return Err(ListError::BadPattern(
            "name objects or a pattern after the bucket".into(),
        ));
    }
    let matcher =
        glob::Pattern::new(key_pattern).map_err(|e| ListError::BadPattern(e.to_string()))?;
    let folder = listing_folder(key_pattern);
    let store = open_bucket(bucket).map_err(|e| ListError::Store(e.to_string()))?;
    let options = glob::MatchOptions {
        require_literal_separator: true,
        ..glob::MatchOptions::new()
    };
    block_on(async move {
        let folder = ObjectPath::parse(folder).map_err(|e| ListError::BadPattern(e.to_string()))?;
        let mut listing = store.list((!folder.as_ref().is_empty()).then_some(&folder));
        let mut matched = Vec::new();
        let mut listed = 0;
        while let Some(meta) = listing
            .try_next()
            .await
            .map_err(|e| ListError::Store(e.to_string()))?
        {
            listed += 1;
            if listed > LISTED_OBJECTS_MAX {
                return Err(ListError::Store(format!(
                    "more than {LISTED_OBJECTS_MAX} objects under {folder}"
                )));
            }
            let key = meta.location.as_ref();
            if matcher.matches_with(key, options) {
                matched.push((format!("{OBJECT_URL_SCHEME}{bucket}/{key}"), meta.size));
            }
        }
        matched.sort();
        Ok(matched)
    })
}

/// The folder to list for `key_pattern`: its literal part up to the first
/// glob character, cut back to the last `/` (listing prefixes match whole
/// path segments).
fn listing_folder(key_pattern: &str) -> &str {
    let literal_len = key_pattern
        .find(['*', '?', '['])
        .unwrap_or(key_pattern.len());
    let literal = &key_pattern[..literal_len];
    literal.rfind('/').map_or("", |slash| &literal[..slash])
}

/// Runs `future` to completion on a runtime of its own, on a thread of its
/// own: pipeline files are loaded by sync code that may itself run inside
/// a tokio runtime, where blocking on another runtime is not allowed.
fn block_on<T: Send>(future: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for listing the bucket")
                    .block_on(future)
            })
            .join()
            .expect("listing the bucket panicked")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_folder_before_the_first_glob_character() {
        assert_eq!(listing_folder("in/2026/*.txt"), "in/2026");
        assert_eq!(listing_folder("in/part-*/x.txt"), "in");
        assert_eq!(listing_folder("in/a.txt"), "in");
        assert_eq!(listing_folder("*.txt"), "");
        assert_eq!(listing_folder("in/[ab]/c"), "in");
    }

    #[test]
    fn bad_patterns_are_refused_before_listing() {
        let bad = |pattern| match list_objects(pattern) {
            Err(ListError::BadPattern(message)) => message,
            other => panic!("{pattern}: {other:?}"),
        };
        assert!(bad("s3://bucket").contains("after the bucket"));
        assert!(bad("s3:///in/*.txt").contains("no bucket"));
        assert!(bad("s3://bucket/in/[x.txt").contains("invalid range pattern"));
    }
}
