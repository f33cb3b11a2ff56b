//! `drover init DIR`: write the quickstart project.

use std::path::{Path, PathBuf};

use crate::exit::ExitStatus;

/// The quickstart, embedded so the binary alone can scaffold it.
const FILES: &[(&str, &str, u32)] = &[
    ("drover.toml", include_str!("../../scaffold/quickstart/drover.toml"), 0o644),
    (".gitignore", include_str!("../../scaffold/quickstart/gitignore"), 0o644),
    ("inventory.example.toml", include_str!("../../scaffold/quickstart/inventory.example.toml"), 0o644),
    ("roles/site.toml", include_str!("../../scaffold/quickstart/roles/site.toml"), 0o644),
    ("services/web.toml", include_str!("../../scaffold/quickstart/services/web.toml"), 0o644),
    (
        "layers/site/srv/site/index.html.j2",
        include_str!("../../scaffold/quickstart/layers/site/srv/site/index.html.j2"),
        0o644,
    ),
    ("layers/site/etc/motd", include_str!("../../scaffold/quickstart/layers/site/etc/motd"), 0o644),
];

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Directory to create (must not exist or be empty).
    pub dir: PathBuf,
}

pub fn run(args: InitArgs) -> anyhow::Result<ExitStatus> {
    let dir = &args.dir;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        anyhow::bail!("{} exists and is not empty; choose a new directory", dir.display());
    }
    let name = project_name(dir)?;
    for (rel, text, mode) in FILES {
        match *rel {
            "drover.toml" => write(dir, rel, &named(text, &name), *mode)?,
            _ => write(dir, rel, text, *mode)?,
        }
    }
    println!("Created drover project in {}", dir.display());
    println!("  .gitignore keeps inventory.csv (it holds passwords), *.key and .drover/ out of git;");
    println!("  put no `password =` in an inventory.toml you commit.");
    println!("Next:");
    println!("  cd {}", dir.display());
    println!("  drover lab up 3 && drover lab inventory > inventory.toml   # or write inventory.toml for your hosts");
    println!("  drover plan");
    println!("  drover apply");
    Ok(ExitStatus::Success)
}

/// The new project is named after its directory (`drover init shop`: "shop").
fn project_name(dir: &Path) -> anyhow::Result<String> {
    let abs = std::path::absolute(dir)?;
    Ok(abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "drover".into()))
}

/// The scaffold's drover.toml with `name` as the project's name (a TOML
/// string, quoted and escaped as TOML wants).
fn named(text: &str, name: &str) -> String {
    let quoted = toml_edit::Value::from(name).to_string();
    text.replacen("name = \"quickstart\"", &format!("name = {}", quoted.trim()), 1)
}

fn write(dir: &Path, rel: &str, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(rel);
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(&path, text)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_project_is_named_after_its_directory_in_valid_toml() {
        let text = super::named(super::FILES[0].1, "shop \"east\"");
        let v: toml_edit::DocumentMut = text.parse().unwrap();
        assert_eq!(v["project"]["name"].as_str(), Some("shop \"east\""));
        assert!(!text.contains("quickstart\""), "{text}");
    }
}
