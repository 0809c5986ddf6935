//! The outgoing chat queue: splitting, a token bucket, fairness between sources, and the
//! server's `cooldown` and mute signals.
//!
//! Everything the bot says in chat or by PM goes through one queue, so that the server's flood
//! limiter never sees more than the configured rate, and one chatty source (a plugin spamming
//! `send.chat`) cannot starve the others (the outbound poller, the PM shell).

use crate::platform::{ActionError, ActionRequest, PlatformAction};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

/// Messages that may wait per source before new ones are refused.
pub const PER_SOURCE_CAPACITY: usize = 256;
/// The longest text accepted for one chat or PM request (it is split before sending).
pub const MAX_TEXT_CHARS: usize = 4096;
/// A `cooldown` this soon after a piece was sent is taken to be about that piece.
const RESEND_WITHIN: Duration = Duration::from_secs(5);

/// How long a `noflood` refusal pauses chat: models CyTube's `chat_antiflood` cooldown
/// (4 s by default), the server's rule rather than a setting of ours.
pub const REFUSAL_PAUSE: Duration = Duration::from_secs(4);

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChatError {
    /// The source already has [`PER_SOURCE_CAPACITY`] messages waiting.
    #[error("outgoing chat queue for {0} is full")]
    QueueFull(String),
    /// The bot is muted in the channel.
    #[error("the bot is muted: {0}")]
    Muted(String),
    /// The bot's rank does not allow it.
    #[error("not permitted: {0}")]
    Denied(String),
    /// Empty or blank text.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// Text longer than [`MAX_TEXT_CHARS`].
    #[error("message of {0} characters is longer than the {MAX_TEXT_CHARS} allowed")]
    TooLong(usize),
    /// The platform could not send it.
    #[error(transparent)]
    Platform(#[from] ActionError),
    /// The bot is shutting down.
    #[error("the bot is shutting down")]
    Closed,
}

impl ChatError {
    /// True when retrying the same message cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ChatError::Muted(_) | ChatError::Denied(_) | ChatError::Invalid(_)
        )
    }
}

/// Splits `text` into pieces of at most `max` UTF-16 code units, at word boundaries where
/// possible.
///
/// CyTube cuts chat with JavaScript's `substring`, which counts UTF-16 code units: an emoji
/// takes two, so counting `char`s would let the server drop a piece's tail. Line breaks become
/// piece boundaries (chat has no line breaks); a word longer than `max` is cut, never inside a
/// character. Blank pieces are dropped.
pub fn split_message(text: &str, max: usize) -> Vec<String> {
    let max = max.max(2);
    let units = |s: &str| s.encode_utf16().count();
    let mut pieces = Vec::new();
    for line in text.lines() {
        let mut current = String::new();
        let mut current_len = 0;
        for word in line.split_whitespace() {
            let mut word = word;
            let mut word_len = units(word);
            if current_len > 0 && current_len + 1 + word_len <= max {
                current.push(' ');
                current.push_str(word);
                current_len += 1 + word_len;
                continue;
            }
            if current_len > 0 {
                pieces.push(std::mem::take(&mut current));
            }
            while word_len > max {
                // The longest prefix of whole characters within `max` units.
                let mut taken = 0;
                let mut cut = 0;
                for (i, c) in word.char_indices() {
                    if taken + c.len_utf16() > max {
                        break;
                    }
                    taken += c.len_utf16();
                    cut = i + c.len_utf8();
                }
                pieces.push(word[..cut].to_owned());
                word = &word[cut..];
                word_len -= taken;
            }
            current.push_str(word);
            current_len = word_len;
        }
        if current_len > 0 {
            pieces.push(current);
        }
    }
    pieces
}

/// A token bucket: `burst` messages back to back, then `per_second`.
///
/// Kept instead of `governor` for two things it cannot do: [`TokenBucket::drain`] empties the
/// bucket when CyTube says we were too fast (governor can only take cells that are there), and
/// it runs on tokio's clock, so tests with paused time drive it like the rest of the queue.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    tokens: f64,
    per_second: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(burst: u32, per_second: f64) -> Self {
        let capacity = f64::from(burst.max(1));
        TokenBucket {
            capacity,
            tokens: capacity,
            per_second: if per_second.is_finite() && per_second > 0.0 {
                per_second
            } else {
                1.0
            },
            last: Instant::now(),
        }
    }

    /// Takes a token now, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.per_second,
            ))
        }
    }

    /// Empties the bucket (the server told us we were too fast).
    pub fn drain(&mut self) {
        self.tokens = 0.0;
    }
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The channel's chat.
    Chat,
    /// A private message to this user.
    Pm(String),
}

