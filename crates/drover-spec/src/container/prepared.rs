//! Images from registries and image files (`image = "registry/app:1.4"`,
//! `image = { file = "images/app.tar" }`), as the controller prepared them.
//!
//! drover-spec never talks to a registry and does not depend on drover-oci:
//! before it loads a project, the controller pulls each image through
//! `images.lock`, flattens it into the project's image cache
//! (`.drover/images/files/<blake3>`), and writes one *prepared image* per
//! source here: `.drover/images/prepared/<key>.json` ([`PreparedImage`],
//! a format this module owns). [`PreparedSource`] reads it, so a project
//! loads the same offline (bundle install, `drover logs`) as it did when
//! the image was pulled. docs/architecture.md, "Images".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use drover_proto::Hash;
use serde::{Deserialize, Serialize};

use super::{FlatImage, Flattened, ImageConfig, ImageFile, ImageFileKind, ImageSource};
use crate::diag::SpecError;
use crate::project::BlobSource;

/// Where prepared images live, relative to the project.
pub const PREPARED_DIR: &str = ".drover/images/prepared";
/// Bumped when [`PreparedImage`] changes shape.
pub const PREPARED_FORMAT: u32 = 1;

/// The key of a source: what the service file writes, with its kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SourceKey {
    /// A registry reference, as written.
    Registry(String),
    /// A file, relative to the project, as written.
    File(String),
}

impl SourceKey {
    /// `<PREPARED_DIR>/<blake3 of the key>.json`.
    pub fn path(&self, project: &Path) -> PathBuf {
        let k = match self {
            SourceKey::Registry(r) => format!("registry:{r}"),
            SourceKey::File(f) => format!("file:{f}"),
        };
        project.join(PREPARED_DIR).join(format!("{}.json", blake3::hash(k.as_bytes()).to_hex()))
    }

    pub fn describe(&self) -> &str {
        match self {
            SourceKey::Registry(r) | SourceKey::File(r) => r,
        }
    }
}

/// One image as prepared for this run: for each architecture the run needs
/// (`x86_64`, `aarch64`, as hosts report them), the flattened files and
/// the config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreparedImage {
    pub format: u32,
    /// Where the files' bytes are: `<files_dir>/<blake3 hex>`.
    pub files_dir: PathBuf,
    pub arches: BTreeMap<String, PreparedArch>,
    /// Architectures the run asked for that the image does not have, with
    /// what it has (`linux/amd64`): a host of one gets a message saying
    /// so, a fleet whose other hosts run the image is not stopped by it.
    #[serde(default)]
    pub missing: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreparedArch {
    /// The manifest digest it came from (shown by `plan`).
    pub manifest: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value`, in the image's order.
    pub env: Vec<String>,
    /// As the image config says it: `name`, `uid`, `uid:gid`, `name:group`.
    pub user: String,
    pub workdir: String,
    pub files: Vec<PreparedFile>,
}

/// One path of the image: `/`-rooted, with its owner and mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreparedFile {
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(flatten)]
    pub kind: PreparedKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum PreparedKind {
    Dir,
    /// A regular file (a hard link is written as a file with its target's
    /// content: the generation holds no hard links).
    File {
        hash: String,
        size: u64,
    },
    Symlink {
        target: String,
    },
}

impl PreparedImage {
    pub fn write(&self, key: &SourceKey, project: &Path) -> std::io::Result<()> {
        let path = key.path(project);
        std::fs::create_dir_all(path.parent().expect("a dir"))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).expect("serializes"))?;
        std::fs::rename(&tmp, &path)
    }
}

/// The registry and file image sources of the project's service files,
/// each with the first service naming it: what the controller pulls before
/// loading. A file that does not parse is left to the load, which reports
/// it with its line.
pub fn sources(project: &Path) -> BTreeMap<SourceKey, String> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(project.join("services")) else { return out };
    let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        let Some(name) = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".toml")) else {
            continue;
        };
        let Ok(v) = std::fs::read_to_string(&p).unwrap_or_default().parse::<toml::Table>() else { continue };
        let key = match v.get("image") {
            Some(toml::Value::String(r)) => SourceKey::Registry(r.clone()),
            Some(toml::Value::Table(t)) => match (t.get("file"), t.get("dir")) {
                (Some(toml::Value::String(f)), None) => SourceKey::File(f.clone()),
                _ => continue,
            },
            _ => continue,
        };
        out.entry(key).or_insert_with(|| name.to_string());
    }
    out
}

/// A cache-reading [`ImageSource`]: the prepared image of `key`.
pub struct PreparedSource {
    pub key: SourceKey,
}

fn hash_of(hex: &str) -> Option<Hash> {
    let b = blake3::Hash::from_hex(hex).ok()?;
    Some(Hash(*b.as_bytes()))
}

impl ImageSource for PreparedSource {
    fn describe(&self) -> String {
        self.key.describe().to_string()
    }

    /// Every architecture it was prepared for (`super::arches` picks
    /// each host's).
    fn flatten(&self, project: &Path, _limits: &crate::Limits) -> Result<Flattened, SpecError> {
        let path = self.key.path(project);
        let pull = match &self.key {
            SourceKey::Registry(r) => format!("run `drover plan` or `drover image pull {r}` (it needs the registry)"),
            SourceKey::File(f) => format!("run `drover plan`, or `drover image pull --file {f}`"),
        };
        let text = std::fs::read(&path).map_err(|_| {
            SpecError::file(&path, format!("image {} has not been pulled into .drover/images", self.describe()), &pull)
        })?;
        let img: PreparedImage = serde_json::from_slice(&text)
            .ok()
            .filter(|i: &PreparedImage| i.format == PREPARED_FORMAT)
            .ok_or_else(|| SpecError::file(&path, "not a prepared image of this drover", &pull))?;
        let mut by_arch = BTreeMap::new();
        for (arch, a) in &img.arches {
            by_arch.insert(arch.clone(), flat(a, &img.files_dir, &path, &pull)?);
        }
        Ok(Flattened { by_arch, missing: img.missing })
    }
}

/// One architecture of a prepared image.
fn flat(a: &PreparedArch, files_dir: &Path, path: &Path, pull: &str) -> Result<FlatImage, SpecError> {
    let mut files = Vec::with_capacity(a.files.len());
    for f in &a.files {
        let kind = match &f.kind {
            PreparedKind::Dir => ImageFileKind::Dir,
            PreparedKind::Symlink { target } => ImageFileKind::Symlink(target.clone()),
            PreparedKind::File { hash, size } => {
                let h = hash_of(hash).ok_or_else(|| SpecError::file(path, format!("bad hash {hash:?}"), pull))?;
                ImageFileKind::File { hash: h, size: *size, bytes: BlobSource::File(files_dir.join(hash)) }
            }
        };
        files.push(ImageFile { path: f.path.clone(), mode: f.mode, uid: f.uid, gid: f.gid, kind });
    }
    let env = a
        .env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect();
    let config = ImageConfig {
        entrypoint: a.entrypoint.clone(),
        cmd: a.cmd.clone(),
        env,
        user: Some(a.user.clone()).filter(|u| !u.is_empty()),
        workdir: Some(a.workdir.clone()).filter(|w| !w.is_empty()),
    };
    Ok(FlatImage { files, config })
}
