//! Typed media that ingest yields: codec configs and timestamped frames.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h264_reader::nal::{Nal, RefNal, sps::SeqParameterSet};

use crate::error::FlvError;

/// One event of a published stream, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// The publisher's `onMetaData`, as announced (informational only).
    Metadata(Metadata),
    /// A new H.264 decoder configuration: the first one, or a mid-stream change.
    VideoConfig(AvcConfig),
    /// A new AAC decoder configuration.
    AudioConfig(AacConfig),
    /// One H.264 access unit.
    Video(VideoFrame),
    /// One raw AAC frame.
    Audio(AudioFrame),
    /// One Opus packet (RFC 6716; 48 kHz, stereo or mono, as WebRTC sends it).
    /// The transcoder turns it into AAC, so later stages see AAC only.
    Opus(AudioFrame),
    /// The timeline broke (a backwards or huge forward jump, or a restart
    /// upstream). Timestamps after it are still monotonic with those before.
    Discontinuity,
}

/// What the publisher announced in `@setDataFrame onMetaData`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    /// Announced picture width.
    pub width: Option<u32>,
    /// Announced picture height.
    pub height: Option<u32>,
    /// Announced frame rate.
    pub frame_rate: Option<f32>,
    /// Announced video bitrate.
    pub video_bitrate_kbps: Option<u32>,
    /// Announced audio bitrate.
    pub audio_bitrate_kbps: Option<u32>,
    /// The encoder's self-description, e.g. "obs-output module".
    pub encoder: Option<String>,
}

/// An H.264 AVCDecoderConfigurationRecord with the fields the later stages need.
#[derive(Debug, Clone, PartialEq)]
pub struct AvcConfig {
    /// The record itself (ISO/IEC 14496-15 5.3.3.1), as found in avcC.
    pub record: Bytes,
    /// Coded width after cropping, in pixels.
    pub width: u32,
    /// Coded height after cropping, in pixels.
    pub height: u32,
    /// AVCProfileIndication.
    pub profile: u8,
    /// profile_compatibility (the constraint flags).
    pub compatibility: u8,
    /// AVCLevelIndication.
    pub level: u8,
    /// Bytes in each NAL unit's length prefix (1, 2 or 4).
    pub nal_length_size: u8,
    /// Frame rate from the SPS VUI timing info, when present.
    pub frame_rate: Option<f64>,
}

impl AvcConfig {
    /// Parses an AVCDecoderConfigurationRecord and its first SPS.
    pub fn parse(record: Bytes) -> Result<Self, FlvError> {
        let invalid = |e: String| FlvError::InvalidAvcConfig(e);
        let avcc = h264_reader::avcc::AvcDecoderConfigurationRecord::try_from(&record[..])
            .map_err(|e| invalid(format!("{e:?}")))?;
        let sps_nal = avcc
            .sequence_parameter_sets()
            .next()
            .ok_or_else(|| invalid("no SPS".into()))?
            .map_err(|e| invalid(format!("{e:?}")))?;
        let sps = SeqParameterSet::from_bits(RefNal::new(sps_nal, &[], true).rbsp_bits())
            .map_err(|e| invalid(format!("SPS: {e:?}")))?;
        let (width, height) = sps
            .pixel_dimensions()
            .map_err(|e| invalid(format!("SPS dimensions: {e:?}")))?;
        if width == 0 || height == 0 {
            return Err(invalid("zero picture size".into()));
        }
        Ok(Self {
            width,
            height,
            profile: record[1],
            compatibility: record[2],
            level: record[3],
            nal_length_size: (record[4] & 0b11) + 1,
            frame_rate: sps.fps().filter(|f| f.is_finite() && *f > 0.0),
            record,
        })
    }

    /// The RFC 6381 codec string, e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile, self.compatibility, self.level
        )
    }
}

/// An AAC AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct AacConfig {
    /// The AudioSpecificConfig bytes, as found in esds.
    pub asc: Bytes,
    /// audioObjectType (2 = AAC-LC).
    pub object_type: u8,
    /// Sampling frequency.
    pub sample_rate_hz: u32,
    /// channelConfiguration.
    pub channels: u8,
}

/// ISO/IEC 14496-3 Table 1.16, samplingFrequencyIndex.
const AAC_SAMPLE_RATES_HZ: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

impl AacConfig {
    /// Parses the leading fields of an AudioSpecificConfig.
    pub fn parse(asc: Bytes) -> Result<Self, FlvError> {
        let invalid = |e: &str| FlvError::InvalidAacConfig(e.into());
        if asc.len() < 2 {
            return Err(invalid("shorter than 2 bytes"));
        }
        let object_type = asc[0] >> 3;
        let freq_index = ((asc[0] & 0x07) << 1) | (asc[1] >> 7);
        let channels = (asc[1] >> 3) & 0x0f;
        if object_type == 0 || object_type == 31 {
            return Err(invalid("unsupported audioObjectType"));
        }
        let sample_rate_hz = *AAC_SAMPLE_RATES_HZ
            .get(freq_index as usize)
            .ok_or_else(|| invalid("explicit or reserved sampling frequency index"))?;
        if channels == 0 {
            return Err(invalid(
                "channelConfiguration 0 (program config element) is not supported",
            ));
        }
        Ok(Self {
            asc,
            object_type,
            sample_rate_hz,
            channels,
        })
    }

    /// The RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}

/// One H.264 access unit in AVCC form (length-prefixed NAL units).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFrame {
    /// Decode time on the stream's monotonic timeline.
    pub dts: Duration,
    /// Presentation time; never before `dts`.
    pub pts: Duration,
    /// Whether the access unit is a random access point (IDR).
    pub keyframe: bool,
    /// The NAL units, each prefixed by its length.
    pub data: Bytes,
}

/// One raw AAC frame (no ADTS header).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioFrame {
    /// Presentation time on the stream's monotonic timeline.
    pub pts: Duration,
    /// The raw_data_block.
    pub data: Bytes,
}

/// Asks a publisher for a keyframe: a WebRTC publisher answers a PLI, an RTMP
/// publisher cannot be asked (its keyframes come on its own cadence). Cheap to
/// clone and safe to call from any thread, as often as wanted: the publisher's
/// side throttles.
#[derive(Clone, Default)]
pub struct KeyframeRequests(Option<Arc<dyn Fn() + Send + Sync>>);

impl KeyframeRequests {
    /// Requests that call `ask`.
    pub fn new(ask: impl Fn() + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(ask)))
    }

    /// Asks for a keyframe, if this publisher can be asked.
    pub fn request(&self) {
        if let Some(ask) = &self.0 {
            ask();
        }
    }
}

impl fmt::Debug for KeyframeRequests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "KeyframeRequests(on request)"
        } else {
            "KeyframeRequests(none)"
        })
    }
}
