//! Subjects and the index that finds the subscriptions matching one.
//!
//! A subject is dot-separated tokens (`orders.eu.paris`), none empty. A subscription's subject
//! may use two wildcards, each a whole token: `*` matches exactly one token (`orders.*.paris`),
//! `>` matches one or more tokens and must come last (`orders.>`). A published subject has no
//! wildcards.
//!
//! The [`Index`] is a trie over tokens: finding the subscriptions for a subject walks one path
//! per wildcard branch, so its cost depends on the subject's length and the wildcards in use, not
//! on how many subscriptions there are.

use std::collections::HashMap;

/// Whether `subject` is valid for a subscription: tokens not empty, no whitespace, `>` only as
/// the last token.
pub fn valid_subject(subject: &[u8]) -> bool {
    if subject.is_empty() || subject.iter().any(u8::is_ascii_whitespace) {
        return false;
    }
    let mut tokens = subject.split(|b| *b == b'.').peekable();
    while let Some(token) = tokens.next() {
        if token.is_empty() || (token == b">" && tokens.peek().is_some()) {
            return false;
        }
    }
    true
}

/// Whether `subject` is valid for a publication: a valid subject with no wildcard token.
pub fn valid_literal_subject(subject: &[u8]) -> bool {
    valid_subject(subject)
        && subject
            .split(|b| *b == b'.')
            .all(|token| token != b"*" && token != b">")
}

/// Subscriptions by subject pattern. `T` is what is stored; removal finds it with `==`.
#[derive(Debug)]
pub struct Index<T> {
    root: Node<T>,
    len: usize,
}

#[derive(Debug)]
struct Node<T> {
    /// Children by literal token, boxed: a map's slots hold a pointer rather than a whole node,
    /// so a long chain of single children costs about 270 bytes a token, not 1 KB.
    literal: HashMap<Box<[u8]>, Box<Node<T>>>,
    /// The child for `*`.
    star: Option<Box<Node<T>>>,
    /// Patterns ending here with `>`.
    rest: Vec<T>,
    /// Patterns ending exactly here.
    here: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            literal: HashMap::new(),
            star: None,
            rest: Vec::new(),
            here: Vec::new(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.star.is_none()
            && self.rest.is_empty()
            && self.here.is_empty()
    }
}

