//! `Backplane`: this node's link to the other nodes through Redis. It owns the Redis
//! connections, the subscriptions, the publish queue and the node heartbeat; nothing else in
//! Herald talks to Redis.
//!
//! - Publishing: rooms and the presence registry hand it events ([`Publish`],
//!   [`PublishPresence`]); they queue (bounded, [`ClusterSettings::publish_queue`]) and go out
//!   one pipeline at a time, in order. While Redis is unreachable events are dropped and
//!   counted: messages are stored in PostgreSQL and other nodes fill the hole from there
//!   (the rooms' reorder buffers, and a resync when the backplane comes back); typing and
//!   presence deltas are ephemeral or republished on reconnect.
//! - Receiving: one pub/sub connection, subscribed to the cluster channel and to the channel
//!   of every room this node runs; events go to the room ([`RemoteRoomEvent`]) or to the
//!   presence registry and the room supervisor ([`RemoteClusterEvent`]). A lost connection is
//!   re-established with backoff, every subscription is renewed, and rooms are told to
//!   resynchronise from the database ([`BackplaneResumed`]).
//! - Reading presence hashes: the other nodes' whole hashes after a (re)connect
//!   ([`ReadPresenceSnapshot`]), and single entries for the admin views
//!   ([`ReadPresenceEntries`]: other nodes' sessions are not kept in memory, only counted).
//! - Liveness: every `heartbeat` the node refreshes its key (expiring after `node_timeout`)
//!   with its stats and reads the others'; a node whose key expired is dead: the registry is
//!   told the live set ([`LiveNodes`]) and one node (a `SET NX` lock) deletes the dead node's
//!   presence hash.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use actix::prelude::*;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use redis::Msg;

use super::presence::NodeEntry;
use super::wire::{cluster_channel, room_channel, ClusterEnvelope, ClusterEvent, RoomEnvelope};
use super::ClusterSettings;
use crate::domain::{RoomId, UserId};
use crate::metrics::METRICS;

/// A room's event from another node, for the room actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoteRoomEvent(pub RoomEnvelope);

/// A cluster-channel event from another node.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoteClusterEvent(pub ClusterEnvelope);

/// The backplane is (again) connected: republish what others must know, resynchronise
/// what may have been missed. `first` is true on the first connection since start.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct BackplaneResumed {
    pub first: bool,
}

/// The nodes whose heartbeat is current (this one included), with their last stats.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct LiveNodes {
    pub nodes: HashMap<String, serde_json::Value>,
}

/// Publish one event on a room's channel.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PublishRoom(pub RoomEnvelope);

/// Publish one event on the cluster channel.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PublishCluster(pub ClusterEvent);

/// This node's entry for `user` changed: write it to the node's hash and publish the delta.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PublishPresence {
    pub user: UserId,
    pub v: u64,
    pub entry: Option<NodeEntry>,
}

/// Replace this node's whole presence hash (after a reconnect or at start): every current
/// entry, and a `Hello` naming the users so other nodes drop stale ones.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PublishAllPresence {
    pub entries: Vec<(UserId, u64, NodeEntry)>,
}

/// Read the other live nodes' presence hashes (a snapshot to start from); answered with
/// `(node, user, entry)` triples.
#[derive(Message)]
#[rtype(result = "Result<Vec<(String, UserId, NodeEntry)>, String>")]
pub struct ReadPresenceSnapshot;

/// Start (`Some`) or stop (`None`) receiving a room's channel. `instance` names the room
/// actor: a stop from an actor that was already replaced is ignored.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscribeRoom {
    pub room: RoomId,
    pub instance: u64,
    pub to: Option<Recipient<RemoteRoomEvent>>,
}

/// Where cluster-channel events and liveness go (set once at start).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachCluster {
    pub presence: Recipient<RemoteClusterEvent>,
    pub supervisor: Recipient<RemoteClusterEvent>,
    /// Notifications and unread counts for a user's sessions (`user_frame`).
    pub notifications: Recipient<RemoteClusterEvent>,
    pub resumed: Vec<Recipient<BackplaneResumed>>,
    pub live: Recipient<LiveNodes>,
}

