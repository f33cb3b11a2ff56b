//! A userspace link emulator: netem for kernels without `sch_netem`.
//!
//! When a host gets a delay/loss/rate fault and the kernel cannot do it, the
//! host's root-side veth `dl<i>v<n>` is taken out of the bridge and a new
//! veth pair `dl<i>x<n>` (bridge port) / `dl<i>y<n>` is added. This process
//! holds an `AF_PACKET` socket on `v` and on `y` and copies every frame from
//! one to the other after the configured delay, dropping a share of them and
//! pacing them to the configured rate:
//!
//! ```text
//! host eth0 <-> dl<i>v<n> <-[this process]-> dl<i>y<n> <-> dl<i>x<n> <-> bridge
//! ```
//!
//! Both unbridged ends have ARP and IPv6 off and no address, so the root
//! namespace's own stack never answers on them and every frame takes the
//! emulated path. Frames are read and written with virtio-net headers
//! (`PACKET_VNET_HDR`), so TSO/GSO packets pass whole, as on the veth.
//!
//! Semantics follow netem's: each frame leaves at `arrival + delay ± jitter`
//! (uniform), but never before the frame ahead of it (no reordering), plus
//! its serialisation time at `rate`; a queue over 1000 frames or 16 MiB
//! drops at the tail. The process exits when either interface disappears.

use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::LabError;

/// Marks a link emulator's command line, so `down` can find strays.
pub const MARKER: &str = "--drover-lab-wire";
const QUEUE_FRAMES: usize = 1000;
const QUEUE_BYTES: usize = 16 << 20;
/// Big enough for a 64 KiB GSO frame plus headers.
const FRAME_BUF: usize = 256 << 10;
const VNET_HDR_LEN: usize = 10;

/// One direction's impairment and the two interfaces to splice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireSpec {
    /// Root-side end of the host's veth.
    pub host_if: String,
    /// Our end of the pair whose other end is a bridge port.
    pub bridge_if: String,
    /// Written with our pid once both sockets are bound.
    pub pidfile: PathBuf,
    /// Per direction.
    pub delay: Duration,
    pub jitter: Duration,
    pub loss_ppm: u32,
    pub rate_bps: u64,
}

impl WireSpec {
    /// The arguments [`WireSpec::from_args`] reads back.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            MARKER.into(),
            "--host-if".into(),
            self.host_if.clone(),
            "--bridge-if".into(),
            self.bridge_if.clone(),
            "--pidfile".into(),
            self.pidfile.display().to_string(),
            "--delay-us".into(),
            self.delay.as_micros().to_string(),
            "--jitter-us".into(),
            self.jitter.as_micros().to_string(),
            "--loss-ppm".into(),
            self.loss_ppm.to_string(),
            "--rate-bps".into(),
            self.rate_bps.to_string(),
        ]
    }

    pub fn from_args<S: AsRef<str>>(args: &[S]) -> Result<WireSpec, LabError> {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        let bad = |m: &str| LabError::Wire { host: "?".into(), detail: format!("bad arguments: {m}") };
        if args.first() != Some(&MARKER) {
            return Err(bad("missing marker"));
        }
        let get = |k: &str| -> Result<&str, LabError> {
            args.windows(2).find(|w| w[0] == k).map(|w| w[1]).ok_or_else(|| bad(k))
        };
        let num = |k: &str| -> Result<u64, LabError> { get(k)?.parse().map_err(|_| bad(k)) };
        Ok(WireSpec {
            host_if: get("--host-if")?.to_string(),
            bridge_if: get("--bridge-if")?.to_string(),
            pidfile: PathBuf::from(get("--pidfile")?),
            delay: Duration::from_micros(num("--delay-us")?),
            jitter: Duration::from_micros(num("--jitter-us")?),
            loss_ppm: u32::try_from(num("--loss-ppm")?).map_err(|_| bad("--loss-ppm"))?,
            rate_bps: num("--rate-bps")?,
        })
    }
}

