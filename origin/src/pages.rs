//! The web pages (directory, watch, studio) and their assets, read once at
//! startup from the player directory: `player/src` and hls.js from
//! `player/node_modules` (installed by npm, never committed). Only the files
//! listed here are served; nothing else under the directory is reachable.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use tracing::error;

use crate::hls::uris::valid_name;

/// URL, path under the player directory, content type.
const FILES: [(&str, &str, &str); 12] = [
    ("/", "src/index.html", "text/html; charset=utf-8"),
    ("/watch", "src/watch.html", "text/html; charset=utf-8"),
    ("/studio", "src/studio.html", "text/html; charset=utf-8"),
    ("/assets/app.css", "src/app.css", "text/css; charset=utf-8"),
    (
        "/assets/common.js",
        "src/common.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "/assets/directory.js",
        "src/directory.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "/assets/live.js",
        "src/live.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "/assets/watch.js",
        "src/watch.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "/assets/studio.js",
        "src/studio.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "/assets/whip.js",
        "src/whip.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "/assets/whep.js",
        "src/whep.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "/assets/vendor/hls.min.js",
        "node_modules/hls.js/dist/hls.min.js",
        "text/javascript; charset=utf-8",
    ),
];

/// Pages load nothing from other hosts (so they work on an offline network),
/// and user text can never become script.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; media-src 'self' blob:; worker-src 'self' blob:; \
     connect-src 'self' ws: wss:; frame-ancestors 'none'";

/// The loaded pages.
#[derive(Default)]
pub struct Pages {
    files: HashMap<&'static str, (&'static str, Bytes)>,
}

impl Pages {
    /// Reads the files; a missing one is logged and answered 404.
    pub fn load(dir: &Path) -> Pages {
        let mut files = HashMap::new();
        for (url, rel, ctype) in FILES {
            match std::fs::read(dir.join(rel)) {
                Ok(data) => {
                    files.insert(url, (ctype, Bytes::from(data)));
                }
                Err(err) => error!(
                    file = %dir.join(rel).display(),
                    %err,
                    "web page asset missing (run scripts/run.sh, which runs npm ci in player/)"
                ),
            }
        }
        Pages { files }
    }

    /// The response for a GET of `path`, if it is a page or asset.
    pub fn get(&self, path: &str) -> Option<Response<Full<Bytes>>> {
        let key = match path {
            "/" | "/index.html" => "/",
            "/studio" | "/studio/" => "/studio",
            p if p.strip_prefix("/watch/").is_some_and(valid_name) => "/watch",
            p => p,
        };
        let (ctype, body) = self.files.get(key)?;
        let cache = if ctype.starts_with("text/html") {
            "no-cache"
        } else {
            "public, max-age=300"
        };
        Some(
            Response::builder()
                .header("content-type", *ctype)
                .header("cache-control", cache)
                .header("content-security-policy", CONTENT_SECURITY_POLICY)
                .header("x-content-type-options", "nosniff")
                .body(Full::new(body.clone()))
                .expect("valid response"),
        )
    }
}
