//! Errors of the ingest crate.

use std::io;

/// Why an RTMP connection was closed or a media message was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket read or write failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The peer did not finish the RTMP handshake within the configured timeout.
    #[error("handshake not completed within {0:?}")]
    HandshakeTimeout(std::time::Duration),
    /// The peer sent nothing for longer than the idle timeout.
    #[error("no data for {0:?}")]
    IdleTimeout(std::time::Duration),
    /// The handshake bytes were invalid.
    #[error("handshake: {0}")]
    Handshake(String),
    /// The chunk stream broke the protocol or one of our limits.
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    /// rml_rtmp reported a session-level protocol error.
    #[error("rtmp session: {0}")]
    Session(String),
    /// rml_rtmp panicked on the peer's input; only this connection is closed.
    #[error("rtmp library panicked on peer input: {0}")]
    LibraryPanic(String),
    /// A command other than `connect` arrived before the connection was established.
    #[error("command {0:?} before connect")]
    CommandBeforeConnect(String),
    /// The client asked for an application other than the configured one.
    #[error("unknown application {0:?}")]
    UnknownApp(String),
    /// The settings cannot work.
    #[error("ingest settings: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The authorizer refused the stream key.
    #[error("publish rejected: {0}")]
    PublishRejected(#[from] crate::auth::Refusal),
    /// The client tried to play; this server only accepts publishers over RTMP.
    #[error("playback over RTMP is not supported")]
    PlayNotSupported,
    /// The media could not be demuxed (unsupported codec, malformed tag).
    #[error("media: {0}")]
    Flv(#[from] FlvError),
    /// The server is shutting down.
    #[error("server shutting down")]
    Shutdown,
}

/// A violation found by [`crate::chunk::ChunkGuard`] before the bytes reach rml_rtmp.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    /// A message header announced more bytes than [`crate::IngestConfig::max_message_size`].
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// Announced message length.
        len: usize,
        /// Configured limit.
        limit: usize,
    },
    /// A Set Chunk Size message carried 0 or a value with the reserved top bit set.
    #[error("invalid chunk size {0}")]
    InvalidChunkSize(u32),
    /// A type 1/2/3 chunk continued a chunk stream that never had a type 0 header.
    #[error("chunk stream {0} continued without a full header")]
    NoPreviousHeader(u32),
    /// A chunk of another stream, or a non-continuation header, arrived mid-message.
    /// rml_rtmp keeps one payload buffer, so interleaving would corrupt it.
    #[error("interleaved chunk streams are not supported")]
    Interleaved,
    /// An AMF command or data message nests values deeper than
    /// [`crate::IngestConfig::max_amf_depth`]; decoding it would recurse that deep.
    #[error("AMF message (type {msg_type}) nests values more than {limit} levels deep")]
    AmfTooDeep {
        /// The RTMP message type.
        msg_type: u8,
        /// Configured limit.
        limit: usize,
    },
    /// More distinct chunk streams than [`crate::chunk::MAX_CHUNK_STREAMS`].
    #[error("too many chunk streams")]
    TooManyChunkStreams,
}

/// Why an FLV audio or video tag body could not be turned into media.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlvError {
    /// The video codec is not H.264; the name says which one it is.
    #[error(
        "unsupported video codec {0}; only H.264 (AVC) is accepted, set the encoder to x264 or another H.264 encoder"
    )]
    UnsupportedVideoCodec(String),
    /// The audio codec is not AAC; the name says which one it is.
    #[error("unsupported audio codec {0}; only AAC is accepted")]
    UnsupportedAudioCodec(String),
    /// The tag body ended before its header did.
    #[error("{0} tag body truncated")]
    Truncated(&'static str),
    /// The AVCDecoderConfigurationRecord or its SPS could not be parsed.
    #[error("invalid AVC sequence header: {0}")]
    InvalidAvcConfig(String),
    /// The AudioSpecificConfig could not be parsed.
    #[error("invalid AAC AudioSpecificConfig: {0}")]
    InvalidAacConfig(String),
}
