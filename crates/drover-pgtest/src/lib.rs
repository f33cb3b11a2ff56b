//! Tests only (a dev-dependency; it must never be a dependency of a crate
//! that ships). A real PostgreSQL server for tests: Debian's `postgresql` binaries
//! (`/usr/lib/postgresql/<version>/bin`), a new cluster in a temp dir, on a
//! free loopback port. No mocks: the state backend is tested against the
//! server it will meet.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root (the
//! lab tests must) the cluster belongs to the `postgres` user and every
//! server command runs through `runuser -u postgres --`.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// A running cluster; stopped and deleted on drop.
pub struct PgCluster {
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    port: u16,
    options: String,
    next_db: AtomicUsize,
}

fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DROVER_PG_BIN") {
        return d.into();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.filter_map(|e| Some(e.ok()?.path().join("bin"))).filter(|p| p.join("initdb").exists()).collect())
        .unwrap_or_default();
    versions.sort();
    versions.pop().expect(
        "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: install Debian's `postgresql` (bash scripts/deps)",
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `prog args…`, as `postgres` when we are root.
fn server_cmd(prog: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(prog);
        c
    } else {
        Command::new(prog)
    }
}

fn run(mut c: Command, what: &str) {
    let out = c.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chown_to_postgres(p: &Path) {
    if is_root() {
        run(
            {
                let mut c = Command::new("chown");
                c.arg("-R").arg("postgres:").arg(p);
                c
            },
            "chown",
        );
    }
}

impl PgCluster {
    /// initdb + pg_ctl start on a free port (retried if another process
    /// took the port in between).
    pub fn start() -> PgCluster {
        PgCluster::start_with("")
    }

    /// [`PgCluster::start`] with more server options (`-c name=value …`,
    /// e.g. TLS settings).
    pub fn start_with(options: &str) -> PgCluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("drover-pg-").tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        chown_to_postgres(dir.path());
        let mut c = server_cmd(&bin.join("initdb"));
        c.args(["-D"]).arg(&data).args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]);
        run(c, "initdb");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            if pg_ctl_start(&bin, dir.path(), port, options) {
                return PgCluster { dir: Some(dir), bin, port, options: options.into(), next_db: AtomicUsize::new(0) };
            }
            last = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
        }
        panic!("pg_ctl start failed 5 times; server log:\n{last}");
    }

    /// Start the server again after [`PgCluster::stop`], on the same port
    /// with the same data (a database that comes back).
    pub fn restart(&self) {
        let dir = self.dir.as_ref().expect("a live cluster");
        if !pg_ctl_start(&self.bin, dir.path(), self.port, &self.options) {
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            panic!("pg_ctl start (again, port {}) failed; server log:\n{log}", self.port);
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL of database `db` (created if needed is the caller's job: see
    /// [`PgCluster::fresh_db`]).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable", self.port)
    }

    /// A new, empty database; its URL.
    pub fn fresh_db(&self) -> String {
        let n = self.next_db.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}_{n}", std::process::id());
        let mut c = Command::new(self.bin.join("createdb"));
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", &name]);
        run(c, "createdb");
        self.url(&name)
    }

    /// Stop the server now (a test of a database lost mid-run); `drop`
    /// still deletes the directory.
    pub fn stop(&self) {
        if let Some(dir) = &self.dir {
            let mut c = server_cmd(&self.bin.join("pg_ctl"));
            c.arg("-D").arg(dir.path().join("data")).args(["-m", "immediate", "-w", "stop"]);
            let _ = c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
        drop(self.dir.take());
    }
}

/// `pg_ctl start` of the cluster in `dir` on `port`; did it come up?
fn pg_ctl_start(bin: &Path, dir: &Path, port: u16, options: &str) -> bool {
    let mut c = server_cmd(&bin.join("pg_ctl"));
    c.arg("-D").arg(dir.join("data")).arg("-l").arg(dir.join("server.log")).args(["-w", "-t", "60", "-o"]).arg(format!(
        "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c full_page_writes=off -c max_connections=200 {options}",
        dir.display()
    ));
    c.arg("start");
    c.stdin(Stdio::null()).output().expect("pg_ctl").status.success()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

static SHARED: OnceLock<PgCluster> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(c) = SHARED.get() {
        c.stop();
        if let Some(d) = &c.dir {
            let _ = std::fs::remove_dir_all(d.path());
        }
    }
}

/// One cluster for the whole test process (each test takes a
/// [`PgCluster::fresh_db`]); stopped and deleted when the process exits.
pub fn shared() -> &'static PgCluster {
    SHARED.get_or_init(|| {
        let c = PgCluster::start();
        // SAFETY: `stop_shared` is a plain `extern "C" fn()` that touches
        // only a static initialised before registration.
        unsafe { libc::atexit(stop_shared) };
        c
    })
}
