//! Faults: what `drover lab fault` accepts and what each one does to a host.
//!
//! | fault | mechanism | what a client sees |
//! |---|---|---|
//! | `delay D [jitter J] [loss P%] [rate R]` | netem on both directions of the host's link | RTT grows by D (D/2 each way); each direction loses P% and is limited to R |
//! | `down` | root-side veth set down | packets silently dropped: connects time out |
//! | `freeze` | SIGSTOP to every process in the host's network namespace | TCP handshakes complete (kernel), but sshd never answers |
//! | `thaw` | SIGCONT to the same | host resumes |
//!
//! Delay and jitter are *round trip*: half is added in each direction, so
//! `ping` and TCP connect times grow by D, as for a host D away. Loss and
//! rate apply to each direction independently.
//!
//! netem is `tc qdisc … netem` when the kernel has `sch_netem`; otherwise
//! (many minimal and VM kernels lack it) the same behaviour comes from a
//! userspace link emulator spliced into the host's link (see [`crate::wire`]).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::LabError;

/// Link impairment, round trip for delay and jitter, per direction for
/// loss and rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Netem {
    pub delay_us: u64,
    pub jitter_us: u64,
    /// Parts per million (1% = 10 000).
    pub loss_ppm: u32,
    /// Bits per second; 0 means unlimited.
    pub rate_bps: u64,
}

impl Netem {
    /// Delay and jitter applied in each direction: half the round trip.
    pub fn one_way(&self) -> (Duration, Duration) {
        (Duration::from_micros(self.delay_us / 2), Duration::from_micros(self.jitter_us / 2))
    }

    /// `tc qdisc replace … netem` arguments for one direction.
    pub(crate) fn tc_args(&self) -> Vec<String> {
        let (delay, jitter) = self.one_way();
        let mut args = vec!["netem".to_string()];
        if self.delay_us > 0 {
            args.extend(["delay".into(), format!("{}us", delay.as_micros())]);
            if self.jitter_us > 0 {
                args.push(format!("{}us", jitter.as_micros()));
            }
        }
        if self.loss_ppm > 0 {
            args.extend(["loss".into(), format!("{}%", f64::from(self.loss_ppm) / 10_000.0)]);
        }
        if self.rate_bps > 0 {
            args.extend(["rate".into(), format!("{}bit", self.rate_bps)]);
        }
        args
    }
}

impl fmt::Display for Netem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.delay_us > 0 {
            parts.push(format!("delay {}", fmt_duration(self.delay_us)));
        }
        if self.jitter_us > 0 {
            parts.push(format!("jitter {}", fmt_duration(self.jitter_us)));
        }
        if self.loss_ppm > 0 {
            parts.push(format!("loss {}%", f64::from(self.loss_ppm) / 10_000.0));
        }
        if self.rate_bps > 0 {
            parts.push(format!("rate {}", fmt_rate(self.rate_bps)));
        }
        f.write_str(&parts.join(" "))
    }
}

/// One `drover lab fault HOST …` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Netem(Netem),
    /// Cut the link.
    Down,
    /// SIGSTOP every process of the host.
    Freeze,
    /// SIGCONT them.
    Thaw,
}

impl Fault {
    /// Parse the words after the host: `down`, `freeze`, `thaw`, or
    /// `delay 100ms [jitter 10ms] [loss 1%] [rate 1mbit]` in any order.
    pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<Fault, LabError> {
        let words: Vec<&str> = words.iter().map(AsRef::as_ref).collect();
        let bad = |m: String| LabError::BadFault(m);
        match words.as_slice() {
            [] => return Err(bad("expected down, freeze, thaw or delay/loss/rate".into())),
            ["down"] => return Ok(Fault::Down),
            ["freeze"] => return Ok(Fault::Freeze),
            ["thaw"] => return Ok(Fault::Thaw),
            [w @ ("down" | "freeze" | "thaw"), ..] => return Err(bad(format!("`{w}` takes no arguments"))),
            _ => {}
        }
        let mut netem = Netem::default();
        let mut seen = Vec::new();
        let mut it = words.iter();
        while let Some(&key) = it.next() {
            let value = *it.next().ok_or_else(|| bad(format!("`{key}` needs a value")))?;
            if seen.contains(&key) {
                return Err(bad(format!("`{key}` given twice")));
            }
            seen.push(key);
            match key {
                "delay" => netem.delay_us = parse_duration_us(value)?,
                "jitter" => netem.jitter_us = parse_duration_us(value)?,
                "loss" => netem.loss_ppm = parse_percent_ppm(value)?,
                "rate" => netem.rate_bps = parse_rate_bps(value)?,
                other => return Err(bad(format!("unknown `{other}`: expected delay, jitter, loss or rate"))),
            }
        }
        if netem.jitter_us > 0 && netem.delay_us == 0 {
            return Err(bad("`jitter` needs a `delay`".into()));
        }
        if netem.jitter_us > netem.delay_us {
            return Err(bad("`jitter` may not exceed `delay`".into()));
        }
        if netem == Netem::default() {
            return Err(bad("nothing to do: every value is zero; use `drover lab heal`".into()));
        }
        Ok(Fault::Netem(netem))
    }
}

