# Everything a timed run needs: sourced by bench/compare.sh and, inside each
# measurement, by the `bash -c` that runs one tool (so no function has to be
# exported through the environment).
_lib_dir=$(dirname "${BASH_SOURCE[0]}")
source "$_lib_dir/common.sh"
source "$_lib_dir/drover.sh"
source "$_lib_dir/ansible.sh"
source "$_lib_dir/pyinfra.sh"
