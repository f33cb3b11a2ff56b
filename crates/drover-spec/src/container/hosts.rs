//! A container's `/etc/hosts`: every service of the project by name, at the
//! address of a host that runs it (from `fleet.services`), so a compose
//! app's `db` resolves from `web` wherever each runs. With instances on
//! several hosts a name gets the first of them in inventory order: one
//! address, the same on every host (clients needing all of them read
//! `fleet.services` in a template). Mounted read-only in place of the
//! host's own file (see [`super::bundle`]).

use crate::instances::Endpoints;

/// Where the file is on a host: one for every container of the host.
pub const HOSTS_FILE: &str = "/var/lib/drover/container-hosts";

/// The file's text. `hosts`: the inventory's host names, in order.
pub fn text(endpoints: &Endpoints, hosts: &[&str]) -> String {
    let mut t = String::from(
        "# Written by drover: the project's services, each at the first host (in inventory order) running it.\n\
         127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    for (service, instances) in endpoints {
        let rank = |h: &str| hosts.iter().position(|x| *x == h).unwrap_or(usize::MAX);
        if let Some(first) = instances.iter().min_by_key(|i| (rank(&i.host), i.index)) {
            t.push_str(&format!("{}\t{service}\n", first.address));
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Instance;

    fn inst(service: &str, host: &str, address: &str, index: u32) -> Instance {
        Instance {
            address: address.into(),
            host: host.into(),
            index,
            name: format!("{service}-{index}"),
            ports: Default::default(),
            service: service.into(),
        }
    }

    #[test]
    fn each_service_is_at_the_first_host_in_inventory_order_running_it() {
        let mut e = Endpoints::new();
        e.insert("db".into(), vec![inst("db", "h3", "10.0.0.3", 0)]);
        e.insert("web".into(), vec![inst("web", "h2", "10.0.0.2", 0), inst("web", "h1", "10.0.0.1", 1)]);
        let t = text(&e, &["h1", "h2", "h3"]);
        assert!(
            t.ends_with(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.0.3\tdb\n10.0.0.1\tweb\n"
            ),
            "{t}"
        );
    }
}
