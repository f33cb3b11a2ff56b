#!/usr/bin/env bash
# drover vs Ansible (plain and with mitogen) vs pyinfra, each in its fastest
# idiom, doing the same work on the same lab hosts.
#
# Usage (root):  DROVER=/path/to/drover bench/compare.sh          # 20 then 100 hosts
#                BENCH_SIZES=20 BENCH_TOOLS="drover mitogen" DROVER=... bench/compare.sh
#   BENCH_INIT=systemd      lab hosts with systemd as pid 1 (default runit); the
#                           service is a unit for every tool (pyinfra: runit only)
#   tool drover-warm        drover with `[ssh] persist = "10m"`: the first phase
#                           starts the resident process, the others reuse its
#                           held SSH and agent sessions (docs/ssh.md)
#   BENCH_FORKS="5 10 20"   Ansible forks to try (default: hosts/4, hosts/2, hosts)
#   BENCH_FORKS_FIXED=N     skip the forks sweep, use N
#   BENCH_OUT=DIR           where logs, JSON and the table go
#                           (default bench/results/compare-<UTC date>-<time>)
#   DROVER_COMMIT=TEXT      what the drover binary was built from, if DROVER is
#                           not inside a git checkout (printed with the results)
#
# The deployment (bench/compare/<tool>.sh has each tool's project and why it
# is that tool's fastest idiom):
#   - 50 small files      /etc/bench/small/fNN.conf (about 300 bytes each)
#   - one 5 MiB file      /opt/bench/blob.bin (random: no tool can compress it)
#   - one template        /etc/bench/app.conf (host name and a variable)
#   - one runit service   benchapp (`sleep`), restarted only when something
#                         under /etc/bench or its run file changed
#
# Per size and tool, on a fresh lab (`drover lab up N`), four phases, each
# timed by bench/measure.py (wall time, controller peak memory, load average):
#   first     hosts start empty (drover also pushes its agent)
#   noop      nothing changed
#   change    one small file edited (v2; the service restarts)
#   rollback  back to v1: `drover rollback` for drover (generations are kept
#             on the hosts); re-running the v1 project for the others
# After each phase the first and last hosts are checked: every file of the
# expected version, the template, and the service's pid changed exactly
# when it should have. For Ansible, forks are tuned first: a sweep of no-op
# runs on a separate fresh lab picks the fastest (all are recorded).
# Progress goes to stderr; the markdown table to stdout and OUT/table.md.
set -euo pipefail
shopt -s inherit_errexit

[ "$(id -u)" = 0 ] || { echo "bench/compare.sh needs root (lab hosts are namespaces)" >&2; exit 3; }
cd "$(dirname "$0")/.."
REPO=$PWD
if [ -z "${DROVER:-}" ]; then
    cargo build --release -p drover >&2
    DROVER="${CARGO_TARGET_DIR:-target}/release/drover"
fi
DROVER=$(realpath "$DROVER")
SIZES="${BENCH_SIZES:-20 100}"
TOOLS="${BENCH_TOOLS:-drover drover-warm mitogen ansible pyinfra}"
INIT="${BENCH_INIT:-runit}"
case $INIT in runit | systemd) ;; *) echo "BENCH_INIT must be runit or systemd" >&2; exit 2 ;; esac
if [ "$INIT" = systemd ]; then TOOLS=$(echo "$TOOLS" | tr ' ' '\n' | grep -vx pyinfra | xargs); fi
LAB="${BENCH_LAB:-cmp}"
LAB_KEY="${DROVER_LAB_DIR:-/var/lib/drover-lab}/$LAB/id_ed25519"
OUT=$(realpath -m "${BENCH_OUT:-bench/results/compare-$(date -u +%Y%m%d-%H%M)}")
VENV="${BENCH_VENV:-/var/tmp/drover-bench/venv}"
# mitogen 0.3.54 supports ansible-core up to 2.20 (its version checks go to
# 2.21); both Ansible flavours use the same ansible-core.
PINS="ansible-core==2.19.14 mitogen==0.3.54 pyinfra==3.10.0"
if [ ! -x "$VENV/bin/ansible-playbook" ] || [ ! -x "$VENV/bin/pyinfra" ] \
    || ! "$VENV/bin/python" -c 'import ansible_mitogen' 2>/dev/null; then
    echo "installing $PINS into $VENV ..." >&2
    python3 -m venv "$VENV"
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install -q $PINS >&2
fi

WORK=$(mktemp -d /var/tmp/drover-compare.XXXXXX)
CONTENT=$WORK/content
LIB=$REPO/bench/compare/lib.sh
export DROVER VENV LAB LAB_KEY CONTENT INIT
trap 'stop_resident; "$DROVER" lab down --lab "$LAB" >/dev/null 2>&1 || true' EXIT
log() { echo "[compare] $*" >&2; }
# shellcheck source=bench/compare/lib.sh
source "$LIB"
mkdir -p "$OUT"
make_content "$CONTENT"

