//! A word-level Markov chain of a fixed order, learned from chat lines.
//!
//! Every line is padded with `order` start markers before it and an end marker after it. The
//! chain knows every window of `order` tokens that is followed by something, with the token
//! after it and the token before it, so a sentence can grow in both directions from a seed
//! found in the middle of a line.
//!
//! The layout is flat, so a large chain stays small (see `BENCHMARKS.md`):
//! - `vocabulary`: words as `u32` tokens, every word's text once in one buffer;
//! - `corpus`: the learned lines (bounded by `max_lines`) as tokens in one arena;
//! - `windows`: each window as the corpus positions where it occurs, read from the corpus
//!   instead of stored as tokens and counts. One position serves both directions (the token
//!   at it follows the window, the one before the window precedes it) and drawing a random
//!   occurrence draws a neighbour in proportion to how often it was seen.
//!
//! The corpus is also the chain's serialized form: as text it survives a change of order and
//! of layout, and relearning it is fast. Lines dropped from a full corpus are unlearned, so
//! memory stays bounded; only the vocabulary keeps the words of forgotten lines until the
//! chain is relearned (at a hot reload, a restart or a change of order).

mod corpus;
mod vocabulary;
mod windows;

use corpus::{Corpus, Pos};
use std::hash::Hasher;
use vocabulary::Vocabulary;
use windows::Windows;

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
/// walking the chain never allocates.
pub(crate) type Window = [Token; MAX_ORDER];

/// Positions are `u32`; past this many tokens learned, the chain is relearned from its own
/// corpus so that positions start again from zero (a busy channel gets there after months).
const POSITION_LIMIT: u64 = u32::MAX as u64 - 2 * (MAX_WORDS_PER_LINE as u64 + 1);

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
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// Where a window occurs in the chain's corpus: a window found by [`Chain::find_windows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place(Pos);

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
    vocabulary: Vocabulary,
    corpus: Corpus,
    windows: Windows,
    /// [`POSITION_LIMIT`], lowered by tests to reach it.
    position_limit: u64,
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

/// A line's tokens with `order` start markers before them and an end marker after: window
/// `i` is `padded[i..i + order]` and is followed by `padded[i + order]`.
fn padded(order: usize, tokens: &[Token]) -> ([Token; MAX_WORDS_PER_LINE + MAX_ORDER + 1], usize) {
    let n = tokens.len().min(MAX_WORDS_PER_LINE);
    let mut padded = [START; MAX_WORDS_PER_LINE + MAX_ORDER + 1];
    padded[order..order + n].copy_from_slice(&tokens[..n]);
    padded[order + n] = END;
    (padded, n)
}

fn window_of(tokens: &[Token]) -> Window {
    let mut window = [PAD; MAX_ORDER];
    window[..tokens.len()].copy_from_slice(tokens);
    window
}

impl Chain {
    /// An empty chain of `order` (clamped to the supported range) keeping at most
    /// `max_lines` lines (at least one).
    pub fn new(order: usize, max_lines: usize) -> Chain {
        Chain {
            order: clamp_order(order),
            max_lines: max_lines.max(1),
            vocabulary: Vocabulary::new(),
            corpus: Corpus::default(),
            windows: Windows::default(),
            position_limit: POSITION_LIMIT,
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
        let lines = self.corpus.lines();
        ChainStats {
            lines,
            // The window of start markers only is every line's start.
            states: self.windows.len() + usize::from(lines > 0),
            words: self.vocabulary.len() - 2,
        }
    }

    /// Whether nothing has been learned.
    pub fn is_empty(&self) -> bool {
        self.corpus.lines() == 0
    }

    /// The learned lines, oldest first, as they were normalized (words joined by spaces).
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.corpus.iter().map(|tokens| {
            let mut text = String::new();
            self.render_into(tokens, &mut text);
            text
        })
    }

