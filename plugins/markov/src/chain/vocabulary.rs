//! Words as narrow tokens: every word's text once, in one buffer.
//!
//! A word costs its bytes, two offsets and two hash slots (exact spelling and lower case),
//! not three boxed strings and three hash-map entries.

use super::corpus::{grow_text_by_eighths, grow_vec_by_eighths};
use super::{Token, END, START};
use hashbrown::HashTable;
use std::hash::{BuildHasher, RandomState};

/// Ends the list of tokens that share a lower-case spelling.
const NONE: Token = Token::MAX;

/// Token <-> word, and lower-case word -> every token spelled that way.
#[derive(Debug, Clone)]
pub(super) struct Vocabulary {
    /// Every word's text, back to back.
    text: String,
    /// Token -> where its text ends in `text` (it starts where the previous one ends).
    ends: Vec<u32>,
    /// Tokens, found by the hash of their text.
    ids: HashTable<Token>,
    /// Every distinct lower-case spelling, back to back.
    folded_text: String,
    /// Spelling id -> where its text ends in `folded_text`.
    folded_ends: Vec<u32>,
    /// Spelling ids, found by the hash of their text.
    folded_ids: HashTable<u32>,
    /// Spelling id -> the newest token spelled that way.
    fold_first: Vec<Token>,
    /// Token -> the next older token with the same lower-case spelling, or [`NONE`].
    fold_next: Vec<Token>,
    /// Words are attacker-chosen text, so they keep std's keyed hasher.
    hasher: RandomState,
}

fn slice<'a>(text: &'a str, ends: &[u32], id: usize) -> &'a str {
    let Some(&end) = ends.get(id) else {
        return "";
    };
    let start = id.checked_sub(1).map_or(0, |i| ends[i]);
    text.get(start as usize..end as usize).unwrap_or("")
}

/// Appends `word` to a text buffer and returns its end offset (saturating: a buffer of 4 GiB
/// of distinct words is beyond any chat).
fn push_text(text: &mut String, word: &str) -> u32 {
    grow_text_by_eighths(text, word.len());
    text.push_str(word);
    u32::try_from(text.len()).unwrap_or(u32::MAX)
}

impl Vocabulary {
    /// The two markers and no word.
    pub(super) fn new() -> Vocabulary {
        Vocabulary {
            text: String::new(),
            // The markers' text is empty.
            ends: vec![0; 2],
            ids: HashTable::new(),
            folded_text: String::new(),
            folded_ends: Vec::new(),
            folded_ids: HashTable::new(),
            fold_first: Vec::new(),
            fold_next: vec![NONE; 2],
            hasher: RandomState::new(),
        }
    }

    /// Tokens, the markers included.
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The text of a token ("" for the markers and unknown tokens).
    pub(super) fn word(&self, token: Token) -> &str {
        slice(&self.text, &self.ends, token as usize)
    }

    /// The token of `word`, added if new.
    pub(super) fn intern(&mut self, word: &str) -> Token {
        let hash = self.hasher.hash_one(word);
        let (text, ends) = (&self.text, &self.ends);
        if let Some(&id) = self
            .ids
            .find(hash, |&t| slice(text, ends, t as usize) == word)
        {
            return id;
        }
        // The vocabulary would need 4 billion distinct words to overflow; saturate anyway
        // rather than panic on input.
        let id = Token::try_from(self.ends.len()).unwrap_or(NONE - 1);
        // Vocabularies of chat run to tens of thousands of words: grown by eighths.
        grow_vec_by_eighths(&mut self.ends, 1);
        grow_vec_by_eighths(&mut self.fold_next, 1);
        self.ends.push(push_text(&mut self.text, word));
        let (text, ends, hasher) = (&self.text, &self.ends, &self.hasher);
        self.ids.insert_unique(hash, id, |&t| {
            hasher.hash_one(slice(text, ends, t as usize))
        });
        let fold = self.fold_id(&word.to_lowercase());
        let first = &mut self.fold_first[fold as usize];
        self.fold_next.push(*first);
        *first = id;
        id
    }

    /// The id of a lower-case spelling, added if new.
    fn fold_id(&mut self, folded: &str) -> u32 {
        let hash = self.hasher.hash_one(folded);
        let (text, ends) = (&self.folded_text, &self.folded_ends);
        if let Some(&id) = self
            .folded_ids
            .find(hash, |&f| slice(text, ends, f as usize) == folded)
        {
            return id;
        }
        let id = u32::try_from(self.folded_ends.len()).unwrap_or(u32::MAX);
        grow_vec_by_eighths(&mut self.folded_ends, 1);
        grow_vec_by_eighths(&mut self.fold_first, 1);
        self.folded_ends
            .push(push_text(&mut self.folded_text, folded));
        self.fold_first.push(NONE);
        let (text, ends, hasher) = (&self.folded_text, &self.folded_ends, &self.hasher);
        self.folded_ids.insert_unique(hash, id, |&f| {
            hasher.hash_one(slice(text, ends, f as usize))
        });
        id
    }

    /// Every token spelled like `word`, ignoring case, oldest first.
    pub(super) fn tokens_for(&self, word: &str) -> Vec<Token> {
        let folded = word.to_lowercase();
        let hash = self.hasher.hash_one(folded.as_str());
        let (text, ends) = (&self.folded_text, &self.folded_ends);
        let Some(&fold) = self
            .folded_ids
            .find(hash, |&f| slice(text, ends, f as usize) == folded)
        else {
            return Vec::new();
        };
        let mut tokens = Vec::new();
        let mut at = self.fold_first.get(fold as usize).copied().unwrap_or(NONE);
        while at != NONE && at != START && at != END {
            tokens.push(at);
            at = self.fold_next.get(at as usize).copied().unwrap_or(NONE);
        }
        tokens.reverse();
        tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_fold_case() {
        let mut v = Vocabulary::new();
        let a = v.intern("Héllo");
        let b = v.intern("hÉllo");
        let c = v.intern("world");
        assert_eq!(v.intern("Héllo"), a);
        assert_eq!((a, b, c), (2, 3, 4));
        assert_eq!(v.len(), 5);
        assert_eq!(
            (v.word(a), v.word(b), v.word(c)),
            ("Héllo", "hÉllo", "world")
        );
        assert_eq!((v.word(START), v.word(END), v.word(99)), ("", "", ""));
        assert_eq!(v.tokens_for("HÉLLO"), [a, b]);
        assert_eq!(v.tokens_for("World"), [c]);
        assert!(v.tokens_for("nope").is_empty());
        assert!(v.tokens_for("").is_empty());
        for i in 0..2000 {
            v.intern(&format!("w{i}"));
        }
        assert_eq!(v.tokens_for("W1999"), [v.intern("w1999")]);
        assert_eq!(v.word(a), "Héllo");
    }
}
