//! WHEP viewers for `scripts/bench-webrtc.sh`: N str0m peers, each on its own
//! UDP socket on 127.0.0.1, each POSTing its offer to the origin's WHEP
//! endpoint and receiving H.264 and Opus as a browser would (ICE, DTLS,
//! SRTP, depacketization, NACKs and receiver reports).
//!
//! After the viewers have joined (over `ramp`) and settled, a measurement
//! window of `seconds` counts, per viewer, the video frames received, the
//! frames missing (from RTP time: a frame every `90000 / fps` ticks between
//! the first and the last of the window), the breaks in RTP sequence
//! numbers, and the longest time between two frames; and the server's CPU
//! seconds over the same window.
//!
//! `src/bin/whep-load.rs` is its command line (one JSON line of results).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::{TcpStream, UdpSocket};

use crate::proc::cpu_seconds;

/// Time after the last viewer joined before the window opens.
const SETTLE: Duration = Duration::from_secs(3);
/// The share of the stream's frame rate a viewer must receive to count as
/// keeping up.
pub const REALTIME: f64 = 0.97;
/// Longest a viewer waits for its answer and its connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// What to run.
#[derive(Debug, Clone)]
pub struct WhepLoadConfig {
    /// The origin, e.g. `http://127.0.0.1:8080` (`http://` only).
    pub base: String,
    /// The broadcast to watch.
    pub broadcast: String,
    /// The rendition (`720p`, `480p`); the origin's default otherwise.
    pub rendition: Option<String>,
    /// Viewers.
    pub viewers: usize,
    /// The measurement window.
    pub duration: Duration,
    /// Spread viewer start-up over this long.
    pub ramp: Duration,
    /// The stream's frame rate, for the frames expected.
    pub fps: f64,
    /// The server's pid, for its CPU seconds over the window.
    pub server_pid: Option<u32>,
}

/// What one viewer saw in the window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ViewerTally {
    /// ICE and DTLS completed.
    pub connected: bool,
    /// From the POST to connected, in milliseconds.
    pub connect_ms: Option<u64>,
    /// Why it gave up, if it did.
    pub error: Option<String>,
    /// Video frames received in the window.
    pub frames: u64,
    /// Video frames the RTP times say were sent in the window and did not arrive.
    pub missing: u64,
    /// Breaks in the RTP sequence numbers (loss that NACKs did not repair).
    pub breaks: u64,
    /// Audio packets received in the window.
    pub audio_packets: u64,
    /// Longest time between two video frames in the window, in milliseconds.
    pub max_gap_ms: u64,
}

/// What happened.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WhepReport {
    /// Viewers started.
    pub viewers: usize,
    /// Viewers that connected.
    pub connected: usize,
    /// Length of the window in seconds.
    pub seconds: f64,
    /// Video frames received per second, per connected viewer: min, median, max.
    pub fps: [f64; 3],
    /// Frames missing, in all.
    pub frames_missing: u64,
    /// Viewers that missed at least one frame, saw a break, did not connect,
    /// or received fewer than [`REALTIME`] of the frames a second the stream
    /// has (the server, or the machine, fell behind real time).
    pub viewers_with_loss: usize,
    /// Longest time between two frames for any viewer, in milliseconds.
    pub max_gap_ms: u64,
    /// Median connect time in milliseconds.
    pub connect_ms_p50: u64,
    /// Audio packets per second, median viewer.
    pub audio_pps: f64,
    /// The server's CPU seconds over the window.
    pub server_cpu_seconds: Option<f64>,
    /// The first errors viewers met.
    pub errors: Vec<String>,
}

