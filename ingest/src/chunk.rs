//! A guard that reads RTMP chunk headers ahead of rml_rtmp.
//!
//! rml_rtmp 0.8 trusts the peer: it reserves whatever a message header
//! announces, accepts a chunk size of 0, and mixes the payloads of interleaved
//! chunk streams. [`ChunkGuard`] follows the chunk framing (RTMP 1.0 spec 5.3)
//! with the same rules rml_rtmp uses, enforces our limits before a single byte
//! reaches the library, refuses AMF messages nested deeper than a limit (see
//! [`crate::amf`]), and picks out AMF command names so the connection can
//! insist on `connect` first. It is pure and is the fuzzed entry point.

use std::collections::HashMap;

use crate::amf;
use crate::error::ChunkError;

/// Most distinct chunk stream ids one connection may use. Publishers use a handful.
pub const MAX_CHUNK_STREAMS: usize = 64;

/// RTMP's initial maximum chunk size (spec 5.4.1).
const INITIAL_CHUNK_SIZE: usize = 128;
/// The timestamp field value that announces an extended timestamp.
const EXTENDED_TIMESTAMP: u32 = 0xFF_FFFF;
/// Longest chunk header: 3-byte basic header, 11-byte type 0 header, 4-byte extended timestamp.
const MAX_HEADER_LEN: usize = 18;
/// Message type ids the guard looks into: the ones rml_rtmp decodes AMF in
/// (it reads the AMF3-flagged ones as AMF0 too), and Set Chunk Size.
const MSG_SET_CHUNK_SIZE: u8 = 1;
const MSG_AMF3_DATA: u8 = 15;
const MSG_AMF3_COMMAND: u8 = 17;
const MSG_AMF0_DATA: u8 = 18;
const MSG_AMF0_COMMAND: u8 = 20;

/// Whether the guard keeps a message's bytes to read them when it completes.
fn inspected(msg_type: u8) -> bool {
    matches!(
        msg_type,
        MSG_SET_CHUNK_SIZE | MSG_AMF3_DATA | MSG_AMF3_COMMAND | MSG_AMF0_DATA | MSG_AMF0_COMMAND
    )
}

#[derive(Debug, Clone, Copy)]
struct PrevHeader {
    len: usize,
    msg_type: u8,
    timestamp_field: u32,
}

#[derive(Debug)]
struct InProgress {
    csid: u32,
    msg_type: u8,
    remaining: usize,
    /// The message so far, for the types the guard reads ([`inspected`]).
    body: Vec<u8>,
}

/// What a completed message told the guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// An AMF command (e.g. `connect`, `publish`) whose last byte is just before
    /// offset `end` of the bytes passed to [`ChunkGuard::feed`].
    Command {
        /// The command name.
        name: String,
        /// Offset just past the message in the fed bytes.
        end: usize,
    },
}

/// Splits fed bytes after each command message, so that rml_rtmp sees one
/// command at a time and its requests can be answered before the next command
/// (it refuses a pipelined `publish` while `connect` is still unanswered).
pub fn split_after_commands<'a>(bytes: &'a [u8], notices: &[Notice]) -> Vec<&'a [u8]> {
    let mut parts = Vec::with_capacity(notices.len() + 1);
    let mut start = 0;
    for Notice::Command { end, .. } in notices {
        parts.push(&bytes[start..*end]);
        start = *end;
    }
    if start < bytes.len() || parts.is_empty() {
        parts.push(&bytes[start..]);
    }
    parts
}

/// Follows the chunk stream of one connection; see the module docs.
#[derive(Debug)]
pub struct ChunkGuard {
    max_message_size: usize,
    max_amf_depth: usize,
    chunk_size: usize,
    prev: HashMap<u32, PrevHeader>,
    current: Option<InProgress>,
    /// Bytes still to skip of the current chunk's payload.
    payload_left: usize,
    /// An incomplete chunk header carried over from the previous read.
    partial: Vec<u8>,
}

impl ChunkGuard {
    /// A guard for a fresh connection, right after the handshake.
    pub fn new(max_message_size: usize, max_amf_depth: usize) -> Self {
        Self {
            max_message_size,
            max_amf_depth,
            chunk_size: INITIAL_CHUNK_SIZE,
            prev: HashMap::new(),
            current: None,
            payload_left: 0,
            partial: Vec::with_capacity(MAX_HEADER_LEN),
        }
    }