/// This node's figures for the cluster stats view, refreshed by the stats owner.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetNodeStats(pub serde_json::Value);

/// The last stats of every live node.
#[derive(Message)]
#[rtype(result = "HashMap<String, serde_json::Value>")]
pub struct ClusterStats;

/// Claims one more session of `user` cluster-wide, unless the sum over the live nodes is
/// at `max` already: `Ok(false)` refused, `Err` when Redis cannot answer (the caller fails
/// open to its own per-node cap).
#[derive(Message)]
#[rtype(result = "Result<bool, String>")]
pub struct ClaimSession {
    pub user: UserId,
    pub max: usize,
}

/// Gives back a session claimed with [`ClaimSession`] (never below zero).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReleaseSession {
    pub user: UserId,
}

/// Rewrites this node's session counts (after a reconnect: sessions admitted while Redis
/// was away are counted again, closed ones forgotten).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetSessionCounts(pub Vec<(UserId, usize)>);

/// Sums a user's sessions over every registered node and claims one more on this node
/// unless the cap is reached: one step, so nodes admitting at once cannot overshoot. (It
/// reads keys it is not given, which a single Redis or Sentinel allows; Redis Cluster does
/// not, and is not supported: docs/cluster.md.)
const CLAIM_SESSION: &str = r#"
local total = 0
for _, n in ipairs(redis.call('SMEMBERS', ARGV[1] .. ':nodes')) do
  total = total + tonumber(redis.call('HGET', ARGV[1] .. ':sessions:' .. n, ARGV[3]) or '0')
end
if total >= tonumber(ARGV[4]) then return -1 end
return redis.call('HINCRBY', ARGV[1] .. ':sessions:' .. ARGV[2], ARGV[3], 1)
"#;

const RELEASE_SESSION: &str = r#"
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if left <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return left
"#;

/// Whether the backplane is connected now.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsConnected;

enum Out {
    Publish {
        channel: String,
        payload: String,
    },
    Presence {
        user: UserId,
        payload: String,
        entry: Option<String>,
    },
}

pub struct Backplane {
    settings: ClusterSettings,
    client: redis::Client,
    conn: Option<ConnectionManager>,
    sink: Option<PubSubSink>,
    connecting: bool,
    ever_connected: bool,
    backoff: Duration,
    rooms: HashMap<RoomId, (u64, Recipient<RemoteRoomEvent>)>,
    /// Channel name → room, for incoming messages.
    channels: HashMap<String, RoomId>,
    attach: Option<AttachCluster>,
    queue: VecDeque<Out>,
    sending: bool,
    /// A heartbeat is in flight (they never overlap).
    beating: bool,
    /// Message events seen by the test fault injection.
    injected: u64,
    /// When the current connection was made. For one node timeout after it, no node is
    /// declared dead: after an outage every node needs a heartbeat to re-register, and a
    /// node judged in that window would flap all its users.
    connected_at: Option<std::time::Instant>,
    stats: serde_json::Value,
    live: HashMap<String, serde_json::Value>,
    cluster_channel: String,
}

impl Backplane {
    pub fn new(settings: ClusterSettings, client: redis::Client) -> Self {
        let cluster_channel = cluster_channel(&settings.prefix);
        Backplane {
            settings,
            client,
            conn: None,
            sink: None,
            connecting: false,
            ever_connected: false,
            backoff: Duration::from_millis(100),
            rooms: HashMap::new(),
            channels: HashMap::new(),
            attach: None,
            queue: VecDeque::new(),
            sending: false,
            beating: false,
            injected: 0,
            connected_at: None,
            stats: serde_json::Value::Null,
            live: HashMap::new(),
            cluster_channel,
        }
    }

    fn node(&self) -> &str {
        &self.settings.node_id
    }

    fn key(&self, what: &str) -> String {
        format!("{}:{what}", self.settings.prefix)
    }

