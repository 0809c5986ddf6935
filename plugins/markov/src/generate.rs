//! Sentences from a chain: at random, or grown backward and forward around seed words.
//!
//! A sentence that copies a learned line word for word is a poor imitation, so several
//! candidates are drawn and the first original one wins; when the corpus is too small for
//! that, the best candidate is returned anyway, because `!markov` must always answer.
//! Length (one chat message) and time are bounded.

use crate::chain::{Chain, Place, Token, Window, END, START};
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
            n => chain.window_at(starts[attempt % n]),
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
fn seed_windows(chain: &Chain, seed: &[&str], k: usize, rng: &mut fastrand::Rng) -> Vec<Place> {
    let spellings: Vec<Vec<Token>> = seed.iter().map(|w| chain.tokens_for(w)).collect();
    let options: Vec<&[Token]> = spellings.iter().map(Vec::as_slice).collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Chain;

    fn chain_of(order: usize, lines: &[&str]) -> Chain {
        let mut c = Chain::new(order, 10_000);
        for l in lines {
            c.learn(l);
        }
        c
    }

    /// The lines the markov tests learn, shared with the integration tests
    /// (`tests/tests/plugin_markov.rs`).
    const CORPUS_TEXT: &str = include_str!("../testdata/corpus.txt");

    fn corpus() -> Vec<&'static str> {
        CORPUS_TEXT.lines().collect()
    }

    #[test]
    fn empty_chain_gives_nothing() {
        let c = Chain::new(2, 10);
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(sentence(&c, &[], &Limits::default(), &mut rng), None);
    }

    #[test]
    fn one_line_corpus_still_answers_verbatim() {
        let c = chain_of(2, &["only one line here"]);
        let mut rng = fastrand::Rng::with_seed(1);
        let s = sentence(&c, &[], &Limits::default(), &mut rng).unwrap();
        assert_eq!(s.text, "only one line here");
        assert!(s.verbatim);
    }

    #[test]
    fn prefers_sentences_that_copy_no_line() {
        let c = chain_of(2, &corpus());
        for seed in 0..50 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let s = sentence(&c, &[], &Limits::default(), &mut rng).unwrap();
            assert!(!s.verbatim, "seed {seed}: {:?}", s.text);
            assert!(
                !corpus().contains(&s.text.as_str()),
                "seed {seed}: {:?}",
                s.text
            );
        }
    }

    #[test]
    fn mid_sentence_seed_grows_both_ways() {
        let c = chain_of(2, &corpus());
        for seed in 0..30 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let s = sentence(&c, &["BROWN"], &Limits::default(), &mut rng).unwrap();
            assert!(s.seeded);
            let words: Vec<&str> = s.text.split(' ').collect();
            let at = words.iter().position(|w| *w == "brown").expect("seed kept");
            assert!(at > 0, "grew backward: {:?}", s.text);
            assert!(at < words.len() - 1, "grew forward: {:?}", s.text);
        }
    }

    #[test]
    fn two_word_seed_stays_together() {
        let c = chain_of(2, &corpus());
        let mut rng = fastrand::Rng::with_seed(3);
        let s = sentence(&c, &["lazy", "cat"], &Limits::default(), &mut rng).unwrap();
        assert!(s.text.contains("lazy cat"), "{:?}", s.text);
    }

    #[test]
    fn unknown_seed_falls_back_to_known_word_then_random() {
        let c = chain_of(2, &corpus());
        let mut rng = fastrand::Rng::with_seed(4);
        let s = sentence(&c, &["honey", "zzz"], &Limits::default(), &mut rng).unwrap();
        assert!(s.seeded && s.text.contains("honey"), "{:?}", s.text);
        let s = sentence(&c, &["zzz", "qqq"], &Limits::default(), &mut rng).unwrap();
        assert!(!s.seeded);
        assert!(!s.text.is_empty());
    }

    #[test]
    fn length_is_bounded() {
        let long: Vec<String> = (0..60).map(|i| format!("w{i}")).collect();
        let line = long.join(" ");
        let c = chain_of(1, &[line.as_str()]);
        let limits = Limits {
            max_chars: 30,
            max_words: 100,
            ..Limits::default()
        };
        let mut rng = fastrand::Rng::with_seed(5);
        let s = sentence(&c, &[], &limits, &mut rng).unwrap();
        assert!(s.text.len() <= 30, "{:?}", s.text);
        assert!(!s.verbatim, "a cut sentence is not a copy");
        let limits = Limits {
            max_words: 5,
            ..Limits::default()
        };
        let s = sentence(&c, &["w30"], &limits, &mut rng).unwrap();
        assert!(s.text.split(' ').count() <= 5, "{:?}", s.text);
        assert!(s.text.contains("w30"));
    }

    #[test]
    fn every_order_generates() {
        for order in 1..=5 {
            let c = chain_of(order, &corpus());
            let mut rng = fastrand::Rng::with_seed(order as u64);
            let s = sentence(&c, &["over"], &Limits::default(), &mut rng).unwrap();
            assert!(s.text.contains("over"), "order {order}: {:?}", s.text);
        }
    }
}