drover_commit=${DROVER_COMMIT:-$(git -C "$(dirname "$DROVER")" describe --always --dirty 2>/dev/null || echo unknown)}
{
    echo "date: $(date -u +%FT%TZ)"
    echo "cpus: $(nproc) ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo))"
    echo "memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel: $(uname -r); $(. /etc/os-release; echo "$PRETTY_NAME")"
    echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "drover: $("$DROVER" --version) sha256 $(sha256sum "$DROVER" | cut -c1-16) built from $drover_commit"
    echo "ansible-core: $("$VENV/bin/python" -c 'import ansible; print(ansible.__version__)')"
    echo "mitogen: $("$VENV/bin/python" -c 'import mitogen; print(".".join(map(str, mitogen.__version__)))')"
    echo "pyinfra: $("$VENV/bin/pyinfra" --version | sed 's/.*v//')"
    echo "python: $("$VENV/bin/python" --version)"
    echo "openssh client: $(ssh -V 2>&1)"
    echo "lab hosts: drover lab (network namespaces, overlay root, OpenSSH, $INIT as pid 1), sharing the controller's CPUs"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

fresh_lab() { # n
    stop_resident
    "$DROVER" lab down --lab "$LAB" >/dev/null
    "$DROVER" lab up "$1" --lab "$LAB" --init "$INIT" >/dev/null
    sleep 2
}

# One timed run: NAME.json (measure.py's figures plus what ran) and NAME.log.
timed() { # name tool hosts phase forks fn dir
    local name=$1 tool=$2 n=$3 phase=$4 forks=$5 fn=$6 dir=$7 out=$OUT/$1.json code
    python3 "$REPO/bench/measure.py" "$out" -- bash -c 'source "$1"; shift; "$@"' _ "$LIB" "$fn" "$dir" "$forks" \
        2>"$OUT/$name.log" || true
    python3 - "$out" "$tool" "$n" "$phase" "$forks" "$INIT" <<'PY'
import json, sys
path, tool, hosts, phase, forks, init = sys.argv[1:]
d = json.load(open(path))
d.update(tool=tool, hosts=int(hosts), phase=phase, forks=int(forks), init=init)
json.dump(d, open(path, "w"))
PY
    code=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["code"])' "$out")
    [ "$code" = 0 ] || { log "$name exited $code; see $OUT/$name.log"; tail -20 "$OUT/$name.log" >&2; return 1; }
    log "  $name: $(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["wall_s"], "s, load", d["loadavg_start"])' "$out")"
}

# Ansible's best forks for this size: apply once, then a no-op per candidate.
tune_forks() { # tool n -> prints the fastest forks
    local tool=$1 n=$2 dir=$WORK/$1-$2-tune best="" best_s="" f s
    local cands=${BENCH_FORKS:-"$(( (n + 3) / 4 )) $(( (n + 1) / 2 )) $n"}
    fresh_lab "$n"
    mkdir -p "$dir"
    "setup_$tool" "$dir" "$n"
    "version_$tool" "$dir" v1
    timed "$tool-$n-tune-first" "$tool" "$n" tune-first "$n" "run_$tool" "$dir" >&2
    for f in $cands; do
        timed "$tool-$n-tune-noop-forks$f" "$tool" "$n" tune-noop "$f" "run_$tool" "$dir" >&2
        s=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["wall_s"])' "$OUT/$tool-$n-tune-noop-forks$f.json")
        if [ -z "$best" ] || awk -v a="$s" -v b="$best_s" 'BEGIN { exit !(a < b) }'; then best=$f best_s=$s; fi
    done
    echo "$best"
}

for n in $SIZES; do
    for tool in $TOOLS; do
        forks=$n
        if [ "$tool" = ansible ] || [ "$tool" = mitogen ]; then
            if [ -n "${BENCH_FORKS_FIXED:-}" ]; then forks=$BENCH_FORKS_FIXED; else
                log "== $tool, $n hosts: forks sweep"
                forks=$(tune_forks "$tool" "$n")
            fi
        fi
        log "== $tool, $n hosts (forks/parallel $forks): fresh lab"
        fresh_lab "$n"
        dir=$WORK/$tool-$n
        mkdir -p "$dir"
        "setup_$tool" "$dir" "$n"
        for phase in first noop change rollback; do
            case $phase in
                first) "version_$tool" "$dir" v1; fn=run_$tool; ver=v1 ;;
                noop) fn=run_$tool; ver=v1 ;;
                change) "version_$tool" "$dir" v2; fn=run_$tool; ver=v2 ;;
                rollback) "prepare_rollback_$tool" "$dir"; fn=rollback_$tool; ver=v1 ;;
            esac
            before1=$(host_pid h1) beforen=$(host_pid "h$n")
            timed "$tool-$n-$phase" "$tool" "$n" "$phase" "$forks" "$fn" "$dir"
            [ "$INIT" = systemd ] || sleep 1 # runsv writes the new pid just after `sv restart` returns
            check_host h1 "$phase" "$ver" "$before1" && check_host "h$n" "$phase" "$ver" "$beforen" \
                || { tail -20 "$OUT/$tool-$n-$phase.log" >&2; exit 1; }
        done
    done
done
"$DROVER" lab down --lab "$LAB" >/dev/null
stop_resident
python3 "$REPO/bench/compare/table.py" "$OUT" | tee "$OUT/table.md"
