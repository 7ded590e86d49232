//! `string.find`, `string.match`, `string.gmatch` and `string.gsub` over [`crate::patterns`],
//! so that pattern matching is charged to the call's budget like any Lua code. They replace the
//! C versions in the sandbox's `string` table (and so in string methods: `s:find(p)`).

use parking_lot::Mutex;
use std::sync::Arc;

use mlua::{Function, Lua, LuaString, MultiValue, Table, Value};

use crate::budget::{Budget, Matching};
use crate::patterns::{Capture, Found, Pattern, PatternError, find_plain, is_plain, start_offset};

fn pattern_err(e: PatternError) -> mlua::Error {
    match e {
        PatternError::Malformed(m) => mlua::Error::RuntimeError(m),
        PatternError::Budget => mlua::Error::RuntimeError(crate::budget::EXHAUSTED.into()),
    }
}

fn capture_value(lua: &Lua, src: &[u8], c: &Capture) -> mlua::Result<Value> {
    Ok(match c {
        Capture::Span(s, e) => Value::String(lua.create_string(&src[*s..*e])?),
        Capture::Position(p) => Value::Integer(*p as i64),
    })
}

fn captures(lua: &Lua, src: &[u8], f: &Found) -> mlua::Result<Vec<Value>> {
    f.captures()
        .map_err(pattern_err)?
        .iter()
        .map(|c| capture_value(lua, src, c))
        .collect()
}

fn truthy(v: &Option<Value>) -> bool {
    !matches!(v, None | Some(Value::Nil) | Some(Value::Boolean(false)))
}

fn find(
    lua: &Lua,
    budget: &Budget,
    args: (LuaString, LuaString, Option<i64>, Option<Value>),
    whole: bool,
) -> mlua::Result<MultiValue> {
    let (s, p, init, plain) = args;
    let (src, pat) = (s.as_bytes(), p.as_bytes());
    let Some(start) = start_offset(init.unwrap_or(1), src.len()) else {
        return Ok(MultiValue::from_vec(vec![Value::Nil]));
    };
    budget.charge(1 + src.len() as i64 / 64)?;
    if whole && (truthy(&plain) || is_plain(&pat)) {
        return Ok(MultiValue::from_vec(match find_plain(&src, &pat, start) {
            Some(i) => vec![Value::Integer(i as i64 + 1), Value::Integer((i + pat.len()) as i64)],
            None => vec![Value::Nil],
        }));
    }
    let found = Pattern::anchorable(&pat)
        .find(&src, start, &mut Matching(budget))
        .map_err(pattern_err)?;
    let Some(f) = found else {
        return Ok(MultiValue::from_vec(vec![Value::Nil]));
    };
    let mut out = Vec::new();
    if whole {
        out.push(Value::Integer(f.start as i64 + 1));
        out.push(Value::Integer(f.end as i64));
        if f.explicit() {
            out.extend(captures(lua, &src, &f)?);
        }
    } else {
        out.extend(captures(lua, &src, &f)?);
    }
    Ok(MultiValue::from_vec(out))
}

struct Gmatch {
    src: Vec<u8>,
    pat: Vec<u8>,
    at: usize,
    last: Option<usize>,
}

fn gmatch(
    lua: &Lua,
    budget: &Arc<Budget>,
    (s, p, init): (LuaString, LuaString, Option<i64>),
) -> mlua::Result<Function> {
    let src = s.as_bytes().to_vec();
    let at = start_offset(init.unwrap_or(1), src.len()).unwrap_or(src.len() + 1);
    let state = Mutex::new(Gmatch {
        src,
        pat: p.as_bytes().to_vec(),
        at,
        last: None,
    });
    let budget = budget.clone();
    lua.create_function(move |lua, ()| {
        let mut g = state.lock();
        let g = &mut *g;
        while g.at <= g.src.len() {
            let found = Pattern::unanchored(&g.pat)
                .match_at(&g.src, g.at, &mut Matching(&budget))
                .map_err(pattern_err)?;
            match found {
                Some(f) if Some(f.end) != g.last => {
                    g.at = f.end;
                    g.last = Some(f.end);
                    return Ok(MultiValue::from_vec(captures(lua, &g.src, &f)?));
                }
                _ => g.at += 1,
            }
        }
        Ok(MultiValue::new())
    })
}

