//! A broadcast's replay through the API: its owner deletes it, and its
//! thumbnail outlives the broadcast.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use tracing::info;

use super::state::{Api, host};
use crate::error::HttpError;
use crate::response::{body, json_of};
use crate::store::record::Status;

type Reply = Result<Response<Full<Bytes>>, HttpError>;

/// `DELETE /api/broadcasts/{id}/replay`: the owner deletes an ended
/// broadcast's replay. Its files go at once; its playlists answer 410.
pub async fn delete<B>(api: &Api, req: &Request<B>, id: &str) -> Reply {
    let (r, _) = api.require_owner(req, id).await?;
    let Some(recorder) = &api.recorder else {
        return Err(HttpError::NotFound);
    };
    if r.status != Status::Ended {
        return Err(HttpError::Conflict(format!(
            "broadcast {id} is not over: end it first (PATCH {{\"status\": \"ended\"}})"
        )));
    }
    match recorder.delete(id).await {
        Ok(true) => {
            api.broadcasts.forget_window(id);
            Ok(json_of(StatusCode::OK, &api.view(&r, &host(req))))
        }
        Ok(false) => Err(HttpError::NotFound),
        Err(err) => Err(HttpError::Internal(format!("deleting the replay: {err}"))),
    }
}

/// Deletes whatever `id` recorded (the operator deleted the broadcast).
pub async fn forget(api: &Api, id: &str) -> Result<(), HttpError> {
    if let Some(recorder) = &api.recorder
        && recorder
            .delete(id)
            .await
            .map_err(|e| HttpError::Internal(e.to_string()))?
    {
        info!(broadcast = %id, "replay deleted with its broadcast");
    }
    Ok(())
}

/// `GET /api/broadcasts/{id}/thumbnail.jpg`: the latest while live, then
/// the replay's.
pub async fn thumbnail(api: &Api, id: &str) -> Reply {
    if let Some(jpeg) = api.broadcasts.thumbnail(id) {
        return Ok(body("image/jpeg", "public, max-age=5", jpeg));
    }
    let recorder = api.recorder.as_ref().ok_or(HttpError::NotFound)?;
    let jpeg = recorder.thumbnail(id).await.ok_or(HttpError::NotFound)?;
    Ok(body("image/jpeg", "public, max-age=300", jpeg))
}
