//! Installing the controller's locked packages with the host's own `dpkg`,
//! offline: the `.deb` files arrived as blobs, nothing contacts a mirror.
//!
//! A package already installed at its locked version is skipped, so a
//! generation whose packages are all in place runs no dpkg at all. While
//! dpkg runs, `dpkg-pending.json` in the state directory says so: an agent
//! killed mid-install finds it at its next start and runs
//! `dpkg --configure -a` ([`recover`]), so a host is never left with
//! half-configured packages.

use std::collections::HashMap;
use std::process::Command;

use drover_proto::{debversion, Need, Package};

use crate::layout::Layout;
use crate::{bail, Result};

/// Installed packages (status `install ok installed`), name → version,
/// read from dpkg's status file directly (cheap: this runs on every no-op
/// check that has packages).
pub fn installed(layout: &Layout) -> HashMap<String, String> {
    let text = std::fs::read_to_string(layout.target("/var/lib/dpkg/status")).unwrap_or_default();
    let mut out = HashMap::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut version, mut ok) = (None, None, false);
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status: ") {
                ok = v.trim() == "install ok installed";
            }
        }
        if let (Some(n), Some(v), true) = (name, version, ok) {
            out.insert(n.to_string(), v.to_string());
        }
    }
    out
}

/// The packages of `want` not installed at their locked version or newer.
/// drover never downgrades: a newer version on the host is usually a
/// security update, and going back reruns maintainer scripts that were
/// not written for it.
pub fn to_install<'a>(installed: &HashMap<String, String>, want: &'a [Package]) -> Vec<&'a Package> {
    plan(installed, want).install.into_iter().map(|i| i.package).collect()
}

/// One package to install, and why.
pub struct Install<'a> {
    pub package: &'a Package,
    /// The version the host has now.
    pub have: Option<String>,
    /// For a base package: the need its installed version fails.
    pub because: Option<&'a Need>,
}

impl Install<'_> {
    /// One line for `plan` and `status`: `package sl 5.02-1+b1 not
    /// installed`, `package sl 5.01-1 -> 5.02-1+b1`, and for a base package
    /// the need that makes it travel.
    pub fn describe(&self) -> String {
        let p = self.package;
        let mut line = match &self.have {
            None => format!("package {} {} not installed", p.name, p.version),
            Some(have) => format!("package {} {have} -> {}", p.name, p.version),
        };
        if let Some(n) = self.because {
            line.push_str(&format!(" (base package: {} needs {} ({} {}))", n.by, p.name, n.op, n.version));
        }
        line
    }
}

/// What the host installs of `want`, against its own dpkg status.
pub struct Plan<'a> {
    pub install: Vec<Install<'a>>,
    /// Base packages a package being installed needs at a version neither
    /// the host's nor the locked one satisfies (the host's is newer: drover
    /// never downgrades). Each line says what to do; nothing may be
    /// installed while one is left.
    pub blocked: Vec<String>,
}

/// The closure's packages not installed at their locked version or newer;
/// then, to a fixed point, every base package (`needed_by` not empty) whose
/// installed version fails a need of a package being installed: the host's
/// base is behind the controller's source (a point release, a security
/// update), and the closure pins the newer one (`perl` needs `perl-base (=
/// 5.36.0-7+deb12u4)`). A base package no installed-to-be package needs at
/// a version the host lacks stays as it is: no needless upgrade of libc6.
pub fn plan<'a>(installed: &HashMap<String, String>, want: &'a [Package]) -> Plan<'a> {
    let older = |p: &Package| {
        installed.get(&p.name).is_none_or(|have| debversion::compare(have, &p.version) == std::cmp::Ordering::Less)
    };
    let mut install: Vec<Install<'a>> = want
        .iter()
        .filter(|p| p.needed_by.is_empty() && older(p))
        .map(|p| Install { package: p, have: installed.get(&p.name).cloned(), because: None })
        .collect();
    let mut blocked = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    loop {
        let mut grew = false;
        for p in want.iter().filter(|p| !p.needed_by.is_empty()) {
            if seen.contains(&p.name.as_str()) {
                continue;
            }
            let have = installed.get(&p.name).map(String::as_str);
            let fails = |n: &&Need| {
                install.iter().any(|i| i.package.name == n.by)
                    && !have.is_some_and(|h| debversion::satisfies(h, &n.op, &n.version))
            };
            let Some(need) = p.needed_by.iter().find(fails) else { continue };
            seen.push(&p.name);
            grew = true;
            let locked_ok =
                p.needed_by.iter().filter(fails).all(|n| debversion::satisfies(&p.version, &n.op, &n.version));
            let newer = have.is_some_and(|h| debversion::compare(h, &p.version) == std::cmp::Ordering::Greater);
            if locked_ok && !newer {
                install.push(Install { package: p, have: have.map(str::to_string), because: Some(need) });
                continue;
            }
            let by = want.iter().find(|w| w.name == need.by).map_or(String::new(), |w| format!(" {}", w.version));
            let now = have.map_or("does not have it".to_string(), |h| format!("has {h}"));
            blocked.push(format!(
                "package {}{by} needs {} ({} {}); this host {now}{}: refresh the controller's package lists \
                 (`apt-get update`) and run `drover packages lock`",
                need.by,
                p.name,
                need.op,
                need.version,
                if newer {
                    format!(", newer than packages.lock's {} (drover never downgrades)", p.version)
                } else {
                    format!(", and packages.lock's {} does not satisfy it either", p.version)
                },
            ));
        }
        if !grew {
            break;
        }
    }
    Plan { install, blocked }
}

