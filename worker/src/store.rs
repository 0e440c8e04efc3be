//! Remote stores: everything the worker does with objects named by URL
//! (`s3://bucket/key`, through `object_store`).
//!
//! A local store keeps the fast path: the task writes straight into
//! `store_root/output_prefix` and nothing here runs. When the lease names a
//! remote store (`store_url`) or the unit has URL inputs, [`Staging`]
//! stands in for them with local files in the attempt's scratch directory
//! ([`Scratch`]), so every task, `exec` and built-in alike, sees only local
//! paths:
//!
//! - a whole input object is downloaded (streamed to disk in chunks);
//! - an input slice `[start, end)` of an object downloads only the bytes
//!   the slice's lines can need: from `start - 1` (the byte that says
//!   whether a line begins at `start`) up to the first `\n` at or after
//!   `end - 1` (which ends the last line the slice owns), fetched in growing
//!   ranges past `end`. The task then gets a slice of that local copy with
//!   the same line ownership (see [`crate::lines`]), so a large object cut
//!   into many units is not downloaded by every one of them;
//! - the task writes to a local output directory, and each file it leaves
//!   there is uploaded to `<store_url>/<output_prefix><name>` after it
//!   succeeds, streamed through `object_store`'s `BufWriter` (one PUT for
//!   small files, a multipart upload above 10 MiB), before the commit.
//!
//! Built-in tasks are staged the same way as `exec` (downloaded, not
//! streamed from the store): their readers are blocking file readers, and a
//! slice's download is bounded as above anyway.
//!
//! Credentials, region and endpoint come from the standard `AWS_*`
//! variables of the worker's environment (`AWS_ENDPOINT` and
//! `AWS_ALLOW_HTTP=true` for an S3-compatible server). [`Stores`] keeps one
//! client per bucket for the worker's life. Every failure is a failed
//! attempt whose error names the object and what went wrong.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;
use taskmaster_proto::v1::{Lease, OutputFile};
use taskmaster_spec::object_url::{is_object_url, open_bucket, split_object_url};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::lines::LINE_BYTES_MAX_DEFAULT;
use crate::scratch::Scratch;
use crate::task::{CancelToken, InputSlice, TaskError, UnitContext};

/// Bytes read from a local file per write to an upload.
const UPLOAD_CHUNK_BYTES: usize = 1024 * 1024;
/// First range fetched past a slice's end to finish its last line; doubles
/// up to [`SLICE_TAIL_BYTES_STEP_MAX`] while no `\n` turns up.
const SLICE_TAIL_BYTES_FIRST: u64 = 64 * 1024;
const SLICE_TAIL_BYTES_STEP_MAX: u64 = 8 * 1024 * 1024;

