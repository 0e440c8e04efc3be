//! Pipeline files: the TOML a user writes, turned into the `PipelineSpec`
//! the master accepts.
//!
//! ```toml
//! name = "example"
//! [params]
//! ds = "2026-11-21"
//! [[groups]]
//! name = "extract"
//! task = "exec"                           # default "exec"
//! command = ["python3", "extract.py"]     # runs in the pipeline file's folder
//! inputs = ["data/*.csv"]                 # first groups: globs, sized into units
//!                                         # (or objects: "s3://bucket/in/*.csv")
//! unit_bytes = 67108864                   # optional: target bytes per unit (0: one unit per file)
//! env = { LANG = "C" }                    # optional
//! max_attempts = 3                        # optional: attempts per unit, the first included
//! retry_delay = "90s"                     # optional: base delay before a retry (ms, s, m, h; "0": at once; default 2m)
//! max_in_flight = 4                       # optional: units of this group leased at once, at most
//! timeout = "30m"                         # optional: an attempt running longer is killed and fails (1s to 168h)
//! config = { chunk_bytes = 1048576 }      # optional: settings of built-in tasks
//! [[groups]]
//! name = "aggregate"
//! command = ["python3", "agg.py"]
//! after = ["extract"]                    # one unit per upstream unit, or:
//! # partitions = 8                       # shuffle: unit r reads part-r of every upstream output
//! # gather = true                         # merge: one unit reads every upstream output
//! ```
//!
//! The loader resolves everything that depends on the client's machine
//! (the folder the file is in, the files a glob matches) so the master and
//! workers get absolute paths (or object URLs, listed in their bucket: see
//! [`remote`]). Names, `after` references and cycles are
//! checked by the master, which is the one authority on what a valid
//! pipeline is; only mistakes that are plainly local are caught here.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use taskmaster_proto::v1::{GroupSpec, PipelineSpec};
use taskmaster_spec::object_url::is_object_url;

use crate::sizing::{UNIT_BYTES_DEFAULT, size_units};

pub mod remote;
mod schedule;

/// The task a group runs when the file does not name one.
pub const TASK_DEFAULT: &str = "exec";

/// Why a pipeline file (or a `--param`) could not be turned into a spec.
#[derive(Debug, thiserror::Error)]
pub enum PipelineFileError {
    /// The file could not be read or its folder resolved.
    #[error("cannot read pipeline file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The TOML is malformed or does not fit the schema. `message` is the
    /// toml crate's report, which names the line and column.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value in the file is well-formed TOML but not acceptable.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// An `inputs` entry is not a valid glob pattern.
    #[error("{path}: group `{group}`: invalid glob `{glob}`: {message}")]
    BadGlob {
        path: PathBuf,
        group: String,
        glob: String,
        message: String,
    },
    /// An `inputs` glob matches no regular file (or no object); submitting
    /// would create a group with no units, which is almost always a mistake.
    #[error("{path}: group `{group}`: glob `{glob}` matches no file")]
    NoMatch {
        path: PathBuf,
        group: String,
        glob: String,
    },
    /// A `--param` argument is not of the form `KEY=VALUE`.
    #[error("invalid parameter `{arg}`: expected KEY=VALUE with a non-empty KEY")]
    BadParam { arg: String },
}

/// Why a duration text (`90s`, `2m`, `500ms`, `0`) could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration `{text}`: expected a whole number with a unit (ms, s, m or h), \
     e.g. `500ms`, `90s`, `2m`, or `0`"
)]
pub struct DurationError {
    pub text: String,
}

/// The file's top level, exactly as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineToml {
    name: String,
    /// Values may be strings, numbers, booleans or dates: all become text,
    /// so `ds = 2026-11-21` (a TOML date) works as users expect.
    #[serde(default)]
    params: BTreeMap<String, toml::Value>,
    #[serde(default)]
    groups: Vec<GroupToml>,
    /// Makes the file a schedule (`tmctl schedule add`); see [`schedule`].
    schedule: Option<schedule::ScheduleToml>,
}

