//! Keeping chains across restarts in the database service's key-value storage.
//!
//! A chain is saved as its lines, in chunks whose JSON text stays under the storage's 256 KiB
//! value limit. Layout, under the plugin's own keys:
//! - `index`: every saved channel with its settings and its chunks, oldest first;
//! - `lines/<channel>/<id>`: one chunk of a channel's lines (ids are never reused).
//!
//! Saves are incremental: a save appends the lines learned since the previous one as new
//! chunks and deletes the oldest chunks once every line in them has been forgotten, so a busy
//! channel writes what it heard, not its whole corpus, every `save_interval`. When the chunks
//! grow too many (small saves of a quiet channel), the save rewrites the corpus in full, so a
//! restore never needs more than a few dozen reads. Loading relearns every saved line in
//! order; the chain's own bound drops the lines forgotten since.
//!
//! New chunks are written first, then the index that lists them, then the dropped chunks are
//! deleted: a crash at any point leaves the index listing complete chunks.

use crate::settings::Settings;
use rosey_plugin_api::kv::MAX_VALUE_BYTES;
use rosey_plugin_api::sdk::{key_segment, Error, KeyValue, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The key of the index.
pub const INDEX_KEY: &str = "index";
/// The index's format version; bump it when the layout changes.
pub const INDEX_VERSION: u32 = 1;
/// Room left under the value limit for the JSON quotes and for safety.
const CHUNK_BYTES: usize = MAX_VALUE_BYTES - 4096;
/// More chunks than this and the next save rewrites the corpus in full.
pub const MAX_CHUNKS: usize = 64;

/// One stored chunk of lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedChunk {
    /// Its id in its channel.
    pub id: u64,
    /// How many lines it holds.
    pub lines: usize,
}

/// What the index records about one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedChannel {
    /// The channel's settings.
    pub settings: Settings,
    /// The platform the channel is on, for unprompted lines after a restart.
    pub platform: String,
    /// The chunks holding its lines, oldest first.
    pub chunks: Vec<SavedChunk>,
    /// The id the next chunk gets.
    pub next_chunk: u64,
}

impl SavedChannel {
    /// Lines in all the chunks.
    pub fn lines(&self) -> usize {
        self.chunks.iter().map(|c| c.lines).sum()
    }
}

/// The `index` key: every saved channel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// [`INDEX_VERSION`] when written.
    pub version: u32,
    /// By channel name.
    pub channels: BTreeMap<String, SavedChannel>,
}

/// A channel as loaded back: its settings, platform and lines, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedChannel {
    /// The saved settings.
    pub settings: Settings,
    /// The saved platform.
    pub platform: String,
    /// The lines.
    pub lines: Vec<String>,
}

/// A channel's lines as a save sees them.
#[derive(Debug, Clone, Copy)]
pub struct Corpus<'a, S> {
    /// Every line the chain holds, oldest first.
    pub lines: &'a [S],
    /// How many of the newest were learned since the previous save.
    pub unsaved: usize,
}

