//! The generated `inventory.toml`: drover's own schema (`drover-spec`'s
//! `InventoryFile`), hosts and group vars sorted by name, so that importing
//! the same file twice gives the same bytes.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Imported;

#[derive(Serialize)]
struct Doc<'a> {
    hosts: BTreeMap<&'a str, HostOut<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    groups: BTreeMap<&'a str, GroupOut<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct HostOut<'a> {
    address: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proxy_jump: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    groups: &'a [String],
    #[serde(skip_serializing_if = "toml::Table::is_empty")]
    vars: &'a toml::Table,
}

#[derive(Serialize)]
struct GroupOut<'a> {
    vars: &'a toml::Table,
}

pub fn inventory_toml(imp: &Imported) -> String {
    let doc = Doc {
        hosts: imp
            .hosts
            .iter()
            .map(|h| {
                let out = HostOut {
                    address: &h.address,
                    port: h.port,
                    user: h.user.as_deref(),
                    key: h.key.as_deref(),
                    password: h.password.as_deref(),
                    proxy_jump: h.proxy_jump.as_deref(),
                    groups: &h.groups,
                    vars: &h.vars,
                };
                (h.name.as_str(), out)
            })
            .collect(),
        groups: imp.group_vars.iter().map(|(g, vars)| (g.as_str(), GroupOut { vars })).collect(),
    };
    let body = toml::to_string(&doc).expect("an inventory of strings, numbers and tables is valid TOML");
    let unmapped = imp.unmapped().count();
    let mut head = format!(
        "# Imported from {} by `drover inventory import ansible`.\n\
         # Groups are listed in Ansible's precedence order (drover merges group vars in that order).\n\
         # Add `roles = [...]` to hosts (or to [defaults]) to give them something to run.\n",
        imp.source
    );
    if unmapped > 0 {
        head.push_str(&format!(
            "# {unmapped} Ansible setting(s) were not imported; the import listed them on stderr.\n"
        ));
    }
    let nl = if body.ends_with('\n') { "" } else { "\n" };
    format!("{head}\n{body}{nl}")
}
