//! What every scenario shares: the run context ([`Ctx`]), the once-a-second progress line,
//! connecting many clients with bounded concurrency, rate-paced publishing with pipelined
//! acks matched by `ref`, and the book of sent/acked/received messages that loss and
//! latency are computed from.
//!
//! Message bodies carry their send time and id in the text (`hb1 t=<nanos> id=<n> ...`), so
//! a receiver measures publish→receive latency with the same process clock the publisher
//! used, and loss is counted per acked message.
//!
//! The scenarios are `churn`, `direct`, `fanout`, `hostile`, `idle`, `nodekill` and
//! `persist`; what they share is in `ctx.rs` (the run context, pausing, barriers),
//! `progress.rs` (the progress line), `connect.rs` (connecting many clients), `book.rs`
//! (message tags, the book, the receiver), `publish.rs` (rate-paced publishers, draining) and
//! `report.rs` (report sections).
//!
//! Connections are numbered globally: connection `i` goes to server `i % servers`, and with
//! `--procs` each child opens only its share (`ctx.shard`, see `shard.rs`).

pub mod churn;
pub mod direct;
pub mod fanout;
pub mod hostile;
pub mod idle;
pub mod nodekill;
pub mod persist;

mod book;
mod connect;
mod ctx;
mod progress;
mod publish;
mod report;

#[cfg(test)]
pub use book::parse_tag;
pub use book::{frame_type, receiver, Book, SharedBook};
pub use connect::{close_all, connect_many, connect_members, connect_one, join, Member};
pub use ctx::{pause, Ctx};
pub use progress::{spawn_progress, Progress};
pub use publish::{drain, publish_for, quiet_deliveries, PubOptions, Publisher, Target, MAX_PAD};
pub use report::{acked_per_s, report_deliveries, report_publishing, report_resources};

pub type BenchResult<T> = Result<T, String>;
