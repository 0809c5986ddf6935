//! The learned lines in one arena: each line's tokens followed by [`END`], oldest first.
//!
//! A place in the arena is an absolute position (`u32`), so it stays valid while older lines
//! are dropped from the front. Position `p` stands for the window of the `order` tokens
//! before it (with [`START`] in place of anything before the line's first word) and the
//! token at `p` is what followed that window; the token before the window is what preceded
//! it. The chain's tables therefore keep positions, not tokens and counts: one position per
//! occurrence serves both directions, and drawing a random occurrence draws a neighbour
//! with the probability of its count.

use super::{Token, Window, END, MAX_ORDER, PAD, START};
use std::collections::VecDeque;

/// An absolute position in the arena.
pub(super) type Pos = u32;

/// The lines, as tokens in one arena.
#[derive(Debug, Clone, Default)]
pub(super) struct Corpus {
    /// The tokens of every line, each line ended by [`END`].
    arena: VecDeque<Token>,
    /// The absolute position of `arena[0]`.
    base: Pos,
    /// Where each line starts, oldest first.
    starts: VecDeque<Pos>,
}

/// Makes room for `extra` more items, growing by an eighth rather than doubling, so that a
/// large corpus holds at most about 12.5 % of spare room (the copies this costs are a few
/// milliseconds over a whole corpus).
pub(super) fn grow_by_eighths<T>(items: &mut VecDeque<T>, extra: usize) {
    if items.len() + extra > items.capacity() {
        items.reserve_exact((items.len() / 8).max(extra).max(64));
    }
}

/// [`grow_by_eighths`] for the chain's other large arrays.
pub(super) fn grow_vec_by_eighths<T>(items: &mut Vec<T>, extra: usize) {
    if items.len() + extra > items.capacity() {
        items.reserve_exact((items.len() / 8).max(extra).max(64));
    }
}

/// [`grow_by_eighths`] for the vocabulary's text.
pub(super) fn grow_text_by_eighths(text: &mut String, extra: usize) {
    if text.len() + extra > text.capacity() {
        text.reserve_exact((text.len() / 8).max(extra).max(256));
    }
}

impl Corpus {
    /// Lines kept.
    pub(super) fn lines(&self) -> usize {
        self.starts.len()
    }

    /// The position the next token will get.
    pub(super) fn end(&self) -> u64 {
        u64::from(self.base) + self.arena.len() as u64
    }

    /// The token at `p` (`END` outside the arena, which only damaged positions reach).
    pub(super) fn token(&self, p: Pos) -> Token {
        p.checked_sub(self.base)
            .and_then(|i| self.arena.get(i as usize))
            .copied()
            .unwrap_or(END)
    }

    /// Appends a line; returns its start. The caller keeps positions below `u32::MAX`.
    pub(super) fn push(&mut self, tokens: &[Token]) -> Pos {
        let start = Pos::try_from(self.end()).unwrap_or(Pos::MAX);
        grow_by_eighths(&mut self.arena, tokens.len() + 1);
        grow_by_eighths(&mut self.starts, 1);
        self.arena.extend(tokens.iter().copied());
        self.arena.push_back(END);
        self.starts.push_back(start);
        start
    }

    /// The oldest line's start and its word count.
    pub(super) fn oldest(&self) -> Option<(Pos, usize)> {
        let start = *self.starts.front()?;
        let end = self
            .starts
            .get(1)
            .map_or(self.end(), |&s| u64::from(s))
            .saturating_sub(1);
        Some((start, (end - u64::from(start)) as usize))
    }

    /// Drops the oldest line (once the tables no longer refer to it).
    pub(super) fn pop_oldest(&mut self) {
        let Some((start, words)) = self.oldest() else {
            return;
        };
        self.starts.pop_front();
        self.arena.drain(..=words);
        self.base = start + words as Pos + 1;
    }

    /// The start of a line drawn uniformly (`None` when empty).
    pub(super) fn random_start(&self, rng: &mut fastrand::Rng) -> Option<Pos> {
        if self.starts.is_empty() {
            return None;
        }
        self.starts.get(rng.usize(0..self.starts.len())).copied()
    }