    fn presence_key(&self, node: &str) -> String {
        format!("{}:presence:{node}", self.settings.prefix)
    }

    fn enqueue(&mut self, out: Out, ctx: &mut Context<Self>) {
        if self.sink.is_none() || self.conn.is_none() {
            METRICS.cluster_dropped.inc();
            return;
        }
        if self.queue.len() >= self.settings.publish_queue {
            METRICS.cluster_dropped.inc();
            return;
        }
        self.queue.push_back(out);
        self.flush(ctx);
    }

    /// Sends everything queued as one pipeline; the next goes when it is answered, so a
    /// node's events stay in order.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.sending || self.queue.is_empty() {
            return;
        }
        let Some(mut conn) = self.conn.clone() else {
            return;
        };
        let mut pipe = redis::pipe();
        let n = self.queue.len();
        let hash = self.presence_key(self.node());
        for out in self.queue.drain(..) {
            match out {
                Out::Publish { channel, payload } => {
                    pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
                }
                Out::Presence {
                    user,
                    payload,
                    entry,
                } => {
                    match entry {
                        Some(e) => pipe
                            .cmd("HSET")
                            .arg(&hash)
                            .arg(user.as_str())
                            .arg(e)
                            .ignore(),
                        None => pipe.cmd("HDEL").arg(&hash).arg(user.as_str()).ignore(),
                    };
                    pipe.cmd("PUBLISH")
                        .arg(&self.cluster_channel)
                        .arg(payload)
                        .ignore();
                }
            }
        }
        self.sending = true;
        async move { pipe.query_async::<()>(&mut conn).await }
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.sending = false;
                match res {
                    Ok(()) => METRICS.cluster_published.inc_by(n as u64),
                    Err(e) => {
                        METRICS.cluster_dropped.inc_by(n as u64);
                        log::warn!("backplane: publishing {n} events failed: {e}");
                    }
                }
                act.flush(ctx);
            })
            .spawn(ctx);
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.connecting {
            return;
        }
        self.connecting = true;
        let client = self.client.clone();
        let timeout = self.settings.redis_timeout;
        let mut channels: Vec<String> = self.channels.keys().cloned().collect();
        channels.push(self.cluster_channel.clone());
        async move {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(2);
            let conn = client.get_connection_manager_with_config(config).await?;
            let pubsub = actix::clock::timeout(timeout, client.get_async_pubsub())
                .await
                .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "timeout")))??;
            let (mut sink, stream) = pubsub.split();
            for chunk in channels.chunks(512) {
                sink.subscribe(chunk).await?;
            }
            Ok::<_, redis::RedisError>((conn, sink, stream))
        }
        .into_actor(self)
        .map(|res, act, ctx| {
            act.connecting = false;
            match res {
                Ok((conn, sink, stream)) => {
                    let first = !act.ever_connected;
                    log::info!(
                        "backplane: node {} connected to Redis{}",
                        act.node(),
                        if first { "" } else { " again" }
                    );
                    act.ever_connected = true;
                    act.backoff = Duration::from_millis(100);
                    act.conn = Some(conn);
                    act.sink = Some(sink);
                    act.connected_at = Some(std::time::Instant::now());
                    METRICS.cluster_connected.set(1);
                    ctx.add_stream(stream);
                    act.heartbeat(ctx);
                    if let Some(a) = &act.attach {
                        for r in &a.resumed {
                            r.do_send(BackplaneResumed { first });
                        }
                    }
                }
                Err(e) => {
                    log::warn!(
                        "backplane: cannot reach Redis ({}); retrying in {:?}",
                        e,
                        act.backoff
                    );
                    let wait = act.backoff;
                    act.backoff = (act.backoff * 2).min(Duration::from_secs(5));
                    ctx.run_later(wait, |act, ctx| act.connect(ctx));
                }
            }
        })
        .spawn(ctx);
    }

    fn lost(&mut self, ctx: &mut Context<Self>) {
        if self.sink.take().is_some() {
            log::warn!("backplane: lost the Redis connection; events are dropped until it is back");
        }
        METRICS.cluster_connected.set(0);
        self.queue.clear();
        let wait = self.backoff;
        ctx.run_later(wait, |act, ctx| act.connect(ctx));
    }

    /// Refreshes this node's key and reads every node's, then reaps expired nodes.
    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let Some(mut conn) = self.conn.clone() else {
            return;
        };
        if self.sink.is_none() || self.beating {
            return;
        }
        self.beating = true;
        let node = self.node().to_owned();
        let nodes_key = self.key("nodes");
        let node_key = self.key(&format!("node:{node}"));
        let ttl = self.settings.node_timeout.as_millis() as u64;
        let stats = self.stats.to_string();
        let prefix = self.settings.prefix.clone();
        let settled = self
            .connected_at
            .is_some_and(|t| t.elapsed() >= self.settings.node_timeout);
        async move {
            let members: Vec<String> = redis::pipe()
                .cmd("SET")
                .arg(&node_key)
                .arg(&stats)
                .arg("PX")
                .arg(ttl)
                .ignore()
                .cmd("SADD")
                .arg(&nodes_key)
                .arg(&node)
                .ignore()
                .cmd("SMEMBERS")
                .arg(&nodes_key)
                .query_async::<(Vec<String>,)>(&mut conn)
                .await?
                .0;
            let keys: Vec<String> = members
                .iter()
                .map(|n| format!("{prefix}:node:{n}"))
                .collect();
            let values: Vec<Option<String>> =
                redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
            let mut live = HashMap::new();
            let mut dead = Vec::new();
            for (n, v) in members.into_iter().zip(values) {
                match v {
                    Some(v) => {
                        live.insert(n, serde_json::from_str(&v).unwrap_or_default());
                    }
                    None => dead.push(n),
                }
            }
            if !settled {
                return Ok((live, false));
            }
            // One node cleans up after each dead one: the holder of its reap lock.
            for d in dead {
                let won: Option<String> = redis::cmd("SET")
                    .arg(format!("{prefix}:reap:{d}"))
                    .arg(&node)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl * 3)
                    .query_async(&mut conn)
                    .await?;
                if won.is_some() {
                    log::warn!("backplane: node {d} stopped heartbeating; removing its presence");
                    redis::pipe()
                        .cmd("DEL")
                        .arg(format!("{prefix}:presence:{d}"))
                        .ignore()
                        .cmd("DEL")
                        .arg(format!("{prefix}:sessions:{d}"))
                        .ignore()
                        .cmd("SREM")
                        .arg(&nodes_key)
                        .arg(&d)
                        .ignore()
                        .query_async::<()>(&mut conn)
                        .await?;
                }
            }
            Ok::<_, redis::RedisError>((live, true))
        }
        .into_actor(self)
        .map(|res, act, _| match res {
            Ok((live, settled)) if act.sink.is_some() => {
                act.live = live.clone();
                if let (true, Some(a)) = (settled, &act.attach) {
                    a.live.do_send(LiveNodes { nodes: live });
                }
            }
            Ok(_) => {}
            Err(e) => log::warn!("backplane: heartbeat failed: {e}"),
        })
        .map(|_, act, _| act.beating = false)
        .spawn(ctx);
    }
}

