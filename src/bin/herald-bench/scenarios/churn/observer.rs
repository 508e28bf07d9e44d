//! The observers of `churn`: the handler that reads `room_presence` diffs and times each join
//! and leave (from the start of the connect or the disconnect to the diff naming the user).

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

use serde::Deserialize;

use crate::client::{Event, Handler};
use crate::scenarios::frame_type;
use crate::stats::unix_nanos;

use super::Watch;
#[derive(Deserialize)]
struct Diff<'a> {
    #[serde(borrow)]
    data: DiffData<'a>,
}

#[derive(Deserialize)]
struct DiffData<'a> {
    #[serde(default, borrow)]
    joins: Vec<Who<'a>>,
    #[serde(default, borrow)]
    leaves: Vec<Who<'a>>,
}

#[derive(Deserialize)]
struct Who<'a> {
    #[serde(borrow)]
    user: Cow<'a, str>,
}
pub(super) fn observer(watch: Rc<RefCell<Watch>>) -> Handler {
    Box::new(move |ev| match ev {
        Event::Text(t, rx_ns) if frame_type(t) == "room_presence" => {
            // When the diff reached the socket (kernel timestamp), else now.
            let now = rx_ns.unwrap_or_else(unix_nanos);
            let mut w = watch.borrow_mut();
            w.diffs += 1;
            w.diff_bytes += t.len() as u64;
            let diff: Diff = match serde_json::from_str(t) {
                Ok(d) => d,
                Err(_) => {
                    w.parse_errors += 1;
                    return;
                }
            };
            w.max_diff_joins = w.max_diff_joins.max(diff.data.joins.len());
            let observers = w.observers;
            for j in &diff.data.joins {
                if let Some((t0, seen)) = w.joins.get_mut(j.user.as_ref()) {
                    let t0 = *t0;
                    *seen += 1;
                    let done = *seen >= observers;
                    w.join_lat.record_nanos(now.saturating_sub(t0));
                    if done {
                        w.joins.remove(j.user.as_ref());
                    }
                }
            }
            for l in &diff.data.leaves {
                if let Some((t0, seen)) = w.leaves.get_mut(l.user.as_ref()) {
                    let t0 = *t0;
                    *seen += 1;
                    let done = *seen >= observers;
                    w.leave_lat.record_nanos(now.saturating_sub(t0));
                    if done {
                        w.leaves.remove(l.user.as_ref());
                    }
                }
            }
        }
        Event::Closed(info) if !info.by_us => {
            let key = info.code.map_or("error".into(), |c| c.to_string());
            *watch.borrow_mut().observer_closes.entry(key).or_default() += 1;
        }
        _ => {}
    })
}
