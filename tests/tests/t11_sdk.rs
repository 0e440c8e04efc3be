//! The `Client` SDK against the real master, started in-process; units are
//! run by a real worker or leased and committed by hand.

use std::time::Duration;

use taskmaster_client::{Client, ClientError};
use taskmaster_proto::v1::{GetStatusRequest, LeaseRequest, PipelineState};
use taskmaster_tests::in_process::{
    HandWorker, TestMaster, WAIT, finish_failing, finish_good, is_pipeline_id, spec,
};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_polls_until_finished_and_reports_each_status() {
    let master = TestMaster::start().await;
    let client = master.client().await;
    let dir = tempfile::tempdir().unwrap();
    let id = client.submit(spec(dir.path(), "good", 1, 0)).await.unwrap();
    let hand = HandWorker::new(&client);
    let lease = hand.lease(1).await.remove(0);

    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let waiting = client.wait_with(&id, Duration::from_millis(1), move |status| {
        let _ = seen_tx.send(status.state());
    });
    // The unit is committed only once wait has reported it running.
    let finishing = async {
        assert_eq!(seen_rx.recv().await, Some(PipelineState::Running));
        hand.succeed(&lease, &["out"]).await;
    };
    let (status, ()) = tokio::time::timeout(WAIT, async { tokio::join!(waiting, finishing) })
        .await
        .expect("the pipeline finishes in time");
    let status = status.unwrap();
    assert_eq!(status.state(), PipelineState::Succeeded);

    let mut seen = vec![PipelineState::Running];
    while let Ok(state) = seen_rx.try_recv() {
        seen.push(state);
    }
    seen.dedup();
    assert_eq!(seen, [PipelineState::Running, PipelineState::Succeeded]);
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_ends_with_the_failed_units_of_a_failed_pipeline() {
    let master = TestMaster::start().await;
    let client = master.client().await;
    let dir = tempfile::tempdir().unwrap();
    let id = finish_failing(&client, dir.path()).await;
    let status = tokio::time::timeout(WAIT, client.wait(&id, Duration::ZERO))
        .await
        .expect("wait returns in time")
        .unwrap();
    assert_eq!(status.state(), PipelineState::Failed);
    let failed = &status.failed_units[0];
    assert_eq!((failed.group.as_str(), failed.unit), ("extract", 1));
    assert_eq!(failed.attempts, 3);
    assert_eq!(
        failed.errors,
        ["exit status 1", "exit status 2", "exit status 7"]
    );
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_worker_runs_the_units_and_their_outputs_are_readable() {
    let master = TestMaster::with_worker().await;
    let client = master.client().await;
    let dir = tempfile::tempdir().unwrap();
    let id = client.submit(spec(dir.path(), "good", 2, 0)).await.unwrap();
    let status = tokio::time::timeout(WAIT, client.wait(&id, Duration::from_millis(10)))
        .await
        .expect("the pipeline finishes in time")
        .unwrap();
    assert_eq!(status.state(), PipelineState::Succeeded);
    let paths = client.output_paths(&id, "extract").await.unwrap();
    assert_eq!(paths.len(), 2, "{paths:?}");
    for (unit, path) in paths.iter().enumerate() {
        assert!(
            path.contains(&format!("/{id}/extract/{unit}/")),
            "{path} is not under unit {unit}'s prefix"
        );
        assert_eq!(std::fs::read_to_string(path).unwrap(), "hi\n");
    }
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_are_in_unit_order() {
    let master = TestMaster::start().await;
    let client = master.client().await;
    let dir = tempfile::tempdir().unwrap();
    // Unit 1 is committed before unit 0, with files `b` then `a`.
    let (id, expected) = finish_good(&client, dir.path()).await;
    let units: Vec<u32> = client
        .outputs(&id, "extract")
        .await
        .unwrap()
        .iter()
        .map(|u| u.unit)
        .collect();
    assert_eq!(units, [0, 1]);
    let paths = client.output_paths(&id, "extract").await.unwrap();
    assert_eq!(paths, expected);
    let names: Vec<&str> = paths
        .iter()
        .map(|p| p.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "a"]);
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_keep_code_and_message() {
    let master = TestMaster::start().await;
    let client = master.client().await;
    let err = client.status("nope-00000000").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::NotFound));
    // The SDK's error is the master's own message plus the code's name.
    let request = GetStatusRequest {
        pipeline_id: "nope-00000000".into(),
    };
    let raw = client.raw().get_status(request).await.unwrap_err();
    assert_eq!(raw.code(), Code::NotFound);
    assert!(raw.message().contains("nope-00000000"), "{raw:?}");
    assert_eq!(err.to_string(), format!("{} (NOT_FOUND)", raw.message()));

    let err = client
        .wait("nope-00000000", Duration::from_millis(1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::NotFound));

    let dir = tempfile::tempdir().unwrap();
    let (id, _) = finish_good(&client, dir.path()).await;
    let err = client.outputs(&id, "nope").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::NotFound));
    assert!(err.to_string().contains("nope"), "{err}");
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_are_refused_with_the_reason_and_change_nothing() {
    let master = TestMaster::start().await;
    let client = master.client().await;
    let dir = tempfile::tempdir().unwrap();

    let mut slash = spec(dir.path(), "bad", 1, 0);
    slash.groups[0].name = "ext/ract".into();
    let mut unknown_after = spec(dir.path(), "bad", 1, 0);
    let mut aggregate = unknown_after.groups[0].clone();
    aggregate.name = "aggregate".into();
    aggregate.inputs.clear();
    aggregate.after = vec!["missing-stage".into()];
    unknown_after.groups.push(aggregate);
    let mut no_groups = spec(dir.path(), "bad", 1, 0);
    no_groups.groups.clear();

    for (spec, names) in [
        (slash, &["ext/ract"][..]),
        (unknown_after, &["aggregate", "missing-stage"][..]),
        (no_groups, &["group"][..]),
    ] {
        let err = client.submit(spec).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Rpc {
                    code: Code::InvalidArgument,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.ends_with(" (INVALID_ARGUMENT)"), "{text}");
        for name in names {
            assert!(text.contains(name), "{text} does not name {name}");
        }
    }
    assert!(client.list().await.unwrap().is_empty());
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_client_shares_the_connection() {
    let master = TestMaster::start().await;
    let client = master.client().await;
    let err = client
        .raw()
        .lease(LeaseRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("max_units"), "{err:?}");

    // What the SDK submitted is what the raw client leases.
    let dir = tempfile::tempdir().unwrap();
    let id = client.submit(spec(dir.path(), "good", 1, 0)).await.unwrap();
    let request = LeaseRequest {
        worker_id: "raw".into(),
        max_units: 10,
        wait_ms: 0,
        compact: false,
        worker_slots: 0,
    };
    let leases = client
        .raw()
        .lease(request)
        .await
        .unwrap()
        .into_inner()
        .leases;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].unit.as_ref().unwrap().pipeline_id, id);
    master.stop().await;
}

