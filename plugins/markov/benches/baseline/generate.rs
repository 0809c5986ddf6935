// BASELINE: a verbatim copy of this file as it was before issue 13 (commit 0685f1e), its tests
// left out (and `crate::chain` read as `super::chain`), kept so that the bench measures the
// old chain beside the new one in one run. It is not part of the plugin.

//! Sentences from a chain: at random, or grown backward and forward around seed words.
//!
//! A sentence that copies a learned line word for word is a poor imitation, so several
//! candidates are drawn and the first original one wins; when the corpus is too small for
//! that, the best candidate is returned anyway, because `!markov` must always answer.
//! Length (one chat message) and time are bounded.

use super::chain::{Chain, Token, Window, END, START};
use std::time::{Duration, Instant};

/// How big a sentence may get and how hard to try.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The most characters in a sentence (one chat message).
    pub max_chars: usize,
    /// The most words in a sentence.
    pub max_words: usize,
    /// Candidates drawn at most, looking for one that copies no learned line.
    pub attempts: usize,
    /// Time after which the best candidate so far is returned.
    pub time_budget: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_chars: 200,
            max_words: 40,
            attempts: 25,
            time_budget: Duration::from_millis(50),
        }
    }
}

/// A generated sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentence {
    /// The text, words joined by spaces.
    pub text: String,
    /// Whether it repeats a learned line word for word.
    pub verbatim: bool,
    /// Whether the seed words were found (false: a random sentence stands in).
    pub seeded: bool,
}

/// Sentences shorter than this are only taken when nothing longer comes up.
const SHORT_WORDS: usize = 3;

/// A sentence around `seed` (empty: a random one). Seed words are matched ignoring case: all
/// of them together when they fit in one window of the chain, else the last one the chain
/// knows; a seed the chain has never seen gives a random sentence. `None` only when the
/// chain is empty.
pub fn sentence(
    chain: &Chain,
    seed: &[&str],
    limits: &Limits,
    rng: &mut fastrand::Rng,
) -> Option<Sentence> {
    if chain.is_empty() {
        return None;
    }
    let started = Instant::now();
    let starts = if seed.is_empty() {
        Vec::new()
    } else {
        seed_windows(chain, seed, limits.attempts.max(1), rng)
    };
    let seeded = !starts.is_empty();
    let mut best: Option<(u8, Sentence)> = None;
    for attempt in 0..limits.attempts.max(1) {
        if attempt > 0 && started.elapsed() >= limits.time_budget {
            break;
        }
        // Seeded candidates start from different matching windows, so they vary.
        let window = match starts.len() {
            0 => chain.start_window(),
            n => starts[attempt % n],
        };
        let Some((tokens, complete)) = walk(chain, window, limits, rng) else {
            continue;
        };
        let verbatim = complete && chain.is_learned_line(&tokens);
        let text = render(chain, &tokens, limits.max_chars);
        let score = u8::from(!verbatim) * 2 + u8::from(tokens.len() >= SHORT_WORDS);
        let candidate = Sentence {
            text,
            verbatim,
            seeded,
        };
        if score == 3 {
            return Some(candidate);
        }
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, s)| s)
}

/// Where to start growing a seeded sentence (up to `k` windows): windows holding the whole
/// seed, else windows holding its last known word.
fn seed_windows(chain: &Chain, seed: &[&str], k: usize, rng: &mut fastrand::Rng) -> Vec<Window> {
    let options: Vec<&[Token]> = seed.iter().map(|w| chain.tokens_for(w)).collect();
    let whole = chain.find_windows(&options, k, rng);
    if !whole.is_empty() {
        return whole;
    }
    options
        .iter()
        .rev()
        .find(|o| !o.is_empty())
        .map(|o| chain.find_windows(std::slice::from_ref(o), k, rng))
        .unwrap_or_default()
}

/// Grows a sentence from `window`: backward to a start marker, then forward to an end
/// marker, within the limits. Returns the word tokens and whether both ends were reached.
fn walk(
    chain: &Chain,
    window: Window,
    limits: &Limits,
    rng: &mut fastrand::Rng,
) -> Option<(Vec<Token>, bool)> {
    let middle = chain.window_words(&window);
    let mut chars = text_len(chain, &middle);
    let mut words = middle.len();
    let fits = |chars: usize, words: usize| chars <= limits.max_chars && words <= limits.max_words;

    let mut before = Vec::new();
    let mut at = window;
    let mut complete = true;
    while at[0] != START {
        match chain.prev(&at, rng) {
            Some(START) => break,
            Some(token) if fits(chars + 1 + word_len(chain, token), words + 1) => {
                chars += 1 + word_len(chain, token);
                words += 1;
                before.push(token);
                at = chain.shift_backward(&at, token);
            }
            _ => {
                complete = false;
                break;
            }
        }
    }

    let mut after = Vec::new();
    let mut at = window;
    loop {
        match chain.next(&at, rng) {
            Some(END) => break,
            Some(token) if fits(chars + 1 + word_len(chain, token), words + 1) => {
                chars += 1 + word_len(chain, token);
                words += 1;
                after.push(token);
                at = chain.shift_forward(&at, token);
            }
            _ => {
                complete = false;
                break;
            }
        }
    }

    let tokens: Vec<Token> = before
        .into_iter()
        .rev()
        .chain(middle)
        .chain(after)
        .collect();
    if tokens.is_empty() {
        return None;
    }
    Some((tokens, complete))
}

/// Characters (not bytes: the chat limit counts characters) of `tokens` joined by spaces.
fn text_len(chain: &Chain, tokens: &[Token]) -> usize {
    tokens.iter().map(|&t| word_len(chain, t)).sum::<usize>() + tokens.len().saturating_sub(1)
}

fn word_len(chain: &Chain, token: Token) -> usize {
    chain.word(token).chars().count()
}

/// The sentence's text, cut to `max_chars` characters in the rare case that the seed window
/// alone is longer.
fn render(chain: &Chain, tokens: &[Token], max_chars: usize) -> String {
    let mut text = chain.render(tokens);
    if let Some((cut, _)) = text.char_indices().nth(max_chars) {
        text.truncate(cut);
    }
    text
}