    /// Appends every line, oldest first, each followed by `\n`: the lines in one buffer
    /// without a String per line, for the state saved at every tick.
    pub fn write_lines(&self, out: &mut String) {
        for tokens in self.corpus.iter() {
            self.render_into(tokens, out);
            out.push('\n');
        }
    }

    /// The text of word tokens joined by spaces.
    pub(crate) fn render(&self, tokens: &[Token]) -> String {
        let mut text = String::new();
        self.render_into(tokens.iter().copied(), &mut text);
        text
    }

    fn render_into(&self, tokens: impl Iterator<Item = Token>, out: &mut String) {
        for (i, t) in tokens.enumerate() {
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
            tokens[count] = self.vocabulary.intern(word);
            count += 1;
        }
        if count == 0 {
            return false;
        }
        if self.corpus.end() + count as u64 + 1 > self.position_limit {
            self.restart_positions();
        }
        self.add_line(&tokens[..count]);
        while self.corpus.lines() > self.max_lines {
            self.forget_oldest();
        }
        true
    }

    /// Adds a line of word tokens to the corpus and its windows to the tables.
    fn add_line(&mut self, tokens: &[Token]) {
        let start = self.corpus.push(tokens);
        let (padded, n) = padded(self.order, tokens);
        // Window 0 (start markers only) is the line's start, which the corpus lists.
        for i in 1..=n {
            let window = window_of(&padded[i..i + self.order]);
            self.windows
                .add(&self.corpus, self.order, &window, start + i as Pos);
        }
    }

    /// Unlearns the oldest line.
    fn forget_oldest(&mut self) {
        let Some((start, words)) = self.corpus.oldest() else {
            return;
        };
        for i in 1..=words {
            let p = start + i as Pos;
            let window = self.corpus.window(p, self.order);
            self.windows.remove(&self.corpus, self.order, &window, p);
        }
        self.corpus.pop_oldest();
    }

    /// Relearns the corpus from position zero, so positions never overflow.
    fn restart_positions(&mut self) {
        let lines: Vec<Vec<Token>> = self.corpus.iter().map(Iterator::collect).collect();
        self.corpus = Corpus::default();
        self.windows = Windows::default();
        for tokens in &lines {
            self.add_line(tokens);
        }
    }

    /// A chain of another order (or corpus bound) learned from the same lines.
    pub fn rebuilt(&self, order: usize, max_lines: usize) -> Chain {
        let mut chain = Chain::new(order, max_lines);
        let mut text = String::new();
        for tokens in self.corpus.iter() {
            text.clear();
            self.render_into(tokens, &mut text);
            chain.learn(&text);
        }
        chain
    }

    /// The window a sentence starts from.
    pub(crate) fn start_window(&self) -> Window {
        let mut window = [PAD; MAX_ORDER];
        window[..self.order].fill(START);
        window
    }

    fn is_start_window(&self, window: &Window) -> bool {
        window[..self.order].iter().all(|&t| t == START)
    }

    /// The next token after `window`, if the chain knows the window.
    pub(crate) fn next(&self, window: &Window, rng: &mut fastrand::Rng) -> Option<Token> {
        let p = if self.is_start_window(window) {
            self.corpus.random_start(rng)?
        } else {
            self.windows
                .find(&self.corpus, self.order, window)?
                .pick(rng)
        };
        Some(self.corpus.token(p))
    }

    /// The token before `window`, if the chain knows the window.
    pub(crate) fn prev(&self, window: &Window, rng: &mut fastrand::Rng) -> Option<Token> {
        if self.is_start_window(window) {
            return None;
        }
        let p = self
            .windows
            .find(&self.corpus, self.order, window)?
            .pick(rng);
        Some(self.corpus.before_window(p, self.order))
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
        self.vocabulary.word(token)
    }

    /// Every token spelled like `word`, ignoring case.
    pub(crate) fn tokens_for(&self, word: &str) -> Vec<Token> {
        self.vocabulary.tokens_for(word)
    }

