//! The state handed to the next generation on a hot reload.
//!
//! The runtime asks for it at every tick, so it must be cheap for a large corpus: a small
//! JSON header (settings, counters, persistence bookkeeping) followed by each channel's lines
//! as raw UTF-8, each ended by a newline, which costs a copy and no escaping. Layout: header length
//! (`u32`, little-endian), header JSON, then the channels' line blobs in header order.

use crate::channel::Channel;
use crate::persist::Index;
use crate::settings::Settings;
use rosey_plugin_api::sdk::{Error, Result, SavedState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The format version in [`SavedState::version`]; bump it when the layout changes.
pub const VERSION: u32 = 1;

/// Everything but the lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Whether the saved chains were already restored from the key-value storage.
    pub restored: bool,
    /// The key-value index as last written.
    pub index: Index,
    /// When the chains were last saved (Unix seconds).
    pub last_save: i64,
    /// The channels, in blob order.
    pub channels: Vec<ChannelHeader>,
}

/// One channel without its lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelHeader {
    /// The channel's name.
    pub name: String,
    /// Its settings.
    pub settings: Settings,
    /// Its platform.
    pub platform: String,
    /// Lines heard since the bot last spoke.
    pub heard: u32,
    /// When the bot last spoke.
    pub last_spoke: Option<i64>,
    /// Whether it changed since the last save.
    pub dirty: bool,
    /// Lines learned since the last save.
    pub unsaved: usize,
    /// Size of its lines blob in bytes.
    pub bytes: usize,
}

/// A decoded snapshot: the header and each channel's lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Everything but the lines.
    pub header: Header,
    /// Each channel's lines, in header order.
    pub lines: Vec<Vec<String>>,
}

/// Encodes the plugin's state.
pub fn encode(
    restored: bool,
    index: &Index,
    last_save: i64,
    channels: &BTreeMap<String, Channel>,
) -> Result<SavedState> {
    let blobs: Vec<String> = channels
        .values()
        .map(|c| {
            let mut blob = String::new();
            c.chain.write_lines(&mut blob);
            blob
        })
        .collect();
    let header = Header {
        restored,
        index: index.clone(),
        last_save,
        channels: channels
            .iter()
            .zip(&blobs)
            .map(|((name, c), blob)| ChannelHeader {
                name: name.clone(),
                settings: c.settings.clone(),
                platform: c.platform.clone(),
                heard: c.heard,
                last_spoke: c.last_spoke,
                dirty: c.dirty,
                unsaved: c.unsaved,
                bytes: blob.len(),
            })
            .collect(),
    };
    let json = serde_json::to_vec(&header)?;
    let json_len = u32::try_from(json.len()).map_err(|_| Error::msg("state header too large"))?;
    let mut bytes =
        Vec::with_capacity(4 + json.len() + blobs.iter().map(String::len).sum::<usize>());
    bytes.extend_from_slice(&json_len.to_le_bytes());
    bytes.extend_from_slice(&json);
    for blob in &blobs {
        bytes.extend_from_slice(blob.as_bytes());
    }
    Ok(SavedState::new(VERSION, bytes))
}

