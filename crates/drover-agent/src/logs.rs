//! `drover logs`: a service's log lines, from wherever its supervisor keeps
//! them.
//!
//! runit and OpenRC services that drover generated write one file
//! ([`drover_proto::service_log_file`], read by [`crate::ops::read_log`]);
//! a systemd service logs to the journal, read with `journalctl -u UNIT -o
//! json` (the stable, documented export of every field, with the entry's
//! realtime timestamp and a cursor). Following the journal polls with
//! `--after-cursor`, so a follow is the same loop for both: an initial batch,
//! then whatever is new, each line exactly once.

use std::path::PathBuf;
use std::process::Command;

use drover_proto::{LogLine, Manifest, Supervisor};

use crate::hostenv::HostEnv;
use crate::layout::Layout;
use crate::{bail, Context, Result};

/// Where one service's lines come from, and how far we have read.
#[derive(Debug)]
pub enum LogReader {
    File { path: PathBuf, offset: u64 },
    Journal { unit: String, cursor: Option<String>, since_s: u64 },
}

impl LogReader {
    /// The reader for `service` as the current generation runs it: the
    /// journal for a systemd service (on a host that has one: see
    /// [`HostEnv::has_journal`]), its log file otherwise.
    pub fn open(layout: &Layout, env: HostEnv, current: Option<&Manifest>, service: &str) -> Result<LogReader> {
        let file = crate::ops::log_file(service)?;
        let systemd = current
            .and_then(|m| m.services.iter().find(|s| s.name == service))
            .is_some_and(|s| s.supervisor == Supervisor::Systemd);
        Ok(if systemd && env.has_journal() {
            LogReader::Journal { unit: service.to_string(), cursor: None, since_s: 0 }
        } else {
            LogReader::File { path: layout.target(&file.to_string_lossy()), offset: 0 }
        })
    }

    /// The last `lines` lines at or after `since_ms`.
    pub fn initial(&mut self, lines: u32, since_ms: Option<u64>) -> Result<Vec<LogLine>> {
        match self {
            LogReader::File { path, offset } => {
                let (batch, end) = crate::ops::read_log(path, lines, since_ms)?;
                *offset = end;
                Ok(batch)
            }
            LogReader::Journal { unit, cursor, since_s } => {
                // Entries newer than this are new to a follower even when
                // this query returns none (and so no cursor).
                *since_s = now_s();
                let mut args = vec!["-n".to_string(), lines.to_string()];
                if let Some(ms) = since_ms {
                    args.push(format!("--since=@{}", ms / 1000));
                }
                let (mut batch, last) = journal(unit, &args)?;
                batch.retain(|l| since_ms.is_none_or(|s| l.at_ms >= s));
                if last.is_some() {
                    *cursor = last;
                }
                Ok(batch)
            }
        }
    }

    /// Complete lines written since the last call.
    pub fn more(&mut self) -> Result<Vec<LogLine>> {
        match self {
            LogReader::File { path, offset } => crate::ops::read_more(path, offset),
            LogReader::Journal { unit, cursor, since_s } => {
                let args = match cursor {
                    Some(c) => vec![format!("--after-cursor={c}")],
                    None => vec![format!("--since=@{since_s}")],
                };
                let (batch, last) = journal(unit, &args)?;
                if last.is_some() {
                    *cursor = last;
                }
                Ok(batch)
            }
        }
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `journalctl -u unit … -o json`: the lines and the cursor of the last one.
fn journal(unit: &str, extra: &[String]) -> Result<(Vec<LogLine>, Option<String>)> {
    journal_with("journalctl", unit, extra)
}

/// [`journal`] with the program named (tests make it fail).
fn journal_with(program: &str, unit: &str, extra: &[String]) -> Result<(Vec<LogLine>, Option<String>)> {
    let out = Command::new(program)
        .args(["--unit", unit, "--output=json", "--output-fields=MESSAGE", "--no-pager", "--quiet"])
        .args(extra)
        .output()
        .ctx(|| format!("run {program} (systemd services log to the journal)"))?;
    if !out.status.success() {
        bail!("{program} --unit {unit} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(parse_journal_json(&String::from_utf8_lossy(&out.stdout)))
}

/// One JSON object per line (`journalctl -o json`). `MESSAGE` is a string,
/// an array of bytes when it is not valid UTF-8, or null; the timestamp is
/// microseconds since the epoch, as a string.
pub fn parse_journal_json(text: &str) -> (Vec<LogLine>, Option<String>) {
    let mut lines = Vec::new();
    let mut cursor = None;
    for raw in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(raw) else { continue };
        let at_ms = v["__REALTIME_TIMESTAMP"].as_str().and_then(|t| t.parse::<u64>().ok()).map_or(0, |us| us / 1000);
        let text = match &v["MESSAGE"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(bytes) => {
                let b: Vec<u8> = bytes.iter().filter_map(|x| x.as_u64().and_then(|n| u8::try_from(n).ok())).collect();
                String::from_utf8_lossy(&b).into_owned()
            }
            _ => String::new(),
        };
        if let Some(c) = v["__CURSOR"].as_str() {
            cursor = Some(c.to_string());
        }
        lines.push(LogLine { at_ms, text: text.trim_end_matches('\n').to_string() });
    }
    (lines, cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_json_lines_parse_with_timestamp_text_and_cursor() {
        let text = concat!(
            r#"{"__CURSOR":"s=a;i=1","__REALTIME_TIMESTAMP":"1795374600123456","MESSAGE":"hello from h1"}"#,
            "\n",
            r#"{"__CURSOR":"s=a;i=2","__REALTIME_TIMESTAMP":"1795374601000000","MESSAGE":[104,105,255]}"#,
            "\n",
            r#"{"__CURSOR":"s=a;i=3","__REALTIME_TIMESTAMP":"1795374602000000","MESSAGE":null}"#,
            "\nnot json\n"
        );
        let (lines, cursor) = parse_journal_json(text);
        assert_eq!(lines.len(), 3);
        assert_eq!((lines[0].at_ms, lines[0].text.as_str()), (1_795_374_600_123, "hello from h1"));
        assert_eq!(lines[1].text, "hi\u{fffd}");
        assert_eq!(lines[2].text, "");
        assert_eq!(cursor.as_deref(), Some("s=a;i=3"));
        assert_eq!(parse_journal_json(""), (vec![], None));
    }

    #[test]
    fn a_missing_or_failing_journalctl_is_an_error_naming_it() {
        let err = journal_with("/nonexistent/journalctl", "web", &[]).unwrap_err().0;
        assert!(err.starts_with("run /nonexistent/journalctl (systemd services log to the journal)"), "{err}");
        let err = journal_with("false", "web", &[]).unwrap_err().0;
        assert!(err.starts_with("false --unit web failed (exit status: 1)"), "{err}");
    }
}