    /// Up to `k` windows ending with `seed` (one set of acceptable tokens per seed word, at
    /// most `order` words), drawn uniformly among all such windows that have a next token.
    /// Every place the seed occurs in a learned line ends one such window. They are given as
    /// places, read with [`Chain::window_at`] when used (a sentence usually needs one).
    pub(crate) fn find_windows(
        &self,
        seed: &[&[Token]],
        k: usize,
        rng: &mut fastrand::Rng,
    ) -> Vec<Place> {
        let mut chosen: Vec<Pos> = Vec::new();
        let Some(last_options) = seed.last() else {
            return Vec::new();
        };
        if seed.len() > self.order || seed.iter().any(|s| s.is_empty()) {
            return Vec::new();
        }
        let offset = self.order - seed.len();
        let mut seen = 0usize;
        for &last in *last_options {
            for occurrences in self.windows.ending_with(last) {
                let head = occurrences.head();
                // The last token matches by construction; the others are read back.
                if seed.len() > 1 {
                    let window = self.corpus.window(head, self.order);
                    let fits = seed
                        .iter()
                        .enumerate()
                        .all(|(i, options)| options.contains(&window[offset + i]));
                    if !fits {
                        continue;
                    }
                }
                // Reservoir sampling: every matching window is equally likely to be kept.
                seen += 1;
                if chosen.len() < k {
                    chosen.push(head);
                } else {
                    let slot = rng.usize(0..seen);
                    if slot < k {
                        chosen[slot] = head;
                    }
                }
            }
        }
        chosen.into_iter().map(Place).collect()
    }

    /// The window found at `place`.
    pub(crate) fn window_at(&self, place: Place) -> Window {
        self.corpus.window(place.0, self.order)
    }

