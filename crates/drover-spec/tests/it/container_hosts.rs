//! A container's `/etc/hosts` names the project's services at the hosts
//! running them (docs/containers.md, "Importing docker-compose"), mounted
//! in place of the host's, and restarts the container when it changes.

use std::fs;

use drover_proto::{EntryKind, Supervisor};
use drover_spec::Project;

use crate::support::{facts, render_error, write};

#[test]
fn a_containers_etc_hosts_names_each_service_at_the_first_host_running_it() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    write(p, "drover.toml", "[project]\nname = \"t\"\n");
    write(
        p,
        "inventory.toml",
        "[hosts.h1]\naddress = \"10.0.0.1\"\nroles = [\"front\"]\n[hosts.h2]\naddress = \"10.0.0.2\"\nroles = [\"back\"]\n[hosts.h3]\naddress = \"10.0.0.3\"\nroles = [\"back\"]\n",
    );
    write(p, "roles/front.toml", "services = [\"web\"]\n");
    write(p, "roles/back.toml", "services = [\"db\"]\n");
    write(p, "services/web.toml", "image = { dir = \"images/web\" }\ncommand = [\"/bin/httpd\"]\nafter = [\"db\"]\n");
    write(p, "services/db.toml", "command = \"sleep 1000\"\n");
    write(p, "images/web/bin/httpd", "pretend\n");
    // runc in the closure, as an image service's role needs.
    let h = "c".repeat(64);
    write(p, &format!(".drover/packages/{h}.deb"), "x");
    write(
        p,
        "packages.lock",
        &format!("version = 1\n[requests]\nfront = [\"runc\"]\n[[targets]]\ntarget = \"debian-12-amd64\"\nroles = {{ front = [\"runc\"] }}\n[[targets.packages]]\nname = \"runc\"\nversion = \"1.1.5+ds1-1+deb12u1\"\narch = \"amd64\"\nfilename = \"runc_1.1.5+ds1-1+deb12u1_amd64.deb\"\nblake3 = \"{h}\"\nsize = 1\n"),
    );
    let project = Project::load(p).unwrap_or_else(|e| panic!("{}", render_error(e)));
    let c = project
        .compile(&project.hosts[0], &facts(Supervisor::Runit), 1)
        .unwrap_or_else(|e| panic!("{}", render_error(e)));
    let text = |path: &str| {
        let e = c.manifest.entry(path).unwrap_or_else(|| panic!("no {path}"));
        let EntryKind::File { hash, .. } = e.kind else { panic!("{path} is not a file") };
        match &c.blobs[&hash] {
            drover_spec::BlobSource::Bytes(b) => String::from_utf8(b.to_vec()).unwrap(),
            drover_spec::BlobSource::File(f) => fs::read_to_string(f).unwrap(),
        }
    };
    let hosts = text("/var/lib/drover/container-hosts");
    assert!(hosts.ends_with("::1\tlocalhost ip6-localhost ip6-loopback\n10.0.0.2\tdb\n10.0.0.1\tweb\n"), "{hosts}");
    let config: serde_json::Value = serde_json::from_str(&text("/var/lib/drover/containers/web/config.json")).unwrap();
    let mounts = config["mounts"].as_array().unwrap();
    let etc_hosts = mounts.iter().find(|m| m["destination"] == "/etc/hosts").unwrap();
    assert_eq!(etc_hosts["source"], "/var/lib/drover/container-hosts");
    assert!(etc_hosts["options"].as_array().unwrap().iter().any(|o| o == "ro"));
    let web = c.manifest.services.iter().find(|s| s.name == "web").unwrap();
    assert!(web.triggers.iter().any(|t| t == "/var/lib/drover/container-hosts"), "{:?}", web.triggers);
    // A host with no container has no such file.
    let c3 = project
        .compile(&project.hosts[2], &facts(Supervisor::Runit), 1)
        .unwrap_or_else(|e| panic!("{}", render_error(e)));
    assert!(c3.manifest.entry("/var/lib/drover/container-hosts").is_none());
}
