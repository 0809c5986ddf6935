//! The chain's transitions: every window of `order` tokens, with the corpus positions where
//! it occurs.
//!
//! A window is not stored as tokens: its entry keeps the position of its oldest occurrence
//! and reads its tokens from the corpus there. Most windows of chat occur once, so an entry is
//! two `u32`s; a window seen several times gets a queue of its positions from a shared pool.
//! Lines are forgotten oldest first, so a window's oldest occurrence is always the one to
//! drop: the front of its queue.
//!
//! Entries are grouped by the window's last token, one small table per token (or the entry
//! itself for a token ending a single window): the windows a seed word ends are the entries
//! of that word's table, with no separate index to keep.

use super::corpus::{grow_vec_by_eighths, Corpus, Pos};
use super::{Token, TokenHasher, Window};
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use std::collections::VecDeque;
use std::hash::Hasher;

/// Marks an entry whose window occurs once (its `head` is its only position).
const SINGLE: u32 = u32::MAX;
/// A released queue keeps at most this capacity for its next window.
const KEPT_CAPACITY: usize = 4;

/// One window: where it occurs.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Its oldest position; the window's tokens are read from the corpus there.
    head: Pos,
    /// [`SINGLE`], or its queue of positions (oldest first, `head` included) in the pool.
    list: u32,
}

/// Where one window occurs: what the chain draws a neighbour from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Occurrences<'a> {
    head: Pos,
    list: Option<&'a VecDeque<Pos>>,
}

impl<'a> Occurrences<'a> {
    /// How many times the window occurs.
    pub(super) fn count(&self) -> usize {
        self.list.map_or(1, VecDeque::len)
    }

    /// The oldest occurrence.
    pub(super) fn head(&self) -> Pos {
        self.head
    }

    /// An occurrence drawn uniformly.
    pub(super) fn pick(&self, rng: &mut fastrand::Rng) -> Pos {
        match self.list {
            Some(list) if !list.is_empty() => list[rng.usize(0..list.len())],
            _ => self.head,
        }
    }

    /// Every occurrence, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = Pos> + 'a {
        let single = self.list.is_none().then_some(self.head);
        single
            .into_iter()
            .chain(self.list.into_iter().flatten().copied())
    }
}

/// The windows ending with one word. Many words (rare ones above all) end a single window,
/// which is kept inline rather than in a table of its own. The table is not boxed: a lookup
/// is bound by memory latency, and a box would add a dependent cache miss to every step of a
/// sentence (about a third slower in a profile) to save 24 bytes a word.
#[derive(Debug, Clone, Default)]
enum Ending {
    /// No window.
    #[default]
    Empty,
    /// One window.
    One(Slot),
    /// Several windows, hashed by their tokens before the last.
    Many(HashTable<Slot>),
}

/// Every window the chain knows, except the one of start markers only (every line's
/// start, which the corpus lists already).
#[derive(Debug, Clone, Default)]
pub(super) struct Windows {
    /// Last token -> the windows ending with it.
    by_last: Vec<Ending>,
    /// Queues of positions for the windows that occur more than once.
    lists: Vec<VecDeque<Pos>>,
    /// Queues in `lists` free for reuse.
    free: Vec<u32>,
    /// Windows in all the tables.
    count: usize,
}

/// The hash of a window's tokens before its last.
fn prefix_hash(prefix: &[Token]) -> u64 {
    let mut h = TokenHasher::default();
    for &t in prefix {
        h.write_u32(t);
    }
    h.finish()
}

/// Adds position `p`, the newest, to the window of `slot`.
fn push_occurrence(slot: &mut Slot, p: Pos, lists: &mut Vec<VecDeque<Pos>>, free: &mut Vec<u32>) {
    if slot.list != SINGLE {
        lists[slot.list as usize].push_back(p);
        return;
    }
    let id = match free.pop() {
        Some(id) => id,
        None => {
            // Grown by eighths like the corpus: queues are many.
            grow_vec_by_eighths(lists, 1);
            lists.push(VecDeque::with_capacity(KEPT_CAPACITY));
            u32::try_from(lists.len() - 1).unwrap_or(SINGLE - 1)
        }
    };
    let list = &mut lists[id as usize];
    list.push_back(slot.head);
    list.push_back(p);
    slot.list = id;
}

/// Removes position `p`, the oldest, from the window of `slot`; true when the window no
/// longer occurs.
fn pop_occurrence(
    slot: &mut Slot,
    p: Pos,
    lists: &mut [VecDeque<Pos>],
    free: &mut Vec<u32>,
) -> bool {
    if slot.list == SINGLE {
        return slot.head == p;
    }
    let list = &mut lists[slot.list as usize];
    if list.front() == Some(&p) {
        list.pop_front();
    }
    slot.head = list.front().copied().unwrap_or(p);
    if list.len() <= 1 {
        list.clear();
        list.shrink_to(KEPT_CAPACITY);
        free.push(slot.list);
        slot.list = SINGLE;
    }
    false
}

