//! Webhook settings (issue 19, docs/webhooks.md): the endpoints — one through
//! `HERALD_WEBHOOK_URL`/`HERALD_WEBHOOK_SECRET`/`HERALD_WEBHOOK_EVENTS`, any number through
//! `webhook_endpoints` (best in the config file) — and the sender's limits; their flags
//! ([`WebhookArgs`], flattened into `ServeArgs`) and how `herald config` shows them (secrets
//! redacted).

use super::*;
use crate::domain::Priority;
use crate::webhook::EventType;

/// One receiver of webhook deliveries.
#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    /// Names the endpoint in the outbox (which endpoints acknowledged an event) and in logs.
    pub name: String,
    /// An `http://` or `https://` URL (checked when the flag is parsed).
    pub url: String,
    /// Signs every delivery (`X-Herald-Signature`).
    pub secret: Secret,
    /// The event types it receives; empty: all of them.
    pub events: Vec<EventType>,
}

impl WebhookEndpoint {
    pub fn subscribes(&self, t: EventType) -> bool {
        self.events.is_empty() || self.events.contains(&t)
    }

    /// Parses `name=<n> url=<u> secret=<s> [events=<t>,<t>]` (space-separated pairs), the
    /// form of `HERALD_WEBHOOK_ENDPOINTS` items and of `webhook_endpoints` in the file.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (mut name, mut url, mut secret, mut events) = (None, None, None, Vec::new());
        for pair in spec.split_whitespace() {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("webhook endpoint: {pair:?} is not key=value"))?;
            match k {
                "name" => name = Some(v.to_owned()),
                "url" => url = Some(webhook_url(v)?),
                "secret" => secret = Some(Secret::new(v)),
                "events" => events = event_list(v)?,
                other => {
                    return Err(format!(
                        "webhook endpoint: unknown key {other:?} (use name, url, secret, events)"
                    ))
                }
            }
        }
        let need = |what: &str| format!("webhook endpoint: {what}= is required");
        let name = name.ok_or_else(|| need("name"))?;
        if name.is_empty() || name.contains(',') {
            return Err("webhook endpoint: the name must be non-empty, without commas".into());
        }
        Ok(WebhookEndpoint {
            name,
            url: url.ok_or_else(|| need("url"))?,
            secret: secret.ok_or_else(|| need("secret"))?,
            events,
        })
    }
}

/// A webhook URL: only `http://` and `https://` are accepted.
pub fn webhook_url(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() => Ok(s.to_owned()),
        _ => Err(format!(
            "webhook URL {s:?} must start with http:// or https:// and name a host"
        )),
    }
}

/// `message.stored,user.online` → the event types (empty: all).
fn event_list(s: &str) -> Result<Vec<EventType>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(EventType::parse)
        .collect()
}

/// The endpoints and the sender's limits.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// No endpoint: nothing is written to the outbox and no sender runs.
    pub endpoints: Vec<WebhookEndpoint>,
    /// Deliveries in flight at once (events; each to its endpoints).
    pub concurrency: usize,
    /// One POST's timeout (connect to last byte of the answer).
    pub timeout: Duration,
    /// The first retry comes after about this long, then twice as long each time...
    pub backoff_base: Duration,
    /// ...up to this long between attempts.
    pub backoff_max: Duration,
    /// A pending event this old (since it was created or last re-driven) that fails again
    /// becomes `dead`. Longer than any receiver outage worth riding out.
    pub give_up_after: Duration,
    /// Outbox rows the sender reads per page (its memory bound).
    pub batch_size: usize,
    /// How often the sender looks for due events.
    pub poll: Duration,
    /// `message.undelivered` only for these notification types (empty: all).
    pub undelivered_types: Vec<String>,
    /// `message.undelivered` only from this priority up.
    pub undelivered_min_priority: Priority,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            endpoints: Vec::new(),
            concurrency: 8,
            timeout: Duration::from_secs(10),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(600),
            give_up_after: Duration::from_secs(DAY_SECS),
            batch_size: 100,
            poll: Duration::from_millis(500),
            undelivered_types: Vec::new(),
            undelivered_min_priority: Priority::Low,
        }
    }
}

