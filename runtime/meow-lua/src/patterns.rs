//! Lua 5.4 patterns (reference manual §6.4.1), matched with a step budget.
//!
//! Lua's own matcher runs in C, where no instruction hook reaches: `("a"):rep(40):find(
//! "(.-)(.-)(.-)(.-)(.-)b")` backtracks for seconds while the plugin's budget never runs down.
//! This matcher follows the same semantics (classes, sets, `*` `+` `-` `?`, captures, position
//! captures, back-references, `%b`, `%f`, anchors, the 200-deep recursion limit and the 32
//! captures) and charges every step to a [`Steps`] budget, so a pattern that explodes ends with
//! an error instead of a hung plugin. The tests compare it with Lua's own functions.

/// Captures per pattern at most (Lua's `LUA_MAXCAPTURES`).
const MAX_CAPTURES: usize = 32;
/// Nesting of the matcher at most (Lua's `MAXCCALLS`).
const MAX_DEPTH: usize = 200;

/// Why a match could not be done.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern is not valid (Lua's message).
    Malformed(String),
    /// The step budget ran out.
    Budget,
}

/// A budget of matcher steps, charged as the match goes.
pub trait Steps {
    /// Charges `n` steps; `false` when the budget is exhausted.
    fn charge(&mut self, n: u64) -> bool;
}

/// A captured value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capture {
    /// A substring: start and end offsets in the subject.
    Span(usize, usize),
    /// A position capture `()`: the 1-based position.
    Position(usize),
}

#[derive(Debug, Clone, Copy)]
pub enum Len {
    Unfinished,
    Position,
    Closed(usize),
}

struct Matcher<'a, S: Steps> {
    src: &'a [u8],
    pat: &'a [u8],
    depth: usize,
    level: usize,
    caps: [(usize, Len); MAX_CAPTURES],
    steps: &'a mut S,
    pending: u64,
}

fn malformed(m: &str) -> PatternError {
    PatternError::Malformed(m.to_owned())
}

fn class_matches(c: u8, class: u8) -> bool {
    let res = match class.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        b's' => matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        _ => return class == c,
    };
    if class.is_ascii_uppercase() { !res } else { res }
}

impl<'a, S: Steps> Matcher<'a, S> {
    fn step(&mut self) -> Result<(), PatternError> {
        self.pending += 1;
        if self.pending >= 1024 {
            let n = std::mem::take(&mut self.pending);
            if !self.steps.charge(n) {
                return Err(PatternError::Budget);
            }
        }
        Ok(())
    }

    /// The end of the single-character class starting at `p`.
    fn class_end(&self, p: usize) -> Result<usize, PatternError> {
        let pat = self.pat;
        let mut p = p;
        let c = pat[p];
        p += 1;
        if c == b'%' {
            if p >= pat.len() {
                return Err(malformed("malformed pattern (ends with '%')"));
            }
            return Ok(p + 1);
        }
        if c == b'[' {
            if pat.get(p) == Some(&b'^') {
                p += 1;
            }
            // Look for a `]` (the first character of the set is never its end).
            loop {
                if p >= pat.len() {
                    return Err(malformed("malformed pattern (missing ']')"));
                }
                let cc = pat[p];
                p += 1;
                if cc == b'%' && p < pat.len() {
                    p += 1;
                }
                if pat.get(p) == Some(&b']') {
                    return Ok(p + 1);
                }
                if p >= pat.len() {
                    return Err(malformed("malformed pattern (missing ']')"));
                }
            }
        }
        Ok(p)
    }

    /// Whether `c` is in the set `[...]` spanning `p..=ec` (`ec` is the closing bracket).
    fn bracket_class(&self, c: u8, p: usize, ec: usize) -> bool {
        let pat = self.pat;
        let mut p = p + 1;
        let mut sig = true;
        if pat[p] == b'^' {
            sig = false;
            p += 1;
        }
        while p < ec {
            if pat[p] == b'%' {
                p += 1;
                if class_matches(c, pat[p]) {
                    return sig;
                }
                p += 1;
            } else if pat.get(p + 1) == Some(&b'-') && p + 2 < ec {
                if pat[p] <= c && c <= pat[p + 2] {
                    return sig;
                }
                p += 3;
            } else {
                if pat[p] == c {
                    return sig;
                }
                p += 1;
            }
        }
        !sig
    }

