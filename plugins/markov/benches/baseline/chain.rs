// BASELINE: a verbatim copy of this file as it was before issue 13 (commit 0685f1e), its tests
// left out (and `crate::chain` read as `super::chain`), kept so that the bench measures the
// old chain beside the new one in one run. It is not part of the plugin.

//! A word-level Markov chain of a fixed order, learned from chat lines.
//!
//! Every line is padded with `order` start markers before it and `order` end markers after
//! it. One table maps each window of `order` tokens to the tokens that followed it and to the
//! tokens that came before it, so a sentence can grow in both directions from a seed found in
//! the middle of a line (one table, not two, halves the hash lookups of learning).
//!
//! The chain keeps the lines it learned (its corpus, bounded by `max_lines`) as word tokens.
//! The corpus is the chain's compact serialized form: as text it is smaller than the tables
//! for any order above 1, it survives a change of order, and relearning it is fast (see
//! `BENCHMARKS.md`). Lines dropped from a full corpus are unlearned, so memory stays bounded;
//! only the vocabulary keeps the words of forgotten lines until the chain is relearned (at a
//! hot reload, a restart or a change of order).

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// The lowest order a chain may have.
pub const MIN_ORDER: usize = 1;
/// The highest order a chain may have (windows are fixed-size arrays of this length).
pub const MAX_ORDER: usize = 5;
/// The order used unless configured otherwise.
pub const DEFAULT_ORDER: usize = 2;
/// Words of one line beyond this are not learned, so a flood line cannot bloat the chain.
pub const MAX_WORDS_PER_LINE: usize = 64;
/// Longer "words" (pasted hashes, base64, keyboard mashing) are skipped when learning.
pub const MAX_WORD_CHARS: usize = 40;

/// A word's index in the vocabulary; the first two are the start and end markers.
pub(crate) type Token = u32;
/// Marks the position before a line's first word.
pub(crate) const START: Token = 0;
/// Marks the position after a line's last word.
pub(crate) const END: Token = 1;
/// Fills the unused slots of a window when the order is below [`MAX_ORDER`].
const PAD: Token = Token::MAX;

/// `order` consecutive tokens (the rest of the array is [`PAD`]): a fixed-size `Copy` key, so
/// learning never allocates a key.
pub(crate) type Window = [Token; MAX_ORDER];

/// The chain's tables hash small integer arrays millions of times; SipHash's resistance to
/// collision attacks buys nothing here (keys are vocabulary indexes, not attacker bytes),
/// so an FxHash-style multiply-rotate hasher is used instead.
#[derive(Default, Clone, Copy)]
pub(crate) struct TokenHasher(u64);

impl Hasher for TokenHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Windows hash as one 20-byte slice: take it eight bytes at a time.
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<TokenHasher>>;
/// Words are attacker-chosen text, so they keep std's keyed hasher.
type WordMap<V> = HashMap<Box<str>, V>;

/// Above this many distinct tokens a window gets a hash index (the start and end windows
/// see thousands of distinct words).
const INDEX_ABOVE: usize = 16;

/// The tokens seen next to one window, with how often each was seen.
///
/// Most windows of a chat corpus are followed by a single token, so that case is stored
/// inline: no allocation for the majority of a large chain's entries.
#[derive(Debug, Clone, Default)]
pub(crate) enum Followers {
    /// Nothing seen (a window at a line's start has no predecessor, at its end no successor).
    #[default]
    Empty,
    /// One distinct token, seen `count` times.
    One {
        /// The token.
        token: Token,
        /// How often.
        count: u32,
    },
    /// Several distinct tokens.
    Many(Box<ManyFollowers>),
}

/// Several distinct tokens with their counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct ManyFollowers {
    options: Vec<(Token, u32)>,
    total: u32,
    /// Token -> position in `options`, once there are more than [`INDEX_ABOVE`].
    index: Option<FastMap<Token, usize>>,
}

