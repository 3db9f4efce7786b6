//! Chat moderation over the API, for the broadcast's owner (its owner
//! token) and the moderators it appoints (their moderator tokens):
//!
//! - `POST …/moderation` takes an action: `delete`, `timeout` (minutes) or
//!   `ban` a message's sender, `lift` a time-out or ban, `slow_mode`
//!   (seconds; 0 turns it off). Messages are named by id; senders'
//!   sessions and addresses stay on the server.
//! - `GET …/moderation`: slow mode, the time-outs and bans in force, and
//!   the actions taken (who, what, when).
//! - `POST/GET …/moderators`, `DELETE …/moderators/{id}`: the owner
//!   appoints (a `mod_` token shown once, with a watch link that signs the
//!   page in), lists and dismisses moderators.
//!
//! Without a bearer token: 401; with another token: 403.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use tracing::info;

use super::request::{bearer, json_body};
use super::state::Api;
use crate::chat::connection::nickname;
use crate::error::HttpError;
use crate::response::{json_of, no_content};
use crate::store::keys::{is_owner, random_hex};
use crate::store::moderation::{Action, State, What};
use crate::store::record::{ChatMessage, now_rfc3339, rfc3339, sha256_hex};

/// The longest time-out, in minutes (a week).
pub const MAX_TIMEOUT_MINUTES: u32 = 7 * 24 * 60;
/// The slowest slow mode, in seconds.
pub const MAX_SLOW_MODE_SECS: u32 = 3600;
/// Actions a `GET …/moderation` lists, newest last.
pub const LISTED_ACTIONS: usize = 200;
/// Moderators in office per broadcast.
pub const MAX_MODERATORS: usize = 50;

type Reply = Result<Response<Full<Bytes>>, HttpError>;

/// What a moderator or the owner asks for.
#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum Ask {
    Delete { message: u64 },
    Timeout { message: u64, minutes: u32 },
    Ban { message: u64 },
    Lift { target: u64 },
    SlowMode { seconds: u32 },
}

/// Everything under `/api/broadcasts/{id}/`; `pieces` start at
/// `moderation` or `moderators`.
pub async fn handle(api: &Api, req: Request<Incoming>, id: &str, pieces: &[&str]) -> Reply {
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    match (req.method().clone(), pieces) {
        (Method::POST, ["moderation"]) => act(api, req, id).await,
        (_, ["moderation"]) if get => state(api, &req, id).await,
        (Method::POST, ["moderators"]) => appoint(api, req, id).await,
        (_, ["moderators"]) if get => moderators(api, &req, id).await,
        (Method::DELETE, ["moderators", m]) => dismiss(api, &req, id, m).await,
        (_, ["moderation"] | ["moderators"] | ["moderators", _]) => {
            Err(HttpError::MethodNotAllowed)
        }
        _ => Err(HttpError::NotFound),
    }
}

/// Who is asking: `owner`, or the name of a moderator in office (404 for
/// no broadcast, 401 without a token, 403 with another), and the state.
async fn moderator<B>(api: &Api, req: &Request<B>, id: &str) -> Result<(String, State), HttpError> {
    let r = api.store.get(id).await?;
    let token = bearer(req)?;
    let state = api.chat.moderation_now(id).await?;
    if is_owner(&r, token) {
        return Ok(("owner".into(), state));
    }
    match state.moderator(&sha256_hex(token)) {
        Some(m) => Ok((m.name.clone(), state)),
        None => Err(HttpError::Forbidden(
            "neither the owner nor a moderator of this broadcast".into(),
        )),
    }
}

/// The message an action targets (404 when it is not, or no longer, kept).
async fn message(api: &Api, id: &str, message: u64) -> Result<ChatMessage, HttpError> {
    api.chat
        .moderation
        .chat_message(id, message)
        .await?
        .ok_or(HttpError::NotFound)
}

/// `POST /api/broadcasts/{id}/moderation`: 201 with the action as kept.
async fn act(api: &Api, req: Request<Incoming>, id: &str) -> Reply {
    let (by, state) = moderator(api, &req, id).await?;
    let ask: Ask = json_body(req).await?;
    let what = match ask {
        Ask::Delete { message: m } => {
            let msg = message(api, id, m).await?;
            What::Delete {
                message: m,
                user: msg.user,
            }
        }
        Ask::Timeout {
            message: m,
            minutes,
        } => {
            if !(1..=MAX_TIMEOUT_MINUTES).contains(&minutes) {
                return Err(HttpError::BadRequest(format!(
                    "minutes must be 1..={MAX_TIMEOUT_MINUTES}"
                )));
            }
            let (user, author) = sender(api, id, m).await?;
            let until = std::time::SystemTime::now()
                + std::time::Duration::from_secs(u64::from(minutes) * 60);
            What::Timeout {
                message: m,
                user,
                minutes,
                until: rfc3339(until),
                author: Some(author),
            }
        }
        Ask::Ban { message: m } => {
            let (user, author) = sender(api, id, m).await?;
            What::Ban {
                message: m,
                user,
                author: Some(author),
            }
        }
        Ask::Lift { target } => {
            if !state.restrictions.iter().any(|r| r.action == target) {
                return Err(HttpError::NotFound);
            }
            What::Lift { target }
        }
        Ask::SlowMode { seconds } => {
            if seconds > MAX_SLOW_MODE_SECS {
                return Err(HttpError::BadRequest(format!(
                    "seconds must be 0..={MAX_SLOW_MODE_SECS}"
                )));
            }
            What::SlowMode { seconds }
        }
    };
    let action = record(api, id, by, what).await?;
    Ok(json_of(StatusCode::CREATED, &action.public()))
}