    /// The `len` tokens before `p` into `out[..len]` (oldest first), with [`START`] for
    /// everything before the line's first word.
    fn context(&self, p: Pos, out: &mut [Token], len: usize) {
        let i = p.saturating_sub(self.base) as usize;
        let mut in_line = true;
        for j in 1..=len {
            let token = if in_line && j <= i {
                self.arena.get(i - j).copied().unwrap_or(END)
            } else {
                END
            };
            if token == END {
                in_line = false;
            }
            out[len - j] = if in_line { token } else { START };
        }
    }

    /// The window `p` stands for: the `order` tokens before it.
    pub(super) fn window(&self, p: Pos, order: usize) -> Window {
        let mut window = [PAD; MAX_ORDER];
        self.context(p, &mut window, order);
        window
    }

    /// The token before the window `p` stands for ([`START`] at the line's start).
    pub(super) fn before_window(&self, p: Pos, order: usize) -> Token {
        let mut context = [PAD; MAX_ORDER + 1];
        self.context(p, &mut context, order + 1);
        context[0]
    }

    /// Whether the window `p` stands for is `window` (its first `order` tokens).
    pub(super) fn window_is(&self, p: Pos, order: usize, window: &[Token]) -> bool {
        // Compared from the end: the last token is checked by the caller's table already,
        // and lines are told apart by their nearest tokens first.
        let i = p.saturating_sub(self.base) as usize;
        let mut in_line = true;
        for j in 1..=order {
            let token = if in_line && j <= i {
                self.arena.get(i - j).copied().unwrap_or(END)
            } else {
                END
            };
            if token == END {
                in_line = false;
            }
            let token = if in_line { token } else { START };
            if token != window[order - j] {
                return false;
            }
        }
        true
    }

    /// Whether a line starting at `start` holds exactly `tokens`.
    pub(super) fn line_is(&self, start: Pos, tokens: &[Token]) -> bool {
        let Some(i) = start.checked_sub(self.base).map(|i| i as usize) else {
            return false;
        };
        let starts_line = i == 0 || self.arena.get(i - 1) == Some(&END);
        starts_line
            && self.arena.get(i + tokens.len()) == Some(&END)
            && self.arena.range(i..i + tokens.len()).eq(tokens.iter())
    }

    /// Every line's tokens, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = impl Iterator<Item = Token> + '_> + '_ {
        let ends = self
            .starts
            .iter()
            .skip(1)
            .map(|&s| u64::from(s))
            .chain(std::iter::once(self.end()));
        self.starts.iter().zip(ends).map(move |(&s, e)| {
            let from = (s - self.base) as usize;
            let to = (e - 1 - u64::from(self.base)) as usize;
            self.arena.range(from..to).copied()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_neighbours_and_lines_survive_dropping() {
        let mut c = Corpus::default();
        let a = c.push(&[10, 11, 12]);
        let b = c.push(&[20]);
        assert_eq!((a, b), (0, 4));
        // Position a + 2 holds 12, after the window (10, 11) at order 2.
        assert_eq!(c.token(a + 2), 12);
        assert_eq!(c.window(a + 2, 2)[..2], [10, 11]);
        assert_eq!(c.window(a + 1, 3)[..3], [START, START, 10]);
        assert_eq!(c.before_window(a + 3, 2), 10);
        assert_eq!(c.before_window(a + 2, 2), START);
        // The second line's window does not reach into the first.
        assert_eq!(c.window(b + 1, 2)[..2], [START, 20]);
        assert!(c.window_is(b + 1, 2, &[START, 20]));
        assert!(!c.window_is(b + 1, 2, &[12, 20]));
        assert!(c.line_is(a, &[10, 11, 12]));
        assert!(!c.line_is(a, &[10, 11]));
        assert!(!c.line_is(a + 1, &[11, 12]));
        assert_eq!(c.oldest(), Some((0, 3)));
        c.pop_oldest();
        assert_eq!(c.oldest(), Some((4, 1)));
        assert_eq!(c.window(b + 1, 2)[..2], [START, 20]);
        assert_eq!(c.token(b), 20);
        assert_eq!(c.token(a), END, "dropped positions read as ends");
        let lines: Vec<Vec<Token>> = c.iter().map(Iterator::collect).collect();
        assert_eq!(lines, [vec![20]]);
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(c.random_start(&mut rng), Some(b));
        c.pop_oldest();
        assert_eq!((c.lines(), c.end()), (0, 6));
        assert_eq!(c.random_start(&mut rng), None);
        c.pop_oldest();
    }
}