/// Runs `cfg.viewers` viewers and reports on the window.
pub async fn run(cfg: WhepLoadConfig) -> WhepReport {
    let start = Instant::now();
    let window_start = start + cfg.ramp + SETTLE;
    let window = (window_start, window_start + cfg.duration);
    let cfg = Arc::new(cfg);
    let mut tasks = Vec::with_capacity(cfg.viewers);
    for i in 0..cfg.viewers {
        let delay = cfg.ramp.mul_f64(i as f64 / cfg.viewers.max(1) as f64);
        let cfg = cfg.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            viewer(&cfg, window).await
        }));
    }
    tokio::time::sleep_until(window.0.into()).await;
    let cpu0 = cfg.server_pid.and_then(cpu_seconds);
    tokio::time::sleep_until(window.1.into()).await;
    let cpu1 = cfg.server_pid.and_then(cpu_seconds);
    let mut tallies = Vec::new();
    for t in tasks {
        tallies.push(t.await.unwrap_or_else(|e| ViewerTally {
            error: Some(e.to_string()),
            ..Default::default()
        }));
    }
    let mut report = summarize(&tallies, cfg.duration, cfg.fps);
    report.server_cpu_seconds = cpu0.zip(cpu1).map(|(a, b)| b - a);
    report
}

fn summarize(tallies: &[ViewerTally], window: Duration, stream_fps: f64) -> WhepReport {
    let secs = window.as_secs_f64();
    let ok: Vec<&ViewerTally> = tallies.iter().filter(|t| t.connected).collect();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let mut fps: Vec<f64> = ok.iter().map(|t| t.frames as f64 / secs).collect();
    fps.sort_by(f64::total_cmp);
    let connect: Vec<f64> = ok
        .iter()
        .filter_map(|t| t.connect_ms)
        .map(|m| m as f64)
        .collect();
    WhepReport {
        viewers: tallies.len(),
        connected: ok.len(),
        seconds: secs,
        fps: [
            fps.first().copied().unwrap_or(0.0),
            median(fps.clone()),
            fps.last().copied().unwrap_or(0.0),
        ],
        frames_missing: ok.iter().map(|t| t.missing).sum(),
        viewers_with_loss: tallies
            .iter()
            .filter(|t| {
                !t.connected
                    || t.missing > 0
                    || t.breaks > 0
                    || (t.frames as f64) < REALTIME * stream_fps * secs
            })
            .count(),
        max_gap_ms: ok.iter().map(|t| t.max_gap_ms).max().unwrap_or(0),
        connect_ms_p50: median(connect) as u64,
        audio_pps: median(ok.iter().map(|t| t.audio_packets as f64 / secs).collect()),
        server_cpu_seconds: None,
        errors: tallies
            .iter()
            .filter_map(|t| t.error.clone())
            .take(5)
            .collect(),
    }
}

/// Video frames of one viewer in the window, by RTP time.
#[derive(Debug, Default)]
struct Frames {
    first: Option<u64>,
    last: u64,
    count: u64,
    last_arrival: Option<Instant>,
    max_gap: Duration,
}

impl Frames {
    fn add(&mut self, rtp_time: u64, at: Instant) {
        self.first.get_or_insert(rtp_time);
        self.last = self.last.max(rtp_time);
        self.count += 1;
        if let Some(prev) = self.last_arrival.replace(at) {
            self.max_gap = self.max_gap.max(at - prev);
        }
    }

    /// Frames the RTP times say were sent and did not arrive.
    fn missing(&self, fps: f64) -> u64 {
        let Some(first) = self.first else { return 0 };
        let expected = ((self.last - first) as f64 * fps / 90_000.0).round() as u64 + 1;
        expected.saturating_sub(self.count)
    }
}

async fn viewer(cfg: &WhepLoadConfig, window: (Instant, Instant)) -> ViewerTally {
    let mut tally = ViewerTally::default();
    if let Err(e) = watch(cfg, window, &mut tally).await {
        tally.error = Some(e);
    }
    tally
}

