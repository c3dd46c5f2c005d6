//! Plugin stdout and stderr, captured per input and forwarded to the host log.
//!
//! Output is kept in memory up to a cap and the rest is counted and dropped: a plugin that
//! floods its stdout must not fill the host's memory or its log, and must not fail its input
//! either (writing to stdout is not an error a handler can reasonably deal with).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How many bytes of each stream are kept per input.
pub const CAPTURE_LIMIT: usize = 64 * 1024;

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: usize,
}

impl Captured {
    fn push(&mut self, data: &[u8]) {
        let room = CAPTURE_LIMIT.saturating_sub(self.bytes.len());
        let kept = room.min(data.len());
        self.bytes.extend_from_slice(&data[..kept]);
        self.dropped += data.len() - kept;
    }
}

/// A stdout or stderr stream whose contents the host reads after the input finished.
#[derive(Clone, Default)]
pub struct CapturedOutput(Arc<Mutex<Captured>>);

impl CapturedOutput {
    /// The captured text (invalid UTF-8 replaced) and how many bytes were dropped past the cap.
    pub fn take(&self) -> (String, usize) {
        let mut captured = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&captured.bytes).into_owned();
        let dropped = captured.dropped;
        *captured = Captured::default();
        (text, dropped)
    }

    fn push(&self, data: &[u8]) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(data);
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always accept: the cap is enforced by dropping, not by back-pressure.
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_up_to_the_cap_and_counts_the_rest() {
        let out = CapturedOutput::default();
        out.push(&vec![b'a'; CAPTURE_LIMIT - 1]);
        out.push(b"bcd");
        let (text, dropped) = out.take();
        assert_eq!(text.len(), CAPTURE_LIMIT);
        assert!(text.ends_with('b'));
        assert_eq!(dropped, 2);
    }

    #[test]
    fn replaces_invalid_utf8() {
        let out = CapturedOutput::default();
        out.push(b"ok \xff\xfe");
        assert_eq!(out.take().0, "ok \u{fffd}\u{fffd}");
    }
}
