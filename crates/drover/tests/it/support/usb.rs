//! An air-gapped host's USB stick: what an operator carries to a host
//! with no network for `drover-agent install`.

use std::fs;
use std::path::{Path, PathBuf};

use super::{drover_in, ok, Fleet};

/// A signed bundle of `f`'s project: a fresh key pair made with `bundle
/// keygen`, then `bundle build` and `bundle sign`, as an operator does.
/// Returns the directory holding them (keep it), the bundle and the public key.
pub fn signed_bundle(f: &Fleet) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = (keys.path().join("ops.key"), keys.path().join("ops.pub"));
    ok(&drover_in(
        keys.path(),
        &["bundle", "keygen", "--key", key.to_str().unwrap(), "--pub", public.to_str().unwrap()],
    ));
    let bundle = keys.path().join("site.drv");
    ok(&f.drover(&["bundle", "build", "-o", bundle.to_str().unwrap()]));
    ok(&drover_in(Path::new("/"), &["bundle", "sign", bundle.to_str().unwrap(), "--key", key.to_str().unwrap()]));
    (keys, bundle, public)
}

/// Put the signed `bundle`, its signature (`site.drv`, `site.drv.minisig`),
/// the `public` key (`ops.pub`) and `bundle agent`'s output (the launcher
/// `drover-agent` and one agent per machine) in host `i`'s
/// `/media/usb/DIR` ("" for `/media/usb` itself); that directory.
pub fn usb_stick(f: &Fleet, i: usize, bundle: &Path, public: &Path, dir: &str) -> PathBuf {
    let stick = f.host_file(i, "/media/usb").join(dir);
    fs::create_dir_all(&stick).unwrap();
    fs::copy(bundle, stick.join("site.drv")).unwrap();
    fs::copy(drover_bundle::sig_path(bundle), stick.join("site.drv.minisig")).unwrap();
    fs::copy(public, stick.join("ops.pub")).unwrap();
    let out = stick.join("drover-agent");
    let (b, p, o) = (bundle.to_str().unwrap(), public.to_str().unwrap(), out.to_str().unwrap());
    ok(&drover_in(Path::new("/"), &["bundle", "agent", b, "--pubkey", p, "-o", o]));
    stick
}
