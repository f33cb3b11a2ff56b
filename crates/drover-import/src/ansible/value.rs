//! Values: INI text and YAML nodes → TOML values.
//!
//! INI values are read as Ansible does (Python `ast.literal_eval`, else the
//! text): `80` is a number, `'a b'` a string, `[1, 2]` a list. One deliberate
//! difference: lowercase `true`/`false` become booleans (Ansible keeps them
//! as strings, which every template then has to pass through `| bool`).
//! TOML has no null, so a null (`None`, `~`) cannot be carried over; nor can
//! an Ansible Vault value, which drover cannot decrypt.

use serde_yaml_ng::Value as Yaml;

pub type Converted = Result<toml::Value, String>;

const NULL: &str = "null has no TOML equivalent; give it a value or leave it out";

/// An INI value (from a host line after shell-style unquoting, or the right
/// side of a `[group:vars]` line).
pub fn ini(text: &str) -> Converted {
    let t = text.trim();
    match t {
        "True" | "true" => return Ok(toml::Value::Boolean(true)),
        "False" | "false" => return Ok(toml::Value::Boolean(false)),
        "None" => return Err(NULL.into()),
        _ => {}
    }
    if let Some(i) = int(t) {
        return Ok(toml::Value::Integer(i));
    }
    if is_float(t) {
        if let Ok(f) = t.parse::<f64>() {
            return Ok(toml::Value::Float(f));
        }
    }
    for q in ['"', '\''] {
        if t.len() >= 2 && t.starts_with(q) && t.ends_with(q) {
            return Ok(toml::Value::String(t[1..t.len() - 1].to_string()));
        }
    }
    if t.starts_with('[') || t.starts_with('{') {
        // Python list/dict literals are (nearly always) YAML flow syntax.
        if let Ok(y) = serde_yaml_ng::from_str::<Yaml>(t) {
            if matches!(y, Yaml::Sequence(_) | Yaml::Mapping(_)) {
                return yaml(&y);
            }
        }
    }
    Ok(toml::Value::String(t.to_string()))
}

/// Python's int literal: no leading zeros (`010` is a syntax error there, so
/// stays text — zip codes and octal modes survive).
fn int(t: &str) -> Option<i64> {
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits.len() == 1 || !digits.starts_with('0'));
    ok.then(|| t.parse().ok()).flatten()
}

fn is_float(t: &str) -> bool {
    let d = t.strip_prefix(['-', '+']).unwrap_or(t);
    d.bytes().any(|b| b.is_ascii_digit())
        && (d.contains('.') || d.contains(['e', 'E']))
        && d.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
}

/// A YAML node.
pub fn yaml(v: &Yaml) -> Converted {
    Ok(match v {
        Yaml::Null => return Err(NULL.into()),
        Yaml::Bool(b) => toml::Value::Boolean(*b),
        Yaml::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Yaml::String(s) => toml::Value::String(s.clone()),
        Yaml::Sequence(items) => toml::Value::Array(items.iter().map(yaml).collect::<Result<_, _>>()?),
        Yaml::Mapping(m) => {
            let mut t = toml::Table::new();
            for (k, v) in m {
                t.insert(key(k)?, yaml(v)?);
            }
            toml::Value::Table(t)
        }
        Yaml::Tagged(t) if t.tag == "vault" => {
            return Err("encrypted with Ansible Vault, which drover cannot decrypt; put the value in by hand".into())
        }
        // `!unsafe` (do not template) and other tags: the value itself.
        Yaml::Tagged(t) => return yaml(&t.value),
    })
}

/// A mapping key as text (YAML allows numbers and booleans as keys).
pub fn key(k: &Yaml) -> Result<String, String> {
    match k {
        Yaml::String(s) => Ok(s.clone()),
        Yaml::Number(n) => Ok(n.to_string()),
        Yaml::Bool(b) => Ok(b.to_string()),
        other => Err(format!("a key must be text, found {other:?}")),
    }
}

/// Does the value (anywhere inside) hold a Jinja expression Ansible would
/// evaluate? drover keeps it as literal text.
pub fn templated(v: &toml::Value) -> bool {
    match v {
        toml::Value::String(s) => s.contains("{{") || s.contains("{%"),
        toml::Value::Array(a) => a.iter().any(templated),
        toml::Value::Table(t) => t.values().any(templated),
        _ => false,
    }
}

/// Split a host line as Python's `shlex.split(line, comments=True)` does:
/// whitespace separates, quotes group (and are removed), a backslash escapes,
/// `#` at the start of a word comments out the rest.
pub fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => cur.push(ch),
                        None => return Err("a single quote is not closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => cur.push(e),
                            Some(e) => {
                                cur.push('\\');
                                cur.push(e);
                            }
                            None => return Err("a double quote is not closed".into()),
                        },
                        Some(ch) => cur.push(ch),
                        None => return Err("a double quote is not closed".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(e) = chars.next() {
                    cur.push(e);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_values_are_typed_like_python_literals() {
        use toml::Value::*;
        assert_eq!(ini("80"), Ok(Integer(80)));
        assert_eq!(ini("-3"), Ok(Integer(-3)));
        assert_eq!(ini("0644"), Ok(String("0644".into())));
        assert_eq!(ini("1.5"), Ok(Float(1.5)));
        assert_eq!(ini("True"), Ok(Boolean(true)));
        assert_eq!(ini("false"), Ok(Boolean(false)));
        assert_eq!(ini("'quoted 80'"), Ok(String("quoted 80".into())));
        assert_eq!(ini("inf"), Ok(String("inf".into())));
        assert_eq!(ini("['a', 2]"), Ok(Array(vec![String("a".into()), Integer(2)])));
        assert!(ini("None").unwrap_err().contains("null"));
        assert_eq!(ini("hello world"), Ok(String("hello world".into())));
    }

    #[test]
    fn host_lines_split_like_shlex() {
        assert_eq!(
            shell_words(r#"web1 a=1 motd="hi there" b='x y' c=d\ e # comment"#).unwrap(),
            ["web1", "a=1", "motd=hi there", "b=x y", "c=d e"]
        );
        assert!(shell_words("web1 a=\"open").is_err());
    }
}
