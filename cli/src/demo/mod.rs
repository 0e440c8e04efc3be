//! `tmctl demo`: the whole system in one command, with nothing to install.
//!
//! [`run_demo`] opens a master on a data dir (a new temporary one unless
//! given), serves it on 127.0.0.1 and starts in-process workers, all in
//! this process; writes scaled copies of the bundled corpus (or takes the
//! files of a folder) as input; submits a five-stage word count
//! (`split` → `map` → `reduce` → `sort` → `merge`), reports the pipeline's
//! status as it runs, reads the words back from the merge unit's committed
//! output, and stops everything in order: workers, server, journal.
//!
//! - [`corpus`]: the bundled public-domain texts and their scaled copies.
//! - [`input`]: the input files and the split group's units.
//! - [`spec`]: the word count pipeline, built in code.
//! - [`embedded`]: the in-process master and workers.
//! - [`progress`]: live progress bars or lines for stderr.
//! - [`summary`]: the words found and the summary for stdout.

pub mod corpus;
pub mod embedded;
pub mod input;
pub mod progress;
pub mod spec;
pub mod summary;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::{Duration, Instant};

use taskmaster_master::runtime::MasterError;
use taskmaster_proto::v1::{PipelineState, PipelineStatus};

use crate::view::PipelineView;
use embedded::Embedded;
use input::Inputs;
use summary::{WordTotals, read_word_totals};
use taskmaster_client::client::{Client, ClientError, POLL_INTERVAL_MIN, is_finished};

/// Most in-process workers.
pub const WORKERS_MAX: u32 = 64;
/// Most reduce partitions.
pub const PARTITIONS_MAX: u32 = 1024;
/// Smallest target unit size: smaller only multiplies per-unit overhead.
pub const UNIT_BYTES_MIN: u64 = 1024;
/// Largest target unit size.
pub const UNIT_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// Most copies of the corpus (about half a gigabyte).
pub const SCALE_MAX: u32 = 10_000;
/// Most top words reported.
pub const TOP_MAX: usize = 1000;

/// How a demo runs; [`Default`] is what `tmctl demo` does with no flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOptions {
    /// In-process workers, one slot each.
    pub workers: u32,
    /// Units of the reduce stage (the shuffle's partitions).
    pub partitions: u32,
    /// Target input bytes per split unit.
    pub unit_bytes: u64,
    /// Copies of the corpus to count; ignored with `input`.
    pub scale: u32,
    /// Count every regular file under this folder instead of the corpus.
    pub input: Option<PathBuf>,
    /// The master's data dir; `None`: a new temporary one.
    pub data_dir: Option<PathBuf>,
    /// Keep the temporary data dir (a given `data_dir` is always kept).
    pub keep: bool,
    /// How many of the most frequent words to report.
    pub top: usize,
    /// How often the pipeline's status is polled. Short, so the wall time
    /// (and so the throughput) of a run of half a second is measured to a
    /// few percent, not to the nearest progress report.
    pub poll: Duration,
    /// Least time between two progress reports (the last one, with the
    /// final status, is always made), so a terminal is not redrawn at the
    /// polling rate.
    pub report_every: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            workers: 2,
            partitions: 4,
            unit_bytes: 4 * 1024 * 1024,
            scale: 200,
            input: None,
            data_dir: None,
            keep: false,
            top: 10,
            poll: Duration::from_millis(20),
            report_every: Duration::from_millis(200),
        }
    }
}

impl DemoOptions {
    /// Checks every number against its limits, naming the flag.
    pub fn validate(&self) -> Result<(), DemoError> {
        let checks = [
            (
                "--workers",
                u64::from(self.workers),
                1,
                u64::from(WORKERS_MAX),
            ),
            (
                "--partitions",
                u64::from(self.partitions),
                1,
                u64::from(PARTITIONS_MAX),
            ),
            (
                "--unit-bytes",
                self.unit_bytes,
                UNIT_BYTES_MIN,
                UNIT_BYTES_MAX,
            ),
            ("--scale", u64::from(self.scale), 1, u64::from(SCALE_MAX)),
            ("--top", self.top as u64, 1, TOP_MAX as u64),
        ];
        for (flag, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err(DemoError::Invalid(format!(
                    "{flag} must be from {min} to {max}, got {value}"
                )));
            }
        }
        Ok(())
    }
}

