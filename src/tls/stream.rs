//! An accepted connection as hyper reads it: the socket itself, or a TLS
//! session whose handshake runs when the connection is first read or
//! written, on the connection's own task.

use super::Acceptor;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// An accepted client connection, plain or TLS.
pub struct Stream {
    state: State,
}

enum State {
    Plain(TcpStream),
    /// Boxed: a rustls session is a few KiB, which plain connections need
    /// not carry.
    Handshaking(Box<tokio_rustls::Accept<TcpStream>>),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// The handshake failed (its error was returned once; the socket is
    /// closed).
    Failed,
}

impl Stream {
    /// `socket` as is, or (with `tls`) a TLS server session on it whose
    /// handshake has not started.
    pub fn new(socket: TcpStream, tls: Option<&Acceptor>) -> Self {
        let state = match tls {
            None => State::Plain(socket),
            Some(acceptor) => State::Handshaking(Box::new(acceptor.acceptor.accept(socket))),
        };
        Stream { state }
    }

    /// Drives the handshake, if one is under way, to its end.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let State::Handshaking(accept) = &mut self.state else {
            return Poll::Ready(Ok(()));
        };
        match ready!(Pin::new(accept.as_mut()).poll(cx)) {
            Ok(tls) => {
                self.state = State::Tls(Box::new(tls));
                Poll::Ready(Ok(()))
            }
            Err(e) => {
                // rustls has sent its alert (a plain-HTTP client gets one
                // and the close); the socket goes with the future.
                self.state = State::Failed;
                Poll::Ready(Err(e))
            }
        }
    }
}

fn failed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "TLS handshake failed")
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_handshake(cx))?;
        match &mut this.state {
            State::Plain(s) => Pin::new(s).poll_read(cx, buf),
            State::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            State::Handshaking(_) | State::Failed => Poll::Ready(Err(failed())),
        }
    }
}

/// Vectored writes of at most this many bytes in all are copied into one
/// buffer on the stack and sent with one `write`.
const SMALL_WRITE: usize = 2048;

/// `bufs` copied into one stack buffer when there are several and they are
/// small together: a response head and a small body then go out with one
/// `write` instead of a `writev`, which measured 1-5% more requests/s a
/// core (docs/benchmarks.md, "Flat writes"). hyper's own flat strategy
/// (`writev(false)`) would do the same but copies every body chunk into a
/// per-connection buffer that keeps its largest size while the connection
/// lives; this buffer is gone after the call.
fn coalesce_small(bufs: &[io::IoSlice<'_>]) -> Option<([u8; SMALL_WRITE], usize)> {
    if bufs.len() < 2 {
        return None;
    }
    let total = bufs.iter().try_fold(0usize, |sum, b| {
        sum.checked_add(b.len()).filter(|&t| t <= SMALL_WRITE)
    })?;
    let mut flat = [0u8; SMALL_WRITE];
    let mut at = 0;
    for b in bufs {
        flat[at..at + b.len()].copy_from_slice(b);
        at += b.len();
    }
    debug_assert_eq!(at, total);
    Some((flat, total))
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_handshake(cx))?;
        match &mut this.state {
            State::Plain(s) => Pin::new(s).poll_write(cx, buf),
            State::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            State::Handshaking(_) | State::Failed => Poll::Ready(Err(failed())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_handshake(cx))?;
        match &mut this.state {
            State::Plain(s) => match coalesce_small(bufs) {
                Some((flat, len)) => Pin::new(s).poll_write(cx, &flat[..len]),
                None => Pin::new(s).poll_write_vectored(cx, bufs),
            },
            State::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            State::Handshaking(_) | State::Failed => Poll::Ready(Err(failed())),
        }
    }

    /// Both a socket and a rustls stream write vectors (hyper asks once,
    /// before the handshake).
    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Plain(s) => Pin::new(s).poll_flush(cx),
            State::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            State::Handshaking(_) | State::Failed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Plain(s) => Pin::new(s).poll_shutdown(cx),
            State::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            // Nothing was said yet: dropping the stream closes the socket.
            State::Handshaking(_) | State::Failed => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_vectored_writes_are_joined_in_order() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n";
        let bufs = [io::IoSlice::new(head), io::IoSlice::new(b"ok\n")];
        let (flat, len) = coalesce_small(&bufs).expect("joined");
        assert_eq!(&flat[..len], [&head[..], b"ok\n"].concat().as_slice());
    }

    #[test]
    fn one_slice_or_more_than_the_bound_is_left_to_writev() {
        let one = [io::IoSlice::new(b"abc")];
        assert!(coalesce_small(&one).is_none());
        let half = vec![7u8; SMALL_WRITE / 2];
        let exact = [io::IoSlice::new(&half), io::IoSlice::new(&half)];
        assert_eq!(
            coalesce_small(&exact).map(|(_, len)| len),
            Some(SMALL_WRITE)
        );
        let over = [
            io::IoSlice::new(&half),
            io::IoSlice::new(&half),
            io::IoSlice::new(b"x"),
        ];
        assert!(coalesce_small(&over).is_none());
    }
}