impl Ending {
    fn iter(&self) -> impl Iterator<Item = &Slot> {
        let (one, many) = match self {
            Ending::Empty => (None, None),
            Ending::One(slot) => (Some(slot), None),
            Ending::Many(table) => (None, Some(table.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

impl Windows {
    /// Distinct windows.
    pub(super) fn len(&self) -> usize {
        self.count
    }

    /// Records that `window` (its first `order` tokens) occurs at `p`, the newest position.
    pub(super) fn add(&mut self, corpus: &Corpus, order: usize, window: &Window, p: Pos) {
        let Windows {
            by_last,
            lists,
            free,
            count,
        } = self;
        let last = window[order - 1] as usize;
        if by_last.len() <= last {
            grow_vec_by_eighths(by_last, last + 1 - by_last.len());
            by_last.resize_with(last + 1, Ending::default);
        }
        let is_window = |s: &Slot| corpus.window_is(s.head, order, &window[..order]);
        let rehash = |s: &Slot| prefix_hash(&corpus.window(s.head, order)[..order - 1]);
        let hash = prefix_hash(&window[..order - 1]);
        let new = Slot {
            head: p,
            list: SINGLE,
        };
        let ending = &mut by_last[last];
        match ending {
            Ending::Empty => *ending = Ending::One(new),
            Ending::One(slot) if is_window(slot) => {
                return push_occurrence(slot, p, lists, free);
            }
            Ending::One(slot) => {
                let mut table = HashTable::with_capacity(2);
                table.insert_unique(rehash(slot), *slot, rehash);
                table.insert_unique(hash, new, rehash);
                *ending = Ending::Many(table);
            }
            Ending::Many(table) => match table.entry(hash, is_window, rehash) {
                Entry::Occupied(mut e) => return push_occurrence(e.get_mut(), p, lists, free),
                Entry::Vacant(v) => {
                    v.insert(new);
                }
            },
        }
        *count += 1;
    }

    /// Forgets the occurrence of `window` at `p`, its oldest.
    pub(super) fn remove(&mut self, corpus: &Corpus, order: usize, window: &Window, p: Pos) {
        let Windows {
            by_last,
            lists,
            free,
            count,
        } = self;
        let Some(ending) = by_last.get_mut(window[order - 1] as usize) else {
            return;
        };
        let is_window = |s: &Slot| corpus.window_is(s.head, order, &window[..order]);
        match ending {
            Ending::Empty => {}
            Ending::One(slot) => {
                if is_window(slot) && pop_occurrence(slot, p, lists, free) {
                    *ending = Ending::Empty;
                    *count -= 1;
                }
            }
            Ending::Many(table) => {
                let hash = prefix_hash(&window[..order - 1]);
                let Ok(mut e) = table.find_entry(hash, is_window) else {
                    return;
                };
                if pop_occurrence(e.get_mut(), p, lists, free) {
                    e.remove();
                    *count -= 1;
                    if table.len() == 1 {
                        // The table's memory goes back; the last window is kept inline.
                        if let Some(&last) = table.iter().next() {
                            *ending = Ending::One(last);
                        }
                    }
                }
            }
        }
    }

    /// Where `window` (its first `order` tokens) occurs, if it does.
    pub(super) fn find(
        &self,
        corpus: &Corpus,
        order: usize,
        window: &[Token],
    ) -> Option<Occurrences<'_>> {
        let is_window = |s: &&Slot| corpus.window_is(s.head, order, &window[..order]);
        let slot = match self.by_last.get(window[order - 1] as usize)? {
            Ending::Empty => None,
            Ending::One(slot) => Some(slot).filter(is_window),
            Ending::Many(table) => table.find(prefix_hash(&window[..order - 1]), |s| is_window(&s)),
        }?;
        Some(self.occurrences(slot))
    }

    fn occurrences(&self, slot: &Slot) -> Occurrences<'_> {
        Occurrences {
            head: slot.head,
            list: (slot.list != SINGLE).then(|| &self.lists[slot.list as usize]),
        }
    }

    /// The windows ending with `token`.
    pub(super) fn ending_with(&self, token: Token) -> impl Iterator<Item = Occurrences<'_>> {
        self.by_last
            .get(token as usize)
            .into_iter()
            .flat_map(Ending::iter)
            .map(|slot| self.occurrences(slot))
    }

    /// Every window's occurrences.
    #[cfg(test)]
    pub(super) fn all(&self) -> impl Iterator<Item = Occurrences<'_>> {
        self.by_last
            .iter()
            .flat_map(Ending::iter)
            .map(|slot| self.occurrences(slot))
    }

    /// The size of one word's entry.
    #[cfg(test)]
    pub(super) fn ending_size() -> usize {
        std::mem::size_of::<Ending>()
    }

    /// Queues in the pool, used or free.
    #[cfg(test)]
    pub(super) fn pooled(&self) -> (usize, usize) {
        (self.lists.len(), self.free.len())
    }
}