/// Decodes a state of [`VERSION`]; `Ok(None)` for another version (start afresh from the
/// key-value storage), an error for damaged bytes.
pub fn decode(state: &SavedState) -> Result<Option<Snapshot>> {
    if state.version != VERSION {
        return Ok(None);
    }
    let damaged = || Error::msg("the saved markov state is damaged");
    let bytes = state.bytes.as_slice();
    let (len, rest) = bytes.split_at_checked(4).ok_or_else(damaged)?;
    let len = u32::from_le_bytes(len.try_into().map_err(|_| damaged())?) as usize;
    let (json, mut blobs) = rest.split_at_checked(len).ok_or_else(damaged)?;
    let header: Header = serde_json::from_slice(json)?;
    let mut lines = Vec::with_capacity(header.channels.len());
    for channel in &header.channels {
        let (blob, rest) = blobs.split_at_checked(channel.bytes).ok_or_else(damaged)?;
        let text = std::str::from_utf8(blob).map_err(|_| damaged())?;
        lines.push(
            text.split('\n')
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        );
        blobs = rest;
    }
    if !blobs.is_empty() {
        return Err(damaged());
    }
    Ok(Some(Snapshot { header, lines }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Config;

    #[test]
    fn round_trip_keeps_everything() {
        let mut channels = BTreeMap::new();
        let mut a = Channel::new(Config::default().channel_settings(), 100, "cytube");
        a.hear("héllo <b>world</b> '; --", "rosey");
        a.hear("second line", "rosey");
        a.last_spoke = Some(42);
        channels.insert("a".to_owned(), a);
        channels.insert(
            "b".to_owned(),
            Channel::new(Config::default().channel_settings(), 100, "console"),
        );
        let state = encode(true, &Index::default(), 7, &channels).unwrap();
        let snap = decode(&state).unwrap().unwrap();
        assert!(snap.header.restored);
        assert_eq!(snap.header.last_save, 7);
        assert_eq!(snap.header.channels[0].name, "a");
        assert_eq!(snap.header.channels[0].last_spoke, Some(42));
        assert_eq!(snap.header.channels[0].heard, 2);
        assert_eq!(snap.header.channels[0].unsaved, 2);
        assert_eq!(snap.lines[0], ["héllo <b>world</b> '; --", "second line"]);
        assert!(snap.lines[1].is_empty());
    }

    #[test]
    fn other_versions_and_damage() {
        let state = encode(false, &Index::default(), 0, &BTreeMap::new()).unwrap();
        assert!(decode(&SavedState::new(VERSION + 1, state.bytes.clone()))
            .unwrap()
            .is_none());
        assert!(decode(&SavedState::new(VERSION, vec![1, 2])).is_err());
        let mut truncated = state.bytes.clone();
        truncated.pop();
        assert!(decode(&SavedState::new(VERSION, truncated)).is_err());
        let mut extra = state.bytes.clone();
        extra.push(b'x');
        assert!(decode(&SavedState::new(VERSION, extra)).is_err());
    }

    /// A hot reload from the build before the compact chain (commit 0685f1e) to this one:
    /// `fixtures/state-v1.bin` is the state that build's `save_state` wrote for two channels
    /// (orders 2 and 3, hostile text, changed settings). The chains travel as lines, so
    /// the new generation relearns them into its own layout; encoding them again gives the
    /// very same bytes.
    #[test]
    fn state_of_the_previous_build_restores_into_the_compact_chain() {
        let old = include_bytes!("../fixtures/state-v1.bin").to_vec();
        let snap = decode(&SavedState::new(VERSION, old.clone()))
            .unwrap()
            .unwrap();
        assert!(snap.header.restored);
        assert_eq!(snap.header.last_save, 1_700_000_100);
        let mut channels = BTreeMap::new();
        for (header, lines) in snap.header.channels.into_iter().zip(snap.lines) {
            let mut channel = Channel::restored(
                header.settings.clone(),
                100,
                &header.platform,
                lines.iter().map(String::as_str),
            );
            assert_eq!(channel.chain.lines().collect::<Vec<_>>(), lines);
            assert_eq!(channel.chain.order(), header.settings.order);
            channel.heard = header.heard;
            channel.last_spoke = header.last_spoke;
            channel.dirty = header.dirty;
            channel.unsaved = header.unsaved;
            channels.insert(header.name, channel);
        }
        let lobby = &channels["lobby"];
        assert_eq!(lobby.chain.stats().lines, 5);
        assert_eq!(lobby.last_spoke, Some(1_700_000_000));
        let other = &channels["other room/é"];
        assert_eq!(other.chain.order(), 3);
        assert_eq!(other.settings.probability, 0.25);
        let mut rng = fastrand::Rng::with_seed(5);
        let limits = crate::generate::Limits::default();
        let s = crate::generate::sentence(&lobby.chain, &["CAT"], &limits, &mut rng).unwrap();
        assert!(
            s.seeded && s.text.to_lowercase().contains("cat"),
            "{}",
            s.text
        );
        let again = encode(true, &snap.header.index, 1_700_000_100, &channels).unwrap();
        assert_eq!(again.bytes, old, "the format is unchanged");
    }
}
