//! Compose's variable interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`, `${VAR:+other}`,
//! `${VAR+other}` and `$$` for a literal `$`, in every value (never in keys),
//! from the environment and the `.env` file beside the compose file (the
//! environment wins, as in compose). Defaults may hold further variables.

use std::collections::BTreeMap;

/// Variables for interpolation, by name.
pub type Env = BTreeMap<String, String>;

/// What interpolating one value found.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Variables used with no value and no default (compose substitutes "").
    pub unset: Vec<String>,
}

/// `s` with its variables substituted; `Err(message)` for `${VAR:?message}`
/// of an unset variable or a malformed `${`.
pub(crate) fn interpolate(s: &str, env: &Env, out: &mut Outcome) -> Result<String, String> {
    let mut res = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        res.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            res.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = closing(body).ok_or_else(|| format!("`${{` without its closing `}}` in {s:?}"))?;
            res.push_str(&expand(&body[..end], env, out)?);
            rest = &body[end + 1..];
        } else {
            let n = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            if n == 0 {
                res.push('$');
            } else {
                res.push_str(&lookup(&after[..n], env, out));
            }
            rest = &after[n..];
        }
    }
    res.push_str(rest);
    Ok(res)
}

/// The index of the `}` closing a `${`, counting nested `${…}` in defaults.
fn closing(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let b = body.as_bytes();
    for (i, c) in b.iter().enumerate() {
        match c {
            b'{' if i > 0 && b[i - 1] == b'$' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn lookup(name: &str, env: &Env, out: &mut Outcome) -> String {
    match env.get(name) {
        Some(v) => v.clone(),
        None => {
            if !out.unset.iter().any(|u| u == name) {
                out.unset.push(name.to_string());
            }
            String::new()
        }
    }
}

fn expand(body: &str, env: &Env, out: &mut Outcome) -> Result<String, String> {
    let n = body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(body.len());
    let (name, op) = body.split_at(n);
    if name.is_empty() {
        return Err(format!("`${{{body}}}` names no variable"));
    }
    let val = env.get(name);
    let set_nonempty = val.is_some_and(|v| !v.is_empty());
    let ops = [":-", "-", ":?", "?", ":+", "+"];
    let Some(o) = ops.iter().find(|o| op.starts_with(**o)) else {
        if op.is_empty() {
            return Ok(lookup(name, env, out));
        }
        return Err(format!("`${{{body}}}`: unknown operator {op:?} (use :- - :? ? :+ +)"));
    };
    let arg = &op[o.len()..];
    let present = if o.starts_with(':') { set_nonempty } else { val.is_some() };
    match o.trim_start_matches(':') {
        "-" if present => Ok(val.cloned().unwrap_or_default()),
        "-" => interpolate(arg, env, out),
        "?" if present => Ok(val.cloned().unwrap_or_default()),
        "?" => Err(format!("{name} is required: {}", interpolate(arg, env, out)?)),
        _ if present => interpolate(arg, env, out),
        _ => Ok(String::new()),
    }
}

/// A `.env` (or `env_file`) file: `KEY=VALUE` lines, `#` comments, an
/// optional `export `, values in single (literal) or double quotes, or bare
/// (a ` #` starts a comment). `KEY` alone (no `=`) is returned with `None`.
pub(crate) fn parse_env_file(text: &str) -> Vec<(String, Option<String>, usize)> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let t = t.strip_prefix("export ").unwrap_or(t).trim_start();
        let Some((k, v)) = t.split_once('=') else {
            out.push((t.to_string(), None, i + 1));
            continue;
        };
        let v = v.trim();
        let v = if let Some(q) = v.strip_prefix('\'').and_then(|r| r.rfind('\'').map(|e| &r[..e])) {
            q.to_string()
        } else if let Some(q) = v.strip_prefix('"').and_then(|r| r.rfind('"').map(|e| &r[..e])) {
            q.replace("\\n", "\n").replace("\\\"", "\"").replace("\\\\", "\\")
        } else {
            v.split(" #").next().unwrap_or("").trim_end().to_string()
        };
        out.push((k.trim().to_string(), Some(v), i + 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        [("A", "1"), ("E", "")].into_iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn every_form_compose_documents_substitutes_as_compose_does() {
        let e = env();
        let mut o = Outcome::default();
        let i = |s: &str, o: &mut Outcome| interpolate(s, &e, o).unwrap();
        assert_eq!(i("x$A ${A} $$A", &mut o), "x1 1 $A");
        assert_eq!(i("${E:-d} ${E-d} ${U:-d} ${U-d}", &mut o), "d  d d");
        assert_eq!(i("${A:+y} ${E:+y} ${E+y} ${U+y}", &mut o), "y  y ");
        assert_eq!(i("${U:-${A}x}", &mut o), "1x");
        assert_eq!(i("$U-", &mut o), "-");
        assert_eq!(o.unset, ["U"]);
        assert_eq!(interpolate("${U:?set U}", &e, &mut o).unwrap_err(), "U is required: set U");
        assert_eq!(interpolate("${E?no}", &e, &mut o).unwrap(), "");
        assert!(interpolate("${A", &e, &mut o).is_err());
    }

    #[test]
    fn env_files_read_quotes_comments_and_export() {
        let got = parse_env_file("# c\nexport A=1\nB='x y' \nC=\"q\\\"\" \nD=v # note\nE\n");
        let want: Vec<(String, Option<String>, usize)> = vec![
            ("A".into(), Some("1".into()), 2),
            ("B".into(), Some("x y".into()), 3),
            ("C".into(), Some("q\"".into()), 4),
            ("D".into(), Some("v".into()), 5),
            ("E".into(), None, 6),
        ];
        assert_eq!(got, want);
    }
}
