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
const FILES: [(&str, &str, &str); 15] = [
    ("/", "src/index.html", "text/html; charset=utf-8"),
    ("/embed", "src/embed.html", "text/html; charset=utf-8"),
    (
        "/embed/chat",
        "src/embed-chat.html",
        "text/html; charset=utf-8",
    ),
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
        "/assets/embed.js",
        "src/embed.js",
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
/// user text can never become script, and no other site may frame them...
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; media-src 'self' blob:; worker-src 'self' blob:; \
     connect-src 'self' ws: wss:; frame-ancestors 'none'";

/// ...but the embeddable player and chat, which any site may frame.
const EMBED_CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; media-src 'self' blob:; worker-src 'self' blob:; \
     connect-src 'self' ws: wss:; frame-ancestors *";

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
            p if p.strip_prefix("/embed/").is_some_and(valid_name) => "/embed",
            p if p
                .strip_prefix("/embed/")
                .and_then(|rest| rest.strip_suffix("/chat"))
                .is_some_and(valid_name) =>
            {
                "/embed/chat"
            }
            // Only through an id, as above (`/embed/chat` is broadcast `chat`).
            "/embed" => return None,
            p => p,
        };
        let csp = if key.starts_with("/embed") {
            EMBED_CONTENT_SECURITY_POLICY
        } else {
            CONTENT_SECURITY_POLICY
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
                .header("content-security-policy", csp)
                .header("x-content-type-options", "nosniff")
                .body(Full::new(body.clone()))
                .expect("valid response"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csp(pages: &Pages, path: &str) -> Option<String> {
        pages.get(path).map(|r| {
            r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .to_owned()
        })
    }

    #[test]
    fn only_the_embeds_may_be_framed_by_other_sites() {
        let pages = Pages::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../player"));
        for path in ["/embed/abc", "/embed/abc/chat"] {
            let policy = csp(&pages, path).unwrap_or_else(|| panic!("{path} is served"));
            assert!(policy.ends_with("frame-ancestors *"), "{path}: {policy}");
        }
        for path in ["/", "/watch/abc", "/studio", "/assets/embed.js"] {
            let policy = csp(&pages, path).unwrap_or_else(|| panic!("{path} is served"));
            assert!(
                policy.ends_with("frame-ancestors 'none'"),
                "{path}: {policy}"
            );
        }
        for path in [
            "/embed",
            "/embed/a/b",
            "/embed/abc/chat/x",
            "/embed/../studio",
        ] {
            assert!(pages.get(path).is_none(), "{path} is not a page");
        }
    }
}
