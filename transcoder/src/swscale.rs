//! `originswscale`: a GStreamer video scaler on FFmpeg's libswscale.
//!
//! GStreamer 1.22's `videoscale` costs about 3.5 times as much CPU as
//! libswscale for the same bilinear 1080p -> 720p -> 480p chain (2.6 against
//! 0.7 CPU-s per 300 frames on the benchmark machine), which alone made our
//! ladder dearer than ffmpeg's. This element is a thin `VideoFilter` that hands
//! the mapped planes straight to `sws_scale` (no copies), for I420 only (what
//! the decoder gives and x264 takes). Bilinear, as in ffmpeg's
//! `scale=...:flags=bilinear`. Equal sizes pass through untouched.

use std::ptr::NonNull;
use std::sync::{LazyLock, Mutex};

use ffmpeg_sys_next as ff;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer::subclass::prelude::*;
use gstreamer_base as gst_base;
use gstreamer_base::subclass::prelude::*;
use gstreamer_video as gst_video;
use gstreamer_video::VideoFrameExt;
use gstreamer_video::subclass::prelude::*;

/// The factory name the pipeline asks for.
pub const FACTORY: &str = "originswscale";

/// Registers the element with GStreamer (once per process; later calls are no-ops).
pub fn register() -> Result<(), glib::BoolError> {
    static DONE: LazyLock<Result<(), String>> = LazyLock::new(|| {
        gst::Element::register(None, FACTORY, gst::Rank::NONE, SwScale::static_type())
            .map_err(|e| e.to_string())
    });
    DONE.clone().map_err(|e| glib::bool_error!("{e}"))
}

glib::wrapper! {
    /// The scaler element.
    pub struct SwScale(ObjectSubclass<imp::SwScale>)
        @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

/// An owned `SwsContext`.
struct Context(NonNull<ff::SwsContext>);

// SAFETY: a context is used by one thread at a time (behind the element's mutex).
unsafe impl Send for Context {}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the pointer came from sws_getContext and is freed once.
        unsafe { ff::sws_freeContext(self.0.as_ptr()) }
    }
}

impl Context {
    fn new(src: (i32, i32), dst: (i32, i32)) -> Option<Context> {
        // SAFETY: plain sizes and formats; null filters and parameters mean defaults.
        let ptr = unsafe {
            ff::sws_getContext(
                src.0,
                src.1,
                ff::AVPixelFormat::AV_PIX_FMT_YUV420P,
                dst.0,
                dst.1,
                ff::AVPixelFormat::AV_PIX_FMT_YUV420P,
                ff::SWS_BILINEAR,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null(),
            )
        };
        NonNull::new(ptr).map(Context)
    }
}

mod imp {
    use super::*;

    #[derive(Default)]
    pub struct SwScale {
        context: Mutex<Option<Context>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SwScale {
        const NAME: &'static str = "OriginSwScale";
        type Type = super::SwScale;
        type ParentType = gst_video::VideoFilter;
    }

    impl ObjectImpl for SwScale {}
    impl GstObjectImpl for SwScale {}