#[tokio::test]
async fn connect_errors_name_the_address() {
    let err = Client::connect("http://127.0.0.1:1").await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("http://127.0.0.1:1"), "{err}");
    let err = Client::connect("http://bad host:1").await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidUrl { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_without_scheme_means_http() {
    let master = TestMaster::start().await;
    let bare = master.url.trim_start_matches("http://");
    let client = Client::connect(bare).await.unwrap();
    assert_eq!(client.url(), bare);
    assert!(client.list().await.unwrap().is_empty());
    let dir = tempfile::tempdir().unwrap();
    let id = client.submit(spec(dir.path(), "good", 1, 0)).await.unwrap();
    let listed: Vec<String> = client
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.pipeline_id)
        .collect();
    assert_eq!(listed, [id]);
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_sends_the_spec_and_returns_the_id() {
    let master = TestMaster::start().await;
    let client = master.client().await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(dir.path(), "good", 1, 0);
    spec.groups[0].env = [("LANG".to_string(), "C".to_string())].into();
    let id = client.submit(spec.clone()).await.unwrap();
    assert!(is_pipeline_id(&id, "good"), "{id}");
    let again = client.submit(spec.clone()).await.unwrap();
    assert!(is_pipeline_id(&again, "good"), "{again}");
    assert_ne!(id, again, "every submission is a new pipeline");

    let status = client.status(&id).await.unwrap();
    assert_eq!(status.name, "good");
    assert_eq!(status.params, spec.params);
    assert_eq!(status.state(), PipelineState::Pending);

    // A worker is handed exactly what was submitted.
    let lease = HandWorker::new(&client).lease(1).await.remove(0);
    assert_eq!(lease.unit.as_ref().unwrap().pipeline_id, id);
    let group = &spec.groups[0];
    assert_eq!(lease.task, group.task);
    assert_eq!(lease.command, group.command);
    assert_eq!(lease.workdir, group.workdir);
    assert_eq!(lease.inputs, group.inputs);
    assert_eq!(lease.env, group.env);
    assert_eq!(lease.params, spec.params);
    master.stop().await;
}
