//! CMAF fMP4 for LL-HLS: init segments and parts (pure). mp4-atom writes the
//! boxes; this module decides what goes in them.
//!
//! An init segment is `ftyp` + `moov` (mvhd, one trak per track, mvex/trex).
//! A part is one `moof` + `mdat`: a traf per track, each with a tfdt and a trun
//! whose data offset is relative to the moof (tfhd default-base-is-moof,
//! ISO/IEC 14496-12 8.8.7.1), so parts concatenate into a valid segment.

use bytes::Bytes;
use ingest::{AacConfig, AvcConfig};
use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor};
use mp4_atom::{
    Atom, Audio, Avc1, Avcc, Codec, Dinf, Dref, DrefEntry, Encode, Esds, FixedPoint, FourCC, Ftyp,
    Hdlr, Mdat, Mdhd, Mdia, Mfhd, Minf, Moof, Moov, Mp4a, Mvex, Mvhd, Smhd, Stbl, Stsd, Tfdt, Tfhd,
    Tkhd, Traf, Trak, Trex, Trun, TrunEntry, TrunSamples, Url, Visual, Vmhd,
};

/// Timescale of the video track: the MPEG 90 kHz clock.
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// Track id of the video track.
pub const VIDEO_TRACK_ID: u32 = 1;
/// Track id of the audio track.
pub const AUDIO_TRACK_ID: u32 = 2;
/// Samples per AAC frame (AAC-LC).
pub const AAC_FRAME_SAMPLES: u32 = 1024;

/// ISO/IEC 14496-12 8.8.3.1 sample flags: depends on nothing (a sync sample).
pub const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// Depends on other samples and is not a sync sample.
pub const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// Why boxes could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Fmp4Error {
    /// mp4-atom refused to encode or decode.
    #[error("mp4: {0}")]
    Mp4(#[from] mp4_atom::Error),
    /// A part had no samples.
    #[error("empty part")]
    Empty,
}

/// One video sample of a part.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoSample {
    /// Duration in [`VIDEO_TIMESCALE`] ticks.
    pub duration: u32,
    /// PTS - DTS in ticks.
    pub composition_offset: i32,
    /// Whether it is a sync sample (IDR).
    pub keyframe: bool,
    /// AVCC NAL units.
    pub data: Bytes,
}

/// One AAC frame of a part.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioSample {
    /// Duration in samples (the track timescale is the sample rate).
    pub duration: u32,
    /// The raw AAC frame.
    pub data: Bytes,
}

/// The samples of one part and where they start on each track's timeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartSamples {
    /// moof sequence number.
    pub sequence: u32,
    /// Decode time of the first video sample, in ticks.
    pub video_decode_time: u64,
    /// Video samples.
    pub video: Vec<VideoSample>,
    /// Decode time of the first audio sample, in samples.
    pub audio_decode_time: u64,
    /// Audio samples.
    pub audio: Vec<AudioSample>,
}

fn url_self() -> Dinf {
    Dinf {
        dref: Dref {
            entries: vec![DrefEntry::Url(Url {
                location: String::new(),
            })],
        },
    }
}

fn encode(atom: &impl Encode, out: &mut Vec<u8>) -> Result<(), Fmp4Error> {
    atom.encode(out)?;
    Ok(())
}

