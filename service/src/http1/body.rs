//! A request body, read from the socket into the caller's buffer: a `/process` frame goes from
//! the kernel straight into the pooled frame the effects work on, with no buffer between.
use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::head::{read_line, Framing, RequestHead};

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is longer than the buffer for it")]
    Long,
    #[error("the body ended after {got} bytes")]
    Short { got: u64 },
    #[error("reading the body failed after {after} bytes: {source}")]
    Io { after: u64, source: io::Error },
    #[error("malformed chunked body after {after} bytes: {detail}")]
    Malformed { after: u64, detail: String },
}

enum State {
    /// Bytes of a Content-Length body still in the socket.
    Length { left: u64 },
    /// Chunked: bytes of the current chunk still in the socket (0 = a chunk-size line next).
    Chunked { left_in_chunk: u64 },
    /// All of it read: the next bytes on the connection are the next request's.
    Done,
    /// Part of it left unread: the connection cannot carry another request.
    Abandoned,
}

pub struct RequestBody<'a> {
    stream: &'a mut TcpStream,
    scratch: &'a mut Vec<u8>,
    state: State,
    /// `Expect: 100-continue` not yet answered: the client has not sent the body.
    owes_continue: bool,
    read: u64,
}

impl<'a> RequestBody<'a> {
    pub fn new(stream: &'a mut TcpStream, scratch: &'a mut Vec<u8>, head: &RequestHead) -> Self {
        let state = match head.framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(left) => State::Length { left },
            Framing::Chunked => State::Chunked { left_in_chunk: 0 },
        };
        let owes_continue = head.expects_continue && !matches!(state, State::Done);
        RequestBody { stream, scratch, state, owes_continue, read: 0 }
    }

    /// The whole body has been read, so the connection can carry the next request.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Fill `frame` with the body, which must be exactly as long. The bytes are read by the
    /// kernel into `frame` itself (a chunked body's framing lines aside, read on their own).
    pub async fn read_exact_into(&mut self, frame: &mut [u8]) -> Result<(), BodyError> {
        self.send_continue().await?;
        let mut filled = 0;
        while let Some(available) = self.readable().await? {
            if filled == frame.len() {
                self.state = State::Abandoned;
                return Err(BodyError::Long);
            }
            let want = available.min((frame.len() - filled) as u64) as usize;
            let n = self.read_some(&mut frame[filled..filled + want]).await?;
            filled += n;
            self.consumed(n as u64).await?;
        }
        match self.state {
            State::Done if filled == frame.len() => Ok(()),
            _ => Err(BodyError::Short { got: filled as u64 }),
        }
    }

    /// Read what is left of the body and throw it away (a refused request's), so that the
    /// answer reaches the client: closing a socket with unread data makes the kernel reset the
    /// connection, and the client would see the reset instead. A client that waits for
    /// `100 Continue` has not sent its body, and is answered at once; its connection closes, as
    /// does one whose body takes longer than `limit` (zero: what has already arrived).
    pub async fn discard(&mut self, limit: Duration) {
        if self.is_finished() {
            return;
        }
        if self.owes_continue {
            self.state = State::Abandoned;
            return;
        }
        // The connection's scratch buffer takes the bytes: a shed request allocates nothing.
        let mut sink = std::mem::take(self.scratch);
        sink.resize(sink.capacity().max(16 * 1024), 0);
        let drain = async {
            while let Some(available) = self.readable().await? {
                let want = available.min(sink.len() as u64) as usize;
                let n = self.read_some(&mut sink[..want]).await?;
                self.consumed(n as u64).await?;
            }
            Ok::<_, BodyError>(())
        };
        let drained = tokio::time::timeout(limit, drain).await;
        *self.scratch = sink;
        if !matches!(drained, Ok(Ok(()))) {
            self.state = State::Abandoned;
        }
    }

    /// How many body bytes can be read now without crossing the body's framing: what is left
    /// of a Content-Length body or of the current chunk (the next chunk-size line is read when
    /// one is due). None once nothing more of the body is to be read.
    async fn readable(&mut self) -> Result<Option<u64>, BodyError> {
        loop {
            match self.state {
                State::Done | State::Abandoned => return Ok(None),
                State::Length { left } => return Ok(Some(left)),
                State::Chunked { left_in_chunk: 0 } => self.next_chunk().await?,
                State::Chunked { left_in_chunk } => return Ok(Some(left_in_chunk)),
            }
        }
    }

    async fn send_continue(&mut self) -> Result<(), BodyError> {
        if std::mem::take(&mut self.owes_continue) {
            let sent = self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
            sent.map_err(|source| self.failed(source))?;
        }
        Ok(())
    }

    async fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, BodyError> {
        match self.stream.read(buf).await {
            Ok(0) => Err(self.failed(closed())),
            Ok(n) => Ok(n),
            Err(source) => Err(self.failed(source)),
        }
    }

    /// `n` body bytes were read: past the end of a chunk comes its CRLF.
    async fn consumed(&mut self, n: u64) -> Result<(), BodyError> {
        self.read += n;
        match &mut self.state {
            State::Length { left } => {
                *left -= n;
                if *left == 0 {
                    self.state = State::Done;
                }
            }
            State::Chunked { left_in_chunk } => {
                *left_in_chunk -= n;
                if *left_in_chunk == 0 {
                    match self.line().await? {
                        line if line.is_empty() => {}
                        _ => return Err(self.malformed("a chunk is longer than its size line says".into())),
                    }
                }
            }
            State::Done | State::Abandoned => {}
        }
        Ok(())
    }

    /// The next chunk-size line; the last chunk (size 0) is followed by trailers, skipped.
    async fn next_chunk(&mut self) -> Result<(), BodyError> {
        let line = self.line().await?;
        let text = String::from_utf8_lossy(&line);
        let size = text.split(';').next().unwrap_or("").trim();
        let Some(size) = u64::from_str_radix(size, 16).ok().filter(|_| !size.is_empty() && size.len() <= 15) else {
            return Err(self.malformed(format!("chunk size `{text}` is not a hexadecimal number")));
        };
        if size > 0 {
            self.state = State::Chunked { left_in_chunk: size };
            return Ok(());
        }
        while !self.line().await?.is_empty() {}
        self.state = State::Done;
        Ok(())
    }

    async fn line(&mut self) -> Result<Vec<u8>, BodyError> {
        match read_line(self.stream, self.scratch).await {
            Ok(Some(line)) => Ok(line),
            Ok(None) => Err(self.failed(closed())),
            Err(source) => Err(self.failed(source)),
        }
    }

    fn failed(&mut self, source: io::Error) -> BodyError {
        self.state = State::Abandoned;
        BodyError::Io { after: self.read, source }
    }

    fn malformed(&mut self, detail: String) -> BodyError {
        self.state = State::Abandoned;
        BodyError::Malformed { after: self.read, detail }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the client closed the connection")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::head::read_head;
    use tokio::io::AsyncWriteExt;

    /// The server's end of a connection on which `raw` was sent (and the client's, kept open).
    async fn sent(raw: &'static [u8]) -> (TcpStream, TcpStream, RequestHead) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        client.write_all(raw).await.unwrap();
        let head = read_head(&mut server, &mut Vec::new()).await.unwrap().unwrap();
        (client, server, head)
    }

    #[tokio::test]
    async fn a_chunked_body_fills_the_frame_and_the_next_request_follows() {
        let (_client, mut server, head) = sent(
            b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nX-T: 1\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
        )
        .await;
        let mut scratch = Vec::new();
        let mut body = RequestBody::new(&mut server, &mut scratch, &head);
        let mut frame = [0u8; 7];
        body.read_exact_into(&mut frame).await.unwrap();
        assert!(body.is_finished());
        assert_eq!(&frame, b"abcdefg");
        let next = read_head(&mut server, &mut scratch).await.unwrap().unwrap();
        assert_eq!(next.path, "/next");
    }

    #[tokio::test]
    async fn too_long_too_short_and_broken_bodies_are_told_apart() {
        let (_c, mut server, head) = sent(b"POST /p HTTP/1.1\r\nContent-Length: 9\r\n\r\n123456789").await;
        let mut scratch = Vec::new();
        let mut body = RequestBody::new(&mut server, &mut scratch, &head);
        assert!(matches!(body.read_exact_into(&mut [0u8; 4]).await, Err(BodyError::Long)));
        assert!(!body.is_finished(), "a connection with unread body bytes must not be reused");

        let (c, mut server, head) =
            sent(b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n").await;
        let mut body = RequestBody::new(&mut server, &mut scratch, &head);
        assert!(matches!(body.read_exact_into(&mut [0u8; 4]).await, Err(BodyError::Short { got: 2 })));
        drop(c);

        let (_c, mut server, head) = sent(b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").await;
        let mut body = RequestBody::new(&mut server, &mut scratch, &head);
        let e = body.read_exact_into(&mut [0u8; 4]).await.unwrap_err();
        assert!(e.to_string().contains("chunk size `zz`"), "{e}");

        let (c, mut server, head) = sent(b"POST /p HTTP/1.1\r\nContent-Length: 9\r\n\r\n1234").await;
        drop(c);
        let mut body = RequestBody::new(&mut server, &mut scratch, &head);
        let e = body.read_exact_into(&mut [0u8; 9]).await.unwrap_err();
        assert!(matches!(e, BodyError::Io { after: 4, .. }), "{e}");
    }

    #[tokio::test]
    async fn a_discarded_body_leaves_the_connection_ready_unless_the_client_waits_to_send_it() {
        let (_c, mut server, head) =
            sent(b"POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /next HTTP/1.1\r\n\r\n").await;
        let mut scratch = Vec::new();
        let mut body = RequestBody::new(&mut server, &mut scratch, &head);
        body.discard(Duration::from_secs(5)).await;
        assert!(body.is_finished());
        assert_eq!(read_head(&mut server, &mut scratch).await.unwrap().unwrap().path, "/next");

        let (_c, mut server, head) =
            sent(b"POST /p HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n").await;
        let mut body = RequestBody::new(&mut server, &mut scratch, &head);
        body.discard(Duration::from_secs(5)).await;
        assert!(!body.is_finished(), "the body was never sent: the connection closes after the answer");

        // With no time allowed, what has arrived is taken, and a body still on its way is not waited for.
        let (_c, mut server, head) = sent(b"POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc").await;
        let mut body = RequestBody::new(&mut server, &mut scratch, &head);
        body.discard(Duration::ZERO).await;
        assert!(body.is_finished(), "a body already in the socket is thrown away at once");
        let (_c, mut server, head) = sent(b"POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nab").await;
        let mut body = RequestBody::new(&mut server, &mut scratch, &head);
        body.discard(Duration::ZERO).await;
        assert!(!body.is_finished());
    }
}
