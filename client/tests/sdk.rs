//! The `Client` SDK against a fake master with canned answers.

mod fake_master;

use std::time::Duration;

use fake_master::FakeMaster;
use taskmaster_client::{Client, ClientError};
use taskmaster_proto::v1::{LeaseRequest, PipelineState};
use tonic::Code;

#[tokio::test]
async fn wait_polls_until_finished_and_reports_each_status() {
    let master = FakeMaster::start().await;
    let client = Client::connect(&master.url).await.unwrap();
    let mut seen = Vec::new();
    let status = client
        .wait_with("p-ok", Duration::from_millis(1), |s| seen.push(s.state()))
        .await
        .unwrap();
    assert_eq!(status.state(), PipelineState::Succeeded);
    assert_eq!(seen, [PipelineState::Running, PipelineState::Succeeded]);
}

#[tokio::test]
async fn outputs_are_in_unit_order() {
    let master = FakeMaster::start().await;
    let client = Client::connect(&master.url).await.unwrap();
    let units: Vec<u32> = client
        .outputs("p-ok", "extract")
        .await
        .unwrap()
        .iter()
        .map(|u| u.unit)
        .collect();
    assert_eq!(units, [0, 1]);
    let paths = client.output_paths("p-ok", "extract").await.unwrap();
    assert_eq!(paths, ["/store/0/a", "/store/1/b", "/store/1/a"]);
}

#[tokio::test]
async fn errors_keep_code_and_message() {
    let master = FakeMaster::start().await;
    let client = Client::connect(&master.url).await.unwrap();
    let err = client.status("p-nope").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::NotFound));
    assert_eq!(err.to_string(), "pipeline p-nope not found (NOT_FOUND)");
    let err = client
        .wait("p-nope", Duration::from_millis(1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::NotFound));
}

#[tokio::test]
async fn raw_client_shares_the_connection() {
    let master = FakeMaster::start().await;
    let client = Client::connect(&master.url).await.unwrap();
    let status = client
        .raw()
        .lease(LeaseRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
}

#[tokio::test]
async fn connect_errors_name_the_address() {
    let err = Client::connect("http://127.0.0.1:1").await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("http://127.0.0.1:1"), "{err}");
    let err = Client::connect("http://bad host:1").await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidUrl { .. }), "{err:?}");
}

#[tokio::test]
async fn address_without_scheme_means_http() {
    let master = FakeMaster::start().await;
    let bare = master.url.trim_start_matches("http://");
    let client = Client::connect(bare).await.unwrap();
    assert_eq!(client.url(), bare);
    assert_eq!(client.list().await.unwrap().len(), 2);
}

#[tokio::test]
async fn submit_sends_the_spec_and_returns_the_id() {
    let master = FakeMaster::start().await;
    let client = Client::connect(&master.url).await.unwrap();
    let spec = taskmaster_proto::v1::PipelineSpec {
        name: "good".into(),
        ..Default::default()
    };
    assert_eq!(client.submit(spec.clone()).await.unwrap(), "p-ok");
    assert_eq!(*master.seen.submitted.lock().unwrap(), [spec]);
}
