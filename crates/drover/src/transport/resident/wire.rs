//! The resident's socket protocol, before the agent's own frames: the
//! client names the host it wants, the resident answers whether it has an
//! agent started for it; after an `Ok` the socket is a plain byte stream to
//! that agent (the same bytes a direct SSH channel would carry).
//!
//! ```text
//! client → resident   "DRVR" · version u8 · read_only u8 · len u16 LE · host name
//! resident → client   status u8 (0 ok, 1 refused) · len u16 LE · message (UTF-8)
//! ```

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const MAGIC: &[u8; 4] = b"DRVR";
/// Bumped with any change to this header (the socket's name also changes
/// with the binary, so a mismatch means a foreign peer).
const VERSION: u8 = 1;

/// What a client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub host: String,
    /// A `plan`'s session. The resident only splices bytes today; carried
    /// so a resident that keeps agents alive can keep read-only and
    /// read-write sessions apart.
    pub read_only: bool,
}

fn bad(m: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.to_string())
}

pub async fn write_ask(w: &mut (impl AsyncWrite + Unpin), a: &Ask) -> io::Result<()> {
    let name = a.host.as_bytes();
    let len = u16::try_from(name.len()).map_err(|_| bad("host name too long"))?;
    let mut b = Vec::with_capacity(8 + name.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&[VERSION, u8::from(a.read_only)]);
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(name);
    w.write_all(&b).await?;
    w.flush().await
}

pub async fn read_ask(r: &mut (impl AsyncRead + Unpin)) -> io::Result<Ask> {
    let mut head = [0u8; 8];
    r.read_exact(&mut head).await?;
    if &head[..4] != MAGIC || head[4] != VERSION {
        return Err(bad("not a drover client of this version"));
    }
    let mut name = vec![0u8; usize::from(u16::from_le_bytes([head[6], head[7]]))];
    r.read_exact(&mut name).await?;
    let host = String::from_utf8(name).map_err(|_| bad("host name is not UTF-8"))?;
    Ok(Ask { host, read_only: head[5] != 0 })
}

/// `Ok(())`: the agent is started, bytes follow. `Err(message)`: the
/// resident could not (the client goes direct).
pub async fn write_answer(w: &mut (impl AsyncWrite + Unpin), answer: Result<(), &str>) -> io::Result<()> {
    let (status, msg) = match answer {
        Ok(()) => (0u8, ""),
        Err(m) => (1u8, m),
    };
    let msg = &msg.as_bytes()[..msg.len().min(usize::from(u16::MAX))];
    let mut b = vec![status];
    b.extend_from_slice(&(msg.len() as u16).to_le_bytes());
    b.extend_from_slice(msg);
    w.write_all(&b).await?;
    w.flush().await
}

pub async fn read_answer(r: &mut (impl AsyncRead + Unpin)) -> io::Result<Result<(), String>> {
    let mut head = [0u8; 3];
    r.read_exact(&mut head).await?;
    let mut msg = vec![0u8; usize::from(u16::from_le_bytes([head[1], head[2]]))];
    r.read_exact(&mut msg).await?;
    Ok(match head[0] {
        0 => Ok(()),
        _ => Err(String::from_utf8_lossy(&msg).into_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ask_and_answer_round_trip_and_a_foreign_header_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(256);
        let ask = Ask { host: "web1".into(), read_only: true };
        write_ask(&mut a, &ask).await.unwrap();
        assert_eq!(read_ask(&mut b).await.unwrap(), ask);
        write_answer(&mut b, Err("no such host")).await.unwrap();
        assert_eq!(read_answer(&mut a).await.unwrap(), Err("no such host".to_string()));
        write_answer(&mut b, Ok(())).await.unwrap();
        assert_eq!(read_answer(&mut a).await.unwrap(), Ok(()));
        a.write_all(b"SSH-2.0-x").await.unwrap();
        assert!(read_ask(&mut b).await.is_err());
    }
}