/// One `[[groups]]` table, exactly as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupToml {
    name: String,
    #[serde(default = "task_default")]
    task: String,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, toml::Value>,
    /// Attempts per unit at most, the first included
    /// (GroupSpec.max_attempts); absent means the master's default.
    max_attempts: Option<u32>,
    /// Refused with an explanation (see `check_retries`): this key used to
    /// mean attempts, where Airflow, Celery and Temporal read retries
    /// after the first attempt.
    retries: Option<toml::Value>,
    /// Base delay before a failed unit's next attempt, as text (`"90s"`;
    /// the integer 0 is accepted too); absent means the master's default.
    retry_delay: Option<toml::Value>,
    /// Units of this group leased at once, at most (0: no limit).
    #[serde(default)]
    max_in_flight: u32,
    /// Longest an attempt may run, as text (`"30m"`); absent means no
    /// limit. The master checks the bounds.
    timeout: Option<toml::Value>,
    /// Shuffle: this many units, unit r reading partition r of every
    /// upstream output.
    #[serde(default)]
    partitions: u32,
    /// Merge: one unit reading every upstream output.
    #[serde(default)]
    gather: bool,
    /// Target input bytes per first-group unit (0: one unit per file).
    unit_bytes: Option<u64>,
    /// Task settings (built-in tasks read theirs here).
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
}

fn task_default() -> String {
    TASK_DEFAULT.to_string()
}

/// Reads the pipeline file at `path` and returns the spec to submit.
///
/// Each group's `workdir` is the file's folder (absolute, canonical), so
/// relative paths in commands mean what they meant next to the file.
/// `inputs` globs are expanded relative to that folder into absolute paths
/// of regular files, sorted and de-duplicated. `param_overrides` replace or
/// add to the file's `[params]`, in order.
pub fn load_pipeline(
    path: &Path,
    param_overrides: &[(String, String)],
) -> Result<PipelineSpec, PipelineFileError> {
    Ok(load_file(path, param_overrides)?.0)
}

/// Reads a pipeline file with a `[schedule]` table into the schedule to
/// register (its pipeline loaded as [`load_pipeline`] does: inputs are
/// resolved now, and every run reads the same ones).
pub fn load_schedule(
    path: &Path,
    param_overrides: &[(String, String)],
) -> Result<taskmaster_proto::v1::ScheduleSpec, PipelineFileError> {
    let (pipeline, table, text) = load_file(path, param_overrides)?;
    let table = table.ok_or_else(|| PipelineFileError::Invalid {
        path: path.to_path_buf(),
        message: "the file has no [schedule] table (see `tmctl schedule add --help`)".into(),
    })?;
    schedule::schedule_spec(path, &text, table, pipeline)
}

/// [`load_pipeline`] for async code: the file is read, its globs expanded
/// and any bucket listed on tokio's blocking pool, so the caller's runtime
/// keeps serving meanwhile (a listing of a large bucket takes seconds).
pub async fn load_pipeline_async(
    path: PathBuf,
    param_overrides: Vec<(String, String)>,
) -> Result<PipelineSpec, PipelineFileError> {
    off_the_runtime(move || load_pipeline(&path, &param_overrides)).await
}

/// [`load_schedule`] for async code, as [`load_pipeline_async`].
pub async fn load_schedule_async(
    path: PathBuf,
    param_overrides: Vec<(String, String)>,
) -> Result<taskmaster_proto::v1::ScheduleSpec, PipelineFileError> {
    off_the_runtime(move || load_schedule(&path, &param_overrides)).await
}

