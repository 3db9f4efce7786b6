//! WHEP viewers: a transcoded rendition's H.264 and the broadcast's Opus,
//! written to each viewer's str0m [`Rtc`] as they leave the transcoder.
//!
//! A broadcast's feeds are subscribed only while it has viewers. Each frame
//! is packetized once per rendition (Annex B with parameter sets before
//! every IDR, then RTP payloads), and every viewer's stream sends the same
//! payloads (str0m in RTP mode: each viewer adds only its own RTP header,
//! sequence numbers and SRTP). A viewer starts, and
//! switches rendition, at an IDR: the ladder's IDRs are aligned and come
//! every keyframe interval, so a viewer's keyframe request (PLI) is never
//! passed to the encoders (that would break the HLS segments); it waits for
//! the next one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ingest::MediaEvent;
use str0m::Rtc;
use str0m::format::Codec;
use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::rtp::RtpWrite;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::h264::{RTP_PAYLOAD_MAX, annexb, parameter_sets, rtp_payloads};

/// The name audio frames carry in [`Frame::rendition`].
pub const AUDIO: &str = "audio";

/// A live broadcast's feeds, as the transcoder makes them.
#[derive(Debug, Clone)]
pub struct Feeds {
    /// Per rendition, largest first: its name and its events.
    pub renditions: Vec<(String, broadcast::Sender<MediaEvent>)>,
    /// The audio as [`MediaEvent::Opus`].
    pub audio: broadcast::Sender<MediaEvent>,
}

/// One event of one feed, on its way to the session task.
#[derive(Debug)]
pub struct Frame {
    /// The broadcast.
    pub broadcast: Arc<str>,
    /// The rendition, or [`AUDIO`].
    pub rendition: Arc<str>,
    /// The event; `None` when the feed fell behind and lost events.
    pub event: Option<MediaEvent>,
}

