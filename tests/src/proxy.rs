//! A fault-injecting TCP proxy between workers and the master.
//!
//! It listens on 127.0.0.1:0 and forwards every connection to the master.
//! Each chunk that passes through may, by a roll of the connection's seeded
//! random generator:
//!
//! - **drop the connection** mid-stream (either direction, half the time
//!   with a TCP reset, half with a plain close);
//! - **delay** the chunk (and so everything behind it in that direction);
//! - **lose a reply**: a server→client chunk that carries an HTTP/2 HEADERS
//!   or DATA frame (a gRPC response) is thrown away and the connection is
//!   closed. The client's request was forwarded whole, so the master acted
//!   on it; the client never learns the answer.
//!
//! gRPC runs over HTTP/2, so the proxy follows the server→client frame
//! headers (9 bytes: 24-bit length, type, flags, stream) to tell response
//! frames from SETTINGS, PING and WINDOW_UPDATE frames.
//!
//! Over TLS ([`Carried::Tls`]) the frames are encrypted: the proxy follows
//! the TLS record headers instead (5 bytes: type, version, 16-bit length)
//! and counts every server→client application-data record as a possible
//! reply. Some of those hold a SETTINGS, PING or WINDOW_UPDATE frame, or
//! the end of the handshake, so there a "lost reply" is a lost reply at
//! most: a dropped connection whose last server bytes never arrived.
//!
//! The generators are seeded from the run's seed and the connection's
//! number, so a replay makes the same decisions for the same connections;
//! the processes' timing still varies from run to run.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Chance of each fault, per chunk, in parts per million; changeable while
/// the proxy runs.
#[derive(Debug, Default)]
pub struct ProxyFaults {
    /// Faults are injected only while set.
    pub enabled: AtomicBool,
    /// Drop the whole connection at a chunk (either direction).
    pub drop_ppm: AtomicU32,
    /// Hold a chunk back for 1..=`delay_ms_max` ms before forwarding it.
    pub delay_ppm: AtomicU32,
    pub delay_ms_max: AtomicU32,
    /// Throw away a server→client chunk carrying a response frame, and
    /// close the connection.
    pub lost_reply_ppm: AtomicU32,
}

/// Chances of each fault, as [`ProxyFaults`] takes them.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProxySettings {
    pub drop_ppm: u32,
    pub delay_ppm: u32,
    pub delay_ms_max: u32,
    pub lost_reply_ppm: u32,
}

/// What the proxy did so far.
#[derive(Debug, Default)]
struct Stats {
    connections: AtomicU64,
    upstream_refused: AtomicU64,
    dropped_connections: AtomicU64,
    delayed_chunks: AtomicU64,
    lost_replies: AtomicU64,
    replies_forwarded: AtomicU64,
    cut_connections: AtomicU64,
}

/// A copy of the proxy's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyCounts {
    /// Client connections accepted.
    pub connections: u64,
    /// Connections closed at once because the master was not listening.
    pub upstream_refused: u64,
    /// Connections dropped mid-stream by a fault roll.
    pub dropped_connections: u64,
    /// Chunks held back before forwarding.
    pub delayed_chunks: u64,
    /// Server→client chunks with response frames thrown away.
    pub lost_replies: u64,
    /// Server→client chunks with response frames forwarded.
    pub replies_forwarded: u64,
    /// Connections closed by [`FaultProxy::cut_all`].
    pub cut_connections: u64,
}

/// What the proxied connections carry, which tells the proxy which
/// server→client bytes may be replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Carried {
    /// gRPC over plaintext HTTP/2: replies are HEADERS, DATA and
    /// CONTINUATION frames.
    #[default]
    Http2,
    /// gRPC over TLS: any application-data record may hold a reply.
    Tls,
}