impl Actor for Backplane {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.connect(ctx);
        let every = self.settings.heartbeat;
        ctx.run_interval(every, |act, ctx| act.heartbeat(ctx));
    }
}

impl StreamHandler<Msg> for Backplane {
    fn handle(&mut self, msg: Msg, _: &mut Context<Self>) {
        let channel = msg.get_channel_name();
        let payload = msg.get_payload_bytes();
        if channel == self.cluster_channel {
            let env: ClusterEnvelope = match serde_json::from_slice(payload) {
                Ok(e) => e,
                Err(e) => {
                    log::warn!("backplane: unreadable cluster event dropped: {e}");
                    return;
                }
            };
            if env.node == self.settings.node_id {
                return;
            }
            METRICS.cluster_received.inc();
            let Some(a) = &self.attach else { return };
            let to = match env.event {
                ClusterEvent::UserRoom { .. } => &a.supervisor,
                ClusterEvent::UserFrame { .. } => &a.notifications,
                _ => &a.presence,
            };
            to.do_send(RemoteClusterEvent(env));
            return;
        }
        let Some(room) = self.channels.get(channel) else {
            return;
        };
        let Some((_, to)) = self.rooms.get(room) else {
            return;
        };
        match serde_json::from_slice::<RoomEnvelope>(payload) {
            Ok(env) if env.node == self.settings.node_id => {}
            Ok(env) => {
                METRICS.cluster_received.inc();
                to.do_send(RemoteRoomEvent(env));
            }
            Err(e) => log::warn!("backplane: unreadable event on {channel} dropped: {e}"),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.lost(ctx);
    }
}

impl Handler<PublishRoom> for Backplane {
    type Result = ();
    fn handle(&mut self, msg: PublishRoom, ctx: &mut Context<Self>) {
        let every = self.settings.drop_message_events_every;
        if every > 0 && matches!(msg.0.event, super::wire::RoomEvent::Message { .. }) {
            self.injected += 1;
            if self.injected % u64::from(every) == 0 {
                METRICS.cluster_dropped.inc();
                return;
            }
        }
        let channel = room_channel(&self.settings.prefix, &msg.0.room);
        match serde_json::to_string(&msg.0) {
            Ok(payload) => self.enqueue(Out::Publish { channel, payload }, ctx),
            Err(e) => log::error!("backplane: room event not serializable: {e}"),
        }
    }
}

impl Handler<PublishCluster> for Backplane {
    type Result = ();
    fn handle(&mut self, msg: PublishCluster, ctx: &mut Context<Self>) {
        let env = ClusterEnvelope {
            node: self.settings.node_id.clone(),
            event: msg.0,
        };
        match serde_json::to_string(&env) {
            Ok(payload) => {
                let channel = self.cluster_channel.clone();
                self.enqueue(Out::Publish { channel, payload }, ctx)
            }
            Err(e) => log::error!("backplane: cluster event not serializable: {e}"),
        }
    }
}

impl Handler<PublishPresence> for Backplane {
    type Result = ();
    fn handle(&mut self, msg: PublishPresence, ctx: &mut Context<Self>) {
        let entry = match msg.entry.as_ref().map(serde_json::to_string).transpose() {
            Ok(e) => e,
            Err(e) => return log::error!("backplane: presence entry not serializable: {e}"),
        };
        let env = ClusterEnvelope {
            node: self.settings.node_id.clone(),
            event: ClusterEvent::Presence {
                user: msg.user.clone(),
                v: msg.v,
                entry: msg.entry,
            },
        };
        match serde_json::to_string(&env) {
            Ok(payload) => self.enqueue(
                Out::Presence {
                    user: msg.user,
                    payload,
                    entry,
                },
                ctx,
            ),
            Err(e) => log::error!("backplane: presence delta not serializable: {e}"),
        }
    }
}

impl Handler<PublishAllPresence> for Backplane {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, msg: PublishAllPresence, _: &mut Context<Self>) -> Self::Result {
        let conn = self.conn.clone();
        let hash = self.presence_key(self.node());
        let channel = self.cluster_channel.clone();
        let node = self.settings.node_id.clone();
        Box::pin(
            async move {
                let Some(mut conn) = conn else { return Ok(()) };
                let mut pipe = redis::pipe();
                pipe.atomic().cmd("DEL").arg(&hash).ignore();
                let mut users = Vec::with_capacity(msg.entries.len());
                for chunk in msg.entries.chunks(1000) {
                    let mut cmd = redis::cmd("HSET");
                    cmd.arg(&hash);
                    for (user, _, entry) in chunk {
                        cmd.arg(user.as_str())
                            .arg(serde_json::to_string(entry).unwrap_or_default());
                    }
                    pipe.add_command(cmd).ignore();
                }
                for (user, _, _) in &msg.entries {
                    users.push(user.clone());
                }
                let hello = ClusterEnvelope {
                    node,
                    event: ClusterEvent::Hello { users },
                };
                pipe.cmd("PUBLISH")
                    .arg(&channel)
                    .arg(serde_json::to_string(&hello).unwrap_or_default())
                    .ignore();
                pipe.query_async::<()>(&mut conn).await
            }
            .into_actor(self)
            .map(|res, _, _| {
                if let Err(e) = res {
                    log::warn!("backplane: republishing presence failed: {e}");
                }
            }),
        )
    }
}

