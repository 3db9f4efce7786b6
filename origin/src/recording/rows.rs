//! A recording as rows in the database several origins share, and a
//! replay's renditions from those rows (pure).

use std::collections::HashMap;

use super::disk::Recording;
use super::replay::{Facts, RenditionReplay, Run, parse_index};
use crate::store::recordings::{ReplayIndex, RunRow, SegmentRow};

/// The rows of a recording read from disk.
pub fn rows_of(broadcast: &str, rec: &Recording) -> (Vec<RunRow>, Vec<SegmentRow>) {
    let (mut runs, mut segments) = (Vec::new(), Vec::new());
    for r in &rec.renditions {
        let facts = serde_json::to_string(&r.facts).unwrap_or_default();
        for run in &r.runs {
            runs.push(RunRow {
                broadcast: broadcast.to_owned(),
                rendition: r.name.clone(),
                generation: run.generation.clone(),
                facts: facts.clone(),
            });
            for e in &run.entries {
                segments.push(SegmentRow {
                    broadcast: broadcast.to_owned(),
                    rendition: r.name.clone(),
                    generation: run.generation.clone(),
                    msn: e.msn,
                    entry: serde_json::to_string(e).unwrap_or_default(),
                    duration_secs: e.duration().as_secs_f64(),
                });
            }
        }
    }
    (runs, segments)
}

/// A sealed replay's renditions, from its index (unreadable rows skipped).
pub fn renditions_of(index: &ReplayIndex) -> Vec<RenditionReplay> {
    let mut by_rendition: HashMap<&str, (Facts, Vec<Run>)> = HashMap::new();
    for (run, _) in &index.runs {
        let entry = by_rendition.entry(&run.rendition).or_default();
        if let Ok(f) = serde_json::from_str(&run.facts) {
            entry.0 = f;
        }
        let mut entries: Vec<_> = index
            .segments
            .iter()
            .filter(|s| s.rendition == run.rendition && s.generation == run.generation)
            .flat_map(|s| parse_index(&s.entry))
            .collect();
        entries.sort_by_key(|e| e.msn);
        entry.1.push(Run {
            generation: run.generation.clone(),
            entries,
        });
    }
    let mut renditions: Vec<RenditionReplay> = by_rendition
        .into_iter()
        .map(|(name, (facts, runs))| RenditionReplay::new(name.to_owned(), facts, runs))
        .filter(|r| !r.runs.is_empty())
        .collect();
    renditions.sort_by_key(|r| r.facts.order);
    renditions
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::recording::replay::tests::entry;
    use crate::store::Node;

    fn rendition(name: &str, order: usize, runs: Vec<Run>) -> RenditionReplay {
        let facts = Facts {
            order,
            ..Default::default()
        };
        RenditionReplay::new(name.into(), facts, runs)
    }

    #[test]
    fn two_origins_rows_make_the_replay_each_would_read_from_one_disk() {
        let node = |id: &str| Node {
            id: id.into(),
            url: format!("http://{id}"),
        };
        // Origin a recorded generation g1, origin b (after a take-over) g2.
        let a = Recording {
            renditions: vec![rendition(
                "720p",
                0,
                vec![Run {
                    generation: "g1".into(),
                    entries: vec![entry(1, 1), entry(2, 3)],
                }],
            )],
            ..Default::default()
        };
        let b = Recording {
            renditions: vec![
                rendition(
                    "720p",
                    0,
                    vec![Run {
                        generation: "g2".into(),
                        entries: vec![entry(3, 6), entry(4, 8)],
                    }],
                ),
                rendition(
                    "480p",
                    1,
                    vec![Run {
                        generation: "g2".into(),
                        entries: vec![entry(3, 6)],
                    }],
                ),
            ],
            ..Default::default()
        };
        let mut index = ReplayIndex::default();
        for (name, rec) in [("b", &b), ("a", &a)] {
            let (runs, mut segments) = rows_of("x", rec);
            segments.reverse();
            index.runs.extend(runs.into_iter().map(|r| (r, node(name))));
            index.segments.extend(segments);
        }
        let replay = renditions_of(&index);
        let names: Vec<&str> = replay.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["720p", "480p"], "in ladder order");
        let runs: Vec<(&str, Vec<u64>)> = replay[0]
            .runs
            .iter()
            .map(|r| {
                (
                    r.generation.as_str(),
                    r.entries.iter().map(|e| e.msn).collect(),
                )
            })
            .collect();
        assert_eq!(
            runs,
            [("g1", vec![1, 2]), ("g2", vec![3, 4])],
            "in the order recorded"
        );
        assert_eq!(replay[0].duration(), Duration::from_secs(8));
        let playlist = replay[0].media_playlist();
        assert_eq!(
            playlist.matches("#EXT-X-DISCONTINUITY\n").count(),
            1,
            "{playlist}"
        );
        assert!(
            playlist.contains("g1/s1.m4s") && playlist.contains("g2/s4.m4s"),
            "{playlist}"
        );
    }
}
