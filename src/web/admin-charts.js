// Charts of Herald's admin dashboard: turns successive `GET /v1/admin/stats` answers into
// per-node series (rates from counter differences over the time between readings) and draws
// them with uPlot (vendored, the global `uPlot`). One line per node: a single server is one
// node; in cluster mode each node's figures come from `cluster.nodes`, dated by the node's
// own `sampled_at_ms`, because a node publishes them on its heartbeat, not on our poll.

import { $, el } from './view.js';

/** Points kept per series: five minutes at one reading a second. */
const WINDOW = 300;

/** Line colours, each at least 4.5:1 on white. */
const COLOURS = ['#0b57d0', '#b3261e', '#176b35', '#7a4a00', '#6a1b9a', '#00639b', '#8c1d18', '#3f5f00'];

/**
 * The charted figures: `id` (the chart's element id is `chart-<id>`), a title, a unit for the
 * text next to the chart, and how to compute a point from a node's previous and current reading.
 */
export const FIGURES = [
  { id: 'connections', title: 'Connections', unit: '', point: (_, s) => s.connections },
  { id: 'messages', title: 'Messages per second', unit: '/s', point: (p, s) => rate(p, s, 'messages') },
  { id: 'deliveries', title: 'Deliveries per second', unit: '/s', point: (p, s) => rate(p, s, 'deliveries') },
  { id: 'commit', title: 'Commit latency (mean per batch)', unit: ' ms', point: commitLatency },
  { id: 'queue', title: 'Persistence queue (write groups waiting)', unit: '', point: (_, s) => s.queue },
  { id: 'evictions', title: 'Slow-consumer evictions per second', unit: '/s', point: (p, s) => rate(p, s, 'evictions') },
  { id: 'notifications', title: 'Notifications per second', unit: '/s', point: (p, s) => rate(p, s, 'notifications') },
];

/** Increase of counter `key` per second between two readings; null without a usable pair. */
function rate(prev, cur, key) {
  if (!prev || cur.t <= prev.t) return null;
  const d = cur[key] - prev[key];
  // A smaller counter means the node restarted: no rate across a restart.
  return d >= 0 ? d / (cur.t - prev.t) : null;
}

/** Mean duration of the commit batches written between two readings; null if none was. */
function commitLatency(prev, cur) {
  if (!prev) return null;
  const batches = cur.batches - prev.batches;
  return batches > 0 ? (cur.commitMs - prev.commitMs) / batches : null;
}

/**
 * The per-node readings in one stats answer: `{node, t (s), connections, messages,
 * deliveries, evictions, notifications, batches, commitMs, queue}`. `receivedAt` (ms) dates a
 * single server's figures.
 */
export function readings(stats, receivedAt) {
  const nodes = stats.cluster?.nodes;
  if (nodes && Object.keys(nodes).length > 0) {
    return Object.entries(nodes).sort(([a], [b]) => a.localeCompare(b)).map(([node, n]) => ({
      node,
      t: (n.sampled_at_ms ?? receivedAt) / 1000,
      connections: n.connections ?? 0,
      messages: n.messages_in_total ?? 0,
      deliveries: n.frames_out_total ?? 0,
      evictions: n.slow_consumers_total ?? 0,
      notifications: n.notifications_created_total ?? 0,
      batches: n.commit_batches_total ?? 0,
      commitMs: n.commit_ms_total ?? 0,
      queue: n.commit_queue_depth ?? 0,
    }));
  }
  return [{
    node: 'this server',
    t: receivedAt / 1000,
    connections: stats.connections,
    messages: stats.messages_in_total,
    deliveries: stats.frames_out_total,
    evictions: stats.slow_consumers_total,
    notifications: stats.notifications_created_total ?? 0,
    batches: stats.persistence?.batches ?? 0,
    commitMs: stats.persistence?.total_batch_ms ?? 0,
    queue: stats.persistence?.queue_depth ?? 0,
  }];
}

/** The last `WINDOW` points of every figure of every node, on the dashboard's own time axis. */
export class History {
  constructor() {
    this.xs = [];
    /** node -> {cur: reading, prev: reading, point: {figure: value}, series: {figure: []}} */
    this.nodes = new Map();
  }

  /** Adds one poll's readings at time `now` (s). Answers whether a node appeared. */
  push(list, now) {
    let added = false;
    for (const r of list) {
      if (this.nodes.has(r.node)) continue;
      const series = Object.fromEntries(FIGURES.map((f) => [f.id, this.xs.map(() => null)]));
      this.nodes.set(r.node, { cur: undefined, prev: undefined, point: {}, series });
      added = true;
    }
    this.xs.push(now);
    for (const [name, n] of this.nodes) {
      const r = list.find((x) => x.node === name);
      if (!r) {
        n.point = {};
      } else if (!n.cur || r.t !== n.cur.t) {
        n.prev = n.cur;
        n.cur = r;
        n.point = Object.fromEntries(FIGURES.map((f) => [f.id, f.point(n.prev, r)]));
      }
      // else: the node has not published since the last poll; its last point stands.
      for (const f of FIGURES) n.series[f.id].push(n.point[f.id] ?? null);
    }
    if (this.xs.length > WINDOW) {
      this.xs.shift();
      for (const n of this.nodes.values()) for (const f of FIGURES) n.series[f.id].shift();
    }
    return added;
  }

