//! A write the host's storage refused, or would have refused (the agent's
//! free-space check before a transition), as data: which filesystem, how
//! much it had free, what the transition needed there, and where that left
//! the host. The run's table, `--json` and the dashboard show it as the
//! host's failure reason; [`std::fmt::Display`] is that one line, the same
//! on both sides of the wire.

use serde::{Deserialize, Serialize};

/// What the filesystem said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorageError {
    /// Not enough free space (`ENOSPC`, `EDQUOT`), or the check before the
    /// transition found too little.
    NoSpace,
    /// The filesystem is mounted read-only (`EROFS`).
    ReadOnly,
    /// The device failed the write (`EIO`).
    Io,
}

/// Where the failure left the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorageLeft {
    /// Refused before the transition's first write to the live tree:
    /// nothing managed was changed.
    Untouched,
    /// The transition was undone: the host is wholly on the generation it
    /// was on before.
    RolledBack,
    /// Undoing the transition failed too (the filesystem still refuses):
    /// the next session that takes the host lock finishes the undo.
    Unfinished,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageFailure {
    pub error: StorageError,
    /// The mount point of the filesystem, as the agent sees it.
    pub mount: String,
    /// Bytes free on it for the agent (`statvfs`: available blocks × fragment size).
    pub free: u64,
    /// Bytes the transition needs on it: its new files, the copies of
    /// replaced files it keeps for rollback, and a margin (0: not known).
    pub needed: u64,
    /// What was being written (a managed path, or one of the agent's own
    /// files); empty for the check before the transition.
    pub writing: String,
    pub left: StorageLeft,
    /// The generation the host is on (see [`StorageLeft`]).
    pub generation: Option<u64>,
}

/// `1.5 MiB (1572864 bytes)`: readable, and exact for whoever compares.
pub fn bytes_text(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {} ({n} bytes)", UNITS[unit])
}

impl std::fmt::Display for StorageFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.error {
            StorageError::NoSpace => "not enough space on",
            StorageError::ReadOnly => "read-only filesystem",
            StorageError::Io => "I/O error on",
        };
        write!(f, "{what} {}: {} free", self.mount, bytes_text(self.free))?;
        if self.needed > 0 {
            write!(f, ", the transition needs {}", bytes_text(self.needed))?;
        }
        if !self.writing.is_empty() {
            write!(f, " (writing {})", self.writing)?;
        }
        let generation = self.generation.map_or_else(|| "none".to_string(), |g| g.to_string());
        let fix = match self.error {
            StorageError::NoSpace => "free space there and apply again",
            StorageError::ReadOnly => "make it writable and apply again",
            StorageError::Io => "check the device and apply again",
        };
        match self.left {
            StorageLeft::Untouched => write!(f, "; nothing was changed, the host stays on generation {generation}; {fix}"),
            StorageLeft::RolledBack => write!(f, "; the change was rolled back, the host is on generation {generation}; {fix}"),
            StorageLeft::Unfinished => write!(
                f,
                "; rolling the change back failed too: the next session finishes it and puts the host back on generation {generation}; {fix}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_the_mount_free_and_needed_bytes() {
        let f = StorageFailure {
            error: StorageError::NoSpace,
            mount: "/srv/tiny".into(),
            free: 12288,
            needed: 2 << 20,
            writing: String::new(),
            left: StorageLeft::Untouched,
            generation: Some(3),
        };
        let line = f.to_string();
        assert_eq!(
            line,
            "not enough space on /srv/tiny: 12.0 KiB (12288 bytes) free, the transition needs 2.0 MiB (2097152 bytes); nothing was changed, the host stays on generation 3; free space there and apply again"
        );
    }
}