    fn single(&self, s: usize, p: usize, ep: usize) -> bool {
        let Some(&c) = self.src.get(s) else { return false };
        match self.pat[p] {
            b'.' => true,
            b'%' => class_matches(c, self.pat[p + 1]),
            b'[' => self.bracket_class(c, p, ep - 1),
            pc => pc == c,
        }
    }

    fn do_match(&mut self, s: usize, p: usize) -> Result<Option<usize>, PatternError> {
        if self.depth == 0 {
            return Err(malformed("pattern too complex"));
        }
        self.depth -= 1;
        let r = self.match_inner(s, p);
        self.depth += 1;
        r
    }

    fn match_inner(&mut self, mut s: usize, mut p: usize) -> Result<Option<usize>, PatternError> {
        let pat = self.pat;
        loop {
            self.step()?;
            if p >= pat.len() {
                return Ok(Some(s));
            }
            match pat[p] {
                b'(' => {
                    return if pat.get(p + 1) == Some(&b')') {
                        self.start_capture(s, p + 2, Len::Position)
                    } else {
                        self.start_capture(s, p + 1, Len::Unfinished)
                    };
                }
                b')' => return self.end_capture(s, p + 1),
                b'$' if p + 1 == pat.len() => return Ok((s == self.src.len()).then_some(s)),
                b'%' if pat.get(p + 1) == Some(&b'b') => match self.balance(s, p + 2)? {
                    Some(e) => {
                        s = e;
                        p += 4;
                        continue;
                    }
                    None => return Ok(None),
                },
                b'%' if pat.get(p + 1) == Some(&b'f') => {
                    p += 2;
                    if pat.get(p) != Some(&b'[') {
                        return Err(malformed("missing '[' after '%f' in pattern"));
                    }
                    let ep = self.class_end(p)?;
                    let prev = if s == 0 { 0 } else { self.src[s - 1] };
                    let curr = self.src.get(s).copied().unwrap_or(0);
                    if !self.bracket_class(prev, p, ep - 1) && self.bracket_class(curr, p, ep - 1) {
                        p = ep;
                        continue;
                    }
                    return Ok(None);
                }
                b'%' if pat.get(p + 1).is_some_and(u8::is_ascii_digit) => match self.back_reference(s, pat[p + 1])? {
                    Some(e) => {
                        s = e;
                        p += 2;
                        continue;
                    }
                    None => return Ok(None),
                },
                _ => {}
            }
            let ep = self.class_end(p)?;
            let m = self.single(s, p, ep);
            match pat.get(ep) {
                Some(b'?') => {
                    if m && let Some(r) = self.do_match(s + 1, ep + 1)? {
                        return Ok(Some(r));
                    }
                    p = ep + 1;
                }
                Some(b'+') => return if m { self.max_expand(s + 1, p, ep) } else { Ok(None) },
                Some(b'*') => return self.max_expand(s, p, ep),
                Some(b'-') => return self.min_expand(s, p, ep),
                _ => {
                    if !m {
                        return Ok(None);
                    }
                    s += 1;
                    p = ep;
                }
            }
        }
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> Result<Option<usize>, PatternError> {
        let mut i = 0;
        while self.single(s + i, p, ep) {
            self.step()?;
            i += 1;
        }
        loop {
            if let Some(r) = self.do_match(s + i, ep + 1)? {
                return Ok(Some(r));
            }
            if i == 0 {
                return Ok(None);
            }
            i -= 1;
        }
    }

    fn min_expand(&mut self, mut s: usize, p: usize, ep: usize) -> Result<Option<usize>, PatternError> {
        loop {
            if let Some(r) = self.do_match(s, ep + 1)? {
                return Ok(Some(r));
            }
            if self.single(s, p, ep) {
                s += 1;
            } else {
                return Ok(None);
            }
        }
    }

    fn start_capture(&mut self, s: usize, p: usize, what: Len) -> Result<Option<usize>, PatternError> {
        if self.level >= MAX_CAPTURES {
            return Err(malformed("too many captures"));
        }
        self.caps[self.level] = (s, what);
        self.level += 1;
        let r = self.do_match(s, p)?;
        if r.is_none() {
            self.level -= 1;
        }
        Ok(r)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> Result<Option<usize>, PatternError> {
        let l = (0..self.level)
            .rev()
            .find(|&i| matches!(self.caps[i].1, Len::Unfinished))
            .ok_or_else(|| malformed("invalid pattern capture"))?;
        self.caps[l].1 = Len::Closed(s - self.caps[l].0);
        let r = self.do_match(s, p)?;
        if r.is_none() {
            self.caps[l].1 = Len::Unfinished;
        }
        Ok(r)
    }

    fn balance(&mut self, s: usize, p: usize) -> Result<Option<usize>, PatternError> {
        if p + 1 >= self.pat.len() {
            return Err(malformed("malformed pattern (missing arguments to '%b')"));
        }
        let (open, close) = (self.pat[p], self.pat[p + 1]);
        if self.src.get(s) != Some(&open) {
            return Ok(None);
        }
        let mut depth = 1;
        let mut i = s + 1;
        while i < self.src.len() {
            self.step()?;
            let c = self.src[i];
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Ok(Some(i + 1));
                }
            } else if c == open {
                depth += 1;
            }
            i += 1;
        }
        Ok(None)
    }

