//! The containers' `/etc/hosts` of a project, as a managed file.

impl super::Project {
    /// The containers' `/etc/hosts` as a managed file (see
    /// `crate::container::hosts`). A placement that fails leaves it with
    /// localhost only: the failure is reported where the placement is used.
    pub(super) fn container_hosts(&self) -> (drover_proto::Entry, super::BlobSource) {
        let hosts: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
        let empty = crate::instances::Endpoints::new();
        let text = crate::container::hosts::text(self.endpoints().unwrap_or(&empty), &hosts);
        let bytes = std::sync::Arc::new(text.into_bytes());
        let hash = drover_proto::Hash(*blake3::hash(&bytes).as_bytes());
        let e = drover_proto::Entry {
            path: crate::container::hosts::HOSTS_FILE.into(),
            kind: drover_proto::EntryKind::File { size: bytes.len() as u64, hash },
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
            source: None,
        };
        (e, super::BlobSource::Bytes(bytes))
    }
}
