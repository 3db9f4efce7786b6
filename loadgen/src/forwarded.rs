//! What forwarding adds: the same requests asked, at the same moment, of
//! the origin holding a broadcast's window and of another origin (which
//! forwards them to it). Per sample: a blocking reload for the next part
//! from both (the difference between the two answers is what forwarding
//! added to a held request), then the newest part from both, one after the
//! other.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::llhls::{Connection, read_media, resolve, split_url};

/// What to compare.
#[derive(Debug, Clone)]
pub struct ForwardedConfig {
    /// A media playlist on the origin holding the window.
    pub direct: String,
    /// The same playlist on another origin.
    pub forwarded: String,
    /// How many samples.
    pub samples: usize,
}

/// Milliseconds, as percentiles over the samples.
#[derive(Debug, Default, Serialize)]
pub struct ForwardedReport {
    /// Samples taken.
    pub samples: usize,
    /// Requests that failed (either side).
    pub errors: usize,
    /// Forwarded minus direct answer time of the same held playlist request.
    pub held_extra_p50_ms: f64,
    /// See `held_extra_p50_ms`.
    pub held_extra_p99_ms: f64,
    /// Direct answer time of a part that exists.
    pub part_direct_p50_ms: f64,
    /// See `part_direct_p50_ms`.
    pub part_direct_p99_ms: f64,
    /// The same part, forwarded.
    pub part_forwarded_p50_ms: f64,
    /// See `part_forwarded_p50_ms`.
    pub part_forwarded_p99_ms: f64,
}

/// `p` (0 to 1) of `v`, which it sorts.
fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    crate::chat::percentile(v, p)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Takes the samples and reports.
pub async fn run(cfg: ForwardedConfig) -> Result<ForwardedReport, String> {
    let (a, direct) = split_url(&cfg.direct)?;
    let (b, forwarded) = split_url(&cfg.forwarded)?;
    let (mut ca, mut cb) = (Connection::new(a), Connection::new(b));
    let mut report = ForwardedReport::default();
    let (mut held, mut part_a, mut part_b) = (Vec::new(), Vec::new(), Vec::new());
    let mut text = Vec::new();
    while report.samples < cfg.samples {
        text.clear();
        if ca.get(&direct, Some(&mut text)).await.is_err() {
            report.errors += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let Some((msn, index)) = std::str::from_utf8(&text)
            .ok()
            .and_then(read_media)
            .and_then(|v| v.last)
        else {
            report.errors += 1;
            continue;
        };
        let q = format!("?_HLS_msn={msn}&_HLS_part={}", index + 1);
        let (ta, tb) = (format!("{direct}{q}"), format!("{forwarded}{q}"));
        let asked = Instant::now();
        let (ra, rb) = tokio::join!(
            async {
                let r = ca.get(&ta, None).await;
                (r, asked.elapsed())
            },
            async {
                let r = cb.get(&tb, None).await;
                (r, asked.elapsed())
            }
        );
        if ra.0.is_err() || rb.0.is_err() {
            report.errors += 1;
            continue;
        }
        held.push(ms(rb.1) - ms(ra.1));
        // The part that was just listed, from each.
        text.clear();
        let listed = ca.get(&ta, Some(&mut text)).await;
        let uri = listed.ok().and_then(|_| {
            let view = read_media(std::str::from_utf8(&text).ok()?)?;
            Some(view.parts.last()?.uri.to_owned())
        });
        let Some(uri) = uri else {
            report.errors += 1;
            continue;
        };
        let (pa, pb) = (
            resolve(&ca.authority, &direct, &uri)?,
            resolve(&cb.authority, &forwarded, &uri)?,
        );
        let t = Instant::now();
        let ok_a = ca.get(&pa, None).await.is_ok();
        part_a.push(ms(t.elapsed()));
        let t = Instant::now();
        let ok_b = cb.get(&pb, None).await.is_ok();
        part_b.push(ms(t.elapsed()));
        if !(ok_a && ok_b) {
            report.errors += 1;
        }
        report.samples += 1;
    }
    report.held_extra_p50_ms = percentile(&mut held, 0.5);
    report.held_extra_p99_ms = percentile(&mut held, 0.99);
    report.part_direct_p50_ms = percentile(&mut part_a, 0.5);
    report.part_direct_p99_ms = percentile(&mut part_a, 0.99);
    report.part_forwarded_p50_ms = percentile(&mut part_b, 0.5);
    report.part_forwarded_p99_ms = percentile(&mut part_b, 0.99);
    Ok(report)
}
