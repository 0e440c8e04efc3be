//! The `tmctl` commands: argument definitions (clap derive) and dispatch.
//! Each command returns the process exit code; any error becomes
//! `error: <message>` on stderr and exit code 2.

mod bench;
mod config_change;
mod demo;
mod logs;
mod operate;
mod outputs;
mod schedule;
mod status;
mod submit;
mod token;
mod wait;
mod watch;

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use taskmaster_client::{Client, ClientTls, parse_param};
use taskmaster_proto::credentials::Credentials;

/// Exit code for usage and input errors and refused calls (clap uses the
/// same code for bad arguments).
const EXIT_ERROR: u8 = 2;

/// Exit code of `wait`, of `submit`, `retry` and `rerun` with `--wait`, and
/// of `demo` when the pipeline failed or was cancelled.
const EXIT_PIPELINE_FAILED: u8 = 1;

/// tmctl: submit batch pipelines to a taskmaster master and watch them.
///
/// A pipeline is a TOML file describing task groups; the master leases its
/// work units to workers. Execution is at-least-once; the committed effect
/// is exactly-once.
#[derive(Debug, Parser)]
#[command(
    name = "tmctl",
    version,
    propagate_version = true,
    after_help = "Examples:\n  \
        tmctl demo\n  \
        tmctl submit pipeline.toml --param ds=2026-11-21 --wait\n  \
        tmctl wait <ID>\n  \
        tmctl watch <ID>\n  \
        tmctl status\n  \
        tmctl status <ID> --json\n  \
        tmctl outputs <ID> --group extract\n  \
        tmctl logs <ID> --group extract --unit 3 --follow\n  \
        tmctl schedule add nightly.toml\n  \
        tmctl backfill nightly --from 2026-11-01 --to 2026-11-30 --max-active 4\n  \
        tmctl retry <ID>\n  \
        tmctl config <ID> --group extract max_attempts=5 retry_delay=30s\n  \
        tmctl block --pipeline <ID>\n  \
        tmctl snapshot --note 'before the backfill'"
)]
pub struct Args {
    /// Address of the master: HOST:PORT, http://HOST:PORT, or
    /// https://HOST:PORT with --tls-ca.
    #[arg(
        long,
        global = true,
        env = "TASKMASTER_ADDR",
        default_value = "http://127.0.0.1:7070",
        value_name = "URL"
    )]
    master: String,
    /// Reach the master over TLS, trusting this CA (PEM) for its
    /// certificate.
    #[arg(long, global = true, env = "TASKMASTER_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for a master that requires one; with
    /// --tls-key and --tls-ca.
    #[arg(long, global = true, env = "TASKMASTER_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, global = true, env = "TASKMASTER_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// The bearer token for a master started with --auth (`tmctl token
    /// create` makes them; the first admin token is in its
    /// DATA_DIR/admin.token). Prefer --token-file: a flag shows in `ps`.
    #[arg(
        long,
        global = true,
        env = "TASKMASTER_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// A file whose first line is the bearer token (see --token).
    #[arg(
        long,
        global = true,
        env = "TASKMASTER_TOKEN_FILE",
        value_name = "FILE"
    )]
    token_file: Option<PathBuf>,
    /// Why you make this change (cancel, retry, clear, block, config,
    /// delete, rollback, ...): journaled with your name in the
    /// pipeline's audit trail, which `tmctl status ID` shows.
    #[arg(long, global = true, value_name = "TEXT")]
    reason: Option<String>,

    #[command(subcommand)]
    command: Command,
}

