//! Framing: `[u32 little-endian length][postcard body]`.
//!
//! Before the first frame the controller sends [`MAGIC`]. The agent may be
//! started through `sudo -S`, which reads a password line from the same stdin;
//! when sudo does not prompt (NOPASSWD, cached credentials) that line reaches
//! the agent instead. The agent discards everything before the magic, so both
//! cases work and no password is ever parsed as a frame.

use std::io::{self, Read, Write};

use serde::{de::DeserializeOwned, Serialize};

/// Sync marker sent once by the controller before the first frame.
pub const MAGIC: &[u8; 8] = b"\0DROVER1";

/// Largest frame either side accepts. Blob chunks are 1 MiB before
/// compression, manifests of a few thousand entries fit easily.
pub const MAX_FRAME: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame of {0} bytes exceeds the {MAX_FRAME} byte limit (peer speaks another protocol?)")]
    TooLarge(usize),
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("malformed frame: {0}")]
    Decode(#[from] postcard::Error),
}

/// Encode one message as a frame (length prefix included).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; 4];
    postcard::to_io(msg, &mut buf)?;
    let len = u32::try_from(buf.len() - 4).map_err(|_| FrameError::TooLarge(buf.len()))?;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    Ok(buf)
}

/// The frame of `Request::Chunk { hash, offset, data }` without its data:
/// `chunk_head(..) ++ data` is exactly `encode(&Request::Chunk(..))`. A
/// chunk shared by many connections is then written from where it lies
/// instead of being copied into a frame per connection (the controller's
/// memory at hundreds of hosts).
pub fn chunk_head(hash: crate::Hash, offset: u64, data_len: usize) -> Result<Vec<u8>, FrameError> {
    let empty = crate::Request::Chunk(crate::BlobChunk { hash, offset, data: Vec::new() });
    let mut head = encode(&empty)?;
    // postcard ends the message with the data's length (a varint: 0, one
    // byte) and then the data; put the real length there.
    let zero = head.pop();
    assert_eq!(zero, Some(0), "postcard ends a BlobChunk with its data's length");
    let mut n = data_len;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            head.push(byte);
            break;
        }
        head.push(byte | 0x80);
    }
    let body = head.len() - 4 + data_len;
    let len = u32::try_from(body).map_err(|_| FrameError::TooLarge(body))?;
    head[..4].copy_from_slice(&len.to_le_bytes());
    Ok(head)
}

/// Decode a frame body (without its length prefix).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    Ok(postcard::from_bytes(body)?)
}

/// Blocking write of one frame (the agent side is synchronous).
pub fn write_frame<T: Serialize, W: Write>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    w.write_all(&encode(msg)?)?;
    w.flush()?;
    Ok(())
}

/// Blocking read of one frame. `Closed` on a clean EOF between frames.
pub fn read_frame<T: DeserializeOwned, R: Read>(r: &mut R) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    if let Err(e) = r.read_exact(&mut len) {
        return Err(if e.kind() == io::ErrorKind::UnexpectedEof { FrameError::Closed } else { e.into() });
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    decode(&body)
}

/// Skip input until [`MAGIC`] has been read. Gives up after `limit` bytes so a
/// peer that never sends it cannot make us read forever.
pub fn skip_to_magic<R: Read>(r: &mut R, limit: usize) -> Result<(), FrameError> {
    let mut window = [0u8; 8];
    let mut seen = 0usize;
    let mut byte = [0u8; 1];
    while seen < limit + MAGIC.len() {
        if r.read(&mut byte)? == 0 {
            return Err(FrameError::Closed);
        }
        window.rotate_left(1);
        window[7] = byte[0];
        seen += 1;
        if seen >= MAGIC.len() && &window == MAGIC {
            return Ok(());
        }
    }
    Err(FrameError::Decode(postcard::Error::DeserializeBadEncoding))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Request;

    #[test]
    fn a_chunk_head_and_its_data_are_the_chunk_frame() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 1 << 20, (1 << 21) + 5] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (hash, offset) = (crate::Hash([len as u8; 32]), (len as u64) << 20);
            let whole = encode(&Request::Chunk(crate::BlobChunk { hash, offset, data: data.clone() })).unwrap();
            let mut parts = chunk_head(hash, offset, len).unwrap();
            parts.extend_from_slice(&data);
            assert!(parts == whole, "length {len}");
        }
    }

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Request::Bye).unwrap();
        write_frame(&mut buf, &Request::Confirm { generation: 7 }).unwrap();
        let mut r = &buf[..];
        assert!(matches!(read_frame::<Request, _>(&mut r).unwrap(), Request::Bye));
        assert!(matches!(read_frame::<Request, _>(&mut r).unwrap(), Request::Confirm { generation: 7 }));
        assert!(matches!(read_frame::<Request, _>(&mut r), Err(FrameError::Closed)));
    }

    #[test]
    fn oversized_frame_is_refused() {
        let buf = (u32::MAX).to_le_bytes();
        assert!(matches!(read_frame::<Request, _>(&mut &buf[..]), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn password_line_before_magic_is_skipped() {
        let mut input = b"hunter2\n".to_vec();
        input.extend_from_slice(MAGIC);
        input.extend_from_slice(&encode(&Request::Bye).unwrap());
        let mut r = &input[..];
        skip_to_magic(&mut r, 4096).unwrap();
        assert!(matches!(read_frame::<Request, _>(&mut r).unwrap(), Request::Bye));
    }

    #[test]
    fn missing_magic_gives_up() {
        let input = [b'x'; 100];
        assert!(skip_to_magic(&mut &input[..], 50).is_err());
    }
}
