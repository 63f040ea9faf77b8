//! Redis's glob patterns for `KEYS`: `*`, `?`, `[abc]`, `[^a-z]`, and `\` to escape.
//!
//! A pattern is compiled once per `KEYS`, then matched against every key. Matching simulates
//! every way the pattern could match at once (a set of positions in the pattern, 64 to a
//! machine word), so it costs the key's length times the pattern's length divided by 64, for any
//! pattern: no backtracking, no worst case hiding behind a crafted pattern. (Backtracking on the
//! last `*`, the usual short matcher, costs key times pattern: a 4 KB pattern against one 1 MiB
//! key took 15 s.) Common shapes (`*`, a literal, `prefix*`) skip the simulation.

/// The longest pattern `KEYS` accepts, in bytes: past it, `-ERR pattern too long`. It bounds the
/// compiled pattern (32 bytes per pattern byte) and the work per key byte (one word per 64).
pub const MAX_PATTERN: usize = 64 * 1024;

/// Whether `text` matches `pattern`, byte by byte.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    Pattern::new(pattern).matches(text)
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    shape: Shape,
}

#[derive(Debug, Clone)]
enum Shape {
    /// Only stars: everything matches.
    Anything,
    /// No wildcard at all.
    Exactly(Vec<u8>),
    /// A literal, then one star.
    Prefix(Vec<u8>),
    /// Anything else.
    Positions(Positions),
}

/// The pattern as a set of positions: position `i` means "the first `i` tokens matched".
#[derive(Debug, Clone)]
struct Positions {
    /// Tokens (a star, or a set of bytes).
    tokens: usize,
    /// Words per set of positions.
    words: usize,
    /// For each byte, the tokens that accept it: `words` words per byte.
    accepts: Vec<u64>,
    /// The tokens that are stars.
    stars: Vec<u64>,
}

/// One element of a pattern.
enum Token {
    Star,
    /// The bytes this token accepts (a literal is one, `?` all of them).
    Set(Box<[bool; 256]>),
    Literal(u8),
}

impl Pattern {
    /// Compiles `pattern`.
    pub fn new(pattern: &[u8]) -> Pattern {
        let tokens = tokenize(pattern);
        let literal: Option<Vec<u8>> = tokens
            .iter()
            .map(|t| match t {
                Token::Literal(c) => Some(*c),
                _ => None,
            })
            .collect();
        let shape = if !tokens.is_empty() && tokens.iter().all(|t| matches!(t, Token::Star)) {
            Shape::Anything
        } else if let Some(literal) = literal {
            Shape::Exactly(literal)
        } else if let Some((Token::Star, head)) = tokens.split_last()
            && let Some(prefix) = head
                .iter()
                .map(|t| match t {
                    Token::Literal(c) => Some(*c),
                    _ => None,
                })
                .collect::<Option<Vec<u8>>>()
        {
            Shape::Prefix(prefix)
        } else {
            Shape::Positions(Positions::new(&tokens))
        };
        Pattern { shape }
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &[u8]) -> bool {
        match &self.shape {
            Shape::Anything => true,
            Shape::Exactly(literal) => text == literal.as_slice(),
            Shape::Prefix(prefix) => text.starts_with(prefix),
            Shape::Positions(positions) => positions.matches(text),
        }
    }
}

/// Splits a pattern into tokens, runs of stars made one.
fn tokenize(pattern: &[u8]) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut p = 0;
    while p < pattern.len() {
        match pattern[p] {
            b'*' => {
                if !matches!(tokens.last(), Some(Token::Star)) {
                    tokens.push(Token::Star);
                }
                p += 1;
            }
            b'?' => {
                tokens.push(Token::Set(Box::new([true; 256])));
                p += 1;
            }
            b'[' => {
                let mut set = Box::new([false; 256]);
                for (c, accepted) in (0..=u8::MAX).zip(set.iter_mut()) {
                    *accepted = class(&pattern[p..], c).0;
                }
                tokens.push(Token::Set(set));
                p += class(&pattern[p..], 0).1;
            }
            b'\\' if p + 1 < pattern.len() => {
                tokens.push(Token::Literal(pattern[p + 1]));
                p += 2;
            }
            c => {
                tokens.push(Token::Literal(c));
                p += 1;
            }
        }
    }
    tokens
}

impl Positions {
    fn new(tokens: &[Token]) -> Positions {
        let words = (tokens.len() + 1).div_ceil(64);
        let mut accepts = vec![0u64; 256 * words];
        let mut stars = vec![0u64; words];
        for (i, token) in tokens.iter().enumerate() {
            let bit = 1u64 << (i % 64);
            match token {
                Token::Star => stars[i / 64] |= bit,
                Token::Literal(c) => accepts[usize::from(*c) * words + i / 64] |= bit,
                Token::Set(set) => {
                    for (c, _) in set.iter().enumerate().filter(|(_, a)| **a) {
                        accepts[c * words + i / 64] |= bit;
                    }
                }
            }
        }
        Positions {
            tokens: tokens.len(),
            words,
            accepts,
            stars,
        }
    }

    fn matches(&self, text: &[u8]) -> bool {
        let mut live = vec![0u64; self.words];
        live[0] = 1;
        self.close(&mut live);
        for &c in text {
            let row = &self.accepts[usize::from(c) * self.words..][..self.words];
            // A position moves on past a token that accepts `c`, and stays on a star.
            let (mut carry, mut any) = (0, 0);
            for ((word, &accepts), &stars) in live.iter_mut().zip(row).zip(&self.stars) {
                let moved = *word & accepts;
                *word = (moved << 1) | carry | (*word & stars);
                carry = moved >> 63;
                any |= *word;
            }
            if any == 0 {
                return false;
            }
            self.close(&mut live);
        }
        live[self.tokens / 64] & (1 << (self.tokens % 64)) != 0
    }

    /// A star may match nothing: a position on a star is also past it (one step is enough, as
    /// runs of stars were made one).
    fn close(&self, live: &mut [u64]) {
        let mut carry = 0;
        for (word, &stars) in live.iter_mut().zip(&self.stars) {
            let on = *word & stars;
            *word |= (on << 1) | carry;
            carry = on >> 63;
        }
    }
}

/// Matches `c` against the class at the start of `pattern` (which begins with `[`), read as
/// Redis reads one: whether it matched, and the class's length. A `\` makes the next byte a
/// member; `x-y` is a range (either way round), whatever `y` is, `]` included; the class ends at
/// the first `]` neither escaped nor ending a range, or else at the end of the pattern.
fn class(pattern: &[u8], c: u8) -> (bool, usize) {
    let mut i = 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() {
        let left = pattern.len() - i;
        if pattern[i] == b'\\' && left >= 2 {
            i += 1;
            matched |= pattern[i] == c;
        } else if pattern[i] == b']' {
            return (matched != negate, i + 1);
        } else if left >= 3 && pattern[i + 1] == b'-' {
            let (lo, hi) = (pattern[i], pattern[i + 2]);
            matched |= (lo.min(hi)..=lo.max(hi)).contains(&c);
            i += 2;
        } else {
            matched |= pattern[i] == c;
        }
        i += 1;
    }
    (matched != negate, pattern.len())
}