impl Handler<ReadPresenceSnapshot> for Backplane {
    type Result = ResponseFuture<Result<Vec<(String, UserId, NodeEntry)>, String>>;
    fn handle(&mut self, _: ReadPresenceSnapshot, _: &mut Context<Self>) -> Self::Result {
        let conn = self.conn.clone();
        let me = self.settings.node_id.clone();
        let prefix = self.settings.prefix.clone();
        Box::pin(async move {
            let Some(mut conn) = conn else {
                return Err("backplane not connected".to_owned());
            };
            // Every registered node but this one; a dead one's hash is gone or soon reaped.
            let nodes: Vec<String> = redis::cmd("SMEMBERS")
                .arg(format!("{prefix}:nodes"))
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for node in nodes.into_iter().filter(|n| *n != me) {
                let all: HashMap<String, String> = redis::cmd("HGETALL")
                    .arg(format!("{prefix}:presence:{node}"))
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                for (user, entry) in all {
                    let (Ok(user), Ok(entry)) = (
                        UserId::parse(&user),
                        serde_json::from_str::<NodeEntry>(&entry),
                    ) else {
                        log::warn!("backplane: unreadable presence entry of {node} skipped");
                        continue;
                    };
                    out.push((node.clone(), user, entry));
                }
            }
            Ok(out)
        })
    }
}

