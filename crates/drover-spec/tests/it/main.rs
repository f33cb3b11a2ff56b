//! drover-spec's integration tests, one binary (as ripgrep's): real
//! project directories loaded and compiled through the public API: the
//! quickstart scaffold and broken variants of it, `fleet` in templates,
//! service instances and placement, and roles' setup declarations.

mod support;

mod container_hosts;
mod containers;
mod fleet;
mod instances;
mod jump;
mod limits;
mod mistakes;
mod order;
mod quickstart;
mod setup;
