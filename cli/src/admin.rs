//! The subcommands that talk to running processes over NATS: plugin administration, health
//! and the dead-letter stream.

use anyhow::{bail, Context, Result};
use async_nats::Client;
use futures::StreamExt;
use rosey_config::Config;
use rosey_plugin_api::actions;
use rosey_plugin_api::admin::{PluginName, PluginsList, PluginsListRequest};
use rosey_plugin_api::db::DeadLetter;
use rosey_plugin_api::reply::request_json;
use rosey_plugin_api::stream::{CHANNEL_STREAM_PREFIX, DB_CONSUMER, DB_STREAM, DLQ_STREAM};
use rosey_plugin_api::subjects::{self, runtime};
use std::time::Duration;

/// What `rosey plugin` does to one plugin.
#[derive(Debug, Clone, Copy)]
pub enum PluginAction {
    /// Load its library again now.
    Reload,
    /// Load it (runtime state only).
    Enable,
    /// Unload it (runtime state only).
    Disable,
}

/// Opens the configured NATS connection with its start-up retries.
pub async fn connect(config: &Config) -> Result<Client> {
    Ok(rosey_config::connect::connect(&config.nats).await?)
}

fn timeout(config: &Config) -> Duration {
    config
        .nats
        .request_timeout
        .as_duration()
        .max(Duration::from_secs(2))
}

/// `rosey plugin list`.
pub async fn plugin_list(config: &Config) -> Result<()> {
    let client = connect(config).await?;
    let list: PluginsList = request_json(
        &client,
        runtime::PLUGINS_LIST,
        &PluginsListRequest {},
        timeout(config),
    )
    .await
    .context("is rosey-runtime running?")?;
    println!(
        "{:<16} {:<10} {:>4} {:<9} {:>8} {:>9} {:>7}  {:<28}  last error",
        "plugin", "version", "gen", "state", "reloads", "messages", "errors", "host"
    );
    for p in list.plugins {
        // Where it runs: its host process (pid, memory, restarts after crashes) or in process.
        let host = match p.host {
            Some(h) => format!(
                "pid {} {} restarts {}",
                h.pid,
                h.rss_kib.map_or_else(
                    || "?".to_owned(),
                    |k| format!("{:.1}MiB", k as f64 / 1024.0)
                ),
                h.restarts
            ),
            None => "in process".to_owned(),
        };
        println!(
            "{:<16} {:<10} {:>4} {:<9} {:>8} {:>9} {:>7}  {:<28}  {}",
            p.name,
            p.version,
            p.generation,
            serde_json::to_value(p.state)?.as_str().unwrap_or("?"),
            p.reloads,
            p.messages,
            p.errors,
            host,
            p.last_error.unwrap_or_default()
        );
    }
    Ok(())
}

/// `rosey plugin reload|enable|disable NAME`.
pub async fn plugin_action(config: &Config, action: PluginAction, name: &str) -> Result<()> {
    let client = connect(config).await?;
    let subject = match action {
        PluginAction::Reload => runtime::PLUGINS_RELOAD,
        PluginAction::Enable => runtime::PLUGINS_ENABLE,
        PluginAction::Disable => runtime::PLUGINS_DISABLE,
    };
    let _: actions::Ok = request_json(
        &client,
        subject,
        &PluginName {
            name: name.to_owned(),
        },
        timeout(config),
    )
    .await?;
    println!("{name}: {action:?} done");
    Ok(())
}

/// Sends `subject` and gathers every reply that arrives within `window` (for `$SRV.*`, where
/// each service instance answers).
async fn gather(
    client: &Client,
    subject: &str,
    window: Duration,
) -> Result<Vec<serde_json::Value>> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await?;
    client
        .publish_with_reply(subject.to_owned(), inbox, "".into())
        .await?;
    client.flush().await?;
    let mut replies = vec![];
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
        if let Ok(v) = serde_json::from_slice(&msg.payload) {
            replies.push(v);
        }
    }
    Ok(replies)
}

