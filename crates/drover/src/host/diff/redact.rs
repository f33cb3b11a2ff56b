//! The content diff of a file that holds secrets, with every secret value
//! replaced by `<secret NAME>` on both sides: a plain variable changed next
//! to a secret shows as exactly that change.
//!
//! The project's side is redacted by value (the controller has every value
//! it rendered). The host's side holds the values of the generation it got,
//! which may be older: when the host's copy lacks the current value of one
//! of the file's secrets (the secret changed, or the template now uses it
//! where it did not), a line of the host's copy is shown only as the
//! project's redacted line whose text around the `<secret …>` markers it
//! matches (the old value is never shown: it becomes the marker), or not at
//! all, with a note that the secret changed. Anything this cannot prove
//! safe (a secret rendered through a filter, so its value is not in the
//! file as such; binary content; a secret that is a whole encrypted file)
//! falls back to `<secret NAME changed>` with no content.

use std::sync::Arc;

use drover_secrets::Secret;

/// What to show for the content of a secret-holding file whose content
/// differs: `(unified diff, note)`, or `None` for the fallback.
pub(super) fn content(
    names: &[String],
    values: &[(String, Arc<Secret>)],
    host: Option<&[u8]>,
    project: &[u8],
    path: &str,
) -> Option<(Option<String>, Option<String>)> {
    let added = host.is_none();
    let host = std::str::from_utf8(host.unwrap_or_default()).ok().filter(|s| !s.contains('\0'))?;
    let project = std::str::from_utf8(project).ok().filter(|s| !s.contains('\0'))?;
    // Longest values first, so a value that contains another is replaced whole.
    // Other secrets of the project are redacted too (the host's copy may
    // hold one a former template used), unless too short to tell from text.
    let mut values: Vec<(&str, &str)> = values
        .iter()
        .map(|(n, s)| Some((n.as_str(), s.expose_str()?)))
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .filter(|(n, v)| names.iter().any(|m| m == n) || v.len() >= 4)
        .collect();
    values.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    for name in names {
        let (_, v) = values.iter().find(|(n, _)| n == name)?;
        if v.is_empty() || !project.contains(v) {
            return None;
        }
    }
    let redact = |text: &str| values.iter().fold(text.to_string(), |t, (n, v)| t.replace(v, &format!("<secret {n}>")));
    let (rh, rp) = (redact(host), redact(project));
    let changed: Vec<&str> =
        names.iter().filter(|n| values.iter().any(|(m, v)| m == n && !host.contains(v))).map(String::as_str).collect();
    let note = match (added, changed.is_empty()) {
        (true, _) => Some(format!("<secret {} added>", names.join(", "))),
        (false, true) => None,
        (false, false) => Some(format!("<secret {} changed>", changed.join(", "))),
    };
    let before = if added || changed.is_empty() {
        rh
    } else {
        let markers: Vec<String> = values.iter().map(|(n, _)| format!("<secret {n}>")).collect();
        let lines: Vec<&str> = rp.lines().collect();
        rh.split_inclusive('\n')
            .map(|l| {
                let (text, end) = l.strip_suffix('\n').map_or((l, ""), |t| (t, "\n"));
                if lines.contains(&text) {
                    return l.to_string();
                }
                match lines.iter().find(|p| matches_around_markers(text, p, &markers)) {
                    Some(p) => format!("{p}{end}"),
                    None => {
                        format!("<a line hidden: it may hold an earlier value of secret {}>{end}", changed.join(", "))
                    }
                }
            })
            .collect()
    };
    if before == rp {
        return Some((None, note.or_else(|| Some("only secret values differ".into()))));
    }
    let diff = similar::TextDiff::from_lines(&before, &rp);
    let (h, p) = (format!("host:{path}"), format!("project:{path}"));
    Some((Some(diff.unified_diff().context_radius(3).header(&h, &p).to_string()), note))
}

