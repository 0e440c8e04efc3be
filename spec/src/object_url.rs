//! Object URLs (`s3://bucket/some/key`): the only remote store a spec can
//! name, for inputs, outputs and a pipeline's store. The master's sweep,
//! the workers and the clients' input listing all read them here.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

/// The scheme of object URLs.
pub const OBJECT_URL_SCHEME: &str = "s3://";

/// Why a text is not an object URL, or its bucket cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ObjectUrlError(pub String);

/// True when `text` names an object (`s3://...`) rather than a local path.
pub fn is_object_url(text: &str) -> bool {
    text.starts_with(OBJECT_URL_SCHEME)
}

/// `s3://bucket/some/key/` into `("bucket", "some/key")`: the key without
/// its surrounding `/`, and empty for a URL that names only a bucket.
pub fn split_object_url(url: &str) -> Result<(&str, &str), ObjectUrlError> {
    let Some(rest) = url.strip_prefix(OBJECT_URL_SCHEME) else {
        return Err(ObjectUrlError(format!(
            "unsupported URL {url:?}: expected s3://bucket/key"
        )));
    };
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(ObjectUrlError(format!("URL {url:?} names no bucket")));
    }
    Ok((bucket, key.trim_matches('/')))
}

/// The client of `bucket`. Credentials, region and endpoint come from the
/// standard `AWS_*` variables (`AWS_ENDPOINT` and `AWS_ALLOW_HTTP=true`
/// for an S3-compatible server); nothing is contacted yet.
pub fn open_bucket(bucket: &str) -> Result<Arc<dyn ObjectStore>, ObjectUrlError> {
    let client = AmazonS3Builder::from_env()
        .with_url(format!("{OBJECT_URL_SCHEME}{bucket}"))
        .build()
        .map_err(|e| ObjectUrlError(format!("cannot open bucket {bucket:?}: {e}")))?;
    Ok(Arc::new(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_key() {
        assert_eq!(
            split_object_url("s3://b/in/a.txt").unwrap(),
            ("b", "in/a.txt")
        );
        assert_eq!(split_object_url("s3://b").unwrap(), ("b", ""));
        assert_eq!(split_object_url("s3://b/").unwrap(), ("b", ""));
        assert_eq!(split_object_url("s3://b/p/q/").unwrap(), ("b", "p/q"));
        assert!(
            split_object_url("s3:///k")
                .unwrap_err()
                .0
                .contains("no bucket")
        );
        assert!(
            split_object_url("gs://b/k")
                .unwrap_err()
                .0
                .contains("unsupported")
        );
        assert!(is_object_url("s3://b/k") && !is_object_url("/data/s3://x"));
    }
}