struct Pending {
    /// Tells the message the worker is sending apart from the one behind it, should this one
    /// be failed and removed (chat blocked) while its piece is on the wire.
    id: u64,
    destination: Destination,
    pieces: VecDeque<String>,
    done: Option<oneshot::Sender<Result<(), ChatError>>>,
}

impl Pending {
    fn finish(&mut self, result: Result<(), ChatError>) {
        if let Some(done) = self.done.take() {
            let _ = done.send(result);
        }
    }
}

#[derive(Default)]
struct QueueState {
    sources: HashMap<String, VecDeque<Pending>>,
    /// Sources with waiting messages, in the order they get their next turn.
    turns: VecDeque<String>,
    paused_until: Option<Instant>,
    /// Set while the bot may not chat (muted, or rank below the `chat` permission).
    blocked: Option<ChatError>,
    closed: bool,
    next_id: u64,
    /// The last piece sent, its source and when: a `cooldown` right after it means the server
    /// dropped it, and it is sent again once the pause is over.
    last_sent: Option<(String, Destination, String, Instant)>,
}

/// The handle everyone enqueues through; cheap to clone.
#[derive(Clone)]
pub struct ChatQueue {
    state: Arc<Mutex<QueueState>>,
    wake: Arc<Notify>,
    max_len: usize,
}

