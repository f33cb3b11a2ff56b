# drover with its defaults (parallel 512, magic rollback: each changed host is
# confirmed over a second connection). Rollback is `drover rollback`: the
# previous generation is kept on every host, so going back ships nothing;
# the project directory stays at v2, as after a real bad release.
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