/// `rosey status`: each service's health, the NATS connection and the database backlog.
pub async fn status(config: &Config) -> Result<()> {
    let client = connect(config).await?;
    let info = client.server_info();
    println!(
        "nats         connected to {} (server {} {}, jetstream {})",
        config.nats.server, info.server_name, info.version, info.jetstream
    );
    let stats = gather(
        &client,
        subjects::service::STATS,
        Duration::from_millis(750),
    )
    .await?;
    if stats.is_empty() {
        println!("services     none answered $SRV.STATS (is anything running?)");
    }
    // A bot names the channel it serves in its metadata (`$SRV.INFO`); a deployment runs one
    // per channel.
    let infos = gather(&client, subjects::service::INFO, Duration::from_millis(750)).await?;
    let channel_of = |id: &str| {
        infos
            .iter()
            .find(|i| i["id"].as_str() == Some(id))
            .and_then(|i| i["metadata"]["channel"].as_str())
            .map(str::to_owned)
    };
    for s in stats {
        let name = s["name"].as_str().unwrap_or("?");
        let version = s["version"].as_str().unwrap_or("?");
        let (mut requests, mut errors) = (0, 0);
        for e in s["endpoints"].as_array().into_iter().flatten() {
            requests += e["num_requests"].as_u64().unwrap_or(0);
            errors += e["num_errors"].as_u64().unwrap_or(0);
        }
        let serves = match s["id"].as_str().and_then(channel_of) {
            Some(channel) => format!(", serves {channel}"),
            None => String::new(),
        };
        // A bot also says its platform and channel, rosey-web its address.
        let place: String = ["platform", "channel", "url"]
            .iter()
            .filter_map(|k| s["metadata"][k].as_str().map(|v| format!(", {k} {v}")))
            .collect();
        println!(
            "{name:<12} up (version {version}, id {}{serves}{place}, {requests} requests, {errors} errors)",
            s["id"].as_str().unwrap_or("?")
        );
    }
    if config.llm.enabled {
        match request_json::<_, rosey_plugin_api::llm::Status>(
            &client,
            subjects::llm::STATUS,
            &serde_json::json!({}),
            Duration::from_secs(2),
        )
        .await
        {
            Ok(s) => println!(
                "llm          {} with {}, {} chat(s) in flight, {} queued (limit {}){}",
                s.provider,
                s.default_model,
                s.in_flight,
                s.queued,
                s.concurrency,
                s.last_error
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            ),
            Err(e) => println!("llm          enabled but rosey-llm does not answer ({e})"),
        }
    } else {
        println!("llm          disabled (llm.enabled is false)");
    }
    let js = async_nats::jetstream::new(client.clone());
    match js.get_stream(DB_STREAM).await {
        Ok(stream) => match stream.consumer_info(DB_CONSUMER).await {
            Ok(c) => println!(
                "database     {} event(s) waiting, {} being applied",
                c.num_pending, c.num_ack_pending
            ),
            Err(e) => println!("database     no consumer {DB_CONSUMER} yet ({e})"),
        },
        Err(e) => println!("database     no stream {DB_STREAM} yet ({e})"),
    }
    // Every other channel's writes wait in a stream of its own.
    for channel in config.platform.channel_names().iter().skip(1) {
        let Some(name) = rosey_plugin_api::stream::channel_stream(channel) else {
            continue;
        };
        match js.get_stream(&name).await {
            Ok(stream) => match stream.consumer_info(DB_CONSUMER).await {
                Ok(c) => println!(
                    "database     {channel}: {} event(s) waiting, {} being applied",
                    c.num_pending, c.num_ack_pending
                ),
                Err(e) => println!("database     {channel}: no consumer {DB_CONSUMER} yet ({e})"),
            },
            Err(e) => println!("database     {channel}: no stream {name} yet ({e})"),
        }
    }
    // A removed channel keeps its stream and file (nothing is deleted automatically).
    let channels = config.platform.channel_names();
    for (stream, channel) in unclaimed_channel_streams(&js, config).await {
        let why = if channels.contains(&channel) {
            format!("{channel} is the first channel now, whose writes go to {DB_STREAM}")
        } else {
            format!("belongs to no configured channel ({channel})")
        };
        println!("database     stream {stream} {why}; kept, rosey-db does not read it");
    }
    for (channel, path) in config.unclaimed_channel_databases() {
        println!(
            "database     {} belongs to no configured channel ({channel}); kept, rosey-db does \
             not open it",
            path.display()
        );
    }
    if let Ok(mut dlq) = js.get_stream(DLQ_STREAM).await {
        if let Ok(info) = dlq.info().await {
            println!("dead letters {}", info.state.messages);
        }
    }
    Ok(())
}

