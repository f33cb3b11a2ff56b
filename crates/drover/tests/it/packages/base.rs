//! Hosts whose base system is behind or ahead of the controller's apt
//! (issue 24, item 4).
//!
//! The real-world case: hosts installed from one Debian point release while
//! the controller's apt lists have moved to the next. perl 5.36.0-7+deb12u4
//! depends on perl-base (= 5.36.0-7+deb12u4), and a host installed at
//! deb12u3 has perl-base deb12u3: before, the lock never shipped base
//! packages and dpkg refused perl on that host. The same pin, small and
//! fast: libncurses6 (sl's dependency) depends on libtinfo6 (= its own
//! version), and libtinfo6 is in every Debian base (bash needs it). A lab
//! host is made "behind" by giving its installed libtinfo6 an older version
//! in its dpkg status (`<v>~behind`, which dpkg orders before `<v>`), and
//! "ahead" with `<v>+ahead`: what a host that took a newer point release
//! than the controller's lists looks like to dpkg.

use super::{dpkg_status, prepend};
use crate::support::Fleet;

/// Rewrite the installed version of `pkg` in host `i`'s dpkg status.
fn fake_installed_version(f: &Fleet, i: usize, pkg: &str, version: &str) {
    let path = f.host_file(i, "/var/lib/dpkg/status");
    let text = std::fs::read_to_string(&path).unwrap();
    let stanzas: Vec<String> = text
        .split("\n\n")
        .map(|s| {
            if !s.starts_with(&format!("Package: {pkg}\n")) {
                return s.to_string();
            }
            s.lines()
                .map(|l| if l.starts_with("Version: ") { format!("Version: {version}") } else { l.to_string() })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    let out = stanzas.join("\n\n");
    assert_ne!(out, text, "no {pkg} in host {i}'s dpkg status");
    std::fs::write(&path, out).unwrap();
}

#[test]
fn a_host_whose_base_is_behind_gets_the_pinned_base_package_a_current_one_does_not_and_one_ahead_is_refused_saying_why()
{
    let f = Fleet::new("pkg-behind", 3);
    prepend(&f.project().join("roles/site.toml"), "packages = [\"sl\"]\n");
    let lock = f.drover(&["packages", "lock"]);
    assert_eq!(lock.code, 0, "{}{}", lock.stdout, lock.stderr);
    let lock: toml::Table =
        toml::from_str(&std::fs::read_to_string(f.project().join("packages.lock")).unwrap()).unwrap();
    let target = &lock["targets"].as_array().unwrap()[0];
    let packages = target["packages"].as_array().unwrap();
    let ncurses = packages.iter().find(|p| p["name"].as_str() == Some("libncurses6")).expect("libncurses6 locked");
    let ncurses = ncurses["version"].as_str().unwrap().to_string();
    // The version every lab host has (debootstrapped from the controller's apt).
    let v = f.host_sh(1, "dpkg-query -W -f='${Version}' libtinfo6");
    assert!(!v.is_empty(), "no libtinfo6 on the lab host");
    let (behind, ahead) = (format!("{v}~behind"), format!("{v}+ahead"));
    fake_installed_version(&f, 0, "libtinfo6", &behind);
    fake_installed_version(&f, 2, "libtinfo6", &ahead);

    // plan says, per host, what each would install and why.
    let plan = f.drover(&["plan", "--json"]);
    let hosts = plan.hosts();
    let setup = |i: usize| -> Vec<String> {
        hosts[i]["setup"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
    };
    let upgrade =
        format!("package libtinfo6 {behind} -> {v} (base package: libncurses6 needs libtinfo6 (= {ncurses}))");
    assert!(setup(0).contains(&upgrade), "h1: {:?}", setup(0));
    assert!(!setup(1).iter().any(|s| s.contains("libtinfo6")), "h2 is current: {:?}", setup(1));
    assert!(
        setup(2).iter().any(|s| s.contains("needs libtinfo6 (=")
            && s.contains(&format!("this host has {ahead}, newer than packages.lock's {v}"))
            && s.contains("drover packages lock")),
        "h3: {:?}",
        setup(2)
    );
    let table = f.drover(&["plan"]);
    assert!(table.stdout.contains(&upgrade), "the plan table does not say so:\n{}", table.stdout);

    let motd = std::fs::read(f.host_file(2, "/etc/motd")).ok();
    let h2_log = || std::fs::read_to_string(f.host_file(1, "/var/log/dpkg.log")).unwrap_or_default();
    let h2_before = h2_log();
    let r = f.apply_json(&[]);
    let hosts = r.hosts();
    assert_eq!(hosts[0]["outcome"], "changed", "h1: {}", hosts[0]);
    assert_eq!(hosts[1]["outcome"], "changed", "h2: {}", hosts[1]);
    assert_eq!(dpkg_status(&f, "libtinfo6"), format!("install ok installed {v}"), "h1's libtinfo6 not upgraded");
    assert!(f.host_file(0, "/usr/games/sl").is_file() && f.host_file(1, "/usr/games/sl").is_file());
    let h2_new = h2_log().strip_prefix(&h2_before).map(str::to_string).unwrap_or_else(h2_log);
    assert!(h2_new.contains(" install sl:"), "h2's dpkg log: {h2_new}");
    assert!(!h2_new.contains("libtinfo6"), "a current host got libtinfo6 again:\n{h2_new}");
    // Ahead: refused before dpkg ran and before any file swapped, saying what to do.
    assert_eq!(hosts[2]["outcome"], "failed", "h3: {}", hosts[2]);
    let err = hosts[2]["error"].as_str().unwrap_or_default();
    assert!(err.contains("newer than packages.lock's") && err.contains("drover packages lock"), "{err}");
    assert_eq!(std::fs::read(f.host_file(2, "/etc/motd")).ok(), motd, "h3's files were swapped");
    assert!(!f.host_file(2, "/usr/games/sl").exists(), "h3 got sl with a broken dependency");

    // The lock says who pins libtinfo6 at which version.
    let lock: toml::Table =
        toml::from_str(&std::fs::read_to_string(f.project().join("packages.lock")).unwrap()).unwrap();
    let base = lock["targets"].as_array().unwrap()[0].get("base").and_then(|b| b.as_array()).cloned();
    let tinfo = base.unwrap_or_default().into_iter().find(|p| p["name"].as_str() == Some("libtinfo6"));
    let tinfo = tinfo.expect("libtinfo6 locked as a base package");
    assert_eq!(tinfo["version"].as_str(), Some(v.as_str()), "{tinfo}");
    let need = format!("libncurses6 (= {ncurses})");
    assert!(
        tinfo["needed-by"].as_array().unwrap().iter().any(|n| n.as_str() == Some(&need)),
        "libtinfo6 does not record libncurses6's pin: {tinfo}"
    );

    // Stable: the upgraded host's manifest did not depend on its base.
    let again = f.drover(&["apply", "--json", "--hosts", "h1,h2"]);
    assert!(again.hosts().iter().all(|h| h["outcome"] == "unchanged"), "{}", again.stdout);
}
