//! JSON bodies for the answers hyper gives on its own.
//!
//! A request hyper cannot parse never reaches the router: a request target over 64 KiB (hyper's
//! fixed limit; ours, `server.max_uri_bytes`, is lower and answered by the router), a head over
//! its buffer or with too many headers, a malformed request line. hyper then writes `414`,
//! `431` or `400` with an empty body and closes the connection. [`JsonParseErrors`] sits
//! between hyper and the socket and replaces exactly those heads — recognised by their status
//! line, `content-length: 0` and the absence of any header but `date` and `connection: close`
//! — with the same
//! status and a JSON error like every other error of the API.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose hyper-made error answers carry JSON bodies.
pub(super) struct JsonParseErrors<S> {
    inner: S,
    /// A replacement answer and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> JsonParseErrors<S> {
    pub(super) fn new(inner: S) -> Self {
        Self {
            inner,
            pending: None,
        }
    }
}

/// The JSON answer replacing `head` when it is one of hyper's own bodiless error answers.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    const STATUSES: [(&[u8], &str, &str); 3] = [
        (
            b"HTTP/1.1 414 URI Too Long\r\n",
            "uri_too_long",
            "the request target is over 65534 bytes, the most the HTTP server reads \
             (server.max_uri_bytes is the configured limit)",
        ),
        (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            "header_fields_too_large",
            "the request head is too large or has too many header fields for the HTTP server \
             (at most 100 fields, about 400 KiB)",
        ),
        (
            b"HTTP/1.1 400 Bad Request\r\n",
            "bad_request",
            "the request could not be parsed as HTTP/1.1",
        ),
    ];
    if head.len() > 256 || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let (status_line, code, message) = STATUSES.iter().find(|(s, ..)| head.starts_with(s))?;
    let text = std::str::from_utf8(&head[status_line.len()..head.len() - 4]).ok()?;
    let mut empty = false;
    let mut date = None;
    for line in text.split("\r\n") {
        let (name, value) = line.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" if value.trim() == "0" => empty = true,
            "date" => date = Some(value.trim()),
            "connection" if value.trim().eq_ignore_ascii_case("close") => {}
            _ => return None,
        }
    }
    if !empty {
        return None;
    }
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut out = Vec::with_capacity(status_line.len() + body.len() + 128);
    out.extend_from_slice(status_line);
    out.extend_from_slice(b"content-type: application/json\r\n");
    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    if let Some(date) = date {
        out.extend_from_slice(format!("date: {date}\r\n").as_bytes());
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

impl<S: AsyncWrite + Unpin> JsonParseErrors<S> {
    /// Writes what is left of a replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            if *done == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonParseErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(answer) = replacement(buf) {
            self.pending = Some((answer, 0));
            // Written from here on by this call, the next ones, flush or shutdown.
            if let Poll::Ready(Err(e)) = self.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next())
            && replacement(only).is_some()
        {
            return self.poll_write(cx, only);
        }
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_own_bodiless_error_heads_are_replaced() {
        let date = "date: Tue, 01 Dec 2026 22:00:00 GMT\r\n";
        let hyper414 = format!(
            "HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\n{date}\r\n"
        );
        let out =
            String::from_utf8(replacement(hyper414.as_bytes()).expect("replaced")).expect("utf-8");
        let (head, body) = out.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(head.contains(date.trim_end()), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(json["error"]["code"], "uri_too_long");
        for status in ["431 Request Header Fields Too Large", "400 Bad Request"] {
            let head = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
            assert!(replacement(head.as_bytes()).is_some(), "{status}");
        }
        // Our own answers (a content type, a body, other headers) and other statuses pass.
        for head in [
            "HTTP/1.1 414 URI Too Long\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nx-a: b\r\n\r\n",
        ] {
            assert!(replacement(head.as_bytes()).is_none(), "{head}");
        }
    }

    #[tokio::test]
    async fn a_replaced_answer_is_written_whole_through_a_trickling_socket() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A pipe of 7 bytes: the answer goes out over many partial writes.
        let (a, mut b) = tokio::io::duplex(7);
        let mut conn = JsonParseErrors::new(a);
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        let want = replacement(head).expect("replaced");
        let writer = tokio::spawn(async move {
            assert_eq!(conn.write(head).await.expect("writes"), head.len());
            conn.shutdown().await.expect("flushes and shuts down");
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.expect("reads");
        writer.await.expect("writer");
        assert_eq!(got, want);
    }
}