impl Handler<SubscribeRoom> for Backplane {
    type Result = ();
    fn handle(&mut self, msg: SubscribeRoom, ctx: &mut Context<Self>) {
        let channel = room_channel(&self.settings.prefix, &msg.room);
        let subscribe = msg.to.is_some();
        match msg.to {
            Some(to) => {
                if self
                    .rooms
                    .insert(msg.room.clone(), (msg.instance, to))
                    .is_some()
                {
                    return;
                }
                self.channels.insert(channel.clone(), msg.room);
            }
            None => {
                if self.rooms.get(&msg.room).map(|(i, _)| *i) != Some(msg.instance) {
                    return;
                }
                self.rooms.remove(&msg.room);
                self.channels.remove(&channel);
            }
        }
        let Some(mut sink) = self.sink.clone() else {
            // Subscribed with everything else when the connection comes back.
            return;
        };
        async move {
            if subscribe {
                sink.subscribe(&channel).await
            } else {
                sink.unsubscribe(&channel).await
            }
        }
        .into_actor(self)
        .map(|res, _, _| {
            if let Err(e) = res {
                log::warn!("backplane: (un)subscribe failed: {e}");
            }
        })
        .spawn(ctx);
    }
}

impl Handler<AttachCluster> for Backplane {
    type Result = ();
    fn handle(&mut self, msg: AttachCluster, _: &mut Context<Self>) {
        if self.sink.is_some() {
            for r in &msg.resumed {
                r.do_send(BackplaneResumed { first: true });
            }
        }
        self.attach = Some(msg);
    }
}

impl Handler<SetNodeStats> for Backplane {
    type Result = ();
    fn handle(&mut self, msg: SetNodeStats, _: &mut Context<Self>) {
        self.stats = msg.0;
    }
}

impl Handler<ClusterStats> for Backplane {
    type Result = MessageResult<ClusterStats>;
    fn handle(&mut self, _: ClusterStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.live.clone())
    }
}

