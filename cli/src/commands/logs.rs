//! `tmctl logs ID --group G --unit N [--attempt K] [--stdout|--stderr]
//! [--follow]`: an attempt's stdout and stderr, as its worker keeps them
//! in the store (capped: the worker's `--log-bytes-max`).
//!
//! The task's stdout log goes to tmctl's stdout and its stderr log to
//! tmctl's stderr, so `2>/dev/null` and `| grep` work as they would on the
//! task itself. To a terminal, control characters are shown escaped (a
//! task's output is not trusted to move the cursor); a pipe gets the bytes
//! as they are.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use taskmaster_client::Client;
use taskmaster_proto::v1::{LogStream, ReadLogsRequest, ReadLogsResponse};

/// Default interval between reads of a running attempt's log.
const FOLLOW_POLL_MS_DEFAULT: u64 = 500;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The pipeline id.
    id: String,
    /// The task group of the unit.
    #[arg(long, short)]
    group: String,
    /// The unit's index in its group (as `tmctl status` shows it).
    #[arg(long, short)]
    unit: u32,
    /// The attempt's number (TM_ATTEMPT, 1 for the first); the latest
    /// attempt with logs when omitted.
    #[arg(long, short, value_parser = clap::value_parser!(u32).range(1..))]
    attempt: Option<u32>,
    /// Only the task's stdout.
    #[arg(long, conflicts_with = "stderr")]
    stdout: bool,
    /// Only the task's stderr.
    #[arg(long)]
    stderr: bool,
    /// Keep reading while the attempt runs, until it ends (waiting for
    /// the unit's first attempt if none has started yet).
    #[arg(long, short)]
    follow: bool,
    /// How often to read a running attempt's log, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = FOLLOW_POLL_MS_DEFAULT, requires = "follow")]
    poll_ms: u64,
}

/// One stream being read: where it goes and how far it has been read.
struct Reader {
    stream: LogStream,
    offset: u64,
    done: bool,
    out: Output,
}

/// Prints the attempt's logs (with `--follow`, until the attempt ends).
pub async fn run(client: &Client, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let mut readers: Vec<Reader> = [LogStream::Stdout, LogStream::Stderr]
        .into_iter()
        .filter(|s| match s {
            LogStream::Stdout => !args.stderr,
            LogStream::Stderr => !args.stdout,
        })
        .map(|stream| Reader {
            stream,
            offset: 0,
            done: false,
            out: Output::new(stream),
        })
        .collect();
    // The first read picks the attempt (the latest, unless one is named);
    // every later read names it, so a retry starting meanwhile is not mixed in.
    let mut attempt = args.attempt.unwrap_or(0);
    let mut last: Option<ReadLogsResponse> = None;
    loop {
        let mut got_bytes = false;
        for reader in readers.iter_mut().filter(|r| !r.done) {
            let read = client
                .read_logs(ReadLogsRequest {
                    pipeline_id: args.id.clone(),
                    group: args.group.clone(),
                    unit: args.unit,
                    attempt,
                    stream: reader.stream as i32,
                    offset: reader.offset,
                    max_bytes: 0,
                })
                .await;
            let chunk = match read {
                Ok(chunk) => chunk,
                // Following a unit that has not started yet: wait for it.
                Err(e) if args.follow && attempt == 0 && not_started_yet(&e) => break,
                Err(e) => return Err(e.into()),
            };
            attempt = chunk.attempt;
            got_bytes |= !chunk.data.is_empty();
            reader.out.write(&chunk.data)?;
            reader.offset = chunk.next_offset;
            let read_all = chunk.next_offset >= chunk.size;
            // Without --follow, what the log holds now is enough.
            reader.done = read_all && (chunk.finished || !args.follow);
            last = Some(chunk);
        }
        if readers.iter().all(|r| r.done) {
            break;
        }
        if !got_bytes {
            tokio::time::sleep(Duration::from_millis(args.poll_ms)).await;
        }
    }
    for reader in &mut readers {
        reader.out.finish()?;
    }
    if let Some(last) = last
        && std::io::stderr().is_terminal()
    {
        super::err_out(&summary(&last));
    }
    Ok(ExitCode::SUCCESS)
}

