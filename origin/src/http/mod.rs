//! HTTP: the server, its limits and the router.
//!
//! Layout:
//! - [`config`]: limits and timeouts, with their defaults.
//! - [`server`]: connections under a cap, timeouts, graceful stop.
//! - [`socket`]: activity tracking and the lingering close.
//! - [`routes`]: which component answers a path; CORS and HEAD.

pub mod config;
pub mod routes;
pub mod server;
pub mod socket;

pub use config::HttpConfig;
pub use routes::App;
pub use server::{ConnectionSlot, run};
