//! One identity over its share of waiting lease calls (issue 24): with
//! `--auth` and the default `--max-long-polls-per-identity` (64), an
//! identity that opens thousands of lease calls on one connection has 64
//! of them wait and the rest refused with RESOURCE_EXHAUSTED naming the
//! flag, and its other calls on that same connection are answered
//! meanwhile.
//!
//! The refused calls send their message a moment after their headers, as
//! a loaded client's may. The master refuses a call on its headers and
//! answers 5 to 15 s later (`LONG_POLL_REFUSAL_PAUSE`); a message that came for
//! a refused call after the master had dropped its body used to be charged
//! by h2 against the connection's budget for small DATA frames and never
//! given back, and after about 2,200 such calls h2 closed the connection
//! (GOAWAY, ENHANCE_YOUR_CALM), failing every call on it: the identity's
//! other calls starved. The master now reads a refused call's body before
//! it answers.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use taskmaster_proto::credentials::{Credentials, MasterChannel, authorized};
use taskmaster_proto::v1::task_master_client::TaskMasterClient;
use taskmaster_proto::v1::{LeaseRequest, LeaseResponse, ListPipelinesRequest};
use taskmaster_tests::*;
use tokio::task::JoinSet;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;

/// The default of `--max-long-polls-per-identity`.
const SHARE: usize = 64;
/// Lease calls over the share, in waves of [`WAVE`] (a wave is refused
/// before the next is sent): more than h2's budget allowed before the fix
/// (each unread message cost it about 240 of 512 KiB).
const OVER: usize = 3_000;
const WAVE: usize = 1_500;
/// HTTP/2 streams the master lets the connection have open: a wave and
/// the share. Not many more: small messages received but not yet read
/// are charged to the same budget (which is h2 doing its job).
const STREAMS: usize = 2_048;
/// How long after its headers a lease call sends its message.
const MESSAGE_LATE: Duration = Duration::from_millis(50);

#[test]
fn t41_an_identity_over_its_long_poll_share_is_refused_and_its_other_calls_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let streams = STREAMS.to_string();
    let master = MasterProcess::start_with(
        &tmp.path().join("data"),
        "127.0.0.1:0",
        30_000,
        &["--auth", "--max-streams-per-connection", &streams],
    );
    let admin_file = master.data_dir.join("admin.token");
    let admin = Credentials::from_sources(None, Some(&admin_file)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(master.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        // One connection carries every call below.
        let channel = authorized(channel, admin);
        let mut raw = TaskMasterClient::new(channel.clone());
        let mut calls = JoinSet::new();
        for _ in 0..SHARE {
            calls.spawn(lease_with_a_late_message(channel.clone()));
        }
        for wave in 0..OVER / WAVE {
            for _ in 0..WAVE {
                calls.spawn(lease_with_a_late_message(channel.clone()));
            }
            // While the refused calls wait for their answer, the
            // identity's other calls on the same connection are answered.
            let asked_until = Instant::now() + Duration::from_secs(5);
            let (mut answered, mut slowest) = (0, Duration::ZERO);
            while Instant::now() < asked_until {
                let asked = Instant::now();
                raw.list_pipelines(ListPipelinesRequest::default())
                    .await
                    .unwrap_or_else(|e| panic!("wave {wave}, after {answered} answers: {e:?}"));
                slowest = slowest.max(asked.elapsed());
                answered += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            eprintln!("wave {wave}: {answered} list calls, the slowest {slowest:?}");
            assert!(
                slowest < Duration::from_secs(2),
                "wave {wave}: the slowest of {answered} list calls took {slowest:?}"
            );
            // The calls over the share are refused, naming the flag; the
            // share waits on.
            for refused in 0..WAVE {
                let done = tokio::time::timeout(Duration::from_secs(30), calls.join_next())
                    .await
                    .unwrap_or_else(|_| panic!("wave {wave}: {refused} refusals in 30 s"))
                    .expect("calls are left");
                let status = match done.unwrap() {
                    Err(status) => status,
                    Ok(reply) => panic!("a lease call over the share was answered: {reply:?}"),
                };
                assert_eq!(
                    status.code(),
                    Code::ResourceExhausted,
                    "wave {wave}: {status:?}"
                );
                assert!(
                    status.message().contains("--max-long-polls-per-identity"),
                    "{status:?}"
                );
            }
            assert_eq!(calls.len(), SHARE, "the share still waits");
        }
        raw.list_pipelines(ListPipelinesRequest::default())
            .await
            .expect("the connection still answers");
        calls.abort_all();
    });
}

/// A lease call that waits as long as one may (there is no work), whose
/// message is sent [`MESSAGE_LATE`] after its headers.
async fn lease_with_a_late_message(channel: MasterChannel) -> Result<LeaseResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let message = futures_util::stream::once(async {
        tokio::time::sleep(MESSAGE_LATE).await;
        LeaseRequest {
            worker_id: "admin".into(),
            max_units: 1,
            wait_ms: 60_000,
            compact: true,
            worker_slots: 0,
        }
    });
    let path = PathAndQuery::from_static("/taskmaster.v1.TaskMaster/Lease");
    grpc.client_streaming(tonic::Request::new(message), path, Prost::default())
        .await
        .map(tonic::Response::into_inner)
}

/// Protocol Buffers encoding for a call made without the generated client
/// (so that its message can be sent after its headers).
struct Prost<E, D>(PhantomData<fn(E) -> D>);

impl<E, D> Default for Prost<E, D> {
    fn default() -> Self {
        Prost(PhantomData)
    }
}

impl<E, D> Codec for Prost<E, D>
where
    E: prost::Message + Send + 'static,
    D: prost::Message + Default + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = Prost<E, ()>;
    type Decoder = Prost<(), D>;

    fn encoder(&mut self) -> Self::Encoder {
        Prost(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        Prost(PhantomData)
    }
}

impl<E: prost::Message + Send + 'static> Encoder for Prost<E, ()> {
    type Item = E;
    type Error = tonic::Status;

    fn encode(&mut self, item: E, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        item.encode(buf)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl<D: prost::Message + Default + Send + 'static> Decoder for Prost<(), D> {
    type Item = D;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<D>, tonic::Status> {
        D::decode(buf)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}