impl<T> Default for Index<T> {
    fn default() -> Self {
        Index {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<T: PartialEq> Index<T> {
    /// An empty index.
    pub fn new() -> Index<T> {
        Index::default()
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `value` under `pattern`, which must be a [`valid_subject`].
    pub fn insert(&mut self, pattern: &[u8], value: T) {
        let mut node = &mut self.root;
        let mut tokens = pattern.split(|b| *b == b'.').peekable();
        while let Some(token) = tokens.next() {
            if token == b">" && tokens.peek().is_none() {
                node.rest.push(value);
                self.len += 1;
                return;
            }
            node = if token == b"*" {
                node.star.get_or_insert_with(Box::default)
            } else {
                node.literal.entry(token.into()).or_default()
            };
        }
        node.here.push(value);
        self.len += 1;
    }

    /// Removes one entry equal to `value` under `pattern`; whether there was one. Branches left
    /// empty are pruned, so the index does not grow with subjects nobody listens to any more.
    pub fn remove(&mut self, pattern: &[u8], value: &T) -> bool {
        let tokens: Vec<&[u8]> = pattern.split(|b| *b == b'.').collect();
        let removed = remove_in(&mut self.root, &tokens, value);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Calls `visit` once for every entry whose pattern matches `subject` (a literal subject).
    pub fn for_each_match<'a>(&'a self, subject: &[u8], mut visit: impl FnMut(&'a T)) {
        let mut tokens = [&b""[..]; 32];
        let mut count = 0;
        let mut long: Vec<&[u8]> = Vec::new();
        for token in subject.split(|b| *b == b'.') {
            if count < tokens.len() {
                tokens[count] = token;
            } else {
                if long.is_empty() {
                    long.extend_from_slice(&tokens);
                }
                long.push(token);
            }
            count += 1;
        }
        // Most subjects have a few tokens: no allocation for them.
        let tokens = if long.is_empty() {
            &tokens[..count]
        } else {
            &long[..]
        };
        visit_in(&self.root, tokens, &mut visit);
    }
}

fn visit_in<'a, T>(node: &'a Node<T>, tokens: &[&[u8]], visit: &mut impl FnMut(&'a T)) {
    let Some((first, rest)) = tokens.split_first() else {
        node.here.iter().for_each(&mut *visit);
        return;
    };
    node.rest.iter().for_each(&mut *visit);
    if let Some(child) = node.literal.get(*first) {
        visit_in(child, rest, visit);
    }
    if let Some(child) = &node.star {
        visit_in(child, rest, visit);
    }
}

fn remove_in<T: PartialEq>(node: &mut Node<T>, tokens: &[&[u8]], value: &T) -> bool {
    let take = |list: &mut Vec<T>| match list.iter().position(|v| v == value) {
        Some(at) => {
            list.swap_remove(at);
            true
        }
        None => false,
    };
    match tokens {
        [] => take(&mut node.here),
        [last] if *last == b">" => take(&mut node.rest),
        [first, rest @ ..] if *first == b"*" => {
            let Some(child) = node.star.as_deref_mut() else {
                return false;
            };
            let removed = remove_in(child, rest, value);
            if child.is_empty() {
                node.star = None;
            }
            removed
        }
        [first, rest @ ..] => {
            let Some(child) = node.literal.get_mut(*first) else {
                return false;
            };
            let removed = remove_in(child, rest, value);
            if child.is_empty() {
                node.literal.remove(*first);
            }
            removed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_subjects_like_nats_server() {
        for good in ["a", "a.b.c", "a.*", "*", ">", "a.>", "a*", "a>.b", "*.*.>"] {
            assert!(valid_subject(good.as_bytes()), "{good}");
        }
        for bad in ["", ".a", "a.", "a..b", ">.a", "a.>.b", "a b", "a\tb"] {
            assert!(!valid_subject(bad.as_bytes()), "{bad}");
        }
        assert!(valid_literal_subject(b"a*.b>"));
        assert!(!valid_literal_subject(b"a.*"));
        assert!(!valid_literal_subject(b"a.>"));
    }

    fn matches(index: &Index<u32>, subject: &str) -> Vec<u32> {
        let mut found = Vec::new();
        index.for_each_match(subject.as_bytes(), |v| found.push(*v));
        found.sort_unstable();
        found
    }

    #[test]
    fn matches_literals_and_wildcards() {
        let mut index = Index::new();
        let patterns = ["a.b", "a.*", "a.>", ">", "*.b", "a.b.c", "*", "a.*.c"];
        for (i, p) in patterns.iter().enumerate() {
            index.insert(p.as_bytes(), i as u32);
        }
        assert_eq!(matches(&index, "a.b"), [0, 1, 2, 3, 4]);
        assert_eq!(matches(&index, "a"), [3, 6]);
        assert_eq!(matches(&index, "a.b.c"), [2, 3, 5, 7]);
        assert_eq!(matches(&index, "x.y.z.w"), [3]);
        let long = vec!["t"; 40].join(".");
        assert_eq!(matches(&index, &long), [3]);
    }

    #[test]
    fn removal_prunes_empty_branches() {
        let mut index = Index::new();
        index.insert(b"a.*.c", 1);
        index.insert(b"a.*.c", 2);
        index.insert(b"a.>", 3);
        assert!(!index.remove(b"a.*.c", &9));
        assert!(index.remove(b"a.*.c", &1));
        assert_eq!(matches(&index, "a.b.c"), [2, 3]);
        assert!(index.remove(b"a.*.c", &2));
        assert!(index.remove(b"a.>", &3));
        assert!(index.is_empty());
        assert!(index.root.is_empty());
    }
}
