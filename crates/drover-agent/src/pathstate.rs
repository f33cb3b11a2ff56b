//! What occupies a managed path, as one value type for every stage that
//! looks at one: [`Found`] is what `lstat` says (a file known by its stat
//! identity, see [`crate::safefs`]), [`PathState`] the same once a file's
//! content is hashed: comparable with what a manifest wants, and what the
//! transition journals record.
//!
//! A leaf: it imports nothing of the agent.

use std::fs;
use std::os::unix::fs::MetadataExt;

use drover_proto::Hash;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What occupies a path, a regular file's content known as `C`. Owners are
/// numeric here: names are resolved against the host's own account files
/// before a transition starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathState<C = Hash> {
    Absent,
    File {
        /// Its hash ([`PathState`]) or its stat identity ([`Found`]).
        content: C,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Symlink {
        target: String,
    },
    /// A directory. Managed ones are compared by mode and owner; directories
    /// drover creates as parents get 0755 and the agent's owner.
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A device, socket or fifo: drover never replaces, removes or looks
    /// into these.
    Special,
    /// Beneath a symlink at `at`: what is really there is not looked at,
    /// since drover never follows a symlink among a path's parents.
    BeneathSymlink {
        at: String,
    },
}

/// What `lstat` says is at a path: a file by its stat identity, not yet
/// hashed (the stat cache may say its hash without reading it).
pub type Found = PathState<StatId>;

/// The identity of a file's inode and content as far as `lstat` can tell.
/// If it has not changed since we hashed the file, the hash still holds: any
/// write, chmod, chown or replacement changes ctime or the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatId {
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl StatId {
    pub fn of(md: &fs::Metadata) -> StatId {
        StatId {
            ino: md.ino(),
            size: md.size(),
            mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
            ctime_ns: i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec()),
        }
    }

    pub fn from_stat(st: &rustix::fs::Stat) -> StatId {
        StatId {
            ino: st.st_ino,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime_ns: i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec),
            ctime_ns: i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec),
        }
    }
}

/// How a [`PathState`] is written in `journal.json` and `undo.json`: the
/// shape agents have always written, so that a journal an earlier agent
/// left (an interrupted transition, the undo record) still reads. There, a
/// special file and a path beneath a symlink are one `Other`, in words.
#[derive(Serialize, Deserialize)]
enum Stored {
    Absent,
    File { hash: Hash, mode: u32, uid: u32, gid: u32 },
    Symlink { target: String },
    Dir { mode: u32, uid: u32, gid: u32 },
    Other { what: String },
}

const SPECIAL: &str = "a special file";
const BENEATH: &str = "beneath the symlink ";

impl Serialize for PathState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let stored = match self.clone() {
            PathState::Absent => Stored::Absent,
            PathState::File { content, mode, uid, gid } => Stored::File { hash: content, mode, uid, gid },
            PathState::Symlink { target } => Stored::Symlink { target },
            PathState::Dir { mode, uid, gid } => Stored::Dir { mode, uid, gid },
            PathState::Special => Stored::Other { what: SPECIAL.into() },
            PathState::BeneathSymlink { at } => Stored::Other { what: format!("{BENEATH}{at}") },
        };
        stored.serialize(s)
    }
}

impl<'de> Deserialize<'de> for PathState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Stored::deserialize(d)? {
            Stored::Absent => PathState::Absent,
            Stored::File { hash, mode, uid, gid } => PathState::File { content: hash, mode, uid, gid },
            Stored::Symlink { target } => PathState::Symlink { target },
            Stored::Dir { mode, uid, gid } => PathState::Dir { mode, uid, gid },
            Stored::Other { what } => match what.strip_prefix(BENEATH) {
                Some(at) => PathState::BeneathSymlink { at: at.to_string() },
                None => PathState::Special,
            },
        })
    }
}
