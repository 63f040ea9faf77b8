//! Subjects and the index that finds the subscriptions matching one.
//!
//! Your task: the trie's [`Index::insert`] and [`Index::for_each_match`] (stage 2: literal
//! tokens; stage 4: `*` and `>`), [`Index::remove`] (stage 5), [`valid_subject`] and
//! [`valid_literal_subject`] (stage 7). The node type is given.
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
    // TODO: not empty, no ASCII whitespace, split on `.`: no empty token, and a `>` token only
    // last.
    todo!()
}

/// Whether `subject` is valid for a publication: a valid subject with no wildcard token.
pub fn valid_literal_subject(subject: &[u8]) -> bool {
    // TODO: a valid subject none of whose tokens is `*` or `>`.
    todo!()
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
        // TODO: (stage 2, wildcards in stage 4) the subscription stored at the node its subject's
        // tokens lead to: a literal under `node.literal`, `*` under `node.star`, a last `>` in
        // `node.rest`, else `node.here`; `self.len` counts it. `HashMap::entry`,
        // `Option::get_or_insert_with`.
        todo!()
    }

    /// Removes one entry equal to `value` under `pattern`; whether there was one. Branches left
    /// empty are pruned, so the index does not grow with subjects nobody listens to any more.
    pub fn remove(&mut self, pattern: &[u8], value: &T) -> bool {
        // TODO: one entry equal to `value` gone from the node its subject leads to, no empty node
        // left behind (`Node::is_empty`), and `self.len` right. A recursive helper is easiest.
        todo!()
    }

    /// Calls `visit` once for every entry whose pattern matches `subject` (a literal subject).
    pub fn for_each_match<'a>(&'a self, subject: &[u8], mut visit: impl FnMut(&'a T)) {
        // TODO: (stage 2, wildcards in stage 4) `visit` called once for every subscription the
        // contract's "Subjects" says matches `subject`, with no allocation for short subjects.
        todo!()
    }
}
