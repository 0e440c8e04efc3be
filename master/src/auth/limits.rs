//! Limits at the edge against abuse (issue 24), each a `taskmaster serve`
//! flag: connections, concurrent lease long-polls and Work streams, and a
//! request rate per identity. A call over a limit is refused with
//! RESOURCE_EXHAUSTED naming the flag; a connection over the limit is
//! closed at once (it has no call yet to answer), with a warning.
//! HTTP/2 streams per connection are capped by the server itself
//! (`--max-streams-per-connection`). The sizes of what one pipeline may
//! hold are the core's (`core::admission`).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures_util::{Stream, StreamExt as _};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::Status;
use tonic::transport::server::Connected;

/// The defaults of the flags.
pub const CONNECTIONS_MAX_DEFAULT: usize = 4_096;
pub const STREAMS_PER_CONNECTION_DEFAULT: u32 = 1_024;
pub const LONG_POLLS_MAX_DEFAULT: usize = 10_000;
/// Lease calls one identity may hold open (0: no limit but
/// `--max-long-polls`). A worker holds one or a few (one per Work stream);
/// without this one identity could take every place under
/// `--max-long-polls` and leave the other workers' lease calls refused.
pub const LONG_POLLS_PER_IDENTITY_DEFAULT: usize = 64;
pub const WORK_STREAMS_MAX_DEFAULT: usize = 10_000;
/// Calls a second per identity (with `--auth`: operators', viewers' and admins' calls;
/// a worker's lease, renew, commit and release are bounded by its leases
/// and are not counted). A burst of twice as many goes through at once.
pub const RATE_PER_IDENTITY_DEFAULT: u32 = 200;
/// Identities whose rate is tracked at once; past it, the idle are forgotten.
const RATE_KEYS_MAX: usize = 10_000;

/// The edge limits, as the flags set them (0: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    pub connections_max: usize,
    pub streams_per_connection: u32,
    pub long_polls_max: usize,
    pub long_polls_per_identity: usize,
    pub work_streams_max: usize,
    pub rate_per_identity: u32,
}

impl Default for EdgeLimits {
    fn default() -> EdgeLimits {
        EdgeLimits {
            connections_max: CONNECTIONS_MAX_DEFAULT,
            streams_per_connection: STREAMS_PER_CONNECTION_DEFAULT,
            long_polls_max: LONG_POLLS_MAX_DEFAULT,
            long_polls_per_identity: LONG_POLLS_PER_IDENTITY_DEFAULT,
            work_streams_max: WORK_STREAMS_MAX_DEFAULT,
            rate_per_identity: RATE_PER_IDENTITY_DEFAULT,
        }
    }
}

