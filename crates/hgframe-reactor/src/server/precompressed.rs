//! Response data that is already compressed (a cache's), sent as it is.
//!
//! An application that keeps compressed copies of its answers (a response cache) asks
//! how a response will be encoded ([`ServerReactor::response_encoding`]): the profile,
//! the level, and how many raw bytes one flush may take so that every frame decodes on
//! arrival. It compresses with exactly that (once, for many responses), and hands the
//! result over with [`ServerReactor::on_response_precompressed`], which pushes it on
//! the request's response stream
//! ([`hgframe_stream::OutgoingStream::push_precompressed`]): no compression work, the
//! frames cut between the cached blocks.

use std::sync::Arc;

use bytes::Bytes;
use hgframe_stream::encoding::{ContentEncoder, Profile};
use hgframe_stream::{EncodingError, EncodingSettings};
use hgframe_wire::{FrameType, RequestId};

use super::ServerReactor;
use crate::action::ServerAction;
use crate::error::ReactorError;

/// How a response's data is encoded, for data compressed ahead of time: what
/// [`ServerReactor::on_response_precompressed`] expects.
///
/// Data compressed with [`ResponseEncoding::encoder`], flushing every
/// [`ResponseEncoding::max_flush_raw_len`] raw bytes or fewer and ending the unit
/// ([`ContentEncoder::end_unit`]), goes out in frames that each decode on arrival. Two
/// responses with equal encodings (`==`: same profile, level and flush length) can share
/// such data.
#[derive(Debug, Clone)]
pub struct ResponseEncoding {
    profile: Arc<dyn Profile>,
    level: i32,
    max_flush_raw_len: usize,
}

impl PartialEq for ResponseEncoding {
    fn eq(&self, other: &Self) -> bool {
        self.profile.name() == other.profile.name()
            && self.level == other.level
            && self.max_flush_raw_len == other.max_flush_raw_len
    }
}

impl Eq for ResponseEncoding {}

impl ResponseEncoding {
    /// The profile's name (`zstd-8mb`, ...).
    pub fn profile_name(&self) -> &str {
        self.profile.name()
    }

    /// The profile itself (its [`Profile::check_precompressed`] says whether it can
    /// take pre-compressed data at all: `deflate` cannot).
    pub fn profile(&self) -> &Arc<dyn Profile> {
        &self.profile
    }

    /// The compression level of the response stream.
    pub fn level(&self) -> i32 {
        self.level
    }

    /// The most raw bytes one flush may take so that its output fits one frame of the
    /// response stream ([`hgframe_stream::OutgoingStream::max_flush_raw_len`]).
    pub fn max_flush_raw_len(&self) -> usize {
        self.max_flush_raw_len
    }

    /// A new encoder of this profile and level, to compress data ahead of time.
    pub fn encoder(&self) -> Result<Box<dyn ContentEncoder>, EncodingError> {
        self.profile
            .encoder(&EncodingSettings::new(self.profile.name()).with_level(self.level))
    }
}

impl ServerReactor {
    /// How response data is encoded now, for data compressed ahead of time (a cache):
    /// `None` when responses go in `identity`. A response marked sensitive
    /// ([`ServerReactor::set_sensitive`]) goes raw whatever this says. Opens the
    /// reactor's output stream if it is not yet (nothing is sent).
    pub fn response_encoding(&mut self) -> Result<Option<ResponseEncoding>, ReactorError> {
        let profile = match self.profiles.get(&self.encoding.profile) {
            Some(p) if !p.is_identity() => Arc::clone(p),
            _ => return Ok(None),
        };
        let stream = self.stream()?;
        Ok(Some(ResponseEncoding {
            profile,
            level: stream.level(),
            max_flush_raw_len: stream.max_flush_raw_len(),
        }))
    }

    /// Response bytes of a running request, already compressed for
    /// [`ServerReactor::response_encoding`] (whole units of the profile: for zstd, whole
    /// zstd frames), sent as they are on the request's response stream
    /// ([`hgframe_stream::OutgoingStream::push_precompressed`]); `eos` as for
    /// [`ServerReactor::on_response_data`]. The client decodes them like any response.
    ///
    /// Fails with [`ReactorError::Encode`] when the stream cannot take them: an
    /// `identity` stream (the output is not encoded, or the response is sensitive), a
    /// profile with no pre-compressed form, or data that is not whole units. Nothing is
    /// queued then.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use hgframe_reactor::{ServerAction, ServerConfig, ServerReactor};
    /// use hgframe_wire::Frame;
    ///
    /// let mut config = ServerConfig::default();
    /// config.set_peer_accepts(&["zstd-8mb"]);
    /// let mut server = ServerReactor::new(config);
    /// let frame = Frame::from_human("1 1 stream-begin command-name eos cat").unwrap();
    /// let ServerAction::RunCommand(cmd) = server.on_frame(frame) else { panic!() };
    /// let encoding = server.response_encoding()?.expect("zstd");
    /// // Compressed once, ahead of time (a cache would keep it).
    /// let mut encoder = encoding.encoder().unwrap();
    /// let mut cached = Vec::new();
    /// encoder.encode_flush(b"meow", &mut cached).unwrap();
    /// encoder.end_unit(&mut cached).unwrap();
    /// server.on_response_precompressed(cmd.request_id, Bytes::from(cached), true)?;
    /// assert!(server.poll_frame().is_some());
    /// # Ok::<(), hgframe_reactor::ReactorError>(())
    /// ```
    pub fn on_response_precompressed(
        &mut self,
        request: RequestId,
        compressed: Bytes,
        eos: bool,
    ) -> Result<ServerAction, ReactorError> {
        self.check_running(request)?;
        let mut frames = Vec::new();
        self.data_stream(request)?
            .push_precompressed(
                request,
                FrameType::BytesResponse,
                compressed,
                eos,
                &mut frames,
            )
            .map_err(ReactorError::Encode)?;
        self.respond(request, frames, eos);
        Ok(self.output_action())
    }
}