/// The channel streams (`ROSEY_DB_CH_<channel>`) rosey-db does not read: their channel is not
/// configured, or it is the first channel, whose writes go to the PRD's stream. `(stream,
/// channel)`, sorted; none when the server cannot list its streams.
async fn unclaimed_channel_streams(
    js: &async_nats::jetstream::Context,
    config: &Config,
) -> Vec<(String, String)> {
    let channels = config.platform.channel_names();
    let read_by_db = |channel: &str| channels.iter().skip(1).any(|c| c == channel);
    let mut names = js.stream_names();
    let mut found = Vec::new();
    while let Some(Ok(name)) = names.next().await {
        if let Some(channel) = name.strip_prefix(CHANNEL_STREAM_PREFIX) {
            if !read_by_db(channel) {
                found.push((name.clone(), channel.to_owned()));
            }
        }
    }
    found.sort();
    found
}

/// Every dead letter with its DLQ sequence, oldest first.
async fn dead_letters(client: &Client, limit: usize) -> Result<Vec<(u64, DeadLetter)>> {
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js
        .get_stream(DLQ_STREAM)
        .await
        .with_context(|| format!("no stream {DLQ_STREAM}: has rosey-db run yet?"))?;
    let state = stream.info().await?.state.clone();
    let mut out = vec![];
    if state.messages == 0 {
        return Ok(out);
    }
    for seq in state.first_sequence..=state.last_sequence {
        if out.len() >= limit {
            break;
        }
        // Deleted sequences (replayed letters) leave gaps.
        let Ok(msg) = stream.get_raw_message(seq).await else {
            continue;
        };
        match serde_json::from_slice::<DeadLetter>(&msg.payload) {
            Ok(letter) => out.push((seq, letter)),
            Err(e) => eprintln!("dlq #{seq}: not a dead letter ({e})"),
        }
    }
    Ok(out)
}

/// `rosey dlq list`.
pub async fn dlq_list(config: &Config, limit: usize) -> Result<()> {
    let client = connect(config).await?;
    let letters = dead_letters(&client, limit).await?;
    if letters.is_empty() {
        println!("the dead-letter stream is empty");
    }
    for (seq, l) in letters {
        let preview: String = l.payload.chars().take(80).collect();
        println!(
            "#{seq} {} (stream seq {}, {} deliveries): {}\n    payload: {preview}",
            l.subject, l.stream_sequence, l.deliveries, l.error
        );
    }
    Ok(())
}

/// `rosey dlq replay`: publishes dead letters again on their subjects, then removes them.
pub async fn dlq_replay(config: &Config, sequences: &[u64], all: bool) -> Result<()> {
    if sequences.is_empty() && !all {
        bail!("name the letters to replay (see rosey dlq list) or pass --all");
    }
    let client = connect(config).await?;
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream(DLQ_STREAM).await?;
    let letters = dead_letters(&client, usize::MAX).await?;
    let mut replayed = 0;
    for (seq, letter) in letters {
        if !all && !sequences.contains(&seq) {
            continue;
        }
        let mut headers = async_nats::HeaderMap::new();
        // A fresh id: the original may still be inside the duplicate window.
        headers.insert("Nats-Msg-Id", format!("dlq-replay-{seq}").as_str());
        js.publish_with_headers(
            letter.subject.clone(),
            headers,
            letter.payload.clone().into(),
        )
        .await?
        .await
        .with_context(|| format!("replaying #{seq}"))?;
        stream.delete_message(seq).await?;
        replayed += 1;
        println!("#{seq} replayed on {}", letter.subject);
    }
    println!("{replayed} letter(s) replayed");
    Ok(())
}
