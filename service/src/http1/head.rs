//! A request head, read from the socket without taking a byte past its end: the body stays in
//! the kernel's buffer until it is read straight into the frame it belongs in.
use std::io;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Larger heads are answered 431 (hyper's default read buffer holds about as much).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// Chunk-size lines and trailer fields are short; a longer one is a broken client.
const MAX_LINE_BYTES: usize = 4 * 1024;

/// How the body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No Content-Length and no Transfer-Encoding: a request without a body.
    Empty,
    Length(u64),
    Chunked,
}

#[derive(Debug)]
pub struct RequestHead {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The client keeps the connection open after the answer (HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before it sends the body.
    pub expects_continue: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("the request head is longer than {MAX_HEAD_BYTES} bytes")]
    TooLarge,
    #[error("malformed request head: {0}")]
    Malformed(String),
    #[error(
        "transfer coding `{0}` is not supported; send the body with Content-Length or `Transfer-Encoding: chunked`"
    )]
    UnsupportedCoding(String),
    #[error("HTTP/1.0 has no chunked bodies; send the body with Content-Length")]
    ChunkedOnHttp10,
    #[error("the connection closed in the middle of a request head")]
    Truncated,
    #[error("the request head did not arrive whole within {0:?} of its first byte")]
    Timeout(std::time::Duration),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl HeadError {
    /// The answer a client gets, or None when there is nobody left to answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            HeadError::TooLarge => Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
            HeadError::Malformed(_) | HeadError::ChunkedOnHttp10 => Some(StatusCode::BAD_REQUEST),
            HeadError::UnsupportedCoding(_) => Some(StatusCode::NOT_IMPLEMENTED),
            HeadError::Timeout(_) => Some(StatusCode::REQUEST_TIMEOUT),
            HeadError::Truncated | HeadError::Io(_) => None,
        }
    }
}

impl RequestHead {
    /// The head as a request for the router, without its body (read or thrown away by then).
    pub fn to_request(&self) -> axum::http::Request<axum::body::Body> {
        let target = match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        };
        let mut request = axum::http::Request::new(axum::body::Body::empty());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = target.parse().unwrap_or_else(|_| Uri::from_static("/"));
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// The next request on a connection: waited for as long as the client likes (an idle
/// kept-alive connection is the client's to close; closing it from here would race with a
/// request being sent on it), then given `limit` from its first byte to arrive whole, so a
/// client that stalls mid-head does not hold the connection for ever.
pub async fn next_head(
    stream: &mut TcpStream,
    scratch: &mut Vec<u8>,
    limit: std::time::Duration,
) -> Result<Option<RequestHead>, HeadError> {
    if stream.peek(&mut [0u8; 1]).await? == 0 {
        return Ok(None);
    }
    tokio::time::timeout(limit, read_head(stream, scratch)).await.unwrap_or(Err(HeadError::Timeout(limit)))
}

/// The next request head on the connection, or None when the client closed it between
/// requests. Nothing after the head is taken from the socket.
pub async fn read_head(stream: &mut TcpStream, scratch: &mut Vec<u8>) -> Result<Option<RequestHead>, HeadError> {
    let end = |buf: &[u8]| {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::Request::new(&mut fields).parse(buf) {
            Ok(httparse::Status::Complete(len)) => Ok(Some(len)),
            Ok(httparse::Status::Partial) => Ok(None),
            Err(e) => Err(malformed(e)),
        }
    };
    match read_through(stream, scratch, MAX_HEAD_BYTES, end).await? {
        Through::Found(head) => parse(&head).map(Some),
        Through::Closed { consumed: 0 } => Ok(None),
        Through::Closed { .. } => Err(HeadError::Truncated),
        Through::TooLong => Err(HeadError::TooLarge),
    }
}

/// One line of a chunked body (a chunk size, the CRLF after a chunk, a trailer field),
/// without its line ending. None when the connection closed first.
pub async fn read_line(stream: &mut TcpStream, scratch: &mut Vec<u8>) -> io::Result<Option<Vec<u8>>> {
    let end = |buf: &[u8]| Ok::<_, io::Error>(buf.iter().position(|&b| b == b'\n').map(|i| i + 1));
    match read_through(stream, scratch, MAX_LINE_BYTES, end).await? {
        Through::Found(mut line) => {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            Ok(Some(line))
        }
        Through::Closed { .. } => Ok(None),
        Through::TooLong => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a chunk-size or trailer line longer than {MAX_LINE_BYTES} bytes"),
        )),
    }
}