/// What `gsub` puts in place of a match.
fn replacement(lua: &Lua, src: &[u8], f: &Found, repl: &Value) -> mlua::Result<Option<Vec<u8>>> {
    let value = match repl {
        Value::String(t) => return template(lua, src, f, &t.as_bytes()).map(Some),
        Value::Integer(_) | Value::Number(_) => {
            let t = lua
                .coerce_string(repl.clone())?
                .map(|s| s.as_bytes().to_vec())
                .unwrap_or_default();
            return template(lua, src, f, &t).map(Some);
        }
        Value::Table(t) => {
            let key = capture_value(lua, src, &f.capture(0).map_err(pattern_err)?)?;
            t.get::<Value>(key)?
        }
        Value::Function(func) => func.call::<Value>(MultiValue::from_vec(captures(lua, src, f)?))?,
        _ => unreachable_repl()?,
    };
    match value {
        Value::Nil | Value::Boolean(false) => Ok(None),
        v @ (Value::String(_) | Value::Integer(_) | Value::Number(_)) => {
            Ok(lua.coerce_string(v)?.map(|s| s.as_bytes().to_vec()))
        }
        other => Err(mlua::Error::RuntimeError(format!(
            "invalid replacement value (a {})",
            other.type_name()
        ))),
    }
}

fn unreachable_repl() -> mlua::Result<Value> {
    Err(mlua::Error::RuntimeError(
        "bad argument #3 to 'gsub' (string/function/table expected)".into(),
    ))
}

/// A replacement string: `%0` the match, `%1`…`%9` the captures, `%%` a percent sign.
fn template(lua: &Lua, src: &[u8], f: &Found, t: &[u8]) -> mlua::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(t.len());
    let mut i = 0;
    while i < t.len() {
        let c = t[i];
        i += 1;
        if c != b'%' {
            out.push(c);
            continue;
        }
        let Some(&d) = t.get(i) else {
            return Err(mlua::Error::RuntimeError(
                "invalid use of '%' in replacement string".into(),
            ));
        };
        i += 1;
        match d {
            b'%' => out.push(b'%'),
            b'0' => out.extend_from_slice(&src[f.start..f.end]),
            b'1'..=b'9' => match f.capture(usize::from(d - b'1')).map_err(pattern_err)? {
                Capture::Span(s, e) => out.extend_from_slice(&src[s..e]),
                Capture::Position(p) => out.extend_from_slice(p.to_string().as_bytes()),
            },
            _ => {
                return Err(mlua::Error::RuntimeError(
                    "invalid use of '%' in replacement string".into(),
                ));
            }
        }
    }
    let _ = lua;
    Ok(out)
}

fn gsub(
    lua: &Lua,
    budget: &Budget,
    max_bytes: usize,
    (s, p, repl, n): (LuaString, LuaString, Value, Option<i64>),
) -> mlua::Result<(LuaString, i64)> {
    if !matches!(
        repl,
        Value::String(_) | Value::Integer(_) | Value::Number(_) | Value::Table(_) | Value::Function(_)
    ) {
        unreachable_repl()?;
    }
    let (src, pat) = (s.as_bytes().to_vec(), p.as_bytes().to_vec());
    let max = n.unwrap_or(src.len() as i64 + 1);
    let pattern = Pattern::anchorable(&pat);
    let mut out: Vec<u8> = Vec::new();
    let (mut at, mut last, mut count) = (0usize, None, 0i64);
    while count < max {
        let found = pattern.match_at(&src, at, &mut Matching(budget)).map_err(pattern_err)?;
        match found {
            Some(f) if Some(f.end) != last => {
                count += 1;
                match replacement(lua, &src, &f, &repl)? {
                    Some(r) => out.extend_from_slice(&r),
                    None => out.extend_from_slice(&src[f.start..f.end]),
                }
                at = f.end;
                last = Some(f.end);
            }
            _ if at < src.len() => {
                out.push(src[at]);
                at += 1;
            }
            _ => break,
        }
        if out.len() > max_bytes {
            return Err(mlua::Error::MemoryError("not enough memory".into()));
        }
        budget.charge(1)?;
        if pattern.anchored() {
            break;
        }
    }
    if count == 0 {
        return Ok((s, 0));
    }
    out.extend_from_slice(&src[at.min(src.len())..]);
    Ok((lua.create_string(&out)?, count))
}