/// The master's answer for a unit that exists but none of whose attempts
/// has started (`master/src/logs.rs` says so in these words).
fn not_started_yet(error: &taskmaster_client::ClientError) -> bool {
    error.code() == Some(tonic::Code::NotFound)
        && error
            .to_string()
            .contains("no attempt of it has started yet")
}

/// What tmctl says on a terminal after the log: which attempt it was, the
/// others with logs, and how it ended.
fn summary(chunk: &ReadLogsResponse) -> String {
    let others: Vec<String> = chunk
        .attempts
        .iter()
        .filter(|&&a| a != chunk.attempt)
        .map(u32::to_string)
        .collect();
    let mut text = format!("-- attempt {}", chunk.attempt);
    if !chunk.outcome.is_empty() {
        text.push_str(&format!(": {}", chunk.outcome));
    } else if chunk.finished {
        text.push_str(": ended without saying how (its worker stopped)");
    } else {
        text.push_str(": still running");
    }
    if !others.is_empty() {
        text.push_str(&format!(
            "; other attempts with logs: {} (--attempt)",
            others.join(", ")
        ));
    }
    text.push('\n');
    text
}

/// tmctl's stdout or stderr, writing a log's bytes as they come: raw to a
/// pipe, escaped to a terminal (holding back a character cut in two by a
/// read, so it is not shown as two broken ones).
struct Output {
    stream: LogStream,
    terminal: bool,
    /// Bytes of a UTF-8 sequence the last read ended in the middle of.
    carry: Vec<u8>,
}

impl Output {
    fn new(stream: LogStream) -> Output {
        let terminal = match stream {
            LogStream::Stdout => std::io::stdout().is_terminal(),
            LogStream::Stderr => std::io::stderr().is_terminal(),
        };
        Output {
            stream,
            terminal,
            carry: Vec::new(),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if !self.terminal {
            return self.write_raw(bytes);
        }
        self.carry.extend_from_slice(bytes);
        let keep = incomplete_tail(&self.carry);
        let whole = self.carry.len() - keep;
        let text = String::from_utf8_lossy(&self.carry[..whole]).into_owned();
        self.carry.drain(..whole);
        self.write_raw(taskmaster_cli::text::terminal_safe(&text).as_bytes())
    }

    /// Writes what is held back, at the end of the log.
    fn finish(&mut self) -> std::io::Result<()> {
        let rest = std::mem::take(&mut self.carry);
        if rest.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&rest).into_owned();
        self.write_raw(taskmaster_cli::text::terminal_safe(&text).as_bytes())
    }

    fn write_raw(&self, bytes: &[u8]) -> std::io::Result<()> {
        match self.stream {
            LogStream::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            LogStream::Stderr => {
                let mut out = std::io::stderr().lock();
                out.write_all(bytes)?;
                out.flush()
            }
        }
    }
}

/// How many bytes at the end of `bytes` begin a UTF-8 character that is
/// not complete yet (0 when it ends on a whole one, or in invalid bytes).
fn incomplete_tail(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => 0,
        Err(e) if e.error_len().is_none() => bytes.len() - e.valid_up_to(),
        Err(_) => {
            // Invalid somewhere: look at the last few bytes only.
            let start = bytes.len().saturating_sub(3);
            (start..bytes.len())
                .find(|&i| {
                    matches!(std::str::from_utf8(&bytes[i..]), Err(e) if e.valid_up_to() == 0 && e.error_len().is_none())
                })
                .map_or(0, |i| bytes.len() - i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_by_a_read_is_held_back() {
        let e_acute = "é".as_bytes();
        assert_eq!(incomplete_tail(b"abc"), 0);
        assert_eq!(incomplete_tail(&[b'a', e_acute[0]]), 1);
        assert_eq!(incomplete_tail(&[0xff, b'a', e_acute[0]]), 1);
        assert_eq!(incomplete_tail(&[b'a', 0xff]), 0);
    }

    #[test]
    fn the_summary_names_the_attempt_and_the_others() {
        let chunk = ReadLogsResponse {
            attempt: 2,
            attempts: vec![1, 2],
            finished: true,
            outcome: "succeeded".into(),
            ..ReadLogsResponse::default()
        };
        assert_eq!(
            summary(&chunk),
            "-- attempt 2: succeeded; other attempts with logs: 1 (--attempt)\n"
        );
    }
}