/// Does `line` read like `pattern` with something else where `pattern` has
/// a secret marker? The text between markers must appear in order.
fn matches_around_markers(line: &str, pattern: &str, markers: &[String]) -> bool {
    let mut literals = vec![pattern];
    for m in markers {
        literals = literals.into_iter().flat_map(|l| l.split(m.as_str())).collect();
    }
    if literals.len() < 2 {
        return false;
    }
    let (first, last) = (literals[0], literals[literals.len() - 1]);
    let Some(mut rest) = line.strip_prefix(first) else { return false };
    let Some(r) = rest.strip_suffix(last) else { return false };
    rest = r;
    for mid in &literals[1..literals.len() - 1] {
        let Some(i) = rest.find(mid) else { return false };
        rest = &rest[i + mid.len()..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(pairs: &[(&str, &str)]) -> Vec<(String, Arc<Secret>)> {
        pairs.iter().map(|(n, v)| (n.to_string(), Arc::new(Secret::new(*n, v.as_bytes().to_vec())))).collect()
    }

    #[test]
    fn a_plain_change_beside_an_unchanged_secret_is_a_diff_with_the_value_redacted() {
        let v = secrets(&[("api_token", "tok-OLD-1234"), ("other", "unrelated-9999")]);
        let host = b"token=tok-OLD-1234\nlevel=info\nformer=unrelated-9999\n";
        let project = b"token=tok-OLD-1234\nlevel=debug\n";
        let (u, note) = content(&["api_token".into()], &v, Some(host), project, "/etc/app.conf").unwrap();
        let u = u.unwrap();
        assert!(u.contains("-level=info\n") && u.contains("+level=debug\n"), "{u}");
        assert!(u.contains(" token=<secret api_token>\n"), "{u}");
        assert!(u.contains("-former=<secret other>\n"), "{u}");
        assert!(!u.contains("tok-OLD") && !u.contains("unrelated-9999"), "{u}");
        assert_eq!(note, None);
    }

    #[test]
    fn a_changed_secret_is_said_and_its_old_value_never_shown() {
        let v = secrets(&[("api_token", "tok-NEW-5678")]);
        let host = b"token=tok-OLD-1234\nlevel=info\nurl=https://x/?k=tok-OLD-1234&z\n";
        let project = b"token=tok-NEW-5678\nlevel=debug\nurl=https://x/?k=tok-NEW-5678&z\n";
        let (u, note) = content(&["api_token".into()], &v, Some(host), project, "/etc/app.conf").unwrap();
        let u = u.unwrap();
        assert_eq!(note.as_deref(), Some("<secret api_token changed>"));
        assert!(!u.contains("tok-OLD") && !u.contains("tok-NEW"), "{u}");
        // Unmatched old lines are hidden, not shown: the plain change is
        // visible on the project's side only.
        assert!(u.contains("+level=debug\n") && u.contains("-<a line hidden"), "{u}");
        assert!(
            u.contains(" token=<secret api_token>\n") && u.contains(" url=https://x/?k=<secret api_token>&z\n"),
            "{u}"
        );
    }

    #[test]
    fn a_secret_not_in_the_file_as_such_falls_back_to_the_note_alone() {
        // Rendered through a filter: its value does not appear, so redacting
        // by value would show the filtered form.
        let v = secrets(&[("api_token", "tok-NEW-5678")]);
        let project = b"token=TOK-NEW-5678\n";
        assert!(content(&["api_token".into()], &v, Some(b"token=x\n"), project, "/x").is_none());
        assert!(content(&["api_token".into()], &v, Some(b"\0bin"), b"tok-NEW-5678", "/x").is_none());
        assert!(content(&["missing".into()], &v, Some(b"a\n"), b"tok-NEW-5678\n", "/x").is_none());
        let (u, note) = content(&["api_token".into()], &v, None, b"k=tok-NEW-5678\n", "/x").unwrap();
        assert_eq!(note.as_deref(), Some("<secret api_token added>"));
        assert!(u.unwrap().contains("+k=<secret api_token>\n"));
    }
}
