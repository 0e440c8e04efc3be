//! The tower layer in front of the gRPC service: reads each call's
//! credentials, finds its identity, checks the role table, and runs the
//! handler as that caller (see [`crate::runtime::actor`]). A refused call never
//! reaches a handler: it is answered here with UNAUTHENTICATED (no or a
//! bad identity), PERMISSION_DENIED (the role may not make this call) or
//! INVALID_ARGUMENT (malformed metadata).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::credentials::{self, Presented};
use super::roles::{self, Needs};
use super::{Access, Caller, Identity};
use crate::core::audit::Actor;
use crate::core::limits::MESSAGE_BYTES_MAX;
use crate::runtime::Master;

/// The unary lease call, which may long-poll.
const LEASE_PATH: &str = "/taskmaster.v1.TaskMaster/Lease";

/// A gRPC message's length prefix (compression flag and length).
const GRPC_FRAME_HEADER_BYTES: usize = 5;

/// Wraps the gRPC routes with the checks of `access`.
#[derive(Clone)]
pub struct AuthLayer {
    access: Arc<Access>,
    master: Arc<Master>,
}

impl AuthLayer {
    pub fn new(access: Arc<Access>, master: Arc<Master>) -> AuthLayer {
        AuthLayer { access, master }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            checks: self.clone(),
        }
    }
}

/// The service [`AuthLayer`] makes.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    checks: AuthLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for Auth<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: tonic::codegen::Body + Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The clone that was made ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let admitted = self
            .checks
            .admit(&request)
            .map_err(Refused::now)
            .and_then(|admitted| Ok((self.checks.limit(&request, admitted.as_ref())?, admitted)));
        match admitted {
            Ok((_, None)) => Box::pin(inner.call(request)),
            Ok((held, Some((caller, actor)))) => {
                request.extensions_mut().insert(caller);
                let call = crate::runtime::actor::with_actor(actor, inner.call(request));
                Box::pin(async move {
                    // A lease call's place is held until it answers.
                    let _held = held;
                    call.await
                })
            }
            Err(Refused { status, pause }) => {
                let body = request.into_body();
                Box::pin(async move {
                    let now = tokio::time::Instant::now();
                    drain(body, now + pause.max(REFUSED_BODY_WAIT)).await;
                    tokio::time::sleep_until(now + pause).await;
                    Ok(status.into_http())
                })
            }
        }
    }
}

/// A call refused at the edge, and how long its answer waits (a limit's
/// refusals pause, see `limits::LONG_POLL_REFUSAL_PAUSE` and
/// `limits::RATE_REFUSAL_PAUSE`).
struct Refused {
    status: Status,
    pause: Duration,
}

impl Refused {
    /// A refusal answered as soon as the call's body is read.
    fn now(status: Status) -> Refused {
        Refused {
            status,
            pause: Duration::ZERO,
        }
    }
}

/// How long a refused call's request body may take to arrive (see [`drain`]).
const REFUSED_BODY_WAIT: Duration = Duration::from_secs(1);

/// Reads a refused call's request body to its end before the refusal is
/// answered: at most one message's bytes, until `until`. A call is refused
/// on its headers, and its message may come after them. h2 (0.4.20)
/// charges each small DATA frame a connection receives against a budget
/// that the frame's reading gives back, and one that arrives for a body
/// already dropped is charged and never given back: dropping refused
/// bodies unread, about 2,200 refusals on one connection made h2 close it
/// (GOAWAY, ENHANCE_YOUR_CALM, "too_many_data_frames"), failing every call
/// on it, the refused identity's other calls among them (t42_abuse with
/// `--max-long-polls-per-identity`; t41_long_poll_share). What is read is
/// dropped.
async fn drain<B: tonic::codegen::Body>(body: B, until: tokio::time::Instant) {
    let read = async {
        let mut body = std::pin::pin!(body);
        let mut bytes = 0_usize;
        while bytes <= MESSAGE_BYTES_MAX + GRPC_FRAME_HEADER_BYTES {
            match std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        bytes += prost::bytes::Buf::remaining(data);
                    }
                }
                Some(Err(_)) | None => break,
            }
        }
    };
    let _ = tokio::time::timeout_at(until, read).await;
}

impl AuthLayer {
    /// The caller of `request` and the actor its changes are audited as,
    /// None for an open service, or the status that refuses it.
    fn admit<B>(&self, request: &http::Request<B>) -> Result<Option<(Caller, Actor)>, Status> {
        let path = request.uri().path();
        let roles = match roles::needs(path) {
            Needs::Nothing => return Ok(None),
            Needs::OneOf(roles) => Some(roles),
            Needs::Unknown => None,
        };
        let presented = credentials::presented(request.headers())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if !self.access.enabled {
            let actor = Actor {
                name: "anonymous".into(),
                reason: presented.reason,
            };
            return Ok(Some((Caller { identity: None }, actor)));
        }
        let identity = self.identify(&presented, request.extensions())?;
        roles::allow(&identity, path, roles)?;
        let actor = Actor {
            name: identity.shown(),
            reason: presented.reason,
        };
        Ok(Some((
            Caller {
                identity: Some(identity),
            },
            actor,
        )))
    }

    /// Counts an admitted call against the limits: the rate of its
    /// identity (with `--auth`; without, every caller is the same
    /// "anonymous" and local tools are not throttled), and a place among
    /// the lease calls for a unary `Lease` (which may long-poll).
    fn limit<B>(
        &self,
        request: &http::Request<B>,
        admitted: Option<&(Caller, Actor)>,
    ) -> Result<Option<super::limits::LongPoll>, Refused> {
        let Some((caller, _)) = admitted else {
            return Ok(None);
        };
        let path = request.uri().path();
        let limits = &self.access.limits;
        let refused = |pause| {
            move |status| Refused {
                status,
                pause: super::limits::jittered(pause),
            }
        };
        if let Some(identity) = &caller.identity
            && !roles::is_worker_call(path)
        {
            let now_ms = self.master.now_ms();
            self.access
                .counters
                .rate(limits, &identity.name, now_ms)
                .map_err(refused(super::limits::RATE_REFUSAL_PAUSE))?;
        }
        if path == LEASE_PATH {
            let who = caller.identity.as_ref().map(|i| &i.name);
            return self
                .access
                .counters
                .long_poll(limits, who)
                .map(Some)
                .map_err(refused(super::limits::LONG_POLL_REFUSAL_PAUSE));
        }
        Ok(None)
    }

    /// Who presented these credentials: a bearer token takes precedence
    /// over a client certificate (so an operator's tool on a worker's
    /// machine can use its own token).
    fn identify(
        &self,
        presented: &Presented,
        extensions: &http::Extensions,
    ) -> Result<Identity, Status> {
        if let Some(token) = &presented.bearer {
            return self.access.identify_token(&self.master, token);
        }
        let certs = extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs);
        if let Some(leaf) = certs.as_ref().and_then(|c| c.first()) {
            let name = super::cert::subject_name(leaf).map_err(Status::unauthenticated)?;
            return Ok(Identity {
                name: name.into(),
                role: taskmaster_proto::v1::Role::Worker,
            });
        }
        Err(Status::unauthenticated(
            "this master requires an identity: a bearer token (--token, --token-file, \
             TASKMASTER_TOKEN) or, for a worker, a client certificate",
        ))
    }
}