/// The pipeline file format, shown by `tmctl submit --help`.
const PIPELINE_FILE_HELP: &str = r#"Pipeline file:
  name = "example"
  [params]                              # available to tasks; --param overrides
  ds = "2026-11-21"
  [[groups]]
  name = "extract"
  task = "exec"                         # default "exec": runs `command`; or split,
                                        # wordcount.map, sum.reduce, sort, merge
  command = ["python3", "extract.py"]   # runs in the pipeline file's folder
  inputs = ["data/*.csv"]               # first groups: local globs or s3:// URLs
  unit_bytes = 67108864                 # optional: pack/cut inputs into units of ~this many bytes
                                        # (0: one per file; unset: 64 MiB, but small files packed
                                        # only past 64 units)
  config = { chunk_bytes = "16MiB" }    # optional: settings of a built-in task
  env = { LANG = "C" }                  # optional extra environment
  max_attempts = 3                      # optional: attempts per unit, the first included
  retry_delay = "90s"                   # optional: delay before a retry (ms, s, m, h; default 2m)
  timeout = "30m"                       # optional: an attempt running longer is killed and fails
  max_in_flight = 4                     # optional: units of this group leased at once, at most
  [[groups]]
  name = "aggregate"
  command = ["python3", "agg.py"]
  after = ["extract"]                   # one unit per committed upstream unit, or:
  # partitions = 8                      # shuffle: unit r reads part-0000r of every upstream output
  # gather = true                       # merge: one unit reads every upstream output"#;

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a word count on an embedded master and workers: no service to
    /// install.
    ///
    /// Starts a master and --workers workers inside this process, counts
    /// the words of a bundled public-domain corpus (or of --input) with a
    /// five-stage pipeline (split, map, reduce, sort, merge), shows each
    /// stage's progress on stderr, and prints the top words and the run's
    /// numbers on stdout. Exits 0 if the pipeline succeeded, 1 if it
    /// failed (its failed units are printed), 2 on bad flags or input.
    /// --master is not used.
    #[command(after_help = "Examples:\n  \
        tmctl demo\n  \
        tmctl demo --workers 4 --scale 2000\n  \
        tmctl demo --input ~/books --keep")]
    Demo(demo::DemoArgs),
    Bench(bench::BenchArgs),
    /// Submit a pipeline file; prints the new pipeline id on the last line
    /// of stdout.
    ///
    /// Relative paths in the file (commands, input globs) are relative to
    /// the file's folder. Says on stderr how many units each first group
    /// starts with. With --wait, exits 0 if the pipeline succeeded and 1
    /// if it failed or was cancelled.
    #[command(after_long_help = PIPELINE_FILE_HELP)]
    Submit {
        /// The pipeline TOML file.
        file: PathBuf,
        /// Set a parameter the file declares under [params] (repeatable);
        /// a name it does not declare is refused.
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Wait until the pipeline finishes, reporting progress on stderr.
        #[arg(long)]
        wait: bool,
        /// How often to poll the master while waiting, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 500, requires = "wait")]
        poll_ms: u64,
    },
    /// Show all pipelines as a table, or one pipeline in detail.
    Status {
        /// The pipeline to show; all pipelines if omitted.
        id: Option<String>,
        /// Print JSON instead of text (an object for one pipeline, an
        /// array for all).
        #[arg(long)]
        json: bool,
    },
    /// Print the committed output files of one group, one path per line,
    /// in unit order.
    Outputs {
        /// The pipeline id.
        id: String,
        /// The task group whose outputs to list.
        #[arg(long, short)]
        group: String,
    },
    /// Show a pipeline's progress until it ends: a bar per group, redrawn
    /// in place on a terminal (a line per change otherwise), then its
    /// final state and failed units. Exits 0 if it succeeded, 1 if it
    /// failed or was cancelled.
    Watch {
        /// The pipeline id.
        id: String,
        /// How often to poll the master, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = wait::POLL_MS_DEFAULT)]
        poll_ms: u64,
    },
    /// Print an attempt's stdout and stderr, as its worker keeps them in
    /// the store (the task's stdout to stdout, its stderr to stderr);
    /// --follow reads on while the attempt runs.
    #[command(after_help = "Examples:\n  \
        tmctl logs <ID> --group extract --unit 3\n  \
        tmctl logs <ID> -g extract -u 3 --attempt 1 --stderr\n  \
        tmctl logs <ID> -g extract -u 3 --follow")]
    Logs(logs::LogsArgs),
    /// Pipelines the master runs on a cron schedule: add, list, pause,
    /// resume, remove, trigger.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Every run of a schedule, newest first: logical time, trigger
    /// (schedule, backfill, manual), state, start and end.
    Runs(schedule::RunsArgs),
    /// What a schedule published, per logical time: the run whose outputs
    /// it is, and the manifest in the store (schedules with `publish`).
    Published(schedule::PublishedArgs),
    /// Run a schedule once per logical time in a date range, K at a time,
    /// after live work; prints the backfill id on the last line. Running
    /// the same backfill again runs only the times that did not succeed.
    #[command(after_help = "Examples:\n  \
        tmctl backfill nightly --from 2026-11-01 --to 2026-11-30 --max-active 4 --dry-run\n  \
        tmctl backfill nightly --from 2026-11-01 --to 2026-11-30 --max-active 4 --wait\n  \
        tmctl backfill set <ID> --max-active 8\n  \
        tmctl backfill pause <ID>\n  \
        tmctl backfill list")]
    Backfill(schedule::BackfillArgs),
    /// Bearer tokens of a master started with --auth (admin only):
    /// create, list, revoke.
    #[command(subcommand)]
    Token(token::TokenCommand),
    #[command(flatten)]
    Operate(operate::Operate),
}

