//! Quotes, kept per channel in the database service's key-value storage and mirrored in
//! memory so that random picks and searches need no request.
//!
//! Layout, under the plugin's own keys (`<channel>` escaped by [`key_segment`]):
//! - `next_id/<channel>`: the last id handed out, bumped with `incr`, so an id is never
//!   reused, not even after a deletion;
//! - `quote/<channel>/<id>`: one [`Quote`] (the id zero-padded so keys list in id order).

use rosey_plugin_api::kv::List;
use rosey_plugin_api::sdk::{key_segment, Error, KeyValue, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// Its number in its channel, never reused.
    pub id: u64,
    /// What was said.
    pub text: String,
    /// Who said it, when known.
    pub author: Option<String>,
    /// Who added it (may delete it).
    pub added_by: String,
    /// When it was added (Unix seconds).
    pub added_at: i64,
}

impl Quote {
    /// `#id: text — author`, the way chat shows a quote.
    pub fn display(&self) -> String {
        match &self.author {
            Some(author) => format!("#{}: {} — {author}", self.id, self.text),
            None => format!("#{}: {}", self.id, self.text),
        }
    }

    /// `#id "first words…"`, for search results.
    pub fn preview(&self, chars: usize) -> String {
        let mut text: String = self.text.chars().take(chars).collect();
        if self.text.chars().count() > chars {
            text.push('…');
        }
        format!("#{} \"{text}\"", self.id)
    }
}

fn counter_key(channel: &str) -> String {
    format!("next_id/{}", key_segment(channel))
}

fn quotes_prefix(channel: &str) -> String {
    format!("quote/{}/", key_segment(channel))
}

fn quote_key(channel: &str, id: u64) -> String {
    format!("{}{id:012}", quotes_prefix(channel))
}

/// One channel's quotes by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuoteBook {
    quotes: BTreeMap<u64, Quote>,
}

impl QuoteBook {
    /// Reads every quote of `channel`, a page at a time.
    pub fn load(storage: &impl KeyValue, channel: &str) -> Result<QuoteBook> {
        let mut book = QuoteBook::default();
        let mut request = List {
            channel: None,
            prefix: Some(quotes_prefix(channel)),
            after: None,
            limit: Some(rosey_plugin_api::kv::MAX_LIST_LIMIT),
            values: true,
        };
        loop {
            let page = storage.list(&request)?;
            for item in page.items {
                let Some(value) = item.value else { continue };
                let quote: Quote = serde_json::from_value(value)
                    .map_err(|e| Error::msg(format!("stored {} is damaged: {e}", item.key)))?;
                book.quotes.insert(quote.id, quote);
            }
            match page.next {
                Some(next) => request.after = Some(next),
                None => return Ok(book),
            }
        }
    }

    /// Stores a new quote under a fresh id and returns it.
    pub fn add(
        &mut self,
        storage: &impl KeyValue,
        channel: &str,
        text: &str,
        author: Option<&str>,
        added_by: &str,
        added_at: i64,
    ) -> Result<&Quote> {
        let id = storage.incr(&counter_key(channel), 1)?;
        let id = u64::try_from(id).map_err(|_| Error::msg(format!("quote counter is {id}")))?;
        let quote = Quote {
            id,
            text: text.to_owned(),
            author: author.map(str::to_owned),
            added_by: added_by.to_owned(),
            added_at,
        };
        storage.set(&quote_key(channel, id), &quote, None)?;
        Ok(self.quotes.entry(id).or_insert(quote))
    }

    /// Deletes a quote from storage and memory; false when there was none.
    pub fn delete(&mut self, storage: &impl KeyValue, channel: &str, id: u64) -> Result<bool> {
        if !self.quotes.contains_key(&id) {
            return Ok(false);
        }
        storage.delete(&quote_key(channel, id))?;
        self.quotes.remove(&id);
        Ok(true)
    }

    /// The quote with this id.
    pub fn get(&self, id: u64) -> Option<&Quote> {
        self.quotes.get(&id)
    }

    /// How many quotes there are.
    pub fn len(&self) -> usize {
        self.quotes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.quotes.is_empty()
    }

    /// A quote chosen uniformly.
    pub fn random(&self, rng: &mut fastrand::Rng) -> Option<&Quote> {
        if self.quotes.is_empty() {
            return None;
        }
        self.quotes.values().nth(rng.usize(0..self.quotes.len()))
    }

    /// Every quote whose author is `author` (ignoring case and spacing), oldest first.
    pub fn by_author(&self, author: &str) -> Vec<&Quote> {
        let wanted = normalized(author);
        self.quotes
            .values()
            .filter(|q| q.author.as_ref().is_some_and(|a| normalized(a) == wanted))
            .collect()
    }

