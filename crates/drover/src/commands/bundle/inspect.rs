//! `drover bundle inspect`: what a bundle holds, without checking its
//! signature and without decrypting anything (secret entries are listed by
//! host, path and secret names; their content is sealed to the host).

use std::path::Path;

use drover_bundle::Bundle;
use drover_proto::Hash;

/// Every sealed (secret) entry, with its host: what `inspect` shows without
/// decrypting anything.
fn secret_rows(i: &drover_bundle::Index) -> Vec<(&str, &drover_bundle::SealedEntry)> {
    i.hosts.iter().flat_map(|h| h.sealed.iter().map(move |s| (h.name.as_str(), s))).collect()
}

pub fn inspect(path: &Path, json: bool) -> anyhow::Result<()> {
    let b = Bundle::open(path)?;
    let i = &b.index;
    let sealed_blobs: std::collections::HashSet<Hash> = secret_rows(i).iter().map(|(_, s)| s.cipher).collect();
    if json {
        let v = serde_json::json!({
            "project": i.project,
            "revision": i.revision,
            "created_ms": i.created_ms,
            "signed": b.index_signature().is_some(),
            "base": i.base.as_ref().map(|b| serde_json::json!({"revision": b.revision, "index": b.index.to_hex()})),
            "agents": i.agents.iter().map(|a| serde_json::json!({
                "arch": a.arch, "hash": a.hash.to_hex(), "version": a.version,
            })).collect::<Vec<_>>(),
            "hosts": i.hosts.iter().map(|h| serde_json::json!({
                "name": h.name, "address": h.address, "generation": h.generation, "facts": h.facts,
                "files": h.manifest.entries.len(), "services": h.manifest.services.iter().map(|s| &s.name).collect::<Vec<_>>(),
                "sealed_to": h.recipient.as_deref().map(drover_bundle::seal::fingerprint),
            })).collect::<Vec<_>>(),
            "secrets": secret_rows(i).iter().map(|(host, s)| serde_json::json!({
                "host": host, "path": s.path, "names": s.names, "blob": s.cipher.to_hex(),
            })).collect::<Vec<_>>(),
            "blobs": i.blobs.iter().map(|e| serde_json::json!({
                "hash": e.hash.to_hex(), "size": e.size, "packed": e.packed_len(), "sealed": sealed_blobs.contains(&e.hash),
            })).collect::<Vec<_>>(),
            "external": i.external.iter().map(Hash::to_hex).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{}: project {} revision {}", path.display(), i.project, i.revision);
    println!("  signed index: {}", if b.index_signature().is_some() { "yes" } else { "no" });
    if let Some(base) = &i.base {
        println!("  incremental on revision {} (index {})", base.revision, base.index.short());
    }
    println!("  agents for {}", i.agent_machines());
    for h in &i.hosts {
        println!(
            "  host {:<12} {:<16} {} files, {} services, generation {}, facts {}",
            h.name,
            h.address,
            h.manifest.entries.len(),
            h.manifest.services.len(),
            h.generation,
            h.facts
        );
    }
    let rows = secret_rows(i);
    if !rows.is_empty() {
        println!("  secret files (sealed to their host's SSH key; not decrypted here):");
        for (host, s) in rows {
            println!("    {host:<12} {}  ({})", s.path, s.names.join(", "));
        }
    }
    for h in i.hosts.iter().filter(|h| h.recipient.is_some()) {
        let key = h.recipient.as_deref().map(drover_bundle::seal::fingerprint).unwrap_or_default();
        println!("  host {} secrets sealed to {key}", h.name);
    }
    let raw: u64 = i.blobs.iter().map(|e| e.size).sum();
    let packed: u64 = i.blobs.iter().map(|e| e.packed_len()).sum();
    println!(
        "  {} blobs, {} ({} compressed); {} more in the base",
        i.blobs.len(),
        crate::human::bytes(raw),
        crate::human::bytes(packed),
        i.external.len()
    );
    Ok(())
}
