//! Recording: every broadcast's ladder kept on disk as its segments
//! complete, and played back as a replay at the same URLs once it ends.
//!
//! Layout:
//! - [`config`]: `[recording]`, its defaults and limits.
//! - [`recorder`]: what packaging and the API call; it only queues.
//! - [`catalog`]: what is known of every recording, and rendered replays.
//! - [`disk`]: the directory layout, reading a recording back.
//! - [`replay`]: index lines and VOD playlists (pure).
//! - [`retention`]: which replays the age limit and the quota delete (pure).
//! - [`writer`]: the one thread that touches the disk.
//! - [`serve`]: replay playlists and recorded media over HTTP.
//! - [`across`]: with several origins, one replay of what each recorded.
//! - [`rows`]: recordings as the database's rows, and back (pure).
//!
//! Packaging hands each complete segment over through
//! [`crate::hls::sinks::SegmentSink`], which only queues: a full queue
//! drops the segment (counted and logged), so the live path never waits.

pub mod across;
pub mod catalog;
pub mod config;
pub mod disk;
mod recorder;
pub mod replay;
pub mod retention;
pub mod rows;
pub mod serve;
mod writer;

pub use self::catalog::ReplayInfo;
pub use self::config::RecordingConfig;
pub use self::recorder::Recorder;
pub use self::serve::Recorded;