/// Replaces the pattern functions of the `string` table.
pub fn install(lua: &Lua, budget: &Arc<Budget>, max_bytes: usize) -> mlua::Result<()> {
    let string: Table = lua.globals().get("string")?;
    let b = budget.clone();
    string.set("find", lua.create_function(move |lua, args| find(lua, &b, args, true))?)?;
    let b = budget.clone();
    string.set(
        "match",
        lua.create_function(move |lua, (s, p, init): (LuaString, LuaString, Option<i64>)| {
            find(lua, &b, (s, p, init, None), false)
        })?,
    )?;
    let b = budget.clone();
    string.set("gmatch", lua.create_function(move |lua, args| gmatch(lua, &b, args))?)?;
    let b = budget.clone();
    string.set(
        "gsub",
        lua.create_function(move |lua, args| gsub(lua, &b, max_bytes, args))?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    /// Calls a string function in `lua` and renders what it returned (or that it failed).
    fn run(lua: &Lua, call: &str, s: &str, p: &str, extra: &str) -> String {
        let code = format!(
            "local ok, a, b, c, d, e = pcall(function(s, p) return {call}(s, p{extra}) end, ...) \
             if not ok then return 'error' end \
             local out = {{}} for _, v in ipairs({{tostring(a), tostring(b), tostring(c), tostring(d), tostring(e)}}) do out[#out+1] = v end \
             return table.concat(out, '|')"
        );
        lua.load(&code).call::<String>((s, p)).unwrap()
    }

    fn gmatch_all(lua: &Lua, s: &str, p: &str) -> String {
        let code = "local ok, r = pcall(function(s, p) local t = {} for a, b in string.gmatch(s, p) do \
                    t[#t+1] = tostring(a) .. ',' .. tostring(b) if #t > 50 then break end end return table.concat(t, ';') end, ...) \
                    return ok and r or 'error'";
        lua.load(code).call::<String>((s, p)).unwrap()
    }

    fn ours() -> Lua {
        let lua = Lua::new();
        let budget = Arc::new(Budget::new(u64::MAX / 2, std::time::Duration::from_secs(3600)));
        install(&lua, &budget, 64 << 20).unwrap();
        lua
    }

    fn pattern() -> impl Strategy<Value = String> {
        let atoms = prop::sample::select(vec![
            "a", "b", ".", "%a", "%d", "%s", "%A", "[ab]", "[^a]", "[a-c]", "%%", "(", ")", "()", "%1", "%bab",
            "%f[a]", "*", "+", "-", "?", "^", "$", "[]]", "%]", "x", "%b()", "%2", "%w", "%p", "[%a]", "[a-]", "[-a]",
            "((", "))", "%f[%s]", "[^%d]", "%z", "[", "%",
        ]);
        prop::collection::vec(atoms, 0..7).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn find_match_gsub_and_gmatch_agree_with_lua(s in "[ab1 ()x%^$-]{0,12}", p in pattern(), init in -14i64..14) {
            let (reference, ours) = (Lua::new(), ours());
            for (call, extra) in [
                ("string.find", format!(", {init}")),
                ("string.find", format!(", {init}, true")),
                ("string.match", format!(", {init}")),
                ("string.gsub", ", '<%0>'".to_owned()),
                ("string.gsub", ", '%1'".to_owned()),
                ("string.gsub", ", function(x) return x == 'a' and 'A' or nil end, 3".to_owned()),
                ("string.gsub", ", {a = 'Z', b = false}".to_owned()),
            ] {
                prop_assert_eq!(run(&reference, call, &s, &p, &extra), run(&ours, call, &s, &p, &extra), "{}({:?}, {:?}{})", call, s, p, extra);
            }
            prop_assert_eq!(gmatch_all(&reference, &s, &p), gmatch_all(&ours, &s, &p), "gmatch({:?}, {:?})", s, p);
        }
    }

    #[test]
    fn numbers_are_taken_as_strings_and_methods_use_the_new_functions() {
        let lua = ours();
        let r: (i64, i64) = lua.load("return string.find(12345, 34)").eval().unwrap();
        assert_eq!(r, (3, 4));
        let r: String = lua
            .load("return (('key=value'):gsub('(%w+)=(%w+)', '%2=%1'))")
            .eval()
            .unwrap();
        assert_eq!(r, "value=key");
    }
}