/// The clients of the remote stores a worker has used: one per bucket,
/// made on first use, so connections and credentials are reused across
/// units.
#[derive(Default)]
pub struct Stores {
    clients: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl Stores {
    /// The client for `bucket`, made from the `AWS_*` variables the first
    /// time.
    pub fn bucket(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, TaskError> {
        let mut clients = self.clients.lock();
        if let Some(client) = clients.get(bucket) {
            return Ok(Arc::clone(client));
        }
        let client = open_bucket(bucket)?;
        clients.insert(bucket.to_string(), Arc::clone(&client));
        Ok(client)
    }

    /// Uses `client` for `bucket` from now on (tests use an in-memory store).
    pub fn insert(&self, bucket: &str, client: Arc<dyn ObjectStore>) {
        self.clients.lock().insert(bucket.to_string(), client);
    }

    /// The object `url` names, with its bucket's client.
    pub fn object(&self, url: &str) -> Result<Object, TaskError> {
        let (bucket, key) = split_object_url(url)?;
        Ok(Object {
            store: self.bucket(bucket)?,
            key: object_path(url, key)?,
            url: url.to_string(),
        })
    }
}

/// `key` as an `object_store` path, taken as is (no escaping), so the
/// object is the one the URL shows.
fn object_path(url: &str, key: &str) -> Result<ObjectPath, TaskError> {
    ObjectPath::parse(key).map_err(|e| TaskError::new(format!("bad object key in {url:?}: {e}")))
}

/// One object, named by its URL.
pub struct Object {
    store: Arc<dyn ObjectStore>,
    key: ObjectPath,
    url: String,
}

impl Object {
    fn error(&self, what: &str, e: impl std::fmt::Display) -> TaskError {
        TaskError::new(format!("cannot {what} {}: {e}", self.url))
    }

    /// Streams the whole object to the new file `dest`.
    pub async fn download(&self, dest: &Path, cancel: &CancelToken) -> Result<(), TaskError> {
        let got = self.store.get(&self.key).await;
        let mut stream = got.map_err(|e| self.error("download", e))?.into_stream();
        let mut file = create_file(dest).await?;
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| self.error("download", e))?
        {
            check_cancelled(cancel)?;
            file.write_all(&chunk)
                .await
                .map_err(|e| write_error(dest, e))?;
        }
        file.flush().await.map_err(|e| write_error(dest, e))
    }

    /// Downloads the bytes `slice` of this object can need into `dest` (see
    /// the module docs) and returns the slice of `dest` that owns the same
    /// lines.
    pub async fn download_slice(
        &self,
        slice: &InputSlice,
        dest: &Path,
        cancel: &CancelToken,
    ) -> Result<InputSlice, TaskError> {
        let size = self.store.head(&self.key).await;
        let size = size.map_err(|e| self.error("read", e))?.size;
        let mut file = create_file(dest).await?;
        if slice.start >= size || slice.start >= slice.end {
            // No line can start in the slice: an empty file owns none too.
            file.flush().await.map_err(|e| write_error(dest, e))?;
            return Ok(local_slice(dest, 0, 0));
        }
        let from = slice.start.saturating_sub(1);
        let mut fetch = Fetch {
            pos: from,
            newline_from: (slice.end - 1).max(from),
            done: false,
        };
        let mut want = slice.end.min(size);
        let mut tail = SLICE_TAIL_BYTES_FIRST;
        while !fetch.done && fetch.pos < size {
            if fetch.pos >= slice.end.saturating_add(LINE_BYTES_MAX_DEFAULT as u64) {
                return Err(self.error(
                    "read a slice of",
                    format!(
                        "a line runs on more than {LINE_BYTES_MAX_DEFAULT} bytes past byte {}",
                        slice.end
                    ),
                ));
            }
            let before = fetch.pos;
            self.fetch_range(&mut fetch, want, &mut file, dest, cancel)
                .await?;
            if fetch.pos == before && !fetch.done {
                return Err(self.error("read a slice of", "the store returned no bytes"));
            }
            want = fetch.pos.saturating_add(tail).min(size);
            tail = (tail * 2).min(SLICE_TAIL_BYTES_STEP_MAX);
        }
        file.flush().await.map_err(|e| write_error(dest, e))?;
        Ok(local_slice(dest, slice.start - from, slice.end - from))
    }

    /// Appends bytes `[fetch.pos, end)` to `file`, stopping after the first
    /// `\n` at or after `fetch.newline_from`.
    async fn fetch_range(
        &self,
        fetch: &mut Fetch,
        end: u64,
        file: &mut tokio::fs::File,
        dest: &Path,
        cancel: &CancelToken,
    ) -> Result<(), TaskError> {
        let options = GetOptions::new().with_range(Some(fetch.pos..end));
        let got = self.store.get_opts(&self.key, options).await;
        let mut stream = got.map_err(|e| self.error("download", e))?.into_stream();
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| self.error("download", e))?
        {
            check_cancelled(cancel)?;
            let skip = fetch
                .newline_from
                .saturating_sub(fetch.pos)
                .min(chunk.len() as u64) as usize;
            let newline = chunk[skip..].iter().position(|&b| b == b'\n');
            let keep = newline.map_or(chunk.len(), |i| skip + i + 1);
            file.write_all(&chunk[..keep])
                .await
                .map_err(|e| write_error(dest, e))?;
            fetch.pos += keep as u64;
            if newline.is_some() {
                // Dropping the stream ends the request early.
                fetch.done = true;
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Progress of a slice's download.
struct Fetch {
    /// Object offset of the next byte to fetch.
    pos: u64,
    /// A `\n` at or after this offset ends the download.
    newline_from: u64,
    /// That `\n` has been written.
    done: bool,
}

fn local_slice(path: &Path, start: u64, end: u64) -> InputSlice {
    InputSlice {
        path: path.to_path_buf(),
        start,
        end,
    }
}

/// Local stand-ins for one attempt's remote data; see the module docs.
/// Dropping it removes every local copy.
pub struct Staging {
    /// Holds the downloaded inputs and the local output directory; kept
    /// for its `Drop`, which removes them.
    _scratch: Scratch,
    /// Where outputs go after the task, for a remote store.
    upload_to: Option<UploadTo>,
}

/// The attempt's place in a remote store.
struct UploadTo {
    store: Arc<dyn ObjectStore>,
    /// `<store_url>/<output_prefix>`, for messages.
    url: String,
    /// The key prefix every output name is appended to (ends with `/`).
    key_prefix: String,
}

impl Staging {
    /// Downloads `unit`'s URL inputs and, when `lease` names a remote
    /// store, points `unit.output_dir` at a local directory to upload
    /// from. Does nothing for local inputs and a local store.
    pub async fn prepare(
        stores: &Stores,
        lease: &Lease,
        unit: &mut UnitContext,
    ) -> Result<Staging, TaskError> {
        let mut scratch = Scratch::new(unit);
        for input in &mut unit.inputs {
            let Some(url) = input.to_str().filter(|text| is_object_url(text)) else {
                continue;
            };
            let object = stores.object(url)?;
            let local = local_copy_path(&mut scratch, url).await?;
            object.download(&local, &unit.cancel).await?;
            *input = local;
        }
        for slice in &mut unit.input_slices {
            let Some(url) = slice.path.to_str().filter(|text| is_object_url(text)) else {
                continue;
            };
            let object = stores.object(url)?;
            let local = local_copy_path(&mut scratch, url).await?;
            *slice = object.download_slice(slice, &local, &unit.cancel).await?;
        }
        let mut upload_to = None;
        if !lease.store_url.is_empty() {
            let (bucket, base) = split_object_url(&lease.store_url)?;
            let base = if base.is_empty() {
                String::new()
            } else {
                format!("{base}/")
            };
            upload_to = Some(UploadTo {
                store: stores.bucket(bucket)?,
                url: format!(
                    "{}/{}",
                    lease.store_url.trim_end_matches('/'),
                    lease.output_prefix
                ),
                key_prefix: format!("{base}{}", lease.output_prefix),
            });
            unit.output_dir = scratch.next_file("output")?;
        }
        Ok(Staging {
            _scratch: scratch,
            upload_to,
        })
    }

    /// Uploads the task's output `files` from `dir` to the remote store
    /// (nothing for a local store). On an error or cancellation the upload
    /// in progress is aborted; objects already written stay for the sweep.
    pub async fn upload(
        &self,
        dir: &Path,
        files: &[OutputFile],
        cancel: &CancelToken,
    ) -> Result<(), TaskError> {
        let Some(to) = &self.upload_to else {
            return Ok(());
        };
        for file in files {
            let url = format!("{}{}", to.url, file.name);
            let key = object_path(&url, &format!("{}{}", to.key_prefix, file.name))?;
            upload_file(&to.store, key, &dir.join(&file.name), cancel)
                .await
                .map_err(|e| TaskError::new(format!("cannot upload output to {url}: {e}")))?;
        }
        Ok(())
    }
}

/// A new path for the local copy of `url` that keeps the object's file
/// name (an `exec` program may go by its extension), in a directory of its
/// own.
async fn local_copy_path(scratch: &mut Scratch, url: &str) -> Result<PathBuf, TaskError> {
    let dir = scratch.next_file("input")?;
    tokio::fs::create_dir(&dir)
        .await
        .map_err(|e| write_error(&dir, e))?;
    let name = url.rsplit('/').find(|part| !part.is_empty());
    Ok(dir.join(name.unwrap_or("object")))
}

/// Streams the local file `path` to `key`; aborts the upload on failure.
async fn upload_file(
    store: &Arc<dyn ObjectStore>,
    key: ObjectPath,
    path: &Path,
    cancel: &CancelToken,
) -> Result<(), String> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut writer = BufWriter::new(Arc::clone(store), key);
    let mut buf = vec![0u8; UPLOAD_CHUNK_BYTES];
    let copied: Result<(), String> = async {
        loop {
            check_cancelled(cancel).map_err(|e| e.to_string())?;
            let read = file.read(&mut buf).await;
            let read = read.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if read == 0 {
                break;
            }
            writer
                .write_all(&buf[..read])
                .await
                .map_err(|e| e.to_string())?;
        }
        writer.shutdown().await.map_err(|e| e.to_string())
    }
    .await;
    if copied.is_err() {
        // Best effort: a multipart upload left open costs storage until
        // the bucket's lifecycle rules clean it up.
        let _ = writer.abort().await;
    }
    copied
}

async fn create_file(path: &Path) -> Result<tokio::fs::File, TaskError> {
    tokio::fs::File::create(path)
        .await
        .map_err(|e| write_error(path, e))
}

fn write_error(path: &Path, e: std::io::Error) -> TaskError {
    TaskError::new(format!("cannot write {}: {e}", path.display()))
}

fn check_cancelled(cancel: &CancelToken) -> Result<(), TaskError> {
    match cancel.reason() {
        Some(reason) => Err(TaskError::new(format!("cancelled: {reason}"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
