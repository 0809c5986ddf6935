//! `rosey_config::connect`: the first NATS connection every binary makes, against a real server.

use rosey_config::connect::{connect, ConnectError};
use rosey_config::{NatsConfig, Seconds, Secret};
use rosey_tests::{free_port, NatsServer};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn nats_config(port: u16, startup_retry: Duration) -> NatsConfig {
    NatsConfig {
        server: format!("nats://127.0.0.1:{port}"),
        client_id: Some("rosey-config-test".to_owned()),
        startup_retry: Seconds::from(startup_retry),
        connect_timeout: Seconds::from_secs(1),
        ..NatsConfig::default()
    }
}

#[tokio::test]
async fn no_server_fails_after_retrying_with_one_line_naming_the_url() {
    let port = free_port();
    let config = nats_config(port, Duration::from_millis(400));
    let started = Instant::now();
    let err = connect(&config).await.unwrap_err();
    assert!(
        matches!(err, ConnectError::Failed { attempts, .. } if attempts >= 2),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(
        text.starts_with(&format!(
            "cannot connect to NATS at nats://127.0.0.1:{port}: "
        )),
        "{text}"
    );
    // It kept trying for the whole start-up window.
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn bad_server_address_is_reported() {
    let config = NatsConfig {
        server: "nats://bad host:4222".to_owned(),
        ..NatsConfig::default()
    };
    let err = connect(&config).await.unwrap_err();
    assert!(matches!(err, ConnectError::BadServer { .. }), "{err:?}");
}

#[tokio::test]
async fn missing_creds_file_is_reported() {
    let config = NatsConfig {
        creds_file: Some(PathBuf::from("/nonexistent/rosey.creds")),
        ..NatsConfig::default()
    };
    let err = connect(&config).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("nats.creds_file: cannot use /nonexistent/rosey.creds"),
        "{err}"
    );
}

#[tokio::test]
async fn first_connection_is_retried_until_the_server_is_up() {
    let port = free_port();
    let config = nats_config(port, Duration::from_secs(30));
    let connecting = tokio::spawn(async move { connect(&config).await });
    // The client is already retrying when the server appears.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _server = tokio::task::spawn_blocking(move || NatsServer::start_on_port(port))
        .await
        .unwrap();
    let client = connecting
        .await
        .unwrap()
        .expect("connects once the server is up");
    client.publish("rosey.test", "hi".into()).await.unwrap();
    client.flush().await.unwrap();
}

#[tokio::test]
async fn token_authentication_and_wrong_token_fails_without_retrying() {
    let server =
        tokio::task::spawn_blocking(|| NatsServer::start_with_args(&["--auth", "s3cret-token"]))
            .await
            .unwrap();
    let mut config = nats_config(server.port(), Duration::from_secs(10));
    config.token = Some(Secret::new("s3cret-token"));
    let client = connect(&config).await.unwrap();
    client.flush().await.unwrap();

    config.token = Some(Secret::new("wrong"));
    let err = connect(&config).await.unwrap_err();
    assert!(
        matches!(err, ConnectError::Failed { attempts: 1, .. }),
        "an authorization failure is final: {err:?}"
    );
    assert!(err.to_string().contains("authorization violation"), "{err}");
    assert!(!format!("{config:?}").contains("s3cret-token"));
}
