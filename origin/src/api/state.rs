//! What every API route works with ([`Api`]), and the helpers they share:
//! a broadcast as the API shows it, the owner check, the Host header.

use std::sync::Arc;

use hyper::Request;

use super::model::View;
use super::request::bearer;
use crate::access::Access;
use crate::broadcasts::Broadcasts;
use crate::chat::connection::Chat;
use crate::error::HttpError;
use crate::store::Store;
use crate::store::keys::is_owner;
use crate::store::record::Record;
use crate::webhooks::Webhooks;

/// What the API works with.
pub struct Api {
    /// Broadcast records, stream keys and chat history.
    pub store: Arc<dyn Store>,
    /// Chat rooms and viewer counts.
    pub chat: Arc<Chat>,
    /// The lifecycle: ending broadcasts, thumbnails.
    pub broadcasts: Arc<Broadcasts>,
    /// RTMP port, for the `rtmp_url` shown to streamers.
    pub rtmp_port: u16,
    /// WebRTC sessions (WHIP publishers).
    pub webrtc: webrtc::Webrtc,
    /// Recordings and replays, unless `[recording] enabled = false`.
    pub recorder: Option<Arc<crate::recording::Recorder>>,
    /// Who may create broadcasts; the admin token.
    pub access: Arc<Access>,
    /// Where title changes are posted (the lifecycle posts the rest).
    pub webhooks: Arc<Webhooks>,
}

impl Api {
    /// A broadcast as the API shows it (without its secrets).
    pub fn view(&self, r: &Record, host: &str) -> View {
        let hostname = host.rsplit_once(':').map_or(host, |(h, _)| h);
        View {
            id: r.id.clone(),
            title: r.title.clone(),
            description: r.description.clone(),
            status: r.status,
            created_at: r.created_at.clone(),
            started_at: r.started_at.clone(),
            ended_at: r.ended_at.clone(),
            modified_at: r.modified_at.clone(),
            viewer_count: self.chat.rooms.viewers(&r.id),
            peak_viewer_count: r.peak_viewers.max(self.chat.rooms.peak(&r.id)),
            rtmp_url: format!("rtmp://{hostname}:{}/live", self.rtmp_port),
            playback_url: format!("/hls/{}/master.m3u8", r.id),
            thumbnail_url: format!("/api/broadcasts/{}/thumbnail.jpg", r.id),
            unlisted: r.unlisted,
            recorded: r.recorded,
            replay: self.recorder.as_ref().and_then(|rec| rec.info(&r.id)),
            stream_key: None,
            owner_token: None,
            blocked_terms: None,
        }
    }

    /// The broadcast `id` if the request carries its owner token (404, 401
    /// or 403 otherwise), and the token.
    pub async fn require_owner<B>(
        &self,
        req: &Request<B>,
        id: &str,
    ) -> Result<(Record, String), HttpError> {
        let r = self.store.get(id).await?;
        let token = bearer(req)?;
        if !is_owner(&r, token) {
            return Err(HttpError::Forbidden(
                "not the owner of this broadcast".into(),
            ));
        }
        Ok((r, token.to_owned()))
    }
}

/// The Host header, for the URLs a view shows.
pub fn host<B>(req: &Request<B>) -> String {
    req.headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned()
}