/// The sender of message `m`, for a time-out or a ban: never the streamer.
async fn sender(
    api: &Api,
    id: &str,
    m: u64,
) -> Result<(String, crate::store::record::Author), HttpError> {
    let msg = message(api, id, m).await?;
    if msg.streamer {
        return Err(HttpError::BadRequest(
            "the streamer cannot be timed out or banned".into(),
        ));
    }
    let author = msg.author.ok_or_else(|| {
        HttpError::Conflict("this message's sender is not known (sent before moderation)".into())
    })?;
    Ok((msg.user, author))
}

/// Keeps an action, logs it, and applies it to this origin's room (a
/// shared database's feed brings it to every origin's).
async fn record(api: &Api, id: &str, by: String, what: What) -> Result<Action, HttpError> {
    let action = Action {
        id: 0,
        at: String::new(),
        by,
        what,
    };
    let action = api.chat.moderation.act(id, action).await?;
    let shown = serde_json::to_string(&action.public()).unwrap_or_default();
    info!(broadcast = %id, action = %shown, "chat moderation");
    api.chat.announce(id, &action);
    Ok(action)
}

/// `GET /api/broadcasts/{id}/moderation`.
async fn state<B>(api: &Api, req: &Request<B>, id: &str) -> Reply {
    let (_, state) = moderator(api, req, id).await?;
    let actions = api.chat.moderation.actions(id).await?;
    let now = now_rfc3339();
    let in_force: Vec<u64> = state
        .restrictions
        .iter()
        .filter(|r| r.until.as_deref().is_none_or(|u| u > now.as_str()))
        .map(|r| r.action)
        .collect();
    let listed: Vec<Action> = actions
        .iter()
        .skip(actions.len().saturating_sub(LISTED_ACTIONS))
        .map(Action::public)
        .collect();
    Ok(json_of(
        StatusCode::OK,
        &serde_json::json!({
            "slow_mode_secs": state.slow_mode_secs,
            "in_force": in_force,
            "actions": listed,
        }),
    ))
}

/// The owner token, for managing moderators (401, 403 otherwise).
async fn owner<B>(api: &Api, req: &Request<B>, id: &str) -> Result<State, HttpError> {
    api.require_owner(req, id).await?;
    Ok(api.chat.moderation_now(id).await?)
}

/// `POST /api/broadcasts/{id}/moderators {"name"}`: 201 with the token, once.
async fn appoint(api: &Api, req: Request<Incoming>, id: &str) -> Reply {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct New {
        name: String,
    }
    let state = owner(api, &req, id).await?;
    let new: New = json_body(req).await?;
    let name = nickname(&new.name).map_err(HttpError::BadRequest)?;
    if state.moderators.len() >= MAX_MODERATORS {
        return Err(HttpError::Conflict(format!(
            "at most {MAX_MODERATORS} moderators; dismiss one first"
        )));
    }
    let random = |n| random_hex(n).map_err(|e| HttpError::Internal(e.to_string()));
    let token = format!("mod_{}", random(16)?);
    let moderator = random(4)?;
    let what = What::Appoint {
        moderator: moderator.clone(),
        name: name.clone(),
        token_hash: Some(sha256_hex(&token)),
    };
    let action = record(api, id, "owner".into(), what).await?;
    Ok(json_of(
        StatusCode::CREATED,
        &serde_json::json!({
            "id": moderator,
            "name": name,
            "appointed_at": action.at,
            "token": token,
            "watch_url": format!("/watch/{id}?mod={token}"),
        }),
    ))
}

/// `GET /api/broadcasts/{id}/moderators`: without their tokens.
async fn moderators<B>(api: &Api, req: &Request<B>, id: &str) -> Reply {
    let state = owner(api, req, id).await?;
    let list: Vec<serde_json::Value> = state
        .moderators
        .iter()
        .map(|m| serde_json::json!({"id": m.id, "name": m.name, "appointed_at": m.appointed_at}))
        .collect();
    Ok(json_of(
        StatusCode::OK,
        &serde_json::json!({ "moderators": list }),
    ))
}

/// `DELETE /api/broadcasts/{id}/moderators/{moderator}`: its token stops
/// working at once, and a chat connection it opened is held like anyone's
/// from its next message.
async fn dismiss<B>(api: &Api, req: &Request<B>, id: &str, m: &str) -> Reply {
    let state = owner(api, req, id).await?;
    if !state.moderators.iter().any(|x| x.id == m) {
        return Err(HttpError::NotFound);
    }
    let what = What::Dismiss {
        moderator: m.to_owned(),
    };
    record(api, id, "owner".into(), what).await?;
    Ok(no_content())
}
