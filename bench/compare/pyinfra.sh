# pyinfra in its fastest idiom: --parallel = hosts, --no-wait (a host runs its
# next operation without waiting for the others, like Ansible's free
# strategy), -y (no separate change-detection pass before executing). The 50
# small files travel as one archive: `files.put` of a deterministic tar (one
# sha1 fact per host) and an extract only when it changed, instead of
# `files.sync` (a File and a Sha1File fact per file per host). `files.put`
# creates parent directories itself; no facts are gathered that the
# operations do not need. Rollback: re-run the previous version of the
# project. Sourced by bench/compare.sh.

setup_pyinfra() { # dir
    local d=$1
    mkdir -p "$d/files/small" "$d/templates"
    cp "$CONTENT/blob.bin" "$d/files/"
    printf '# rendered for {{ host.name }}\ngreeting = "{{ greeting }}"\n' > "$d/templates/app.conf.j2"
    : > "$d/known_hosts" # lab addresses are reused with new keys: never trust ~/.ssh/known_hosts
    {
        echo "_data = {'ssh_user': 'root', 'ssh_key': '$LAB_KEY', 'ssh_strict_host_key_checking': 'off', 'ssh_known_hosts_file': '$d/known_hosts', 'greeting': 'hello'}"
        echo "bench = ["
        lab_hosts | while read -r name addr; do echo "    (\"$name\", {\"ssh_hostname\": \"$addr\"}),"; done
        echo "]"
        echo "bench = (bench, _data)"
    } > "$d/inventory.py"
    cat > "$d/deploy.py" <<'PY'
from io import StringIO

from pyinfra import host
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

small = files.put(name="small files (archive)", src="files/small.tar", dest="/var/cache/bench/small.tar", mode="644")
server.shell(name="extract small files",
             commands=["mkdir -p /etc/bench/small && tar -xf /var/cache/bench/small.tar -C /etc/bench/small"],
             _if=small.did_change)
files.put(name="large file", src="files/blob.bin", dest="/opt/bench/blob.bin", mode="644")
conf = files.template(name="template", src="templates/app.conf.j2", dest="/etc/bench/app.conf",
                      mode="644", greeting=host.data.greeting)
run = files.put(name="service definition", src=StringIO("#!/bin/sh\nexec sleep 1000000\n"),
                dest="/etc/sv/benchapp/run", mode="755")
files.link(name="service enabled", path="/etc/service/benchapp", target="/etc/sv/benchapp")
server.shell(name="restart benchapp",
             commands=["for i in $(seq 50); do sv restart benchapp && exit 0; sleep 0.2; done; exit 1"],
             _if=any_changed(small, conf, run))
PY
}
version_pyinfra() { make_tar "$CONTENT/$2/small" "$1/files/small.tar"; } # dir version
run_pyinfra() { (cd "$1" && "$VENV/bin/pyinfra" inventory.py deploy.py -y --no-wait --parallel "$2"); } # dir forks
rollback_pyinfra() { run_pyinfra "$@"; } # the driver has put v1 back in the project
prepare_rollback_pyinfra() { version_pyinfra "$1" v1; } # dir
