//! Administration over NATS (`rosey.runtime.plugins.*`, `$SRV`) and configuration file edits:
//! enabling, disabling and reconfiguring plugins without disturbing the runtime.

use rosey_plugin_api::admin::PluginState;
use rosey_plugin_api::error::{ErrorBody, ErrorCode, HEADER_CODE};
use rosey_plugin_api::subjects::runtime as subjects;
use rosey_tests::runtime_support::*;

async fn admin(obs: &Observer, subject: &str, body: &[u8]) -> async_nats::Message {
    obs.client
        .request(subject.to_owned(), body.to_vec().into())
        .await
        .unwrap()
}

fn error_of(msg: &async_nats::Message) -> ErrorBody {
    assert!(msg
        .headers
        .as_ref()
        .and_then(|h| h.get(HEADER_CODE))
        .is_some());
    serde_json::from_slice(&msg.payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_subjects_list_disable_enable_and_reload() {
    let fixture = Fixture::built("counter", "counter_admin");
    let (mut obs, _served) = serve_loaded(&fixture).await;
    assert_eq!(obs.ask("count", "").await, "v1 count=1 ");
    assert_eq!(obs.ask("count", "").await, "v1 count=2 ");

    let list = obs.list().await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, fixture.name);
    assert_eq!(list[0].state, PluginState::Running);
    assert!(list[0].loaded_at > 1_600_000_000);

    // Disable: unloaded, and a command sent meanwhile is not delivered.
    let reply = obs.admin(subjects::PLUGINS_DISABLE, &fixture.name).await;
    assert_eq!(&reply.payload[..], br#"{"ok":true}"#);
    obs.event(subjects::PLUGIN_UNLOADED, &fixture.name).await;
    assert_eq!(obs.info(&fixture.name).await.state, PluginState::Disabled);
    obs.send("count", "", "alice", 1.0).await;

    // Enable: loaded again, its state kept; the command sent while disabled was never seen.
    let reply = obs.admin(subjects::PLUGINS_ENABLE, &fixture.name).await;
    assert_eq!(&reply.payload[..], br#"{"ok":true}"#);
    obs.event(subjects::PLUGIN_LOADED, &fixture.name).await;
    assert_eq!(obs.ask("count", "").await, "v1 count=3 ");

    // Reload: a new generation from the same file.
    let reply = obs.admin(subjects::PLUGINS_RELOAD, &fixture.name).await;
    assert_eq!(&reply.payload[..], br#"{"ok":true}"#);
    obs.event(subjects::PLUGIN_RELOADED, &fixture.name).await;
    assert_eq!(obs.ask("count", "").await, "v1 count=4 ");

    // Bad requests get error replies with the contract's codes.
    let err = error_of(&admin(&obs, subjects::PLUGINS_RELOAD, b"not json").await);
    assert_eq!(err.error.code, ErrorCode::InvalidJson);
    let err = error_of(&admin(&obs, subjects::PLUGINS_RELOAD, b"{}").await);
    assert_eq!(err.error.code, ErrorCode::MissingField);
    let err = error_of(&admin(&obs, subjects::PLUGINS_ENABLE, br#"{"name":"../../etc"}"#).await);
    assert_eq!(err.error.code, ErrorCode::InvalidJson);
    let err = error_of(&admin(&obs, subjects::PLUGINS_DISABLE, br#"{"name":"nobody"}"#).await);
    assert_eq!(err.error.code, ErrorCode::NotFound);
    let err = error_of(&admin(&obs, subjects::PLUGINS_ENABLE, br#"{"name":"missing_lib"}"#).await);
    assert!(
        err.error.message.contains("no library libmissing_lib.so"),
        "{}",
        err.error.message
    );
    let huge = vec![b'x'; 512 * 1024];
    let err = error_of(&admin(&obs, subjects::PLUGINS_RELOAD, &huge).await);
    assert_eq!(err.error.code, ErrorCode::InvalidJson);

    // The runtime answers NATS service discovery.
    let ping = admin(&obs, "$SRV.PING.rosey-runtime", b"").await;
    let ping: serde_json::Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(ping["name"], "rosey-runtime");
    assert_eq!(ping["type"], "io.nats.micro.v1.ping_response");
    let info = admin(&obs, "$SRV.INFO", b"").await;
    let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info["endpoints"][0]["subject"], subjects::PLUGINS_LIST);
    let stats = admin(&obs, "$SRV.STATS.rosey-runtime", b"").await;
    let stats: serde_json::Value = serde_json::from_slice(&stats.payload).unwrap();
    // Five good admin requests and six refused ones so far (the list calls included).
    assert!(stats["endpoints"][0]["num_requests"].as_u64().unwrap() >= 11);
    assert!(stats["endpoints"][0]["num_errors"].as_u64().unwrap() >= 6);
    assert_eq!(stats["plugins"][0]["name"], fixture.name.as_str());
    // And it still serves.
    assert_eq!(obs.ask("count", "").await, "v1 count=5 ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_edits_enable_disable_and_restart_plugins() {
    let fixture = Fixture::built("counter", "counter_config");
    let (mut obs, served) = serve(&[&fixture], serde_json::json!({"enabled": []})).await;
    // Nothing enabled yet: the runtime is up when it answers the list.
    assert!(
        rosey_tests::wait_until_async(PATIENCE, || async {
            obs.client
                .request(subjects::PLUGINS_LIST, "{}".into())
                .await
                .is_ok()
        })
        .await
    );
    assert!(obs.list().await.is_empty());

    // Adding the name to plugins.enabled loads it.
    served.reconfigure(serde_json::json!({"enabled": [fixture.name]}));
    obs.event(subjects::PLUGIN_LOADED, &fixture.name).await;
    assert_eq!(obs.ask("count", "").await, "v1 count=1 ");

    // A configuration whose constructor panics is reported; the old instance keeps serving.
    served.reconfigure(serde_json::json!({"enabled": [fixture.name], "config": {fixture.name.clone(): {"panic_in_init": true}}}));
    let failed = obs.event(subjects::PLUGIN_FAILED, &fixture.name).await;
    let error = failed.error.unwrap();
    assert!(error.contains("told to panic in init"), "{error}");
    assert_eq!(obs.ask("count", "").await, "v1 count=2 ");

    // A good change restarts it with the new configuration (here: one more subscription),
    // keeping its state.
    served.reconfigure(serde_json::json!({"enabled": [fixture.name], "config": {fixture.name.clone(): {"subscribe": rosey_plugin_api::subjects::events::USER_JOIN}}}));
    obs.event(subjects::PLUGIN_RELOADED, &fixture.name).await;
    obs.client
        .publish(
            rosey_plugin_api::subjects::events::USER_JOIN,
            br#"{"channel":"lobby"}"#.to_vec().into(),
        )
        .await
        .unwrap();
    assert_eq!(
        obs.next_chat().await,
        format!("v1 saw {}", rosey_plugin_api::subjects::events::USER_JOIN)
    );
    assert_eq!(obs.ask("count", "").await, "v1 count=3 ");

    // A subscription outside its grant is refused at construction.
    served.reconfigure(serde_json::json!({"enabled": [fixture.name], "config": {fixture.name.clone(): {"subscribe": rosey_plugin_api::subjects::kv::ALL}}}));
    let failed = obs.event(subjects::PLUGIN_FAILED, &fixture.name).await;
    let error = failed.error.unwrap();
    assert!(
        error.contains(&format!(
            "may not subscribe to {}",
            rosey_plugin_api::subjects::kv::ALL
        )),
        "{error}"
    );

    // A broken file changes nothing.
    std::fs::write(served.rt.config_path(), b"{ not json").unwrap();
    assert_eq!(obs.ask("count", "").await, "v1 count=4 ");

    // Removing the name unloads it.
    served.reconfigure(serde_json::json!({"enabled": []}));
    obs.event(subjects::PLUGIN_UNLOADED, &fixture.name).await;
    assert!(obs.list().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_lists_limit_where_a_plugin_acts() {
    let fixture = Fixture::built("counter", "counter_channels");
    let only_elsewhere = serde_json::json!({
        "enabled": [fixture.name],
        "config": {fixture.name.clone(): {"exclude_channels": ["lobby"]}},
    });
    let (mut obs, served) = serve(&[&fixture], only_elsewhere).await;
    obs.event(subjects::PLUGIN_LOADED, &fixture.name).await;
    // Excluded channel: never delivered (the count would show it later).
    obs.send("count", "", "alice", 1.0).await;
    obs.send("count", "", "alice", 1.0).await;
    // !help is the runtime's own and answers in any channel, offering only what is served
    // there.
    let help = obs.ask("help", "").await;
    assert!(help.starts_with("No commands for you here"), "{help}");

    served.reconfigure(serde_json::json!({"enabled": [fixture.name], "config": {fixture.name.clone(): {"channels": ["lobby"]}}}));
    obs.event(subjects::PLUGIN_RELOADED, &fixture.name).await;
    assert_eq!(obs.ask("count", "").await, "v1 count=1 ");
    let help = obs.ask("help", "").await;
    assert!(
        help.starts_with("Commands:") && help.contains("!count"),
        "{help}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_command_payloads_and_a_nats_restart_lose_nothing_else() {
    let fixture = Fixture::built("counter", "counter_weather");
    let (mut obs, mut served) = serve_loaded(&fixture).await;

    // Garbage on a command subject is dropped by the runtime (and logged); the plugin never
    // sees it, so its count does not move.
    let count = rosey_plugin_api::subjects::commands::command("count").unwrap();
    for junk in [
        &b"not json"[..],
        br#"{"command":"count"}"#,
        br#"{"command":"count","args":"x","text":1}"#,
        &vec![b'['; 100_000],
    ] {
        obs.client
            .publish(count.clone(), junk.to_vec().into())
            .await
            .unwrap();
    }
    assert_eq!(obs.ask("count", "").await, "v1 count=1 ");
    assert!(served
        .rt
        .log()
        .contains("dropping a malformed command payload"));

    // The server goes away and comes back: the runtime reconnects and serves again.
    served.nats.stop();
    served.nats.restart();
    let mut answer = None;
    for _ in 0..30 {
        let cmd = serde_json::to_vec(&command_payload("count", "", "alice", 1.0)).unwrap();
        // While the client reconnects a publish or flush may fail; the loop tries again.
        let _ = obs.client.publish(count.clone(), cmd.into()).await;
        let _ = obs.client.flush().await;
        if let Some(line) = obs.try_next_chat(std::time::Duration::from_secs(1)).await {
            answer = Some(line);
            break;
        }
    }
    let answer = answer.expect("the runtime serves again after a NATS restart");
    assert!(answer.starts_with("v1 count="), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_unloads_plugins_and_removes_the_library_copies() {
    let fixture = Fixture::built("counter", "counter_sigterm");
    let (mut obs, mut served) = serve_loaded(&fixture).await;
    let copies = std::env::temp_dir().join(format!("rosey-runtime-{}", served.rt.child.id()));
    assert!(copies.is_dir(), "{} missing", copies.display());
    let status = served
        .rt
        .child
        .terminate(std::time::Duration::from_secs(20))
        .expect("the runtime was running");
    assert!(status.success(), "{status:?}\n{}", served.rt.log());
    obs.event(subjects::PLUGIN_UNLOADED, &fixture.name).await;
    assert!(!copies.exists(), "{} left behind", copies.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugins_publishes_name_their_source_for_the_bot_queue() {
    use futures::StreamExt;
    use rosey_plugin_api::actions::HEADER_SOURCE;
    use rosey_plugin_api::subjects::platform;
    let fixture = Fixture::built("counter", "counter_source");
    let (obs, _served) = serve_loaded(&fixture).await;
    let mut chat = obs
        .client
        .subscribe(platform::send("console", platform::action::CHAT).unwrap())
        .await
        .unwrap();
    obs.client.flush().await.unwrap();
    obs.send("count", "", "alice", 1.0).await;
    let reply = tokio::time::timeout(PATIENCE, chat.next())
        .await
        .expect("a reply in time")
        .expect("subscription open");
    let source = reply.headers.as_ref().and_then(|h| h.get(HEADER_SOURCE));
    assert_eq!(source.map(|v| v.as_str()), Some("counter_source"));
}
