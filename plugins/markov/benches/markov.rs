//! Learning 100,000 chat lines and generating sentences from them, with the chain as it was
//! before issue 13 (the baseline, `benches/baseline/`) and the compact one, in the same run.
//!
//! Run with `cargo bench -p markov --bench markov` (release). The corpus is synthetic but
//! chat-shaped: 3 to 15 words per line drawn from a 5,000-word vocabulary with a Zipf-like
//! skew, so common words have many followers and rare ones few, as in real chat.
//!
//! Memory is counted by this binary's global allocator: the bytes a chain holds live (asked
//! of the allocator, so without its per-block overhead) once it has learned the corpus,
//! including its vocabulary, indexes, fingerprints and the corpus itself, and how many
//! blocks they take. `MARKOV_BENCH_ORDERS=2,3` limits the orders measured.

#[allow(dead_code, clippy::all)]
mod baseline {
    #[path = "../baseline/chain.rs"]
    pub mod chain;
    #[path = "../baseline/generate.rs"]
    pub mod generate;
}

use markov::chain::Chain;
use markov::channel::Channel;
use markov::generate::{self, Limits};
use markov::persist::Index;
use markov::settings::Config;
use markov::snapshot;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

const LINES: usize = 100_000;
const VOCABULARY: usize = 5_000;
const SENTENCES: usize = 2_000;
const SEEDED: usize = 500;

/// The system allocator, counting the bytes and blocks live.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are only
// bookkeeping beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on as is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> (isize, isize) {
    (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_BLOCKS.load(Ordering::Relaxed),
    )
}