    fn back_reference(&mut self, s: usize, digit: u8) -> Result<Option<usize>, PatternError> {
        let l = usize::from(digit).wrapping_sub(usize::from(b'1'));
        let invalid = || PatternError::Malformed(format!("invalid capture index %{}", l.wrapping_add(1)));
        if l >= self.level {
            return Err(invalid());
        }
        let (start, len) = match self.caps[l] {
            (start, Len::Closed(len)) => (start, len),
            // Lua compares a position capture's length as a huge number: never a match.
            (_, Len::Position) => return Ok(None),
            (_, Len::Unfinished) => return Err(invalid()),
        };
        self.step()?;
        let end = s + len;
        if end <= self.src.len() && self.src[start..start + len] == self.src[s..end] {
            Ok(Some(end))
        } else {
            Ok(None)
        }
    }

    fn flush(&mut self) -> Result<(), PatternError> {
        let n = std::mem::take(&mut self.pending);
        if n > 0 && !self.steps.charge(n) {
            return Err(PatternError::Budget);
        }
        Ok(())
    }
}

/// One match: where it is, and its captures (read when asked: Lua only fails on an unfinished
/// capture if the capture is used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Start offset.
    pub start: usize,
    /// End offset (exclusive).
    pub end: usize,
    caps: Vec<(usize, Len)>,
}

impl PartialEq for Len {
    fn eq(&self, other: &Self) -> bool {
        matches!(
            (self, other),
            (Len::Unfinished, Len::Unfinished) | (Len::Position, Len::Position)
        ) || matches!((self, other), (Len::Closed(a), Len::Closed(b)) if a == b)
    }
}

impl Eq for Len {}

impl Found {
    /// Whether the pattern has captures of its own.
    pub fn explicit(&self) -> bool {
        !self.caps.is_empty()
    }

    /// Capture `i` (0-based); the whole match for 0 when the pattern has none.
    pub fn capture(&self, i: usize) -> Result<Capture, PatternError> {
        match self.caps.get(i) {
            None if i == 0 => Ok(Capture::Span(self.start, self.end)),
            None => Err(PatternError::Malformed(format!("invalid capture index %{}", i + 1))),
            Some((start, Len::Closed(len))) => Ok(Capture::Span(*start, start + len)),
            Some((start, Len::Position)) => Ok(Capture::Position(start + 1)),
            Some((_, Len::Unfinished)) => Err(malformed("unfinished capture")),
        }
    }

    /// Every capture (the whole match when the pattern has none).
    pub fn captures(&self) -> Result<Vec<Capture>, PatternError> {
        (0..self.caps.len().max(1)).map(|i| self.capture(i)).collect()
    }
}

/// A compiled use of a pattern on one subject.
#[derive(Debug)]
pub struct Pattern<'a> {
    pat: &'a [u8],
    anchored: bool,
}

impl<'a> Pattern<'a> {
    /// `pattern` as `find`, `match` and `gsub` read it: a leading `^` anchors it.
    pub fn anchorable(pattern: &'a [u8]) -> Self {
        match pattern.first() {
            Some(b'^') => Self {
                pat: &pattern[1..],
                anchored: true,
            },
            _ => Self {
                pat: pattern,
                anchored: false,
            },
        }
    }

    /// `pattern` as `gmatch` reads it: a `^` is an ordinary character.
    pub fn unanchored(pattern: &'a [u8]) -> Self {
        Self {
            pat: pattern,
            anchored: false,
        }
    }

    /// Whether the pattern is anchored at the start.
    pub fn anchored(&self) -> bool {
        self.anchored
    }

