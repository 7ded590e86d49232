//! YAML files with errors a person can act on: `file:line:column: path.of.key: what is wrong`.
//!
//! Every configuration file of meow (plugin manifests, `meow.yaml`, recipes) is read through
//! [`load`]: serde-saphyr parses (panic-free, with positions) and serde_path_to_error tracks the
//! path of the key being read. Types should use `#[serde(deny_unknown_fields)]` so that a
//! misspelt key is an error rather than silently ignored.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::fmt;

use serde::de::DeserializeOwned;

/// A YAML file could not be read as the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct YamlError {
    /// The file (as given by the caller).
    pub file: String,
    /// 1-based line, 0 if unknown.
    pub line: usize,
    /// 1-based column, 0 if unknown.
    pub column: usize,
    /// The path of the bad key, like `actions[1].send.to` (empty at the top level).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl YamlError {
    /// An error about a key found after parsing (a semantic check), at a known place.
    pub fn at(file: &str, line: usize, column: usize, path: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line,
            column,
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// Turns serde_path_to_error's `a.b[1].c` into our notation (it already is), dropping the `.`
/// placeholder it uses for the root.
fn path_text(p: &serde_path_to_error::Path) -> String {
    let s = p.to_string();
    if s == "." { String::new() } else { s }
}

/// The first line of a serde-saphyr message, without its `error: line L column C:` prefix.
fn message_text(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let first = full.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // "line 6 column 5: unknown field ..." -> "unknown field ..."
    match first.split_once(": ") {
        Some((head, rest)) if head.starts_with("line ") => rest.to_owned(),
        _ => first.to_owned(),
    }
}

/// Parses `text` (read from `file`) as a `T`.
pub fn load<T: DeserializeOwned>(text: &str, file: &str) -> Result<T, YamlError> {
    let path: RefCell<Option<String>> = RefCell::new(None);
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            *path.borrow_mut() = Some(path_text(e.path()));
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line() as usize, l.column() as usize))
            .unwrap_or((0, 0));
        YamlError {
            file: file.to_owned(),
            line,
            column,
            path: path.take().unwrap_or_default(),
            message: message_text(&e),
        }
    })
}

/// Where a key path sits in the text: the line and column of the last key of `path` (like
/// `actions[1].send.to`) that the document holds, for errors found after parsing such as
/// "unknown contact". The document is walked along the path, in block and flow style alike;
/// `(0, 0)` if not even the first key is found.
pub fn locate(text: &str, path: &str) -> (usize, usize) {
    let Ok(mut node) = serde_saphyr::from_str::<Shape>(text) else {
        return (0, 0);
    };
    let mut at = (0, 0);
    for segment in segments(path) {
        let found = match (segment, node) {
            (Segment::Key(k), Shape::Map(entries)) => entries
                .into_iter()
                .find(|(name, _, _)| name == k)
                .map(|(_, l, n)| (l, n)),
            (Segment::Index(i), Shape::Seq(items)) => items.into_iter().nth(i),
            _ => None,
        };
        let Some((location, child)) = found else { break };
        at = (location.line() as usize, location.column() as usize);
        node = child;
    }
    at
}

/// One step of a key path.
#[derive(Debug, PartialEq, Eq)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `actions[1].send.to` -> `actions`, `1`, `send`, `to`.
fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
            out.push(Segment::Key(key));
        }
        for index in pieces {
            match index.trim_end_matches(']').parse() {
                Ok(i) => out.push(Segment::Index(i)),
                Err(_) => return out,
            }
        }
    }
    out
}

/// A YAML document reduced to where its keys and items are.
enum Shape {
    Map(Vec<(String, serde_saphyr::Location, Shape)>),
    Seq(Vec<(serde_saphyr::Location, Shape)>),
    Leaf,
}

impl<'de> serde::Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ShapeVisitor)
    }
}

struct ShapeVisitor;

