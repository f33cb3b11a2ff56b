//! drover-import's integration tests, one binary (as ripgrep's): realistic
//! Ansible inventories (INI and YAML) imported whole, their reports, the
//! round trip through drover's own loader, and malformed input.

mod support;

mod ansible;
mod compose;
mod compose_prop;