impl Followers {
    fn is_empty(&self) -> bool {
        matches!(self, Followers::Empty)
    }

    fn add(&mut self, token: Token) {
        match self {
            Followers::Empty => *self = Followers::One { token, count: 1 },
            Followers::One { token: t, count } if *t == token => *count = count.saturating_add(1),
            Followers::One { token: t, count } => {
                let mut many = ManyFollowers {
                    options: vec![(*t, *count)],
                    total: *count,
                    index: None,
                };
                many.add(token);
                *self = Followers::Many(Box::new(many));
            }
            Followers::Many(many) => many.add(token),
        }
    }

    /// Forgets one occurrence of `token`.
    fn remove(&mut self, token: Token) {
        let now_empty = match self {
            Followers::One { token: t, count } if *t == token => {
                *count -= 1;
                *count == 0
            }
            Followers::Empty | Followers::One { .. } => false,
            Followers::Many(many) => many.remove(token),
        };
        if now_empty {
            *self = Followers::Empty;
        }
    }

    /// A token drawn with probability proportional to how often it was seen.
    pub(crate) fn pick(&self, rng: &mut fastrand::Rng) -> Option<Token> {
        match self {
            Followers::Empty => None,
            Followers::One { token, .. } => Some(*token),
            Followers::Many(many) => many.pick(rng),
        }
    }
}

/// What the chain knows about one window: the tokens after it and the tokens before it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Transitions {
    next: Followers,
    prev: Followers,
    /// Where the window sits in [`Chain::ending`]'s list for its last word, while `next`
    /// is not empty.
    slot: u32,
}

impl ManyFollowers {
    fn position(&self, token: Token) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&token).copied(),
            None => self.options.iter().position(|(t, _)| *t == token),
        }
    }

    fn add(&mut self, token: Token) {
        self.total = self.total.saturating_add(1);
        if let Some(i) = self.position(token) {
            self.options[i].1 += 1;
            return;
        }
        self.options.push((token, 1));
        let last = self.options.len() - 1;
        match &mut self.index {
            Some(index) => {
                index.insert(token, last);
            }
            None if self.options.len() > INDEX_ABOVE => {
                let index = self.options.iter().enumerate().map(|(i, (t, _))| (*t, i));
                self.index = Some(index.collect());
            }
            None => {}
        }
    }

    fn remove(&mut self, token: Token) -> bool {
        if let Some(i) = self.position(token) {
            self.total -= 1;
            self.options[i].1 -= 1;
            if self.options[i].1 == 0 {
                self.options.swap_remove(i);
                if let Some(index) = &mut self.index {
                    index.remove(&token);
                    if let Some((moved, _)) = self.options.get(i) {
                        index.insert(*moved, i);
                    }
                }
            }
        }
        self.options.is_empty()
    }

    fn pick(&self, rng: &mut fastrand::Rng) -> Option<Token> {
        if self.total == 0 {
            return None;
        }
        let mut roll = rng.u32(0..self.total);
        for &(token, count) in &self.options {
            if roll < count {
                return Some(token);
            }
            roll -= count;
        }
        None
    }
}

/// A chain's size, for `!markov stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainStats {
    /// Lines in the corpus.
    pub lines: usize,
    /// Distinct windows the chain can continue from.
    pub states: usize,
    /// Distinct words seen since the chain was built.
    pub words: usize,
}

/// A word-level Markov chain of one order, with the corpus it was learned from.
#[derive(Debug, Clone)]
pub struct Chain {
    order: usize,
    max_lines: usize,
    /// Token -> word; indexes 0 and 1 are the markers.
    words: Vec<Box<str>>,
    ids: WordMap<Token>,
    /// Lower-cased word -> every token spelled that way, for case-insensitive seeds.
    folded: WordMap<Vec<Token>>,
    table: FastMap<Window, Transitions>,
    /// Word -> every window that ends with it and has a next token: where a seed is looked
    /// up, so a seeded sentence costs no scan of the whole table.
    ending: FastMap<Token, Vec<Window>>,
    /// Fingerprints of learned lines, to tell a generated sentence that copies one.
    fingerprints: FastMap<u64, u32>,
    /// The learned lines as tokens, oldest first: unlearning needs no tokenizing.
    corpus: VecDeque<Box<[Token]>>,
}

