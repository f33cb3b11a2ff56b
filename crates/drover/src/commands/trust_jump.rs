//! `drover trust` for jump hosts: each hop's key is recorded in the
//! project's `known_hosts` under the hop's address (where the inventory
//! looks it up), hop by hop: the first hops are scanned directly, a later
//! hop through the earlier ones (logged into with the host's own login, so
//! their keys must be pinned first, which this does in order). The hosts
//! behind are then scanned through their pinned hops.

use std::collections::BTreeMap;

use drover_spec::Host;

use crate::pins::Pins;
use crate::transport::{ssh_target, Timeouts};

/// A hop and the chain before it, as a key: distinct chains are scanned once.
type Chain = Vec<(String, String, u16)>;

/// Scan and pin every hop of `hosts`, depth by depth; `lines` is
/// known_hosts, updated in place. Returns whether any hop failed; `hosts`'
/// hop keys are updated to what is now pinned.
pub(super) fn pin_hops(
    rt: &tokio::runtime::Runtime,
    hosts: &mut [Host],
    lines: &mut Vec<String>,
    replace: bool,
    pins: Option<&Pins>,
    t: Timeouts,
) -> bool {
    let mut failed = false;
    let depth = hosts.iter().map(|h| h.proxy_jump.len()).max().unwrap_or(0);
    for d in 0..depth {
        // One scan per distinct chain ending at depth d, through a host behind it.
        let mut chains: BTreeMap<Chain, Host> = BTreeMap::new();
        for h in hosts.iter().filter(|h| h.proxy_jump.len() > d) {
            let chain = h.proxy_jump[..=d].iter().map(|j| (j.user.clone(), j.address.clone(), j.port)).collect();
            chains.entry(chain).or_insert_with(|| h.clone());
        }
        for (chain, behind) in chains {
            let hop = &behind.proxy_jump[d];
            let label = format!("jump {}@{}:{}", hop.user, hop.address, hop.port);
            let mut probe = behind.clone();
            probe.address = hop.address.clone();
            probe.port = hop.port;
            probe.proxy_jump.truncate(d);
            let target = ssh_target(&probe, t);
            let key = match rt.block_on(drover_ssh::scan_host_key_through(&target)) {
                Ok(k) => k,
                Err(e) => {
                    eprintln!("{label}: {e}");
                    failed = true;
                    continue;
                }
            };
            let fp = drover_ssh::fingerprint(&key).unwrap_or_default();
            if let Some(p) = pins {
                if let Some(why) = p.refusal(&hop.address, &fp, &p.check(&hop.address, &hop.address, &fp)) {
                    eprintln!("{why}");
                    failed = true;
                    continue;
                }
            }
            let names =
                |l: &String| l.split_whitespace().next().is_some_and(|w| w.split(',').any(|x| x == hop.address));
            let known: Vec<String> =
                lines.iter().filter(|l| names(l)).map(|l| base(l.split_once(' ').map_or("", |x| x.1))).collect();
            if known.contains(&key) {
                println!("{label:<16} {fp}  already pinned");
            } else if !known.is_empty() && !replace {
                eprintln!("{label:<16} {fp}  DIFFERS from the pinned key; not changed (use --replace if the host was reinstalled)");
                failed = true;
                continue;
            } else {
                lines.retain(|l| !names(l));
                lines.push(format!("{} {key}", hop.address));
                println!("{label:<16} {fp}  pinned");
            }
            // Deeper hops and the hosts are scanned through the key just pinned.
            for h in hosts.iter_mut() {
                let same = h.proxy_jump.len() > d
                    && h.proxy_jump[..=d]
                        .iter()
                        .map(|j| (j.user.clone(), j.address.clone(), j.port))
                        .eq(chain.iter().cloned());
                if same {
                    h.proxy_jump[d].host_keys = vec![key.clone()];
                }
            }
        }
    }
    failed
}

/// `type base64`, without a comment.
fn base(k: &str) -> String {
    k.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}
