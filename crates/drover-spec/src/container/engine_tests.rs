//! The engine runtimes' names, repositories and capabilities.

use super::*;

#[test]
fn runtimes_parse_by_their_cli_names_only() {
    for r in [Runtime::Runc, Runtime::Docker, Runtime::Podman] {
        assert_eq!(Runtime::parse(r.name()), Some(r));
    }
    assert_eq!(Runtime::parse("Docker"), None);
    assert_eq!(Runtime::parse("containerd"), None);
    assert_eq!(Runtime::default(), Runtime::Runc);
}

#[test]
fn image_repositories_are_valid_engine_names_and_distinct_per_service() {
    assert_eq!(image_repo("web"), "localhost/drover/web");
    assert_eq!(image_repo("db-1"), "localhost/drover/db-1");
    let (a, b) = (image_repo("Web"), image_repo("web_"));
    assert!(a.starts_with("localhost/drover/web-") && b.starts_with("localhost/drover/web-"), "{a} {b}");
    assert_ne!(a, b);
    assert_ne!(a, image_repo("web"));
    for r in [a, b, image_repo("_x_"), image_repo("..")] {
        let last = r.rsplit('/').next().unwrap();
        assert!(
            last.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !last.starts_with('-')
                && !last.ends_with('-'),
            "{r}"
        );
    }
}

/// An engine's container gets exactly the capabilities the runc bundle's
/// bounding set holds.
#[test]
fn engine_capabilities_are_the_runc_bundles() {
    let c = Container {
        image: "images/web".into(),
        files: Default::default(),
        process: Process { args: vec!["/bin/x".into()], env: Default::default(), uid: 0, gid: 0, cwd: "/".into() },
        volumes: vec![],
        memory: None,
        pids: None,
        stop_grace_secs: 5,
        runtime: Runtime::Runc,
    };
    let j: serde_json::Value =
        serde_json::from_slice(&super::super::bundle::config_json("web", "web", &c, &c.process)).unwrap();
    let mut runc: Vec<String> = j["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().trim_start_matches("CAP_").to_string())
        .collect();
    runc.sort();
    assert_eq!(runc, CAPS.to_vec());
}
