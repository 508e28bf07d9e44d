//! The sessions subscribed to a room (`Subscribers`), and how a message reaches all of them
//! ([`FanOutPlan`]): grouped by worker thread once per change of the set, so each message
//! costs the room one batch per worker instead of work per recipient.
//!
//! The set changes only through [`Subscribers::insert`], [`Subscribers::remove`] and
//! [`Subscribers::retain`], which drop the plan and update the count the supervisor reads;
//! reads go through `Deref` to the map. So no change can leave a stale plan behind (which
//! would send a room's messages to a session that left it).

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::actors::session::handle::SessionHandle;
use crate::actors::session::inbox::{SlotId, WorkerInbox};
use crate::domain::SessionId;

pub struct Subscribers {
    map: HashMap<SessionId, SessionHandle>,
    /// Shared with the supervisor so its idle sweep can read it without a round trip.
    count: Arc<AtomicUsize>,
    /// Built at the first fan-out after a change.
    plan: Option<FanOutPlan>,
}

/// The subscribers grouped for a fan-out to all of them.
#[derive(Default)]
pub struct FanOutPlan {
    /// Per worker thread: its inbox, and the slots of the subscribers there in slot order
    /// (the worker walks its slot table forwards). Shared by every batch until a change.
    pub workers: Vec<(Arc<WorkerInbox>, Arc<[SlotId]>)>,
    /// Subscribers without an inbox slot (test probes), reached one by one.
    pub direct: Vec<SessionHandle>,
}

impl Subscribers {
    pub fn new(count: Arc<AtomicUsize>) -> Self {
        count.store(0, Ordering::Relaxed);
        Subscribers {
            map: HashMap::new(),
            count,
            plan: None,
        }
    }

    pub fn insert(&mut self, handle: SessionHandle) {
        self.map.insert(handle.id, handle);
        self.changed();
    }

    pub fn remove(&mut self, id: &SessionId) -> Option<SessionHandle> {
        let removed = self.map.remove(id);
        if removed.is_some() {
            self.changed();
        }
        removed
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&SessionHandle) -> bool) {
        let before = self.map.len();
        self.map.retain(|_, s| keep(s));
        if self.map.len() != before {
            self.changed();
        }
    }

    fn changed(&mut self) {
        self.plan = None;
        self.count.store(self.map.len(), Ordering::Relaxed);
    }

    /// The plan for a fan-out to every subscriber, built if the set changed since the last
    /// one. Sessions found gone meanwhile are dropped first.
    pub fn plan(&mut self) -> &FanOutPlan {
        if self.plan.is_none() {
            self.retain(|s| !s.slow.is_closed());
        }
        let map = &self.map;
        self.plan
            .get_or_insert_with(|| FanOutPlan::of(map.values()))
    }
}

impl FanOutPlan {
    fn of<'a>(sessions: impl Iterator<Item = &'a SessionHandle>) -> Self {
        let mut plan = FanOutPlan::default();
        let mut slots: Vec<Vec<SlotId>> = Vec::new();
        for s in sessions {
            let Some(route) = &s.inbox else {
                plan.direct.push(s.clone());
                continue;
            };
            match plan
                .workers
                .iter()
                .position(|(w, _)| Arc::ptr_eq(w, &route.worker))
            {
                Some(i) => slots[i].push(route.slot),
                None => {
                    plan.workers.push((route.worker.clone(), Arc::new([])));
                    slots.push(vec![route.slot]);
                }
            }
        }
        for ((_, shared), mut list) in plan.workers.iter_mut().zip(slots) {
            list.sort_unstable_by_key(|s| s.index());
            *shared = list.into();
        }
        plan
    }
}

impl Deref for Subscribers {
    type Target = HashMap<SessionId, SessionHandle>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}
