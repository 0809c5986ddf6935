//! The parts of the contract that need a real server: the stream definition and the
//! request/error-reply helpers.

use rosey_plugin_api::error::{ErrorBody, ErrorCode};
use rosey_plugin_api::reply::{error_reply, ok_reply, request_json, RequestError};
use rosey_plugin_api::stream::{
    ensure_streams, replica_shortfall, StreamLimits, DB_STREAM, DLQ_STREAM,
};
use rosey_plugin_api::subjects::db;
use rosey_tests::NatsServer;
use std::time::Duration;

#[tokio::test]
async fn streams_capture_exactly_the_write_subjects_and_are_idempotent() {
    let server = NatsServer::start();
    let client = server.connect().await;
    let js = async_nats::jetstream::new(client.clone());
    let limits = StreamLimits::default();
    let mut stream = ensure_streams(&js, &limits).await.expect("create streams");
    let info = stream.info().await.expect("stream info").clone();
    let mut subjects = info.config.subjects.clone();
    subjects.sort();
    let mut expected: Vec<String> = db::WRITE_SUBJECTS.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(subjects, expected);
    assert_eq!(info.config.name, DB_STREAM);
    assert_eq!(info.config.duplicate_window, limits.duplicate_window);

    // A second call with other limits updates the stream in place.
    let tighter = StreamLimits {
        max_age: Duration::from_secs(3600),
        ..limits
    };
    let mut again = ensure_streams(&js, &tighter).await.expect("update streams");
    assert_eq!(
        again.info().await.expect("info").config.max_age,
        tighter.max_age
    );
    js.get_stream(DLQ_STREAM)
        .await
        .expect("dead-letter stream exists");
    // More copies than a lone server can keep: nats-server 2.9 accepts the setting and keeps
    // one, so the shortfall is reported in plain words.
    let mut wanting = ensure_streams(
        &js,
        &StreamLimits {
            replicas: 3,
            ..tighter
        },
    )
    .await
    .expect("a standalone server takes the setting");
    let info = wanting.info().await.expect("info").clone();
    let shortfall = replica_shortfall(&info, 3).expect("one copy is short of three");
    assert!(shortfall.contains("keeps 1 of the 3"), "{shortfall}");
    assert_eq!(replica_shortfall(&info, 1), None);
    // A write is stored once even when published twice with the same message id.
    for _ in 0..2 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", "event-1");
        js.publish_with_headers(db::USER_JOINED, headers, r#"{"username":"a"}"#.into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    assert_eq!(again.info().await.expect("info").state.messages, 1);

    // Request subjects are not captured: a request to one gets no publish ack from the stream.
    let reply = client.request(db::OUTBOUND_GET, "{}".into()).await;
    assert!(reply.is_err(), "a stream answered a request subject");
}

#[tokio::test]
async fn typed_requests_read_success_and_error_replies() {
    let server = NatsServer::start();
    let client = server.connect().await;
    let mut sub = client.subscribe("test.echo").await.expect("subscribe");
    let responder = client.clone();
    tokio::spawn(async move {
        use futures::StreamExt;
        while let Some(msg) = sub.next().await {
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            if msg.payload.as_ref() == b"{\"fail\":true}" {
                let (headers, body) = error_reply(&ErrorBody::new(ErrorCode::NotFound, "nothing"));
                responder
                    .publish_with_headers(reply, headers, body)
                    .await
                    .expect("reply");
            } else {
                let body = ok_reply(&serde_json::json!({"ok": true})).expect("encode");
                responder.publish(reply, body).await.expect("reply");
            }
        }
    });
    let ok: serde_json::Value = request_json(
        &client,
        "test.echo",
        &serde_json::json!({"fail": false}),
        Duration::from_secs(10),
    )
    .await
    .expect("success reply");
    assert_eq!(ok["ok"], true);
    let err = request_json::<_, serde_json::Value>(
        &client,
        "test.echo",
        &serde_json::json!({"fail": true}),
        Duration::from_secs(10),
    )
    .await
    .expect_err("error reply");
    match err {
        RequestError::Service(body, _) => assert_eq!(body.error.code, ErrorCode::NotFound),
        other => panic!("unexpected {other:?}"),
    }
    // Nobody listening: a clear error, not a hang.
    let none = request_json::<_, serde_json::Value>(
        &client,
        "test.nobody",
        &serde_json::json!({}),
        Duration::from_millis(500),
    )
    .await
    .expect_err("no responder");
    assert!(!none.to_string().is_empty());
}
