//! Errors of the transcoder crate.

/// Why a transcode could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// GStreamer could not be initialised (missing libraries).
    #[error("gstreamer init: {0}")]
    Init(String),
    /// A GStreamer element is not installed; the message names the Debian package.
    #[error("gstreamer element {element} is missing (install {package})")]
    MissingElement {
        /// The factory name.
        element: &'static str,
        /// The Debian package that ships it.
        package: &'static str,
    },
    /// Building or linking the pipeline failed.
    #[error("building pipeline: {0}")]
    Build(String),
    /// The pipeline refused a state change.
    #[error("state change: {0}")]
    StateChange(String),
    /// An element posted an error on the bus.
    #[error("element {element}: {message} ({debug})")]
    Bus {
        /// Name of the element that posted the error.
        element: String,
        /// The error message.
        message: String,
        /// GStreamer's debug text.
        debug: String,
    },
    /// The pipeline kept failing; the publish is given up.
    #[error("pipeline failed {0} times; giving up")]
    TooManyRestarts(u32),
    /// The configuration is invalid.
    #[error("invalid transcoder config: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The publish ended before sending a video sequence header.
    #[error("stream ended before its first video sequence header")]
    NoVideo,
}
