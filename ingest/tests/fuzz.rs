//! Property-based fuzzing of the untrusted-input path: chunk guard, rml_rtmp's
//! session, and the FLV demuxer, with flat messages and with AMF values nested
//! up to 100,000 deep. Whatever the bytes, the result is Ok or a typed
//! error: never a panic that escapes, never a hang. Bounded by the case count
//! (PROPTEST_CASES overrides it).

use bytes::Bytes;
use ingest::amf::{Container, connect_command, nested};
use ingest::chunk::chunked;
use ingest::error::ChunkError;
use ingest::rtmp::parse_untrusted;
use ingest::{Error, IngestConfig};
use proptest::prelude::*;
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionResult, PublishRequestType, ServerSession,
    ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use rml_rtmp::time::RtmpTimestamp;

/// The flat-message fuzzing's limits: a 1 MiB message ceiling.
fn config() -> IngestConfig {
    IngestConfig {
        max_message_size: 1 << 20,
        ..IngestConfig::default()
    }
}

fn flv_bodies() -> Vec<Bytes> {
    vec![
        Bytes::from_static(&[
            0x17, 0, 0, 0, 0, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00,
            0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
            0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60, 0x01, 0x00, 0x06, 0x68, 0xeb,
            0xe3, 0xcb, 0x22, 0xc0,
        ]),
        Bytes::from_static(&[0x17, 1, 0, 0, 0x21, 0, 0, 0, 2, 0x65, 0x88]),
        Bytes::from_static(&[0x27, 1, 0, 0, 0, 0, 0, 0, 2, 0x41, 0x9a]),
        Bytes::from_static(&[0xaf, 0, 0x11, 0x90]),
        Bytes::from_static(&[0xaf, 1, 0x21, 0x10, 0x04]),
    ]
}

/// rml_rtmp's client talking to its server in memory, recording what the server receives.
struct Pair {
    client: ClientSession,
    server: ServerSession,
    received: Vec<u8>,
}

impl Pair {
    fn new() -> Self {
        let (client, _) = ClientSession::new(ClientSessionConfig::new()).unwrap();
        let (server, init) = ServerSession::new(ServerSessionConfig::new()).unwrap();
        let mut pair = Pair {
            client,
            server,
            received: Vec::new(),
        };
        pair.server_sent(init);
        pair
    }

    fn client_sent(&mut self, r: ClientSessionResult) {
        let ClientSessionResult::OutboundResponse(p) = r else {
            return;
        };
        self.received.extend(&p.bytes);
        let results = self.server.handle_input(&p.bytes).unwrap();
        self.server_sent(results);
    }

    fn server_sent(&mut self, results: Vec<ServerSessionResult>) {
        for r in results {
            match r {
                ServerSessionResult::OutboundResponse(p) => {
                    for r in self.client.handle_input(&p.bytes).unwrap() {
                        self.client_sent(r);
                    }
                }
                ServerSessionResult::RaisedEvent(
                    ServerSessionEvent::ConnectionRequested { request_id, .. }
                    | ServerSessionEvent::PublishStreamRequested { request_id, .. },
                ) => {
                    let accepted = self.server.accept_request(request_id).unwrap();
                    self.server_sent(accepted);
                }
                _ => {}
            }
        }
    }
}

/// A whole well-formed publish as the server receives it after the handshake.
fn publish_stream() -> Vec<u8> {
    let mut pair = Pair::new();
    let r = pair.client.request_connection("live".into()).unwrap();
    pair.client_sent(r);
    let r = pair
        .client
        .request_publishing("key".into(), PublishRequestType::Live)
        .unwrap();
    pair.client_sent(r);
    for (i, body) in flv_bodies().into_iter().enumerate() {
        let ts = RtmpTimestamp::new(i as u32 * 33);
        let r = if body[0] >> 4 == 0xa {
            pair.client.publish_audio_data(body, ts, false)
        } else {
            pair.client.publish_video_data(body, ts, false)
        }
        .unwrap();
        pair.client_sent(r);
    }
    pair.received
}

#[test]
fn the_unmutated_publish_stream_demuxes() {
    let wire = publish_stream();
    assert_eq!(parse_untrusted(&[&wire], &config()).unwrap(), 5);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(reads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..6)) {
        let refs: Vec<&[u8]> = reads.iter().map(|r| &r[..]).collect();
        let _ = parse_untrusted(&refs, &config());
    }

    #[test]
    fn mutated_publish_streams_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
        cut in any::<prop::sample::Index>(),
        split in any::<prop::sample::Index>(),
    ) {
        let mut wire = publish_stream();
        for (at, byte) in flips {
            let i = at.index(wire.len());
            wire[i] = byte;
        }
        wire.truncate(cut.index(wire.len() + 1));
        let mid = split.index(wire.len() + 1);
        let _ = parse_untrusted(&[&wire[..mid], &wire[mid..]], &config());
    }
}

/// A message carrying `value` as rml_rtmp would decode it: the command object
/// of a `connect` (types 20 and 17, the latter with its format byte), or the
/// value after `@setDataFrame` (types 18 and 15).
fn carrying(msg_type: u8, value: &[u8]) -> Vec<u8> {
    let payload = match msg_type {
        20 => connect_command(value),
        17 => [&[0u8][..], &connect_command(value)].concat(),
        _ => {
            let mut p = vec![0x02, 0, 13];
            p.extend_from_slice(b"@setDataFrame");
            p.extend_from_slice(value);
            p
        }
    };
    chunked(3, msg_type, &payload)
}

#[test]
fn the_deepest_allowed_nesting_decodes_without_exhausting_the_stack() {
    let config = IngestConfig {
        max_amf_depth: ingest::config::MAX_AMF_DEPTH_LIMIT,
        ..IngestConfig::default()
    };
    for kind in Container::ALL {
        let value = nested(kind, config.max_amf_depth);
        for msg_type in [20, 17, 18, 15] {
            let r = parse_untrusted(&[&carrying(msg_type, &value)], &config);
            assert!(
                !matches!(r, Err(Error::Chunk(ChunkError::AmfTooDeep { .. }))),
                "{kind:?} in type {msg_type}: {r:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Deep values of every container type, whole or cut short at any byte, in
    /// every message type rml_rtmp decodes AMF in: never a crash, refused
    /// exactly when deeper than the limit.
    #[test]
    fn nested_values_are_refused_past_the_limit_and_never_crash(
        kind in prop::sample::select(Container::ALL.to_vec()),
        depth in prop_oneof![1usize..130, 1usize..100_001],
        msg_type in prop::sample::select(vec![20u8, 17, 18, 15]),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let config = IngestConfig::default();
        let mut value = nested(kind, depth);
        if let Some(cut) = cut {
            value.truncate(cut.index(value.len() + 1));
        }
        let r = parse_untrusted(&[&carrying(msg_type, &value)], &config);
        let refused = matches!(r, Err(Error::Chunk(ChunkError::AmfTooDeep { .. })));
        if cut.is_none() {
            prop_assert_eq!(refused, depth > config.max_amf_depth, "{:?}", r);
        } else if refused {
            prop_assert!(depth > config.max_amf_depth);
        }
    }
}