/// Builds the init segment for a rendition: video, plus audio when present.
pub fn init_segment(video: &AvcConfig, audio: Option<&AacConfig>) -> Result<Bytes, Fmp4Error> {
    let avcc = Avcc::decode_body(&mut &video.record[..])?;
    let mut traks = vec![Trak {
        tkhd: Tkhd {
            track_id: VIDEO_TRACK_ID,
            enabled: true,
            in_movie: true,
            width: FixedPoint::new(video.width as u16, 0),
            height: FixedPoint::new(video.height as u16, 0),
            ..Default::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: VIDEO_TIMESCALE,
                language: "und".into(),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: FourCC::new(b"vide"),
                name: "Video".into(),
            },
            minf: Minf {
                vmhd: Some(Vmhd::default()),
                dinf: url_self(),
                stbl: Stbl {
                    stsd: Stsd {
                        codecs: vec![Codec::Avc1(Avc1 {
                            visual: Visual {
                                width: video.width as u16,
                                height: video.height as u16,
                                ..Default::default()
                            },
                            avcc,
                            ..Default::default()
                        })],
                    },
                    ..Default::default()
                },
                ..Default::default()
            },
        },
        ..Default::default()
    }];
    let mut trex = vec![Trex {
        track_id: VIDEO_TRACK_ID,
        default_sample_description_index: 1,
        ..Default::default()
    }];
    if let Some(a) = audio {
        traks.push(Trak {
            tkhd: Tkhd {
                track_id: AUDIO_TRACK_ID,
                enabled: true,
                in_movie: true,
                alternate_group: 1,
                volume: FixedPoint::new(1, 0),
                ..Default::default()
            },
            mdia: Mdia {
                mdhd: Mdhd {
                    timescale: a.sample_rate_hz,
                    language: "und".into(),
                    ..Default::default()
                },
                hdlr: Hdlr {
                    handler: FourCC::new(b"soun"),
                    name: "Audio".into(),
                },
                minf: Minf {
                    smhd: Some(Smhd::default()),
                    dinf: url_self(),
                    stbl: Stbl {
                        stsd: Stsd {
                            codecs: vec![Codec::Mp4a(Mp4a {
                                audio: Audio {
                                    data_reference_index: 1,
                                    channel_count: u16::from(a.channels),
                                    sample_size: 16,
                                    // A 16.16 field: rates above 65535 Hz are written as 0.
                                    sample_rate: FixedPoint::new(
                                        u16::try_from(a.sample_rate_hz).unwrap_or(0),
                                        0,
                                    ),
                                },
                                esds: Esds {
                                    es_desc: EsDescriptor {
                                        es_id: AUDIO_TRACK_ID as u16,
                                        dec_config: DecoderConfig {
                                            // ISO/IEC 14496-1 Table 5: Audio ISO/IEC 14496-3, AudioStream.
                                            object_type_indication: 0x40,
                                            stream_type: 0x05,
                                            dec_specific: Some(DecoderSpecific {
                                                profile: a.object_type,
                                                freq_index: freq_index(a.sample_rate_hz),
                                                chan_conf: a.channels,
                                                raw: a.asc.to_vec(),
                                            }),
                                            ..Default::default()
                                        },
                                        ..Default::default()
                                    },
                                },
                                btrt: None,
                                taic: None,
                            })],
                        },
                        ..Default::default()
                    },
                    ..Default::default()
                },
            },
            ..Default::default()
        });
        trex.push(Trex {
            track_id: AUDIO_TRACK_ID,
            default_sample_description_index: 1,
            ..Default::default()
        });
    }
    let mut out = Vec::with_capacity(1024);
    encode(
        &Ftyp {
            major_brand: FourCC::new(b"iso6"),
            minor_version: 0,
            compatible_brands: vec![
                FourCC::new(b"iso6"),
                FourCC::new(b"cmfc"),
                FourCC::new(b"mp41"),
            ],
        },
        &mut out,
    )?;
    encode(
        &Moov {
            mvhd: Mvhd {
                timescale: 1000,
                next_track_id: AUDIO_TRACK_ID + 1,
                ..Default::default()
            },
            mvex: Some(Mvex { mehd: None, trex }),
            trak: traks,
            ..Default::default()
        },
        &mut out,
    )?;
    Ok(out.into())
}

fn freq_index(rate: u32) -> u8 {
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    RATES.iter().position(|r| *r == rate).unwrap_or(15) as u8
}