/// Runs `load` on tokio's blocking pool. A panic in it is a bug, passed on
/// to the caller as a panic.
async fn off_the_runtime<T: Send + 'static>(
    load: impl FnOnce() -> Result<T, PipelineFileError> + Send + 'static,
) -> Result<T, PipelineFileError> {
    tokio::task::spawn_blocking(load)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// The spec, the `[schedule]` table if any, and the file's text.
fn load_file(
    path: &Path,
    param_overrides: &[(String, String)],
) -> Result<(PipelineSpec, Option<schedule::ScheduleToml>, String), PipelineFileError> {
    let read_error = |source| PipelineFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    let folder = path
        .canonicalize()
        .map_err(read_error)?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let file: PipelineToml = toml::from_str(&text).map_err(|e| PipelineFileError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;

    let mut params = text_map(path, "params", file.params)?;
    for (key, value) in param_overrides {
        if key.is_empty() {
            return Err(PipelineFileError::BadParam {
                arg: format!("={value}"),
            });
        }
        params.insert(key.clone(), value.clone());
    }
    let groups = file
        .groups
        .into_iter()
        .map(|group| group_spec(path, &folder, group))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = PipelineSpec {
        name: file.name,
        params: params.into_iter().collect(),
        groups,
    };
    Ok((spec, file.schedule, text))
}

/// Parses one `--param KEY=VALUE` argument. The value may contain `=`;
/// only the first one splits.
pub fn parse_param(arg: &str) -> Result<(String, String), PipelineFileError> {
    match arg.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(PipelineFileError::BadParam {
            arg: arg.to_string(),
        }),
    }
}

/// Reads a duration as a pipeline file or `tmctl config` writes it: a
/// whole number followed by `ms`, `s`, `m` or `h` (`500ms`, `90s`, `2m`),
/// or a bare `0`. Returns milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, DurationError> {
    use taskmaster_spec::duration::{UP_TO_HOURS, parse_ms};
    parse_ms(text, UP_TO_HOURS).ok_or_else(|| DurationError {
        text: text.to_string(),
    })
}

/// A group's `retry_delay` value in milliseconds: a duration text, or
/// the integer 0 (any other number is ambiguous without a unit).
fn retry_delay_ms(value: &toml::Value) -> Result<u64, String> {
    match value {
        toml::Value::String(text) => {
            parse_duration_ms(text).map_err(|e| format!("`retry_delay`: {e}"))
        }
        toml::Value::Integer(0) => Ok(0),
        other => Err(format!(
            "`retry_delay` must be a duration text such as \"90s\", \"2m\", \"500ms\" or \"0\", \
             not {other}"
        )),
    }
}

/// A group's `timeout` value in milliseconds: a duration text.
fn timeout_ms(value: &toml::Value) -> Result<u64, String> {
    match value {
        toml::Value::String(text) => parse_duration_ms(text).map_err(|e| format!("`timeout`: {e}")),
        other => Err(format!(
            "`timeout` must be a duration text such as \"30m\", \"2h\" or \"90s\", not {other}"
        )),
    }
}

/// Converts one group table, checking the few things only the client can
/// see or that would otherwise fail late on a worker.
fn group_spec(
    path: &Path,
    folder: &Path,
    group: GroupToml,
) -> Result<GroupSpec, PipelineFileError> {
    let invalid = |message: String| PipelineFileError::Invalid {
        path: path.to_path_buf(),
        message: format!("group `{}`: {message}", group.name),
    };
    if group.task == TASK_DEFAULT && group.command.is_empty() {
        return Err(invalid("task `exec` needs a non-empty `command`".into()));
    }
    if let Some(retries) = &group.retries {
        return Err(invalid(format!(
            "`retries = {retries}` is not accepted: it would be read as retries after the first \
             attempt, but files written for earlier versions meant attempts. Write \
             `max_attempts = N` (attempts, the first included; `max_attempts = {retries}` \
             keeps the old behaviour)"
        )));
    }
    // 0 would silently mean "the master's default" on the wire, which is
    // not what someone writing `max_attempts = 0` means.
    if group.max_attempts == Some(0) {
        return Err(invalid(
            "`max_attempts` counts attempts, the first included, and must be at least 1".into(),
        ));
    }
    let retry_delay_ms = group
        .retry_delay
        .as_ref()
        .map(retry_delay_ms)
        .transpose()
        .map_err(invalid)?;
    let timeout_ms = group
        .timeout
        .as_ref()
        .map(timeout_ms)
        .transpose()
        .map_err(invalid)?;
    let env = text_map(path, &format!("groups.{}.env", group.name), group.env)?;
    let config = text_map(path, &format!("groups.{}.config", group.name), group.config)?;
    let sized = sized_inputs(path, folder, &group.name, &group.inputs)?;
    let unit_bytes = group.unit_bytes.unwrap_or(UNIT_BYTES_DEFAULT);
    Ok(GroupSpec {
        name: group.name,
        task: group.task,
        command: group.command,
        workdir: folder.to_string_lossy().into_owned(),
        input_units: size_units(&sized, unit_bytes),
        after: group.after,
        env: env.into_iter().collect(),
        max_attempts: group.max_attempts.unwrap_or(0),
        partitions: group.partitions,
        gather: group.gather,
        config: config.into_iter().collect(),
        retry_delay_ms,
        max_in_flight: group.max_in_flight,
        timeout_ms,
        ..Default::default()
    })
}

