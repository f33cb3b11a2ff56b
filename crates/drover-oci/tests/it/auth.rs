//! Registry credentials: Docker's config.json `auths`, a credential given
//! by the caller (drover secrets), anonymous.

use base64::Engine as _;
use drover_oci::testing::images::{self, push_as, Compression};
use drover_oci::testing::registry::{TestRegistry, PASSWORD, USER};
use drover_oci::{Auth, Credential, OciError, Puller, RegistryOptions};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A registry that wants basic auth: anonymous is refused; the
/// `config.json` entry works; a given credential works and wins over the
/// file (a wrong one fails although the file's is right).
#[tokio::test]
async fn pulls_authenticate_from_docker_config_or_a_given_credential() {
    let reg = TestRegistry::start_with_auth();
    let (v1, _, _) = images::app_images(Compression::Gzip);
    let r = reg.reference("app:1");
    push_as(&r, &v1, Some((USER, PASSWORD))).await;
    let d = tempfile::tempdir().unwrap();
    let config = d.path().join("config.json");
    let entry = serde_json::json!({"auths": {reg.host(): {"auth": b64(&format!("{USER}:{PASSWORD}"))}}});
    std::fs::write(&config, entry.to_string()).unwrap();
    let pull = |auth: Auth| {
        let (d, cache) = crate::temp_cache();
        let r = r.clone();
        async move {
            let res = Puller::new(cache, RegistryOptions { auth, insecure: vec![] }).pull(&r, "x86_64", None).await;
            drop(d);
            res
        }
    };
    let e = pull(Auth::anonymous()).await.unwrap_err();
    assert!(matches!(e, OciError::Registry { .. }), "{e:?}");
    let from_file = Auth { docker_config: Some(config.clone()), ..Auth::default() };
    assert_eq!(pull(from_file.clone()).await.unwrap().manifest_digest, v1.manifest_digest());
    let given = Credential::Basic { username: USER.into(), password: PASSWORD.into() };
    assert_eq!(pull(Auth::anonymous().with(&reg.host(), given)).await.unwrap().manifest_digest, v1.manifest_digest());
    let wrong = Credential::Basic { username: USER.into(), password: "nope".into() };
    assert!(pull(from_file.with(&reg.host(), wrong)).await.is_err());
}

/// The shapes of `auths` entries Docker writes: `auth` (base64), separate
/// username/password, an identity token, Docker Hub under its URL key;
/// a missing file is anonymous; a broken entry names the file.
#[test]
fn docker_config_entries_are_read_in_every_shape_docker_writes() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("config.json");
    let text = serde_json::json!({"auths": {
        "https://index.docker.io/v1/": {"auth": b64("hub:pw")},
        "reg.example:5000": {"username": "u", "password": "p"},
        "tok.example": {"identitytoken": "t0k"},
        "bad.example": {"auth": "%%%"},
    }, "credsStore": "desktop"});
    std::fs::write(&path, text.to_string()).unwrap();
    let a = Auth { docker_config: Some(path.clone()), ..Auth::default() };
    let basic = |u: &str, p: &str| Some(Credential::Basic { username: u.into(), password: p.into() });
    assert_eq!(a.credential("docker.io").unwrap(), basic("hub", "pw"));
    assert_eq!(a.credential("reg.example:5000").unwrap(), basic("u", "p"));
    assert_eq!(a.credential("tok.example").unwrap(), Some(Credential::Token("t0k".into())));
    assert_eq!(a.credential("other.example").unwrap(), None);
    let e = a.credential("bad.example").unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()) && e.contains("base64"), "{e}");
    let missing = Auth { docker_config: Some(d.path().join("nope.json")), ..Auth::default() };
    assert_eq!(missing.credential("docker.io").unwrap(), None);
    // Never printed.
    assert!(!format!("{:?}", basic("u", "hunter2")).contains("hunter2"));
}
