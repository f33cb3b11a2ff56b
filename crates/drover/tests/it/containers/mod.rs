//! Services from images (issue #29, items 2 and 3; docs/containers.md):
//! the bundle drover compiles, run by the controller's own runc
//! (`runc.rs`: fast, root only), and image services on lab hosts end to
//! end (`lab.rs`, `registry.rs`, `compose.rs`); one image on hosts of two
//! architectures (`arches.rs`); day-2 commands on a fresh checkout
//! (`fresh.rs`).

mod arches;
mod compose;
mod fresh;
mod lab;
mod owners;
mod registry;
mod runc;

use std::path::Path;

/// A busybox-static root filesystem in `dir`: the controller's
/// `/bin/busybox` (Debian's busybox-static) and the applet links the tests
/// use, plus `/www/index.html` saying `page`.
pub fn busybox_rootfs(dir: &Path, page: &str) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy("/usr/bin/busybox", dir.join("bin/busybox"))
        .expect("busybox-static on the controller (scripts/deps)");
    for applet in ["sh", "httpd", "wget", "id", "cat", "sleep", "echo", "ls", "false"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), page).unwrap();
}

/// One HTTP/1.0 GET of `/` at `addr`: the body, or `None` when nothing answers.
pub fn http_get(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// Poll [`http_get`] until the body is `want` (10 s at most).
pub fn wait_for_body(addr: &str, want: &str) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(10) {
        if http_get(addr).as_deref() == Some(want) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}