impl<'de> serde::de::Visitor<'de> for ShapeVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<serde_saphyr::Spanned<String>>()? {
            let value: Shape = map.next_value()?;
            entries.push((key.value, key.referenced, value));
        }
        Ok(Shape::Map(entries))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<serde_saphyr::Spanned<Shape>>()? {
            items.push((item.referenced, item.value));
        }
        Ok(Shape::Seq(items))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Leaf)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Leaf)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Leaf)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Leaf)
    }
    fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::Leaf)
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<Shape, E> {
        Ok(Shape::Leaf)
    }
    fn visit_unit<E>(self) -> Result<Shape, E> {
        Ok(Shape::Leaf)
    }
    fn visit_none<E>(self) -> Result<Shape, E> {
        Ok(Shape::Leaf)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Shape, D::Error> {
        d.deserialize_any(ShapeVisitor)
    }
}

/// Parses a duration: `250ms`, `90s`, `15m`, `24h`, `14d` (a bare number is seconds).
pub fn duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {text:?} (examples: 90s, 15m, 24h, 14d)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        "ms" => return Ok(std::time::Duration::from_millis(n)),
        _ => return Err(format!("invalid duration unit in {text:?} (use ms, s, m, h or d)")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// Parses a size in bytes: `512`, `64KiB`, `16MiB`, `1GiB` (or KB, MB, GB: powers of 1000).
pub fn size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {text:?} (examples: 512, 64KiB, 16MiB, 1GiB)"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => {
            return Err(format!(
                "invalid size unit in {text:?} (use B, KiB, MiB, GiB, KB, MB or GB)"
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::size("512"), Ok(512));
        assert_eq!(super::size("64KiB"), Ok(65_536));
        assert_eq!(super::size("1 GiB"), Ok(1 << 30));
        assert_eq!(super::size("2MB"), Ok(2_000_000));
        assert!(super::size("12 parsecs").is_err());
        assert!(super::size("MiB").is_err());
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(duration("14d").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(duration("soon").is_err());
        assert!(duration("3w").is_err());
    }

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Action {
        to: String,
        n: Option<u32>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        actions: Vec<Action>,
    }

    #[test]
    fn errors_name_file_line_column_and_path() {
        let text = "name: x\nactions:\n  - to: bob\n  - to: carol\n    n: many\n";
        let e = load::<Doc>(text, "recipes/alert.yaml").unwrap_err();
        assert_eq!(e.to_string(), "recipes/alert.yaml:5:8: actions[1].n: invalid u32");

        let text = "name: x\nactions:\n  - to: bob\n    colour: red\n";
        let e = load::<Doc>(text, "a.yaml").unwrap_err();
        assert_eq!((e.line, e.column), (4, 5));
        assert_eq!(e.path, "actions[0].colour");
        assert!(e.message.contains("unknown field `colour`"), "{}", e.message);

        let e = load::<Doc>("name: [x\n", "b.yaml").unwrap_err();
        assert!(e.line > 0, "{e}");
        assert!(
            load::<Doc>("name: x\n", "c.yaml")
                .unwrap_err()
                .message
                .contains("actions")
        );
    }

    #[test]
    fn locate_finds_keys() {
        let text = "name: x\nactions:\n  - send:\n      to: bob\n";
        assert_eq!(locate(text, "actions[0].send.to"), (4, 7));
    }

    #[test]
    fn locate_follows_the_path_in_block_and_flow_style() {
        let text =
            "actions:\n  - send: { to: alice, text: hi }\n  - log: x\n  - send:\n      text: yo\n      to: bob\n";
        assert_eq!(locate(text, "actions[0].send.to"), (2, 13), "flow mapping");
        assert_eq!(
            locate(text, "actions[2].send.to"),
            (6, 7),
            "not the first `to:` of the file"
        );
        assert_eq!(locate(text, "actions[1]"), (3, 5));
        assert_eq!(locate(text, "actions[2].send.colour"), (4, 5), "deepest key found");
        assert_eq!(locate(text, "actions[9].send"), (1, 1));
        assert_eq!(locate(text, "triggers"), (0, 0));
        assert_eq!(locate("name: [unclosed\n", "name"), (0, 0));
    }

    #[test]
    fn paths_split_into_keys_and_indexes() {
        use Segment::{Index, Key};
        assert_eq!(
            segments("actions[1].send.to"),
            vec![Key("actions"), Index(1), Key("send"), Key("to")]
        );
        assert_eq!(segments("m[0][2]"), vec![Key("m"), Index(0), Index(2)]);
        assert_eq!(segments(""), vec![]);
    }
}
