//! Answers on the wire: the status line and fields, then the body in the same vectored write,
//! straight from the buffer that holds it (a processed frame is sent from its own buffer).
use std::io::{self, Write};

use axum::http::{header, HeaderMap, StatusCode, Version};
use axum::response::Response;
use bytes::Buf;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// What a request is answered with.
pub enum Answer {
    /// A response from the router or an error; its body is small and collected first.
    Response(Response),
    /// 200 with a processed frame, sent from the frame's own buffer, which goes back to the
    /// pool when the answer is dropped.
    Frame { headers: HeaderMap, frame: Box<dyn AsRef<[u8]> + Send> },
}

impl Answer {
    pub fn status(&self) -> StatusCode {
        match self {
            Answer::Response(r) => r.status(),
            Answer::Frame { .. } => StatusCode::OK,
        }
    }
}

impl From<Response> for Answer {
    fn from(r: Response) -> Self {
        Answer::Response(r)
    }
}

/// How the answer goes out: to a HEAD request without its body; with `Connection: close`
/// when the connection ends after it.
pub struct Delivery {
    pub version: Version,
    pub head_only: bool,
    pub close: bool,
}

pub async fn write(stream: &mut TcpStream, answer: Answer, delivery: &Delivery) -> io::Result<()> {
    match answer {
        Answer::Response(response) => {
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.map_err(io::Error::other)?;
            write_parts(stream, parts.status, &parts.headers, &body, delivery).await
        }
        Answer::Frame { headers, frame } => {
            write_parts(stream, StatusCode::OK, &headers, (*frame).as_ref(), delivery).await
        }
    }
}

async fn write_parts(
    stream: &mut TcpStream,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    delivery: &Delivery,
) -> io::Result<()> {
    let mut head = Vec::with_capacity(256);
    let version = if delivery.version == Version::HTTP_10 { "HTTP/1.0" } else { "HTTP/1.1" };
    let reason = status.canonical_reason().unwrap_or("");
    // Written into `head` in place: no String per field on the hot path.
    write!(head, "{version} {} {reason}\r\n", status.as_u16())?;
    for (name, value) in headers {
        // Framing and connection fields are this layer's to set.
        if [header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::CONNECTION].contains(name) {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let bodiless = status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    if !bodiless {
        write!(head, "content-length: {}\r\n", body.len())?;
    }
    write!(head, "date: {}\r\n", httpdate::HttpDate::from(std::time::SystemTime::now()))?;
    match (delivery.close, delivery.version) {
        (true, _) => head.extend_from_slice(b"connection: close\r\n"),
        (false, Version::HTTP_10) => head.extend_from_slice(b"connection: keep-alive\r\n"),
        _ => {}
    }
    head.extend_from_slice(b"\r\n");
    let body = if delivery.head_only || bodiless { &[][..] } else { body };
    stream.write_all_buf(&mut head.as_slice().chain(body)).await?;
    stream.flush().await
}
