#!/usr/bin/env bash
# drover vs Ansible vs pyinfra: the same deployment on the same lab hosts.
#
# Usage (root):  bench/compare.sh                      # 20 then 100 hosts
#                BENCH_SIZES=20 bench/compare.sh
#                BENCH_TOOLS="drover pyinfra" DROVER=target/release/drover bench/compare.sh
#
# The deployment, written once per tool in its own idiom:
#   - 50 small files      /etc/bench/small/fNN.conf (about 300 bytes each)
#   - one 5 MiB file      /opt/bench/blob.bin (random: no tool can compress it)
#   - one template        /etc/bench/app.conf (host name and a variable)
#   - one runit service   benchapp (`sleep`), restarted only when something
#                         under /etc/bench changed
#
# For each size and tool: a fresh lab (`drover lab up N --lab perf`), then
# three runs, each timed with bench/measure.py (wall time; peak memory of the
# controller process tree):
#   first    hosts start empty (drover also pushes its agent here)
#   no-op    nothing changed
#   change   one small file edited (the service restarts)
# After each run the script checks host h1: the files are there, and the
# service's pid changed exactly when it should have.
#
# Settings: Ansible (ansible-core from PyPI) with pipelining on, forks = hosts,
# no fact gathering (the deployment needs none), host key checking off, and
# its defaults otherwise (ControlPersist 60s: back-to-back runs reuse SSH
# connections). pyinfra with --parallel = hosts. drover with its defaults
# (parallel 512, magic rollback: a changed host is confirmed over a second
# connection). Progress goes to stderr; a markdown table to stdout.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "bench/compare.sh needs root (lab hosts are namespaces)" >&2; exit 3; }
cd "$(dirname "$0")/.."
REPO=$PWD
if [ -z "${DROVER:-}" ]; then
    cargo build --release -p drover >&2
    DROVER="${CARGO_TARGET_DIR:-target}/release/drover"
fi
DROVER=$(realpath "$DROVER")
SIZES="${BENCH_SIZES:-20 100}"
TOOLS="${BENCH_TOOLS:-drover ansible pyinfra}"
LAB=perf
VENV="${BENCH_VENV:-/var/tmp/drover-bench/venv}"
if [ ! -x "$VENV/bin/ansible-playbook" ] || [ ! -x "$VENV/bin/pyinfra" ]; then
    echo "installing ansible-core and pyinfra into $VENV ..." >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q ansible-core pyinfra >&2
fi
ANSIBLE_VERSION=$("$VENV/bin/ansible" --version | head -1 | sed 's/.*core //; s/]//')
PYINFRA_VERSION=$("$VENV/bin/pyinfra" --version | sed 's/.*v//')

WORK=$(mktemp -d /var/tmp/drover-compare.XXXXXX)
trap '"$DROVER" lab down --lab $LAB >/dev/null 2>&1 || true' EXIT
log() { echo "[compare] $*" >&2; }

# The shared content: every tool ships exactly these bytes.
content=$WORK/content
mkdir -p "$content/small"
for i in $(seq -w 1 50); do
    { echo "# small file $i"; head -c 200 /dev/urandom | base64 -w 76; } > "$content/small/f$i.conf"
done
head -c $((5 << 20)) /dev/urandom > "$content/blob.bin"
RUN_SCRIPT='#!/bin/sh
exec sleep 1000000
'