    /// Whether `tokens` is exactly a line the chain learned.
    pub(crate) fn is_learned_line(&self, tokens: &[Token]) -> bool {
        if tokens.is_empty() || tokens.len() > MAX_WORDS_PER_LINE {
            return false;
        }
        let (padded, n) = padded(self.order, tokens);
        // Such a line holds every window of `tokens`: look at the places of the rarest, or
        // of the first that occurs only once (most windows of chat do).
        let mut rarest: Option<(usize, windows::Occurrences<'_>)> = None;
        for i in 1..=n {
            let Some(found) =
                self.windows
                    .find(&self.corpus, self.order, &padded[i..i + self.order])
            else {
                return false;
            };
            if rarest.is_none_or(|(_, r)| found.count() < r.count()) {
                rarest = Some((i, found));
            }
            if found.count() == 1 {
                break;
            }
        }
        let Some((i, found)) = rarest else {
            return false;
        };
        found.iter().any(|p| {
            p.checked_sub(i as Pos)
                .is_some_and(|s| self.corpus.line_is(s, tokens))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn chain_of(order: usize, lines: &[&str]) -> Chain {
        let mut c = Chain::new(order, 1000);
        for l in lines {
            c.learn(l);
        }
        c
    }

    fn token(c: &Chain, word: &str) -> Token {
        c.tokens_for(word)
            .into_iter()
            .find(|&t| c.word(t) == word)
            .expect("a known word")
    }

    /// Window (as words, markers spelled `<s>` and `</s>`) -> the words seen after it and
    /// the words seen before it, with their counts.
    type Model = BTreeMap<Vec<String>, (BTreeMap<String, usize>, BTreeMap<String, usize>)>;

    fn spell(c: &Chain, t: Token) -> String {
        match t {
            START => "<s>".to_owned(),
            END => "</s>".to_owned(),
            t => c.word(t).to_owned(),
        }
    }

    /// What the compact tables hold, read back from them.
    fn model_of_chain(c: &Chain) -> Model {
        let mut model = Model::new();
        let mut add = |window: Vec<String>, next: String, prev: Option<String>| {
            let (n, p) = model.entry(window).or_default();
            *n.entry(next).or_default() += 1;
            if let Some(prev) = prev {
                *p.entry(prev).or_default() += 1;
            }
        };
        // The start window's occurrences are the lines' starts.
        for tokens in c.corpus.iter() {
            let first: Vec<Token> = tokens.take(1).collect();
            let window = vec!["<s>".to_owned(); c.order];
            add(
                window,
                spell(c, first.first().copied().unwrap_or(END)),
                None,
            );
        }
        for occurrences in c.windows.all() {
            let window = c.corpus.window(occurrences.head(), c.order);
            let words: Vec<String> = window[..c.order].iter().map(|&t| spell(c, t)).collect();
            for p in occurrences.iter() {
                assert_eq!(
                    c.corpus.window(p, c.order),
                    window,
                    "an occurrence elsewhere"
                );
                let next = spell(c, c.corpus.token(p));
                let prev = spell(c, c.corpus.before_window(p, c.order));
                add(words.clone(), next, Some(prev));
            }
        }
        model
    }

    /// The transitions in `lines`, counted naively.
    fn model_of_lines(order: usize, lines: &[String]) -> Model {
        let mut model = Model::new();
        for line in lines {
            let words: Vec<String> = tokenize(line).map(str::to_owned).collect();
            if words.is_empty() {
                continue;
            }
            let mut padded = vec!["<s>".to_owned(); order];
            padded.extend(words.iter().cloned());
            padded.push("</s>".to_owned());
            for i in 0..=words.len() {
                let (n, p) = model.entry(padded[i..i + order].to_vec()).or_default();
                *n.entry(padded[i + order].clone()).or_default() += 1;
                if i > 0 {
                    *p.entry(padded[i - 1].clone()).or_default() += 1;
                }
            }
        }
        model
    }

    #[test]
    fn tokenize_drops_links_long_words_and_caps_length() {
        let words = |line: &str| tokenize(line).map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            words("  see https://x.y/z  and WWW.a.b  ok "),
            ["see", "and", "ok"]
        );
        let long = "a".repeat(MAX_WORD_CHARS + 1);
        assert_eq!(words(&format!("x {long} y")), ["x", "y"]);
        let flood = "w ".repeat(500);
        assert_eq!(words(&flood).len(), MAX_WORDS_PER_LINE);
        assert!(words(" \t\n ").is_empty());
    }

    #[test]
    fn learning_counts_lines_states_and_words() {
        let c = chain_of(2, &["the cat sat", "the cat ran"]);
        let s = c.stats();
        assert_eq!(s.lines, 2);
        assert_eq!(s.words, 4);
        // (S,S) (S,the) (the,cat) (cat,sat) (cat,ran)
        assert_eq!(s.states, 5);
        let mut blank = c.clone();
        assert!(!blank.learn("  https://only.a/link  "));
        assert_eq!(blank.stats(), s);
        assert_eq!(Chain::new(2, 5).stats().states, 0);
    }

    #[test]
    fn forward_and_backward_tables_follow_the_lines() {
        let c = chain_of(2, &["a b c"]);
        let mut rng = fastrand::Rng::with_seed(1);
        let w = c.start_window();
        assert_eq!(c.prev(&w, &mut rng), None);
        let a = c.next(&w, &mut rng).unwrap();
        assert_eq!(c.word(a), "a");
        let w = c.shift_forward(&w, a);
        let b = c.next(&w, &mut rng).unwrap();
        let w = c.shift_forward(&w, b);
        let cc = c.next(&w, &mut rng).unwrap();
        let w = c.shift_forward(&w, cc);
        assert_eq!(c.next(&w, &mut rng), Some(END));
        // Backward from (b, c): a, then the start marker.
        let back = c.prev(&w, &mut rng).unwrap();
        assert_eq!(c.word(back), "a");
        let w = c.shift_backward(&w, back);
        assert_eq!(c.prev(&w, &mut rng), Some(START));
        let unknown = c.shift_forward(&w, END);
        assert_eq!(c.next(&unknown, &mut rng), None);
    }

    #[test]
    fn neighbours_are_drawn_in_proportion_to_their_counts() {
        let c = chain_of(1, &["x a", "x a", "x a", "x b"]);
        let mut rng = fastrand::Rng::with_seed(9);
        let x = c.shift_forward(&c.start_window(), token(&c, "x"));
        let a = token(&c, "a");
        let draws = 4000;
        let hits = (0..draws)
            .filter(|_| c.next(&x, &mut rng) == Some(a))
            .count();
        // Expected 3 in 4: 3000 draws, standard deviation about 27.
        assert!((2800..3200).contains(&hits), "{hits}");
    }

    #[test]
    fn bounded_corpus_unlearns_the_oldest_line() {
        let mut c = Chain::new(2, 2);
        c.learn("one two");
        c.learn("three four");
        c.learn("five six");
        assert_eq!(c.lines().collect::<Vec<_>>(), ["three four", "five six"]);
        let fresh = chain_of(2, &["three four", "five six"]);
        assert_eq!(c.stats().states, fresh.stats().states);
        assert_eq!(model_of_chain(&c), model_of_chain(&fresh));
        let one = [token(&c, "one"), token(&c, "two")];
        assert!(!c.is_learned_line(&one));
        let three = [token(&c, "three"), token(&c, "four")];
        assert!(c.is_learned_line(&three));
        assert!(!c.is_learned_line(&three[..1]), "a prefix is no line");
        assert!(!c.is_learned_line(&[]));
    }

    #[test]
    fn duplicate_lines_are_counted_not_collapsed() {
        let mut c = Chain::new(1, 3);
        c.learn("hi there");
        c.learn("hi there");
        c.learn("bye now");
        c.learn("ok"); // drops the first "hi there"
        let hi = [token(&c, "hi"), token(&c, "there")];
        assert!(c.is_learned_line(&hi), "the second copy is still learned");
        c.learn("ok");
        assert!(!c.is_learned_line(&hi));
    }

    #[test]
    fn rebuilding_changes_order_and_keeps_lines() {
        let c = chain_of(2, &["a b c d", "e f g"]);
        let r = c.rebuilt(3, 10);
        assert_eq!(r.order(), 3);
        assert_eq!(r.lines().collect::<Vec<_>>(), ["a b c d", "e f g"]);
        assert_eq!(Chain::new(0, 1).order(), MIN_ORDER);
        assert_eq!(Chain::new(99, 1).order(), MAX_ORDER);
    }

    #[test]
    fn seeds_match_case_insensitively_inside_windows() {
        let c = chain_of(2, &["The Cat sat down", "a dog barked"]);
        let cat = c.tokens_for("cAT");
        assert_eq!(cat.len(), 1);
        let mut rng = fastrand::Rng::with_seed(7);
        // "Cat" ends one window: (The, Cat).
        let found = c.find_windows(&[&cat], 10, &mut rng);
        assert_eq!(found.len(), 1);
        assert_eq!(c.window_at(found[0])[1], cat[0]);
        let the = c.tokens_for("the");
        assert_eq!(c.find_windows(&[&the], 10, &mut rng).len(), 1);
        let sat = c.tokens_for("sat");
        assert_eq!(c.find_windows(&[&sat], 10, &mut rng).len(), 1);
        let found = c.find_windows(&[&cat, &sat], 10, &mut rng);
        assert_eq!(found.len(), 1);
        assert_eq!(c.window_words(&c.window_at(found[0])), [cat[0], sat[0]]);
        assert!(c.find_windows(&[&sat, &cat], 10, &mut rng).is_empty());
        assert!(c
            .find_windows(&[&c.tokens_for("nope")], 10, &mut rng)
            .is_empty());
        let too_long = [&cat[..], &sat[..], &cat[..]];
        assert!(c.find_windows(&too_long, 10, &mut rng).is_empty());
    }

    #[test]
    fn seeds_are_drawn_among_all_their_windows() {
        let lines: Vec<String> = (0..30).map(|i| format!("p{i} x q{i}")).collect();
        let mut c = Chain::new(2, 100);
        for l in &lines {
            c.learn(l);
        }
        let x = c.tokens_for("x");
        let mut rng = fastrand::Rng::with_seed(2);
        assert_eq!(c.find_windows(&[&x], 100, &mut rng).len(), 30);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let found = c.find_windows(&[&x], 3, &mut rng);
            assert_eq!(found.len(), 3);
            seen.extend(found.iter().map(|&p| c.window_at(p)[0]));
        }
        assert_eq!(seen.len(), 30, "every window can be drawn");
    }

    #[test]
    fn seed_index_survives_forgetting() {
        let mut rng = fastrand::Rng::with_seed(11);
        for order in 1..=3 {
            let mut c = Chain::new(order, 50);
            for _ in 0..400 {
                let n = rng.usize(1..8);
                let line: Vec<String> = (0..n).map(|_| format!("w{}", rng.usize(0..30))).collect();
                c.learn(&line.join(" "));
            }
            // Every seed the chain knows is found.
            for i in 0..30 {
                let word = format!("w{i}");
                let options = c.tokens_for(&word);
                let known = c.lines().any(|l| l.split(' ').any(|w| w == word));
                let found = !c.find_windows(&[&options], 1, &mut rng).is_empty();
                assert_eq!(found, known, "{word}");
            }
            assert_eq!(Windows::ending_size(), 40);
            let (pooled, free) = c.windows.pooled();
            assert!(free <= pooled && pooled < 400, "{pooled} queues");
        }
    }

    #[test]
    fn positions_start_again_before_they_overflow() {
        let mut c = Chain::new(2, 5);
        c.position_limit = 60;
        let lines: Vec<String> = (0..200)
            .map(|i| format!("a{} b c{}", i % 7, i % 3))
            .collect();
        for l in &lines {
            c.learn(l);
            assert!(c.corpus.end() <= 60);
        }
        let kept = &lines[195..];
        assert_eq!(c.lines().collect::<Vec<_>>(), kept);
        assert_eq!(model_of_chain(&c), model_of_lines(2, kept));
        let mut rng = fastrand::Rng::with_seed(3);
        assert!(c.next(&c.start_window(), &mut rng).is_some());
    }

    #[test]
    fn unicode_and_markup_are_plain_words() {
        let c = chain_of(2, &["héllo <b>wörld</b> 🎉", "'; DROP TABLE x; --"]);
        assert_eq!(c.stats().lines, 2);
        assert_eq!(c.tokens_for("HÉLLO").len(), 1);
        assert_eq!(c.lines().nth(1).as_deref(), Some("'; DROP TABLE x; --"));
        let mut all = String::new();
        c.write_lines(&mut all);
        assert_eq!(all, "héllo <b>wörld</b> 🎉\n'; DROP TABLE x; --\n");
    }

    #[test]
    fn every_order_matches_a_naive_count() {
        let lines: Vec<String> = [
            "the cat sat on the mat",
            "the cat ran",
            "a a a a a a a",
            "The Cat sat",
            "on the mat the cat sat on the mat",
        ]
        .map(str::to_owned)
        .to_vec();
        for order in MIN_ORDER..=MAX_ORDER {
            let mut c = Chain::new(order, 100);
            for l in &lines {
                c.learn(l);
            }
            assert_eq!(model_of_chain(&c), model_of_lines(order, &lines), "{order}");
            assert_eq!(c.stats().states, model_of_lines(order, &lines).len());
        }
    }

    mod properties {
        use super::*;
        use crate::generate::{self, Limits};
        use proptest::prelude::*;

        const WORDS: [&str; 6] = ["a", "b", "c", "A", "dd", "é"];

        fn lines() -> impl Strategy<Value = Vec<String>> {
            let line = prop::collection::vec(0..WORDS.len(), 1..8)
                .prop_map(|ws| ws.iter().map(|&w| WORDS[w]).collect::<Vec<_>>().join(" "));
            prop::collection::vec(line, 1..24)
        }

        /// Whether every step of `words` (a generated sentence) is a transition of `model`;
        /// `complete`: also from the start markers and to the end marker.
        fn only_learned_steps(model: &Model, order: usize, words: &[&str], complete: bool) {
            let mut padded: Vec<String> = Vec::new();
            if complete {
                padded.extend(std::iter::repeat_n("<s>".to_owned(), order));
            }
            padded.extend(words.iter().map(|w| (*w).to_owned()));
            if complete {
                padded.push("</s>".to_owned());
            }
            for step in padded.windows(order + 1) {
                let next = &step[order];
                let known = model
                    .get(&step[..order])
                    .is_some_and(|(n, _)| n.contains_key(next));
                assert!(known, "{step:?} in {words:?} was never learned");
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            /// The compact chain holds exactly the transitions of the lines it keeps: the
            /// oldest lines unlearned leave the chain of the remaining ones, and what it
            /// generates steps only along learned transitions.
            #[test]
            fn compact_chain_is_the_chain_of_its_lines(
                lines in lines(),
                order in MIN_ORDER..=MAX_ORDER,
                max_lines in 1usize..8,
                seed in any::<u64>(),
            ) {
                let mut chain = Chain::new(order, max_lines);
                for line in &lines {
                    prop_assert!(chain.learn(line));
                }
                let kept = &lines[lines.len().saturating_sub(max_lines)..];
                let model = model_of_lines(order, kept);
                prop_assert_eq!(chain.lines().collect::<Vec<_>>(), kept);
                prop_assert_eq!(&model_of_chain(&chain), &model);
                let mut fresh = Chain::new(order, max_lines);
                for line in kept {
                    fresh.learn(line);
                }
                // (The vocabulary keeps forgotten words until the chain is relearned.)
                let (stats, expected) = (chain.stats(), fresh.stats());
                prop_assert_eq!((stats.lines, stats.states), (expected.lines, expected.states));

                for line in &lines {
                    let tokens: Vec<Token> =
                        line.split(' ').map(|w| token(&chain, w)).collect();
                    prop_assert_eq!(chain.is_learned_line(&tokens), kept.contains(line));
                }

                let mut rng = fastrand::Rng::with_seed(seed);
                for (window, (next, _)) in &model {
                    let tokens: Vec<Token> = window
                        .iter()
                        .map(|w| if w == "<s>" { START } else { token(&chain, w) })
                        .collect();
                    let window = window_of(&tokens);
                    for _ in 0..4 {
                        let drawn = chain.next(&window, &mut rng).map(|t| spell(&chain, t));
                        prop_assert!(drawn.is_some_and(|d| next.contains_key(&d)));
                    }
                }
                let limits = Limits::default();
                for seed_word in ["", "a", "B", "dd", "zz"] {
                    let seed: Vec<&str> = [seed_word].into_iter().filter(|w| !w.is_empty()).collect();
                    let sentence = generate::sentence(&chain, &seed, &limits, &mut rng)
                        .expect("a chain with lines answers");
                    let words: Vec<&str> = sentence.text.split(' ').collect();
                    // No word was refused for length (the longest is 2 characters): both
                    // ends were reached.
                    let complete = words.len() < limits.max_words
                        && sentence.text.chars().count() + 3 <= limits.max_chars;
                    only_learned_steps(&model, order, &words, complete);
                    if complete {
                        prop_assert_eq!(sentence.verbatim, kept.contains(&sentence.text));
                    }
                }
            }
        }
    }
}
