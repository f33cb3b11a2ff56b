//! The protocol loop: read requests on stdin, answer on stdout.
//!
//! This file is the byte stream: the magic that starts the protocol (after
//! whatever `sudo` left on stdin), framing, and the idle limit on input. What
//! each request does is the [`Session`]'s.

use std::cell::Cell;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use drover_proto::frame::skip_to_magic;
use drover_proto::{read_frame, FrameError, Request};

use crate::hostenv::HostEnv;
use crate::layout::Layout;
use crate::session::{protocol, Next, Session};
use crate::Result;

/// Input that, once armed, gives up after a set silence.
///
/// `input` must be unbuffered (a raw fd, not `StdinLock`): readiness is
/// asked of the fd, so bytes already sitting in a buffer below us would be
/// invisible and look like silence.
struct Idle<R> {
    inner: R,
    limit: Cell<Option<Duration>>,
}

impl<R: Read + AsFd> Read for Idle<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(limit) = self.limit.get() {
            let ms = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
            let mut pfd = libc::pollfd { fd: self.inner.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 };
            loop {
                // SAFETY: one valid pollfd that lives across the call.
                match unsafe { libc::poll(&mut pfd, 1, ms) } {
                    0 => {
                        let why = format!("no word from the controller for {limit:?} while holding the host lock");
                        return Err(io::Error::new(io::ErrorKind::TimedOut, why));
                    }
                    n if n > 0 => break,
                    _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
                    _ => return Err(io::Error::last_os_error()),
                }
            }
        }
        self.inner.read(buf)
    }
}

/// Serve controller sessions on one stream: one, or after each `Detach`
/// another (the resident keeps the agent between commands). `env` says how
/// this host reboots (see [`HostEnv`]); it is chosen by whoever starts the
/// agent.
pub fn serve(layout: Layout, env: HostEnv, input: impl Read + AsFd, output: impl Write) -> Result<()> {
    // 64 KiB: larger reads (blob chunks) bypass the buffer anyway, and std
    // zeroes a BufReader's whole buffer on its first read, so a 1 MiB one
    // cost every session (a no-op too) 256 page faults and a 1 MiB memset.
    let mut r = BufReader::with_capacity(64 << 10, Idle { inner: input, limit: Cell::new(None) });
    let mut w = BufWriter::new(output);
    let mut detached = false;
    loop {
        // A detached agent holds nothing: its stream may stay silent for
        // as long as the resident lives, and its end is a clean exit.
        r.get_ref().limit.set(None);
        match skip_to_magic(&mut r, 64 * 1024) {
            Ok(()) => {}
            Err(FrameError::Closed) if detached => return Ok(()),
            Err(e) => return Err(protocol(e)),
        }
        let hello = read_frame::<Request, _>(&mut r).map_err(protocol)?;
        match session(Session::hello(layout.clone(), env, hello, w)?, &mut r)? {
            Some(out) => {
                w = out;
                w.flush().map_err(protocol)?;
                detached = true;
            }
            None => return Ok(()),
        }
    }
}

/// One session's requests until it ends (`None`) or detaches (its stream back).
fn session<R: Read + AsFd, W: Write>(mut session: Session<W>, r: &mut BufReader<Idle<R>>) -> Result<Option<W>> {
    loop {
        let req = match read_frame::<Request, _>(r) {
            Ok(req) => req,
            Err(FrameError::Closed) => return Ok(None),
            Err(e) => return Err(protocol(e)),
        };
        let next = session.serve(req)?;
        r.get_ref().limit.set(session.idle_limit());
        match next {
            Next::Continue => {}
            Next::End => return Ok(None),
            Next::Detach => return session.detach().map(Some),
        }
    }
}
