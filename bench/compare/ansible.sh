# Ansible in its fastest idiom, two flavours on the same playbook:
#   ansible  ansible-core: strategy free, pipelining, ControlPersist 10 min
#            (back-to-back phases reuse the SSH masters), no -C (compressing
#            on loopback only burns the shared CPU), no facts.
#   mitogen  the same with mitogen's mitogen_free strategy (its own SSH
#            connection and on-host Python interpreter, cached modules).
# The 50 small files travel as one deterministic archive (`unarchive`,
# which compares it with the files on the host); rsync/`synchronize` would
# need rsync in the lab's cached base image. The service restarts through a
# handler, notified only by a change under /etc/bench or to its run file.
# Directories are made by one `command` with `creates` (one module run, not
# one `file` per directory). `forks` is passed in (the driver tunes it).
# `timeout = 60`: with 100 hosts connecting at once on a loaded 2-core box,
# mitogen hit the default 10 s connect timeout on 9 hosts (kept as
# results/compare-100h-20261129/mitogen-100-tune-first-timeout10s.log);
# drover's own per-step timeout is 60 s.
# Rollback: re-run the previous version of the project.
# Sourced by bench/compare.sh.

setup_ansible_common() { # dir strategy forks extra_defaults
    local d=$1
    mkdir -p "$d/files" "$d/templates" "$d/cp"
    cp "$CONTENT/blob.bin" "$d/files/"
    printf '# rendered for {{ inventory_hostname }}\ngreeting = "{{ greeting }}"\n' > "$d/templates/app.conf.j2"
    cat > "$d/ansible.cfg" <<CFG
[defaults]
forks = $3
strategy = $2
$4
host_key_checking = False
timeout = 60
gathering = explicit
interpreter_python = /usr/bin/python3
stdout_callback = ansible.builtin.default
retry_files_enabled = False

[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=600s
control_path_dir = $d/cp
ssh_common_args = -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no
CFG
    {
        echo "[bench]"
        lab_hosts | while read -r name addr; do echo "$name ansible_host=$addr"; done
        echo
        echo "[bench:vars]"
        echo "ansible_user=root"
        echo "ansible_ssh_private_key_file=$LAB_KEY"
        echo "greeting=hello"
    } > "$d/hosts.ini"
    local mkdirs="mkdir -p /etc/bench/small /opt/bench /etc/sv/benchapp" creates=/etc/sv/benchapp
    local enable="ansible.builtin.file: { src: /etc/sv/benchapp, dest: /etc/service/benchapp, state: link }"
    local restart='ansible.builtin.shell: for i in $(seq 50); do sv restart benchapp && exit 0; sleep 0.2; done; exit 1'
    if [ "${INIT:-runit}" = systemd ]; then
        mkdirs="mkdir -p /etc/bench/small /opt/bench" creates=/etc/bench/small
        enable="ansible.builtin.systemd_service: { name: benchapp, enabled: true, state: started, daemon_reload: true }"
        restart="ansible.builtin.systemd_service: { name: benchapp, state: restarted, daemon_reload: true }"
    fi
    cat > "$d/site.yml" <<YML
- hosts: bench
  gather_facts: false
  tasks:
    - name: directories
      ansible.builtin.command:
        cmd: $mkdirs
        creates: $creates
    - name: small files (one archive)
      ansible.builtin.unarchive: { src: files/small.tar, dest: /etc/bench/small/ }
      notify: restart benchapp
    - name: large file
      ansible.builtin.copy: { src: files/blob.bin, dest: /opt/bench/blob.bin, mode: "0644" }
    - name: template
      ansible.builtin.template: { src: templates/app.conf.j2, dest: /etc/bench/app.conf, mode: "0644" }
      notify: restart benchapp
    - name: service definition
      ansible.builtin.copy:
        dest: $(service_path)
        mode: "0755"
        content: "$(service_text | sed 's/$/\\n/' | tr -d '\n')"
      notify: restart benchapp
    - name: service enabled
      $enable
  handlers:
    - name: restart benchapp
      $restart
YML
}
set_forks() { sed -i "s/^forks = .*/forks = $2/" "$1/ansible.cfg"; } # dir forks

setup_ansible() { setup_ansible_common "$1" free "$2" ""; } # dir forks
setup_mitogen() { # dir forks
    local plugins
    plugins=$("$VENV/bin/python" -c 'import ansible_mitogen, os; print(os.path.dirname(ansible_mitogen.__file__))')/plugins/strategy
    setup_ansible_common "$1" mitogen_free "$2" "strategy_plugins = $plugins"
}
version_ansible() { make_tar "$CONTENT/$2/small" "$1/files/small.tar"; } # dir version
version_mitogen() { version_ansible "$@"; }
run_ansible() { (cd "$1" && set_forks . "$2" && "$VENV/bin/ansible-playbook" -i hosts.ini site.yml); } # dir forks
run_mitogen() { run_ansible "$@"; }
prepare_rollback_ansible() { version_ansible "$1" v1; }
prepare_rollback_mitogen() { version_ansible "$1" v1; }
rollback_ansible() { run_ansible "$@"; }
rollback_mitogen() { run_ansible "$@"; }
