//! Chat rooms over WebSocket, and viewer counts.
//!
//! A viewer is an open watch page: the page holds the room's WebSocket while
//! it is open, and sends a random session id, so the count is the number of
//! distinct sessions connected. It is exact behind any CDN (the socket comes
//! to the origin, HLS requests do not), and a closed tab leaves at once.
//! Everything a join, a leave or a message costs is O(1) or once per room per
//! tick, never once per member per event: 10,000 viewers in one room are
//! what it is built for.
//!
//! Layout:
//! - [`config`]: room size, intervals, rates, with their defaults.
//! - [`rooms`]: members, counts, history, and each room's batching task;
//!   [`feed`]: what reaches them from other origins;
//!   [`meters`]: its token bucket and sliding minimum (pure).
//! - [`connection`]: one client: join, frames out, messages in, close codes;
//!   [`frames`]: the JSON frames a page receives.
//! - [`terms`]: blocked terms; [`cached`]: what a room reads from the store
//!   and keeps for a while (its terms, its moderation state).

pub mod cached;
pub mod config;
pub mod connection;
pub mod feed;
pub mod frames;
pub mod meters;
pub mod rooms;
pub mod terms;