  /** The latest point of `figure` added up over the nodes (latency: weighted by batches). */
  total(figure) {
    if (figure === 'commit') {
      let ms = 0;
      let batches = 0;
      for (const n of this.nodes.values()) {
        if (n.prev && n.cur && n.cur.batches > n.prev.batches) {
          ms += n.cur.commitMs - n.prev.commitMs;
          batches += n.cur.batches - n.prev.batches;
        }
      }
      return batches > 0 ? ms / batches : null;
    }
    let sum = null;
    for (const n of this.nodes.values()) {
      const v = n.point[figure];
      if (v !== null && v !== undefined) sum = (sum ?? 0) + v;
    }
    return sum;
  }
}

/** A figure in words: `12`, `3.5/s`, `0.42 ms`, or `—` for none. */
export function format(value, unit = '') {
  if (value === null || value === undefined || Number.isNaN(value)) return '—';
  const digits = Math.abs(value) >= 100 || Number.isInteger(value) ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  return `${value.toFixed(digits)}${unit}`;
}

/** The uPlot charts, one per figure, rebuilt when a node appears. */
export class Charts {
  constructor(container) {
    this.container = container;
    this.plots = new Map();
    this.figures = new Map();
    for (const f of FIGURES) {
      const plot = el('div', { class: 'plot', 'aria-hidden': 'true' });
      const latest = el('p', { class: 'latest', id: `latest-${f.id}` }, '—');
      const figure = el('figure', { class: 'chart', id: `chart-${f.id}`, 'aria-labelledby': `caption-${f.id}` },
        el('figcaption', { id: `caption-${f.id}` }, f.title), latest, plot);
      this.figures.set(f.id, { figure, plot, latest });
      container.append(figure);
    }
    // Charts follow their column's width (phone rotation, window resizing).
    this.resize = () => {
      for (const [id, u] of this.plots) u.setSize({ width: this.width(id), height: 160 });
    };
    window.addEventListener('resize', this.resize);
  }

  width(id) {
    return Math.max(200, Math.floor(this.figures.get(id).plot.clientWidth || this.container.clientWidth));
  }

  /** Redraws every chart from `history`; `rebuild` after the set of nodes changed. */
  update(history, rebuild) {
    const names = [...history.nodes.keys()];
    for (const f of FIGURES) {
      const { figure, plot, latest } = this.figures.get(f.id);
      const data = [history.xs, ...names.map((n) => history.nodes.get(n).series[f.id])];
      let u = this.plots.get(f.id);
      if (!u || rebuild) {
        u?.destroy();
        u = new uPlot(options(f, names, this.width(f.id)), data, plot);
        this.plots.set(f.id, u);
      } else {
        u.setData(data);
      }
      // The numbers behind the chart, for people and for tests: the latest total and the
      // highest point in the window.
      const now = history.total(f.id);
      let max = 0;
      for (const n of names) for (const v of history.nodes.get(n).series[f.id]) if (v > max) max = v;
      figure.dataset.latest = now ?? '';
      figure.dataset.max = max;
      latest.textContent = names.length > 1
        ? names.map((n) => `${n}: ${format(history.nodes.get(n).point[f.id], f.unit)}`).join(' · ')
        : `Now: ${format(now, f.unit)}`;
    }
  }

  destroy() {
    window.removeEventListener('resize', this.resize);
    for (const u of this.plots.values()) u.destroy();
    this.plots.clear();
    this.container.replaceChildren();
  }
}

/** uPlot options of one chart: a time axis, a y axis from 0, one series per node. */
function options(figure, names, width) {
  const axis = { stroke: '#1b1b1f', grid: { stroke: '#e3e5eb' }, ticks: { stroke: '#c9ccd6' } };
  return {
    width,
    height: 160,
    legend: { show: names.length > 1 },
    cursor: { drag: { x: false, y: false } },
    scales: {
      // A fixed five-minute window ending at the latest reading, so a young chart does not
      // stretch a few seconds over the whole width.
      x: { time: true, range: (_, min, max) => { const end = max ?? Date.now() / 1000; return [end - WINDOW, end]; } },
      y: { range: (_, min, max) => [0, Math.max(1, max ?? 0) * 1.1] },
    },
    axes: [axis, { ...axis, size: 56 }],
    series: [
      {},
      ...names.map((name, i) => ({
        label: name,
        stroke: COLOURS[i % COLOURS.length],
        width: 2,
        value: (_, v) => format(v, figure.unit),
      })),
    ],
  };
}

/** The per-node figures table of cluster mode (one card per node). */
export function renderNodes(stats, history) {
  const nodes = stats.cluster?.nodes ?? {};
  const section = $('nodes-section');
  section.hidden = Object.keys(nodes).length === 0;
  if (section.hidden) return;
  const cards = Object.keys(nodes).sort().map((name) => {
    const n = nodes[name];
    const point = history.nodes.get(name)?.point ?? {};
    const rows = [
      ['Connections', format(n.connections)],
      ['Sessions', format(n.sessions)],
      ['Active rooms', format(n.active_rooms)],
      ['Messages', format(point.messages, '/s')],
      ['Deliveries', format(point.deliveries, '/s')],
      ['Commit latency', format(point.commit, ' ms')],
      ['Persistence queue', format(n.commit_queue_depth)],
      ['Slow-consumer evictions', format(n.slow_consumers_total)],
      ['Notifications', format(n.notifications_created_total)],
      ['Memory', n.resident_memory_bytes ? `${(n.resident_memory_bytes / 1048576).toFixed(1)} MiB` : '—'],
    ];
    const you = stats.cluster.node === name ? ' (this node)' : '';
    return el('article', { class: 'node', 'data-node': name, 'aria-label': `Node ${name}` },
      el('h3', {}, `${name}${you}`),
      el('dl', {}, rows.map(([k, v]) => el('div', {}, el('dt', {}, k), el('dd', {}, v)))));
  });
  $('nodes').replaceChildren(...cards);
}