/// The webhook flags of `herald serve`.
#[derive(Debug, Clone, Args)]
pub struct WebhookArgs {
    /// URL (http or https) of the webhook endpoint set by the environment (named `default`).
    #[arg(long, global = true, env = "HERALD_WEBHOOK_URL", value_parser = webhook_url)]
    pub webhook_url: Option<String>,
    /// Secret that signs the deliveries to --webhook-url (required with it).
    #[arg(
        long,
        global = true,
        env = "HERALD_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub webhook_secret: Option<String>,
    /// Event types sent to --webhook-url, comma-separated (default: all).
    #[arg(long, global = true, env = "HERALD_WEBHOOK_EVENTS", value_delimiter = ',', value_parser = EventType::parse)]
    pub webhook_events: Vec<EventType>,
    /// More endpoints, each "name=<n> url=<u> secret=<s> [events=<t>,<t>]" (best in the config file).
    #[arg(long, global = true, env = "HERALD_WEBHOOK_ENDPOINTS", value_delimiter = ';', value_parser = WebhookEndpoint::parse, hide_env_values = true)]
    pub webhook_endpoints: Vec<WebhookEndpoint>,
    /// Webhook deliveries in flight at once.
    #[arg(long, global = true, env = "HERALD_WEBHOOK_CONCURRENCY")]
    pub webhook_concurrency: Option<usize>,
    /// Milliseconds one webhook POST may take.
    #[arg(long, global = true, env = "HERALD_WEBHOOK_TIMEOUT_MS")]
    pub webhook_timeout_ms: Option<u64>,
    /// Milliseconds before the first webhook retry (doubling, with jitter).
    #[arg(long, global = true, env = "HERALD_WEBHOOK_BACKOFF_BASE_MS")]
    pub webhook_backoff_base_ms: Option<u64>,
    /// Most milliseconds between webhook retries.
    #[arg(long, global = true, env = "HERALD_WEBHOOK_BACKOFF_MAX_MS")]
    pub webhook_backoff_max_ms: Option<u64>,
    /// Seconds after which an undeliverable webhook event becomes dead (dead letter).
    #[arg(long, global = true, env = "HERALD_WEBHOOK_GIVE_UP_SECS")]
    pub webhook_give_up_secs: Option<u64>,
    /// Webhook outbox rows read per page.
    #[arg(long, global = true, env = "HERALD_WEBHOOK_BATCH_SIZE")]
    pub webhook_batch_size: Option<usize>,
    /// Milliseconds between looks at the webhook outbox.
    #[arg(long, global = true, env = "HERALD_WEBHOOK_POLL_MS")]
    pub webhook_poll_ms: Option<u64>,
    /// Notification types reported as message.undelivered, comma-separated (default: all).
    #[arg(long, global = true, env = "HERALD_WEBHOOK_UNDELIVERED_TYPES")]
    pub webhook_undelivered_types: Option<String>,
    /// Lowest priority reported as message.undelivered (low, normal, high, urgent).
    #[arg(long, global = true, env = "HERALD_WEBHOOK_UNDELIVERED_MIN_PRIORITY", value_parser = parse_priority)]
    pub webhook_undelivered_min_priority: Option<Priority>,
}

fn parse_priority(s: &str) -> Result<Priority, String> {
    Priority::parse(s).ok_or_else(|| format!("{s:?} is not a priority: low, normal, high, urgent"))
}

