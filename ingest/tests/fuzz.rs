//! Property-based fuzzing of the untrusted-input path: chunk guard, rml_rtmp's
//! session, and the FLV demuxer. Whatever the bytes, the result is Ok or a typed
//! error: never a panic that escapes, never a hang. Bounded by the case count
//! (PROPTEST_CASES overrides it).

use bytes::Bytes;
use ingest::rtmp::parse_untrusted;
use proptest::prelude::*;
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionResult, PublishRequestType, ServerSession,
    ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use rml_rtmp::time::RtmpTimestamp;

const MAX_MESSAGE: usize = 1 << 20;

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
    assert_eq!(parse_untrusted(&[&wire], MAX_MESSAGE).unwrap(), 5);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(reads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..6)) {
        let refs: Vec<&[u8]> = reads.iter().map(|r| &r[..]).collect();
        let _ = parse_untrusted(&refs, MAX_MESSAGE);
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
        let _ = parse_untrusted(&[&wire[..mid], &wire[mid..]], MAX_MESSAGE);
    }
}