/// Splits a chat line into the words worth learning: no links, no absurdly long tokens, at
/// most [`MAX_WORDS_PER_LINE`].
pub fn tokenize(line: &str) -> impl Iterator<Item = &str> + '_ {
    line.split_whitespace()
        .filter(|w| !is_link(w) && w.chars().count() <= MAX_WORD_CHARS)
        .take(MAX_WORDS_PER_LINE)
}

fn is_link(word: &str) -> bool {
    let starts = |prefix: &str| {
        word.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    starts("http://") || starts("https://") || starts("www.")
}

/// The order clamped into [`MIN_ORDER`]..=[`MAX_ORDER`].
pub fn clamp_order(order: usize) -> usize {
    order.clamp(MIN_ORDER, MAX_ORDER)
}

impl Chain {
    /// An empty chain of `order` (clamped to the supported range) keeping at most
    /// `max_lines` lines (at least one).
    pub fn new(order: usize, max_lines: usize) -> Chain {
        Chain {
            order: clamp_order(order),
            max_lines: max_lines.max(1),
            words: vec!["".into(), "".into()],
            ids: HashMap::new(),
            folded: HashMap::new(),
            table: FastMap::default(),
            ending: FastMap::default(),
            fingerprints: FastMap::default(),
            corpus: VecDeque::new(),
        }
    }

    /// The chain's order: how many words of context choose the next word.
    pub fn order(&self) -> usize {
        self.order
    }

    /// How many lines the corpus keeps before forgetting the oldest.
    pub fn max_lines(&self) -> usize {
        self.max_lines
    }

    /// Lines, states and words.
    pub fn stats(&self) -> ChainStats {
        ChainStats {
            lines: self.corpus.len(),
            states: self.table.values().filter(|t| !t.next.is_empty()).count(),
            words: self.words.len() - 2,
        }
    }

    /// Whether nothing has been learned.
    pub fn is_empty(&self) -> bool {
        self.corpus.is_empty()
    }

    /// The learned lines, oldest first, as they were normalized (words joined by spaces).
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.corpus.iter().map(|tokens| self.render(tokens))
    }

    /// Appends every line, oldest first, each followed by `\n`: the lines in one buffer
    /// without a String per line, for the state saved at every tick.
    pub fn write_lines(&self, out: &mut String) {
        for tokens in &self.corpus {
            self.render_into(tokens, out);
            out.push('\n');
        }
    }

    /// The text of word tokens joined by spaces.
    pub(crate) fn render(&self, tokens: &[Token]) -> String {
        let mut text = String::new();
        self.render_into(tokens, &mut text);
        text
    }

    fn render_into(&self, tokens: &[Token], out: &mut String) {
        for (i, &t) in tokens.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(self.word(t));
        }
    }

    /// Learns one line; false when it held no word worth learning.
    pub fn learn(&mut self, line: &str) -> bool {
        // Lines are short and bounded, so the tokens live on the stack until the line is
        // known to hold words.
        let mut tokens = [START; MAX_WORDS_PER_LINE];
        let mut count = 0;
        for word in tokenize(line) {
            tokens[count] = self.intern(word);
            count += 1;
        }
        if count == 0 {
            return false;
        }
        let tokens = &tokens[..count];
        let (order, table, ending) = (self.order, &mut self.table, &mut self.ending);
        for_each_window(order, tokens, |window, before, after| {
            let transitions = table.entry(window).or_default();
            if after != PAD {
                if transitions.next.is_empty() {
                    if let Some(list) = ending_list(ending, &window, order) {
                        transitions.slot = u32::try_from(list.len()).unwrap_or(u32::MAX);
                        list.push(window);
                    }
                }
                transitions.next.add(after);
            }
            if before != PAD {
                transitions.prev.add(before);
            }
        });
        *self.fingerprints.entry(fingerprint(tokens)).or_insert(0) += 1;
        self.corpus.push_back(tokens.into());
        while self.corpus.len() > self.max_lines {
            if let Some(oldest) = self.corpus.pop_front() {
                self.unlearn(&oldest);
            }
        }
        true
    }

    /// A chain of another order (or corpus bound) learned from the same lines.
    pub fn rebuilt(&self, order: usize, max_lines: usize) -> Chain {
        let mut chain = Chain::new(order, max_lines);
        for line in self.lines() {
            chain.learn(&line);
        }
        chain
    }

    fn intern(&mut self, word: &str) -> Token {
        if let Some(&id) = self.ids.get(word) {
            return id;
        }
        // The vocabulary would need 4 billion distinct words to overflow; saturate anyway
        // rather than panic on input.
        let id = Token::try_from(self.words.len()).unwrap_or(PAD - 1);
        self.words.push(word.into());
        self.ids.insert(word.into(), id);
        self.folded
            .entry(word.to_lowercase().into_boxed_str())
            .or_default()
            .push(id);
        id
    }

    fn unlearn(&mut self, tokens: &[Token]) {
        let (order, table, ending) = (self.order, &mut self.table, &mut self.ending);
        for_each_window(order, tokens, |window, before, after| {
            let mut freed_slot = None;
            if let Entry::Occupied(mut e) = table.entry(window) {
                let transitions = e.get_mut();
                if after != PAD {
                    transitions.next.remove(after);
                    if transitions.next.is_empty() {
                        freed_slot = Some(transitions.slot as usize);
                    }
                }
                if before != PAD {
                    transitions.prev.remove(before);
                }
                if transitions.next.is_empty() && transitions.prev.is_empty() {
                    e.remove();
                }
            }
            if let Some(slot) = freed_slot {
                unindex(table, ending, &window, slot, order);
            }
        });
        if let Entry::Occupied(mut e) = self.fingerprints.entry(fingerprint(tokens)) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    /// The window a sentence starts from.
    pub(crate) fn start_window(&self) -> Window {
        let mut window = [PAD; MAX_ORDER];
        window[..self.order].fill(START);
        window
    }

    /// The next token after `window`, if the chain knows the window.
    pub(crate) fn next(&self, window: &Window, rng: &mut fastrand::Rng) -> Option<Token> {
        self.table.get(window)?.next.pick(rng)
    }

    /// The token before `window`, if the chain knows the window.
    pub(crate) fn prev(&self, window: &Window, rng: &mut fastrand::Rng) -> Option<Token> {
        self.table.get(window)?.prev.pick(rng)
    }

    /// `window` moved one token forward, with `token` entering at its end.
    pub(crate) fn shift_forward(&self, window: &Window, token: Token) -> Window {
        let mut next = *window;
        next.copy_within(1..self.order, 0);
        next[self.order - 1] = token;
        next
    }

    /// `window` moved one token back, with `token` entering at its start.
    pub(crate) fn shift_backward(&self, window: &Window, token: Token) -> Window {
        let mut prev = *window;
        prev.copy_within(0..self.order - 1, 1);
        prev[0] = token;
        prev
    }

    /// The tokens of `window` that are words (markers and padding left out).
    pub(crate) fn window_words(&self, window: &Window) -> Vec<Token> {
        window[..self.order]
            .iter()
            .copied()
            .filter(|&t| t != START && t != END && t != PAD)
            .collect()
    }

    /// The text of a word token.
    pub(crate) fn word(&self, token: Token) -> &str {
        self.words.get(token as usize).map_or("", |w| w)
    }

    /// Every token spelled like `word`, ignoring case.
    pub(crate) fn tokens_for(&self, word: &str) -> &[Token] {
        self.folded
            .get(word.to_lowercase().as_str())
            .map_or(&[], Vec::as_slice)
    }

    /// Up to `k` windows ending with `seed` (one set of acceptable tokens per seed word, at
    /// most `order` words), drawn uniformly among all such windows that have a next token.
    /// Every place the seed occurs in a learned line ends one such window.
    pub(crate) fn find_windows(
        &self,
        seed: &[&[Token]],
        k: usize,
        rng: &mut fastrand::Rng,
    ) -> Vec<Window> {
        let mut chosen = Vec::new();
        let Some(last_options) = seed.last() else {
            return chosen;
        };
        if seed.len() > self.order || seed.iter().any(|s| s.is_empty()) {
            return chosen;
        }
        let offset = self.order - seed.len();
        let mut seen = 0usize;
        let candidates = last_options
            .iter()
            .filter_map(|t| self.ending.get(t))
            .flatten();
        for window in candidates {
            let fits = seed
                .iter()
                .enumerate()
                .all(|(i, options)| options.contains(&window[offset + i]));
            if !fits {
                continue;
            }
            // Reservoir sampling: every matching window is equally likely to be kept.
            seen += 1;
            if chosen.len() < k {
                chosen.push(*window);
            } else {
                let slot = rng.usize(0..seen);
                if slot < k {
                    chosen[slot] = *window;
                }
            }
        }
        chosen
    }

    /// Whether `tokens` is exactly a line the chain learned.
    pub(crate) fn is_learned_line(&self, tokens: &[Token]) -> bool {
        self.fingerprints.contains_key(&fingerprint(tokens))
    }
}