enum Through {
    Found(Vec<u8>),
    Closed { consumed: usize },
    TooLong,
}

/// Take bytes up to the end `end` finds in them (their length to it), and not one more: what
/// has arrived is peeked at, and only the part before the end taken. A part that holds no end
/// is all taken (none of it can be past the end) and the next bytes are waited for.
async fn read_through<E: From<io::Error>>(
    stream: &mut TcpStream,
    scratch: &mut Vec<u8>,
    max: usize,
    end: impl Fn(&[u8]) -> Result<Option<usize>, E>,
) -> Result<Through, E> {
    let mut taken: Vec<u8> = Vec::new();
    scratch.resize(max, 0);
    loop {
        let room = max - taken.len();
        if room == 0 {
            return Ok(Through::TooLong);
        }
        let n = stream.peek(&mut scratch[..room]).await?;
        if n == 0 {
            return Ok(Through::Closed { consumed: taken.len() });
        }
        let found = if taken.is_empty() {
            end(&scratch[..n])?
        } else {
            let mut joined = taken.clone();
            joined.extend_from_slice(&scratch[..n]);
            end(&joined)?.map(|len| len.saturating_sub(taken.len()))
        };
        let take = found.unwrap_or(n);
        stream.read_exact(&mut scratch[..take]).await?;
        taken.extend_from_slice(&scratch[..take]);
        if found.is_some() {
            return Ok(Through::Found(taken));
        }
    }
}

fn malformed(e: impl std::fmt::Display) -> HeadError {
    HeadError::Malformed(e.to_string())
}

fn parse(buf: &[u8]) -> Result<RequestHead, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HeadError::Truncated),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::Malformed(format!("more than {MAX_HEADERS} header fields")))
        }
        Err(e) => return Err(malformed(e)),
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Truncated);
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(malformed)?;
    let uri: Uri = target.parse().map_err(|e| malformed(format!("request target `{target}`: {e}")))?;
    let version = if minor == 0 { Version::HTTP_10 } else { Version::HTTP_11 };
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for field in req.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(malformed)?;
        let value = HeaderValue::from_bytes(field.value).map_err(|e| malformed(format!("header `{name}`: {e}")))?;
        headers.append(name, value);
    }
    let framing = framing(&headers, version)?;
    let connection = |token: &str| tokens(&headers, header::CONNECTION).any(|t| t.eq_ignore_ascii_case(token));
    let keep_alive = match version {
        Version::HTTP_10 => connection("keep-alive"),
        _ => !connection("close"),
    };
    let expects_continue =
        version == Version::HTTP_11 && tokens(&headers, header::EXPECT).any(|t| t.eq_ignore_ascii_case("100-continue"));
    Ok(RequestHead {
        method,
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        version,
        headers,
        framing,
        keep_alive,
        expects_continue,
    })
}

/// RFC 9112 §6.3: chunked as the last (here: only) coding, else an exact Content-Length.
/// Both at once is how requests are smuggled past proxies, and is refused.
fn framing(headers: &HeaderMap, version: Version) -> Result<Framing, HeadError> {
    let codings: Vec<&str> = tokens(headers, header::TRANSFER_ENCODING).filter(|t| !t.is_empty()).collect();
    if !codings.is_empty() {
        if headers.contains_key(header::CONTENT_LENGTH) {
            return Err(HeadError::Malformed("both Content-Length and Transfer-Encoding; send one".into()));
        }
        if version == Version::HTTP_10 {
            return Err(HeadError::ChunkedOnHttp10);
        }
        return match codings.as_slice() {
            [only] if only.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
            _ => Err(HeadError::UnsupportedCoding(codings.join(", "))),
        };
    }
    let mut length = None;
    for value in tokens(headers, header::CONTENT_LENGTH) {
        let n: u64 = match value.bytes().all(|b| b.is_ascii_digit()) {
            true => value.parse().ok(),
            false => None,
        }
        .ok_or_else(|| HeadError::Malformed(format!("Content-Length `{value}` is not a number of bytes")))?;
        if length.is_some_and(|l| l != n) {
            return Err(HeadError::Malformed("Content-Length given twice with different values".into()));
        }
        length = Some(n);
    }
    Ok(length.map_or(Framing::Empty, Framing::Length))
}

