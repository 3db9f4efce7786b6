//! A recording read back as a replay (pure): its index lines, and the VOD
//! playlists rendered from them.
//!
//! A rendition's recording is one or more *runs*, one per URI generation
//! (a restart after a crash, or a takeover, starts a new one), each an
//! `index.jsonl` of the segments written, in order. The replay plays the
//! runs in the order they started, with EXT-X-DISCONTINUITY between them,
//! wherever the live stream had one, and wherever segments are missing (a
//! drop or a disk-full pause), so players never wait on a hole.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::hls::playlist::{self, Variant};
use crate::hls::saved::RenditionFacts;
use crate::hls::uris::Uris;

/// One line of `index.jsonl`: a segment on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Media sequence number (its file is `s{msn}.m4s`).
    pub msn: u64,
    /// Duration, microseconds.
    pub duration_us: u64,
    /// Wall-clock time of its first sample, Unix milliseconds.
    pub pdt_ms: u64,
    /// Marked with EXT-X-DISCONTINUITY live.
    #[serde(default)]
    pub discontinuity: bool,
    /// Its init segment (`init{id}.mp4`).
    pub init: u32,
    /// Size of its file.
    pub bytes: u64,
}

impl Entry {
    /// Its duration.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.duration_us)
    }

    fn program_date_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.pdt_ms)
    }
}

/// Reads an index; a torn last line (a crash mid-append) and anything else
/// unreadable is skipped.
pub fn parse_index(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `facts.json`: what the multivariant playlist says of a rendition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// Its place in the ladder.
    pub order: usize,
    /// Codecs, size and frame rate.
    pub facts: RenditionFacts,
}

/// One generation of one rendition.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The URI generation (its directory).
    pub generation: String,
    /// Its segments, in the order written.
    pub entries: Vec<Entry>,
}

/// One rendition of a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionReplay {
    /// Rendition name.
    pub name: String,
    /// For the multivariant playlist.
    pub facts: Facts,
    /// Runs with at least one segment, in the order they started.
    pub runs: Vec<Run>,
}

impl RenditionReplay {
    /// A rendition from its runs, in any order; runs without segments go.
    pub fn new(name: String, facts: Facts, mut runs: Vec<Run>) -> RenditionReplay {
        runs.retain(|r| !r.entries.is_empty());
        runs.sort_by_key(|r| r.entries[0].pdt_ms);
        RenditionReplay { name, facts, runs }
    }

    /// Everything recorded.
    pub fn duration(&self) -> Duration {
        self.entries().map(|(_, e)| e.duration()).sum()
    }

    fn entries(&self) -> impl Iterator<Item = (&Run, &Entry)> {
        self.runs
            .iter()
            .flat_map(|r| r.entries.iter().map(move |e| (r, e)))
    }

    /// Peak and average segment bitrates, bits per second.
    fn bitrates(&self) -> (u64, u64) {
        let bps =
            |bytes: u64, d: Duration| (bytes as f64 * 8.0 / d.as_secs_f64().max(0.001)) as u64;
        let peak = self
            .entries()
            .map(|(_, e)| bps(e.bytes, e.duration()))
            .max()
            .unwrap_or(0);
        let bytes: u64 = self.entries().map(|(_, e)| e.bytes).sum();
        (peak, bps(bytes, self.duration()))
    }

