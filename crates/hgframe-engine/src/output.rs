//! What flows between an exchange and its transport: frames in, chunks of encoded frames
//! out.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use hgframe_wire::codec::CodecError;
use hgframe_wire::Frame;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::error::Error;

/// Frames read from some input, boxed so that every transport feeds the same exchange.
pub type FrameInput = Pin<Box<dyn Stream<Item = Result<Frame, CodecError>> + Send>>;

/// What an exchange puts in its output queue: encoded frames, or the reason it gave up
/// (the transport then aborts rather than ends cleanly, so the peer cannot take a
/// cut-short response for a whole one).
pub type OutputChunk = Result<Bytes, Error>;

/// Writes every chunk, flushing whenever the queue runs dry, then shuts the writer down.
/// An error chunk (the exchange gave up) shuts down without writing more.
pub(crate) async fn write_all_chunks<W>(mut rx: mpsc::Receiver<OutputChunk>, mut writer: W)
where
    W: AsyncWrite + Unpin,
{
    while let Some(chunk) = rx.recv().await {
        let Ok(chunk) = chunk else { break };
        if writer.write_all(&chunk).await.is_err() {
            // The peer is gone; dropping `rx` tells the exchange.
            return;
        }
        if rx.is_empty() && writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}