/// Splits lines (which hold no newline) into newline-joined chunks whose JSON text is at most
/// `max_bytes`.
pub fn chunk_lines<S: AsRef<str>>(
    lines: impl IntoIterator<Item = S>,
    max_bytes: usize,
) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    // The chunk's JSON size so far: its quotes, its lines' escaped text, and `\n` (two
    // bytes once escaped) between lines.
    let mut current_json = 2;
    for line in lines {
        let line = line.as_ref();
        let line_json = json_len(line) - 2;
        if !current.is_empty() && current_json + 2 + line_json > max_bytes {
            chunks.push(std::mem::take(&mut current));
            current_json = 2;
        }
        if !current.is_empty() {
            current.push('\n');
            current_json += 2;
        }
        current.push_str(line);
        current_json += line_json;
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

fn json_len(s: &str) -> usize {
    serde_json::to_string(s).map_or(s.len() * 6 + 2, |j| j.len())
}

fn chunk_key(channel: &str, id: u64) -> String {
    format!("lines/{}/{id}", key_segment(channel))
}

/// Reads the index; an absent index is an empty one, one of another version is refused.
pub fn load_index(storage: &impl KeyValue) -> Result<Index> {
    let Some(value) = storage.get::<Value>(INDEX_KEY)? else {
        return Ok(Index {
            version: INDEX_VERSION,
            channels: BTreeMap::new(),
        });
    };
    let index: Index = serde_json::from_value(value)?;
    if index.version != INDEX_VERSION {
        return Err(Error::msg(format!(
            "saved chains are in format {}, this build reads {INDEX_VERSION}",
            index.version
        )));
    }
    Ok(index)
}

/// Reads one channel's lines as the index describes them; a missing chunk is an error (the
/// index is written only after all its chunks).
pub fn load_channel(
    storage: &impl KeyValue,
    channel: &str,
    saved: &SavedChannel,
) -> Result<LoadedChannel> {
    let mut lines = Vec::with_capacity(saved.lines());
    for chunk in &saved.chunks {
        let key = chunk_key(channel, chunk.id);
        let value = storage
            .get::<Value>(&key)?
            .ok_or_else(|| Error::msg(format!("chunk {key} is missing")))?;
        let text = value
            .as_str()
            .ok_or_else(|| Error::msg(format!("chunk {key} is not text")))?;
        lines.extend(
            text.split('\n')
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
    }
    Ok(LoadedChannel {
        settings: saved.settings.clone(),
        platform: saved.platform.clone(),
        lines,
    })
}

/// Saves one channel and records it in `index` (written back): appends the unsaved lines,
/// or rewrites everything when the channel is new, when more lines arrived than the chain
/// keeps, or when the chunks grew too many; then drops the chunks whose lines are all
/// forgotten.
pub fn save_channel<S: AsRef<str>>(
    storage: &impl KeyValue,
    index: &mut Index,
    channel: &str,
    settings: &Settings,
    platform: &str,
    corpus: Corpus<'_, S>,
) -> Result<()> {
    let previous = index.channels.get(channel).cloned();
    let total = corpus.lines.len();
    let append = previous
        .as_ref()
        .is_some_and(|p| corpus.unsaved < total && p.chunks.len() < MAX_CHUNKS);
    let (mut chunks, mut next_chunk, new_lines) = match (&previous, append) {
        (Some(p), true) => (
            p.chunks.clone(),
            p.next_chunk,
            &corpus.lines[total - corpus.unsaved..],
        ),
        (p, _) => (
            Vec::new(),
            p.as_ref().map_or(1, |p| p.next_chunk),
            corpus.lines,
        ),
    };
    for text in chunk_lines(new_lines, CHUNK_BYTES) {
        storage.set(
            &chunk_key(channel, next_chunk),
            &Value::String(text.clone()),
            None,
        )?;
        chunks.push(SavedChunk {
            id: next_chunk,
            lines: text.split('\n').count(),
        });
        next_chunk += 1;
    }
    // The oldest chunks hold lines the chain has forgotten once the rest still covers it.
    let mut saved_lines: usize = chunks.iter().map(|c| c.lines).sum();
    while chunks
        .first()
        .is_some_and(|c| saved_lines - c.lines >= total && total > 0)
    {
        saved_lines -= chunks.remove(0).lines;
    }
    let entry = SavedChannel {
        settings: settings.clone(),
        platform: platform.to_owned(),
        chunks,
        next_chunk,
    };
    let dropped: Vec<SavedChunk> = previous
        .map(|p| p.chunks)
        .unwrap_or_default()
        .into_iter()
        .filter(|old| !entry.chunks.contains(old))
        .collect();
    index.version = INDEX_VERSION;
    index.channels.insert(channel.to_owned(), entry);
    storage.set(INDEX_KEY, &*index, None)?;
    for old in dropped {
        // Leftovers only cost space; a failed delete must not fail the save.
        let _ = storage.delete(&chunk_key(channel, old.id));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::settings::Config;
    use rosey_plugin_api::sdk::MemoryKv;

    #[test]
    fn chunks_respect_the_limit_and_keep_every_line() {
        let lines: Vec<String> = (0..2000)
            .map(|i| {
                format!(
                    "line {i} \"quoted\" \\ tab\t<b>é</b> {}",
                    "x".repeat(i % 50)
                )
            })
            .collect();
        let chunks = chunk_lines(lines.iter().map(String::as_str), 4096);
        assert!(chunks.len() > 10);
        for c in &chunks {
            assert!(json_len(c) <= 4096, "{}", json_len(c));
        }
        let back: Vec<&str> = chunks.iter().flat_map(|c| c.split('\n')).collect();
        assert_eq!(back, lines.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(chunk_lines(std::iter::empty::<&str>(), 100).is_empty());
    }

    #[test]
    fn keys_are_safe() {
        assert_eq!(key_segment("my-chan_1"), "my-chan_1");
        assert_eq!(key_segment("a/b c.é"), "a%2Fb%20c%2E%C3%A9");
        assert!(key_segment(&"z".repeat(1000)).len() <= 100);
    }

    fn lines(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("chat line number {i}")).collect()
    }

    /// Saves `memory` (its newest `unsaved` lines new) and checks that loading gives back
    /// at least those lines, in order, at the end of what was saved.
    fn save_and_check(storage: &MemoryKv, index: &mut Index, memory: &[String], unsaved: usize) {
        let settings = Config::default().channel_settings();
        let corpus = Corpus {
            lines: memory,
            unsaved,
        };
        save_channel(storage, index, "lobby", &settings, "cytube", corpus).unwrap();
        let fresh = load_index(storage).unwrap();
        assert_eq!(&fresh, index);
        let loaded = load_channel(storage, "lobby", &fresh.channels["lobby"]).unwrap();
        assert!(
            loaded.lines.ends_with(memory),
            "the saved lines end with the chain's"
        );
        let keys = storage
            .keys()
            .iter()
            .filter(|k| k.starts_with("lines/"))
            .count();
        assert_eq!(
            keys,
            fresh.channels["lobby"].chunks.len(),
            "no chunk is left behind"
        );
    }

    fn writes(storage: &MemoryKv) -> usize {
        storage.writes()
    }

    #[test]
    fn a_large_corpus_round_trips_in_several_chunks() {
        let storage = MemoryKv::new();
        let mut index = load_index(&storage).unwrap();
        let many = lines(0..30_000);
        save_and_check(&storage, &mut index, &many, many.len());
        let saved = &index.channels["lobby"];
        assert!(saved.chunks.len() > 1, "30k lines need several chunks");
        assert_eq!(saved.lines(), 30_000);
        let loaded = load_channel(&storage, "lobby", saved).unwrap();
        assert_eq!(loaded.lines, many);
        assert_eq!(loaded.platform, "cytube");
    }

    #[test]
    fn saves_append_only_what_is_new_and_drop_what_is_forgotten() {
        let storage = MemoryKv::new();
        let mut index = Index::default();
        // A chain that keeps 100 lines: first 0..100, then the window rolls by 50.
        save_and_check(&storage, &mut index, &lines(0..100), 100);
        let before = writes(&storage);
        save_and_check(&storage, &mut index, &lines(50..150), 50);
        assert_eq!(writes(&storage) - before, 2, "one new chunk and the index");
        assert_eq!(index.channels["lobby"].chunks.len(), 2);
        save_and_check(&storage, &mut index, &lines(100..200), 50);
        let chunks = &index.channels["lobby"].chunks;
        assert_eq!(chunks.iter().map(|c| c.lines).collect::<Vec<_>>(), [50, 50]);
        assert!(
            chunks[0].id > 1,
            "the first chunk, all forgotten, was dropped"
        );
        // Settings alone: the index is rewritten, no chunk.
        let before = writes(&storage);
        save_and_check(&storage, &mut index, &lines(100..200), 0);
        assert_eq!(writes(&storage) - before, 1);
    }

    #[test]
    fn many_small_saves_are_compacted_and_floods_rewritten() {
        let storage = MemoryKv::new();
        let mut index = Index::default();
        let mut memory = lines(0..10);
        save_and_check(&storage, &mut index, &memory, 10);
        for i in 10..(10 + MAX_CHUNKS) {
            memory.push(format!("chat line number {i}"));
            save_and_check(&storage, &mut index, &memory, 1);
        }
        let chunks = index.channels["lobby"].chunks.len();
        assert!(chunks <= MAX_CHUNKS, "compacted: {chunks} chunks");
        // More new lines than the chain keeps: everything is rewritten.
        let flood = lines(5000..5100);
        save_and_check(&storage, &mut index, &flood, 500);
        assert_eq!(index.channels["lobby"].chunks.len(), 1);
        let loaded = load_channel(&storage, "lobby", &index.channels["lobby"]).unwrap();
        assert_eq!(loaded.lines, flood);
    }

    #[test]
    fn broken_storage_is_an_error_not_a_loss() {
        let storage = MemoryKv::new();
        storage
            .set(
                INDEX_KEY,
                &serde_json::json!({"version": 99, "channels": {}}),
                None,
            )
            .unwrap();
        assert!(load_index(&storage).is_err());
        storage
            .set(INDEX_KEY, &serde_json::json!([1, 2]), None)
            .unwrap();
        assert!(load_index(&storage).is_err());
        let settings = Config::default().channel_settings();
        let saved = SavedChannel {
            settings,
            platform: "x".into(),
            chunks: vec![SavedChunk { id: 3, lines: 1 }],
            next_chunk: 4,
        };
        assert!(
            load_channel(&storage, "c", &saved).is_err(),
            "missing chunk"
        );
        storage.set_failing(true);
        assert!(load_index(&storage).is_err());
    }

    /// Chains saved by the build before the compact chain (commit 0685f1e):
    /// `fixtures/kv-v1.json` holds every key that build's `save_channel` wrote for two
    /// channels. They load into the compact chain unchanged, with no migration, because the
    /// storage holds lines, not tables.
    #[test]
    fn chains_saved_by_the_previous_build_load() {
        let storage = MemoryKv::new();
        let dump: BTreeMap<String, Value> =
            serde_json::from_str(include_str!("../fixtures/kv-v1.json")).unwrap();
        for (key, value) in &dump {
            storage.set(key, value, None).unwrap();
        }
        let index = load_index(&storage).unwrap();
        assert_eq!(index.channels.len(), 2);
        let lobby = load_channel(&storage, "lobby", &index.channels["lobby"]).unwrap();
        assert_eq!(lobby.lines.len(), 5);
        assert_eq!(lobby.lines[1], "héllo <b>wörld</b> 🎉 '; DROP TABLE x; --");
        let channel = crate::channel::Channel::restored(
            lobby.settings.clone(),
            100,
            &lobby.platform,
            lobby.lines.iter().map(String::as_str),
        );
        assert_eq!(channel.chain.lines().collect::<Vec<_>>(), lobby.lines);
        let other =
            load_channel(&storage, "other room/é", &index.channels["other room/é"]).unwrap();
        assert_eq!(other.settings.order, 3);
        assert_eq!(
            other.lines,
            ["one two three four", "two three four five six", "x"]
        );
        // Saving again (settings only) keeps the chunks the old build wrote.
        let mut index = index;
        let corpus = Corpus {
            lines: &lobby.lines,
            unsaved: 0,
        };
        save_channel(
            &storage,
            &mut index,
            "lobby",
            &lobby.settings,
            "cytube",
            corpus,
        )
        .unwrap();
        let reloaded = load_channel(&storage, "lobby", &index.channels["lobby"]).unwrap();
        assert_eq!(reloaded.lines, lobby.lines);
    }
}