impl ChatQueue {
    /// A queue splitting chat at `max_len` characters.
    pub fn new(max_len: usize) -> Self {
        ChatQueue {
            state: Arc::new(Mutex::new(QueueState::default())),
            wake: Arc::new(Notify::new()),
            max_len,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // A panic while holding the lock leaves consistent data (every mutation is one step).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `text` from `source`; the receiver resolves when every piece was sent or one
    /// failed. Refuses at once when the source's queue is full or the bot may not chat.
    pub fn enqueue(
        &self,
        source: &str,
        destination: Destination,
        text: &str,
    ) -> Result<oneshot::Receiver<Result<(), ChatError>>, ChatError> {
        let chars = text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(ChatError::TooLong(chars));
        }
        let limit = match destination {
            Destination::Chat => self.max_len,
            // The original shell split PM replies at 500 characters.
            Destination::Pm(_) => self.max_len.max(500),
        };
        let pieces: VecDeque<String> = split_message(text, limit).into();
        if pieces.is_empty() {
            return Err(ChatError::Invalid("empty message".into()));
        }
        let mut state = self.lock();
        if state.closed {
            return Err(ChatError::Closed);
        }
        if let (Some(blocked), Destination::Chat) = (&state.blocked, &destination) {
            return Err(blocked.clone());
        }
        let queue = state.sources.entry(source.to_owned()).or_default();
        if queue.len() >= PER_SOURCE_CAPACITY {
            return Err(ChatError::QueueFull(source.to_owned()));
        }
        let (tx, rx) = oneshot::channel();
        let was_empty = queue.is_empty();
        let id = state.next_id;
        state.next_id += 1;
        let queue = state.sources.entry(source.to_owned()).or_default();
        queue.push_back(Pending {
            id,
            destination,
            pieces,
            done: Some(tx),
        });
        if was_empty {
            state.turns.push_back(source.to_owned());
        }
        drop(state);
        self.wake.notify_one();
        Ok(rx)
    }

    /// Holds every send for `pause` (a refusal), and spends the burst.
    pub fn pause(&self, pause: Duration) {
        let until = Instant::now() + pause;
        let mut state = self.lock();
        state.paused_until = Some(state.paused_until.map_or(until, |u| u.max(until)));
    }

    /// The server's `cooldown`: it dropped our last line. Holds every send for `pause`, then
    /// sends that line again first.
    pub fn cooldown(&self, pause: Duration) {
        self.pause(pause);
        let mut state = self.lock();
        let Some((source, destination, piece, sent_at)) = state.last_sent.take() else {
            return;
        };
        if sent_at.elapsed() > RESEND_WITHIN || state.closed {
            return;
        }
        if destination == Destination::Chat && state.blocked.is_some() {
            return;
        }
        let id = state.next_id;
        state.next_id += 1;
        let QueueState { sources, turns, .. } = &mut *state;
        let queue = sources.entry(source.clone()).or_default();
        // Its caller was already told it was sent; this copy reports to nobody.
        queue.push_front(Pending {
            id,
            destination,
            pieces: VecDeque::from([piece]),
            done: None,
        });
        turns.retain(|s| *s != source);
        turns.push_front(source);
        drop(state);
        self.wake.notify_one();
    }

    /// Blocks (with the reason) or unblocks chat; blocking fails every waiting chat message.
    pub fn set_blocked(&self, reason: Option<ChatError>) {
        let mut state = self.lock();
        if let Some(reason) = &reason {
            for queue in state.sources.values_mut() {
                queue.retain_mut(|p| {
                    if p.destination == Destination::Chat {
                        p.finish(Err(reason.clone()));
                        false
                    } else {
                        true
                    }
                });
            }
            let QueueState { sources, turns, .. } = &mut *state;
            turns.retain(|s| sources.get(s).is_some_and(|q| !q.is_empty()));
        }
        state.blocked = reason;
    }

    /// Messages waiting, over all sources.
    pub fn len(&self) -> usize {
        self.lock().sources.values().map(VecDeque::len).sum()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops the worker and fails what waits.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        for queue in state.sources.values_mut() {
            for p in queue.iter_mut() {
                p.finish(Err(ChatError::Closed));
            }
            queue.clear();
        }
        state.turns.clear();
        drop(state);
        self.wake.notify_one();
    }

    /// The next piece in fair order, without removing it, with its message's id.
    fn next_piece(&self) -> Option<(String, u64, Destination, String)> {
        let state = self.lock();
        let source = state.turns.front()?.clone();
        let pending = state.sources.get(&source)?.front()?;
        Some((
            source,
            pending.id,
            pending.destination.clone(),
            pending.pieces.front()?.clone(),
        ))
    }

    /// Records the outcome of the piece just sent for message `id` and rotates the turn. If
    /// that message was failed and removed meanwhile, the one now in front is left alone.
    fn piece_done(&self, source: &str, id: u64, result: Result<(), ChatError>) {
        let mut state = self.lock();
        let QueueState { sources, turns, .. } = &mut *state;
        let Some(queue) = sources.get_mut(source) else {
            turns.retain(|s| s != source);
            return;
        };
        // Found by id: a resend may have been put in front of it meanwhile.
        if let Some(at) = queue.iter().position(|p| p.id == id) {
            let pending = &mut queue[at];
            pending.pieces.pop_front();
            let finished = match result {
                Err(e) => {
                    pending.finish(Err(e));
                    true
                }
                Ok(()) if pending.pieces.is_empty() => {
                    pending.finish(Ok(()));
                    true
                }
                Ok(()) => false,
            };
            if finished {
                queue.remove(at);
            }
        }
        // A resend just put first keeps the first turn.
        let resend_first = queue.front().is_some_and(|p| p.done.is_none() && p.id > id);
        // This source had its turn: it goes to the back, wherever a resend for another
        // source has put it meanwhile.
        if !resend_first {
            turns.retain(|s| s != source);
        }
        if queue.is_empty() {
            sources.remove(source);
            turns.retain(|s| s != source);
        } else if !turns.iter().any(|s| s == source) {
            turns.push_back(source.to_owned());
        }
    }

    /// Sends what is queued, one piece at a time, until the queue is closed.
    pub async fn run_worker(self, mut bucket: TokenBucket, platform: mpsc::Sender<ActionRequest>) {
        loop {
            let paused = {
                let state = self.lock();
                if state.closed {
                    return;
                }
                state.paused_until
            };
            if let Some(until) = paused {
                if until > Instant::now() {
                    tokio::time::sleep_until(until).await;
                    bucket.drain();
                    continue;
                }
            }
            let Some((source, id, destination, piece)) = self.next_piece() else {
                self.wake.notified().await;
                continue;
            };
            if let Err(wait) = bucket.try_take(Instant::now()) {
                tokio::time::sleep(wait).await;
                continue;
            }
            let action = match &destination {
                Destination::Chat => PlatformAction::Chat(piece.clone()),
                Destination::Pm(to) => PlatformAction::Pm {
                    to: to.clone(),
                    content: piece.clone(),
                },
            };
            let (tx, rx) = oneshot::channel();
            let result = if platform.send((action, tx)).await.is_err() {
                Err(ChatError::Closed)
            } else {
                match rx.await {
                    Ok(r) => r.map_err(ChatError::from),
                    Err(_) => Err(ChatError::Closed),
                }
            };
            if result.is_ok() {
                self.lock().last_sent = Some((source.clone(), destination, piece, Instant::now()));
            }
            self.piece_done(&source, id, result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn muting_while_a_chat_piece_is_on_the_wire_leaves_the_next_message_alone() {
        let queue = ChatQueue::new(320);
        let mut chat = queue.enqueue("p", Destination::Chat, "in flight").unwrap();
        let mut pm = queue
            .enqueue("p", Destination::Pm("bob".into()), "after it")
            .unwrap();
        let (source, id, _, piece) = queue.next_piece().unwrap();
        assert_eq!(piece, "in flight");
        // Muted while that piece is being sent: the chat message fails and leaves the queue.
        queue.set_blocked(Some(ChatError::Muted("muted".into())));
        assert!(matches!(chat.try_recv(), Ok(Err(ChatError::Muted(_)))));
        queue.piece_done(&source, id, Ok(()));
        // The PM behind it was not sent, so it is neither reported sent nor dropped.
        assert!(
            pm.try_recv().is_err(),
            "the PM was resolved without being sent"
        );
        let (_, _, destination, piece) = queue.next_piece().unwrap();
        assert_eq!(
            (destination, piece.as_str()),
            (Destination::Pm("bob".into()), "after it")
        );
    }

    #[test]
    fn splits_on_words_lines_and_long_words() {
        assert_eq!(split_message("hello world", 320), ["hello world"]);
        assert_eq!(split_message("aaa bbb ccc", 7), ["aaa bbb", "ccc"]);
        assert_eq!(split_message("one\ntwo  three", 320), ["one", "two three"]);
        assert_eq!(split_message("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(split_message("ééééé x", 2), ["éé", "éé", "é", "x"]);
        assert_eq!(split_message("ééééé x", 4), ["éééé", "é x"]);
        assert!(split_message("  \n \t ", 10).is_empty());
        // UTF-16 units, as CyTube counts: each emoji is two, and is never cut in half.
        let emoji = split_message(&"😀".repeat(200), 320);
        assert_eq!(emoji.len(), 2);
        assert!(emoji.iter().all(|p| p.encode_utf16().count() <= 320));
        assert_eq!(emoji[0].chars().count(), 160);
        assert_eq!(split_message("a😀😀", 2), ["a", "😀", "😀"]);
        let long = "word ".repeat(200);
        let pieces = split_message(&long, 320);
        assert!(pieces.iter().all(|p| p.chars().count() <= 320));
        assert_eq!(pieces.join(" "), long.trim());
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_a_burst_then_the_rate() {
        let mut b = TokenBucket::new(4, 1.0);
        let now = Instant::now();
        for _ in 0..4 {
            assert!(b.try_take(now).is_ok());
        }
        let wait = b.try_take(now).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        assert!(b.try_take(now + Duration::from_secs(1)).is_ok());
        assert!(b.try_take(now + Duration::from_secs(1)).is_err());
    }

    /// A fake platform recording what it was asked to send, answering `result` to each.
    fn fake_platform(
        result: Result<(), ActionError>,
    ) -> (
        mpsc::Sender<ActionRequest>,
        mpsc::UnboundedReceiver<PlatformAction>,
    ) {
        let (tx, mut rx) = mpsc::channel::<ActionRequest>(8);
        let (seen_tx, seen_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some((action, done)) = rx.recv().await {
                let _ = seen_tx.send(action);
                let _ = done.send(result.clone());
            }
        });
        (tx, seen_rx)
    }

    #[tokio::test(start_paused = true)]
    async fn sources_take_turns_and_pieces_are_rate_limited() {
        let queue = ChatQueue::new(320);
        let (platform, mut seen) = fake_platform(Ok(()));
        let mut waits = Vec::new();
        for i in 0..5 {
            waits.push(
                queue
                    .enqueue("chatty", Destination::Chat, &format!("spam {i}"))
                    .unwrap(),
            );
        }
        let quiet = queue
            .enqueue("shell", Destination::Pm("bob".into()), "reply")
            .unwrap();
        let start = Instant::now();
        tokio::spawn(queue.clone().run_worker(TokenBucket::new(4, 1.0), platform));
        let mut order = Vec::new();
        for _ in 0..6 {
            order.push(seen.recv().await.unwrap());
        }
        assert_eq!(order[0], PlatformAction::Chat("spam 0".into()));
        assert_eq!(
            order[1],
            PlatformAction::Pm {
                to: "bob".into(),
                content: "reply".into()
            }
        );
        assert_eq!(order[5], PlatformAction::Chat("spam 4".into()));
        // Six pieces with a burst of 4 at 1/s: the last two waited about a second each.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(1900), "{elapsed:?}");
        assert_eq!(quiet.await.unwrap(), Ok(()));
        for w in waits {
            assert_eq!(w.await.unwrap(), Ok(()));
        }
        assert!(queue.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn overflow_and_blocking_are_reported() {
        let queue = ChatQueue::new(320);
        for i in 0..PER_SOURCE_CAPACITY {
            queue
                .enqueue("plugin", Destination::Chat, &format!("m{i}"))
                .unwrap();
        }
        assert_eq!(
            queue
                .enqueue("plugin", Destination::Chat, "one more")
                .unwrap_err(),
            ChatError::QueueFull("plugin".into())
        );
        let other = queue
            .enqueue("other", Destination::Chat, "still fine")
            .unwrap();
        let pm = queue
            .enqueue("shell", Destination::Pm("bob".into()), "pm ok")
            .unwrap();
        queue.set_blocked(Some(ChatError::Muted("muted by a moderator".into())));
        assert_eq!(
            other.await.unwrap(),
            Err(ChatError::Muted("muted by a moderator".into()))
        );
        assert!(queue
            .enqueue("x", Destination::Chat, "hi")
            .unwrap_err()
            .is_permanent());
        assert_eq!(queue.len(), 1, "the PM still waits");
        queue.set_blocked(None);
        assert!(queue.enqueue("x", Destination::Chat, "hi").is_ok());
        assert!(matches!(
            queue.enqueue("x", Destination::Chat, " "),
            Err(ChatError::Invalid(_))
        ));
        assert_eq!(
            queue
                .enqueue("x", Destination::Chat, &"a".repeat(MAX_TEXT_CHARS + 1))
                .unwrap_err(),
            ChatError::TooLong(MAX_TEXT_CHARS + 1)
        );
        queue.close();
        assert_eq!(pm.await.unwrap(), Err(ChatError::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_line_dropped_by_a_cooldown_is_sent_again_first() {
        let queue = ChatQueue::new(320);
        let (platform, mut seen) = fake_platform(Ok(()));
        tokio::spawn(queue.clone().run_worker(TokenBucket::new(4, 1.0), platform));
        let one = queue.enqueue("a", Destination::Chat, "one").unwrap();
        assert_eq!(
            seen.recv().await.unwrap(),
            PlatformAction::Chat("one".into())
        );
        assert_eq!(one.await.unwrap(), Ok(()));
        // The server dropped it: after the pause it goes again, before anything newer.
        let start = Instant::now();
        queue.cooldown(Duration::from_secs(2));
        let two = queue.enqueue("b", Destination::Chat, "two").unwrap();
        assert_eq!(
            seen.recv().await.unwrap(),
            PlatformAction::Chat("one".into())
        );
        assert!(start.elapsed() >= Duration::from_secs(2));
        assert_eq!(
            seen.recv().await.unwrap(),
            PlatformAction::Chat("two".into())
        );
        assert_eq!(two.await.unwrap(), Ok(()));
        // A refusal (a muted bot's `noflood`) pauses without sending the line again.
        queue.pause(Duration::from_secs(1));
        let _three = queue.enqueue("a", Destination::Chat, "three").unwrap();
        assert_eq!(
            seen.recv().await.unwrap(),
            PlatformAction::Chat("three".into())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cooldown_pauses_and_platform_errors_fail_the_message() {
        let queue = ChatQueue::new(5);
        let (platform, mut seen) = fake_platform(Err(ActionError::NotConnected));
        queue.pause(Duration::from_secs(3));
        let start = Instant::now();
        let done = queue
            .enqueue("core", Destination::Chat, "aaaa bbbb")
            .unwrap();
        tokio::spawn(queue.clone().run_worker(TokenBucket::new(4, 1.0), platform));
        assert_eq!(
            seen.recv().await.unwrap(),
            PlatformAction::Chat("aaaa".into())
        );
        assert!(start.elapsed() >= Duration::from_secs(3));
        let err = done.await.unwrap().unwrap_err();
        assert_eq!(err, ChatError::Platform(ActionError::NotConnected));
        assert!(!err.is_permanent());
    }
}
