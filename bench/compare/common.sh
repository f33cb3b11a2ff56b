# Shared by bench/compare.sh and the per-tool files: the content every tool
# ships, its two versions, and the checks run on lab hosts after each phase.
# Sourced, not run.

# The deployment's bytes, written once per invocation so every tool ships
# exactly the same files: 50 small files, one 5 MiB random file (no tool can
# compress it). Version v2 differs from v1 by one line in small/f01.conf.
make_content() { # dir
    local c=$1
    mkdir -p "$c/v1/small"
    for i in $(seq -w 1 50); do
        { echo "# small file $i"; head -c 200 /dev/urandom | base64 -w 76; } > "$c/v1/small/f$i.conf"
    done
    cp -r "$c/v1" "$c/v2"
    echo "# changed in v2" >> "$c/v2/small/f01.conf"
    head -c $((5 << 20)) /dev/urandom > "$c/blob.bin"
}

# A tar of the small files that is byte-identical whenever their content is:
# fixed order, owner and mtime, so the archive idioms (Ansible's `unarchive`,
# pyinfra's put + extract) see "unchanged" on a no-op and extract files whose
# mtime matches what `tar --diff` expects.
make_tar() { # src_dir out.tar
    (cd "$1" && tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner \
        --mode=u=rw,go=r -cf "$2" -- *)
}

# The lab inventory as "name address" lines (from `drover lab inventory`).
lab_hosts() {
    "$DROVER" lab inventory --lab "$LAB" | awk -F'"' '
        /^\[hosts\./ { sub(/^\[hosts\./, ""); sub(/\]$/, ""); name = $0 }
        /^address/ { print name, $2 }'
}

host_root() { echo "${DROVER_LAB_DIR:-/var/lib/drover-lab}/$LAB/hosts/$1/merged"; }
host_pid() { # host
    if [ "${INIT:-runit}" = systemd ]; then
        local addr p
        addr=$(lab_hosts | awk -v h="$1" '$1 == h { print $2 }')
        p=$(ssh -q -i "$LAB_KEY" -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o BatchMode=yes \
            "root@$addr" systemctl show -p MainPID --value benchapp 2>/dev/null || true)
        case $p in '' | 0) echo none ;; *) echo "$p" ;; esac
    else
        cat "$(host_root "$1")/etc/sv/benchapp/supervise/pid" 2>/dev/null || echo none
    fi
}

# The service definition every tool writes, by the hosts' init.
service_path() { if [ "${INIT:-runit}" = systemd ]; then echo /etc/systemd/system/benchapp.service; else echo /etc/sv/benchapp/run; fi; }
service_text() {
    if [ "${INIT:-runit}" = systemd ]; then
        printf '[Unit]\nDescription=bench\n\n[Service]\nExecStart=/bin/sleep 1000000\n\n[Install]\nWantedBy=multi-user.target\n'
    else
        printf '#!/bin/sh\nexec sleep 1000000\n'
    fi
}

# After a phase, on one host: every small file equals the expected version,
# the blob and the rendered template are right, and the service's pid
# changed exactly when the phase should restart it (not on a no-op).
check_host() { # host phase expected_version pid_before
    local h=$1 phase=$2 ver=$3 before=$4 root after
    root=$(host_root "$h")
    diff -r "$CONTENT/$ver/small" "$root/etc/bench/small" >/dev/null \
        || { log "$h: /etc/bench/small is not $ver after $phase"; return 1; }
    cmp -s "$root/opt/bench/blob.bin" "$CONTENT/blob.bin" || { log "$h: blob.bin wrong after $phase"; return 1; }
    grep -q "rendered for $h\$" "$root/etc/bench/app.conf" && grep -q 'greeting = "hello"' "$root/etc/bench/app.conf" \
        || { log "$h: app.conf wrong after $phase"; return 1; }
    after=$(host_pid "$h")
    case $phase in
        noop) [ "$after" = "$before" ] || { log "$h: service restarted by a no-op ($before -> $after)"; return 1; } ;;
        *) [ "$after" != "$before" ] && [ "$after" != none ] \
            || { log "$h: service not (re)started by $phase ($before -> $after)"; return 1; } ;;
    esac
}