/// Subscribes to every feed of `broadcast` and passes its events to the
/// session task until `stop` or the feed ends.
pub fn forward(broadcast: &str, feeds: &Feeds, to: mpsc::Sender<Frame>, stop: CancellationToken) {
    let all = feeds
        .renditions
        .iter()
        .map(|(name, tx)| (name.as_str(), tx))
        .chain(std::iter::once((AUDIO, &feeds.audio)));
    let broadcast: Arc<str> = broadcast.into();
    for (name, tx) in all {
        let mut rx = tx.subscribe();
        let (to, stop, broadcast, rendition) = (
            to.clone(),
            stop.clone(),
            broadcast.clone(),
            Arc::<str>::from(name),
        );
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => return,
                    e = rx.recv() => match e {
                        Ok(e) => Some(e),
                        Err(broadcast::error::RecvError::Lagged(_)) => None,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                };
                let frame = Frame {
                    broadcast: broadcast.clone(),
                    rendition: rendition.clone(),
                    event,
                };
                if to.send(frame).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// What goes out to viewers: made once per frame.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// An H.264 access unit in Annex B.
    Video {
        /// Its rendition.
        rendition: Arc<str>,
        /// Whether it is an IDR (with parameter sets before it).
        keyframe: bool,
        /// Presentation time.
        pts: Duration,
        /// Its RTP payloads, in order; the last ends the frame.
        packets: Arc<[Arc<[u8]>]>,
    },
    /// An Opus packet.
    Audio {
        /// Presentation time.
        pts: Duration,
        /// The bytes.
        data: Arc<[u8]>,
    },
    /// The rendition lost frames: its viewers wait for the next IDR.
    Lost {
        /// Its rendition.
        rendition: Arc<str>,
    },
}

/// A rendition's parameter sets in Annex B, and its NAL length size.
type Config = (Vec<u8>, u8);

/// Turns feed events into [`Outgoing`] frames, keeping each rendition's
/// parameter sets (by broadcast and rendition).
#[derive(Debug, Default)]
pub struct Fanout {
    configs: HashMap<(Arc<str>, Arc<str>), Config>,
}

impl Fanout {
    /// The outgoing form of `frame`, if it has one.
    pub fn convert(&mut self, frame: Frame) -> Option<Outgoing> {
        let key = (frame.broadcast, frame.rendition.clone());
        match frame.event {
            None => Some(Outgoing::Lost {
                rendition: frame.rendition,
            }),
            Some(MediaEvent::VideoConfig(c)) => {
                self.configs
                    .insert(key, (parameter_sets(&c), c.nal_length_size));
                None
            }
            Some(MediaEvent::Video(f)) => {
                let (sets, n) = self.configs.get(&key)?;
                let prefix: &[u8] = if f.keyframe { sets } else { &[] };
                let packets = rtp_payloads(&annexb(&f.data, *n, prefix), RTP_PAYLOAD_MAX);
                Some(Outgoing::Video {
                    rendition: frame.rendition,
                    keyframe: f.keyframe,
                    pts: f.pts,
                    packets: packets.into(),
                })
            }
            Some(MediaEvent::Opus(a)) => Some(Outgoing::Audio {
                pts: a.pts,
                data: a.data.to_vec().into(),
            }),
            Some(_) => None,
        }
    }

    /// Forgets a broadcast's parameter sets (its last viewer left).
    pub fn forget(&mut self, broadcast: &str) {
        self.configs.retain(|(b, _), _| &**b != broadcast);
    }
}

/// The playing side of a WHEP session.
#[derive(Debug)]
pub struct Viewer {
    /// The broadcast watched.
    pub broadcast: Arc<str>,
    /// The rendition sent now.
    pub rendition: Arc<str>,
    /// A rendition asked for, taken at its next IDR.
    pub switch_to: Option<Arc<str>>,
    waiting_for_idr: bool,
    video: Option<Track>,
    audio: Option<Track>,
    /// Keyframe requests (PLI/FIR) the viewer sent.
    pub keyframe_requests: u64,
    /// Video frames sent.
    pub frames_sent: u64,
}

impl Viewer {
    /// A viewer of `rendition` of `broadcast`.
    pub fn new(broadcast: &str, rendition: &str) -> Self {
        Self {
            broadcast: broadcast.into(),
            rendition: rendition.into(),
            switch_to: None,
            waiting_for_idr: true,
            video: None,
            audio: None,
            keyframe_requests: 0,
            frames_sent: 0,
        }
    }

    /// The viewer's offer added a track: remember where to send what.
    pub fn added(&mut self, rtc: &mut Rtc, mid: Mid, kind: MediaKind) {
        let Some(media) = rtc.media(mid) else { return };
        let remote = media.remote_pts().to_vec();
        let params: Vec<PayloadParams> = rtc
            .codec_config()
            .params()
            .iter()
            .filter(|p| remote.contains(&p.pt()))
            .copied()
            .collect();
        let pt = match kind {
            MediaKind::Video => best_h264(&params),
            MediaKind::Audio => params
                .iter()
                .find(|p| p.spec().codec == Codec::Opus)
                .map(|p| p.pt()),
        };
        let track = pt.map(|pt| Track::new(mid, pt));
        match kind {
            MediaKind::Video => self.video = track,
            MediaKind::Audio => self.audio = track,
        }
    }

    /// Whether the viewer can receive H.264 at all.
    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    /// Sends `out` if it is for this viewer.
    pub fn send(&mut self, rtc: &mut Rtc, out: &Outgoing) {
        match out {
            Outgoing::Lost { rendition } if *rendition == self.rendition => {
                self.waiting_for_idr = true;
            }
            Outgoing::Lost { .. } => {}
            Outgoing::Video {
                rendition,
                keyframe,
                pts,
                packets,
            } => {
                if *keyframe && self.switch_to.as_ref() == Some(rendition) {
                    self.rendition = self.switch_to.take().expect("checked");
                    self.waiting_for_idr = false;
                }
                if *rendition != self.rendition || (self.waiting_for_idr && !keyframe) {
                    return;
                }
                self.waiting_for_idr = false;
                let Some(track) = &mut self.video else { return };
                // RTP time wraps, as it does on the wire.
                let t = (pts.as_micros() * 9 / 100) as u32;
                if track.write(rtc, t, packets, true) {
                    self.frames_sent += 1;
                }
            }
            Outgoing::Audio { pts, data } => {
                let Some(track) = &mut self.audio else { return };
                let t = (pts.as_micros() * 48 / 1000) as u32;
                track.write(rtc, t, std::slice::from_ref(data), false);
            }
        }
    }

    /// Counts a keyframe request; the next aligned IDR answers it.
    pub fn keyframe_requested(&mut self) {
        self.keyframe_requests += 1;
    }
}

/// One of a viewer's outgoing streams: where it goes, under which payload
/// type, and its own sequence numbers.
#[derive(Debug)]
struct Track {
    mid: Mid,
    pt: Pt,
    seq: u64,
}

impl Track {
    fn new(mid: Mid, pt: Pt) -> Self {
        // A random start (RFC 3550 5.1), below 2^15 so that the rollover
        // counter starts at 0 and does not need signalling.
        let mut b = [0u8; 2];
        let _ = getrandom::fill(&mut b);
        let seq = u64::from(u16::from_be_bytes(b) >> 1);
        Self { mid, pt, seq }
    }

    /// Sends one frame's payloads at RTP time `time`. A video frame's last
    /// packet carries the marker, and its packets are kept to answer NACKs.
    /// False if the stream is not there (yet).
    fn write(&mut self, rtc: &mut Rtc, time: u32, payloads: &[Arc<[u8]>], video: bool) -> bool {
        let mut api = rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(self.mid, None) else {
            debug!(mid = %self.mid, "no stream to send on yet");
            return false;
        };
        let (now, last) = (Instant::now(), payloads.len().saturating_sub(1));
        for (i, p) in payloads.iter().enumerate() {
            let packet = RtpWrite::new(self.pt, self.seq.into(), time, now, p.clone())
                .marker(video && i == last)
                .nackable(video);
            tx.write_rtp(packet);
            self.seq += 1;
        }
        true
    }
}

/// The H.264 payload type to send our x264 stream under: packetization mode
/// 1, preferring High, then Main, then Constrained Baseline, then Baseline
/// (Chromium offers no High for receiving, and decodes our High stream, which
/// has no B-frames, under Main or Constrained Baseline).
pub fn best_h264(params: &[PayloadParams]) -> Option<Pt> {
    params
        .iter()
        .filter(|p| p.spec().codec == Codec::H264)
        .filter(|p| p.spec().format.packetization_mode == Some(1))
        .max_by_key(|p| {
            let id = p.spec().format.profile_level_id.unwrap_or(0);
            match (id >> 16, (id >> 8) & 0xff) {
                (0x64, _) => 4,
                (0x4d, _) => 3,
                (0x42, c) if c & 0x40 != 0 => 2,
                (0x42, _) => 1,
                _ => 0,
            }
        })
        .map(|p| p.pt())
}
