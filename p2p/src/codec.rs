//! Request-response codec for opaque byte payloads.
//!
//! Each payload is a 4-byte big-endian length followed by the bytes. The stream end alone
//! would delimit a payload too, but then a peer that closes the stream without answering
//! (a refused or dropped request) would look like one that sent an empty response.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;

/// Codec carrying `Vec<u8>` requests and responses with size bounds.
#[derive(Debug, Clone)]
pub(crate) struct BytesCodec {
    max_request: usize,
    max_response: usize,
}

impl BytesCodec {
    pub(crate) fn new(max_request: usize, max_response: usize) -> Self {
        Self {
            max_request,
            max_response,
        }
    }
}

async fn read_bounded<T>(io: &mut T, max: usize) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut prefix = [0u8; 4];
    io.read_exact(&mut prefix).await?;
    let len = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
    // Checked before allocating, so a peer cannot make us reserve more than `max`.
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("payload of {len} bytes exceeds the limit of {max} bytes"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_bounded<T>(io: &mut T, data: &[u8], max: usize) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    let len = u32::try_from(data.len())
        .ok()
        .filter(|_| data.len() <= max)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "payload of {} bytes exceeds the limit of {max} bytes",
                    data.len()
                ),
            )
        })?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(data).await
}

impl request_response::Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_bounded(io, self.max_request).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_bounded(io, self.max_response).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_bounded(io, &req, self.max_request).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_bounded(io, &res, self.max_response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use request_response::Codec;

    #[test]
    fn bounds_are_enforced() {
        futures::executor::block_on(async {
            let proto = StreamProtocol::new("/test/1");
            let mut codec = BytesCodec::new(4, 8);

            let mut out = Cursor::new(Vec::new());
            codec
                .write_request(&proto, &mut out, vec![1u8; 4])
                .await
                .unwrap();
            let mut input = Cursor::new(out.into_inner());
            assert_eq!(
                codec.read_request(&proto, &mut input).await.unwrap(),
                vec![1u8; 4]
            );

            let mut out = Cursor::new(Vec::new());
            assert!(
                codec
                    .write_request(&proto, &mut out, vec![1u8; 5])
                    .await
                    .is_err()
            );
            // A peer announcing more than the limit is refused before anything is read.
            let mut too_big = Cursor::new([0, 0, 0, 5, 1, 1, 1, 1, 1].to_vec());
            assert!(codec.read_request(&proto, &mut too_big).await.is_err());
            // A stream closed without a payload is an error, not an empty response.
            let mut closed = Cursor::new(Vec::new());
            assert!(codec.read_response(&proto, &mut closed).await.is_err());
            let mut empty = Cursor::new([0u8, 0, 0, 0].to_vec());
            assert!(
                codec
                    .read_response(&proto, &mut empty)
                    .await
                    .unwrap()
                    .is_empty()
            );
            // Truncated payloads are errors.
            let mut short = Cursor::new([0u8, 0, 0, 3, 1].to_vec());
            assert!(codec.read_response(&proto, &mut short).await.is_err());
        });
    }
}
