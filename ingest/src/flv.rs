//! FLV audio/video tag bodies (as carried in RTMP messages 8 and 9) into [`MediaEvent`]s.
//!
//! Pure: no I/O, fed one message body at a time. Layouts follow the FLV spec
//! v10.1 E.4.2/E.4.3 and, for rejection messages, Enhanced RTMP v2's ExHeader.

use bytes::Bytes;

use crate::error::FlvError;
use crate::media::{AacConfig, AudioFrame, AvcConfig, MediaEvent, VideoFrame};
use crate::timestamp::{Track, Unwrapper};
use std::time::Duration;

/// FLV CodecID 7.
const CODEC_AVC: u8 = 7;
/// FLV SoundFormat 10.
const SOUND_AAC: u8 = 10;
/// FLV SoundFormat 9 announces an Enhanced RTMP audio ExHeader.
const SOUND_EX_HEADER: u8 = 9;
/// FLV FrameType 5: video info/command frame, no picture.
const FRAME_COMMAND: u8 = 5;

/// Per-publish demuxer state.
#[derive(Debug, Default)]
pub struct Demuxer {
    video: Option<AvcConfig>,
    audio: Option<AacConfig>,
    unwrapper: Unwrapper,
    /// Frames dropped because their codec's sequence header had not arrived yet.
    pub dropped_before_config: u64,
    /// Video frames whose negative composition offset was clamped to zero.
    pub clamped_cts: u64,
    /// Sequence headers that carried no configuration (skipped).
    pub empty_sequence_headers: u64,
    /// The publisher sends Annex B access units (decided once, only for
    /// streams without a real sequence header: with one, FLV payloads are
    /// length-prefixed, and a 256-511 byte NAL starts with `00 00 01`).
    annexb: Option<bool>,
}

/// A readable name for an FLV video CodecID.
fn video_codec_name(id: u8) -> String {
    match id {
        2 => "Sorenson H.263".into(),
        3 => "Screen video".into(),
        4 => "On2 VP6".into(),
        5 => "On2 VP6 with alpha".into(),
        6 => "Screen video v2".into(),
        12 => "HEVC (H.265)".into(),
        13 => "AV1".into(),
        other => format!("FLV video codec id {other}"),
    }
}

/// A readable name for an FLV SoundFormat.
fn audio_codec_name(id: u8) -> String {
    match id {
        0 | 3 => "linear PCM".into(),
        1 => "ADPCM".into(),
        2 | 14 => "MP3".into(),
        4..=6 => "Nellymoser".into(),
        7 => "G.711 A-law".into(),
        8 => "G.711 mu-law".into(),
        11 => "Speex".into(),
        other => format!("FLV sound format {other}"),
    }
}

/// Names an Enhanced RTMP FourCC for the rejection message.
fn fourcc_name(fourcc: &[u8]) -> String {
    let text = String::from_utf8_lossy(fourcc).into_owned();
    let name = match fourcc {
        b"hvc1" => "HEVC (H.265)",
        b"av01" => "AV1",
        b"vp09" => "VP9",
        b"vp08" => "VP8",
        b"avc1" => "H.264 in Enhanced-RTMP framing",
        b"Opus" => "Opus",
        b"fLaC" => "FLAC",
        b"ac-3" => "AC-3",
        b"ec-3" => "E-AC-3",
        b".mp3" => "MP3",
        b"mp4a" => "AAC in Enhanced-RTMP framing",
        _ => "an unknown codec",
    };
    format!("{name} (Enhanced-RTMP FourCC {text:?})")
}