/// Run the emulator until one of the interfaces disappears (returns `Ok`)
/// or a socket fails (returns the error). Never returns otherwise.
pub fn run(spec: &WireSpec) -> Result<(), LabError> {
    let err = |detail: String| LabError::Wire { host: spec.host_if.clone(), detail };
    let host = Arc::new(PacketSocket::bind(&spec.host_if).map_err(|e| err(format!("bind {}: {e}", spec.host_if)))?);
    let bridge =
        Arc::new(PacketSocket::bind(&spec.bridge_if).map_err(|e| err(format!("bind {}: {e}", spec.bridge_if)))?);
    std::fs::write(&spec.pidfile, format!("{}\n", std::process::id())).map_err(LabError::io("write", &spec.pidfile))?;
    tracing::info!(?spec, "link emulator ready");
    let (done_tx, done_rx) = mpsc::channel::<Result<(), String>>();
    let seed = u64::from_le_bytes(crate::sys::random_bytes(8)?.try_into().expect("8 bytes"));
    for (i, (src, dst)) in [(host.clone(), bridge.clone()), (bridge, host)].into_iter().enumerate() {
        let lane = Arc::new(Lane::default());
        let (spec_r, lane_r, tx) = (spec.clone(), lane.clone(), done_tx.clone());
        let mut rng = Rng(seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        std::thread::spawn(move || tx.send(read_loop(&src, &lane_r, &spec_r, &mut rng)));
        let tx = done_tx.clone();
        std::thread::spawn(move || tx.send(send_loop(&dst, &lane)));
    }
    match done_rx.recv() {
        Ok(Ok(())) | Err(_) => Ok(()),
        Ok(Err(detail)) => Err(err(detail)),
    }
}

#[derive(Default)]
struct Lane {
    queue: Mutex<Queue>,
    ready: Condvar,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<(Instant, Vec<u8>)>,
    bytes: usize,
    last_departure: Option<Instant>,
}

fn read_loop(src: &PacketSocket, lane: &Lane, spec: &WireSpec, rng: &mut Rng) -> Result<(), String> {
    let mut buf = vec![0u8; FRAME_BUF];
    loop {
        let n = match src.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if src.is_gone() => {
                tracing::info!("{} gone ({e}); exiting", src.name);
                return Ok(());
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::ENETDOWN | libc::EAGAIN)) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(format!("receive on {}: {e}", src.name)),
        };
        if spec.loss_ppm > 0 && rng.below(1_000_000) < u64::from(spec.loss_ppm) {
            continue;
        }
        let now = Instant::now();
        let mut departure = now + spec.delay;
        if !spec.jitter.is_zero() {
            let j = u64::try_from(spec.jitter.as_nanos()).unwrap_or(u64::MAX / 4);
            let offset = rng.below(2 * j + 1);
            departure = (departure + Duration::from_nanos(offset)).checked_sub(spec.jitter).unwrap_or(now).max(now);
        }
        let mut q = lane.queue.lock().expect("lane lock");
        if q.frames.len() >= QUEUE_FRAMES || q.bytes + n > QUEUE_BYTES {
            continue; // tail drop, like a full qdisc
        }
        departure = departure.max(q.last_departure.unwrap_or(now));
        let bits = (n.saturating_sub(VNET_HDR_LEN) as u64) * 8;
        if let Some(ns) = bits.saturating_mul(1_000_000_000).checked_div(spec.rate_bps) {
            departure += Duration::from_nanos(ns); // serialisation time at `rate`
        }
        q.last_departure = Some(departure);
        q.bytes += n;
        q.frames.push_back((departure, buf[..n].to_vec()));
        lane.ready.notify_one();
    }
}

fn send_loop(dst: &PacketSocket, lane: &Lane) -> Result<(), String> {
    loop {
        let frame = {
            let mut q = lane.queue.lock().expect("lane lock");
            loop {
                let now = Instant::now();
                match q.frames.front() {
                    None => q = lane.ready.wait(q).expect("lane lock"),
                    Some((at, _)) if *at > now => {
                        let wait = *at - now;
                        q = lane.ready.wait_timeout(q, wait).expect("lane lock").0;
                    }
                    Some(_) => break,
                }
            }
            let (_, frame) = q.frames.pop_front().expect("front checked");
            q.bytes -= frame.len();
            frame
        };
        if let Err(e) = dst.send(&frame) {
            if dst.is_gone() {
                tracing::info!("{} gone ({e}); exiting", dst.name);
                return Ok(());
            }
            // Down links, full buffers, oversize frames: the frame is lost, as on a wire.
            tracing::debug!("send on {}: {e}", dst.name);
        }
    }
}

/// xorshift64*: fast, good enough for loss and jitter draws.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// A raw `AF_PACKET` socket bound to one interface, with virtio-net headers.
struct PacketSocket {
    fd: OwnedFd,
    name: String,
}

impl PacketSocket {
    fn bind(name: &str) -> io::Result<PacketSocket> {
        let cname = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `cname` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        // Protocol 0: receive nothing until bound to the one interface below,
        // so no frame from another interface is ever queued.
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh, valid fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)?;
        let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4 << 20);
        let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 4 << 20);
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = i32::try_from(ifindex).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `addr` is a valid sockaddr_ll and the length matches it.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket { fd, name: name.to_string() })
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: `frame` is valid for reads of `frame.len()` bytes.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    fn is_gone(&self) -> bool {
        !crate::sys::link_exists(&self.name)
    }
}

fn setsockopt(fd: &OwnedFd, level: i32, opt: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed matches it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&raw const value).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_through_argv() {
        let spec = WireSpec {
            host_if: "dl3v7".into(),
            bridge_if: "dl3y7".into(),
            pidfile: "/var/lib/drover-lab/x/hosts/h7/wire.pid".into(),
            delay: Duration::from_millis(50),
            jitter: Duration::from_micros(1500),
            loss_ppm: 10_000,
            rate_bps: 1_000_000,
        };
        assert_eq!(WireSpec::from_args(&spec.to_args()).unwrap(), spec);
        assert!(WireSpec::from_args(&["--host-if", "x"]).is_err());
    }

    #[test]
    fn rng_stays_in_range() {
        let mut r = Rng(42);
        assert!((0..10_000).all(|_| r.below(7) < 7));
    }
}