setup_drover() { # dir
    local d=$1
    mkdir -p "$d/roles" "$d/services" "$d/layers/bench/etc/bench/small" "$d/layers/bench/opt/bench"
    cat > "$d/drover.toml" <<'EOF'
[project]
name = "bench"

[defaults]
roles = ["bench"]

[vars]
greeting = "hello"
EOF
    printf 'layers = ["bench"]\nservices = ["benchapp"]\n' > "$d/roles/bench.toml"
    printf 'command = "sleep 1000000"\nrestart-on = ["/etc/bench/**"]\n' > "$d/services/benchapp.toml"
    cp "$content"/small/* "$d/layers/bench/etc/bench/small/"
    cp "$content/blob.bin" "$d/layers/bench/opt/bench/"
    printf '# rendered for {{ host.name }}\ngreeting = "{{ greeting }}"\n' > "$d/layers/bench/etc/bench/app.conf.j2"
    "$DROVER" lab inventory --lab $LAB > "$d/inventory.toml"
    SMALL_DIR="$d/layers/bench/etc/bench/small"
}
run_drover() { "$DROVER" -C "$1" apply; }

setup_ansible() { # dir n
    local d=$1 n=$2
    mkdir -p "$d/files" "$d/templates"
    cp -r "$content/small" "$d/files/small"
    cp "$content/blob.bin" "$d/files/"
    printf '# rendered for {{ inventory_hostname }}\ngreeting = "{{ greeting }}"\n' > "$d/templates/app.conf.j2"
    cat > "$d/ansible.cfg" <<EOF
[defaults]
forks = $n
host_key_checking = False
gathering = explicit
interpreter_python = /usr/bin/python3
stdout_callback = ansible.builtin.default
retry_files_enabled = False

[ssh_connection]
pipelining = True
ssh_common_args = -o UserKnownHostsFile=/dev/null
EOF
    {
        echo "[bench]"
        "$DROVER" lab inventory --lab $LAB | awk -F'"' '/^\[hosts\./ { sub(/^\[hosts\./, ""); sub(/\]$/, ""); name = $0 } /^address/ { print name " ansible_host=" $2 }'
        echo
        echo "[bench:vars]"
        echo "ansible_user=root"
        echo "ansible_ssh_private_key_file=/var/lib/drover-lab/$LAB/id_ed25519"
        echo "greeting=hello"
    } > "$d/hosts.ini"
    cat > "$d/site.yml" <<'EOF'
- hosts: bench
  gather_facts: false
  tasks:
    - name: directories
      ansible.builtin.file: { path: "{{ item }}", state: directory, mode: "0755" }
      loop: [/etc/bench, /opt/bench, /etc/sv/benchapp]
    - name: small files
      ansible.builtin.copy: { src: files/small/, dest: /etc/bench/small/, mode: "0644" }
      notify: restart benchapp
    - name: large file
      ansible.builtin.copy: { src: files/blob.bin, dest: /opt/bench/blob.bin, mode: "0644" }
    - name: template
      ansible.builtin.template: { src: templates/app.conf.j2, dest: /etc/bench/app.conf, mode: "0644" }
      notify: restart benchapp
    - name: service definition
      ansible.builtin.copy:
        dest: /etc/sv/benchapp/run
        mode: "0755"
        content: "#!/bin/sh\nexec sleep 1000000\n"
      notify: restart benchapp
    - name: service enabled
      ansible.builtin.file: { src: /etc/sv/benchapp, dest: /etc/service/benchapp, state: link }
  handlers:
    - name: restart benchapp
      ansible.builtin.shell: for i in $(seq 50); do sv restart benchapp && exit 0; sleep 0.2; done; exit 1
EOF
    SMALL_DIR="$d/files/small"
}
run_ansible() { (cd "$1" && "$VENV/bin/ansible-playbook" -i hosts.ini site.yml); }

setup_pyinfra() { # dir n
    local d=$1
    mkdir -p "$d/files" "$d/templates"
    cp -r "$content/small" "$d/files/small"
    cp "$content/blob.bin" "$d/files/"
    printf '# rendered for {{ host.name }}\ngreeting = "{{ greeting }}"\n' > "$d/templates/app.conf.j2"
    {
        : > "$d/known_hosts" # lab addresses are reused with new keys: never trust ~/.ssh/known_hosts
        echo "_data = {'ssh_user': 'root', 'ssh_key': '/var/lib/drover-lab/$LAB/id_ed25519', 'ssh_strict_host_key_checking': 'off', 'ssh_known_hosts_file': '$d/known_hosts', 'greeting': 'hello'}"
        echo "bench = ["
        "$DROVER" lab inventory --lab $LAB | awk -F'"' '/^\[hosts\./ { sub(/^\[hosts\./, ""); sub(/\]$/, ""); name = $0 } /^address/ { print "    (\"" name "\", {\"ssh_hostname\": \"" $2 "\"}),"}'
        echo "]"
        echo "bench = (bench, _data)"
    } > "$d/inventory.py"
    cat > "$d/deploy.py" <<'EOF'
from io import StringIO

from pyinfra import host
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

small = files.sync(name="small files", src="files/small/", dest="/etc/bench/small", mode="644")
files.put(name="large file", src="files/blob.bin", dest="/opt/bench/blob.bin", mode="644")
conf = files.template(name="template", src="templates/app.conf.j2", dest="/etc/bench/app.conf",
                      mode="644", greeting=host.data.greeting)
run = files.put(name="service definition", src=StringIO("#!/bin/sh\nexec sleep 1000000\n"),
                dest="/etc/sv/benchapp/run", mode="755")
files.link(name="service enabled", path="/etc/service/benchapp", target="/etc/sv/benchapp")
server.shell(name="restart benchapp",
             commands=["for i in $(seq 50); do sv restart benchapp && exit 0; sleep 0.2; done; exit 1"],
             _if=any_changed(small, conf, run))
EOF
    SMALL_DIR="$d/files/small"
}
run_pyinfra() { (cd "$1" && "$VENV/bin/pyinfra" inventory.py deploy.py -y --parallel "$2"); }

h1_root() { echo "/var/lib/drover-lab/$LAB/hosts/h1/merged"; }
h1_pid() { cat "$(h1_root)/etc/sv/benchapp/supervise/pid" 2>/dev/null || echo none; }

check_h1() { # phase pid_before
    local phase=$1 before=$2 root after
    root=$(h1_root)
    cmp -s "$root/opt/bench/blob.bin" "$content/blob.bin" || { log "h1: blob.bin wrong after $phase"; return 1; }
    cmp -s "$root/etc/bench/small/f01.conf" "$SMALL_DIR/f01.conf" || { log "h1: f01.conf wrong after $phase"; return 1; }
    grep -q "rendered for h1" "$root/etc/bench/app.conf" || { log "h1: app.conf wrong after $phase"; return 1; }
    sleep 1
    after=$(h1_pid)
    case $phase in
        noop) [ "$after" = "$before" ] || { log "h1: service restarted by a no-op ($before -> $after)"; return 1; } ;;
        *) [ "$after" != "$before" ] && [ "$after" != none ] || { log "h1: service not (re)started by $phase"; return 1; } ;;
    esac
}

fmt_mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

export DROVER VENV
export -f run_drover run_ansible run_pyinfra
declare -A WALL PSS RSS
for n in $SIZES; do
    for tool in $TOOLS; do
        log "== $tool, $n hosts: fresh lab"
        "$DROVER" lab down --lab $LAB >/dev/null
        "$DROVER" lab up "$n" --lab $LAB >/dev/null
        sleep 2
        dir=$WORK/$tool-$n
        mkdir -p "$dir"
        "setup_$tool" "$dir" "$n"
        for phase in first noop change; do
            if [ "$phase" = change ]; then
                echo "# changed $(date +%s.%N)" >> "$SMALL_DIR/f01.conf"
            fi
            before=$(h1_pid)
            log "$tool $n hosts: $phase"
            out=$WORK/$tool-$n-$phase.json
            python3 "$REPO/bench/measure.py" "$out" -- bash -c "run_$tool \"\$@\"" _ "$dir" "$n" \
                2>"$WORK/$tool-$n-$phase.log" || true
            code=$(field "$out" code)
            [ "$code" = 0 ] || { log "$tool $phase exited $code; see $WORK/$tool-$n-$phase.log"; tail -20 "$WORK/$tool-$n-$phase.log" >&2; exit 1; }
            check_h1 "$phase" "$before" || { tail -20 "$WORK/$tool-$n-$phase.log" >&2; exit 1; }
            WALL[$tool,$n,$phase]=$(field "$out" wall_s)
            PSS[$tool,$n,$phase]=$(fmt_mib "$(field "$out" peak_pss_kb)")
            RSS[$tool,$n,$phase]=$(fmt_mib "$(field "$out" maxrss_kb)")
            log "  ${WALL[$tool,$n,$phase]} s, peak PSS ${PSS[$tool,$n,$phase]} MiB, max RSS ${RSS[$tool,$n,$phase]} MiB"
        done
    done
done
"$DROVER" lab down --lab $LAB >/dev/null

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.1f×", a / b; else print "-" }'; }
echo
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r). drover $("$DROVER" --version | awk '{ print $2 }'), ansible-core $ANSIBLE_VERSION, pyinfra $PYINFRA_VERSION."
echo
echo "| hosts | run | $(for t in $TOOLS; do printf '%s time | ' "$t"; done)$(for t in $TOOLS; do printf '%s peak PSS (max RSS) | ' "$t"; done)Ansible ÷ drover | pyinfra ÷ drover |"
echo "|---|---|$(for t in $TOOLS; do printf -- '---|'; done)$(for t in $TOOLS; do printf -- '---|'; done)---|---|"
for n in $SIZES; do
    for phase in first noop change; do
        row="| $n | $phase |"
        for t in $TOOLS; do row+=" ${WALL[$t,$n,$phase]} s |"; done
        for t in $TOOLS; do row+=" ${PSS[$t,$n,$phase]} MiB (${RSS[$t,$n,$phase]} MiB) |"; done
        d=${WALL[drover,$n,$phase]:-0}
        row+=" $(ratio "${WALL[ansible,$n,$phase]:-0}" "$d") | $(ratio "${WALL[pyinfra,$n,$phase]:-0}" "$d") |"
        echo "$row"
    done
done
