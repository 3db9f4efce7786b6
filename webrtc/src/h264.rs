//! H.264 between WebRTC's Annex B access units and the AVCC frames and
//! decoder configuration records the rest of the pipeline takes (pure).

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use ingest::{AvcConfig, MediaEvent, VideoFrame};

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;
/// Largest parameter set accepted; real ones are tens of bytes.
const MAX_PARAMETER_SET: usize = 1024;

/// The NAL units of an Annex B byte stream (3- or 4-byte start codes),
/// without their start codes; empty units are skipped.
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&(code, _)| {
            // A 4-byte start code's leading zero belongs to the code, not the unit.
            if code > 0 && data[code - 1] == 0 {
                code - 1
            } else {
                code
            }
        })
        .chain(std::iter::once(data.len()))
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .map(move |((_, start), end)| &data[start..end.max(start)])
        .filter(|n| !n.is_empty())
}

/// An AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1) for one SPS
/// and one PPS, with 4-byte NAL lengths.
pub fn avcc_record(sps: &[u8], pps: &[u8]) -> Option<Bytes> {
    if sps.len() < 4
        || pps.is_empty()
        || sps.len() > MAX_PARAMETER_SET
        || pps.len() > MAX_PARAMETER_SET
    {
        return None;
    }
    let mut r = BytesMut::with_capacity(11 + sps.len() + pps.len());
    r.put_u8(1);
    r.put_slice(&sps[1..4]); // profile, constraint flags, level
    r.put_u8(0xfc | 3); // 4-byte lengths
    r.put_u8(0xe0 | 1);
    r.put_u16(sps.len() as u16);
    r.put_slice(sps);
    r.put_u8(1);
    r.put_u16(pps.len() as u16);
    r.put_slice(pps);
    Some(r.freeze())
}

/// The SPS and PPS of an AVCDecoderConfigurationRecord as Annex B, to go
/// before every IDR sent to WebRTC viewers (who join at any IDR).
pub fn parameter_sets(config: &AvcConfig) -> Vec<u8> {
    let mut out = Vec::new();
    let Ok(record) = h264_reader::avcc::AvcDecoderConfigurationRecord::try_from(&config.record[..])
    else {
        return out;
    };
    for nal in record
        .sequence_parameter_sets()
        .chain(record.picture_parameter_sets())
        .flatten()
    {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
    out
}

/// An AVCC access unit (NAL units prefixed by `length_size`-byte lengths) as
/// Annex B, after `prefix` (parameter sets, for an IDR). A truncated unit
/// ends the conversion: what came before it is kept.
pub fn annexb(avcc: &[u8], length_size: u8, prefix: &[u8]) -> Vec<u8> {
    let n = usize::from(length_size.clamp(1, 4));
    let mut out = Vec::with_capacity(prefix.len() + avcc.len() + 16);
    out.extend_from_slice(prefix);
    let mut rest = avcc;
    while rest.len() > n {
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        let Some(nal) = rest.get(n..n + len) else {
            break;
        };
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
        rest = &rest[n + len..];
    }
    out
}

/// Largest RTP payload sent to viewers: with the RTP header, header
/// extensions and the SRTP tag, packets stay under 1,200 bytes, which every
/// path WebRTC runs on carries.
pub const RTP_PAYLOAD_MAX: usize = 1100;
/// Fragmentation unit A (RFC 6184 5.8).
const NAL_FU_A: u8 = 28;

/// The RTP payloads (RFC 6184, packetization mode 1) of an Annex B access
/// unit: a NAL unit that fits in `max` bytes goes whole, a larger one in
/// FU-A fragments. The fan-out makes them once per frame of a rendition and
/// every viewer's stream sends the same payloads (str0m packetizes only for
/// the frame-level writer, and does not export its packetizer).
pub fn rtp_payloads(annexb: &[u8], max: usize) -> Vec<Arc<[u8]>> {
    let mut out = Vec::new();
    for nal in nal_units(annexb) {
        if nal.len() <= max {
            out.push(nal.into());
            continue;
        }
        let (head, body) = (nal[0], &nal[1..]);
        let chunks: Vec<&[u8]> = body.chunks(max.max(3) - 2).collect();
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let mut header = head & 0x1f;
            if i == 0 {
                header |= 0x80;
            }
            if i == last {
                header |= 0x40;
            }
            let mut p = Vec::with_capacity(chunk.len() + 2);
            p.extend_from_slice(&[(head & 0xe0) | NAL_FU_A, header]);
            p.extend_from_slice(chunk);
            out.push(p.into());
        }
    }
    out
}

