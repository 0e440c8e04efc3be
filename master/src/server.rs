//! Builds the gRPC server (the TaskMaster service plus health and
//! reflection) and runs it on a listener until `shutdown` resolves, so
//! tests can start a master on port 0 and stop it cleanly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use taskmaster_proto::v1::task_master_server::TaskMasterServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use tokio_rustls::rustls::ServerConfig;

use crate::auth::limits::count_connections;
use crate::core::limits::MESSAGE_BYTES_MAX;
use crate::runtime::Master;
use crate::service::Service;
use crate::tls::{self, TlsFiles};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `master` on `listener` (with its reaper, compactor, sweeper and
/// the recorder and retention of finished pipelines) until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    master: Arc<Master>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let access = Arc::new(crate::auth::Access::default());
    serve_with(listener, master, None, access, shutdown).await
}

/// [`serve`], over TLS when `tls` is given (its files, and the config they
/// made at start; the listener reloads them when they change), with the
/// access checks of `access` (`--auth`) on every call.
pub async fn serve_with(
    listener: TcpListener,
    master: Arc<Master>,
    tls: Option<(TlsFiles, Arc<ServerConfig>)>,
    access: Arc<crate::auth::Access>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<TaskMasterServer<Service>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(taskmaster_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let service = TaskMasterServer::new(Service::with_access(
        Arc::clone(&master),
        Arc::clone(&access),
    ))
    .max_decoding_message_size(MESSAGE_BYTES_MAX)
    .max_encoding_message_size(MESSAGE_BYTES_MAX);
    let schedules = taskmaster_proto::v1::schedules_server::SchedulesServer::new(
        crate::schedule_service::ScheduleService::new(Arc::clone(&master)),
    )
    .max_decoding_message_size(MESSAGE_BYTES_MAX)
    .max_encoding_message_size(MESSAGE_BYTES_MAX);
    let scheduler = tokio::spawn(Arc::clone(&master).run_scheduler());
    let notifier = tokio::spawn(Arc::clone(&master).run_notifier());
    let publisher = tokio::spawn(Arc::clone(&master).run_publisher());
    let reaper = tokio::spawn(Arc::clone(&master).run_reaper());
    let compactor = tokio::spawn(Arc::clone(&master).run_compactor());
    let supervisor = tokio::spawn(Arc::clone(&master).run_journal_supervisor());
    // NOT_SERVING while the journal is failed (issue 24).
    let health_keeper = tokio::spawn(Arc::clone(&master).run_health(
        health.clone(),
        vec!["taskmaster.v1.TaskMaster", "taskmaster.v1.Schedules"],
    ));
    // Attempts stop mattering a lease time after their last renewal at most.
    let sweep_every = Duration::from_millis(master.lease_ms().clamp(1_000, 60_000));
    let sweeper = tokio::spawn(Arc::clone(&master).run_sweeper(sweep_every));
    let finished =
        tokio::spawn(Arc::clone(&master).run_finished_pipelines(master.retain_finished()));
    let stopping = {
        let master = Arc::clone(&master);
        async move {
            shutdown.await;
            master.begin_shutdown();
        }
    };
    let limits = access.limits;
    let counters = Arc::clone(&access);
    let router = tonic::transport::Server::builder()
        // HTTP/2 streams one connection may have open (issue 24).
        .max_concurrent_streams(Some(limits.streams_per_connection).filter(|&n| n > 0))
        // Each call's time, for taskmaster_rpc_seconds (/metrics).
        .layer(crate::http::metrics::RpcTimingLayer)
        // Every call's identity and role, before any handler (issue 24).
        .layer(crate::auth::layer::AuthLayer::new(
            access,
            Arc::clone(&master),
        ))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(service)
        .add_service(schedules);
    let result = match tls {
        None => {
            // Replies are small writes: without TCP_NODELAY, Nagle's
            // algorithm and the peer's delayed ACK stall each exchange by
            // up to 40 ms.
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            let incoming = count_connections(incoming, &counters.counters, limits.connections_max);
            router
                .serve_with_incoming_shutdown(incoming, stopping)
                .await
        }
        Some((files, first)) => {
            let incoming = tls::incoming(listener, files, first);
            let incoming = count_connections(incoming, &counters.counters, limits.connections_max);
            router
                .serve_with_incoming_shutdown(incoming, stopping)
                .await
        }
    };
    master.begin_shutdown();
    let _ = scheduler.await;
    let _ = notifier.await;
    let _ = publisher.await;
    let _ = reaper.await;
    let _ = compactor.await;
    let _ = supervisor.await;
    let _ = health_keeper.await;
    let _ = sweeper.await;
    let _ = finished.await;
    Ok(result?)
}