fn marker(layout: &Layout) -> std::path::PathBuf {
    layout.state_dir().join("dpkg-pending.json")
}

/// Remove `absent` packages and install `pkgs` (their blobs must be stored).
/// Returns a one-line summary. On failure nothing is left half-installed:
/// packages this call introduced that dpkg could not configure are removed
/// again, and the error carries dpkg's output.
pub fn run(layout: &Layout, pkgs: &[&Package], absent: &[String]) -> Result<String> {
    let policy = layout.target("/usr/sbin/policy-rc.d");
    // Maintainer scripts must not start services behind the supervisor's
    // back (drover starts them after the swap, health-checked). The marker
    // says whether the policy file is ours, for recovery to remove it.
    let own_policy = !policy.exists();
    crate::fsops::write_atomic(&marker(layout), if own_policy { b"policy" } else { b"" })?;
    let own_policy = own_policy && std::fs::write(&policy, "#!/bin/sh\nexit 101\n").is_ok();
    if own_policy {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o755));
    }
    let result = run_dpkg(layout, pkgs, absent);
    if own_policy {
        let _ = std::fs::remove_file(&policy);
    }
    let _ = std::fs::remove_file(marker(layout));
    result
}

fn run_dpkg(layout: &Layout, pkgs: &[&Package], absent: &[String]) -> Result<String> {
    let before = installed(layout);
    let remove: Vec<&String> = absent.iter().filter(|n| before.contains_key(*n)).collect();
    if !remove.is_empty() {
        dpkg(Command::new("dpkg").arg("--remove").args(&remove))?;
    }
    if !pkgs.is_empty() {
        let files: Vec<_> = pkgs.iter().map(|p| layout.blob(&p.hash)).collect();
        // `dpkg --install` in its two steps, so a test can stop the agent
        // between them (packages unpacked, not configured: what recovery's
        // `dpkg --configure -a` must finish).
        let names: Vec<&str> = pkgs.iter().map(|p| p.name.as_str()).collect();
        let done = dpkg(Command::new("dpkg").args(["--unpack", "--force-confold"]).args(&files)).and_then(|_| {
            crate::hooks::point(layout, "dpkg-unpacked");
            dpkg(Command::new("dpkg").args(["--configure", "--force-confold"]).args(&names))
        });
        if let Err(e) = done {
            let after = installed(layout);
            let broken: Vec<&str> = pkgs
                .iter()
                .filter(|p| !before.contains_key(&p.name) && after.get(&p.name) != Some(&p.version))
                .map(|p| p.name.as_str())
                .collect();
            let cleanup = if broken.is_empty() {
                String::new()
            } else {
                let r = dpkg(Command::new("dpkg").args(["--remove", "--force-remove-reinstreq"]).args(&broken));
                match r {
                    Ok(_) => format!("; removed again: {}", broken.join(" ")),
                    Err(e2) => format!("; removing {} again failed too: {}", broken.join(" "), e2.0),
                }
            };
            bail!("package install failed, no file was changed: {}{cleanup}", e.0);
        }
    }
    let mut parts = Vec::new();
    if !pkgs.is_empty() {
        let names: Vec<String> = pkgs.iter().map(|p| format!("{}={}", p.name, p.version)).collect();
        parts.push(format!("installed {}", names.join(" ")));
    }
    if !remove.is_empty() {
        parts.push(format!("removed {}", remove.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")));
    }
    Ok(parts.join("; "))
}

fn dpkg(cmd: &mut Command) -> Result<String> {
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let out = cmd.output().map_err(|e| crate::AgentError::new(format!("run dpkg: {e} (is dpkg installed?)")))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        // The end of dpkg's output is where it says what failed.
        let tail: String =
            text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        bail!("dpkg {:?} failed ({}):\n{tail}", cmd.get_args().next().unwrap_or_default(), out.status);
    }
    Ok(text)
}

/// After a crash mid-install: finish what dpkg started and say what it did.
pub fn recover(layout: &Layout) -> Option<String> {
    let ours = std::fs::read(marker(layout)).ok()?;
    if ours == b"policy" {
        let _ = std::fs::remove_file(layout.target("/usr/sbin/policy-rc.d"));
    }
    let r = dpkg(Command::new("dpkg").args(["--configure", "-a"]));
    let audit = dpkg(Command::new("dpkg").arg("--audit")).map(|t| t.trim().to_string()).unwrap_or_else(|e| e.0);
    let _ = std::fs::remove_file(marker(layout));
    Some(match r {
        Ok(_) if audit.is_empty() => "a package install was interrupted; dpkg --configure -a finished it".into(),
        Ok(_) => format!("a package install was interrupted; after dpkg --configure -a, dpkg --audit says: {audit}"),
        Err(e) => format!("a package install was interrupted and dpkg --configure -a failed: {}", e.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fully_installed_packages_count() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var/lib/dpkg")).unwrap();
        std::fs::write(
            dir.path().join("var/lib/dpkg/status"),
            "Package: sl\nStatus: install ok installed\nVersion: 5.02-1+b1\n\n\
             Package: bad\nStatus: install ok half-configured\nVersion: 1\n",
        )
        .unwrap();
        let got = installed(&Layout::new(dir.path()));
        assert_eq!(got.get("sl").map(|s| s.as_str()), Some("5.02-1+b1"));
        assert!(!got.contains_key("bad"));
    }

    #[test]
    fn installs_what_is_missing_or_older_and_never_downgrades() {
        let p = |name: &str, version: &str| Package {
            name: name.into(),
            version: version.into(),
            arch: "all".into(),
            hash: drover_proto::Hash([0; 32]),
            size: 1,
            needed_by: vec![],
        };
        let want = [p("same", "1.0-1"), p("older", "1.0-2"), p("newer", "1.0-1"), p("absent", "1")];
        let have: HashMap<String, String> = [("same", "1.0-1"), ("older", "1.0-1"), ("newer", "1.0-1+deb12u1")]
            .map(|(a, b)| (a.into(), b.into()))
            .into();
        let got: Vec<&str> = to_install(&have, &want).iter().map(|p| p.name.as_str()).collect();
        assert_eq!(got, ["older", "absent"]);
    }

    /// The host's base is behind the lock: a package being installed pins
    /// a newer base package, which is installed too; one already satisfied
    /// (libc6 (>= 2.34) with 2.36 there) or needed only by a package the
    /// host has is left alone; a host whose base is ahead of an `=` pin is
    /// refused with what to do, never downgraded.
    #[test]
    fn base_packages_travel_only_where_a_package_being_installed_needs_a_newer_one() {
        let need = |by: &str, op: &str, v: &str| Need { by: by.into(), op: op.into(), version: v.into() };
        let p = |name: &str, version: &str, needed_by: Vec<Need>| Package {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            hash: drover_proto::Hash([0; 32]),
            size: 1,
            needed_by,
        };
        let want = [
            p("perl", "5.36.0-7+deb12u4", vec![]),
            p("sl", "5.02-1+b1", vec![]),
            p("perl-base", "5.36.0-7+deb12u4", vec![need("perl", "=", "5.36.0-7+deb12u4")]),
            p("libc6", "2.36-9+deb12u4", vec![need("perl-base", ">=", "2.36"), need("sl", ">=", "2.34")]),
            p("libtinfo6", "6.4-4", vec![need("sl", "=", "6.4-4")]),
        ];
        let host = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
        };
        // Behind: perl-base u3; sl installed already (its pin on libtinfo6 is moot).
        let behind = host(&[
            ("perl-base", "5.36.0-7+deb12u3"),
            ("libc6", "2.36-9+deb12u3"),
            ("sl", "5.02-1+b1"),
            ("libtinfo6", "6.4-3"),
        ]);
        let got = plan(&behind, &want);
        let lines: Vec<String> = got.install.iter().map(Install::describe).collect();
        assert_eq!(
            lines,
            [
                "package perl 5.36.0-7+deb12u4 not installed",
                "package perl-base 5.36.0-7+deb12u3 -> 5.36.0-7+deb12u4 (base package: perl needs perl-base (= 5.36.0-7+deb12u4))",
            ]
        );
        assert!(got.blocked.is_empty());
        // Current: nothing but perl.
        let current = host(&[("perl-base", "5.36.0-7+deb12u4"), ("libc6", "2.36-9+deb12u4")]);
        let names: Vec<&str> = to_install(&current, &want).iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["perl", "sl", "libtinfo6"]);
        // Ahead: perl-base u5 cannot satisfy perl u4's pin, and is not downgraded.
        let ahead = host(&[("perl-base", "5.36.0-7+deb12u5"), ("libc6", "2.36-9+deb12u5"), ("sl", "5.02-1+b1")]);
        let got = plan(&ahead, &want);
        assert_eq!(got.blocked.len(), 1, "{:?}", got.blocked);
        let b = &got.blocked[0];
        assert!(
            b.contains("package perl 5.36.0-7+deb12u4 needs perl-base (= 5.36.0-7+deb12u4)")
                && b.contains("this host has 5.36.0-7+deb12u5, newer than packages.lock's 5.36.0-7+deb12u4")
                && b.contains("drover packages lock"),
            "{b}"
        );
    }
}
