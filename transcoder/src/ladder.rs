//! Which renditions a source gets, and at what sizes (pure).

use serde::Deserialize;

/// One rung of the configured ladder.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenditionSpec {
    /// Name used in URLs and the quality menu, e.g. `720p`.
    pub name: String,
    /// Output picture height; the width follows the source's aspect ratio.
    pub height: u32,
    /// x264 target bitrate.
    pub bitrate_kbps: u32,
}

/// A picture size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// A rendition chosen for one source: its spec and its exact output size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The rung, renamed after its real height when the source is smaller than every rung.
    pub spec: RenditionSpec,
    /// Output size: even, source aspect ratio, never larger than the source.
    pub size: Size,
}

fn even(x: f64) -> u32 {
    ((x / 2.0).round() as u32 * 2).max(2)
}

/// Plans the ladder for `source`: every rung no taller than the source, largest
/// first. A source smaller than every rung gets one rendition at its own
/// (even-rounded) size with the smallest rung's bitrate: we never upscale.
pub fn plan(source: Size, ladder: &[RenditionSpec]) -> Vec<Planned> {
    let aspect = f64::from(source.width) / f64::from(source.height.max(1));
    let mut out: Vec<Planned> = ladder
        .iter()
        .filter(|r| r.height <= source.height)
        .map(|r| Planned {
            spec: r.clone(),
            size: Size {
                width: even(f64::from(r.height) * aspect),
                height: r.height,
            },
        })
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.size.height));
    if out.is_empty()
        && let Some(smallest) = ladder.iter().min_by_key(|r| r.height)
    {
        let height = even(f64::from(source.height));
        out.push(Planned {
            spec: RenditionSpec {
                name: format!("{height}p"),
                height,
                bitrate_kbps: smallest.bitrate_kbps,
            },
            size: Size {
                width: even(f64::from(source.width)),
                height,
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder() -> Vec<RenditionSpec> {
        vec![
            RenditionSpec {
                name: "720p".into(),
                height: 720,
                bitrate_kbps: 2800,
            },
            RenditionSpec {
                name: "480p".into(),
                height: 480,
                bitrate_kbps: 1200,
            },
        ]
    }

    fn sizes(source: (u32, u32)) -> Vec<(String, u32, u32)> {
        plan(
            Size {
                width: source.0,
                height: source.1,
            },
            &ladder(),
        )
        .into_iter()
        .map(|p| (p.spec.name, p.size.width, p.size.height))
        .collect()
    }

    #[test]
    fn a_1080p_source_gets_720p_and_480p_at_even_sizes() {
        assert_eq!(
            sizes((1920, 1080)),
            vec![("720p".into(), 1280, 720), ("480p".into(), 854, 480)]
        );
    }

    #[test]
    fn a_480p_source_yields_no_720p() {
        assert_eq!(sizes((854, 480)), vec![("480p".into(), 854, 480)]);
    }

    #[test]
    fn a_source_below_every_rung_keeps_its_own_size() {
        assert_eq!(sizes((640, 360)), vec![("360p".into(), 640, 360)]);
        assert_eq!(sizes((321, 241)), vec![("242p".into(), 322, 242)]);
    }

    #[test]
    fn other_aspect_ratios_are_kept() {
        assert_eq!(
            sizes((1440, 1080)),
            vec![("720p".into(), 960, 720), ("480p".into(), 640, 480)]
        );
        assert_eq!(
            sizes((1080, 1920)),
            vec![("720p".into(), 406, 720), ("480p".into(), 270, 480)]
        );
    }
}
