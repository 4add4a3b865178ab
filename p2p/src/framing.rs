//! Length-prefixed frames: a 4-byte big-endian length, then that many bytes.
//!
//! The request-response codec carries each request and response as one frame, and a
//! `fetch/2` stream carries a run of them. The stream end alone would delimit a single
//! payload, but then a peer that closes the stream without answering (a refused or dropped
//! request) would look like one that sent an empty response.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Reads one frame of at most `max` bytes, or `None` when the stream ends cleanly before a
/// frame begins. The length is checked before anything is allocated, so a peer cannot make
/// us reserve more than `max`.
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

/// Writes one frame of at most `max` bytes and flushes it; a longer payload is refused
/// before anything is written, as the peer would refuse it.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    io: &mut W,
    payload: &[u8],
    max: usize,
) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|_| payload.len() <= max)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "frame of {} bytes exceeds the limit of {max} bytes",
                    payload.len()
                ),
            )
        })?;
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
            write_frame(&mut wire, b"first", 5).await.unwrap();
            write_frame(&mut wire, b"", 5).await.unwrap();
            // Over the bound on the way out: refused, nothing written.
            let err = write_frame(&mut wire, b"second", 5).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            let bytes = wire.into_inner();
            assert_eq!(bytes.len(), 4 + 5 + 4);
            let mut reader = Cursor::new(bytes.clone());
            assert_eq!(
                read_frame(&mut reader, 5).await.unwrap().as_deref(),
                Some(&b"first"[..])
            );
            assert_eq!(read_frame(&mut reader, 5).await.unwrap(), Some(vec![]));
            assert_eq!(read_frame(&mut reader, 5).await.unwrap(), None);
            // Over the bound on the way in: refused before the payload is read.
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