/// A running proxy; stops (closing every connection) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    carried: Carried,
    faults: Arc<ProxyFaults>,
    stats: Arc<Stats>,
    cut: watch::Sender<u64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` on 127.0.0.1:0, on a runtime of its own.
    pub fn start(upstream: SocketAddr, seed: u64, settings: ProxySettings) -> FaultProxy {
        FaultProxy::start_carrying(upstream, seed, settings, Carried::Http2)
    }

    /// [`FaultProxy::start`] for connections carrying `carried`.
    pub fn start_carrying(
        upstream: SocketAddr,
        seed: u64,
        settings: ProxySettings,
        carried: Carried,
    ) -> FaultProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .expect("proxy runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("proxy bind");
        let addr = listener.local_addr().expect("proxy addr");
        let faults = Arc::new(ProxyFaults::default());
        let stats = Arc::new(Stats::default());
        let (cut, cuts) = watch::channel(0);
        runtime.spawn(accept_loop(
            listener,
            upstream,
            carried,
            seed,
            Arc::clone(&faults),
            Arc::clone(&stats),
            cuts,
        ));
        let proxy = FaultProxy {
            addr,
            carried,
            faults,
            stats,
            cut,
            runtime: Some(runtime),
        };
        proxy.set(settings);
        proxy.set_enabled(true);
        proxy
    }

    /// `http://ADDR` (`https://` over TLS), for a worker's `--master`.
    pub fn url(&self) -> String {
        let scheme = match self.carried {
            Carried::Http2 => "http",
            Carried::Tls => "https",
        };
        format!("{scheme}://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the fault chances.
    pub fn set(&self, settings: ProxySettings) {
        let f = &self.faults;
        f.drop_ppm.store(settings.drop_ppm, Ordering::Relaxed);
        f.delay_ppm.store(settings.delay_ppm, Ordering::Relaxed);
        f.delay_ms_max
            .store(settings.delay_ms_max.max(1), Ordering::Relaxed);
        f.lost_reply_ppm
            .store(settings.lost_reply_ppm, Ordering::Relaxed);
    }

    /// Turns fault injection on or off (forwarding goes on either way).
    pub fn set_enabled(&self, enabled: bool) {
        self.faults.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Closes every open connection now.
    pub fn cut_all(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    pub fn counts(&self) -> ProxyCounts {
        let s = &self.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProxyCounts {
            connections: get(&s.connections),
            upstream_refused: get(&s.upstream_refused),
            dropped_connections: get(&s.dropped_connections),
            delayed_chunks: get(&s.delayed_chunks),
            lost_replies: get(&s.lost_replies),
            replies_forwarded: get(&s.replies_forwarded),
            cut_connections: get(&s.cut_connections),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Drops every task, so every socket closes.
            runtime.shutdown_background();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    carried: Carried,
    seed: u64,
    faults: Arc<ProxyFaults>,
    stats: Arc<Stats>,
    cuts: watch::Receiver<u64>,
) {
    let mut number = 0u64;
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // e.g. out of file descriptors: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        number += 1;
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let conn = Conn {
            upstream,
            carried,
            seed: mix(seed, number),
            faults: Arc::clone(&faults),
            stats: Arc::clone(&stats),
        };
        tokio::spawn(conn.serve(client, cuts.clone()));
    }
}

/// A seed per connection and direction from the run's seed (splitmix64).
fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Conn {
    upstream: SocketAddr,
    carried: Carried,
    seed: u64,
    faults: Arc<ProxyFaults>,
    stats: Arc<Stats>,
}

/// Why a direction stopped forwarding.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The sender closed, or a socket failed.
    Closed,
    /// A fault roll dropped the connection (`reset`: with a TCP RST).
    Dropped { reset: bool },
    /// A response was thrown away.
    LostReply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToServer,
    ToClient,
}

impl Conn {
    async fn serve(self, client: TcpStream, mut cuts: watch::Receiver<u64>) {
        let server = match TcpStream::connect(self.upstream).await {
            Ok(server) => server,
            Err(_) => {
                self.stats.upstream_refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        cuts.mark_unchanged();
        let up = self.pump(client_read, &server_write, Direction::ToServer);
        let down = self.pump(server_read, &client_write, Direction::ToClient);
        let end = tokio::select! {
            end = up => end,
            end = down => end,
            _ = cuts.changed() => {
                self.stats.cut_connections.fetch_add(1, Ordering::Relaxed);
                End::Dropped { reset: true }
            }
        };
        if matches!(end, End::Dropped { reset: true } | End::LostReply) {
            reset_on_close(&client_write);
            reset_on_close(&server_write);
        }
        // Dropping the halves closes both sockets.
    }

    /// Forwards `from` to `to` until either closes or a fault ends it.
    async fn pump(&self, mut from: OwnedReadHalf, to: &OwnedWriteHalf, dir: Direction) -> End {
        let stream_seed = mix(self.seed, dir as u64 + 1);
        let mut rng = StdRng::seed_from_u64(stream_seed);
        let mut replies = ReplyTracker::new(self.carried);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return End::Closed,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            let reply = dir == Direction::ToClient && replies.feed(chunk);
            // Rolled whether or not faults are on, so the sequence of rolls
            // per connection does not depend on when faults were enabled.
            let rolls: [u32; 4] = std::array::from_fn(|_| rng.random_range(0..1_000_000));
            let delay_ms =
                rng.random_range(1..=self.faults.delay_ms_max.load(Ordering::Relaxed).max(1));
            if self.faults.enabled.load(Ordering::Relaxed) {
                if rolls[0] < self.faults.drop_ppm.load(Ordering::Relaxed) {
                    self.stats
                        .dropped_connections
                        .fetch_add(1, Ordering::Relaxed);
                    return End::Dropped {
                        reset: rolls[3].is_multiple_of(2),
                    };
                }
                if reply && rolls[1] < self.faults.lost_reply_ppm.load(Ordering::Relaxed) {
                    self.stats.lost_replies.fetch_add(1, Ordering::Relaxed);
                    return End::LostReply;
                }
                if rolls[2] < self.faults.delay_ppm.load(Ordering::Relaxed) {
                    self.stats.delayed_chunks.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(u64::from(delay_ms))).await;
                }
            }
            if reply {
                self.stats.replies_forwarded.fetch_add(1, Ordering::Relaxed);
            }
            if write_all(to, chunk).await.is_err() {
                return End::Closed;
            }
        }
    }
}

async fn write_all(to: &OwnedWriteHalf, mut bytes: &[u8]) -> std::io::Result<()> {
    // `OwnedWriteHalf` needs `&mut` for AsyncWrite; `try_write` after
    // `writable` works on a shared reference.
    while !bytes.is_empty() {
        to.writable().await?;
        match to.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// SO_LINGER 0: closing the socket sends a TCP RST instead of a FIN, as a
/// crashed peer or a middlebox timing out would.
fn reset_on_close(half: &OwnedWriteHalf) {
    let stream: &TcpStream = half.as_ref();
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a properly sized, initialized option.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Tells the server→client chunks that may carry a reply.
enum ReplyTracker {
    Http2(FrameTracker),
    Tls(RecordTracker),
}

impl ReplyTracker {
    fn new(carried: Carried) -> ReplyTracker {
        match carried {
            Carried::Http2 => ReplyTracker::Http2(FrameTracker::default()),
            Carried::Tls => ReplyTracker::Tls(RecordTracker::default()),
        }
    }

    /// Takes the next bytes; true if any may belong to a reply.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        match self {
            ReplyTracker::Http2(frames) => frames.feed(bytes),
            ReplyTracker::Tls(records) => records.feed(bytes),
        }
    }
}

/// Follows TLS record boundaries in one direction of a connection.
#[derive(Debug, Default)]
struct RecordTracker {
    head: [u8; 5],
    head_len: usize,
    /// Bytes of the current record's body not seen yet.
    body_left: usize,
    kind: u8,
}

/// The TLS record type of application data: every record after the
/// handshake (in TLS 1.3 the end of the handshake too).
const TLS_APPLICATION_DATA: u8 = 23;

impl RecordTracker {
    /// Takes the next bytes; true if any belong to an application-data
    /// record.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        let mut data = false;
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let take = self.body_left.min(bytes.len());
                data |= self.kind == TLS_APPLICATION_DATA;
                self.body_left -= take;
                bytes = &bytes[take..];
                continue;
            }
            let take = (5 - self.head_len).min(bytes.len());
            self.head[self.head_len..self.head_len + take].copy_from_slice(&bytes[..take]);
            self.head_len += take;
            bytes = &bytes[take..];
            if self.head_len == 5 {
                let h = self.head;
                self.body_left = (usize::from(h[3]) << 8) | usize::from(h[4]);
                self.kind = h[0];
                self.head_len = 0;
                data |= self.kind == TLS_APPLICATION_DATA;
            }
        }
        data
    }
}

/// Follows HTTP/2 frame boundaries in one direction of a connection that
/// does not start with the client preface (server→client).
#[derive(Debug, Default)]
struct FrameTracker {
    head: [u8; 9],
    head_len: usize,
    /// Payload bytes of the current frame not seen yet.
    payload_left: usize,
    kind: u8,
}

/// HTTP/2 frame types that carry a response: DATA, HEADERS, CONTINUATION.
fn is_response_frame(kind: u8) -> bool {
    matches!(kind, 0x0 | 0x1 | 0x9)
}

impl FrameTracker {
    /// Takes the next bytes; true if any belong to a response frame.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        let mut response = false;
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let take = self.payload_left.min(bytes.len());
                response |= is_response_frame(self.kind);
                self.payload_left -= take;
                bytes = &bytes[take..];
                continue;
            }
            let take = (9 - self.head_len).min(bytes.len());
            self.head[self.head_len..self.head_len + take].copy_from_slice(&bytes[..take]);
            self.head_len += take;
            bytes = &bytes[take..];
            if self.head_len == 9 {
                let h = self.head;
                self.payload_left =
                    (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                self.kind = h[3];
                self.head_len = 0;
                response |= is_response_frame(self.kind);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            0,
            0,
            0,
            0,
            1,
        ];
        out.extend_from_slice(payload);
        out
    }

    fn record(kind: u8, body: &[u8]) -> Vec<u8> {
        let len = body.len();
        let mut out = vec![kind, 3, 3, (len >> 8) as u8, len as u8];
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn record_tracker_tells_application_data_from_the_handshake() {
        let hello = record(22, &[0; 90]);
        let change_cipher = record(20, &[1]);
        let data = record(TLS_APPLICATION_DATA, &[7; 300]);
        let mut t = RecordTracker::default();
        assert!(!t.feed(&hello));
        assert!(!t.feed(&change_cipher));
        // Split at every point: the part holding the record's bytes is seen.
        for cut in 1..data.len() {
            let mut t = RecordTracker::default();
            assert!(!t.feed(&hello));
            let first = t.feed(&data[..cut]);
            let second = t.feed(&data[cut..]);
            assert_eq!(first, cut >= 5, "cut {cut}");
            assert!(second, "cut {cut}");
            assert!(!t.feed(&change_cipher), "cut {cut}");
        }
    }

    #[test]
    fn frame_tracker_tells_responses_from_control_frames() {
        let mut t = FrameTracker::default();
        let settings = frame(0x4, &[0; 6]);
        let ping = frame(0x6, &[0; 8]);
        assert!(!t.feed(&settings));
        assert!(!t.feed(&ping));
        let mut reply = frame(0x1, &[1; 20]);
        reply.extend(frame(0x0, &[2; 100]));
        // Split at every point: the part holding the reply's bytes is seen.
        for cut in 1..reply.len() {
            let mut t = FrameTracker::default();
            let first = t.feed(&reply[..cut]);
            let second = t.feed(&reply[cut..]);
            // A lone part of a frame header does not tell the frame's type yet.
            assert_eq!(first, cut >= 9, "cut {cut}");
            assert!(second, "cut {cut}");
            assert!(!t.feed(&ping), "cut {cut}");
        }
    }
}