/// Rewrites an Annex B access unit (start codes, as ffmpeg's FLV muxer writes
/// when the encoder has no global header) into 4-byte length-prefixed NAL
/// units; `None` when it is not Annex B.
fn annexb_to_avcc(au: &[u8]) -> Option<Vec<u8>> {
    if !(au.starts_with(&[0, 0, 0, 1]) || au.starts_with(&[0, 0, 1])) {
        return None;
    }
    let mut starts = vec![];
    let mut i = 0;
    while i + 3 <= au.len() {
        if au[i] == 0 && au[i + 1] == 0 && au[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(au.len() + 4 * starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(au.len(), |&n| n - 3);
        // Drop the zero byte of a 4-byte start code and trailing zeros.
        let mut nal = &au[s..end];
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            out.extend_from_slice(nal);
        }
    }
    Some(out)
}

/// Builds an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1) from the
/// first SPS and PPS found in an access unit with 4-byte NAL lengths, for
/// publishers that send parameter sets in-band instead of a sequence header.
fn avcc_from_inband(au: &[u8]) -> Option<Vec<u8>> {
    let (mut sps, mut pps) = (None, None);
    let mut p = 0;
    while p + 4 <= au.len() {
        let n = u32::from_be_bytes([au[p], au[p + 1], au[p + 2], au[p + 3]]) as usize;
        let nal = au.get(p + 4..p + 4 + n)?;
        match nal.first().map(|h| h & 0x1f) {
            Some(7) if sps.is_none() && nal.len() >= 4 => sps = Some(nal),
            Some(8) if pps.is_none() => pps = Some(nal),
            _ => {}
        }
        p += 4 + n;
    }
    let (sps, pps) = (sps?, pps?);
    let mut r = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    r.extend_from_slice(&u16::try_from(sps.len()).ok()?.to_be_bytes());
    r.extend_from_slice(sps);
    r.push(1);
    r.extend_from_slice(&u16::try_from(pps.len()).ok()?.to_be_bytes());
    r.extend_from_slice(pps);
    Some(r)
}

fn i24(b: &[u8]) -> i32 {
    // Sign-extend a big-endian 24-bit value.
    (i32::from(b[0]) << 24 | i32::from(b[1]) << 16 | i32::from(b[2]) << 8) >> 8
}

impl Demuxer {
    /// The current video configuration, once a sequence header has arrived.
    pub fn video_config(&self) -> Option<&AvcConfig> {
        self.video.as_ref()
    }

    /// The current audio configuration, once a sequence header has arrived.
    pub fn audio_config(&self) -> Option<&AacConfig> {
        self.audio.as_ref()
    }

    /// Demuxes one video message body with its RTMP timestamp, appending events to `out`.
    pub fn video(
        &mut self,
        body: Bytes,
        rtmp_ms: u32,
        out: &mut Vec<MediaEvent>,
    ) -> Result<(), FlvError> {
        let Some(&b0) = body.first() else {
            return Ok(()); // Some clients send empty video messages as keep-alives.
        };
        if b0 & 0x80 != 0 {
            let fourcc = body.get(1..5).ok_or(FlvError::Truncated("video"))?;
            return Err(FlvError::UnsupportedVideoCodec(fourcc_name(fourcc)));
        }
        let (frame_type, codec) = (b0 >> 4, b0 & 0x0f);
        if codec != CODEC_AVC {
            return Err(FlvError::UnsupportedVideoCodec(video_codec_name(codec)));
        }
        if frame_type == FRAME_COMMAND {
            return Ok(());
        }
        if body.len() < 5 {
            return Err(FlvError::Truncated("video"));
        }
        match body[1] {
            // ffmpeg's tee muxer (and others without a global header) send an
            // empty sequence header first; it carries nothing, so skip it.
            0 if body.len() == 5 => self.empty_sequence_headers += 1,
            0 => {
                let config = AvcConfig::parse(body.slice(5..))?;
                if self.video.is_none() {
                    self.annexb = Some(false);
                }
                if self.video.as_ref() != Some(&config) {
                    self.video = Some(config.clone());
                    out.push(MediaEvent::VideoConfig(config));
                }
            }
            1 if body.len() > 5 => {
                let annexb = *self.annexb.get_or_insert_with(|| {
                    self.video.is_none() && annexb_to_avcc(&body[5..]).is_some()
                });
                let data = match annexb.then(|| annexb_to_avcc(&body[5..])).flatten() {
                    Some(converted) => Bytes::from(converted),
                    None => body.slice(5..),
                };
                if self.video.is_none() {
                    // No sequence header: take the configuration from in-band SPS/PPS.
                    match avcc_from_inband(&data).map(|r| AvcConfig::parse(r.into())) {
                        Some(Ok(config)) if frame_type == 1 => {
                            self.video = Some(config.clone());
                            out.push(MediaEvent::VideoConfig(config));
                        }
                        _ => {
                            self.dropped_before_config += 1;
                            return Ok(());
                        }
                    }
                }
                let mut cts = i24(&body[2..5]);
                if cts < 0 {
                    self.clamped_cts += 1;
                    cts = 0;
                }
                let t = self.unwrapper.unwrap(Track::Video, rtmp_ms);
                if t.discontinuity {
                    out.push(MediaEvent::Discontinuity);
                }
                let pts = t.unnudged + Duration::from_millis(cts as u64);
                out.push(MediaEvent::Video(VideoFrame {
                    dts: t.time,
                    pts: pts.max(t.time),
                    keyframe: frame_type == 1,
                    data,
                }));
            }
            // Empty NALU packets and end-of-sequence carry no picture.
            _ => {}
        }
        Ok(())
    }

    /// Demuxes one audio message body with its RTMP timestamp, appending events to `out`.
    pub fn audio(
        &mut self,
        body: Bytes,
        rtmp_ms: u32,
        out: &mut Vec<MediaEvent>,
    ) -> Result<(), FlvError> {
        let Some(&b0) = body.first() else {
            return Ok(());
        };
        let format = b0 >> 4;
        if format == SOUND_EX_HEADER {
            let fourcc = body.get(1..5).ok_or(FlvError::Truncated("audio"))?;
            return Err(FlvError::UnsupportedAudioCodec(fourcc_name(fourcc)));
        }
        if format != SOUND_AAC {
            return Err(FlvError::UnsupportedAudioCodec(audio_codec_name(format)));
        }
        if body.len() < 2 {
            return Err(FlvError::Truncated("audio"));
        }
        match body[1] {
            0 if body.len() == 2 => self.empty_sequence_headers += 1,
            0 => {
                let config = AacConfig::parse(body.slice(2..))?;
                if self.audio.as_ref() != Some(&config) {
                    self.audio = Some(config.clone());
                    out.push(MediaEvent::AudioConfig(config));
                }
            }
            1 if body.len() > 2 => {
                if self.audio.is_none() {
                    self.dropped_before_config += 1;
                    return Ok(());
                }
                let t = self.unwrapper.unwrap(Track::Audio, rtmp_ms);
                if t.discontinuity {
                    out.push(MediaEvent::Discontinuity);
                }
                out.push(MediaEvent::Audio(AudioFrame {
                    pts: t.time,
                    data: body.slice(2..),
                }));
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An avcC for 1280x720 High@3.1, as x264 writes it (SPS and PPS from a real encode).
    pub(crate) const AVCC_720P: &[u8] = &[
        0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40,
        0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0,
        0xf1, 0x83, 0x19, 0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8,
        0xf8, 0x00,
    ];

    fn video_tag(frame_type: u8, packet: u8, cts: i32, payload: &[u8]) -> Bytes {
        let mut v = vec![frame_type << 4 | CODEC_AVC, packet];
        v.extend_from_slice(&cts.to_be_bytes()[1..]);
        v.extend_from_slice(payload);
        Bytes::from(v)
    }

    #[test]
    fn avc_sequence_header_yields_a_video_config() {
        let mut d = Demuxer::default();
        let mut out = vec![];
        d.video(video_tag(1, 0, 0, AVCC_720P), 0, &mut out).unwrap();
        let [MediaEvent::VideoConfig(c)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!((c.width, c.height), (1280, 720));
        assert_eq!(c.codec_string(), "avc1.64001f");
        assert_eq!(c.nal_length_size, 4);
    }

    #[test]
    fn a_repeated_identical_sequence_header_is_not_a_config_change() {
        let mut d = Demuxer::default();
        let mut out = vec![];
        d.video(video_tag(1, 0, 0, AVCC_720P), 0, &mut out).unwrap();
        d.video(video_tag(1, 0, 0, AVCC_720P), 40, &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn access_units_carry_dts_pts_and_the_keyframe_flag() {
        let mut d = Demuxer::default();
        let mut out = vec![];
        d.video(video_tag(1, 0, 0, AVCC_720P), 0, &mut out).unwrap();
        d.video(video_tag(1, 1, 66, &[0, 0, 0, 1, 0x65]), 1000, &mut out)
            .unwrap();
        d.video(video_tag(2, 1, 0, &[0, 0, 0, 1, 0x41]), 1033, &mut out)
            .unwrap();
        let MediaEvent::Video(k) = &out[1] else {
            panic!()
        };
        assert_eq!(k.dts, Duration::from_millis(1000));
        assert_eq!(k.pts, Duration::from_millis(1066));
        assert!(k.keyframe);
        assert_eq!(&k.data[..], &[0, 0, 0, 1, 0x65]);
        let MediaEvent::Video(p) = &out[2] else {
            panic!()
        };
        assert!(!p.keyframe);
        assert_eq!(p.pts, p.dts);
    }

    #[test]
    fn media_before_its_sequence_header_is_dropped_and_counted() {
        let mut d = Demuxer::default();
        let mut out = vec![];
        d.video(video_tag(1, 1, 0, &[0, 0, 0, 1, 0x65]), 0, &mut out)
            .unwrap();
        d.audio(Bytes::from_static(&[0xaf, 1, 0x21]), 0, &mut out)
            .unwrap();
        assert!(out.is_empty());
        assert_eq!(d.dropped_before_config, 2);
    }

    #[test]
    fn aac_sequence_header_and_frames() {
        let mut d = Demuxer::default();
        let mut out = vec![];
        d.audio(Bytes::from_static(&[0xaf, 0, 0x11, 0x90]), 0, &mut out)
            .unwrap();
        d.audio(Bytes::from_static(&[0xaf, 1, 0x21, 0x10]), 23, &mut out)
            .unwrap();
        let MediaEvent::AudioConfig(c) = &out[0] else {
            panic!()
        };
        assert_eq!((c.object_type, c.sample_rate_hz, c.channels), (2, 48000, 2));
        assert_eq!(c.codec_string(), "mp4a.40.2");
        assert_eq!(
            out[1],
            MediaEvent::Audio(AudioFrame {
                pts: Duration::from_millis(23),
                data: Bytes::from_static(&[0x21, 0x10])
            })
        );
    }

    #[test]
    fn enhanced_rtmp_hevc_is_rejected_by_name() {
        let mut d = Demuxer::default();
        let body = Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1', 0, 0]);
        let err = d.video(body, 0, &mut vec![]).unwrap_err();
        assert!(err.to_string().contains("HEVC"), "{err}");
    }

    #[test]
    fn legacy_codec_ids_are_rejected_by_name() {
        let mut d = Demuxer::default();
        let err = d
            .video(Bytes::from_static(&[0x12, 0]), 0, &mut vec![])
            .unwrap_err();
        assert!(err.to_string().contains("Sorenson"), "{err}");
        let err = d
            .audio(Bytes::from_static(&[0x2f, 0]), 0, &mut vec![])
            .unwrap_err();
        assert!(err.to_string().contains("MP3"), "{err}");
    }

    #[test]
    fn negative_composition_offsets_are_clamped_so_pts_is_never_before_dts() {
        let mut d = Demuxer::default();
        let mut out = vec![];
        d.video(video_tag(1, 0, 0, AVCC_720P), 0, &mut out).unwrap();
        d.video(video_tag(1, 1, -40, &[0, 0, 0, 1, 0x65]), 100, &mut out)
            .unwrap();
        let MediaEvent::Video(f) = &out[1] else {
            panic!()
        };
        assert_eq!(f.pts, f.dts);
        assert_eq!(d.clamped_cts, 1);
    }

    #[test]
    fn empty_sequence_headers_are_skipped_not_errors() {
        let mut d = Demuxer::default();
        let mut out = vec![];
        d.video(video_tag(1, 0, 0, &[]), 0, &mut out).unwrap();
        d.audio(Bytes::from_static(&[0xaf, 0]), 0, &mut out)
            .unwrap();
        assert!(out.is_empty());
        assert_eq!(d.empty_sequence_headers, 2);
        d.video(video_tag(1, 0, 0, AVCC_720P), 0, &mut out).unwrap();
        assert!(matches!(out[..], [MediaEvent::VideoConfig(_)]));
    }

    #[test]
    fn in_band_parameter_sets_stand_in_for_a_missing_sequence_header() {
        // The SPS and PPS of AVCC_720P, sent in-band before an IDR slice.
        let (sps, pps) = (&AVCC_720P[8..34], &AVCC_720P[37..43]);
        let mut au = vec![];
        for nal in [sps, pps, &[0x65, 0x88][..]] {
            au.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            au.extend_from_slice(nal);
        }
        let mut d = Demuxer::default();
        let mut out = vec![];
        d.video(video_tag(2, 1, 0, &au), 0, &mut out).unwrap();
        assert!(out.is_empty(), "not from an inter frame");
        d.video(video_tag(1, 1, 0, &au), 33, &mut out).unwrap();
        let MediaEvent::VideoConfig(c) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!((c.width, c.height), (1280, 720));
        assert_eq!(
            &c.record[..],
            AVCC_720P.strip_suffix(&[0xfd, 0xf8, 0xf8, 0x00]).unwrap()
        );
        assert!(matches!(out[1], MediaEvent::Video(_)));
    }

    #[test]
    fn with_a_sequence_header_payloads_are_never_taken_for_annex_b() {
        let mut d = Demuxer::default();
        let mut out = vec![];
        d.video(video_tag(1, 0, 0, AVCC_720P), 0, &mut out).unwrap();
        // A 300-byte NAL: its length prefix starts 00 00 01.
        let mut au = vec![0, 0, 1, 44, 0x65];
        au.resize(4 + 300, 7);
        d.video(video_tag(1, 1, 0, &au), 0, &mut out).unwrap();
        let MediaEvent::Video(f) = &out[1] else {
            panic!()
        };
        assert_eq!(&f.data[..], &au[..], "passed through untouched");
    }

    #[test]
    fn annex_b_access_units_become_length_prefixed() {
        let au = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 0,
        ];
        assert_eq!(
            annexb_to_avcc(&au).unwrap(),
            [
                0, 0, 0, 3, 0x67, 1, 2, 0, 0, 0, 2, 0x68, 3, 0, 0, 0, 3, 0x65, 4, 5
            ]
        );
        assert!(
            annexb_to_avcc(&[0, 0, 0, 9, 0x65]).is_none(),
            "already length-prefixed"
        );
    }

    #[test]
    fn garbage_sequence_headers_are_errors_not_panics() {
        let mut d = Demuxer::default();
        for junk in [&[1][..], &[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 0xff]] {
            assert!(d.video(video_tag(1, 0, 0, junk), 0, &mut vec![]).is_err());
        }
        assert!(
            d.audio(Bytes::from_static(&[0xaf, 0, 0xf8, 0]), 0, &mut vec![])
                .is_err()
        );
    }
}
