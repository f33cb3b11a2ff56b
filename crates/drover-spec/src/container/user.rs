//! An image service's `user` (the service file's, else the image config's)
//! resolved as `docker run` does: numbers as they are, names through the
//! image's own `/etc/passwd` and `/etc/group` (never the host's or the
//! controller's). `name` alone takes the user's primary group; a uid that
//! the image's passwd does not name gets gid 0.

use super::{ImageFile, ImageFileKind};
use crate::project::BlobSource;

/// The bytes of `path` in the image (symlinks are not followed: passwd and
/// group are regular files in every image that has them).
fn read(files: &[ImageFile], path: &str) -> Option<String> {
    let f = files.iter().find(|f| f.path == path)?;
    let ImageFileKind::File { bytes, .. } = &f.kind else { return None };
    let b = match bytes {
        BlobSource::File(p) => std::fs::read(p).ok()?,
        BlobSource::Bytes(b) => b.to_vec(),
    };
    String::from_utf8(b).ok()
}

/// `name:x:uid:gid:...` lines: (name, id, gid field).
fn entries(text: &str) -> impl Iterator<Item = (&str, u32, Option<u32>)> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        Some((*f.first()?, f.get(2)?.parse().ok()?, f.get(3).and_then(|g| g.parse().ok())))
    })
}

/// Why a user could not be resolved (the message names the file).
#[derive(Debug, PartialEq, Eq)]
pub enum UserError {
    NoUser(String),
    NoGroup(String),
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserError::NoUser(u) => write!(f, "user {u:?} is not in the image's /etc/passwd"),
            UserError::NoGroup(g) => write!(f, "group {g:?} is not in the image's /etc/group"),
        }
    }
}

/// `user[:group]` → (uid, gid) inside the image whose files are `files`.
pub fn resolve(spec: &str, files: &[ImageFile]) -> Result<(u32, u32), UserError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read(files, "/etc/passwd").unwrap_or_default();
    let (uid, primary) = match user.parse::<u32>() {
        Ok(n) => (n, entries(&passwd).find(|e| e.1 == n).and_then(|e| e.2)),
        Err(_) => {
            let e = entries(&passwd).find(|e| e.0 == user).ok_or_else(|| UserError::NoUser(user.into()))?;
            (e.1, e.2)
        }
    };
    let gid = match group {
        None => primary.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let groups = read(files, "/etc/group").unwrap_or_default();
                let gid = entries(&groups).find(|e| e.0 == g).map(|e| e.1);
                gid.ok_or_else(|| UserError::NoGroup(g.into()))?
            }
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn file(path: &str, text: &str) -> ImageFile {
        let bytes = Arc::new(text.as_bytes().to_vec());
        let hash = drover_proto::Hash(*blake3::hash(&bytes).as_bytes());
        ImageFile {
            path: path.into(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            kind: ImageFileKind::File { hash, size: bytes.len() as u64, bytes: BlobSource::Bytes(bytes) },
        }
    }

    #[test]
    fn names_resolve_through_the_images_own_passwd_and_group_numbers_stay_numbers() {
        let files = [
            file("/etc/group", "root:x:0:\nwww:x:33:\nstaff:x:50:\n"),
            file("/etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1001:33::/srv:/bin/false\n"),
        ];
        assert_eq!(resolve("app", &files), Ok((1001, 33)), "a name takes its primary group");
        assert_eq!(resolve("app:staff", &files), Ok((1001, 50)));
        assert_eq!(resolve("1001", &files), Ok((1001, 33)), "a known uid takes its primary group");
        assert_eq!(resolve("4242", &files), Ok((4242, 0)), "an unknown uid gets gid 0, as Docker's");
        assert_eq!(resolve("4242:7", &files), Ok((4242, 7)));
        assert_eq!(resolve("ghost", &files), Err(UserError::NoUser("ghost".into())));
        assert_eq!(resolve("app:ghosts", &files), Err(UserError::NoGroup("ghosts".into())));
        assert_eq!(resolve("nobody", &[]), Err(UserError::NoUser("nobody".into())), "no passwd: names fail");
    }
}
