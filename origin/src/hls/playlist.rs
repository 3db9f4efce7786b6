//! LL-HLS playlists (pure). Media playlists are rendered here because m3u8-rs 6
//! cannot write the LL-HLS tags; the multivariant playlist is written with m3u8-rs.
//!
//! Tag order follows draft-pantos-hls-rfc8216bis: header tags, then
//! EXT-X-MEDIA-SEQUENCE and EXT-X-DISCONTINUITY-SEQUENCE, then EXT-X-SKIP
//! (4.4.5.2: it replaces the skipped segments where they would be), then the
//! segments with their parts before each segment URI, then EXT-X-PRELOAD-HINT
//! and EXT-X-RENDITION-REPORT.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// One EXT-X-PART line.
#[derive(Debug, Clone, PartialEq)]
pub struct PartLine {
    /// Part URI, relative to the playlist.
    pub uri: String,
    /// Part duration.
    pub duration: Duration,
    /// Starts with an IDR.
    pub independent: bool,
}

/// One media segment, complete or still growing.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentLine {
    /// Media sequence number.
    pub msn: u64,
    /// Segment URI; `None` while the segment is incomplete (only its parts are listed).
    pub uri: Option<String>,
    /// Duration (the sum of its parts).
    pub duration: Duration,
    /// Preceded by EXT-X-DISCONTINUITY.
    pub discontinuity: bool,
    /// Wall-clock time of its first sample.
    pub program_date_time: SystemTime,
    /// EXT-X-MAP URI to declare before this segment, when the map changes here.
    pub map: Option<String>,
    /// Parts to list (empty for segments older than the part window).
    pub parts: Vec<PartLine>,
}

/// One EXT-X-RENDITION-REPORT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The other rendition's playlist URI, as the multivariant playlist names it.
    pub uri: String,
    /// Its last media sequence number.
    pub last_msn: u64,
    /// Its last part index within that segment.
    pub last_part: u32,
}

/// Everything a media playlist says.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist {
    /// EXT-X-TARGETDURATION, whole seconds.
    pub target_duration_secs: u64,
    /// EXT-X-PART-INF PART-TARGET.
    pub part_target: Duration,
    /// SERVER-CONTROL PART-HOLD-BACK.
    pub part_hold_back: Duration,
    /// SERVER-CONTROL CAN-SKIP-UNTIL.
    pub can_skip_until: Duration,
    /// MSN of the first segment in the (full) playlist.
    pub media_sequence: u64,
    /// Discontinuities that slid out of the window.
    pub discontinuity_sequence: u64,
    /// Segments, oldest first.
    pub segments: Vec<SegmentLine>,
    /// URI of the next part, while live.
    pub preload_hint: Option<String>,
    /// Reports on the other renditions.
    pub reports: Vec<Report>,
    /// EXT-X-ENDLIST.
    pub ended: bool,
}

fn secs(d: Duration) -> String {
    format!("{:.5}", d.as_secs_f64())
}

/// How many leading segments a delta update may skip: those whose end lies
/// more than CAN-SKIP-UNTIL before the end of the playlist [6.2.5.1].
pub fn skippable(p: &MediaPlaylist) -> usize {
    let total: Duration = p.segments.iter().map(|s| s.duration).sum();
    let mut end = Duration::ZERO;
    let mut n = 0;
    for s in &p.segments {
        end += s.duration;
        // Only complete segments can be skipped, and the boundary is strict.
        if s.uri.is_some() && total.saturating_sub(end) > p.can_skip_until {
            n += 1;
        } else {
            break;
        }
    }
    n
}

