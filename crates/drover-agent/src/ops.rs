//! Day-2 operations on a host: status, logs, exec, drain.
//!
//! Drain is a mark (`/var/lib/drover/drained`, holding the reason) plus the
//! host's managed services stopped; while it is there, applies and rollbacks
//! are refused so a drained host stays as the operator left it (the engine
//! checks the mark: [`Engine::refuse_if_drained`]).

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drover_proto::{HostStatus, LogLine, ServiceAction, ServiceRestart};

use crate::engine::Engine;
use crate::{services, state, AgentError, Context, Result};

const OUTPUT_CAP: usize = 1 << 20;

impl Engine {
    pub fn status(&self) -> Result<HostStatus> {
        let cur = self.current_manifest()?;
        let drift = match &cur {
            Some(m) => {
                let accounts = self.accounts.with_declared(&m.setup);
                let mut d = crate::diff::drift(&self.layout, &accounts, &state::load_statcache(&self.layout), m)?;
                d.extend(crate::setup::drift(&self.layout, &self.accounts, &m.setup));
                d
            }
            None => vec![],
        };
        let services = cur
            .iter()
            .flat_map(|m| m.services.iter())
            .map(|s| {
                let sup = self.env.supervisor(&self.layout, s.supervisor);
                let once = s.health.as_ref().map(|hc| drover_proto::HealthCheck { retries: 1, ..hc.clone() });
                crate::gate::look(&*sup, &s.name, once.as_ref())
            })
            .collect();
        Ok(HostStatus { state: self.host_state(), drift, services, drained: self.drained() })
    }

    /// Stop (drain) or start (undrain) every managed service.
    pub fn drain(&mut self, reason: Option<&str>) -> Result<Vec<String>> {
        let cur = self.current_manifest()?.unwrap_or_default();
        let action = if reason.is_some() { ServiceAction::Stop } else { ServiceAction::Start };
        let acts: Vec<ServiceRestart> =
            cur.services.iter().map(|s| ServiceRestart { name: s.name.clone(), action }).collect();
        let mark = self.layout.drain_mark();
        if let Some(r) = reason {
            crate::fsops::write_atomic(&mark, r.as_bytes())?;
        }
        services::perform(self.env, &self.layout, &acts, &[action], &[&cur], &Default::default())?;
        if reason.is_none() {
            crate::fsops::remove(&mark)?;
            // Undrained means back in service, so the answer waits for each
            // service's gate (running, and healthy where it has a check), as
            // an apply's does: an operator or a script that puts the host
            // back in a balancer next must not race a service still binding
            // its port (seen on an emulated arm64 host). One that fails is
            // named with its supervisor's state and last log line; the host
            // stays undrained, its other services running.
            for s in &cur.services {
                let sup = self.env.supervisor(&self.layout, s.supervisor);
                crate::gate::run(&*sup, &s.name, s.health.as_ref())
                    .map_err(|f| AgentError::new(format!("undrained, but {f}")))?;
            }
        }
        Ok(acts.into_iter().map(|a| a.name).collect())
    }
}

/// Exit code (None if killed), stdout, stderr, timed out.
pub type ExecResult = (Option<i32>, Vec<u8>, Vec<u8>, bool);

