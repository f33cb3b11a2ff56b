//! The compose file as a tree of nodes that remember their line.
//!
//! serde_yaml_ng (the Ansible importer's parser) gives a position only with
//! an error, never for a node; the report must say `file:line` for every key
//! it leaves out, so compose files are read with saphyr, whose `MarkedYaml`
//! nodes carry spans (a YAML 1.2 parser, as compose's own Go parser reads
//! compose files: `80:80` is a string, not a base-60 number). Aliases come
//! resolved from saphyr; merge keys (`<<: *defaults`, common in compose
//! files with `x-` extension fields) are applied here, explicit keys winning.

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};

use crate::Src;
use drover_spec::SpecError;

/// A YAML node and the 1-based line it starts on.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub line: usize,
    pub v: V,
}

#[derive(Debug, Clone)]
pub(crate) enum V {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order: (key, the key's line, value).
    Map(Vec<(String, usize, Node)>),
}

impl Node {
    /// A scalar as compose reads it where a string is expected
    /// (`replicas: "2"` and `user: 1000` both work there).
    pub fn scalar(&self) -> Option<String> {
        match &self.v {
            V::Str(s) => Some(s.clone()),
            V::Int(i) => Some(i.to_string()),
            V::Float(f) => Some(f.to_string()),
            V::Bool(b) => Some(b.to_string()),
            V::Null | V::Seq(_) | V::Map(_) => None,
        }
    }

    pub fn entries(&self) -> &[(String, usize, Node)] {
        match &self.v {
            V::Map(m) => m,
            _ => &[],
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries().iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v)
    }

    /// A mutable walk over every string scalar (for interpolation).
    pub fn strings_mut(
        &mut self,
        f: &mut dyn FnMut(&mut String, usize) -> Result<(), SpecError>,
    ) -> Result<(), SpecError> {
        let line = self.line;
        match &mut self.v {
            V::Str(s) => f(s, line),
            V::Seq(items) => items.iter_mut().try_for_each(|n| n.strings_mut(f)),
            V::Map(m) => m.iter_mut().try_for_each(|(_, _, n)| n.strings_mut(f)),
            _ => Ok(()),
        }
    }
}

pub(crate) fn parse(src: &Src<'_>) -> Result<Node, SpecError> {
    let docs = MarkedYamlOwned::load_from_str(src.text).map_err(|e| {
        src.err_line(
            e.marker().line(),
            format!("not valid YAML: {}", e.info()),
            "fix the YAML at the marked line (indentation, a missing `:` or quote)",
        )
    })?;
    match docs.into_iter().next() {
        None => Ok(Node { line: 1, v: V::Null }),
        Some(d) => convert(src, d),
    }
}

fn convert(src: &Src<'_>, n: MarkedYamlOwned) -> Result<Node, SpecError> {
    let line = n.span.start.line().max(1);
    let v = match n.data {
        YamlDataOwned::Value(s) => scalar(s),
        YamlDataOwned::Representation(s, _, _) => V::Str(s),
        YamlDataOwned::Tagged(_, inner) => return convert(src, *inner),
        YamlDataOwned::Sequence(items) => V::Seq(items.into_iter().map(|i| convert(src, i)).collect::<Result<_, _>>()?),
        YamlDataOwned::Mapping(m) => {
            let mut own: Vec<(String, usize, Node)> = Vec::new();
            let mut merged: Vec<(String, usize, Node)> = Vec::new();
            for (k, v) in m {
                let kline = k.span.start.line().max(1);
                let key = convert(src, k)?.scalar().ok_or_else(|| {
                    src.err_line(kline, "a mapping key must be a plain value", "write the key as a name")
                })?;
                let value = convert(src, v)?;
                if key == "<<" {
                    let maps = match value.v {
                        V::Seq(items) => items,
                        _ => vec![value],
                    };
                    for m in maps {
                        let V::Map(entries) = m.v else {
                            return Err(src.err_line(
                                kline,
                                "`<<` merges a mapping (or a list of them)",
                                "write `<<: *anchor` naming a mapping",
                            ));
                        };
                        for e in entries {
                            if !merged.iter().any(|(k, _, _)| *k == e.0) {
                                merged.push(e);
                            }
                        }
                    }
                } else {
                    own.push((key, kline, value));
                }
            }
            for e in merged {
                if !own.iter().any(|(k, _, _)| *k == e.0) {
                    own.push(e);
                }
            }
            V::Map(own)
        }
        YamlDataOwned::Alias(_) | YamlDataOwned::BadValue => {
            return Err(src.err_line(
                line,
                "a value YAML cannot read (an unknown alias?)",
                "define the anchor before using it",
            ))
        }
    };
    Ok(Node { line, v })
}

fn scalar(s: ScalarOwned) -> V {
    match s {
        ScalarOwned::Null => V::Null,
        ScalarOwned::Boolean(b) => V::Bool(b),
        ScalarOwned::Integer(i) => V::Int(i),
        ScalarOwned::FloatingPoint(f) => V::Float(f.into_inner()),
        ScalarOwned::String(s) => V::Str(s),
    }
}
