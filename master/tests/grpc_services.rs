//! Standard gRPC tools can talk to the master from the `.proto` alone:
//! the health service reports SERVING and reflection lists our service.

use std::sync::Arc;

use taskmaster_master::clock::MonotonicClock;
use taskmaster_master::runtime::{Master, MasterConfig};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

#[tokio::test]
async fn health_and_reflection_answer() {
    let dir = tempfile::tempdir().unwrap();
    let config = MasterConfig::new(dir.path().join("data"));
    let master = Arc::new(Master::open(&config, Arc::new(MonotonicClock::default())).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(taskmaster_master::server::serve(
        listener,
        master.clone(),
        async {
            let _ = stopped.await;
        },
    ));

    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    let service = "taskmaster.v1.TaskMaster".to_string();
    let reply = health
        .check(HealthCheckRequest { service })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.status(), ServingStatus::Serving);

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies
        .message()
        .await
        .unwrap()
        .expect("a reflection reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply: {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"taskmaster.v1.TaskMaster".to_string()),
        "{names:?}"
    );

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    master.close();
}
