//! A stand-in master with canned answers, served on a free local port, so
//! the CLI and the SDK can be tested without the real master.
//!
//! Pipelines it knows: `p-ok` (running on the first status call, then
//! succeeded; group `extract` has committed outputs) and `p-bad` (failed,
//! with one failed unit). Submitting a spec named `failing` returns
//! `p-bad`, named `refused` is refused with INVALID_ARGUMENT, anything else
//! returns `p-ok`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use taskmaster_proto::v1::task_master_server::{TaskMaster, TaskMasterServer};
use taskmaster_proto::v1::*;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// What the fake saw, for tests to assert on.
#[derive(Debug, Default)]
pub struct Seen {
    pub submitted: Mutex<Vec<PipelineSpec>>,
    pub status_calls: AtomicU32,
}

/// A running fake master; stops when dropped.
pub struct FakeMaster {
    pub url: String,
    pub seen: Arc<Seen>,
    _stop: oneshot::Sender<()>,
}

impl FakeMaster {
    /// Serves the fake on 127.0.0.1, port chosen by the OS.
    pub async fn start() -> FakeMaster {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Seen::default());
        let service = TaskMasterServer::new(Fake { seen: seen.clone() });
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        FakeMaster {
            url,
            seen,
            _stop: stop,
        }
    }
}

struct Fake {
    seen: Arc<Seen>,
}

fn group(name: &str, committed: u64, failed: u64) -> GroupStatus {
    GroupStatus {
        name: name.into(),
        config_version: 1,
        counts: Some(UnitCounts {
            pending: 0,
            leased: 0,
            committed,
            failed,
        }),
        complete: failed == 0,
    }
}

fn status_of(id: &str, call: u32) -> Option<PipelineStatus> {
    let mut status = PipelineStatus {
        pipeline_id: id.into(),
        params: [("ds".to_string(), "2026-11-21".to_string())].into(),
        ..Default::default()
    };
    match id {
        "p-ok" => {
            status.name = "good".into();
            let running = call == 0;
            status.set_state(if running {
                PipelineState::Running
            } else {
                PipelineState::Succeeded
            });
            status.groups = vec![group("extract", if running { 1 } else { 2 }, 0)];
        }
        "p-bad" => {
            status.name = "failing".into();
            status.set_state(PipelineState::Failed);
            status.groups = vec![group("extract", 1, 1)];
            status.failed_units = vec![FailedUnit {
                group: "extract".into(),
                unit: 1,
                attempts: 3,
                errors: vec!["exit status 1".into(), "exit status 7".into()],
            }];
            status.retries = 2;
        }
        _ => return None,
    }
    Some(status)
}

#[tonic::async_trait]
impl TaskMaster for Fake {
    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        let spec = request.into_inner().spec.unwrap_or_default();
        let id = match spec.name.as_str() {
            "refused" => {
                return Err(Status::invalid_argument(
                    "group `g`: unknown `after` group `nope`",
                ));
            }
            "failing" => "p-bad",
            _ => "p-ok",
        };
        self.seen.submitted.lock().unwrap().push(spec);
        Ok(Response::new(SubmitResponse {
            pipeline_id: id.into(),
        }))
    }

    async fn get_status(
        &self,
        request: Request<GetStatusRequest>,
    ) -> Result<Response<PipelineStatus>, Status> {
        let id = request.into_inner().pipeline_id;
        let call = self.seen.status_calls.fetch_add(1, Ordering::SeqCst);
        status_of(&id, call)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("pipeline {id} not found")))
    }

    async fn list_pipelines(
        &self,
        _: Request<ListPipelinesRequest>,
    ) -> Result<Response<ListPipelinesResponse>, Status> {
        let pipelines = vec![
            status_of("p-ok", 1).unwrap(),
            status_of("p-bad", 0).unwrap(),
        ];
        Ok(Response::new(ListPipelinesResponse { pipelines }))
    }

    async fn list_outputs(
        &self,
        request: Request<ListOutputsRequest>,
    ) -> Result<Response<ListOutputsResponse>, Status> {
        let request = request.into_inner();
        if request.pipeline_id != "p-ok" || request.group != "extract" {
            return Err(Status::not_found(format!(
                "group {} not found",
                request.group
            )));
        }
        // Out of order on purpose: the client sorts by unit.
        let units = vec![
            UnitOutputs {
                unit: 1,
                lease_id: 12,
                paths: vec!["/store/1/b".into(), "/store/1/a".into()],
            },
            UnitOutputs {
                unit: 0,
                lease_id: 10,
                paths: vec!["/store/0/a".into()],
            },
        ];
        Ok(Response::new(ListOutputsResponse { units }))
    }

    async fn lease(&self, _: Request<LeaseRequest>) -> Result<Response<LeaseResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn renew(&self, _: Request<RenewRequest>) -> Result<Response<RenewResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn commit(&self, _: Request<CommitRequest>) -> Result<Response<CommitResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn release(
        &self,
        _: Request<ReleaseRequest>,
    ) -> Result<Response<ReleaseResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}
