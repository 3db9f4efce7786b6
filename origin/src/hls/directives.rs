//! Delivery directives [RFC 8216bis 6.2.5]: parsing and the decision whether
//! a playlist request is answered now, held, or refused (pure).

/// A parsed `_HLS_*` query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    /// `_HLS_msn`.
    pub msn: Option<u64>,
    /// `_HLS_part`.
    pub part: Option<u32>,
    /// `_HLS_skip=YES` (or `v2`, which we treat the same: we never skip date ranges).
    pub skip: bool,
}

/// Parses the query string; `Err` carries the 400 message.
pub fn parse(query: Option<&str>) -> Result<Directives, String> {
    let mut d = Directives::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "_HLS_msn" => {
                d.msn = Some(
                    v.parse()
                        .map_err(|_| format!("_HLS_msn={v:?} is not a number"))?,
                )
            }
            "_HLS_part" => {
                d.part = Some(
                    v.parse()
                        .map_err(|_| format!("_HLS_part={v:?} is not a number"))?,
                )
            }
            "_HLS_skip" => match v {
                "YES" | "v2" => d.skip = true,
                "NO" => {}
                _ => return Err(format!("_HLS_skip={v:?} must be YES or v2")),
            },
            // Other parameters (cache busters) are not ours to judge.
            _ => {}
        }
    }
    if d.part.is_some() && d.msn.is_none() {
        return Err("_HLS_part requires _HLS_msn".into());
    }
    Ok(d)
}

/// Where a rendition stands, for deciding on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// MSN of the oldest segment in the playlist.
    pub first_msn: u64,
    /// MSN of the segment holding the newest part.
    pub last_msn: u64,
    /// Index of the newest part within `last_msn`.
    pub last_part: u32,
    /// Newest complete segment, if any.
    pub complete_msn: Option<u64>,
    /// The playlist has EXT-X-ENDLIST.
    pub ended: bool,
}

/// What to do with a playlist request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer with the current playlist.
    Now,
    /// Hold until the position moves (then decide again).
    Wait,
    /// Refuse with 400 and this message.
    BadRequest(String),
}

/// Decides on `d` at `pos`. `max_parts` bounds a sensible part index; `pos` is
/// `None` while the rendition has no complete segment yet (hold: never serve a
/// playlist without segments).
pub fn decide(d: &Directives, pos: Option<&Position>, max_parts: u32) -> Decision {
    let Some(pos) = pos else {
        return match d.msn {
            // Nothing exists yet; the first segments are 1 and 2.
            Some(m) if m > 2 => Decision::BadRequest(format!("_HLS_msn={m} is too far ahead")),
            _ => Decision::Wait,
        };
    };
    // After the end, directives are ignored [6.2.5.2].
    if pos.ended {
        return Decision::Now;
    }
    let Some(msn) = d.msn else {
        return Decision::Now;
    };
    // More than two segments ahead of the last one is refused [6.2.5.2].
    if msn > pos.last_msn + 2 {
        return Decision::BadRequest(format!(
            "_HLS_msn={msn} is more than two segments ahead of {}",
            pos.last_msn
        ));
    }
    if let Some(part) = d.part
        && part > max_parts
    {
        return Decision::BadRequest(format!("_HLS_part={part} is beyond any segment's parts"));
    }
    // Already slid out of the playlist: answer at once with what we have.
    if msn < pos.first_msn {
        return Decision::Now;
    }
    let ready = match d.part {
        // Waiting for a part. A part index past the end of a finished segment
        // means part 0 of the next, which exists once a later segment does.
        Some(part) => pos.last_msn > msn || (pos.last_msn == msn && pos.last_part >= part),
        // Waiting for a whole segment.
        None => pos.complete_msn.is_some_and(|c| c >= msn),
    };
    if ready { Decision::Now } else { Decision::Wait }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<Directives, String> {
        parse(Some(s))
    }

    #[test]
    fn directives_parse_and_malformed_ones_are_refused() {
        assert_eq!(
            q("_HLS_msn=12&_HLS_part=3&_HLS_skip=YES").unwrap(),
            Directives {
                msn: Some(12),
                part: Some(3),
                skip: true
            }
        );
        assert_eq!(parse(None).unwrap(), Directives::default());
        assert!(q("_HLS_msn=-1").is_err());
        assert!(q("_HLS_msn=abc").is_err());
        assert!(q("_HLS_part=2").is_err(), "part without msn");
        assert!(q("_HLS_skip=MAYBE").is_err());
        assert_eq!(q("cb=123").unwrap(), Directives::default());
    }

    const POS: Position = Position {
        first_msn: 5,
        last_msn: 10,
        last_part: 2,
        complete_msn: Some(9),
        ended: false,
    };

    fn at(msn: u64, part: Option<u32>) -> Decision {
        decide(
            &Directives {
                msn: Some(msn),
                part,
                skip: false,
            },
            Some(&POS),
            20,
        )
    }

    #[test]
    fn blocking_reload_waits_for_the_next_part() {
        assert_eq!(at(10, Some(2)), Decision::Now);
        assert_eq!(at(10, Some(3)), Decision::Wait);
        assert_eq!(at(11, Some(0)), Decision::Wait);
        assert_eq!(at(12, None), Decision::Wait);
    }

    #[test]
    fn waiting_for_a_segment_needs_it_complete() {
        assert_eq!(at(9, None), Decision::Now);
        assert_eq!(at(10, None), Decision::Wait);
    }

    #[test]
    fn a_part_index_past_a_finished_segment_means_the_next_segment() {
        assert_eq!(at(9, Some(7)), Decision::Now, "segment 10 exists");
    }

    #[test]
    fn too_far_ahead_is_a_bad_request_and_old_msns_are_answered_at_once() {
        assert!(matches!(at(13, Some(0)), Decision::BadRequest(_)));
        assert!(matches!(at(10, Some(21)), Decision::BadRequest(_)));
        assert_eq!(at(2, Some(0)), Decision::Now);
    }

    #[test]
    fn directives_are_ignored_after_the_end_and_held_before_the_start() {
        let ended = Position { ended: true, ..POS };
        let d = Directives {
            msn: Some(12),
            part: Some(0),
            skip: false,
        };
        assert_eq!(decide(&d, Some(&ended), 20), Decision::Now);
        assert_eq!(decide(&Directives::default(), None, 20), Decision::Wait);
        assert_eq!(
            decide(&d, None, 20),
            Decision::BadRequest("_HLS_msn=12 is too far ahead".into())
        );
    }
}