/// The list in `ending` for `window`'s last token, when that token is a word.
fn ending_list<'a>(
    ending: &'a mut FastMap<Token, Vec<Window>>,
    window: &Window,
    order: usize,
) -> Option<&'a mut Vec<Window>> {
    let last = window[order - 1];
    (last != START && last != END).then(|| ending.entry(last).or_default())
}

/// Removes `window` from its word's list in `ending` (at `slot`), updating the slot of the
/// window moved into its place.
fn unindex(
    table: &mut FastMap<Window, Transitions>,
    ending: &mut FastMap<Token, Vec<Window>>,
    window: &Window,
    slot: usize,
    order: usize,
) {
    let Some(list) = ending_list(ending, window, order) else {
        return;
    };
    if list.get(slot) != Some(window) {
        return;
    }
    list.swap_remove(slot);
    if let Some(moved) = list.get(slot).copied() {
        if let Some(t) = table.get_mut(&moved) {
            t.slot = u32::try_from(slot).unwrap_or(u32::MAX);
        }
    }
}

/// Calls `f(window, before, after)` for every position of a line of at most
/// [`MAX_WORDS_PER_LINE`] tokens padded with `order` markers on each side; `before` or
/// `after` is [`PAD`] where the window has no such neighbour worth recording.
fn for_each_window(order: usize, tokens: &[Token], mut f: impl FnMut(Window, Token, Token)) {
    let n = tokens.len().min(MAX_WORDS_PER_LINE);
    let mut padded = [END; MAX_WORDS_PER_LINE + 2 * MAX_ORDER];
    padded[..order].fill(START);
    padded[order..order + n].copy_from_slice(&tokens[..n]);
    // Window i covers padded[i..i + order]. Forward (next) windows end at the last word at
    // most (i <= n); backward (prev) windows start at the first word at least (i >= order).
    for i in 0..=n + order {
        let mut window = [PAD; MAX_ORDER];
        window[..order].copy_from_slice(&padded[i..i + order]);
        let before = if i >= order { padded[i - 1] } else { PAD };
        let after = if i <= n { padded[i + order] } else { PAD };
        f(window, before, after);
    }
}

fn fingerprint(tokens: &[Token]) -> u64 {
    let mut h = DefaultHasher::new();
    tokens.hash(&mut h);
    h.finish()
}