/// `LINES` lines over a vocabulary of `vocabulary` words, with one word in `one_off` (if
/// not 0) replaced by a word seen nowhere else, as typos and pasted names are.
fn corpus(vocabulary: usize, one_off: usize) -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(42);
    let words: Vec<String> = (0..vocabulary).map(|i| format!("w{i}")).collect();
    let mut unique = 0;
    (0..LINES)
        .map(|_| {
            let n = rng.usize(3..=15);
            (0..n)
                .map(|_| {
                    if one_off > 0 && rng.usize(0..one_off) == 0 {
                        unique += 1;
                        return format!("u{unique}");
                    }
                    // Squaring a uniform draw favours low indexes: a rough Zipf skew.
                    let u = rng.f64();
                    words[((u * u) * vocabulary as f64) as usize].clone()
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Time this thread has spent on a CPU (Linux `schedstat`), so figures stay meaningful when
/// other builds share the machine's two cores; `None` where it cannot be read.
fn cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Wall and on-CPU time of `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, Option<Duration>) {
    let cpu = cpu_time();
    let started = Instant::now();
    let out = f();
    let wall = started.elapsed();
    let cpu = cpu.zip(cpu_time()).map(|(a, b)| b.saturating_sub(a));
    (out, wall, cpu)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn rate(lines: usize, d: Option<Duration>) -> String {
    d.map_or_else(
        || "n/a".to_owned(),
        |d| format!("{:.0}", lines as f64 / d.as_secs_f64()),
    )
}

fn mib(bytes: isize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// p50 and mean of per-call times, in µs.
fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let p50 = times[times.len() / 2].as_secs_f64() * 1e6;
    let p90 = times[times.len() * 9 / 10].as_secs_f64() * 1e6;
    let mean = times.iter().sum::<Duration>().as_secs_f64() * 1e6 / times.len() as f64;
    format!("p50 {p50:.1} µs, p90 {p90:.1} µs, mean {mean:.1} µs")
}

/// What the bench needs of a chain, old or new.
trait Subject: Sized {
    const NAME: &'static str;
    fn new(order: usize, max_lines: usize) -> Self;
    fn learn(&mut self, line: &str);
    fn rebuilt(&self) -> Self;
    fn states(&self) -> usize;
    /// A sentence's text and whether it copies a line.
    fn sentence(&self, seed: &[&str], rng: &mut fastrand::Rng) -> Option<(String, bool)>;
}

impl Subject for Chain {
    const NAME: &'static str = "new";
    fn new(order: usize, max_lines: usize) -> Self {
        Chain::new(order, max_lines)
    }
    fn learn(&mut self, line: &str) {
        Chain::learn(self, line);
    }
    fn rebuilt(&self) -> Self {
        Chain::rebuilt(self, self.order(), self.max_lines())
    }
    fn states(&self) -> usize {
        self.stats().states
    }
    fn sentence(&self, seed: &[&str], rng: &mut fastrand::Rng) -> Option<(String, bool)> {
        generate::sentence(self, seed, &Limits::default(), rng).map(|s| (s.text, s.verbatim))
    }
}

impl Subject for baseline::chain::Chain {
    const NAME: &'static str = "old";
    fn new(order: usize, max_lines: usize) -> Self {
        baseline::chain::Chain::new(order, max_lines)
    }
    fn learn(&mut self, line: &str) {
        baseline::chain::Chain::learn(self, line);
    }
    fn rebuilt(&self) -> Self {
        baseline::chain::Chain::rebuilt(self, self.order(), self.max_lines())
    }
    fn states(&self) -> usize {
        self.stats().states
    }
    fn sentence(&self, seed: &[&str], rng: &mut fastrand::Rng) -> Option<(String, bool)> {
        let limits = baseline::generate::Limits::default();
        baseline::generate::sentence(self, seed, &limits, rng).map(|s| (s.text, s.verbatim))
    }
}

/// Learns the corpus into a chain of `S` and measures its memory, learning and relearning;
/// returns the chain.
fn measure<S: Subject>(order: usize, lines: &[String]) -> S {
    let name = S::NAME;
    let before = live();
    let (chain, wall, cpu) = timed(|| {
        let mut chain = S::new(order, LINES);
        for line in lines {
            chain.learn(line);
        }
        chain
    });
    let after = live();
    println!(
        "order {order} {name}: memory {:.1} MiB live in {} blocks; learned {LINES} lines in {} wall = {} lines/s, {} on CPU = {} lines/s ({} states)",
        mib(after.0 - before.0),
        after.1 - before.1,
        ms(wall),
        rate(LINES, Some(wall)),
        cpu.map_or_else(|| "n/a".to_owned(), ms),
        rate(LINES, cpu),
        chain.states()
    );

    let (rebuilt, wall, cpu) = timed(|| chain.rebuilt());
    println!(
        "order {order} {name}: relearn the corpus (restart, reload, !markov order) {} wall, {} on CPU",
        ms(wall),
        cpu.map_or_else(|| "n/a".to_owned(), ms),
    );
    drop(rebuilt);
    chain
}

/// One sentence from each chain, in turns (the first chain goes first on even turns), each
/// timed: both see the same load on a shared machine.
fn in_turns<A: Subject, B: Subject>(
    turns: usize,
    a: &A,
    b: &B,
    mut call_a: impl FnMut(&A, usize) -> Option<(String, bool)>,
    mut call_b: impl FnMut(&B, usize) -> Option<(String, bool)>,
) -> [(Vec<Duration>, usize); 2] {
    let mut out = [(Vec::new(), 0), (Vec::new(), 0)];
    for turn in 0..turns {
        for side in [turn % 2, 1 - turn % 2] {
            let started = Instant::now();
            let s = if side == 0 {
                call_a(a, turn)
            } else {
                call_b(b, turn)
            };
            out[side].0.push(started.elapsed());
            out[side].1 += usize::from(s.as_ref().is_some_and(|s| s.1));
            black_box(s);
        }
    }
    out
}

/// Random and seeded sentences of both chains, timed in turns.
fn sentences<A: Subject, B: Subject>(order: usize, a: &A, b: &B) {
    let mut rngs = (fastrand::Rng::with_seed(7), fastrand::Rng::with_seed(7));
    let random = in_turns(
        SENTENCES,
        a,
        b,
        |a, _| a.sentence(&[], &mut rngs.0),
        |b, _| b.sentence(&[], &mut rngs.1),
    );
    let seeds: Vec<String> = (0..SEEDED)
        .map(|i| format!("w{}", (i * 7) % VOCABULARY))
        .collect();
    let mut rngs = (fastrand::Rng::with_seed(8), fastrand::Rng::with_seed(8));
    let seeded = in_turns(
        SEEDED,
        a,
        b,
        |a, i| a.sentence(&[&seeds[i]], &mut rngs.0),
        |b, i| b.sentence(&[&seeds[i]], &mut rngs.1),
    );
    for (name, (random, verbatim), (seeded, _)) in [
        (A::NAME, random[0].clone(), seeded[0].clone()),
        (B::NAME, random[1].clone(), seeded[1].clone()),
    ] {
        println!(
            "order {order} {name}: random sentence {} ({SENTENCES} sentences, {verbatim} verbatim)",
            summary(random)
        );
        println!(
            "order {order} {name}: seeded sentence {} ({SEEDED} one-word seeds)",
            summary(seeded)
        );
    }
}

/// The hot-reload path of the plugin: state encoded by the old generation, decoded and
/// relearned by the new one.
fn reload(order: usize, chain: &Chain) {
    let mut channels = BTreeMap::new();
    let mut settings = Config::default().channel_settings();
    settings.order = order;
    let mut channel = Channel::new(settings, LINES, "cytube");
    channel.chain = chain.clone();
    channels.insert("lobby".to_owned(), channel);
    let (state, encode, _) =
        timed(|| snapshot::encode(true, &Index::default(), 0, &channels).expect("encodes"));
    drop(channels);
    let (restored, wall, cpu) = timed(|| {
        let snap = snapshot::decode(&state)
            .expect("decodes")
            .expect("same version");
        let (header, lines) = snap
            .header
            .channels
            .into_iter()
            .zip(snap.lines)
            .next()
            .expect("one channel");
        Channel::restored(header.settings, LINES, &header.platform, lines)
    });
    assert_eq!(restored.chain.stats().lines, chain.stats().lines);
    println!(
        "order {order} new: hot reload {:.1} MB of state: encoded in {}, decoded and relearned in {} wall, {} on CPU",
        state.bytes.len() as f64 / 1e6,
        ms(encode),
        ms(wall),
        cpu.map_or_else(|| "n/a".to_owned(), ms),
    );
}

/// The memory of a chain of `S` keeping `max_lines` learned from `lines`, in MiB.
fn memory<S: Subject>(order: usize, max_lines: usize, lines: &[String]) -> f64 {
    let before = live();
    let mut chain = S::new(order, max_lines);
    for line in lines {
        chain.learn(line);
    }
    let bytes = live().0 - before.0;
    drop(chain);
    mib(bytes)
}

/// Steady state of a busy channel: the corpus is full, so every new line also unlearns the
/// oldest one.
fn bounded<S: Subject>(lines: &[String]) {
    let bound = LINES / 2;
    let (chain, wall, cpu) = timed(|| {
        let mut chain = S::new(2, bound);
        for line in lines {
            chain.learn(line);
        }
        chain
    });
    println!(
        "order 2 {}, corpus bounded at {bound}: learned {LINES} lines ({} forgotten) in {} wall = {} lines/s, {} on CPU = {} lines/s",
        S::NAME,
        LINES - bound,
        ms(wall),
        rate(LINES, Some(wall)),
        cpu.map_or_else(|| "n/a".to_owned(), ms),
        rate(LINES, cpu),
    );
    drop(chain);
}

fn main() {
    let lines = corpus(VOCABULARY, 0);
    let words: usize = lines.iter().map(|l| l.split(' ').count()).sum();
    let text: usize = lines.iter().map(String::len).sum();
    println!(
        "corpus: {LINES} lines, {words} words, {:.1} MiB of text, vocabulary {VOCABULARY}",
        mib(text as isize)
    );
    let orders: Vec<usize> = std::env::var("MARKOV_BENCH_ORDERS")
        .ok()
        .map(|v| v.split(',').filter_map(|o| o.trim().parse().ok()).collect())
        .unwrap_or_else(|| (1..=5).collect());
    for order in orders {
        let old = measure::<baseline::chain::Chain>(order, &lines);
        let chain = measure::<Chain>(order, &lines);
        sentences(order, &old, &chain);
        drop(old);
        reload(order, &chain);
    }
    bounded::<baseline::chain::Chain>(&lines);
    bounded::<Chain>(&lines);

    // Real chat has more distinct words (names, typos, emotes) than the corpus above: ten
    // times the vocabulary, and one word in 50 seen only once.
    let wide_vocabulary = 50_000;
    let wide = corpus(wide_vocabulary, 50);
    let distinct: std::collections::HashSet<&str> =
        wide.iter().flat_map(|l| l.split(' ')).collect();
    println!(
        "order 2, vocabulary {wide_vocabulary} and one word in 50 seen once ({} distinct words): memory old {:.1} MiB, new {:.1} MiB",
        distinct.len(),
        memory::<baseline::chain::Chain>(2, LINES, &wide),
        memory::<Chain>(2, LINES, &wide)
    );

    // One channel at the default bound, after learning all the lines (so the vocabulary
    // also holds the words of the lines forgotten).
    let default_lines = Config::default().max_lines;
    for order in 1..=5 {
        println!(
            "order {order} new, max_lines {default_lines} (the default): memory {:.1} MiB on the first corpus, {:.1} MiB on the wide one",
            memory::<Chain>(order, default_lines, &lines),
            memory::<Chain>(order, default_lines, &wide)
        );
    }
}
