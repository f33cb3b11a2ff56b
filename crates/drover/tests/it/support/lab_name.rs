//! Lab names held by this test process.
//!
//! A lab's name is machine-wide, and every test of the suite runs in one
//! process (one binary, several test threads): two tests that picked the
//! same name would bring each other's lab down. Claiming a name that a
//! running test holds panics, naming it, instead.

use std::collections::BTreeSet;
use std::sync::Mutex;

static HELD: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// A lab name this test holds until the value is dropped.
pub struct LabName(String);

impl LabName {
    pub fn claim(name: &str) -> LabName {
        let fresh = HELD.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string());
        assert!(fresh, "lab name {name:?} is already taken by another test of this run: give each test its own");
        LabName(name.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Drop for LabName {
    fn drop(&mut self) {
        HELD.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.0);
    }
}
