//! The `Work` stream through the SDK's `WorkStream`, against a real master:
//! the calls mean what their unary forms mean (commits are checked the same
//! way), requests are served concurrently, errors keep their codes, and a
//! master shutting down ends the stream instead of hanging on it.

use std::time::Duration;

use taskmaster_proto::compact::expand;
use taskmaster_proto::v1::{
    CommitItem, CommitRequest, Lease, LeaseNext, LeaseRef, LeaseRequest, Outputs, PipelineState,
    ReleaseRequest, RenewRequest, WorkRequest, commit_item, work_reply,
};
use taskmaster_tests::in_process::{TestMaster, WAIT, spec};
use taskmaster_worker::work_stream::WorkStream;
use tonic::Code;

fn lease_request(max_units: u32, wait_ms: u32) -> LeaseRequest {
    LeaseRequest {
        worker_id: "stream-worker".into(),
        max_units,
        wait_ms,
        compact: false,
        worker_slots: 0,
    }
}

fn lease_ref(lease: &Lease) -> LeaseRef {
    LeaseRef {
        unit: lease.unit.clone(),
        lease_id: lease.lease_id,
        config_version: lease.config_version,
        incarnation: lease.incarnation,
    }
}

fn commit_request(token: &str, leases: &[Lease]) -> CommitRequest {
    CommitRequest {
        server_token: token.into(),
        items: leases
            .iter()
            .map(|lease| CommitItem {
                lease: Some(lease_ref(lease)),
                result: Some(commit_item::Result::Outputs(Outputs::default())),
            })
            .collect(),
        lease_next: None,
    }
}

/// Compact leases, as the stock worker asks for them, through the stream's
/// lease and a commit's `lease_next`: each group's settings come once, and
/// the expanded leases commit like full ones.
#[tokio::test]
async fn compact_leases_expand_and_commit_over_a_stream() {
    let master = TestMaster::start().await;
    let client = master.client().await;
    let dir = tempfile::tempdir().unwrap();
    let id = client
        .submit(spec(dir.path(), "compact", 4, 0))
        .await
        .unwrap();
    let stream = WorkStream::open(client.raw()).await.unwrap();

    let reply = stream
        .lease(LeaseRequest {
            compact: true,
            worker_slots: 0,
            ..lease_request(2, 0)
        })
        .await
        .unwrap();
    assert_eq!((reply.leases.len(), reply.lease_groups.len()), (2, 1));
    let group = &reply.lease_groups[0];
    assert_eq!(
        (group.pipeline_id.as_str(), group.group.as_str()),
        (id.as_str(), "extract")
    );
    assert!(
        reply
            .leases
            .iter()
            .all(|l| l.server_token.is_empty() && l.lease_group == 1)
    );
    let leases = expand(reply.leases, &reply.lease_groups).unwrap();
    for lease in &leases {
        let unit = lease.unit.as_ref().unwrap();
        assert_eq!(unit.pipeline_id, id);
        assert_eq!(lease.task, "exec");
        assert_eq!(lease.params["ds"], "2026-11-21");
        assert_ne!(lease.incarnation, 0, "a running master has an incarnation");
        assert_eq!(
            lease.output_prefix,
            format!(
                "{id}/extract/{}/{}-{:016x}/",
                unit.unit, lease.lease_id, lease.incarnation
            )
        );
    }

    let token = leases[0].server_token.clone();
    let mut request = commit_request(&token, &leases);
    request.lease_next = Some(LeaseNext {
        worker_id: "stream-worker".into(),
        max_units: 5,
        compact: true,
    });
    let committed = stream.commit(request).await.unwrap();
    assert!(
        committed.results.iter().all(|r| r.code == 0),
        "{committed:?}"
    );
    let rest = expand(committed.leases, &committed.lease_groups).unwrap();
    assert_eq!(rest.len(), 2);
    let committed = stream.commit(commit_request(&token, &rest)).await.unwrap();
    assert!(
        committed.results.iter().all(|r| r.code == 0),
        "{committed:?}"
    );
    let status = client.status(&id).await.unwrap();
    assert_eq!(status.groups[0].counts.unwrap().committed, 4);
}

