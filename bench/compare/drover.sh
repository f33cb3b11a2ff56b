# drover with its defaults (parallel 512, magic rollback: each changed host is
# confirmed over a second connection). Rollback is `drover rollback`: the
# previous generation is kept on every host, so going back ships nothing;
# the project directory stays at v2, as after a real bad release.
# drover's `command` services run under whichever init the host has (it
# writes the runit run file or the systemd unit itself).
# drover-warm is the same project with `[ssh] persist = "10m"`: its first
# phase starts the resident process (docs/ssh.md), the later phases go
# through the SSH and agent sessions it holds.
# Sourced by bench/compare.sh.

setup_drover() { # dir
    local d=$1
    mkdir -p "$d/roles" "$d/services" "$d/layers/bench/etc/bench/small" "$d/layers/bench/opt/bench"
    cat > "$d/drover.toml" <<'TOML'
[project]
name = "bench"

[defaults]
roles = ["bench"]

[vars]
greeting = "hello"
TOML
    printf 'layers = ["bench"]\nservices = ["benchapp"]\n' > "$d/roles/bench.toml"
    printf 'command = "sleep 1000000"\nrestart-on = ["/etc/bench/**"]\n' > "$d/services/benchapp.toml"
    cp "$CONTENT/blob.bin" "$d/layers/bench/opt/bench/"
    printf '# rendered for {{ host.name }}\ngreeting = "{{ greeting }}"\n' > "$d/layers/bench/etc/bench/app.conf.j2"
    "$DROVER" lab inventory --lab "$LAB" > "$d/inventory.toml"
}
version_drover() { cp "$CONTENT/$2"/small/* "$1/layers/bench/etc/bench/small/"; } # dir version
run_drover() { "$DROVER" -C "$1" apply; }                                       # dir forks
rollback_drover() { "$DROVER" -C "$1" rollback; }                               # dir forks
prepare_rollback_drover() { :; } # the project stays at v2; the hosts keep v1

setup_drover-warm() { setup_drover "$@"; printf '\n[ssh]\npersist = "10m"\n' >> "$1/drover.toml"; }
version_drover-warm() { version_drover "$@"; }
run_drover-warm() { run_drover "$@"; }
rollback_drover-warm() { rollback_drover "$@"; }
prepare_rollback_drover-warm() { :; }

# No resident outlives the run (nor a lab it held sessions to).
stop_resident() { pkill -f -- "^$DROVER .*resident" 2>/dev/null || true; sleep 0.2; }