    /// Checks the next bytes of the stream; commands completed in them are appended to `notices`.
    pub fn feed(&mut self, input: &[u8], notices: &mut Vec<Notice>) -> Result<(), ChunkError> {
        let mut pos = 0;
        while pos < input.len() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(input.len() - pos);
                self.consume_payload(&input[pos..pos + n]);
                pos += n;
            } else {
                // Parse a header from the carried-over bytes plus as much input as a header can need.
                let carried = self.partial.len();
                let take = (MAX_HEADER_LEN - carried).min(input.len() - pos);
                self.partial.extend_from_slice(&input[pos..pos + take]);
                let buf = std::mem::take(&mut self.partial);
                match self.header(&buf)? {
                    Some(used) => pos += used - carried,
                    None => {
                        self.partial = buf;
                        pos += take;
                    }
                }
            }
            if self.current.as_ref().is_some_and(|c| c.remaining == 0) {
                self.finish_message(pos, notices)?;
            }
        }
        Ok(())
    }

    /// Parses one chunk header; `Ok(None)` when more bytes are needed.
    fn header(&mut self, d: &[u8]) -> Result<Option<usize>, ChunkError> {
        let Some(&b0) = d.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut i) = match b0 & 0x3f {
            0 if d.len() >= 2 => (64 + u32::from(d[1]), 2),
            1 if d.len() >= 3 => (64 + u32::from(d[1]) + 256 * u32::from(d[2]), 3),
            0 | 1 => return Ok(None),
            id => (u32::from(id), 1),
        };
        let header_len = [11, 7, 3, 0][usize::from(fmt)];
        if d.len() < i + header_len {
            return Ok(None);
        }
        let u24 = |p: usize| u32::from(d[p]) << 16 | u32::from(d[p + 1]) << 8 | u32::from(d[p + 2]);
        let mut h = match (fmt, self.prev.get(&csid)) {
            (0, _) => PrevHeader {
                len: 0,
                msg_type: 0,
                timestamp_field: 0,
            },
            (_, Some(p)) => *p,
            (_, None) => return Err(ChunkError::NoPreviousHeader(csid)),
        };
        if fmt <= 2 {
            h.timestamp_field = u24(i);
        }
        if fmt <= 1 {
            h.len = u24(i + 3) as usize;
            h.msg_type = d[i + 6];
        }
        i += header_len;
        if h.timestamp_field >= EXTENDED_TIMESTAMP {
            if d.len() < i + 4 {
                return Ok(None);
            }
            i += 4;
        }

        match &self.current {
            Some(cur) if fmt != 3 || cur.csid != csid => return Err(ChunkError::Interleaved),
            Some(_) => {}
            None => {
                if h.len > self.max_message_size {
                    return Err(ChunkError::MessageTooLarge {
                        len: h.len,
                        limit: self.max_message_size,
                    });
                }
                self.current = Some(InProgress {
                    csid,
                    msg_type: h.msg_type,
                    remaining: h.len,
                    body: Vec::new(),
                });
            }
        }
        if !self.prev.contains_key(&csid) && self.prev.len() >= MAX_CHUNK_STREAMS {
            return Err(ChunkError::TooManyChunkStreams);
        }
        self.prev.insert(csid, h);
        let remaining = self.current.as_ref().map_or(0, |c| c.remaining);
        self.payload_left = remaining.min(self.chunk_size);
        Ok(Some(i))
    }

    fn consume_payload(&mut self, bytes: &[u8]) {
        self.payload_left -= bytes.len();
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        cur.remaining -= bytes.len();
        if inspected(cur.msg_type) {
            // At most max_message_size, like the buffer rml_rtmp keeps.
            cur.body.extend_from_slice(bytes);
        }
    }

    fn finish_message(&mut self, end: usize, notices: &mut Vec<Notice>) -> Result<(), ChunkError> {
        let Some(cur) = self.current.take() else {
            return Ok(());
        };
        self.payload_left = 0;
        match cur.msg_type {
            MSG_SET_CHUNK_SIZE => {
                let Some(b) = cur.body.get(..4) else {
                    return Err(ChunkError::InvalidChunkSize(0));
                };
                let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                // RTMP 5.4.1: the top bit must be zero, and a size of 0 would stall the parser.
                if size == 0 || size > 0x7FFF_FFFF {
                    return Err(ChunkError::InvalidChunkSize(size));
                }
                self.chunk_size = size as usize;
            }
            MSG_AMF0_COMMAND | MSG_AMF3_COMMAND | MSG_AMF0_DATA | MSG_AMF3_DATA => {
                // AMF3 commands start with a format byte (0), then AMF0 values;
                // rml_rtmp skips it only when it is 0, and so do we.
                let skip =
                    usize::from(cur.msg_type == MSG_AMF3_COMMAND && cur.body.first() == Some(&0));
                let values = &cur.body[skip..];
                amf::check_depth(values, self.max_amf_depth).map_err(|e| {
                    ChunkError::AmfTooDeep {
                        msg_type: cur.msg_type,
                        limit: e.limit,
                    }
                })?;
                if matches!(cur.msg_type, MSG_AMF0_COMMAND | MSG_AMF3_COMMAND) {
                    let name = command_name(values);
                    notices.push(Notice::Command { name, end });
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// `payload` as one message of `msg_type` on chunk stream `csid` (2 to 63),
/// message stream 1, in chunks of the initial 128 bytes: what a client sends
/// before any Set Chunk Size. For tests and fuzzing.
#[doc(hidden)]
pub fn chunked(csid: u8, msg_type: u8, payload: &[u8]) -> Vec<u8> {
    let l = (payload.len() as u32).to_be_bytes();
    let mut out = vec![csid & 0x3f, 0, 0, 0, l[1], l[2], l[3], msg_type, 1, 0, 0, 0];
    for (i, chunk) in payload.chunks(INITIAL_CHUNK_SIZE).enumerate() {
        if i > 0 {
            out.push(0xC0 | (csid & 0x3f));
        }
        out.extend_from_slice(chunk);
    }
    out
}

/// Reads the leading AMF0 string (the command name) of a command message.
fn command_name(p: &[u8]) -> String {
    match p {
        [0x02, hi, lo, rest @ ..] => {
            let len = usize::from(*hi) << 8 | usize::from(*lo);
            String::from_utf8_lossy(&rest[..len.min(rest.len())]).into_owned()
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type0(csid: u8, msg_type: u8, len: usize) -> Vec<u8> {
        let l = (len as u32).to_be_bytes();
        vec![csid, 0, 0, 0, l[1], l[2], l[3], msg_type, 0, 0, 0, 0]
    }

    fn command(name: &str) -> Vec<u8> {
        let mut p = vec![0x02, 0, name.len() as u8];
        p.extend_from_slice(name.as_bytes());
        p
    }

    #[test]
    fn command_names_are_reported_across_chunks_and_reads() {
        let mut g = ChunkGuard::new(1 << 20, 64);
        let mut payload = command("connect");
        payload.resize(300, 5);
        let mut wire = type0(3, MSG_AMF0_COMMAND, payload.len());
        wire.extend_from_slice(&payload[..128]);
        wire.push(0xC3);
        wire.extend_from_slice(&payload[128..256]);
        wire.push(0xC3);
        wire.extend_from_slice(&payload[256..]);
        let mut notices = vec![];
        for piece in wire.chunks(7) {
            g.feed(piece, &mut notices).unwrap();
        }
        // 12-byte header + 300 bytes of payload + 2 continuation headers = 314 = 44 * 7 + 6.
        assert_eq!(
            notices,
            vec![Notice::Command {
                name: "connect".into(),
                end: 6
            }]
        );
    }

    #[test]
    fn pipelined_commands_are_split_after_each_one() {
        let mut g = ChunkGuard::new(1 << 20, 64);
        let (connect, publish) = (command("connect"), command("publish"));
        let mut wire = type0(3, MSG_AMF0_COMMAND, connect.len());
        wire.extend(&connect);
        let first_end = wire.len();
        wire.extend(type0(8, MSG_AMF0_COMMAND, publish.len()));
        wire.extend(&publish);
        wire.extend(type0(6, 9, 2));
        wire.extend([0x17, 0]);
        let mut notices = vec![];
        g.feed(&wire, &mut notices).unwrap();
        let parts = split_after_commands(&wire, &notices);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].len(), first_end);
        assert_eq!(parts.concat(), wire);
    }

    #[test]
    fn an_oversized_message_is_refused_at_its_header() {
        let mut g = ChunkGuard::new(1000, 64);
        let err = g.feed(&type0(4, 9, 0xFF_FFFF), &mut vec![]).unwrap_err();
        assert_eq!(
            err,
            ChunkError::MessageTooLarge {
                len: 0xFF_FFFF,
                limit: 1000
            }
        );
    }

    #[test]
    fn set_chunk_size_changes_the_framing() {
        let mut g = ChunkGuard::new(1 << 20, 64);
        let mut wire = type0(2, MSG_SET_CHUNK_SIZE, 4);
        wire.extend_from_slice(&4096u32.to_be_bytes());
        // A 1000-byte video message now fits in one chunk; what follows is a new header.
        wire.extend(type0(6, 9, 1000));
        wire.extend(std::iter::repeat_n(0u8, 1000));
        let publish = command("publish");
        wire.extend(type0(3, MSG_AMF0_COMMAND, publish.len()));
        wire.extend(publish);
        let mut notices = vec![];
        g.feed(&wire, &mut notices).unwrap();
        let end = wire.len();
        assert_eq!(
            notices,
            vec![Notice::Command {
                name: "publish".into(),
                end
            }]
        );
    }

    #[test]
    fn the_largest_legal_chunk_size_is_accepted_and_zero_is_not() {
        let mut g = ChunkGuard::new(1 << 20, 64);
        let mut wire = type0(2, MSG_SET_CHUNK_SIZE, 4);
        wire.extend_from_slice(&0x7FFF_FFFFu32.to_be_bytes());
        g.feed(&wire, &mut vec![]).unwrap();
        let mut wire = type0(2, MSG_SET_CHUNK_SIZE, 4);
        wire.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(
            g.feed(&wire, &mut vec![]),
            Err(ChunkError::InvalidChunkSize(0))
        );
    }

    #[test]
    fn a_continuation_without_a_first_header_is_refused() {
        let mut g = ChunkGuard::new(1 << 20, 64);
        assert_eq!(
            g.feed(&[0xC5, 1, 2], &mut vec![]),
            Err(ChunkError::NoPreviousHeader(5))
        );
    }

    #[test]
    fn interleaving_another_stream_mid_message_is_refused() {
        let mut g = ChunkGuard::new(1 << 20, 64);
        let mut wire = type0(6, 9, 200);
        wire.extend(std::iter::repeat_n(0u8, 128));
        wire.extend(type0(4, 8, 10));
        assert_eq!(g.feed(&wire, &mut vec![]), Err(ChunkError::Interleaved));
    }

    #[test]
    fn a_command_nested_past_the_limit_is_refused_when_it_completes() {
        let deep =
            crate::amf::connect_command(&crate::amf::nested(crate::amf::Container::Object0, 65));
        let wire = chunked(3, MSG_AMF0_COMMAND, &deep);
        let mut g = ChunkGuard::new(1 << 20, 64);
        let (head, tail) = wire.split_at(wire.len() - 1);
        assert_eq!(
            g.feed(head, &mut vec![]),
            Ok(()),
            "nothing to judge before the end"
        );
        assert_eq!(
            g.feed(tail, &mut vec![]),
            Err(ChunkError::AmfTooDeep {
                msg_type: MSG_AMF0_COMMAND,
                limit: 64
            })
        );
        let fine =
            crate::amf::connect_command(&crate::amf::nested(crate::amf::Container::Object0, 64));
        let mut notices = vec![];
        ChunkGuard::new(1 << 20, 64)
            .feed(
                &chunked(3, MSG_AMF3_COMMAND, &[&[0][..], &fine].concat()),
                &mut notices,
            )
            .unwrap();
        assert!(matches!(&notices[..], [Notice::Command { name, .. }] if name == "connect"));
        // Data messages (onMetaData) are checked too.
        let data = chunked(
            4,
            MSG_AMF0_DATA,
            &crate::amf::nested(crate::amf::Container::Strict0, 65),
        );
        assert!(
            ChunkGuard::new(1 << 20, 64)
                .feed(&data, &mut vec![])
                .is_err()
        );
    }

    #[test]
    fn extended_timestamps_are_skipped_on_continuations_too() {
        let mut g = ChunkGuard::new(1 << 20, 64);
        let mut wire = vec![0x06, 0xFF, 0xFF, 0xFF, 0, 0, 200, 9, 0, 0, 0, 0, 0, 0, 0, 1];
        wire.extend(std::iter::repeat_n(0u8, 128));
        wire.extend([0xC6, 0, 0, 0, 1]);
        wire.extend(std::iter::repeat_n(0u8, 72));
        let delete = command("deleteStream");
        wire.extend(type0(3, MSG_AMF0_COMMAND, delete.len()));
        wire.extend(delete);
        let mut notices = vec![];
        g.feed(&wire, &mut notices).unwrap();
        let end = wire.len();
        assert_eq!(
            notices,
            vec![Notice::Command {
                name: "deleteStream".into(),
                end
            }]
        );
    }
}
