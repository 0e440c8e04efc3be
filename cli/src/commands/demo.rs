//! `tmctl demo`: runs a word count on an embedded master and workers.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use taskmaster_cli::demo::progress::Progress;
use taskmaster_cli::demo::summary::{plural, summary_text};
use taskmaster_cli::demo::{
    DemoError, DemoEvent, DemoOptions, PARTITIONS_MAX, SCALE_MAX, TOP_MAX, UNIT_BYTES_MAX,
    UNIT_BYTES_MIN, WORKERS_MAX, run_demo,
};
use taskmaster_cli::text;

/// Exit code after Ctrl-C (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

/// The flags of `tmctl demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// In-process workers, each running one unit at a time (1 to 64).
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(WORKERS_MAX)))]
    workers: u32,
    /// Partitions of the shuffle: units of the reduce stage (1 to 1024).
    #[arg(long, value_name = "R", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(PARTITIONS_MAX)))]
    partitions: u32,
    /// Target input size of a split unit: bytes, or with KiB, MiB or GiB
    /// (1KiB to 1GiB).
    #[arg(long, value_name = "SIZE", default_value = "4MiB", value_parser = parse_unit_bytes)]
    unit_bytes: u64,
    /// Copies of the bundled corpus to count, written into the data dir
    /// (1 to 10000); ignored with --input.
    #[arg(long, value_name = "K", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(SCALE_MAX)))]
    scale: u32,
    /// Count every regular file under DIR, recursively, instead of the
    /// bundled corpus.
    #[arg(long, value_name = "DIR")]
    input: Option<PathBuf>,
    /// The embedded master's data dir (journal, output store, generated
    /// input); created if missing and kept afterwards. Default: a new
    /// temporary dir, removed at the end unless --keep.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep the temporary data dir and print where it is.
    #[arg(long)]
    keep: bool,
    /// How many of the most frequent words to print (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=TOP_MAX as i64))]
    top: u32,
}

impl DemoArgs {
    fn options(self) -> DemoOptions {
        DemoOptions {
            workers: self.workers,
            partitions: self.partitions,
            unit_bytes: self.unit_bytes,
            scale: self.scale,
            input: self.input,
            data_dir: self.data_dir,
            keep: self.keep,
            top: self.top as usize,
            ..DemoOptions::default()
        }
    }
}

/// Runs the demo: progress on stderr, the summary on stdout. Exit 0 if
/// the pipeline succeeded, 1 if it failed, 130 if interrupted.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let options = args.options();
    let workers = options.workers;
    let mut progress = Progress::new(std::io::stderr().is_terminal());
    let on_event = |event: DemoEvent<'_>| match event {
        DemoEvent::Prepared {
            data_dir,
            removed_at_end,
            input_files,
            input_bytes,
        } => {
            let megabytes = input_bytes as f64 / 1e6;
            let files = plural(input_files, "file");
            eprintln!("tmctl demo: {megabytes:.2} MB in {files}, {workers} workers");
            let note = if removed_at_end {
                " (removed at the end; --keep keeps it)"
            } else {
                ""
            };
            eprintln!("data dir {}{note}", data_dir.display());
        }
        DemoEvent::Status { pipeline, elapsed } => {
            eprint!("{}", progress.update(pipeline, elapsed))
        }
    };
    let outcome = match run_demo(&options, on_event, interrupted()).await {
        Ok(outcome) => outcome,
        Err(DemoError::Interrupted) => {
            eprintln!("interrupted: the embedded master and workers were stopped");
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
        Err(e) => return Err(e.into()),
    };
    if outcome.succeeded {
        super::out(&summary_text(&outcome))?;
        return Ok(ExitCode::SUCCESS);
    }
    let pipeline = &outcome.pipeline;
    eprintln!("pipeline {} {}", pipeline.id, pipeline.state);
    if !pipeline.failed_units.is_empty() {
        eprint!(
            "failed units:\n{}",
            text::failed_units(&pipeline.failed_units, None)
        );
    }
    if let Some(dir) = &outcome.kept_data_dir {
        eprintln!("data dir {} (kept)", dir.display());
    }
    Ok(ExitCode::from(super::EXIT_PIPELINE_FAILED))
}

/// Resolves on the first Ctrl-C (the demo then stops in order); a second
/// one exits at once.
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handling: never interrupt, rather than at once.
        std::future::pending::<()>().await;
    }
    tokio::spawn(async {
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(i32::from(EXIT_INTERRUPTED));
    });
}

/// `4194304`, `4MiB`, `512 KiB`, `1GiB`: a size in bytes within the
/// demo's limits.
fn parse_unit_bytes(text: &str) -> Result<u64, String> {
    // The same size syntax as the built-in tasks' settings.
    let bytes = taskmaster_worker::builtin::parse_bytes(text.trim())
        .ok_or("expected bytes, optionally with KiB, MiB or GiB (e.g. 4MiB)")?;
    if !(UNIT_BYTES_MIN..=UNIT_BYTES_MAX).contains(&bytes) {
        return Err(format!(
            "must be from 1KiB ({UNIT_BYTES_MIN}) to 1GiB ({UNIT_BYTES_MAX}) bytes"
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_bytes_take_binary_suffixes_within_limits() {
        assert_eq!(parse_unit_bytes("20000"), Ok(20_000));
        assert_eq!(parse_unit_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_unit_bytes("512 KiB"), Ok(512 << 10));
        assert!(parse_unit_bytes("4MB").is_err());
        assert!(parse_unit_bytes("100").unwrap_err().contains("1KiB"));
        assert!(parse_unit_bytes("2GiB").is_err());
        assert!(parse_unit_bytes("99999999999999999999").is_err());
    }
}