/// Runs one command, printing any error; returns the exit code.
pub async fn run(args: Args) -> ExitCode {
    match dispatch(args).await {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            err_out(&format!("error: {}\n", error_text(&e)));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Where the master is and how to reach it, from the global flags.
pub struct Connection {
    master: String,
    tls: Option<ClientTls>,
    /// The token and --reason every call carries.
    credentials: Credentials,
}

impl Connection {
    fn from_args(args: &Args) -> anyhow::Result<Connection> {
        let tls = match &args.tls_ca {
            Some(ca) => Some(ClientTls::from_files(
                ca,
                args.tls_cert.as_deref(),
                args.tls_key.as_deref(),
            )?),
            None if args.tls_cert.is_some() || args.tls_key.is_some() => {
                anyhow::bail!("--tls-cert and --tls-key need --tls-ca (the master's CA)")
            }
            None => None,
        };
        let credentials =
            Credentials::from_sources(args.token.as_deref(), args.token_file.as_deref())?
                .with_reason(args.reason.as_deref().unwrap_or(""));
        Ok(Connection {
            master: args.master.clone(),
            tls,
            credentials,
        })
    }

    /// A client of the master, connected.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let credentials = self.credentials.clone();
        Ok(Client::connect_as(&self.master, self.tls.as_ref(), credentials).await?)
    }
}

async fn dispatch(args: Args) -> anyhow::Result<ExitCode> {
    let connection = Connection::from_args(&args)?;
    match args.command {
        Command::Demo(demo_args) => demo::run(demo_args).await,
        Command::Bench(bench_args) => bench::run(bench_args, &args.master).await,
        Command::Submit {
            file,
            params,
            wait,
            poll_ms,
        } => {
            // Load the file before connecting: a broken file is reported as
            // such even when no master is running.
            let spec = submit::load(&file, &params).await?;
            let client = connection.client().await?;
            let poll = wait.then(|| std::time::Duration::from_millis(poll_ms));
            submit::run(&client, spec, poll).await
        }
        Command::Status { id, json } => {
            let client = connection.client().await?;
            status::run(&client, id.as_deref(), json).await
        }
        Command::Outputs { id, group } => {
            let client = connection.client().await?;
            outputs::run(&client, &id, &group).await
        }
        Command::Watch { id, poll_ms } => {
            let client = connection.client().await?;
            watch::run(&client, &id, std::time::Duration::from_millis(poll_ms)).await
        }
        Command::Logs(logs_args) => {
            let client = connection.client().await?;
            logs::run(&client, logs_args).await
        }
        Command::Schedule(command) => schedule::schedule(&connection, command).await,
        Command::Runs(runs_args) => schedule::runs(&connection, runs_args).await,
        Command::Published(published_args) => {
            schedule::published(&connection, published_args).await
        }
        Command::Backfill(backfill_args) => schedule::backfill(&connection, backfill_args).await,
        Command::Token(command) => token::run(&connection, command).await,
        Command::Operate(command) => operate::run(&connection, command).await,
    }
}

/// Writes `text` to stdout, returning write errors (a closed pipe) instead
/// of panicking as `print!` would; to a terminal, with control characters
/// escaped (`text::terminal_safe`): parameters, notes and error texts come
/// from clients and tasks. A pipe gets the bytes as they are.
fn out(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    if stdout.is_terminal() {
        stdout.write_all(taskmaster_cli::text::terminal_safe(text).as_bytes())?;
    } else {
        stdout.write_all(text.as_bytes())?;
    }
    stdout.flush()
}

/// Writes `text` to stderr, escaped as [`out`] does when it is a terminal.
fn err_out(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let text = if stderr.is_terminal() {
        taskmaster_cli::text::terminal_safe(text)
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    let _ = stderr.write_all(text.as_bytes());
}

/// An error and its causes, `: `-separated as `{:#}` prints them, but
/// without a cause whose text the message before it already ends with:
/// an error that puts its source in its own message would otherwise say
/// it twice (`No such file or directory (os error 2)`, twice).
fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if !text.is_empty() {
            if text.ends_with(&part) {
                continue;
            }
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// A reader that went away (`tmctl outputs … | head`) is not an error
/// worth reporting.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
