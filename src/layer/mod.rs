//! The tower middleware that owns the socket path: [`HubLayer`] wraps the application in a
//! [`HubService`], which answers WebSocket upgrades on that path and passes every other request
//! through untouched.

#[cfg(feature = "axum")]
mod axum_serve;
mod future;
mod service;

pub use future::ResponseFuture;
pub use service::{HubLayer, HubService};