async fn watch(
    cfg: &WhepLoadConfig,
    (from, until): (Instant, Instant),
    tally: &mut ViewerTally,
) -> Result<(), String> {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let mut rtc = Rtc::builder()
        .clear_codecs()
        .enable_h264(true)
        .enable_opus(true, false)
        .build(Instant::now());
    let candidate = Candidate::host(local, "udp").map_err(|e| e.to_string())?;
    rtc.add_local_candidate(candidate);
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().ok_or("no changes to offer")?;
    let posted = Instant::now();
    let mut url = format!("{}/api/broadcasts/{}/whep", cfg.base, cfg.broadcast);
    if let Some(r) = &cfg.rendition {
        url = format!("{url}?rendition={r}");
    }
    let answer = tokio::time::timeout(CONNECT_TIMEOUT, post_sdp(&url, offer.to_sdp_string()))
        .await
        .map_err(|_| "no answer in time".to_owned())??;
    let answer = SdpAnswer::from_sdp_string(&answer).map_err(|e| e.to_string())?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| e.to_string())?;

    let mut frames = Frames::default();
    let mut buf = vec![0u8; 2000];
    loop {
        let now = Instant::now();
        if now >= until {
            break;
        }
        if !tally.connected && now - posted > CONNECT_TIMEOUT {
            return Err("no connection in time".into());
        }
        let wake = match rtc.poll_output().map_err(|e| e.to_string())? {
            Output::Transmit(t) => {
                let _ = socket.send_to(&t.contents, t.destination).await;
                continue;
            }
            Output::Event(e) => {
                match e {
                    Event::Connected => {
                        tally.connected = true;
                        tally.connect_ms = Some(posted.elapsed().as_millis() as u64);
                    }
                    Event::MediaData(d) if now >= from => {
                        if d.params.spec().codec == str0m::format::Codec::Opus {
                            tally.audio_packets += 1;
                        } else {
                            frames.add(d.time.numer(), now);
                            if !d.contiguous {
                                tally.breaks += 1;
                            }
                        }
                    }
                    _ => {}
                }
                continue;
            }
            Output::Timeout(t) => t.min(until),
        };
        let input = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, source)) => receive(&buf[..n], source, local),
                Err(e) => return Err(e.to_string()),
            },
            _ = tokio::time::sleep_until(wake.into()) => None,
        };
        let input = input.unwrap_or(Input::Timeout(Instant::now()));
        rtc.handle_input(input).map_err(|e| e.to_string())?;
    }
    tally.frames = frames.count;
    tally.missing = frames.missing(cfg.fps);
    tally.max_gap_ms = frames.max_gap.as_millis() as u64;
    rtc.disconnect();
    Ok(())
}

fn receive(data: &[u8], source: SocketAddr, local: SocketAddr) -> Option<Input<'_>> {
    let r = Receive::new(Protocol::Udp, source, local, data).ok()?;
    Some(Input::Receive(Instant::now(), r))
}

/// POSTs an SDP offer; the answer's body.
async fn post_sdp(url: &str, offer: String) -> Result<String, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let authority = uri.authority().ok_or("no host in the URL")?.to_string();
    let tcp = TcpStream::connect(&authority)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::post(uri)
        .header("host", authority)
        .header("content-type", "application/sdp")
        .body(Full::new(Bytes::from(offer)))
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    if status.as_u16() != 201 {
        return Err(format!("{status}: {text}"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_missing_are_counted_from_rtp_time() {
        let t0 = Instant::now();
        let mut f = Frames::default();
        for i in [0u64, 1, 2, 4, 5, 9] {
            f.add(10_000 + i * 3000, t0 + Duration::from_millis(i * 33));
        }
        // Ten frames at 30 fps between the first and the last; six arrived.
        assert_eq!(f.missing(30.0), 4);
        assert_eq!(f.max_gap, Duration::from_millis(132));
        assert_eq!(Frames::default().missing(30.0), 0);
    }

    #[test]
    fn loss_is_missing_frames_breaks_no_connection_or_falling_behind() {
        let ok = ViewerTally {
            connected: true,
            frames: 300,
            ..Default::default()
        };
        let lost = ViewerTally {
            connected: true,
            frames: 290,
            missing: 10,
            ..Default::default()
        };
        // Every frame sent arrived, but the stream came at 20 fps.
        let slow = ViewerTally {
            connected: true,
            frames: 200,
            ..Default::default()
        };
        let never = ViewerTally::default();
        let r = summarize(&[ok, lost, slow, never], Duration::from_secs(10), 30.0);
        assert_eq!((r.viewers, r.connected, r.viewers_with_loss), (4, 3, 3));
        assert_eq!(r.fps, [20.0, 29.0, 30.0]);
        assert_eq!(r.frames_missing, 10);
    }
}