impl Handler<ClaimSession> for Backplane {
    type Result = ResponseFuture<Result<bool, String>>;
    fn handle(&mut self, msg: ClaimSession, _: &mut Context<Self>) -> Self::Result {
        let conn = self.conn.clone().filter(|_| self.sink.is_some());
        let (prefix, node) = (self.settings.prefix.clone(), self.settings.node_id.clone());
        Box::pin(async move {
            let Some(mut conn) = conn else {
                return Err("backplane not connected".to_owned());
            };
            let n: i64 = redis::cmd("EVAL")
                .arg(CLAIM_SESSION)
                .arg(0)
                .arg(prefix)
                .arg(node)
                .arg(msg.user.as_str())
                .arg(msg.max)
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            Ok(n >= 0)
        })
    }
}

impl Handler<ReleaseSession> for Backplane {
    type Result = ();
    fn handle(&mut self, msg: ReleaseSession, ctx: &mut Context<Self>) {
        let Some(mut conn) = self.conn.clone() else {
            return;
        };
        let key = self.key(&format!("sessions:{}", self.settings.node_id));
        async move {
            redis::cmd("EVAL")
                .arg(RELEASE_SESSION)
                .arg(1)
                .arg(key)
                .arg(msg.user.as_str())
                .query_async::<i64>(&mut conn)
                .await
        }
        .into_actor(self)
        .map(|res, _, _| {
            if let Err(e) = res {
                log::warn!("backplane: releasing a session count failed: {e}");
            }
        })
        .spawn(ctx);
    }
}

impl Handler<SetSessionCounts> for Backplane {
    type Result = ();
    fn handle(&mut self, msg: SetSessionCounts, ctx: &mut Context<Self>) {
        let Some(mut conn) = self.conn.clone() else {
            return;
        };
        let key = self.key(&format!("sessions:{}", self.settings.node_id));
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("DEL").arg(&key).ignore();
        for chunk in msg.0.chunks(1000) {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(&key);
            for (user, n) in chunk {
                cmd.arg(user.as_str()).arg(*n);
            }
            pipe.add_command(cmd).ignore();
        }
        async move { pipe.query_async::<()>(&mut conn).await }
            .into_actor(self)
            .map(|res, _, _| {
                if let Err(e) = res {
                    log::warn!("backplane: rewriting session counts failed: {e}");
                }
            })
            .spawn(ctx);
    }
}

impl Handler<IsConnected> for Backplane {
    type Result = bool;
    fn handle(&mut self, _: IsConnected, _: &mut Context<Self>) -> bool {
        self.sink.is_some()
    }
}

/// Read the entries some nodes keep in Redis for some users, `(node, user)` each (the
/// admin views' sessions on other nodes); answered in the same order, `None` where a node
/// has no entry (any more).
#[derive(Message)]
#[rtype(result = "Result<Vec<Option<NodeEntry>>, String>")]
pub struct ReadPresenceEntries {
    pub keys: Vec<(String, UserId)>,
}

impl Handler<ReadPresenceEntries> for Backplane {
    type Result = ResponseFuture<Result<Vec<Option<NodeEntry>>, String>>;
    fn handle(&mut self, msg: ReadPresenceEntries, _: &mut Context<Self>) -> Self::Result {
        let conn = self.conn.clone().filter(|_| self.sink.is_some());
        let prefix = self.settings.prefix.clone();
        Box::pin(async move {
            let Some(mut conn) = conn else {
                return Err("backplane not connected".to_owned());
            };
            if msg.keys.is_empty() {
                return Ok(Vec::new());
            }
            // One round trip for all of them.
            let mut pipe = redis::pipe();
            for (node, user) in &msg.keys {
                pipe.cmd("HGET")
                    .arg(format!("{prefix}:presence:{node}"))
                    .arg(user.as_str());
            }
            let raw: Vec<Option<String>> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            Ok(raw
                .into_iter()
                .map(|e| e.and_then(|e| serde_json::from_str(&e).ok()))
                .collect())
        })
    }
}