    /// The VOD media playlist. URIs are the live ones (relative to
    /// `/hls/{broadcast}/{rendition}.m3u8`), so what players and edges
    /// cached while live stays valid.
    pub fn media_playlist(&self) -> String {
        let target = self
            .entries()
            .map(|(_, e)| e.duration().as_secs_f64().round() as u64)
            .max()
            .unwrap_or(1)
            .max(1);
        let mut o = String::with_capacity(
            256 + 96 * self.runs.iter().map(|r| r.entries.len()).sum::<usize>(),
        );
        o.push_str("#EXTM3U\n#EXT-X-VERSION:7\n");
        let _ = writeln!(o, "#EXT-X-TARGETDURATION:{target}");
        o.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n");
        let mut last: Option<(&str, &Entry)> = None;
        for (run, e) in self.entries() {
            let uris = Uris {
                rendition: self.name.clone(),
                generation: run.generation.clone(),
            };
            let same_run = last.is_some_and(|(g, _)| g == run.generation);
            let follows = last.is_some_and(|(_, p)| p.msn + 1 == e.msn);
            let broken = last.is_some() && (e.discontinuity || !same_run || !follows);
            if broken {
                o.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if !same_run || last.is_some_and(|(_, p)| p.init != e.init) {
                let _ = writeln!(o, "#EXT-X-MAP:URI=\"{}\"", uris.init(e.init));
            }
            if last.is_none() || broken {
                let _ = writeln!(
                    o,
                    "#EXT-X-PROGRAM-DATE-TIME:{}",
                    humantime::format_rfc3339_millis(e.program_date_time())
                );
            }
            let _ = writeln!(
                o,
                "#EXTINF:{:.5},\n{}",
                e.duration().as_secs_f64(),
                uris.segment(e.msn)
            );
            last = Some((&run.generation, e));
        }
        o.push_str("#EXT-X-ENDLIST\n");
        o
    }
}

/// The multivariant playlist of a replay's renditions, in ladder order.
pub fn multivariant(renditions: &[RenditionReplay]) -> String {
    let mut sorted: Vec<&RenditionReplay> = renditions.iter().collect();
    sorted.sort_by_key(|r| r.facts.order);
    let variants: Vec<Variant> = sorted
        .iter()
        .map(|r| {
            let (peak, avg) = r.bitrates();
            Variant {
                uri: format!("{}.m3u8", r.name),
                bandwidth: peak,
                average_bandwidth: avg,
                codecs: r.facts.facts.codecs.clone(),
                resolution: r.facts.facts.resolution,
                frame_rate: r.facts.facts.frame_rate,
            }
        })
        .collect();
    playlist::render_multivariant(&variants)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 2-s, 250-kB segment `msn` that started at second `secs` (for
    /// every recording test).
    pub(crate) fn entry(msn: u64, secs: u64) -> Entry {
        Entry {
            msn,
            duration_us: 2_000_000,
            pdt_ms: secs * 1000,
            discontinuity: false,
            init: 0,
            bytes: 250_000,
        }
    }

    fn run(generation: &str, entries: Vec<Entry>) -> Run {
        Run {
            generation: generation.into(),
            entries,
        }
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let a = serde_json::to_string(&entry(1, 0)).unwrap();
        let b = serde_json::to_string(&entry(2, 2)).unwrap();
        let text = format!("{a}\n{b}\n{}", &a[..a.len() / 2]);
        assert_eq!(parse_index(&text), vec![entry(1, 0), entry(2, 2)]);
    }

    #[test]
    fn a_vod_playlist_lists_every_run_with_discontinuities_where_media_breaks() {
        let mut resumed = entry(3, 10);
        resumed.discontinuity = true;
        let r = RenditionReplay::new(
            "720p".into(),
            Facts::default(),
            vec![
                // Written after the crash, listed second.
                run("g2", vec![entry(7, 30)]),
                // A gap after 1 (2 was dropped), then the live discontinuity.
                run("g1", vec![entry(1, 0), resumed, entry(5, 14)]),
                run("empty", vec![]),
            ],
        );
        assert_eq!(r.duration(), Duration::from_secs(8));
        assert_eq!(
            r.media_playlist(),
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n\
             #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-MAP:URI=\"720p/g1/init0.mp4\"\n\
             #EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:00.000Z\n\
             #EXTINF:2.00000,\n720p/g1/s1.m4s\n\
             #EXT-X-DISCONTINUITY\n\
             #EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:10.000Z\n\
             #EXTINF:2.00000,\n720p/g1/s3.m4s\n\
             #EXT-X-DISCONTINUITY\n\
             #EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:14.000Z\n\
             #EXTINF:2.00000,\n720p/g1/s5.m4s\n\
             #EXT-X-DISCONTINUITY\n\
             #EXT-X-MAP:URI=\"720p/g2/init0.mp4\"\n\
             #EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:30.000Z\n\
             #EXTINF:2.00000,\n720p/g2/s7.m4s\n\
             #EXT-X-ENDLIST\n"
        );
    }

    #[test]
    fn consecutive_segments_continue_and_a_new_init_is_mapped() {
        let mut next = entry(2, 2);
        next.init = 1;
        let r = RenditionReplay::new(
            "480p".into(),
            Facts::default(),
            vec![run("g", vec![entry(1, 0), next])],
        );
        let text = r.media_playlist();
        assert!(!text.contains("DISCONTINUITY"), "{text}");
        assert_eq!(text.matches("#EXT-X-PROGRAM-DATE-TIME").count(), 1);
        assert!(text.contains("#EXT-X-MAP:URI=\"480p/g/init1.mp4\"\n#EXTINF"));
        // It parses as a VOD playlist.
        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("parses");
        assert_eq!(parsed.playlist_type, Some(m3u8_rs::MediaPlaylistType::Vod));
        assert!(parsed.end_list);
        assert_eq!(parsed.segments.len(), 2);
    }

    #[test]
    fn the_multivariant_playlist_follows_the_ladder_with_measured_bitrates() {
        let facts = |order: usize, h: u32| Facts {
            order,
            facts: RenditionFacts {
                codecs: "avc1.64001f,mp4a.40.2".into(),
                resolution: (h * 16 / 9, h),
                frame_rate: 30.0,
                nominal_bps: 0,
            },
        };
        let mut big = entry(2, 2);
        big.bytes = 500_000;
        let low = RenditionReplay::new(
            "480p".into(),
            facts(1, 480),
            vec![run("g", vec![entry(1, 0)])],
        );
        let high = RenditionReplay::new(
            "720p".into(),
            facts(0, 720),
            vec![run("g", vec![entry(1, 0), big])],
        );
        let text = multivariant(&[low, high]);
        let parsed = m3u8_rs::parse_master_playlist_res(text.as_bytes()).expect("parses");
        let uris: Vec<&str> = parsed.variants.iter().map(|v| v.uri.as_str()).collect();
        assert_eq!(uris, ["720p.m3u8", "480p.m3u8"]);
        assert_eq!(parsed.variants[0].bandwidth, 2_000_000);
        assert_eq!(parsed.variants[0].average_bandwidth, Some(1_500_000));
    }
}
