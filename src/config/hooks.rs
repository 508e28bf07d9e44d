//! Test hooks: points inside the engine where a test may pause it (`Hook`, `Hooks`); empty in
//! production.

use super::*;

/// Points inside the engine where a test may pause it (see [`Hooks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// In `open_session`, after the user's rooms are read, before the session is subscribed.
    BeforeSubscribe,
    /// In `open_session`, after the session is subscribed, before the replay is read.
    BeforeReplay,
}

/// What a hook runs: it may do anything through its own handles (post messages, wait).
pub type HookFn =
    Arc<dyn Fn(Hook) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send + Sync>;

/// Test-only pauses that make races deterministic: a test installs a function that runs at
/// each [`Hook`] point (e.g. posting messages between the snapshot and the subscription).
/// Empty in production.
#[derive(Clone, Default)]
pub struct Hooks(Option<HookFn>);

impl Hooks {
    pub fn new(f: HookFn) -> Self {
        Hooks(Some(f))
    }

    pub async fn run(&self, at: Hook) {
        if let Some(f) = &self.0 {
            f(at).await;
        }
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Hooks(set)"
        } else {
            "Hooks(none)"
        })
    }
}
