//! The client socket as the connection task sees it: when bytes last moved,
//! how many requests are being answered, and a lingering close.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// After we close a connection, how long we go on reading (and discarding)
/// what the client still sends, so that closing does not reset the connection
/// and destroy a response (a 413, say) the client has not read yet; like
/// nginx's lingering close.
pub const LINGER_TIME: Duration = Duration::from_secs(2);
/// At most this many bytes are discarded while lingering.
pub const LINGER_MAX_BYTES: usize = 8 << 20;
/// What a connection's task and its socket share: when bytes last moved, and
/// how many requests are being answered (a held request moves no bytes).
pub struct Activity {
    start: Instant,
    last_io_ms: AtomicU64,
    pub answering: AtomicUsize,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            answering: AtomicUsize::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_io_ms.store(ms, Ordering::Relaxed);
    }
    pub fn last_io(&self) -> Instant {
        self.start + Duration::from_millis(self.last_io_ms.load(Ordering::Relaxed))
    }
    /// How long the connection has been idle; zero while a request is answered.
    pub fn idle_for(&self) -> Duration {
        if self.answering.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        self.last_io().elapsed()
    }
}

/// A request being answered; dropping it (answered, or the client gone)
/// counts it out.
pub struct Answering(Arc<Activity>);

impl Answering {
    pub fn new(activity: &Arc<Activity>) -> Self {
        activity.answering.fetch_add(1, Ordering::Relaxed);
        Self(activity.clone())
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answering.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A client socket that lingers when dropped: if the client may still be
/// sending, a task reads and discards for up to [`LINGER_TIME`] (and
/// [`LINGER_MAX_BYTES`]) before closing, so the kernel does not answer the
/// unread bytes with a reset that destroys our last response. hyper has
/// already shut down the write side by then, so the client sees the response
/// end and stops.
/// It also notes when bytes move, for the keep-alive timeout.
pub struct Lingering(pub Option<TcpStream>, pub Arc<Activity>);

impl Lingering {
    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.0.as_mut().expect("present until dropped"))
    }
    fn moved<T>(
        &self,
        r: Poll<io::Result<T>>,
        moved: impl FnOnce(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        if let Poll::Ready(Ok(v)) = &r
            && moved(v)
        {
            self.1.touch();
        }
        r
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = self.stream().poll_read(cx, buf);
        let read = buf.filled().len() > before;
        self.moved(r, |_| read)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = self.stream().poll_write(cx, buf);
        self.moved(r, |n| *n > 0)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = self.stream().poll_write_vectored(cx, bufs);
        self.moved(r, |n| *n > 0)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(mut stream) = self.0.take() else {
            return;
        };
        let mut buf = [0u8; 2048];
        match stream.try_read(&mut buf) {
            // The client closed, or the socket failed: nothing to protect.
            Ok(0) => return,
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return,
            _ => {}
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let mut buf = vec![0u8; 16 << 10];
            let mut left = LINGER_MAX_BYTES;
            let _ = tokio::time::timeout(LINGER_TIME, async {
                while left > 0 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => left = left.saturating_sub(n),
                    }
                }
            })
            .await;
        });
    }
}
