//! Which requests a session may serve, decided here beside the requests
//! rather than in the agent's loop: the set a read-only session (`drover
//! plan`) answers, and the set that needs the host lock in a normal one.
//! Adding a request means placing it in these sets.

use crate::Request;

impl Request {
    /// May a read-only session (`Hello { read_only: true }`, what `drover
    /// plan` opens) serve this request? Only requests that read: `Diff` and
    /// `BundleDiff` read too (the candidate they leave can never be applied
    /// in such a session).
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Request::Check { .. }
                | Request::Diff { .. }
                | Request::BundleDiff { .. }
                | Request::CurrentManifest
                | Request::Status
                | Request::Logs { .. }
                | Request::ReadPaths { .. }
                | Request::Bye
                | Request::Detach
                | Request::Ping
        )
    }

    /// Does this request change the host, or prepare a change (`Diff`,
    /// `BundleDiff`, `Chunk`)? A normal session takes the host lock for it
    /// and keeps the lock for the rest of the session; a read-only one
    /// compares without it. `Exec` and `RelayServe` are neither this nor
    /// read-only: served without the lock, refused in a read-only session.
    pub fn changes_host(&self) -> bool {
        matches!(
            self,
            Request::Diff { .. }
                | Request::Chunk(_)
                | Request::Delta(_)
                | Request::Missing { .. }
                | Request::Apply { .. }
                | Request::Rollback { .. }
                | Request::Confirm { .. }
                | Request::Drain { .. }
                | Request::Undrain
                | Request::BundleDiff { .. }
                | Request::RelayFetch { .. }
                | Request::Reboot { .. }
        )
    }
}
