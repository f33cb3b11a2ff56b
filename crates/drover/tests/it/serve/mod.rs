//! `drover serve` end to end: a real lab fleet, the real binary, and the
//! dashboard driven in headless Chromium (Debian's `chromium` and
//! `chromium-driver`, over WebDriver). The grid shows every host, a host
//! taken down turns unreachable on the open page without a reload, drift
//! shows (report) or is healed (heal), `/metrics` parses as Prometheus
//! text with per-host series, and only an operator token with the CSRF
//! value can act.
//!
//! By topic: the live page and metrics (`live`), healing (`heal`), who
//! may act (`auth`), actions confirmed first (`confirm`), drained hosts
//! (`drained`), hosts behind the project (`behind`; healed or held:
//! `heal_behind`), and the runs page
//! (`runs`).

mod auth;
mod behind;
mod confirm;
mod drained;
mod failure;
mod heal;
mod heal_behind;
mod live;
mod runs;
