//! A plugin's configuration: the runtime hands it over as a flat JSON object whose values are
//! strings, numbers or booleans (the plugin.yaml schema's defaults already filled in).

use std::collections::BTreeMap;

/// Configuration values by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    values: BTreeMap<String, String>,
}

impl Config {
    /// Parses a flat JSON object; nested values are kept as their JSON text.
    pub fn parse(json: &str) -> Self {
        let mut values = BTreeMap::new();
        let mut p = Parser { s: json.as_bytes(), i: 0 };
        p.ws();
        if p.eat(b'{') {
            loop {
                p.ws();
                let Some(key) = p.string() else { break };
                p.ws();
                if !p.eat(b':') {
                    break;
                }
                p.ws();
                let Some(value) = p.value() else { break };
                values.insert(key, value);
                p.ws();
                if !p.eat(b',') {
                    break;
                }
            }
        }
        Self { values }
    }

    /// A value as text.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// A value as text, or a default.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// A number.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.get(key)?.parse().ok()
    }

    /// A boolean.
    pub fn flag(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn string(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut out = String::new();
        let rest = std::str::from_utf8(&self.s[self.i..]).ok()?;
        let mut chars = rest.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => {
                    self.i += at + 1;
                    return Some(out);
                }
                '\\' => match chars.next()?.1 {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'u' => {
                        let hex: String = (0..4).filter_map(|_| chars.next().map(|(_, c)| c)).collect();
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?).unwrap_or('\u{fffd}'));
                    }
                    other => out.push(other),
                },
                c => out.push(c),
            }
        }
        None
    }

    fn value(&mut self) -> Option<String> {
        match self.s.get(self.i)? {
            b'"' => self.string(),
            b'{' | b'[' => {
                let start = self.i;
                let mut depth = 0;
                let mut in_str = false;
                while self.i < self.s.len() {
                    let c = self.s[self.i];
                    match (in_str, c) {
                        (true, b'\\') => self.i += 1,
                        (true, b'"') | (false, b'"') => in_str = !in_str,
                        (false, b'{' | b'[') => depth += 1,
                        (false, b'}' | b']') => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return String::from_utf8(self.s[start..self.i].to_vec()).ok();
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
                None
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len() && !matches!(self.s[self.i], b',' | b'}' | b' ' | b'\n') {
                    self.i += 1;
                }
                String::from_utf8(self.s[start..self.i].to_vec()).ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    #[test]
    fn flat_objects() {
        let c = Config::parse(r#"{"prefix": "echo: ", "n": 3, "on": true, "list": [1, {"a": "]"}], "q": "a\"b"}"#);
        assert_eq!(c.get("prefix"), Some("echo: "));
        assert_eq!(c.number("n"), Some(3.0));
        assert_eq!(c.flag("on"), Some(true));
        assert_eq!(c.get("list"), Some(r#"[1, {"a": "]"}]"#));
        assert_eq!(c.get("q"), Some("a\"b"));
        assert_eq!(Config::parse("nonsense").get("x"), None);
    }
}