    impl ElementImpl for SwScale {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
                gst::subclass::ElementMetadata::new(
                    "libswscale scaler",
                    "Filter/Converter/Video/Scaler",
                    "Scales I420 video with FFmpeg's libswscale (bilinear)",
                    "origin",
                )
            });
            Some(&*META)
        }

        fn pad_templates() -> &'static [gst::PadTemplate] {
            static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
                let caps = gst_video::VideoCapsBuilder::new()
                    .format(gst_video::VideoFormat::I420)
                    .build();
                [gst::PadDirection::Src, gst::PadDirection::Sink]
                    .into_iter()
                    .map(|dir| {
                        let name = if dir == gst::PadDirection::Src {
                            "src"
                        } else {
                            "sink"
                        };
                        gst::PadTemplate::new(name, dir, gst::PadPresence::Always, &caps)
                            .expect("valid pad template")
                    })
                    .collect()
            });
            TEMPLATES.as_ref()
        }
    }

    impl BaseTransformImpl for SwScale {
        const MODE: gst_base::subclass::BaseTransformMode =
            gst_base::subclass::BaseTransformMode::NeverInPlace;
        const PASSTHROUGH_ON_SAME_CAPS: bool = true;
        const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

        /// Any size on the other side; the same size first, so that equal
        /// caps pass through.
        fn transform_caps(
            &self,
            _direction: gst::PadDirection,
            caps: &gst::Caps,
            filter: Option<&gst::Caps>,
        ) -> Option<gst::Caps> {
            let mut any_size = caps.clone();
            for s in any_size.make_mut().iter_mut() {
                s.remove_fields(["width", "height"]);
            }
            let mut result = caps.clone();
            result.merge(any_size);
            Some(match filter {
                Some(f) => f.intersect_with_mode(&result, gst::CapsIntersectMode::First),
                None => result,
            })
        }
    }

    impl VideoFilterImpl for SwScale {
        fn set_info(
            &self,
            _incaps: &gst::Caps,
            in_info: &gst_video::VideoInfo,
            _outcaps: &gst::Caps,
            out_info: &gst_video::VideoInfo,
        ) -> Result<(), gst::LoggableError> {
            let size = |i: &gst_video::VideoInfo| (i.width() as i32, i.height() as i32);
            let context = if size(in_info) == size(out_info) {
                None
            } else {
                Some(Context::new(size(in_info), size(out_info)).ok_or_else(|| {
                    gst::loggable_error!(gst::CAT_RUST, "sws_getContext refused the sizes")
                })?)
            };
            *self.context.lock().unwrap_or_else(|p| p.into_inner()) = context;
            Ok(())
        }

        fn transform_frame(
            &self,
            inframe: &gst_video::VideoFrameRef<&gst::BufferRef>,
            outframe: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
        ) -> Result<gst::FlowSuccess, gst::FlowError> {
            let guard = self.context.lock().unwrap_or_else(|p| p.into_inner());
            let Some(context) = guard.as_ref() else {
                return Err(gst::FlowError::NotNegotiated);
            };
            let mut src = [std::ptr::null::<u8>(); 4];
            let mut src_stride = [0i32; 4];
            for plane in 0..3 {
                src[plane as usize] = inframe
                    .plane_data(plane)
                    .map_err(|_| gst::FlowError::Error)?
                    .as_ptr();
                src_stride[plane as usize] = inframe.plane_stride()[plane as usize];
            }
            let mut dst = [std::ptr::null_mut::<u8>(); 4];
            let mut dst_stride = [0i32; 4];
            for plane in 0..3 {
                dst_stride[plane as usize] = outframe.plane_stride()[plane as usize];
                dst[plane as usize] = outframe
                    .plane_data_mut(plane)
                    .map_err(|_| gst::FlowError::Error)?
                    .as_mut_ptr();
            }
            // SAFETY: the planes are mapped for the frames' lifetimes, with the
            // strides and heights of the negotiated I420 sizes the context was
            // made for.
            let rows = unsafe {
                ff::sws_scale(
                    context.0.as_ptr(),
                    src.as_ptr(),
                    src_stride.as_ptr(),
                    0,
                    inframe.height() as i32,
                    dst.as_ptr(),
                    dst_stride.as_ptr(),
                )
            };
            if rows != outframe.height() as i32 {
                return Err(gst::FlowError::Error);
            }
            Ok(gst::FlowSuccess::Ok)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gstreamer_app as gst_app;

    /// Scales one frame of 75% SMPTE bars (deterministic, unlike the full
    /// pattern's noise patch; colorimetry pinned, since videotestsrc draws
    /// per negotiated colorimetry) with `scaler`, and returns the luma plane.
    fn scaled_luma(scaler: &str, width: u32, height: u32) -> Vec<u8> {
        crate::pipeline::init().unwrap();
        let desc = format!(
            "videotestsrc num-buffers=1 pattern=smpte75 ! \
             video/x-raw,format=I420,width=1920,height=1080,colorimetry=bt709 ! {scaler} ! \
             video/x-raw,width={width},height={height} ! appsink name=out"
        );
        let pipeline = gst::parse::launch(&desc)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let sink = pipeline
            .by_name("out")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let sample = sink
            .try_pull_sample(gst::ClockTime::from_seconds(10))
            .expect("a scaled frame");
        pipeline.set_state(gst::State::Null).unwrap();
        let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
        assert_eq!((info.width(), info.height()), (width, height));
        let frame =
            gst_video::VideoFrameRef::from_buffer_ref_readable(sample.buffer().unwrap(), &info)
                .unwrap();
        let stride = frame.plane_stride()[0] as usize;
        let data = frame.plane_data(0).unwrap();
        (0..height as usize)
            .flat_map(|y| {
                data[y * stride..y * stride + width as usize]
                    .iter()
                    .copied()
            })
            .collect()
    }

    #[test]
    fn it_scales_like_gstreamers_own_bilinear_scaler() {
        for (w, h) in [(1280, 720), (854, 480)] {
            let ours = scaled_luma(FACTORY, w, h);
            let theirs = scaled_luma("videoscale method=bilinear", w, h);
            let mse = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                .sum::<f64>()
                / ours.len() as f64;
            let psnr = 10.0 * (255.0f64.powi(2) / mse.max(1e-9)).log10();
            eprintln!("{w}x{h}: PSNR {psnr:.1} dB against videoscale");
            assert!(psnr > 40.0, "{w}x{h}: PSNR {psnr:.1} dB against videoscale");
        }
    }

    #[test]
    fn equal_sizes_pass_through() {
        let ours = scaled_luma(FACTORY, 1920, 1080);
        let theirs = scaled_luma("identity", 1920, 1080);
        assert_eq!(ours, theirs);
    }
}
