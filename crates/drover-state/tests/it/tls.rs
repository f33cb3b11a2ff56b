//! TLS to the PostgreSQL store: `sslmode=require` connects over TLS, and
//! the server's certificate is verified (an unknown CA is refused; the CA
//! named by `PGSSLROOTCERT` is trusted). It sets `PGSSLROOTCERT`, which is
//! process-wide and read by every connection the other tests open, so it
//! runs in a process of its own: this binary again, with only this test.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use drover_state::Store;

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl");
    assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// Set in the process that runs the test alone.
const ALONE: &str = "DROVER_STATE_TLS_TEST_ALONE";

#[test]
fn tls_is_required_and_the_servers_certificate_is_verified() {
    if std::env::var_os(ALONE).is_some() {
        return verified_alone();
    }
    let name = "tls::tls_is_required_and_the_servers_certificate_is_verified";
    let o = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(ALONE, "1")
        .output()
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && out.contains("1 passed"), "alone, it failed:\n{out}{err}");
}

fn verified_alone() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        p,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=drover test CA"],
        ]
        .concat(),
    );
    openssl(
        p,
        &[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]].concat(),
    );
    std::fs::write(
        p.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        p,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    // The server reads its key as `postgres`, and only from a private file.
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(p.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Command::new("chown").arg("postgres:").arg(p.join("server.key")).status().unwrap().success());
    let cluster = drover_pgtest::PgCluster::start_with(&format!(
        "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
        p.join("server.crt").display(),
        p.join("server.key").display()
    ));
    let url = cluster.fresh_db().replace("sslmode=disable", "sslmode=require");

    // A CA nobody configured: the certificate is refused.
    std::env::remove_var("PGSSLROOTCERT");
    let e = Store::connect(&url).err().expect("an unverified server was accepted").to_string();
    assert!(e.contains("cannot connect") && e.to_lowercase().contains("certificate"), "{e}");

    // Trusted through PGSSLROOTCERT: connects over TLS and works.
    std::env::set_var("PGSSLROOTCERT", p.join("ca.crt"));
    let mut s = Store::connect(&url).unwrap();
    s.save_facts("h1", "{}").unwrap();
    assert_eq!(s.facts("h1").unwrap().as_deref(), Some("{}"));

    // A CA file that is not PEM is named.
    std::fs::write(p.join("bad.crt"), "not a certificate").unwrap();
    std::env::set_var("PGSSLROOTCERT", p.join("bad.crt"));
    let e = Store::connect(&url).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("PGSSLROOTCERT") && e.contains("bad.crt") && e.contains("no PEM certificate"), "{e}");
}