/// Why a demo could not run to the end. A pipeline that ran and failed is
/// not an error: see [`DemoOutcome::succeeded`].
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// An option is out of bounds.
    #[error("{0}")]
    Invalid(String),
    /// The input is unusable (no files, too many, names not UTF-8).
    #[error("{0}")]
    Input(String),
    /// A file or folder could not be read or written. The OS error is
    /// part of the message, not a `source` (which `{:#}` would print a
    /// second time).
    #[error("{what} {}: {error}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    /// No local port to serve the master on.
    #[error("cannot listen on 127.0.0.1: {0}")]
    Listen(std::io::Error),
    /// The embedded master could not open its data dir.
    #[error("embedded master: {0}")]
    Master(#[from] MasterError),
    /// A call to the embedded master failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A part of the embedded system stopped early or did not stop cleanly.
    #[error("{0}")]
    Stopped(String),
    /// The interrupt future resolved (Ctrl-C) before the pipeline ended.
    #[error("interrupted")]
    Interrupted,
}

impl DemoError {
    fn io(what: &'static str, path: &Path, error: std::io::Error) -> DemoError {
        DemoError::Io {
            what,
            path: path.to_path_buf(),
            error,
        }
    }
}

/// What [`run_demo`] reports while it runs.
#[derive(Debug)]
pub enum DemoEvent<'a> {
    /// The input is ready and the embedded master is about to start.
    Prepared {
        data_dir: &'a Path,
        /// The data dir is temporary and will be removed at the end.
        removed_at_end: bool,
        input_files: usize,
        input_bytes: u64,
    },
    /// A polled status of the pipeline, `elapsed` after it was submitted;
    /// at most one per [`DemoOptions::report_every`], and always the final
    /// one.
    Status {
        pipeline: &'a PipelineView,
        elapsed: Duration,
    },
}

/// How a demo run ended.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    /// The pipeline's final status.
    pub pipeline: PipelineView,
    /// True if the pipeline succeeded.
    pub succeeded: bool,
    /// The words found; `None` unless the pipeline succeeded.
    pub words: Option<WordTotals>,
    pub input_files: usize,
    pub input_bytes: u64,
    /// From submitting the pipeline until it finished.
    pub wall: Duration,
    /// The data dir, when it outlives the run.
    pub kept_data_dir: Option<PathBuf>,
}