/// What the edge counts against the limits.
#[derive(Debug, Default)]
pub struct Counters {
    connections: Arc<AtomicUsize>,
    long_polls: Arc<AtomicUsize>,
    /// Each identity's lease calls open (bounded by the identities there
    /// are: tokens and certificate names).
    long_polls_by: Mutex<HashMap<Arc<str>, Arc<AtomicUsize>>>,
    work_streams: Arc<AtomicUsize>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// One held place under a limit; given back when dropped.
#[derive(Debug)]
pub struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A place under `max` in `count`, or None when all are taken (0: no limit).
fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Held> {
    let before = count.fetch_add(1, Ordering::Relaxed);
    let held = Held(Arc::clone(count));
    (max == 0 || before < max).then_some(held)
}

/// How long a lease call refused for a long-poll limit waits before it is
/// answered, holding no place ([`jittered`]: 5 to 15 s): a client that
/// calls again when refused (as a worker's leasing loop does) then calls
/// once per pause per call it keeps open, not as fast as refusals come
/// back. At 1 s, t42_abuse's flood (10,200 lease calls kept open by one
/// identity, 64 of them let wait) came back as about 9,000 refusals a
/// second; in a debug build that took both cores, and the identity's own
/// submits were answered a few a second. At 10 s it is a tenth of that.
pub const LONG_POLL_REFUSAL_PAUSE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a call refused by `--rate-per-identity` waits before it is
/// answered ([`jittered`]: 0.5 to 1.5 s). Each call costs the master about
/// the same whether refused or not (t42_abuse's submit flood: about 45 us
/// of CPU a call, nearly all HTTP/2, tonic, the kernel and scheduling; the
/// token lookup under the state lock, the rate check and the core's checks
/// of the submits let through about 4% of the master's samples, perf):
/// what a flood costs is its number of calls. Answered at once, a client
/// that calls again when refused spins at whatever rate its CPU allows
/// (t42's four submitters: 2,000 calls a second); paused, it makes about
/// one call a second per call it keeps open. A client over its rate has
/// to wait anyway; this makes it wait about a second.
pub const RATE_REFUSAL_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// `pause` times a random factor from 0.5 to 1.5, for a refusal's pause:
/// calls refused together (a flood opened at once) are answered spread
/// out, so their retries come spread out too, not as one wave every pause
/// (t42_abuse's long-poll flood without it: the operator's reads p99 150
/// to 180 ms, in the waves).
pub fn jittered(pause: std::time::Duration) -> std::time::Duration {
    pause.mul_f64(0.5 + rand::random::<f64>())
}

/// A lease call's places: among all of them, and among its identity's.
#[derive(Debug)]
pub struct LongPoll {
    _all: Held,
    _own: Option<Held>,
}

impl Counters {
    /// A place for a lease call (which may long-poll) of `who` (None: no
    /// `--auth`, so no identity to count it against).
    pub fn long_poll(
        &self,
        limits: &EdgeLimits,
        who: Option<&Arc<str>>,
    ) -> Result<LongPoll, Status> {
        let all = take(&self.long_polls, limits.long_polls_max).ok_or_else(|| {
            Status::resource_exhausted(format!(
                "the master holds {} lease calls open, its limit (--max-long-polls): \
                 try again shortly",
                limits.long_polls_max
            ))
        })?;
        let own = match who {
            None => None,
            Some(who) => {
                let count = Arc::clone(
                    self.long_polls_by
                        .lock()
                        .entry(Arc::clone(who))
                        .or_default(),
                );
                let own = take(&count, limits.long_polls_per_identity).ok_or_else(|| {
                    Status::resource_exhausted(format!(
                        "{who} holds {} lease calls open, the limit per identity \
                         (--max-long-polls-per-identity)",
                        limits.long_polls_per_identity
                    ))
                })?;
                Some(own)
            }
        };
        Ok(LongPoll {
            _all: all,
            _own: own,
        })
    }

    /// A place for a Work stream, held for the stream's life.
    pub fn work_stream(&self, limits: &EdgeLimits) -> Result<Held, Status> {
        take(&self.work_streams, limits.work_streams_max).ok_or_else(|| {
            Status::resource_exhausted(format!(
                "the master serves {} Work streams, its limit (--max-work-streams)",
                limits.work_streams_max
            ))
        })
    }

    /// Takes one call from `who`'s token bucket at `now_ms` (the master's
    /// clock), or refuses it.
    pub fn rate(&self, limits: &EdgeLimits, who: &str, now_ms: u64) -> Result<(), Status> {
        let rate = limits.rate_per_identity;
        if rate == 0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock();
        if buckets.len() >= RATE_KEYS_MAX && !buckets.contains_key(who) {
            // Full buckets cost nothing to forget: they would let a burst through anyway.
            buckets.retain(|_, b| !b.full(rate, now_ms));
        }
        let bucket = buckets
            .entry(who.to_string())
            .or_insert_with(|| Bucket::full_at(rate, now_ms));
        if bucket.take(rate, now_ms) {
            Ok(())
        } else {
            Err(Status::resource_exhausted(format!(
                "{who} is over {rate} calls a second (--rate-per-identity): slow down"
            )))
        }
    }
}

/// A token bucket: `rate` tokens a second, up to twice that.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens, in thousandths (so a millisecond's refill is a whole number).
    milli_tokens: u64,
    at_ms: u64,
}

impl Bucket {
    fn capacity(rate: u32) -> u64 {
        u64::from(rate) * 2 * 1000
    }

    fn full_at(rate: u32, now_ms: u64) -> Bucket {
        Bucket {
            milli_tokens: Bucket::capacity(rate),
            at_ms: now_ms,
        }
    }

