//! `originh264dec`: a GStreamer H.264 decoder on FFmpeg's libavcodec that
//! hands its pictures downstream without copying them.
//!
//! ```text
//! video/x-h264 (avc, au) -> [libavcodec, one thread] -> AVFrame planes
//!     -> GstBuffer: one memory per plane, borrowing the AVFrame + GstVideoMeta (strides)
//! ```
//!
//! `avdec_h264` decodes with the same libavcodec, but GStreamer 1.22's
//! `GstVideoDecoder::finish_frame` makes the output buffer writable while
//! libavcodec still holds it as a reference picture, which copies every
//! decoded picture (3 MB per 1080p frame; 2% of the transcode's CPU in perf).
//! Here the GstBuffer only borrows the frame: its memories keep a reference
//! on the AVFrame, which libavcodec never writes again once it has output
//! it, so the buffer we finish is our only reference and nothing is copied.
//! Pictures carry a `GstVideoMeta` with libavcodec's strides; a downstream
//! that cannot read that meta gets a copy in the default layout instead.
//!
//! One decoding thread: frame threading would add a frame of latency per
//! thread, and the ladder's encoders already use the other cores.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use ffmpeg_sys_next as ff;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer::subclass::prelude::*;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use gstreamer_video::subclass::prelude::*;

/// The factory name the pipeline asks for.
pub const FACTORY: &str = "originh264dec";

/// Consecutive undecodable access units tolerated before the element fails
/// (and the session restarts the pipeline). One bad unit is concealed by
/// libavcodec; a run of them means the stream or the decoder is broken.
pub const MAX_CONSECUTIVE_ERRORS: u32 = 10;

/// Input frames that may wait for their picture. H.264 reorders at most 16
/// pictures; anything older that never came out was lost to a decoding error
/// and is released, so that the base class's frame list stays bounded.
const MAX_PENDING_FRAMES: usize = 32;

/// Registers the element with GStreamer (once per process; later calls are no-ops).
pub fn register() -> Result<(), glib::BoolError> {
    static DONE: LazyLock<Result<(), String>> = LazyLock::new(|| {
        gst::Element::register(None, FACTORY, gst::Rank::NONE, H264Dec::static_type())
            .map_err(|e| e.to_string())
    });
    DONE.clone().map_err(|e| glib::bool_error!("{e}"))
}

glib::wrapper! {
    /// The decoder element.
    pub struct H264Dec(ObjectSubclass<imp::H264Dec>)
        @extends gst_video::VideoDecoder, gst::Element, gst::Object;
}

