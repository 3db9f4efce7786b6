//! The broadcast API under `/api`: create, list, search, edit and end
//! broadcasts, show and rotate stream keys, thumbnails, and the chat
//! WebSocket. `openapi.json` in this directory documents it and is served at
//! `/api/openapi.json`.
//!
//! Layout:
//! - [`model`]: request and response types, validation, search and order (pure).
//! - [`request`]: reading requests: bearer tokens, JSON bodies, query strings.
//! - [`state`]: what the routes work with ([`Api`]) and the helpers they share.
//! - [`routes`]: one function per route, and the dispatch.
//! - [`admin`]: the operator API (invites; ending and deleting any broadcast).
//! - [`moderation`]: chat moderation (actions, moderators).
//! - [`replay`]: deleting a replay, and its thumbnail.
//! - [`whip`]: going live over WebRTC (RFC 9725).
//! - [`whep`]: watching over WebRTC.

pub mod admin;
pub mod model;
pub mod moderation;
pub mod replay;
pub mod request;
pub mod routes;
pub mod state;
pub mod whep;
pub mod whip;

pub use routes::handle;
pub use state::Api;