#[tokio::test]
async fn units_are_leased_renewed_and_committed_exactly_once_over_a_stream() {
    let master = TestMaster::start().await;
    let client = master.client().await;
    let dir = tempfile::tempdir().unwrap();
    let id = client
        .submit(spec(dir.path(), "streamed", 3, 0))
        .await
        .unwrap();
    let stream = WorkStream::open(client.raw()).await.unwrap();

    let leases = stream.lease(lease_request(3, 0)).await.unwrap().leases;
    assert_eq!(leases.len(), 3);
    let token = leases[0].server_token.clone();
    let renewed = stream
        .renew(RenewRequest {
            server_token: token.clone(),
            leases: leases.iter().map(lease_ref).collect(),
        })
        .await
        .unwrap();
    assert!(renewed.results.iter().all(|r| r.code == 0), "{renewed:?}");

    // Give one back, commit two, then commit the same two again: the
    // repeat answers OK (a retried commit) and changes nothing.
    let released = stream
        .release(ReleaseRequest {
            server_token: token.clone(),
            leases: vec![lease_ref(&leases[2])],
        })
        .await
        .unwrap();
    assert_eq!(released.results[0].code, 0);
    for _ in 0..2 {
        let committed = stream
            .commit(commit_request(&token, &leases[..2]))
            .await
            .unwrap();
        assert!(
            committed.results.iter().all(|r| r.code == 0),
            "{committed:?}"
        );
    }
    let status = client.status(&id).await.unwrap();
    let counts = status.groups[0].counts.unwrap();
    assert_eq!((counts.committed, counts.pending), (2, 1));

    // A commit under a wrong server token is refused as a whole.
    let again = stream.lease(lease_request(1, 0)).await.unwrap().leases;
    let refused = stream
        .commit(commit_request("not-the-token", &again))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let committed = stream.commit(commit_request(&token, &again)).await.unwrap();
    assert_eq!(committed.results[0].code, 0);
    assert_eq!(
        client.status(&id).await.unwrap().state(),
        PipelineState::Succeeded
    );
    drop(stream);
    master.stop().await;
}

#[tokio::test]
async fn a_long_polling_lease_does_not_hold_up_a_commit_on_the_same_stream() {
    let master = TestMaster::start().await;
    let client = master.client().await;
    let dir = tempfile::tempdir().unwrap();
    client
        .submit(spec(dir.path(), "concurrent", 1, 0))
        .await
        .unwrap();
    let stream = WorkStream::open(client.raw()).await.unwrap();
    let leases = stream.lease(lease_request(1, 0)).await.unwrap().leases;
    let token = leases[0].server_token.clone();

    // Nothing else is ready, so this lease waits (up to 30 s) for work.
    let waiting = stream.lease(lease_request(1, 30_000));
    let commit = stream.commit(commit_request(&token, &leases));
    let committed = tokio::select! {
        committed = commit => committed.unwrap(),
        _ = waiting => panic!("the idle lease answered before the commit"),
    };
    assert_eq!(committed.results[0].code, 0);
    drop(stream);
    master.stop().await;
}

#[tokio::test]
async fn bad_requests_fail_with_the_unary_calls_codes_and_the_stream_goes_on() {
    let master = TestMaster::start().await;
    let client = master.client().await;
    let stream = WorkStream::open(client.raw()).await.unwrap();
    let error = stream.lease(lease_request(0, 0)).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("max_units"), "{error:?}");
    let error = stream.lease(lease_request(1, 3_600_000)).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    // The stream still serves calls after refusing some.
    let idle = stream.lease(lease_request(1, 0)).await.unwrap();
    assert!(idle.leases.is_empty());

    // A request naming no call is answered with an error reply, by id.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let outgoing =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
    let mut replies = client.raw().work(outgoing).await.unwrap().into_inner();
    tx.send(WorkRequest { id: 7, call: None }).await.unwrap();
    let reply = replies.message().await.unwrap().unwrap();
    assert_eq!(reply.id, 7);
    match reply.result {
        Some(work_reply::Result::Error(e)) => {
            assert_eq!(e.code, Code::InvalidArgument as i32);
            assert!(e.message.contains("names no call"), "{e:?}");
        }
        other => panic!("expected an error reply, got {other:?}"),
    }
    drop(tx);
    drop(stream);
    master.stop().await;
}

#[tokio::test]
async fn a_master_shutting_down_ends_open_streams_and_their_calls_fail_unavailable() {
    let master = TestMaster::start().await;
    let client = master.client().await;
    let stream = WorkStream::open(client.raw()).await.unwrap();
    assert!(
        stream
            .lease(lease_request(1, 0))
            .await
            .unwrap()
            .leases
            .is_empty()
    );
    let waiting = tokio::spawn(async move {
        let result = stream.lease(lease_request(1, 30_000)).await;
        (result, stream)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // `stop` fails the test if the server does not stop within WAIT: an
    // open stream must not hold the graceful shutdown.
    tokio::time::timeout(WAIT, master.stop())
        .await
        .expect("the master stops with a stream open");
    let (result, stream) = waiting.await.unwrap();
    // The long-poll ends with the shutdown (an empty answer or an error).
    if let Ok(answer) = result {
        assert!(answer.leases.is_empty());
    }
    let after = stream.lease(lease_request(1, 0)).await.unwrap_err();
    assert_eq!(after.code(), Code::Unavailable, "{after:?}");
}