/// Turns a WebRTC publisher's access units into media events: a
/// [`MediaEvent::VideoConfig`] from in-band SPS and PPS (first, and whenever
/// they change), then AVCC frames. Frames before the first configuration, or
/// after a loss until the next IDR, are dropped: the caller asks the
/// publisher for a keyframe when [`Assembler::needs_keyframe`] says so.
#[derive(Debug, Default)]
pub struct Assembler {
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    config: Option<AvcConfig>,
    waiting_for_idr: bool,
}

impl Assembler {
    /// A new assembler, waiting for its first IDR.
    pub fn new() -> Self {
        Self {
            waiting_for_idr: true,
            ..Self::default()
        }
    }

    /// Frames are being dropped until an IDR arrives.
    pub fn needs_keyframe(&self) -> bool {
        self.waiting_for_idr
    }

    /// Packets were lost before the next access unit: drop until an IDR.
    pub fn lost(&mut self) {
        self.waiting_for_idr = true;
    }

    /// One access unit in Annex B form, presented at `pts`.
    pub fn push(&mut self, annexb: &[u8], pts: Duration, out: &mut Vec<MediaEvent>) {
        let mut avcc = BytesMut::with_capacity(annexb.len() + 16);
        let mut idr = false;
        for nal in nal_units(annexb) {
            match nal[0] & 0x1f {
                NAL_SPS => self.sps = Some(Bytes::copy_from_slice(nal)),
                NAL_PPS => self.pps = Some(Bytes::copy_from_slice(nal)),
                NAL_AUD => {}
                t => {
                    idr |= t == NAL_IDR;
                    avcc.put_u32(nal.len() as u32);
                    avcc.put_slice(nal);
                }
            }
        }
        if let (Some(sps), Some(pps)) = (&self.sps, &self.pps)
            && let Some(record) = avcc_record(sps, pps)
            && self.config.as_ref().is_none_or(|c| c.record != record)
        {
            match AvcConfig::parse(record) {
                Ok(c) => {
                    out.push(MediaEvent::VideoConfig(c.clone()));
                    self.config = Some(c);
                }
                Err(err) => tracing::debug!(%err, "unusable SPS from a WebRTC publisher"),
            }
        }
        if avcc.is_empty() || self.config.is_none() || (self.waiting_for_idr && !idr) {
            return;
        }
        self.waiting_for_idr = false;
        out.push(MediaEvent::Video(VideoFrame {
            dts: pts,
            pts,
            keyframe: idr,
            data: avcc.freeze(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_units_go_in_fu_a_fragments_that_reassemble() {
        let sps = [0x67, 0x64, 0x00, 0x1f, 0xac];
        let pps = [0x68, 0xee, 0x3c, 0x80];
        let mut idr = vec![0x65];
        idr.extend((0..2999u32).map(|i| (i % 251) as u8));
        let mut au = Vec::new();
        for nal in [&sps[..], &pps[..], &idr[..]] {
            au.extend_from_slice(&[0, 0, 0, 1]);
            au.extend_from_slice(nal);
        }
        let p = rtp_payloads(&au, 1100);
        // Two parameter sets whole, then 2999 bytes in 1098-byte fragments.
        assert_eq!(p.len(), 2 + 3);
        assert_eq!((&*p[0], &*p[1]), (&sps[..], &pps[..]));
        assert!(p.iter().all(|x| x.len() <= 1100));
        let fragments = &p[2..];
        // NRI kept, type 28; start and end bits on the first and last.
        assert!(fragments.iter().all(|f| f[0] == 0x60 | 28));
        assert_eq!(fragments[0][1], 0x80 | 5);
        assert_eq!(fragments[1][1], 5);
        assert_eq!(fragments[2][1], 0x40 | 5);
        let mut back = vec![(fragments[0][0] & 0xe0) | (fragments[0][1] & 0x1f)];
        for f in fragments {
            back.extend_from_slice(&f[2..]);
        }
        assert_eq!(back, idr);
        assert!(rtp_payloads(&[], 1100).is_empty());
    }

    /// A real 64x64 Constrained Baseline SPS and PPS (x264 through ffmpeg).
    const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x0a, 0xd9, 0x04, 0x26, 0xc0, 0x44, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00,
        0x00, 0x03, 0x00, 0xc8, 0x3c, 0x48, 0x99, 0x20,
    ];
    const PPS: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];

    fn stream(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for (i, n) in nals.iter().enumerate() {
            // Mixed start-code lengths, as encoders write them.
            v.extend_from_slice(if i % 2 == 0 {
                &[0, 0, 0, 1]
            } else {
                &[0, 0, 1]
            });
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn nal_units_split_on_both_start_code_lengths() {
        let data = stream(&[&[0x09, 0xf0], SPS, PPS, &[0x65, 1, 2, 0, 0, 3]]);
        let units: Vec<&[u8]> = nal_units(&data).collect();
        assert_eq!(
            units,
            vec![&[0x09, 0xf0][..], SPS, PPS, &[0x65, 1, 2, 0, 0, 3]]
        );
        assert_eq!(nal_units(&[0, 0, 1]).count(), 0);
        assert_eq!(nal_units(&[1, 2, 3]).count(), 0);
    }

    #[test]
    fn in_band_parameter_sets_become_a_config_and_frames_become_avcc() {
        let mut a = Assembler::new();
        let mut out = Vec::new();
        // A delta frame before any IDR is dropped.
        a.push(&stream(&[&[0x41, 9, 9]]), Duration::ZERO, &mut out);
        assert!(out.is_empty() && a.needs_keyframe());
        let idr = [0x65, 0x88, 0x84];
        a.push(
            &stream(&[&[0x09, 0xf0], SPS, PPS, &idr]),
            Duration::from_millis(40),
            &mut out,
        );
        let MediaEvent::VideoConfig(c) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(
            (c.width, c.height, c.profile, c.level),
            (64, 64, 0x42, 0x0a)
        );
        assert_eq!(c.nal_length_size, 4);
        let MediaEvent::Video(f) = &out[1] else {
            panic!("{out:?}")
        };
        assert!(f.keyframe);
        assert_eq!(f.pts, Duration::from_millis(40));
        assert_eq!(&f.data[..], &[0, 0, 0, 3, 0x65, 0x88, 0x84]);
        assert!(!a.needs_keyframe());
        // The same parameter sets again: no new config.
        out.clear();
        a.push(
            &stream(&[SPS, PPS, &idr]),
            Duration::from_millis(80),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        // After a loss, deltas wait for the next IDR.
        out.clear();
        a.lost();
        a.push(&stream(&[&[0x41, 1]]), Duration::from_millis(120), &mut out);
        assert!(out.is_empty());
        a.push(&stream(&[&idr]), Duration::from_millis(160), &mut out);
        assert!(matches!(&out[0], MediaEvent::Video(f) if f.keyframe));
    }

    #[test]
    fn avcc_becomes_annexb_with_parameter_sets_first() {
        let record = avcc_record(SPS, PPS).unwrap();
        let config = AvcConfig::parse(record).unwrap();
        let sets = parameter_sets(&config);
        assert_eq!(nal_units(&sets).collect::<Vec<_>>(), vec![SPS, PPS]);
        let frame = [0, 0, 0, 3, 0x65, 1, 2, 0, 0, 0, 2, 0x06, 9];
        let out = annexb(&frame, 4, &sets);
        assert_eq!(
            nal_units(&out).collect::<Vec<_>>(),
            vec![SPS, PPS, &[0x65, 1, 2][..], &[0x06, 9][..]]
        );
        // A truncated unit is cut, not read past.
        let out = annexb(&[0, 0, 0, 3, 0x41, 1, 2, 0, 0, 0, 9, 0x41], 4, &[]);
        assert_eq!(nal_units(&out).collect::<Vec<_>>(), vec![&[0x41, 1, 2][..]]);
    }

    #[test]
    fn garbage_never_panics() {
        let mut a = Assembler::new();
        let mut out = Vec::new();
        for data in [
            &[][..],
            &[0, 0, 1, 0x67],
            &[0, 0, 1, 0x67, 0, 0, 1, 0x68],
            &[0, 0, 0, 1, 0x65],
            &[0xff; 64],
        ] {
            a.push(data, Duration::ZERO, &mut out);
        }
        assert!(out.is_empty());
    }
}