/// The comma-separated elements of every `name` field, trimmed, borrowed from the map (a
/// value that is not visible ASCII reads as `?`, which no caller accepts).
fn tokens<'h>(headers: &'h HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &'h str> {
    headers.get_all(name).into_iter().flat_map(|v| v.to_str().unwrap_or("?").split(',')).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// A loopback connection: the client's end and the server's.
    pub(crate) async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    async fn head_of(raw: &[u8]) -> Result<Option<RequestHead>, HeadError> {
        let (mut client, mut server) = socket_pair().await;
        client.write_all(raw).await.unwrap();
        client.shutdown().await.unwrap();
        read_head(&mut server, &mut Vec::new()).await
    }

    #[tokio::test]
    async fn a_head_split_across_writes_leaves_its_body_in_the_socket() {
        let (mut client, mut server) = socket_pair().await;
        let writer = tokio::spawn(async move {
            for part in [
                &b"POST /process?pixels=16x16&form"[..],
                b"at=rgba HTTP/1.1\r\nHost: t\r\nConte",
                b"nt-Length: 5\r\n\r\nhello",
            ] {
                client.write_all(part).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            }
            client
        });
        let head = read_head(&mut server, &mut Vec::new()).await.unwrap().unwrap();
        assert_eq!((head.method, head.path.as_str()), (Method::POST, "/process"));
        assert_eq!(head.query.as_deref(), Some("pixels=16x16&format=rgba"));
        assert_eq!((head.framing, head.keep_alive, head.expects_continue), (Framing::Length(5), true, false));
        let _client = writer.await.unwrap();
        // The body was not taken with the head: the first byte read after it is the body's.
        let mut body = [0u8; 5];
        server.read_exact(&mut body).await.unwrap();
        assert_eq!(&body, b"hello");
    }

    #[tokio::test]
    async fn bad_heads_are_named_and_answered() {
        let cases: [(&[u8], StatusCode, &str); 6] = [
            (b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n", StatusCode::BAD_REQUEST, "malformed"),
            (b"POST /p HTTP/1.1\r\nContent-Length: 12a\r\n\r\n", StatusCode::BAD_REQUEST, "`12a` is not a number"),
            (b"POST /p HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", StatusCode::BAD_REQUEST, "twice"),
            (
                b"POST /p HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                StatusCode::BAD_REQUEST,
                "both",
            ),
            (
                b"POST /p HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                StatusCode::NOT_IMPLEMENTED,
                "`gzip, chunked`",
            ),
            (b"POST /p HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", StatusCode::BAD_REQUEST, "HTTP/1.0"),
        ];
        for (raw, status, words) in cases {
            let e = head_of(raw).await.expect_err(&String::from_utf8_lossy(raw));
            assert_eq!(e.status(), Some(status), "{e}");
            assert!(e.to_string().contains(words), "{e}");
        }
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(
            head_of(long.as_bytes()).await.unwrap_err().status(),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        assert!(matches!(head_of(b"GET / HTTP/1.1\r\nHost").await, Err(HeadError::Truncated)));
        assert!(head_of(b"").await.unwrap().is_none(), "a close between requests is not an error");
    }

    #[tokio::test]
    async fn an_idle_connection_waits_but_a_stalled_head_times_out() {
        let limit = std::time::Duration::from_millis(200);
        let (mut client, mut server) = socket_pair().await;
        let idle = tokio::time::timeout(limit * 3, next_head(&mut server, &mut Vec::new(), limit)).await;
        assert!(idle.is_err(), "an idle connection is not timed out: {idle:?}");
        client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        let stalled = next_head(&mut server, &mut Vec::new(), limit).await.unwrap_err();
        assert_eq!(stalled.status(), Some(StatusCode::REQUEST_TIMEOUT), "{stalled}");
    }

    #[tokio::test]
    async fn keep_alive_follows_the_version_and_connection_header() {
        for (raw, keep) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], true),
            (b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        ] {
            assert_eq!(head_of(raw).await.unwrap().unwrap().keep_alive, keep, "{}", String::from_utf8_lossy(raw));
        }
        let head = head_of(b"POST /p HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n").await;
        let head = head.unwrap().unwrap();
        assert_eq!((head.expects_continue, head.framing), (true, Framing::Chunked));
    }
}