/// Builds one part: a moof with a traf per non-empty track, then one mdat
/// holding the video samples followed by the audio samples.
pub fn part(p: &PartSamples) -> Result<Bytes, Fmp4Error> {
    if p.video.is_empty() && p.audio.is_empty() {
        return Err(Fmp4Error::Empty);
    }
    let video_bytes: usize = p.video.iter().map(|s| s.data.len()).sum();
    let audio_bytes: usize = p.audio.iter().map(|s| s.data.len()).sum();
    let build = |video_offset: i32, audio_offset: i32| {
        let mut traf = Vec::new();
        if !p.video.is_empty() {
            traf.push(Traf {
                tfhd: Tfhd {
                    track_id: VIDEO_TRACK_ID,
                    default_base_is_moof: true,
                    ..Default::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time: p.video_decode_time,
                }),
                trun: vec![Trun {
                    data_offset: Some(video_offset),
                    samples: TrunSamples::Explicit(
                        p.video
                            .iter()
                            .map(|s| TrunEntry {
                                duration: Some(s.duration),
                                size: Some(s.data.len() as u32),
                                flags: Some(if s.keyframe {
                                    SYNC_SAMPLE_FLAGS
                                } else {
                                    NON_SYNC_SAMPLE_FLAGS
                                }),
                                cts: Some(i64::from(s.composition_offset)),
                            })
                            .collect(),
                    ),
                }],
                ..Default::default()
            });
        }
        if !p.audio.is_empty() {
            traf.push(Traf {
                tfhd: Tfhd {
                    track_id: AUDIO_TRACK_ID,
                    default_base_is_moof: true,
                    ..Default::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time: p.audio_decode_time,
                }),
                trun: vec![Trun {
                    data_offset: Some(audio_offset),
                    samples: TrunSamples::Explicit(
                        p.audio
                            .iter()
                            .map(|s| TrunEntry {
                                duration: Some(s.duration),
                                size: Some(s.data.len() as u32),
                                flags: Some(SYNC_SAMPLE_FLAGS),
                                cts: None,
                            })
                            .collect(),
                    ),
                }],
                ..Default::default()
            });
        }
        Moof {
            mfhd: Mfhd {
                sequence_number: p.sequence,
            },
            traf,
        }
    };
    // The offsets have a fixed width, so the moof's size does not depend on them.
    let mut probe = Vec::new();
    encode(&build(0, 0), &mut probe)?;
    let mdat_start = probe.len() as i32 + 8;
    let mut out = Vec::with_capacity(probe.len() + 8 + video_bytes + audio_bytes);
    encode(
        &build(mdat_start, mdat_start + video_bytes as i32),
        &mut out,
    )?;
    let mut data = Vec::with_capacity(video_bytes + audio_bytes);
    for s in &p.video {
        data.extend_from_slice(&s.data);
    }
    for s in &p.audio {
        data.extend_from_slice(&s.data);
    }
    encode(&Mdat { data }, &mut out)?;
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mp4_atom::{Any, Decode};

    const AVCC: &[u8] = &[
        0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40,
        0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0,
        0xf1, 0x83, 0x19, 0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8,
        0xf8, 0x00,
    ];

    fn atoms(mut data: &[u8]) -> Vec<Any> {
        let mut out = vec![];
        while !data.is_empty() {
            out.push(Any::decode(&mut data).unwrap());
        }
        out
    }

    #[test]
    fn the_init_segment_is_ftyp_then_moov_with_both_tracks_and_trex() {
        let video = AvcConfig::parse(Bytes::from_static(AVCC)).unwrap();
        let audio = AacConfig::parse(Bytes::from_static(&[0x11, 0x90, 0x56, 0xe5, 0x00])).unwrap();
        let init = init_segment(&video, Some(&audio)).unwrap();
        let boxes = atoms(&init);
        assert!(matches!(boxes[0], Any::Ftyp(_)));
        let Any::Moov(moov) = &boxes[1] else {
            panic!("{boxes:?}")
        };
        assert_eq!(boxes.len(), 2);
        assert_eq!(moov.trak.len(), 2);
        let trex: Vec<u32> = moov
            .mvex
            .as_ref()
            .unwrap()
            .trex
            .iter()
            .map(|t| t.track_id)
            .collect();
        assert_eq!(trex, vec![VIDEO_TRACK_ID, AUDIO_TRACK_ID]);
        let Codec::Avc1(avc1) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else {
            panic!()
        };
        assert_eq!((avc1.visual.width, avc1.visual.height), (1280, 720));
        assert_eq!(avc1.avcc.avc_profile_indication, 0x64);
        assert_eq!(moov.trak[0].mdia.mdhd.timescale, VIDEO_TIMESCALE);
        let Codec::Mp4a(mp4a) = &moov.trak[1].mdia.minf.stbl.stsd.codecs[0] else {
            panic!()
        };
        let asc = &mp4a
            .esds
            .es_desc
            .dec_config
            .dec_specific
            .as_ref()
            .unwrap()
            .raw;
        assert_eq!(
            asc,
            &[0x11, 0x90, 0x56, 0xe5, 0x00],
            "the AudioSpecificConfig is kept verbatim"
        );
        assert_eq!(moov.trak[1].mdia.mdhd.timescale, 48_000);
    }

    #[test]
    fn a_part_is_one_moof_and_mdat_with_offsets_relative_to_the_moof() {
        let p = PartSamples {
            sequence: 7,
            video_decode_time: 90_000,
            video: vec![
                VideoSample {
                    duration: 3000,
                    composition_offset: 0,
                    keyframe: true,
                    data: Bytes::from_static(b"IDRIDR"),
                },
                VideoSample {
                    duration: 3000,
                    composition_offset: 3000,
                    keyframe: false,
                    data: Bytes::from_static(b"PP"),
                },
            ],
            audio_decode_time: 48_000,
            audio: vec![AudioSample {
                duration: 1024,
                data: Bytes::from_static(b"aac"),
            }],
        };
        let bytes = part(&p).unwrap();
        let boxes = atoms(&bytes);
        let [Any::Moof(moof), Any::Mdat(mdat)] = &boxes[..] else {
            panic!("{boxes:?}")
        };
        assert_eq!(moof.mfhd.sequence_number, 7);
        assert_eq!(mdat.data, b"IDRIDRPPaac");
        let moof_len = bytes.len() - 8 - mdat.data.len();
        let v = &moof.traf[0];
        assert!(v.tfhd.default_base_is_moof);
        assert_eq!(v.tfdt.as_ref().unwrap().base_media_decode_time, 90_000);
        assert_eq!(v.trun[0].data_offset, Some(moof_len as i32 + 8));
        let flags: Vec<Option<u32>> = (0..2)
            .map(|i| v.trun[0].samples.get(i).unwrap().flags)
            .collect();
        assert_eq!(
            flags,
            vec![Some(SYNC_SAMPLE_FLAGS), Some(NON_SYNC_SAMPLE_FLAGS)]
        );
        assert_eq!(v.trun[0].samples.get(1).unwrap().cts, Some(3000));
        let a = &moof.traf[1];
        assert_eq!(a.tfhd.track_id, AUDIO_TRACK_ID);
        assert_eq!(a.tfdt.as_ref().unwrap().base_media_decode_time, 48_000);
        assert_eq!(a.trun[0].data_offset, Some(moof_len as i32 + 8 + 8));
        let audio_at = a.trun[0].data_offset.unwrap() as usize;
        assert_eq!(&bytes[audio_at..audio_at + 3], b"aac");
    }
}