    /// Tries to match at exactly `at`; the end of the match and the captures.
    pub fn match_at<S: Steps>(&self, src: &[u8], at: usize, steps: &mut S) -> Result<Option<Found>, PatternError> {
        let mut m = Matcher {
            src,
            pat: self.pat,
            depth: MAX_DEPTH,
            level: 0,
            caps: [(0, Len::Unfinished); MAX_CAPTURES],
            steps,
            pending: 0,
        };
        let r = m.do_match(at, 0);
        m.flush()?;
        match r? {
            Some(end) => Ok(Some(Found {
                start: at,
                end,
                caps: m.caps[..m.level].to_vec(),
            })),
            None => Ok(None),
        }
    }

    /// The first match at or after `init` (only at `init` when anchored).
    pub fn find<S: Steps>(&self, src: &[u8], init: usize, steps: &mut S) -> Result<Option<Found>, PatternError> {
        let mut at = init;
        loop {
            if let Some(f) = self.match_at(src, at, steps)? {
                return Ok(Some(f));
            }
            if self.anchored || at >= src.len() {
                return Ok(None);
            }
            at += 1;
        }
    }
}

/// Whether a pattern has no magic characters (`find` then searches plainly).
pub fn is_plain(pattern: &[u8]) -> bool {
    !pattern.iter().any(|c| b"^$*+?.([%-".contains(c))
}

/// The first occurrence of `needle` in `hay` at or after `from`.
pub fn find_plain(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return (from <= hay.len()).then_some(from);
    }
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// `string.find`'s `init` (1-based, negative from the end) as an offset; `None` past the end.
pub fn start_offset(init: i64, len: usize) -> Option<usize> {
    let len_i = len as i64;
    let pos = if init > 0 {
        init
    } else if init == 0 || init < -len_i {
        1
    } else {
        len_i + init + 1
    };
    let offset = (pos - 1) as usize;
    (offset <= len).then_some(offset)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    struct Unlimited;
    impl Steps for Unlimited {
        fn charge(&mut self, _: u64) -> bool {
            true
        }
    }

    struct Limit(u64);
    impl Steps for Limit {
        fn charge(&mut self, n: u64) -> bool {
            self.0 = self.0.saturating_sub(n);
            self.0 > 0
        }
    }

    fn find(s: &str, p: &str) -> Option<(usize, usize)> {
        Pattern::anchorable(p.as_bytes())
            .find(s.as_bytes(), 0, &mut Unlimited)
            .unwrap()
            .map(|f| (f.start + 1, f.end))
    }

    #[test]
    fn the_manual_examples_match() {
        assert_eq!(find("hello world", "o w"), Some((5, 7)));
        assert_eq!(find("hello", "l+"), Some((3, 4)));
        assert_eq!(find("  x", "^%s*x$"), Some((1, 3)));
        assert_eq!(find("THE (quick) fox", "%((%a+)%)"), Some((5, 11)));
        assert_eq!(find("f(a(b)c)d", "%b()"), Some((2, 8)));
        assert_eq!(find("THE (quick) fox", "%f[%a]%a+%f[%A]"), Some((1, 3)));
        assert_eq!(find("abcabc", "(abc)%1"), Some((1, 6)));
        assert_eq!(find("a]b", "[]]"), Some((2, 2)));
        assert_eq!(find("x-y", "[a%-]"), Some((2, 2)));
        assert_eq!(find("abc", "^b"), None);
        assert_eq!(find("aaab", "a-b"), Some((1, 4)));
    }

    #[test]
    fn a_backtracking_bomb_runs_out_of_steps_instead_of_time() {
        let s = "a".repeat(200);
        let p = Pattern::anchorable(b"(.-)(.-)(.-)(.-)(.-)b");
        assert_eq!(
            p.find(s.as_bytes(), 0, &mut Limit(1_000_000)),
            Err(PatternError::Budget)
        );
    }

    #[test]
    fn malformed_patterns_are_errors_not_panics() {
        for p in ["%", "[a", "(()", "%b", "%f", "a)", "%1", "(a%2)", "[%", "[^"] {
            let r = Pattern::anchorable(p.as_bytes())
                .find(b"abc", 0, &mut Unlimited)
                .and_then(|f| f.map(|f| f.captures()).transpose());
            assert!(matches!(r, Err(PatternError::Malformed(_))), "{p}: {r:?}");
        }
        let deep = "(".repeat(40) + &")".repeat(40);
        assert!(
            Pattern::anchorable(deep.as_bytes())
                .find(b"x", 0, &mut Unlimited)
                .is_err()
        );
    }
}
