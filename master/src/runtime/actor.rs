//! Who is making the call in progress: the access layers (gRPC's and the
//! HTTP side's) run each call's handler inside [`with_actor`], and the
//! runtime reads it when a change is made, to journal the audit record
//! beside the change (one append, so a change is never durable without its
//! author).

use std::future::Future;

use crate::core::audit::Actor;

tokio::task_local! {
    static ACTOR: Actor;
}

/// Runs `call` as `actor`'s.
pub fn with_actor<F: Future>(actor: Actor, call: F) -> impl Future<Output = F::Output> {
    ACTOR.scope(actor, call)
}

/// `f` of the current call's actor; None outside a call (a background
/// loop, a worker's stream task).
pub fn current<T>(f: impl FnOnce(&Actor) -> T) -> Option<T> {
    ACTOR.try_with(f).ok()
}
