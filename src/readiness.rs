//! The readiness answer of `GET /readyz`, cached briefly.
//!
//! `/readyz` is unauthenticated (load balancers and orchestrators call it), so anyone can
//! call it as often as they like. Each real check takes a database connection and runs two
//! queries; without a cache a flood of `/readyz` would keep the reader pool busy and starve
//! real requests. [`Readiness`] runs at most one check per [`READINESS_TTL`] and shares its
//! result: concurrent callers wait for the one check in flight instead of starting their own.
//!
//! The answer names no internals: a failed check is [`NotReady::DatabaseUnavailable`], and the
//! database's own error text (paths, host names, driver messages) is only logged, at warn.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// How long one readiness check answers for. Short enough that a probe sees a recovery
/// within about a second; long enough that any request rate costs at most one database
/// check per second.
pub const READINESS_TTL: Duration = Duration::from_secs(1);

/// Why the server is not ready, in words safe to show an unauthenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("database unavailable")]
    DatabaseUnavailable,
}

/// The last readiness result and when it was taken.
pub struct Readiness {
    ttl: Duration,
    /// Held across a check, which is what makes the check single-flight.
    last: Mutex<Option<(Instant, Result<(), NotReady>)>>,
}

impl Readiness {
    pub fn new(ttl: Duration) -> Self {
        Readiness {
            ttl,
            last: Mutex::new(None),
        }
    }

    /// The cached result if it is younger than the TTL, else the result of `probe` (whose
    /// error text is logged, never returned).
    pub async fn check<F, Fut, E>(&self, probe: F) -> Result<(), NotReady>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = *last {
            if at.elapsed() < self.ttl {
                return result;
            }
        }
        let result = probe().await.map_err(|e| {
            log::warn!("readiness check failed: {e}");
            NotReady::DatabaseUnavailable
        });
        *last = Some((Instant::now(), result));
        result
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::new(READINESS_TTL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[actix_web::test]
    async fn concurrent_checks_share_one_probe_until_the_ttl_passes() {
        // Arrange
        let readiness = Arc::new(Readiness::new(Duration::from_millis(200)));
        let probes = Arc::new(AtomicUsize::new(0));
        let check = |r: Arc<Readiness>, n: Arc<AtomicUsize>| async move {
            r.check(|| async {
                n.fetch_add(1, Ordering::SeqCst);
                // A slow database: the other callers arrive while this check runs.
                actix_web::rt::time::sleep(Duration::from_millis(20)).await;
                Err::<(), _>("connection refused to 10.0.0.7:5432")
            })
            .await
        };
        // Act
        let answers = futures_util::future::join_all(
            (0..100).map(|_| check(readiness.clone(), probes.clone())),
        )
        .await;
        // Assert
        assert_eq!(probes.load(Ordering::SeqCst), 1, "one probe for 100 calls");
        assert!(answers
            .iter()
            .all(|a| *a == Err(NotReady::DatabaseUnavailable)));
        assert_eq!(
            NotReady::DatabaseUnavailable.to_string(),
            "database unavailable"
        );
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
        check(readiness.clone(), probes.clone()).await.unwrap_err();
        assert_eq!(
            probes.load(Ordering::SeqCst),
            2,
            "a stale result is rechecked"
        );
    }
}
