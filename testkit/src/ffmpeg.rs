//! The test source: ffmpeg's `testsrc2` (30 fps unless told) with a 440 Hz sine,
//! encoded with x264 (ultrafast) and AAC into FLV, as a publisher would send it.

use std::path::Path;
use std::process::Stdio;

/// What ffmpeg encodes; build it, then [`TestSource::publish`] or
/// [`TestSource::write_flv`].
#[derive(Debug, Clone)]
pub struct TestSource {
    size: String,
    rate: String,
    seconds: f32,
    realtime: bool,
    gop: Option<u32>,
    bframes: Option<u32>,
    extra: Vec<String>,
}

impl TestSource {
    /// `seconds` of `size` (e.g. `"1280x720"`), as fast as ffmpeg can.
    pub fn new(size: &str, seconds: f32) -> TestSource {
        TestSource {
            size: size.to_owned(),
            rate: "30".to_owned(),
            seconds,
            realtime: false,
            gop: None,
            bframes: None,
            extra: Vec::new(),
        }
    }

    /// Frames per second, as ffmpeg reads it (`"30000/1001"` for 29.97).
    pub fn rate(mut self, rate: &str) -> Self {
        self.rate = rate.to_owned();
        self
    }

    /// At the speed of a live source (`-re`).
    pub fn realtime(mut self) -> Self {
        self.realtime = true;
        self
    }

    /// A keyframe every `frames` frames exactly (no scene cuts).
    pub fn gop(mut self, frames: u32) -> Self {
        self.gop = Some(frames);
        self
    }

    /// Up to `n` consecutive B-frames (x264 ultrafast uses none).
    pub fn bframes(mut self, n: u32) -> Self {
        self.bframes = Some(n);
        self
    }

    /// More encoder arguments, after the video codec's.
    pub fn extra(mut self, args: &[&str]) -> Self {
        self.extra.extend(args.iter().map(|a| a.to_string()));
        self
    }

    fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = ["-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
            .map(String::from)
            .into();
        if self.realtime {
            a.push("-re".into());
        }
        a.extend([
            "-f".into(),
            "lavfi".into(),
            "-i".into(),
            format!("testsrc2=size={}:rate={}", self.size, self.rate),
            "-f".into(),
            "lavfi".into(),
            "-i".into(),
            "sine=frequency=440:sample_rate=48000".into(),
            "-t".into(),
            self.seconds.to_string(),
        ]);
        a.extend(
            [
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ]
            .map(String::from),
        );
        if let Some(g) = self.gop {
            a.extend([
                "-g".into(),
                g.to_string(),
                "-keyint_min".into(),
                g.to_string(),
                "-sc_threshold".into(),
                "0".into(),
            ]);
        }
        if let Some(b) = self.bframes {
            a.extend(["-bf".into(), b.to_string()]);
        }
        a.extend(self.extra.iter().cloned());
        a.extend(["-c:a", "aac", "-b:a", "96k", "-f", "flv"].map(String::from));
        a
    }

    /// ffmpeg publishing to `url` (`rtmp://…`); killed when dropped.
    pub fn publish(&self, url: &str) -> tokio::process::Child {
        tokio::process::Command::new("ffmpeg")
            .args(self.args())
            .arg(url)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("ffmpeg must be installed (scripts/deps.sh installs it)")
    }

    /// Writes the source to an FLV file at `path` and waits for ffmpeg.
    pub fn write_flv(&self, path: &Path) {
        let status = std::process::Command::new("ffmpeg")
            .args(self.args())
            .arg(path)
            .stdin(Stdio::null())
            .status()
            .expect("ffmpeg must be installed (scripts/deps.sh installs it)");
        assert!(
            status.success(),
            "ffmpeg could not write {}",
            path.display()
        );
    }
}
