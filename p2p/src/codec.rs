//! Request-response codec for opaque byte payloads, each one [frame](crate::framing).

use std::io;

use futures::{AsyncRead, AsyncWrite};
use libp2p::StreamProtocol;
use libp2p::request_response;

use crate::framing::{read_frame, write_frame};

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

/// One payload: a stream that ends before it is an error, not a missing answer.
async fn read_payload<T: AsyncRead + Unpin>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    read_frame(io, max)
        .await?
        .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
}

impl request_response::Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_payload(io, self.max_request).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_payload(io, self.max_response).await
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
        write_frame(io, &req, self.max_request).await
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
        write_frame(io, &res, self.max_response).await
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
