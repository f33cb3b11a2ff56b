//! Inventories people already have, converted to drover's `inventory.toml`.
//!
//! It holds the Ansible importer (INI and YAML: parsing, host ranges,
//! variable mapping, the report of what was not imported) and the writer
//! of the result. It imports drover-spec only, for its diagnostics
//! ([`drover_spec::SpecError`]): never the controller, the state store, the
//! SSH transport or an async runtime, and it contacts no host.
//!
//! A separate crate so that the YAML parser it needs is not compiled into
//! `drover-spec` (every other crate's dependency) nor shipped to hosts. The
//! output is checked the only way that matters: it is TOML that
//! `drover_spec::Project::load` accepts (see the tests).
//!
//! Errors are [`drover_spec::SpecError`]s, the same miette diagnostics as
//! every other project file: the file, the line, and what to do.

// `SpecError` carries the offending file's text so miette can show the line;
// see drover-spec's lib.rs for why it is not boxed.
#![allow(clippy::result_large_err)]

pub mod ansible;
pub mod compose;
mod output;

pub(crate) use ansible::Src;

pub use output::{write_inventory, WriteError};