    /// Quotes whose text or author contains `needle` (ignoring case), oldest first.
    pub fn search(&self, needle: &str) -> Vec<&Quote> {
        let needle = needle.to_lowercase();
        self.quotes
            .values()
            .filter(|q| {
                q.text.to_lowercase().contains(&needle)
                    || q.author
                        .as_ref()
                        .is_some_and(|a| a.to_lowercase().contains(&needle))
            })
            .collect()
    }

    /// The quote with the same text, ignoring case and spacing.
    pub fn duplicate_of(&self, text: &str) -> Option<&Quote> {
        let wanted = normalized(text);
        self.quotes.values().find(|q| normalized(&q.text) == wanted)
    }
}

fn normalized(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rosey_plugin_api::sdk::MemoryKv;
    use serde_json::Value;

    #[test]
    fn ids_are_never_reused_and_everything_reloads() {
        let storage = MemoryKv::new();
        let mut book = QuoteBook::default();
        let a = book
            .add(&storage, "lobby", "first", Some("ann"), "bob", 10)
            .unwrap()
            .id;
        let b = book
            .add(&storage, "lobby", "second", None, "bob", 11)
            .unwrap()
            .id;
        assert_eq!((a, b), (1, 2));
        assert!(book.delete(&storage, "lobby", 2).unwrap());
        assert!(!book.delete(&storage, "lobby", 2).unwrap());
        let c = book
            .add(&storage, "lobby", "third", None, "cy", 12)
            .unwrap()
            .id;
        assert_eq!(c, 3, "2 is not reused");
        let other = QuoteBook::load(&storage, "other").unwrap();
        assert!(other.is_empty(), "channels are separate");
        let back = QuoteBook::load(&storage, "lobby").unwrap();
        assert_eq!(back, book);
        assert_eq!(back.get(1).unwrap().author.as_deref(), Some("ann"));
    }

    #[test]
    fn loading_pages_through_many_quotes() {
        let storage = MemoryKv::new();
        let mut book = QuoteBook::default();
        for i in 0..2500 {
            book.add(&storage, "c", &format!("quote {i}"), None, "u", 1)
                .unwrap();
        }
        let back = QuoteBook::load(&storage, "c").unwrap();
        assert_eq!(back.len(), 2500);
        assert_eq!(back.get(2500).unwrap().text, "quote 2499");
    }

    #[test]
    fn queries_ignore_case() {
        let storage = MemoryKv::new();
        let mut book = QuoteBook::default();
        book.add(&storage, "c", "The Cake is a LIE", Some("GLaDOS"), "u", 1)
            .unwrap();
        book.add(&storage, "c", "I like cake", Some("bob"), "u", 1)
            .unwrap();
        book.add(&storage, "c", "nothing here", Some("glados"), "u", 1)
            .unwrap();
        assert_eq!(book.search("CAKE").len(), 2);
        assert_eq!(book.search("glad").len(), 2, "authors are searched too");
        assert_eq!(book.by_author("GLADOS").len(), 2);
        book.add(&storage, "c", "x", Some("Mark Twain"), "u", 1)
            .unwrap();
        assert_eq!(book.by_author("mark   twain").len(), 1);
        assert!(book.by_author("nobody").is_empty());
        assert_eq!(
            book.duplicate_of("the  cake is a lie").map(|q| q.id),
            Some(1)
        );
        let mut rng = fastrand::Rng::with_seed(1);
        assert!(book.random(&mut rng).is_some());
        assert!(QuoteBook::default().random(&mut rng).is_none());
    }

    #[test]
    fn display_and_preview() {
        let q = Quote {
            id: 7,
            text: "héllo wörld, this is long".into(),
            author: Some("ann".into()),
            added_by: "b".into(),
            added_at: 1,
        };
        assert_eq!(q.display(), "#7: héllo wörld, this is long — ann");
        assert_eq!(q.preview(5), "#7 \"héllo…\"");
        assert_eq!(q.preview(100), "#7 \"héllo wörld, this is long\"");
        assert_eq!(key_segment("a b/é"), "a%20b%2F%C3%A9");
    }

    #[test]
    fn storage_failure_changes_nothing() {
        let storage = MemoryKv::new();
        let mut book = QuoteBook::default();
        book.add(&storage, "c", "kept", None, "u", 1).unwrap();
        storage.set_failing(true);
        assert!(book.add(&storage, "c", "lost?", None, "u", 1).is_err());
        assert!(book.delete(&storage, "c", 1).is_err());
        assert_eq!(book.len(), 1);
        assert!(QuoteBook::load(&storage, "c").is_err());
        storage.set_failing(false);
        storage
            .set("quote/c/000000000009", &Value::from("garbage"), None)
            .unwrap();
        let e = QuoteBook::load(&storage, "c").unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
    }
}