/// Runs the demo: see the [module docs](self). `on_event` sees its
/// progress; `interrupt` resolving stops it (in order) with
/// [`DemoError::Interrupted`].
pub async fn run_demo(
    options: &DemoOptions,
    mut on_event: impl FnMut(DemoEvent<'_>),
    interrupt: impl Future<Output = ()>,
) -> Result<DemoOutcome, DemoError> {
    options.validate()?;
    let data = DataDir::open(options.data_dir.as_deref())?;
    let ran = async {
        let inputs = Inputs::prepare(options.input.as_deref(), data.path(), options.scale)?;
        on_event(DemoEvent::Prepared {
            data_dir: data.path(),
            removed_at_end: matches!(data, DataDir::Temp(_)) && !options.keep,
            input_files: inputs.files.len(),
            input_bytes: inputs.bytes(),
        });
        let embedded = Embedded::start(data.path(), options.workers).await?;
        let ran = run_pipeline(
            &embedded,
            options,
            &inputs,
            data.path(),
            on_event,
            interrupt,
        )
        .await;
        // Stopped whatever happened, so a failure never leaves it running.
        let stopped = embedded.stop().await;
        let outcome = ran?;
        stopped?;
        Ok(outcome)
    }
    .await;
    let kept = data.finish(options.keep);
    ran.map(|outcome| DemoOutcome {
        kept_data_dir: kept,
        ..outcome
    })
}

/// Submits the word count, follows it to its end and reads its answer.
async fn run_pipeline(
    embedded: &Embedded,
    options: &DemoOptions,
    inputs: &Inputs,
    data_dir: &Path,
    on_event: impl FnMut(DemoEvent<'_>),
    interrupt: impl Future<Output = ()>,
) -> Result<DemoOutcome, DemoError> {
    let client = Client::connect(embedded.url()).await?;
    let spec = spec::wordcount_spec(inputs, data_dir, options.unit_bytes, options.partitions);
    let started = Instant::now();
    let id = client.submit(spec).await?;
    let status = watch(&client, embedded, &id, options, on_event, interrupt).await?;
    let wall = started.elapsed();
    let succeeded = status.state() == PipelineState::Succeeded;
    let words = if succeeded {
        let paths = client.output_paths(&id, spec::FINAL_STAGE).await?;
        Some(read_word_totals(&paths, options.top)?)
    } else {
        None
    };
    Ok(DemoOutcome {
        pipeline: PipelineView::from(status),
        succeeded,
        words,
        input_files: inputs.files.len(),
        input_bytes: inputs.bytes(),
        wall,
        kept_data_dir: None,
    })
}

/// Polls the pipeline until it finishes, reporting its status now and
/// then; stops early if `interrupt` resolves or the embedded system stops
/// on its own.
async fn watch(
    client: &Client,
    embedded: &Embedded,
    id: &str,
    options: &DemoOptions,
    mut on_event: impl FnMut(DemoEvent<'_>),
    interrupt: impl Future<Output = ()>,
) -> Result<PipelineStatus, DemoError> {
    let started = Instant::now();
    let mut reported: Option<Instant> = None;
    let mut interrupt = pin!(interrupt);
    loop {
        embedded.check_running()?;
        let status = client.status(id).await?;
        let finished = is_finished(status.state());
        if finished || reported.is_none_or(|at| at.elapsed() >= options.report_every) {
            reported = Some(Instant::now());
            on_event(DemoEvent::Status {
                pipeline: &PipelineView::from(status.clone()),
                elapsed: started.elapsed(),
            });
        }
        if finished {
            return Ok(status);
        }
        tokio::select! {
            () = tokio::time::sleep(options.poll.max(POLL_INTERVAL_MIN)) => {}
            () = &mut interrupt => return Err(DemoError::Interrupted),
        }
    }
}

/// The master's data dir: a temporary one (removed at the end unless
/// kept) or the user's (always kept: the demo did not make it).
enum DataDir {
    Temp(tempfile::TempDir),
    Given(PathBuf),
}

impl DataDir {
    fn open(given: Option<&Path>) -> Result<DataDir, DemoError> {
        let Some(dir) = given else {
            let temp = tempfile::Builder::new()
                .prefix("tmctl-demo-")
                .tempdir()
                .map_err(|e| DemoError::io("cannot create", &std::env::temp_dir(), e))?;
            return Ok(DataDir::Temp(temp));
        };
        std::fs::create_dir_all(dir).map_err(|e| DemoError::io("cannot create", dir, e))?;
        // Absolute, since it becomes every group's working directory.
        let dir = dir
            .canonicalize()
            .map_err(|e| DemoError::io("cannot open", dir, e))?;
        Ok(DataDir::Given(dir))
    }

    fn path(&self) -> &Path {
        match self {
            DataDir::Temp(temp) => temp.path(),
            DataDir::Given(dir) => dir,
        }
    }

    /// Removes a temporary dir unless `keep`; returns the dir if it stays.
    fn finish(self, keep: bool) -> Option<PathBuf> {
        match self {
            DataDir::Temp(temp) if keep => Some(temp.keep()),
            // Committed outputs are read-only, which `TempDir`'s removal
            // would leave behind; a file that cannot be removed only
            // leaves litter in the temporary folder.
            DataDir::Temp(temp) => {
                let _ = taskmaster_worker::outputs::remove_tree(&temp.keep());
                None
            }
            DataDir::Given(dir) => Some(dir),
        }
    }
}
