//! The payloads of the fetch protocols. They live in [`commons_signaling::fetch`], so that
//! they can be tested and fuzzed without the daemon's store; re-exported here, where the node
//! uses them, with the framing of `fetch/2` streams.

pub use commons_signaling::fetch::*;

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Reads one frame (a 4-byte big-endian length, then the bytes) of at most `max` bytes, or
/// `None` when the stream ends cleanly before a frame begins. The length is checked before
/// anything is allocated, so a peer cannot make us reserve more than `max`.
pub async fn read_frame<R: AsyncRead + Unpin>(
    io: &mut R,
    max: usize,
) -> io::Result<Option<Vec<u8>>> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < prefix.len() {
        let n = io.read(&mut prefix[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    let len = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {max} bytes"),
        ));
    }
    let mut frame = vec![0u8; len];
    io.read_exact(&mut frame).await?;
    Ok(Some(frame))
}

/// Writes one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(io: &mut W, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame longer than 4 GiB"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(payload).await?;
    io.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[test]
    fn frames_round_trip_and_their_bounds_hold() {
        futures::executor::block_on(async {
            let mut wire = Cursor::new(Vec::new());
            write_frame(&mut wire, b"first").await.unwrap();
            write_frame(&mut wire, b"").await.unwrap();
            let bytes = wire.into_inner();
            let mut reader = Cursor::new(bytes.clone());
            assert_eq!(
                read_frame(&mut reader, 5).await.unwrap().as_deref(),
                Some(&b"first"[..])
            );
            assert_eq!(read_frame(&mut reader, 5).await.unwrap(), Some(vec![]));
            assert_eq!(read_frame(&mut reader, 5).await.unwrap(), None);
            // Over the bound: refused before the payload is read.
            let err = read_frame(&mut Cursor::new(bytes.clone()), 4)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            // Cut inside the length or inside the payload: an error, not a clean end.
            for cut in [2, 7] {
                let err = read_frame(&mut Cursor::new(bytes[..cut].to_vec()), 5)
                    .await
                    .unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
            }
        });
    }
}
