//! Helpers for the `drover serve` tests: the server as a child process,
//! plain HTTP requests, headless Chromium over WebDriver, a webhook
//! receiver, a Prometheus text parser.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::support::{Fleet, DROVER};

/// `drover serve` in the background; killed on drop.
pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    pub fn start(f: &Fleet, args: &[&str]) -> Server {
        Server::start_in(&f.project(), args)
    }

    /// For a project of the test's own (e.g. simulated hosts).
    pub fn start_in(project: &std::path::Path, args: &[&str]) -> Server {
        let mut c = Command::new(DROVER);
        c.arg("-C").arg(project).args(["serve", "--listen", "127.0.0.1:0"]).args(args);
        let mut child = c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().rsplit("http://").next().unwrap_or_default().to_string();
        assert!(addr.starts_with("127.0.0.1:"), "serve did not say where it listens: {line:?}");
        Server { child, addr }
    }

    /// SIGTERM, then how long it took to exit and its exit code (`None`:
    /// not within `limit`, then killed).
    pub fn terminate(&mut self, limit: Duration) -> (Duration, Option<i32>) {
        let pid = self.child.id().to_string();
        let t = Instant::now();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        while t.elapsed() < limit {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (t.elapsed(), st.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (t.elapsed(), None)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 request: (status, body).
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nContent-Length: {}\r\n", body.len());
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

pub fn get_json(addr: &str, path: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    let (code, body) = http(addr, "GET", path, headers, "");
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
}

/// Poll `f` until it gives `Some`, for at most `limit`.
pub async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Headless Chromium behind a chromedriver of our own; both end on drop.
pub struct Browser {
    driver: Child,
    client: Option<Client>,
}

impl Browser {
    pub async fn open() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) must be installed");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]}),
        );
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        let client = loop {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if start.elapsed() < Duration::from_secs(20) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot start chromium through chromedriver: {e}"),
            }
        };
        Browser { driver, client: Some(client) }
    }

    pub fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// The `data-state` of host `name`'s grid cell, if the cell is there.
    pub async fn cell_state(&self, name: &str) -> Option<String> {
        let cell = self.c().find(Locator::Css(&format!("#grid .cell[data-host='{name}']"))).await.ok()?;
        cell.attr("data-state").await.ok()?
    }

    pub async fn screenshot(&self, file: &str) {
        let png = self.c().screenshot().await.unwrap();
        // Every run takes them; DROVER_SCREENSHOTS=1 writes them where the
        // README shows them (docs/img), else beside the build (no dirty tree).
        let dir = match std::env::var_os("DROVER_SCREENSHOTS") {
            Some(_) => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/img"),
            None => std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        };
        let path = dir.join(file);
        std::fs::write(&path, png).unwrap();
    }

    pub async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The quickstart project with `n` simulated hosts `s1`..`sN`, applied once
/// (every host then shows `converged`: the fake supervisor of a simulated
/// host answers its HTTP health check). Returns (project, hosts' base
/// directory).
pub fn simulated(dir: &std::path::Path, n: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let (proj, hosts) = (crate::support::sim_project(dir, n), dir.join("hosts"));
    let out = Command::new(DROVER).arg("-C").arg(&proj).args(["apply", "--simulate"]).arg(&hosts).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (proj, hosts)
}

/// Short connect timeouts, so a downed host is found within one pass.
pub fn quick(f: &Fleet, extra: &str) {
    let p = f.project().join("drover.toml");
    let mut t = std::fs::read_to_string(&p).unwrap();
    t.push_str("connect-timeout = \"2s\"\n");
    t.push_str(extra);
    std::fs::write(&p, t).unwrap();
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

/// A minimal Prometheus text (0.0.4) parser: every line is a comment
/// (`# HELP`/`# TYPE` well-formed) or `name{labels} value`; panics otherwise.
pub fn parse_prometheus(text: &str) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(c) = line.strip_prefix("# ") {
            let f: Vec<&str> = c.splitn(3, ' ').collect();
            assert!(matches!(f[0], "HELP" | "TYPE") && f.len() == 3, "bad comment: {line}");
            if f[0] == "TYPE" {
                assert!(matches!(f[2], "gauge" | "counter" | "histogram"), "bad type: {line}");
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"))),
            None => (series, ""),
        };
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.is_empty(), "bad name: {line}");
        for kv in labels.split("\",").filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once("=\"").unwrap_or_else(|| panic!("bad label {kv}: {line}"));
            assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "bad label name: {line}");
            let _ = v;
        }
        out.push((name.to_string(), labels.to_string(), value));
    }
    out
}

/// One request a [`Hooks`] receiver got: path, JSON body, when.
pub type Got = (String, serde_json::Value, Instant);

/// A webhook receiver: records every request's path, JSON body and arrival;
/// `/flaky` fails its first request (500), `/fail` every one, `/hang` never
/// answers.
pub struct Hooks {
    pub addr: String,
    pub got: std::sync::Arc<std::sync::Mutex<Vec<Got>>>,
}

impl Hooks {
    pub fn start() -> Hooks {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let got: std::sync::Arc<std::sync::Mutex<Vec<Got>>> = Default::default();
        let g = got.clone();
        std::thread::spawn(move || {
            let flaky_seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            for s in l.incoming().flatten() {
                let (g, flaky_seen) = (g.clone(), flaky_seen.clone());
                std::thread::spawn(move || {
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut len = 0;
                    loop {
                        let mut h = String::new();
                        r.read_line(&mut h).unwrap();
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap();
                            }
                        }
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).unwrap();
                    g.lock().unwrap().push((
                        path.clone(),
                        serde_json::from_slice(&body).unwrap_or_default(),
                        Instant::now(),
                    ));
                    if path == "/hang" {
                        std::thread::sleep(Duration::from_secs(600));
                    }
                    let fail = path == "/fail"
                        || path == "/flaky" && !flaky_seen.swap(true, std::sync::atomic::Ordering::SeqCst);
                    let status = if fail { "500 Internal Server Error" } else { "200 OK" };
                    let mut s = s;
                    let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                });
            }
        });
        Hooks { addr, got }
    }

    pub fn at(&self, path: &str) -> Vec<serde_json::Value> {
        self.got.lock().unwrap().iter().filter(|(p, _, _)| p == path).map(|(_, b, _)| b.clone()).collect()
    }

    /// When each request to `path` arrived.
    pub fn times(&self, path: &str) -> Vec<Instant> {
        self.got.lock().unwrap().iter().filter(|(p, _, _)| p == path).map(|(_, _, t)| *t).collect()
    }
}