/// libavcodec's message for an error code.
fn av_error(code: i32) -> String {
    let mut buf = [0 as std::ffi::c_char; 128];
    // SAFETY: the buffer and its length match; av_strerror always terminates it.
    unsafe {
        ff::av_strerror(code, buf.as_mut_ptr(), buf.len());
        std::ffi::CStr::from_ptr(buf.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

/// A decoded picture that libavcodec has handed over: refcounted, and never
/// written again by the decoder.
struct Picture(NonNull<ff::AVFrame>);

// SAFETY: the frame's data is immutable once output, and AVBufferRef
// refcounts are atomic, so it may be read and freed from any thread.
unsafe impl Send for Picture {}
unsafe impl Sync for Picture {}

impl Drop for Picture {
    fn drop(&mut self) {
        let mut ptr = self.0.as_ptr();
        // SAFETY: allocated by av_frame_alloc and freed once, here.
        unsafe { ff::av_frame_free(&mut ptr) }
    }
}

impl Picture {
    fn frame(&self) -> &ff::AVFrame {
        // SAFETY: the pointer is valid for as long as self lives.
        unsafe { self.0.as_ref() }
    }

    /// The picture's size and format in GStreamer's terms, if it is one we
    /// pass on (planar YUV as H.264 decodes it).
    fn layout(&self) -> Option<Layout> {
        use ff::AVPixelFormat::*;
        let f = self.frame();
        let full_range = f.color_range == ff::AVColorRange::AVCOL_RANGE_JPEG
            || f.format == AV_PIX_FMT_YUVJ420P as i32;
        let (format, chroma_rows_shift) = match f.format {
            x if x == AV_PIX_FMT_YUV420P as i32 || x == AV_PIX_FMT_YUVJ420P as i32 => {
                (gst_video::VideoFormat::I420, 1)
            }
            x if x == AV_PIX_FMT_YUV422P as i32 || x == AV_PIX_FMT_YUVJ422P as i32 => {
                (gst_video::VideoFormat::Y42b, 0)
            }
            x if x == AV_PIX_FMT_YUV444P as i32 || x == AV_PIX_FMT_YUVJ444P as i32 => {
                (gst_video::VideoFormat::Y444, 0)
            }
            x if x == AV_PIX_FMT_YUV420P10LE as i32 => (gst_video::VideoFormat::I42010le, 1),
            x if x == AV_PIX_FMT_YUV422P10LE as i32 => (gst_video::VideoFormat::I42210le, 0),
            x if x == AV_PIX_FMT_YUV444P10LE as i32 => (gst_video::VideoFormat::Y44410le, 0),
            _ => return None,
        };
        (f.width > 0 && f.height > 0).then_some(Layout {
            format,
            width: f.width as u32,
            height: f.height as u32,
            chroma_rows_shift,
            full_range,
        })
    }

    /// Bytes of plane `i` from its first row to the end of its last.
    fn plane_len(&self, layout: &Layout, i: usize) -> usize {
        let rows = if i == 0 {
            layout.height
        } else {
            (layout.height + (1 << layout.chroma_rows_shift) - 1) >> layout.chroma_rows_shift
        };
        self.frame().linesize[i] as usize * rows as usize
    }
}

/// One plane of a [`Picture`], as the bytes of a GstMemory.
struct Plane {
    picture: Arc<Picture>,
    index: usize,
    len: usize,
}

impl AsRef<[u8]> for Plane {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: libavcodec allocated at least linesize x rows bytes for this
        // plane, the picture keeps them alive and nobody writes them any more.
        unsafe { std::slice::from_raw_parts(self.picture.frame().data[self.index], self.len) }
    }
}

/// What the output caps are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    format: gst_video::VideoFormat,
    width: u32,
    height: u32,
    /// log2 of the vertical chroma subsampling.
    chroma_rows_shift: u32,
    full_range: bool,
}

/// An open libavcodec H.264 decoder.
struct Codec {
    ctx: NonNull<ff::AVCodecContext>,
    packet: NonNull<ff::AVPacket>,
}

// SAFETY: used by one thread at a time (behind the element's mutex).
unsafe impl Send for Codec {}

impl Drop for Codec {
    fn drop(&mut self) {
        let mut packet = self.packet.as_ptr();
        let mut ctx = self.ctx.as_ptr();
        // SAFETY: both were allocated in Codec::open and are freed once, here;
        // the context owns (and frees) its extradata.
        unsafe {
            ff::av_packet_free(&mut packet);
            ff::avcodec_free_context(&mut ctx);
        }
    }
}

impl Codec {
    /// Opens a decoder for the stream described by `avcc` (an
    /// AVCDecoderConfigurationRecord).
    fn open(avcc: &[u8]) -> Result<Codec, String> {
        let padding = ff::AV_INPUT_BUFFER_PADDING_SIZE as usize;
        // SAFETY: plain libavcodec set-up; every pointer is checked before use,
        // and extradata is av_malloc'ed, zero-padded and handed to the context,
        // which frees it.
        unsafe {
            let codec = ff::avcodec_find_decoder(ff::AVCodecID::AV_CODEC_ID_H264);
            if codec.is_null() {
                return Err("libavcodec has no H.264 decoder".into());
            }
            let ctx = NonNull::new(ff::avcodec_alloc_context3(codec))
                .ok_or("avcodec_alloc_context3 failed")?;
            let packet = match NonNull::new(ff::av_packet_alloc()) {
                Some(p) => p,
                None => {
                    let mut c = ctx.as_ptr();
                    ff::avcodec_free_context(&mut c);
                    return Err("av_packet_alloc failed".into());
                }
            };
            let opened = Codec { ctx, packet };
            let c = &mut *ctx.as_ptr();
            let extradata = ff::av_mallocz(avcc.len() + padding) as *mut u8;
            if extradata.is_null() {
                return Err("out of memory for the avcC".into());
            }
            std::ptr::copy_nonoverlapping(avcc.as_ptr(), extradata, avcc.len());
            c.extradata = extradata;
            c.extradata_size = avcc.len() as i32;
            c.thread_count = 1;
            let r = ff::avcodec_open2(ctx.as_ptr(), codec, std::ptr::null_mut());
            if r < 0 {
                return Err(format!("avcodec_open2: {}", av_error(r)));
            }
            Ok(opened)
        }
    }

    /// Sends one access unit, tagged with `tag` (it comes back as the
    /// picture's pts), or the end of the stream (`None`).
    fn send(&mut self, unit: Option<(&[u8], i64)>) -> Result<(), String> {
        // SAFETY: the packet is ours; av_new_packet allocates size + zeroed
        // padding, which libavcodec's bitstream readers require.
        let r = unsafe {
            match unit {
                Some((data, tag)) => {
                    let p = self.packet.as_ptr();
                    let r = ff::av_new_packet(p, data.len() as i32);
                    if r < 0 {
                        return Err(av_error(r));
                    }
                    std::ptr::copy_nonoverlapping(data.as_ptr(), (*p).data, data.len());
                    (*p).pts = tag;
                    let r = ff::avcodec_send_packet(self.ctx.as_ptr(), p);
                    ff::av_packet_unref(p);
                    r
                }
                None => ff::avcodec_send_packet(self.ctx.as_ptr(), std::ptr::null()),
            }
        };
        // EOF: already drained; nothing more will come out of it anyway.
        if r < 0 && r != ff::AVERROR_EOF {
            return Err(av_error(r));
        }
        Ok(())
    }

    /// The next decoded picture, if one is ready.
    fn receive(&mut self) -> Result<Option<Picture>, String> {
        // SAFETY: a fresh frame, owned by the Picture on success and freed otherwise.
        unsafe {
            let frame = NonNull::new(ff::av_frame_alloc()).ok_or("av_frame_alloc failed")?;
            let picture = Picture(frame);
            let r = ff::avcodec_receive_frame(self.ctx.as_ptr(), frame.as_ptr());
            if r == ff::AVERROR(libc::EAGAIN) || r == ff::AVERROR_EOF {
                Ok(None)
            } else if r < 0 {
                Err(av_error(r))
            } else {
                Ok(Some(picture))
            }
        }
    }

    /// Forgets buffered input and pictures, ready for new input.
    fn reset(&mut self) {
        // SAFETY: the context is open.
        unsafe { ff::avcodec_flush_buffers(self.ctx.as_ptr()) }
    }
}

mod imp {
    use super::*;

    type InputState = gst_video::VideoCodecState<'static, gst_video::video_codec_state::Readable>;

    #[derive(Default)]
    struct State {
        codec: Option<Codec>,
        /// The input caps' state, the reference for the output state.
        input: Option<InputState>,
        layout: Option<Layout>,
        consecutive_errors: u32,
    }

    #[derive(Default)]
    pub struct H264Dec {
        state: Mutex<State>,
        /// Whether downstream reads GstVideoMeta (set during allocation,
        /// which may happen while `state` is locked, hence not inside it).
        zero_copy: AtomicBool,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for H264Dec {
        const NAME: &'static str = "OriginH264Dec";
        type Type = super::H264Dec;
        type ParentType = gst_video::VideoDecoder;
    }

    impl ObjectImpl for H264Dec {}
    impl GstObjectImpl for H264Dec {}

    impl ElementImpl for H264Dec {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
                gst::subclass::ElementMetadata::new(
                    "libavcodec H.264 decoder (zero-copy)",
                    "Codec/Decoder/Video",
                    "Decodes H.264 with FFmpeg's libavcodec without copying pictures",
                    "origin",
                )
            });
            Some(&*META)
        }

        fn pad_templates() -> &'static [gst::PadTemplate] {
            static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
                let sink = gst::Caps::builder("video/x-h264")
                    .field("stream-format", "avc")
                    .field("alignment", "au")
                    .build();
                let src = gst_video::VideoCapsBuilder::new()
                    .format_list([
                        gst_video::VideoFormat::I420,
                        gst_video::VideoFormat::Y42b,
                        gst_video::VideoFormat::Y444,
                        gst_video::VideoFormat::I42010le,
                        gst_video::VideoFormat::I42210le,
                        gst_video::VideoFormat::Y44410le,
                    ])
                    .build();
                [
                    ("sink", gst::PadDirection::Sink, sink),
                    ("src", gst::PadDirection::Src, src),
                ]
                .into_iter()
                .map(|(name, dir, caps)| {
                    gst::PadTemplate::new(name, dir, gst::PadPresence::Always, &caps)
                        .expect("valid pad template")
                })
                .collect()
            });
            TEMPLATES.as_ref()
        }
    }

    impl VideoDecoderImpl for H264Dec {
        fn start(&self) -> Result<(), gst::ErrorMessage> {
            // Input is whole access units (stream-format=avc, alignment=au).
            self.obj().set_packetized(true);
            *self.lock() = State::default();
            Ok(())
        }

        fn stop(&self) -> Result<(), gst::ErrorMessage> {
            *self.lock() = State::default();
            Ok(())
        }

        fn set_format(&self, input: &InputState) -> Result<(), gst::LoggableError> {
            let avcc = input
                .codec_data()
                .and_then(|b| b.map_readable().ok().map(|m| m.to_vec()))
                .ok_or_else(|| gst::loggable_error!(gst::CAT_RUST, "caps carry no codec_data"))?;
            let mut st = self.lock();
            // A new sequence header: first let out what the old decoder still holds.
            if st.codec.is_some() {
                let _ = self.drain_codec(&mut st);
            }
            st.codec = None;
            st.codec =
                Some(Codec::open(&avcc).map_err(|e| gst::loggable_error!(gst::CAT_RUST, "{e}"))?);
            st.input = Some(input.clone());
            // Renegotiate on the next picture: the input's frame rate may have changed.
            st.layout = None;
            Ok(())
        }

        fn handle_frame(
            &self,
            frame: gst_video::VideoCodecFrame,
        ) -> Result<gst::FlowSuccess, gst::FlowError> {
            let tag = i64::from(frame.system_frame_number());
            let input = frame.input_buffer_owned().ok_or(gst::FlowError::Error)?;
            // The base class keeps the frame; its picture finds it by number.
            drop(frame);
            let map = input.map_readable().map_err(|_| gst::FlowError::Error)?;
            let mut st = self.lock();
            let sent = match st.codec.as_mut() {
                Some(codec) => codec.send(Some((map.as_slice(), tag))),
                None => return Err(gst::FlowError::NotNegotiated),
            };
            drop(map);
            if let Err(e) = sent {
                self.decode_error(&mut st, &e)?;
            }
            self.output_pictures(&mut st)?;
            self.release_lost_frames();
            Ok(gst::FlowSuccess::Ok)
        }

        fn finish(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
            let mut st = self.lock();
            self.drain_codec(&mut st)
        }

        fn drain(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
            let mut st = self.lock();
            self.drain_codec(&mut st)
        }

        fn flush(&self) -> bool {
            if let Some(codec) = self.lock().codec.as_mut() {
                codec.reset();
            }
            true
        }

        fn decide_allocation(
            &self,
            query: &mut gst::query::Allocation,
        ) -> Result<(), gst::LoggableError> {
            let meta = query
                .find_allocation_meta::<gst_video::VideoMeta>()
                .is_some();
            self.zero_copy.store(meta, Ordering::Relaxed);
            self.parent_decide_allocation(query)
        }
    }

    impl H264Dec {
        fn lock(&self) -> std::sync::MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(|p| p.into_inner())
        }

        /// Counts a failed access unit; too many in a row fail the element.
        fn decode_error(&self, st: &mut State, what: &str) -> Result<(), gst::FlowError> {
            st.consecutive_errors += 1;
            gst::warning!(gst::CAT_RUST, imp = self, "undecodable access unit: {what}");
            if st.consecutive_errors > MAX_CONSECUTIVE_ERRORS {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Decode,
                    (
                        "{} access units in a row failed to decode",
                        st.consecutive_errors
                    ),
                    ["last: {what}"]
                );
                return Err(gst::FlowError::Error);
            }
            Ok(())
        }

        /// Ends the stream in the decoder, lets every held picture out, and
        /// makes it ready for more input.
        fn drain_codec(&self, st: &mut State) -> Result<gst::FlowSuccess, gst::FlowError> {
            let Some(codec) = st.codec.as_mut() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            if let Err(e) = codec.send(None) {
                gst::warning!(gst::CAT_RUST, imp = self, "draining: {e}");
            }
            let r = self.output_pictures(st);
            if let Some(codec) = st.codec.as_mut() {
                codec.reset();
            }
            // Frames that never got a picture will not get one now.
            for frame in self.obj().frames() {
                self.obj().release_frame(frame);
            }
            r.map(|_| gst::FlowSuccess::Ok)
        }

        /// Finishes a frame for every picture libavcodec has ready.
        fn output_pictures(&self, st: &mut State) -> Result<(), gst::FlowError> {
            let obj = self.obj();
            loop {
                let Some(codec) = st.codec.as_mut() else {
                    return Ok(());
                };
                let picture = match codec.receive() {
                    Ok(Some(p)) => p,
                    Ok(None) => return Ok(()),
                    Err(e) => {
                        self.decode_error(st, &e)?;
                        continue;
                    }
                };
                st.consecutive_errors = 0;
                let tag = picture.frame().pts;
                let Some(mut frame) = i32::try_from(tag).ok().and_then(|n| obj.frame(n)) else {
                    gst::debug!(gst::CAT_RUST, imp = self, "picture for unknown frame {tag}");
                    continue;
                };
                let Some(layout) = picture.layout() else {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        (
                            "unsupported decoded pixel format {}",
                            picture.frame().format
                        )
                    );
                    return Err(gst::FlowError::NotNegotiated);
                };
                if st.layout != Some(layout) {
                    self.negotiate_output(layout, st.input.as_ref())?;
                    st.layout = Some(layout);
                }
                frame.set_output_buffer(self.wrap(picture, &layout)?);
                obj.finish_frame(frame)?;
            }
        }

        fn negotiate_output(
            &self,
            layout: Layout,
            input: Option<&InputState>,
        ) -> Result<(), gst::FlowError> {
            let obj = self.obj();
            let mut state =
                obj.set_output_state(layout.format, layout.width, layout.height, input)?;
            if layout.full_range {
                let info = state.info().clone();
                let mut colorimetry = info.colorimetry();
                colorimetry = gst_video::VideoColorimetry::new(
                    gst_video::VideoColorRange::Range0_255,
                    colorimetry.matrix(),
                    colorimetry.transfer(),
                    colorimetry.primaries(),
                );
                let info = gst_video::VideoInfo::builder_from_info(&info)
                    .colorimetry(&colorimetry)
                    .build()
                    .map_err(|_| gst::FlowError::NotNegotiated)?;
                state.set_info(info);
            }
            obj.negotiate(state)
        }

        /// The picture as a GstBuffer: borrowed planes plus their strides, or
        /// a copy in GStreamer's default layout if downstream cannot take that.
        fn wrap(&self, picture: Picture, layout: &Layout) -> Result<gst::Buffer, gst::FlowError> {
            let planes = 3;
            let picture = Arc::new(picture);
            let mut buffer = gst::Buffer::new();
            let mut offsets = [0usize; 3];
            let mut strides = [0i32; 3];
            {
                let b = buffer.get_mut().expect("a new buffer is writable");
                let mut offset = 0;
                for i in 0..planes {
                    let len = picture.plane_len(layout, i);
                    offsets[i] = offset;
                    strides[i] = picture.frame().linesize[i];
                    offset += len;
                    b.append_memory(gst::Memory::from_slice(Plane {
                        picture: picture.clone(),
                        index: i,
                        len,
                    }));
                }
                gst_video::VideoMeta::add_full(
                    b,
                    gst_video::VideoFrameFlags::empty(),
                    layout.format,
                    layout.width,
                    layout.height,
                    &offsets,
                    &strides,
                )
                .map_err(|_| gst::FlowError::Error)?;
            }
            if self.zero_copy.load(Ordering::Relaxed) {
                return Ok(buffer);
            }
            let info = gst_video::VideoInfo::builder(layout.format, layout.width, layout.height)
                .build()
                .map_err(|_| gst::FlowError::Error)?;
            let src = gst_video::VideoFrame::from_buffer_readable(buffer, &info)
                .map_err(|_| gst::FlowError::Error)?;
            let out = gst::Buffer::with_size(info.size()).map_err(|_| gst::FlowError::Error)?;
            let mut dst = gst_video::VideoFrame::from_buffer_writable(out, &info)
                .map_err(|_| gst::FlowError::Error)?;
            src.copy(&mut dst).map_err(|_| gst::FlowError::Error)?;
            Ok(dst.into_buffer())
        }

        /// Releases input frames so old that their picture can no longer come.
        fn release_lost_frames(&self) {
            let obj = self.obj();
            let frames = obj.frames();
            if frames.len() <= MAX_PENDING_FRAMES {
                return;
            }
            let excess = frames.len() - MAX_PENDING_FRAMES;
            let mut frames = frames;
            frames.sort_by_key(|f| f.system_frame_number());
            for frame in frames.into_iter().take(excess) {
                gst::debug!(
                    gst::CAT_RUST,
                    imp = self,
                    "frame {} never decoded",
                    frame.system_frame_number()
                );
                obj.release_frame(frame);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gstreamer_app as gst_app;

    /// One decoded picture as a test sees it.
    #[derive(Debug, PartialEq)]
    struct Seen {
        pts: Option<gst::ClockTime>,
        /// Every visible byte of every plane, row by row (strides removed).
        pixels: Vec<u8>,
    }

    fn pull_all(sink: &gst_app::AppSink) -> Vec<Seen> {
        let mut out = vec![];
        while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(20)) {
            let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
            let frame =
                gst_video::VideoFrameRef::from_buffer_ref_readable(sample.buffer().unwrap(), &info)
                    .unwrap();
            let mut pixels = vec![];
            for p in 0..info.n_planes() {
                let comp = info.format_info().plane()[p as usize] as u8;
                let (w, h) = (
                    info.comp_width(comp) as usize * info.comp_pstride(comp) as usize,
                    info.comp_height(comp) as usize,
                );
                let stride = frame.plane_stride()[p as usize] as usize;
                let data = frame.plane_data(p).unwrap();
                for y in 0..h {
                    pixels.extend_from_slice(&data[y * stride..y * stride + w]);
                }
            }
            out.push(Seen {
                pts: sample.buffer().unwrap().pts(),
                pixels,
            });
        }
        out
    }

    /// Decodes the same x264 stream (with B-frames, so pictures come out
    /// reordered) with `avdec_h264` and with ours, each followed by `after`,
    /// and returns both, plus how many memories our decoder's buffers had.
    fn decode_both(size: (u32, u32), after: &str) -> (Vec<Seen>, Vec<Seen>, Vec<u32>) {
        crate::pipeline::init().unwrap();
        let desc = format!(
            "videotestsrc num-buffers=40 pattern=ball \
             foreground-color=0xffe0a020 background-color=0xff2040c0 ! \
             video/x-raw,format=I420,width={},height={},framerate=30/1 ! \
             x264enc bframes=2 key-int-max=15 speed-preset=ultrafast ! \
             video/x-h264,stream-format=avc,alignment=au,profile=high ! tee name=t \
             t. ! queue ! avdec_h264 max-threads=1 ! {after} ! appsink name=theirs sync=false \
             t. ! queue ! {FACTORY} name=ours_dec ! {after} ! appsink name=ours sync=false",
            size.0, size.1
        );
        let pipeline = gst::parse::launch(&desc)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let memories = Arc::new(Mutex::new(vec![]));
        let m = memories.clone();
        pipeline
            .by_name("ours_dec")
            .unwrap()
            .static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(b) = info.buffer() {
                    m.lock().unwrap().push(b.n_memory() as u32);
                }
                gst::PadProbeReturn::Ok
            });
        let sink = |name| {
            pipeline
                .by_name(name)
                .unwrap()
                .downcast::<gst_app::AppSink>()
                .unwrap()
        };
        let (theirs, ours) = (sink("theirs"), sink("ours"));
        pipeline.set_state(gst::State::Playing).unwrap();
        // Pull both concurrently: the tee feeds them in lockstep.
        let t = std::thread::spawn(move || pull_all(&theirs));
        let o = pull_all(&ours);
        let t = t.join().unwrap();
        pipeline.set_state(gst::State::Null).unwrap();
        let memories = memories.lock().unwrap().clone();
        (t, o, memories)
    }

    #[test]
    fn pictures_are_identical_to_avdec_h264_and_borrowed_when_downstream_reads_strides() {
        // 1080 is coded as 1088 and cropped; the scaler reads GstVideoMeta.
        let (theirs, ours, memories) = decode_both(
            (1920, 1080),
            "originswscale ! video/x-raw,width=640,height=360",
        );
        assert_eq!(theirs.len(), 40);
        assert_eq!(ours, theirs);
        assert!(
            memories.iter().all(|&n| n == 3),
            "one borrowed memory per plane: {memories:?}"
        );
    }

    #[test]
    fn a_downstream_without_stride_support_gets_identical_copies() {
        // 854x480: odd chroma width. appsink does not read GstVideoMeta.
        let (theirs, ours, memories) = decode_both((854, 480), "identity");
        assert_eq!(theirs.len(), 40);
        assert_eq!(ours, theirs);
        assert!(memories.iter().all(|&n| n == 1), "{memories:?}");
    }

    #[test]
    fn a_run_of_garbage_fails_the_element_with_a_decode_error() {
        crate::pipeline::init().unwrap();
        // A valid avcC for 64x64 baseline, then access units of garbage.
        let avcc = [
            0x01, 0x42, 0xc0, 0x0a, 0xff, 0xe1, 0x00, 0x0b, 0x67, 0x42, 0xc0, 0x0a, 0xda, 0x11,
            0x1a, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x01, 0x00, 0x04, 0x68, 0xce, 0x3c, 0x80,
        ];
        let caps = gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .field("alignment", "au")
            .field("codec_data", gst::Buffer::from_slice(avcc))
            .build();
        let pipeline = gst::Pipeline::new();
        let src = gst_app::AppSrc::builder()
            .caps(&caps)
            .format(gst::Format::Time)
            .build();
        let dec = gst::ElementFactory::make(FACTORY).build().unwrap();
        let sink = gst::ElementFactory::make("fakesink").build().unwrap();
        pipeline.add_many([src.upcast_ref(), &dec, &sink]).unwrap();
        gst::Element::link_many([src.upcast_ref(), &dec, &sink]).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let mut pushed = 0;
        for i in 0..(MAX_CONSECUTIVE_ERRORS as u64 + 5) {
            // A 4-byte length that overruns the unit: never a valid NAL.
            let mut buf = gst::Buffer::from_slice([0x7f, 0xff, 0xff, 0xff, 0x65, 0x88, 0x80, 0x40]);
            buf.get_mut()
                .unwrap()
                .set_pts(gst::ClockTime::from_mseconds(i * 33));
            if src.push_buffer(buf).is_err() {
                break;
            }
            pushed += 1;
        }
        let msg = pipeline
            .bus()
            .unwrap()
            .timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::Error])
            .expect("a bus error");
        pipeline.set_state(gst::State::Null).unwrap();
        let gst::MessageView::Error(err) = msg.view() else {
            unreachable!()
        };
        assert!(
            err.error()
                .to_string()
                .contains("in a row failed to decode"),
            "{err:?}"
        );
        assert!(pushed > MAX_CONSECUTIVE_ERRORS, "tolerated {pushed} units");
    }
}
