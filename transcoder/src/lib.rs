//! GStreamer transcoder (see issue 3); filled in by the next commit.
