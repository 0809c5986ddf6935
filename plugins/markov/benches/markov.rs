//! Learning 100,000 chat lines and generating sentences from them.
//!
//! Run with `cargo bench -p markov --bench markov` (release). The corpus is synthetic but
//! chat-shaped: 3 to 15 words per line drawn from a 5,000-word vocabulary with a Zipf-like
//! skew, so common words have many followers and rare ones few, as in real chat.

use markov::chain::Chain;
use markov::channel::Channel;
use markov::generate::{self, Limits};
use markov::persist::Index;
use markov::settings::Config;
use markov::snapshot;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

const LINES: usize = 100_000;
const VOCABULARY: usize = 5_000;
const SENTENCES: usize = 2_000;

fn corpus() -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(42);
    let words: Vec<String> = (0..VOCABULARY).map(|i| format!("w{i}")).collect();
    (0..LINES)
        .map(|_| {
            let n = rng.usize(3..=15);
            (0..n)
                .map(|_| {
                    // Squaring a uniform draw favours low indexes: a rough Zipf skew.
                    let u = rng.f64();
                    words[((u * u) * VOCABULARY as f64) as usize].as_str()
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

/// The process's resident memory in MiB (Linux), to show what a chain costs.
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn cpu_ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "n/a".to_owned(), ms)
}

fn per_call(total: Duration, calls: usize) -> String {
    format!("{:.1} µs", total.as_secs_f64() * 1e6 / calls as f64)
}

fn main() {
    let lines = corpus();
    let words: usize = lines.iter().map(|l| l.split(' ').count()).sum();
    println!("corpus: {LINES} lines, {words} words, vocabulary {VOCABULARY}");

    for order in [2, 3] {
        let rss_before = rss_mib();
        let (chain, wall, cpu) = timed(|| {
            let mut chain = Chain::new(order, LINES);
            for line in &lines {
                chain.learn(line);
            }
            chain
        });
        let stats = chain.stats();
        println!(
            "order {order}: learned {LINES} lines in {} wall = {:.0} lines/s; {} on CPU = {:.0} lines/s ({} states)",
            ms(wall),
            LINES as f64 / wall.as_secs_f64(),
            cpu_ms(cpu),
            cpu.map_or(0.0, |c| LINES as f64 / c.as_secs_f64()),
            stats.states
        );
        if let (Some(before), Some(after)) = (rss_before, rss_mib()) {
            println!(
                "order {order}: the chain holds about {:.0} MiB of memory",
                after - before
            );
        }

        let limits = Limits::default();
        let mut rng = fastrand::Rng::with_seed(7);
        let (verbatim, wall, _) = timed(|| {
            let mut verbatim = 0;
            for _ in 0..SENTENCES {
                let s = generate::sentence(&chain, &[], &limits, &mut rng).expect("a sentence");
                verbatim += usize::from(s.verbatim);
                black_box(s);
            }
            verbatim
        });
        println!(
            "order {order}: random sentence {} each ({SENTENCES} sentences, {verbatim} verbatim)",
            per_call(wall, SENTENCES)
        );

        let seeded = 500;
        let ((), wall, _) = timed(|| {
            for i in 0..seeded {
                let seed = format!("w{}", (i * 7) % VOCABULARY);
                black_box(generate::sentence(&chain, &[&seed], &limits, &mut rng));
            }
        });
        println!(
            "order {order}: seeded sentence {} each ({seeded} seeds)",
            per_call(wall, seeded)
        );

        let (rebuilt, wall, cpu) = timed(|| chain.rebuilt(order, LINES));
        println!(
            "order {order}: rebuild from the corpus (restart, reload, !markov order) {} wall, {} on CPU",
            ms(wall),
            cpu_ms(cpu)
        );
        black_box(rebuilt);

        let mut channels = BTreeMap::new();
        let settings = Config::default().channel_settings();
        let mut channel = Channel::new(settings, LINES, "cytube");
        channel.chain = chain.clone();
        channels.insert("lobby".to_owned(), channel);
        let started = Instant::now();
        let state = snapshot::encode(true, &Index::default(), 0, &channels).expect("encodes");
        let encode = started.elapsed();
        let started = Instant::now();
        let decoded = snapshot::decode(&state)
            .expect("decodes")
            .expect("same version");
        let decode = started.elapsed();
        println!(
            "order {order}: hot-reload state {:.1} MB, encoded in {:.1} ms, decoded in {:.1} ms",
            state.bytes.len() as f64 / 1e6,
            encode.as_secs_f64() * 1e3,
            decode.as_secs_f64() * 1e3
        );
        black_box(decoded);

        let started = Instant::now();
        let chunks = markov::persist::chunk_lines(chain.lines(), 250 * 1024);
        println!(
            "order {order}: split into {} key-value chunks in {:.1} ms",
            chunks.len(),
            started.elapsed().as_secs_f64() * 1e3
        );
    }

    // Steady state of a busy channel: the corpus is full, so every new line also unlearns
    // the oldest one.
    let bound = LINES / 2;
    let (_, wall, cpu) = timed(|| {
        let mut chain = Chain::new(2, bound);
        for line in &lines {
            chain.learn(line);
        }
        chain
    });
    println!(
        "order 2, corpus bounded at {bound}: learned {LINES} lines ({} forgotten) in {} wall = {:.0} lines/s; {} on CPU = {:.0} lines/s",
        LINES - bound,
        ms(wall),
        LINES as f64 / wall.as_secs_f64(),
        cpu_ms(cpu),
        cpu.map_or(0.0, |c| LINES as f64 / c.as_secs_f64())
    );
}