    fn refill(&mut self, rate: u32, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        self.milli_tokens = self
            .milli_tokens
            .saturating_add(elapsed.saturating_mul(u64::from(rate)))
            .min(Bucket::capacity(rate));
        self.at_ms = self.at_ms.max(now_ms);
    }

    fn take(&mut self, rate: u32, now_ms: u64) -> bool {
        self.refill(rate, now_ms);
        match self.milli_tokens.checked_sub(1000) {
            Some(left) => {
                self.milli_tokens = left;
                true
            }
            None => false,
        }
    }

    fn full(&self, rate: u32, now_ms: u64) -> bool {
        let mut copy = *self;
        copy.refill(rate, now_ms);
        copy.milli_tokens == Bucket::capacity(rate)
    }
}

/// A connection counted against `--max-connections` while it is open.
pub struct Counted<IO> {
    io: IO,
    _held: Held,
}

impl<IO: Connected> Connected for Counted<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Counted<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Counted<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// `incoming`'s connections, each counted while open; one over `max` (0:
/// no limit) is closed at once, and said so in the log (at most once a
/// second, so a flood does not flood the log too).
pub fn count_connections<IO, S>(
    incoming: S,
    counters: &Counters,
    max: usize,
) -> impl Stream<Item = io::Result<Counted<IO>>> + use<IO, S>
where
    S: Stream<Item = io::Result<IO>>,
{
    let count = Arc::clone(&counters.connections);
    let last_warned = Mutex::new(None::<std::time::Instant>);
    incoming.filter_map(move |accepted| {
        let result = match accepted {
            Err(e) => Some(Err(e)),
            Ok(io) => match take(&count, max) {
                Some(held) => Some(Ok(Counted { io, _held: held })),
                None => {
                    let mut last = last_warned.lock();
                    if last.is_none_or(|at| at.elapsed().as_secs() >= 1) {
                        *last = Some(std::time::Instant::now());
                        tracing::warn!(
                            limit = max,
                            "closed a connection over the limit (--max-connections)"
                        );
                    }
                    None
                }
            },
        };
        std::future::ready(result)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_lets_a_burst_through_then_the_rate() {
        let counters = Counters::default();
        let limits = EdgeLimits {
            rate_per_identity: 10,
            ..EdgeLimits::default()
        };
        for _ in 0..20 {
            counters.rate(&limits, "alice", 1_000).unwrap();
        }
        let refused = counters.rate(&limits, "alice", 1_000).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("--rate-per-identity"));
        counters.rate(&limits, "bob", 1_000).unwrap();
        // A tenth of a second later: one more call.
        counters.rate(&limits, "alice", 1_100).unwrap();
        assert!(counters.rate(&limits, "alice", 1_100).is_err());
    }

    #[test]
    fn places_are_given_back_when_dropped() {
        let counters = Counters::default();
        let limits = EdgeLimits {
            long_polls_max: 1,
            ..EdgeLimits::default()
        };
        let held = counters.long_poll(&limits, None).unwrap();
        let refused = counters.long_poll(&limits, None).unwrap_err();
        assert!(
            refused.message().contains("--max-long-polls"),
            "{refused:?}"
        );
        drop(held);
        counters.long_poll(&limits, None).unwrap();
    }

    #[test]
    fn one_identity_holds_at_most_its_share_of_long_polls() {
        let counters = Counters::default();
        let limits = EdgeLimits {
            long_polls_per_identity: 2,
            ..EdgeLimits::default()
        };
        let (mallory, bob): (Arc<str>, Arc<str>) = ("mallory".into(), "bob".into());
        let first = counters.long_poll(&limits, Some(&mallory)).unwrap();
        let _second = counters.long_poll(&limits, Some(&mallory)).unwrap();
        let refused = counters.long_poll(&limits, Some(&mallory)).unwrap_err();
        assert!(
            refused.message().contains("mallory holds 2 lease calls")
                && refused.message().contains("--max-long-polls-per-identity"),
            "{refused:?}"
        );
        // Others are not held back, and a place given back is free again.
        counters.long_poll(&limits, Some(&bob)).unwrap();
        drop(first);
        counters.long_poll(&limits, Some(&mallory)).unwrap();
        // Only the second is held now: the refused call gave back the
        // place it took among all of them, the others were dropped.
        assert_eq!(counters.long_polls.load(Ordering::Relaxed), 1);
    }
}
