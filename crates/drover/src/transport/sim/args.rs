//! `--sim-*`: how every simulated link behaves, realistic by default.
//!
//! The defaults are a fleet reached across the internet from one controller:
//!
//! - **50 ms round trip**: a controller in one region driving hosts in
//!   others (intra-continent RTTs are 10-80 ms; a LAN, under 1 ms, would
//!   flatter every tool that makes round trips).
//! - **100 mbit each way, per link**: what one host's share of a path
//!   typically is (edge sites, small VM tiers and cross-region TCP flows
//!   sit between 50 and 500 mbit). With [`super::WINDOW`] bytes in flight
//!   at 50 ms a link carries at most about 84 mbit anyway, as one TCP flow
//!   with a 256 KiB window would. The controller's own uplink is not
//!   modelled: 512 links at once add up to more than any NIC.
//! - **0.5 % of connections fail** (refused, or reset mid-session), so the
//!   runner's retries run in every simulated apply, as they do at scale.
//!
//! `0` turns each off: `--sim-latency 0 --sim-bandwidth 0
//! --sim-failure-rate 0` is an ideal link.

use std::time::Duration;

/// Default round trip of a simulated link.
pub const DEFAULT_LATENCY: &str = "50ms";
/// Default bandwidth of a simulated link, each direction.
pub const DEFAULT_BANDWIDTH: &str = "100mbit";
/// Default fraction of simulated connections that fail.
pub const DEFAULT_FAILURE_RATE: f64 = 0.005;

/// `--sim-*` flags, next to `--simulate DIR` on plan/apply/rollback.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Simulated transport (with --simulate)")]
pub struct SimArgs {
    /// Round-trip latency of every simulated link (e.g. 20ms; 0: none).
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_LATENCY, requires = "simulate")]
    pub sim_latency: String,
    /// Bandwidth of every simulated link, each direction (e.g. 1mbit, 64kbit, 10mbps; 0: unlimited).
    #[arg(long, value_name = "RATE", default_value = DEFAULT_BANDWIDTH, requires = "simulate")]
    pub sim_bandwidth: String,
    /// Fraction of connections that fail (refused, or reset mid-session), 0 to 1.
    #[arg(long, value_name = "P", default_value_t = DEFAULT_FAILURE_RATE, requires = "simulate")]
    pub sim_failure_rate: f64,
    /// One local agent process per connection instead of in-process agents.
    #[arg(long, requires = "simulate")]
    pub sim_processes: bool,
}

impl SimArgs {
    /// The link these flags describe.
    pub fn shape(&self) -> anyhow::Result<LinkShape> {
        let latency = drover_spec::parse_duration(&self.sim_latency)
            .map_err(|e| anyhow::anyhow!("--sim-latency {}: {e}", self.sim_latency))?;
        let bandwidth = match self.sim_bandwidth.trim() {
            "0" => None,
            s => Some(parse_rate(s).map_err(|e| anyhow::anyhow!("--sim-bandwidth: {e} (0: unlimited)"))?),
        };
        if !(0.0..=1.0).contains(&self.sim_failure_rate) {
            anyhow::bail!("--sim-failure-rate {} is not between 0 and 1", self.sim_failure_rate);
        }
        Ok(LinkShape { latency, bandwidth, failure_rate: self.sim_failure_rate })
    }
}

/// A rate in tc's units: `bit`, `kbit`, `mbit`, `gbit` (bits per second) or
/// `bps`, `kbps`, `mbps`, `gbps` (bytes per second). Returns bytes per second.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("bad rate {s:?}: write e.g. 1mbit, 256kbit or 10mbps");
    let n: f64 = num.parse().map_err(|_| bad())?;
    let bytes_per_sec = match unit {
        "bit" => n / 8.0,
        "kbit" => n * 1e3 / 8.0,
        "mbit" => n * 1e6 / 8.0,
        "gbit" => n * 1e9 / 8.0,
        "bps" => n,
        "kbps" => n * 1e3,
        "mbps" => n * 1e6,
        "gbps" => n * 1e9,
        _ => return Err(bad()),
    };
    if !(1.0..=1e12).contains(&bytes_per_sec) {
        return Err(format!("rate {s:?} out of range"));
    }
    Ok(bytes_per_sec as u64)
}

/// What every simulated link looks like.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkShape {
    /// Round trip; each direction gets half.
    pub latency: Duration,
    /// Bytes per second, each direction; `None`: unlimited.
    pub bandwidth: Option<u64>,
    /// Fraction of connections that fail.
    pub failure_rate: f64,
}

impl LinkShape {
    pub(super) fn shaped(&self) -> bool {
        !self.latency.is_zero() || self.bandwidth.is_some() || self.failure_rate > 0.0
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("1mbit"), Ok(125_000));
        assert_eq!(parse_rate("64kbit"), Ok(8_000));
        assert_eq!(parse_rate("10mbps"), Ok(10_000_000));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0bit").is_err());
    }

    #[derive(Parser)]
    struct Cli {
        #[arg(long)]
        simulate: Option<String>,
        #[command(flatten)]
        sim: SimArgs,
    }

    fn shape_of(args: &[&str]) -> LinkShape {
        let cli = Cli::try_parse_from(["drover", "--simulate", "d"].iter().chain(args)).unwrap();
        cli.sim.shape().unwrap()
    }

    /// With no flags a link has latency, a cap and failures; `0` turns
    /// each off.
    #[test]
    fn defaults_are_realistic_and_zero_turns_each_off() {
        let d = shape_of(&[]);
        assert_eq!(d.latency, Duration::from_millis(50));
        assert_eq!(d.bandwidth, Some(12_500_000));
        assert_eq!(d.failure_rate, 0.005);
        let z = shape_of(&["--sim-latency", "0", "--sim-bandwidth", "0", "--sim-failure-rate", "0"]);
        assert!(!z.shaped(), "{z:?}");
        let cli = Cli::try_parse_from(["drover", "--simulate", "d", "--sim-bandwidth", "fast"]).unwrap();
        let e = cli.sim.shape().unwrap_err().to_string();
        assert!(e.contains("--sim-bandwidth") && e.contains("1mbit"), "{e}");
    }
}