/// Renders the full playlist (`skip = false`) or the delta update (`skip = true`).
pub fn render(p: &MediaPlaylist, skip: bool) -> String {
    let skipped = if skip && !p.ended { skippable(p) } else { 0 };
    let mut o = String::with_capacity(256 + p.segments.len() * 96);
    o.push_str("#EXTM3U\n#EXT-X-VERSION:9\n");
    let _ = writeln!(o, "#EXT-X-TARGETDURATION:{}", p.target_duration_secs);
    let _ = writeln!(
        o,
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={},PART-HOLD-BACK={}",
        secs(p.can_skip_until),
        secs(p.part_hold_back)
    );
    let _ = writeln!(o, "#EXT-X-PART-INF:PART-TARGET={}", secs(p.part_target));
    let _ = writeln!(o, "#EXT-X-MEDIA-SEQUENCE:{}", p.media_sequence);
    let _ = writeln!(
        o,
        "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
        p.discontinuity_sequence
    );
    if skipped > 0 {
        let _ = writeln!(o, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
    }
    let mut map = p.segments[..skipped]
        .iter()
        .rev()
        .find_map(|s| s.map.clone());
    for (i, s) in p.segments.iter().enumerate().skip(skipped) {
        if let Some(m) = &s.map {
            map = Some(m.clone());
            let _ = writeln!(o, "#EXT-X-MAP:URI=\"{m}\"");
        } else if i == skipped
            && let Some(m) = &map
        {
            // Re-declare the map in force at the first listed segment.
            let _ = writeln!(o, "#EXT-X-MAP:URI=\"{m}\"");
        }
        // Also before the first segment listed: DISCONTINUITY-SEQUENCE counts
        // the tags that slid out, so a player numbers it one above them on
        // every reload, as before it slid to the front.
        if s.discontinuity {
            o.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let _ = writeln!(
            o,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            humantime::format_rfc3339_millis(s.program_date_time)
        );
        for part in &s.parts {
            let _ = write!(
                o,
                "#EXT-X-PART:DURATION={},URI=\"{}\"",
                secs(part.duration),
                part.uri
            );
            o.push_str(if part.independent {
                ",INDEPENDENT=YES\n"
            } else {
                "\n"
            });
        }
        if let Some(uri) = &s.uri {
            let _ = writeln!(o, "#EXTINF:{},\n{uri}", secs(s.duration));
        }
    }
    if p.ended {
        o.push_str("#EXT-X-ENDLIST\n");
    } else if let Some(hint) = &p.preload_hint {
        let _ = writeln!(o, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{hint}\"");
    }
    for r in &p.reports {
        let _ = writeln!(
            o,
            "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={},LAST-PART={}",
            r.uri, r.last_msn, r.last_part
        );
    }
    o
}

/// One variant of the multivariant playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Media playlist URI, relative to the multivariant playlist.
    pub uri: String,
    /// Peak segment bitrate, bits per second.
    pub bandwidth: u64,
    /// Average segment bitrate, bits per second.
    pub average_bandwidth: u64,
    /// RFC 6381 codecs.
    pub codecs: String,
    /// Coded picture size.
    pub resolution: (u32, u32),
    /// Frames per second.
    pub frame_rate: f64,
}

/// Renders the multivariant playlist with m3u8-rs. Audio is muxed into every
/// variant, so there is no EXT-X-MEDIA audio group. `CLOSED-CAPTIONS=NONE`
/// says there are no captions in the video (RFC 8216bis 4.4.6.2): without
/// it, Shaka Player fetches segments at load to look for some, and 5.2.12
/// picked the unfinished last segment of a playlist that had only one or
/// two complete ones, which has no URI, and failed to load (a TypeError).
pub fn render_multivariant(variants: &[Variant]) -> String {
    let pl = m3u8_rs::MasterPlaylist {
        version: Some(9),
        independent_segments: true,
        variants: variants
            .iter()
            .map(|v| m3u8_rs::VariantStream {
                uri: v.uri.clone(),
                bandwidth: v.bandwidth,
                average_bandwidth: Some(v.average_bandwidth),
                codecs: Some(v.codecs.clone()),
                resolution: Some(m3u8_rs::Resolution {
                    width: u64::from(v.resolution.0),
                    height: u64::from(v.resolution.1),
                }),
                frame_rate: Some((v.frame_rate * 1000.0).round() / 1000.0),
                closed_captions: Some(m3u8_rs::ClosedCaptionGroupId::None),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut out = Vec::new();
    pl.write_to(&mut out).expect("writing to a Vec cannot fail");
    String::from_utf8(out).expect("m3u8-rs writes UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn pdt(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000 + s)
    }

    fn seg(msn: u64, complete: bool, parts: usize) -> SegmentLine {
        SegmentLine {
            msn,
            uri: complete.then(|| format!("720p/g/s{msn}.m4s")),
            duration: t(200 * parts as u64),
            discontinuity: false,
            program_date_time: pdt(msn),
            map: None,
            parts: (0..parts)
                .map(|i| PartLine {
                    uri: format!("720p/g/p{}.m4s", msn * 10 + i as u64),
                    duration: t(200),
                    independent: i == 0,
                })
                .collect(),
        }
    }

    fn playlist() -> MediaPlaylist {
        let mut first = seg(1, true, 5);
        first.map = Some("720p/g/init0.mp4".into());
        first.parts.clear();
        MediaPlaylist {
            target_duration_secs: 1,
            part_target: t(200),
            part_hold_back: t(600),
            can_skip_until: t(6000),
            media_sequence: 1,
            discontinuity_sequence: 0,
            segments: vec![first, seg(2, true, 5), seg(3, false, 2)],
            preload_hint: Some("720p/g/p32.m4s".into()),
            reports: vec![Report {
                uri: "480p.m3u8".into(),
                last_msn: 3,
                last_part: 1,
            }],
            ended: false,
        }
    }

    #[test]
    fn a_live_playlist_renders_exactly() {
        let expected = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:1
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=6.00000,PART-HOLD-BACK=0.60000
#EXT-X-PART-INF:PART-TARGET=0.20000
#EXT-X-MEDIA-SEQUENCE:1
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-MAP:URI=\"720p/g/init0.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:41.000Z
#EXTINF:1.00000,
720p/g/s1.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:42.000Z
#EXT-X-PART:DURATION=0.20000,URI=\"720p/g/p20.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI=\"720p/g/p21.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"720p/g/p22.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"720p/g/p23.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"720p/g/p24.m4s\"
#EXTINF:1.00000,
720p/g/s2.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:43.000Z
#EXT-X-PART:DURATION=0.20000,URI=\"720p/g/p30.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI=\"720p/g/p31.m4s\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"720p/g/p32.m4s\"
#EXT-X-RENDITION-REPORT:URI=\"480p.m3u8\",LAST-MSN=3,LAST-PART=1
";
        assert_eq!(render(&playlist(), false), expected);
    }

    #[test]
    fn ended_playlists_drop_the_hint_and_ignore_skip() {
        let mut p = playlist();
        p.ended = true;
        p.segments.pop();
        let text = render(&p, true);
        assert!(text.ends_with(
            "720p/g/s2.m4s\n#EXT-X-ENDLIST\n#EXT-X-RENDITION-REPORT:URI=\"480p.m3u8\",LAST-MSN=3,LAST-PART=1\n"
        ));
        assert!(!text.contains("PRELOAD-HINT"));
        assert!(!text.contains("EXT-X-SKIP"));
    }

    #[test]
    fn delta_updates_skip_only_segments_older_than_can_skip_until() {
        let mut p = playlist();
        p.segments = (1..=10).map(|m| seg(m, true, 5)).collect();
        p.segments[0].map = Some("720p/g/init0.mp4".into());
        p.segments[4].discontinuity = true;
        p.segments.push(seg(11, false, 1));
        // 10.2 s in all; a segment is skipped if it ends more than 6 s before the end.
        assert_eq!(skippable(&p), 4);
        let delta = render(&p, true);
        let full = render(&p, false);
        let expected_head = "#EXT-X-MEDIA-SEQUENCE:1
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-SKIP:SKIPPED-SEGMENTS=4
#EXT-X-MAP:URI=\"720p/g/init0.mp4\"
#EXT-X-DISCONTINUITY
#EXT-X-PROGRAM-DATE-TIME:";
        assert!(delta.contains(expected_head), "{delta}");
        // Everything after the skipped segments is the full playlist verbatim.
        let tail = |s: &str| s[s.find("#EXT-X-DISCONTINUITY\n").unwrap()..].to_string();
        assert_eq!(tail(&delta), tail(&full));
    }

    #[test]
    fn a_discontinuity_is_marked_even_on_the_first_segment_listed() {
        let mut p = playlist();
        p.segments[0].discontinuity = true;
        p.discontinuity_sequence = 3;
        let text = render(&p, false);
        assert!(
            text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:3\n#EXT-X-MAP:URI=\"720p/g/init0.mp4\"\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:"),
            "{text}"
        );
    }

    #[test]
    fn a_discontinuity_is_marked_before_its_segment() {
        let mut p = playlist();
        p.segments[1].discontinuity = true;
        p.segments[1].map = Some("720p/g/init1.mp4".into());
        let text = render(&p, false);
        assert!(text.contains(
            "720p/g/s1.m4s\n#EXT-X-MAP:URI=\"720p/g/init1.mp4\"\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:"
        ), "{text}");
    }

    #[test]
    fn the_multivariant_playlist_parses_back_with_every_attribute() {
        let text = render_multivariant(&[Variant {
            uri: "720p.m3u8".into(),
            bandwidth: 3_100_000,
            average_bandwidth: 2_900_000,
            codecs: "avc1.64001f,mp4a.40.2".into(),
            resolution: (1280, 720),
            frame_rate: 30.0,
        }]);
        let parsed = m3u8_rs::parse_master_playlist_res(text.as_bytes()).unwrap();
        let v = &parsed.variants[0];
        assert_eq!(v.uri, "720p.m3u8");
        assert_eq!(v.bandwidth, 3_100_000);
        assert_eq!(v.average_bandwidth, Some(2_900_000));
        assert_eq!(v.codecs.as_deref(), Some("avc1.64001f,mp4a.40.2"));
        assert_eq!(v.frame_rate, Some(30.0));
        assert_eq!(v.closed_captions, Some(m3u8_rs::ClosedCaptionGroupId::None));
        assert!(text.contains("RESOLUTION=1280x720"));
        assert!(text.contains(",CLOSED-CAPTIONS=NONE"), "unquoted: {text}");
    }
}