/// Every file (or object) the `inputs` entries of group `group` match, with
/// its size, sorted by name and de-duplicated.
fn sized_inputs(
    path: &Path,
    folder: &Path,
    group: &str,
    globs: &[String],
) -> Result<Vec<(String, u64)>, PipelineFileError> {
    let invalid = |message: String| PipelineFileError::Invalid {
        path: path.to_path_buf(),
        message: format!("group `{group}`: {message}"),
    };
    let mut sized = BTreeMap::new();
    for glob in globs {
        if !is_object_url(glob) {
            for input in expand_glob(path, folder, group, glob)? {
                let size = std::fs::metadata(&input)
                    .map_err(|e| invalid(format!("cannot read input {input}: {e}")))?
                    .len();
                sized.insert(input, size);
            }
            continue;
        }
        let objects = remote::list_objects(glob).map_err(|e| match e {
            remote::ListError::BadPattern(message) => PipelineFileError::BadGlob {
                path: path.to_path_buf(),
                group: group.to_string(),
                glob: glob.clone(),
                message,
            },
            remote::ListError::Store(e) => invalid(format!("cannot list {glob}: {e}")),
        })?;
        if objects.is_empty() {
            return Err(PipelineFileError::NoMatch {
                path: path.to_path_buf(),
                group: group.to_string(),
                glob: glob.clone(),
            });
        }
        sized.extend(objects);
    }
    Ok(sized.into_iter().collect())
}

/// Turns a table of scalar TOML values into text; arrays and tables have
/// no obvious text form, so they are refused.
fn text_map(
    path: &Path,
    table: &str,
    values: BTreeMap<String, toml::Value>,
) -> Result<BTreeMap<String, String>, PipelineFileError> {
    values
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Datetime(d) => d.to_string(),
                toml::Value::Array(_) | toml::Value::Table(_) => {
                    return Err(PipelineFileError::Invalid {
                        path: path.to_path_buf(),
                        message: format!(
                            "`{table}.{key}` must be a string, number, boolean or date"
                        ),
                    });
                }
            };
            Ok((key, text))
        })
        .collect()
}

/// Expands one `inputs` glob into the absolute paths of the regular files
/// it matches. A relative glob is relative to `folder`, whose own text is
/// escaped so a folder named like `data[1]` is not read as a pattern.
fn expand_glob(
    path: &Path,
    folder: &Path,
    group: &str,
    glob: &str,
) -> Result<Vec<String>, PipelineFileError> {
    let bad_glob = |message: String| PipelineFileError::BadGlob {
        path: path.to_path_buf(),
        group: group.to_string(),
        glob: glob.to_string(),
        message,
    };
    let pattern = if Path::new(glob).is_absolute() {
        glob.to_string()
    } else {
        let base = glob::Pattern::escape(&folder.to_string_lossy());
        format!("{}/{glob}", base.trim_end_matches('/'))
    };
    let entries = glob::glob(&pattern).map_err(|e| bad_glob(e.to_string()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| bad_glob(e.to_string()))?;
        if entry.is_file() {
            files.push(normalize(&entry).to_string_lossy().into_owned());
        }
    }
    if files.is_empty() {
        return Err(PipelineFileError::NoMatch {
            path: path.to_path_buf(),
            group: group.to_string(),
            glob: glob.to_string(),
        });
    }
    Ok(files)
}

/// Removes `.` and `..` components without touching the file system, so
/// `../data/a.csv` and `data/../../data/a.csv` de-duplicate, while symlinked
/// files keep the names the user gave them (canonicalizing would not).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests;