/// Run `command` through `/bin/sh -c`, capturing (capped) output.
pub fn exec(command: &str, timeout: Duration) -> Result<ExecResult> {
    use std::os::unix::process::CommandExt;
    // Own process group, so a timeout kills the command's children too
    // (otherwise they keep the output pipes open).
    let mut child = Command::new("/bin/sh")
        .args(["-c", command])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ctx(|| "start /bin/sh".into())?;
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let reader = |p: Option<std::process::ChildStdout>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = p {
                let _ = p.by_ref().take(OUTPUT_CAP as u64).read_to_end(&mut buf);
                let _ = std::io::copy(&mut p, &mut std::io::sink());
            }
            buf
        })
    };
    let out_t = reader(out_pipe.take());
    let err_t = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = err_pipe.take() {
            let _ = p.by_ref().take(OUTPUT_CAP as u64).read_to_end(&mut buf);
            let _ = std::io::copy(&mut p, &mut std::io::sink());
        }
        buf
    });
    let start = Instant::now();
    let (code, timed_out) = loop {
        if let Some(st) = child.try_wait().ctx(|| "wait".into())? {
            break (st.code(), false);
        }
        if start.elapsed() > timeout {
            if let Ok(pgid) = i32::try_from(child.id()) {
                // SAFETY: kill(2) with a negative pid signals the process
                // group we created above; no memory is involved.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok((code, out_t.join().unwrap_or_default(), err_t.join().unwrap_or_default(), timed_out))
}

/// Where a runit or OpenRC service's log is (svlogd's `current`; see
/// [`drover_proto::service_log_file`]); systemd services: [`crate::logs`].
/// The name comes from the controller: it is checked to be one plain
/// component first, so `../../etc/shadow` cannot make this read another file.
pub fn log_file(service: &str) -> Result<PathBuf> {
    drover_proto::check_name(service).map_err(|e| crate::AgentError::new(format!("logs: {e}")))?;
    Ok(PathBuf::from(drover_proto::service_log_file(service)))
}

/// The last `lines` lines of `path` at or after `since_ms`, and the file
/// offset reached (for following).
pub fn read_log(path: &std::path::Path, lines: u32, since_ms: Option<u64>) -> Result<(Vec<LogLine>, u64)> {
    let text = fs::read(path).ctx(|| format!("read {}", path.display()))?;
    let end = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let all: Vec<LogLine> = String::from_utf8_lossy(&text[..end])
        .lines()
        .map(parse_svlogd)
        .filter(|l| since_ms.is_none_or(|s| l.at_ms >= s))
        .collect();
    let skip = all.len().saturating_sub(lines as usize);
    Ok((all.into_iter().skip(skip).collect(), end as u64))
}

/// New complete lines after `offset`; handles svlogd rotating `current`
/// (the file shrinks: start again from 0).
pub fn read_more(path: &std::path::Path, offset: &mut u64) -> Result<Vec<LogLine>> {
    let mut f = fs::File::open(path).ctx(|| format!("open {}", path.display()))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len < *offset {
        *offset = 0;
    }
    f.seek(SeekFrom::Start(*offset)).ctx(|| "seek".into())?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ctx(|| "read".into())?;
    let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    *offset += end as u64;
    Ok(String::from_utf8_lossy(&buf[..end]).lines().map(parse_svlogd).collect())
}

/// `2026-11-22_19:10:00.12345 text` (svlogd -tt, UTC) → LogLine.
fn parse_svlogd(line: &str) -> LogLine {
    let parsed = line.split_once(' ').and_then(|(ts, rest)| Some((ts_ms(ts)?, rest)));
    match parsed {
        Some((at_ms, text)) => LogLine { at_ms, text: text.to_string() },
        None => LogLine { at_ms: 0, text: line.to_string() },
    }
}

fn ts_ms(ts: &str) -> Option<u64> {
    let (date, time) = ts.split_once('_')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let ms: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svlogd_timestamps_parse_to_unix_ms() {
        assert_eq!(ts_ms("1970-01-01_00:00:01.5"), Some(1500));
        assert_eq!(ts_ms("2026-11-22_19:10:00.12345"), Some(1_795_374_600_123));
        let l = parse_svlogd("2026-11-22_19:10:00.12345 hello world");
        assert_eq!(l.text, "hello world");
        assert_eq!(parse_svlogd("no timestamp").at_ms, 0);
    }

    #[test]
    fn log_tail_since_and_follow() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("current");
        fs::write(&p, "1970-01-01_00:00:01.0 one\n1970-01-01_00:00:02.0 two\n1970-01-01_00:00:03.0 thr").unwrap();
        let (lines, mut off) = read_log(&p, 10, Some(2000)).unwrap();
        assert_eq!(lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(), ["two"], "partial last line held back");
        fs::write(&p, "1970-01-01_00:00:01.0 one\n1970-01-01_00:00:02.0 two\n1970-01-01_00:00:03.0 three\n").unwrap();
        let more = read_more(&p, &mut off).unwrap();
        assert_eq!(more[0].text, "three");
        fs::write(&p, "1970-01-01_00:00:04.0 rotated\n").unwrap();
        assert_eq!(read_more(&p, &mut off).unwrap()[0].text, "rotated");
    }

    #[test]
    fn exec_captures_output_code_and_timeout() {
        let (code, out, err, to) = exec("echo hi; echo oops >&2; exit 3", Duration::from_secs(5)).unwrap();
        assert_eq!((code, out.as_slice(), err.as_slice(), to), (Some(3), &b"hi\n"[..], &b"oops\n"[..], false));
        let (code, _, _, to) = exec("sleep 5", Duration::from_millis(100)).unwrap();
        assert_eq!((code, to), (None, true));
    }
}
