//! A base's userland ([`Userland`]): Debian's as debootstrap leaves it, or
//! busybox only, made from it by `assets/userland-busybox.sh`.

use std::path::Path;

use crate::error::LabError;
use crate::kind::Userland;

const BUSYBOX: &str = include_str!("../assets/userland-busybox.sh");

/// What turns a Debian base into `userland` (hashed into its recipe).
pub(crate) fn recipe(userland: Userland) -> &'static str {
    match userland {
        Userland::Debian => "",
        Userland::Busybox => BUSYBOX,
    }
}

/// Make the freshly built base at `root` have `userland`. Runs chrooted
/// into it (under qemu-user for a foreign architecture).
pub(crate) fn configure(root: &Path, userland: Userland) -> Result<(), LabError> {
    match userland {
        Userland::Debian => Ok(()),
        Userland::Busybox => {
            crate::cmd::run("chroot", [root.as_os_str(), "/bin/sh".as_ref(), "-c".as_ref(), BUSYBOX.as_ref()])?;
            Ok(())
        }
    }
}
