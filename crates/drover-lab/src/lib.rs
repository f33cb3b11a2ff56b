//! A local lab fleet: real OpenSSH hosts on one machine, for trying drover
//! and for testing and benchmarking it, as `kind` does for Kubernetes.
//! It knows nothing of drover's projects, protocol or agent (it must not
//! import them): a lab is hosts, and anything that speaks SSH can use it.
//!
//! Each host has its own network namespace and address, its own root file
//! system (an overlay on a shared Debian base built once with debootstrap),
//! a real `sshd` supervised by runit, systemd or OpenRC ([`Init`]), a root login by key and a non-root
//! user `op` with a password and sudo. A host's [`Kind`] is its init, its
//! architecture (arm64 hosts run under qemu-user) and its userland (Debian's
//! or busybox only); one lab may mix kinds. Faults (delay, loss, rate, link cut,
//! freeze) are injected per host. A host may be made able to run containers
//! (runc, dockerd: [`Kind::with_containers`], see [`containers`]). Nothing a lab creates can reach outside
//! the machine, and `down` removes all of it, even after a crash.
//!
//! ```no_run
//! # fn main() -> Result<(), drover_lab::LabError> {
//! let lab = drover_lab::Lab::open("lab")?;
//! for host in lab.hosts() {
//!     println!("{} {} {}", host.name, host.address, host.host_key);
//! }
//! # Ok(()) }
//! ```
//!
//! Layout: [`config`] holds the naming rules every other module follows;
//! [`up`](mod@up) and [`down`](mod@down) create and remove; [`fault`] defines
//! the faults and [`wire`] emulates links when the kernel cannot. See
//! `docs/lab.md` for the user-facing description.

mod base;
mod ca;
mod cgroup;
mod cmd;
pub mod config;
pub mod containers;
pub mod down;
mod error;
pub mod fault;
mod host;
mod init;
mod inject;
mod kind;
mod lab;
mod limits;
pub mod mirror;
mod net;
mod preflight;
mod reboot;
mod state;
mod sys;
pub mod up;
mod userland;
pub mod wire;

pub use base::{base_dir, recipe_id, SUITE, USER};
pub use config::{EnvVars, LabConfig, NetemMode, WireHelper, DEFAULT_LAB, MAX_HOSTS};
pub use down::{down, down_all, DownReport};
pub use error::LabError;
pub use fault::{Fault, Netem};
pub use host::ssh_banner;
pub use init::Init;
pub use kind::{Arch, Kind, Userland};
pub use lab::{HostState, HostStatus, Lab, LabHost};
pub use limits::RaisedLimit;
pub use reboot::REBOOT_TIMEOUT;
pub use up::{up, Progress, UpReport};