fn split_unit(s: &str) -> (&str, &str) {
    let i = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    s.split_at(i)
}

fn number(s: &str, what: &str) -> Result<f64, LabError> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| LabError::BadFault(format!("bad {what} {s:?}")))
}

/// `100ms`, `1.5s`, `250us` -> microseconds.
pub(crate) fn parse_duration_us(s: &str) -> Result<u64, LabError> {
    let (num, unit) = split_unit(s);
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1_000.0,
        "s" => 1_000_000.0,
        _ => return Err(LabError::BadFault(format!("bad duration {s:?}: use us, ms or s, e.g. 100ms"))),
    };
    let us = number(num, "duration")? * scale;
    if us > 60_000_000.0 {
        return Err(LabError::BadFault(format!("duration {s:?} is over 60s")));
    }
    Ok(us.round() as u64)
}

/// `1%`, `0.5%`, `2` -> parts per million.
pub(crate) fn parse_percent_ppm(s: &str) -> Result<u32, LabError> {
    let p = number(s.strip_suffix('%').unwrap_or(s), "percentage")?;
    if p > 100.0 {
        return Err(LabError::BadFault(format!("loss {s:?} is over 100%")));
    }
    Ok((p * 10_000.0).round() as u32)
}

/// tc units: `bit`, `kbit`, `mbit`, `gbit` (bits per second) and `bps`,
/// `kbps`, `mbps` (bytes per second), decimal multiples.
pub(crate) fn parse_rate_bps(s: &str) -> Result<u64, LabError> {
    let (num, unit) = split_unit(s);
    let scale = match unit.to_ascii_lowercase().as_str() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        _ => {
            return Err(LabError::BadFault(format!(
                "bad rate {s:?}: use bit, kbit, mbit, gbit (or bps, kbps, mbps for bytes)"
            )))
        }
    };
    let bps = number(num, "rate")? * scale;
    if !(8_000.0..=100e9).contains(&bps) {
        return Err(LabError::BadFault(format!("rate {s:?} out of range (8kbit..100gbit)")));
    }
    Ok(bps.round() as u64)
}

fn fmt_duration(us: u64) -> String {
    match us {
        us if us % 1_000_000 == 0 => format!("{}s", us / 1_000_000),
        us if us % 1_000 == 0 => format!("{}ms", us / 1_000),
        us => format!("{us}us"),
    }
}

fn fmt_rate(bps: u64) -> String {
    match bps {
        b if b % 1_000_000_000 == 0 => format!("{}gbit", b / 1_000_000_000),
        b if b % 1_000_000 == 0 => format!("{}mbit", b / 1_000_000),
        b if b % 1_000 == 0 => format!("{}kbit", b / 1_000),
        b => format!("{b}bit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_issue_examples() {
        assert_eq!(
            Fault::parse(&["delay", "100ms", "loss", "1%"]).unwrap(),
            Fault::Netem(Netem { delay_us: 100_000, loss_ppm: 10_000, ..Netem::default() })
        );
        assert_eq!(Fault::parse(&["down"]).unwrap(), Fault::Down);
        assert_eq!(Fault::parse(&["freeze"]).unwrap(), Fault::Freeze);
        assert_eq!(Fault::parse(&["thaw"]).unwrap(), Fault::Thaw);
        let all = Fault::parse(&["rate", "1mbit", "jitter", "10ms", "delay", "1.5s", "loss", "0.5"]).unwrap();
        let Fault::Netem(n) = all else { panic!() };
        assert_eq!(n.to_string(), "delay 1500ms jitter 10ms loss 0.5% rate 1mbit");
        assert_eq!(n.one_way(), (Duration::from_millis(750), Duration::from_millis(5)));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            &["delay"][..],
            &["delay", "100"],
            &["delay", "-1ms"],
            &["loss", "101%"],
            &["rate", "1mb"],
            &["jitter", "1ms"],
            &["delay", "1ms", "jitter", "2ms"],
            &["down", "now"],
            &["delay", "1ms", "delay", "2ms"],
            &["bandwidth", "1mbit"],
            &["delay", "0ms"],
            &[],
        ] {
            assert!(Fault::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tc_arguments_are_one_way() {
        let n = Netem { delay_us: 100_000, jitter_us: 10_000, loss_ppm: 10_000, rate_bps: 1_000_000 };
        assert_eq!(n.tc_args().join(" "), "netem delay 50000us 5000us loss 1% rate 1000000bit");
    }
}