impl WebhookArgs {
    /// Applies the flags that are set, raising out-of-range values to the nearest sane one.
    /// An env endpoint without its secret is kept with an empty one and refused by
    /// [`WebhookSettings::check`] at start (clap's `requires` would not see a secret given
    /// in the config file, whose values are defaults to clap).
    pub(super) fn apply(&self, w: &mut WebhookSettings) {
        let ms = Duration::from_millis;
        if let Some(url) = &self.webhook_url {
            w.endpoints.push(WebhookEndpoint {
                name: "default".into(),
                url: url.clone(),
                secret: Secret::new(self.webhook_secret.clone().unwrap_or_default()),
                events: self.webhook_events.clone(),
            });
        }
        w.endpoints.extend(self.webhook_endpoints.iter().cloned());
        w.concurrency = self.webhook_concurrency.map_or(w.concurrency, |v| v.max(1));
        w.timeout = self.webhook_timeout_ms.map_or(w.timeout, |v| ms(v.max(1)));
        w.backoff_base = self
            .webhook_backoff_base_ms
            .map_or(w.backoff_base, |v| ms(v.max(1)));
        w.backoff_max = self
            .webhook_backoff_max_ms
            .map_or(w.backoff_max, |v| ms(v.max(1)))
            .max(w.backoff_base);
        w.give_up_after = self
            .webhook_give_up_secs
            .map_or(w.give_up_after, |v| Duration::from_secs(v.max(1)));
        w.batch_size = self.webhook_batch_size.map_or(w.batch_size, |v| v.max(1));
        w.poll = self.webhook_poll_ms.map_or(w.poll, |v| ms(v.max(10)));
        if let Some(t) = &self.webhook_undelivered_types {
            w.undelivered_types = t
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
        }
        w.undelivered_min_priority = self
            .webhook_undelivered_min_priority
            .unwrap_or(w.undelivered_min_priority);
    }
}

impl WebhookSettings {
    /// What makes these settings unusable (checked at start): an endpoint without a secret,
    /// two endpoints with one name. (Bad URLs and event types are refused as the flags are
    /// parsed.)
    pub fn check(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for e in &self.endpoints {
            if e.secret.expose().is_empty() {
                return Err(format!(
                    "webhook endpoint {} has no secret (set HERALD_WEBHOOK_SECRET)",
                    e.name
                ));
            }
            if !names.insert(e.name.as_str()) {
                return Err(format!("two webhook endpoints are named {}", e.name));
            }
        }
        Ok(())
    }
}

/// `herald config`'s value of a webhook setting; `None` for another key. Secrets are never
/// shown.
pub(super) fn shown(w: &WebhookSettings, key: &str) -> Option<show::Shown> {
    use show::Shown;
    let env = w.endpoints.iter().find(|e| e.name == "default");
    Some(match key {
        "webhook_url" => env.map_or(Shown::Unset, |e| Shown::Str(e.url.clone())),
        "webhook_secret" => env.map_or(Shown::Unset, |_| Shown::Redacted),
        "webhook_events" => env.map_or(Shown::Unset, |e| {
            Shown::List(e.events.iter().map(|t| t.as_str().to_owned()).collect())
        }),
        "webhook_endpoints" => Shown::List(
            w.endpoints
                .iter()
                .filter(|e| e.name != "default")
                .map(|e| {
                    let events: Vec<&str> = e.events.iter().map(|t| t.as_str()).collect();
                    format!(
                        "name={} url={} secret=<redacted>{}",
                        e.name,
                        e.url,
                        if events.is_empty() {
                            String::new()
                        } else {
                            format!(" events={}", events.join(","))
                        }
                    )
                })
                .collect(),
        ),
        "webhook_concurrency" => Shown::Int(w.concurrency as i128),
        "webhook_timeout_ms" => Shown::Int(w.timeout.as_millis() as i128),
        "webhook_backoff_base_ms" => Shown::Int(w.backoff_base.as_millis() as i128),
        "webhook_backoff_max_ms" => Shown::Int(w.backoff_max.as_millis() as i128),
        "webhook_give_up_secs" => Shown::Int(w.give_up_after.as_secs().into()),
        "webhook_batch_size" => Shown::Int(w.batch_size as i128),
        "webhook_poll_ms" => Shown::Int(w.poll.as_millis() as i128),
        "webhook_undelivered_types" => Shown::List(w.undelivered_types.clone()),
        "webhook_undelivered_min_priority" => {
            Shown::Str(w.undelivered_min_priority.as_str().to_owned())
        }
        _ => return None,
    })
}
