// Live view: requests per second, status classes and latency percentiles per route (the
// node's Prometheus counts, GET /ui/api/metrics) and upstream health per node (the Control
// API's healthcheck, GET /ui/api/health), polled without reloading the page.
import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { call, errorText } from './api.js';

export const POLL_MS = 2000;
const WINDOW = 15;          // polls kept: rates and percentiles over the last ~30 s

/** The q-quantile of a histogram (bucket upper bounds in ms, counts per bucket incl. +Inf). */
export function quantile(q, bounds, counts) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (!total) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    if (seen + counts[i] >= rank && counts[i] > 0) {
      const lo = i === 0 ? 0 : bounds[i - 1];
      const hi = i < bounds.length ? bounds[i] : bounds[bounds.length - 1];
      return lo + (hi - lo) * ((rank - seen) / counts[i]);
    }
    seen += counts[i];
  }
  return bounds[bounds.length - 1];
}

function perBucket(cum) {
  return cum.map((c, i) => c - (i ? cum[i - 1] : 0));
}

function rows(history) {
  const last = history[history.length - 1];
  const first = history[0];
  const before = new Map(first.routes.map((r) => [r.route, r]));
  const span = Math.max(0.001, last.time - first.time);
  return last.routes.map((r) => {
    const b = before.get(r.route);
    const d = b && history.length > 1 ? r.total - b.total : 0;
    const win = b && d > 0 ? perBucket(r.counts).map((c, i) => c - perBucket(b.counts)[i]) : perBucket(r.counts);
    const pct = (q) => quantile(q, r.buckets, win);
    return { ...r, rate: history.length > 1 ? d / span : null, p50: pct(0.5), p90: pct(0.9), p99: pct(0.99), windowed: d > 0 };
  });
}

const ms = (v) => (v === null ? '–' : `${v < 10 ? v.toFixed(1) : Math.round(v)} ms`);

export function Live() {
  const [history, setHistory] = useState([]);
  const [health, setHealth] = useState([]);
  const [error, setError] = useState('');
  const [updated, setUpdated] = useState(null);
  const hist = useRef([]);

  useEffect(() => {
    let stop = false;
    let timer;
    const tick = async () => {
      const [m, h] = await Promise.all([call('GET', '/ui/api/metrics'), call('GET', '/ui/api/health')]);
      if (stop) return;
      if (m.ok) {
        hist.current = [...hist.current, m.data].slice(-WINDOW);
        setHistory(hist.current);
        setError('');
      } else setError(errorText(m));
      if (h.ok && Array.isArray(h.data)) setHealth(h.data);
      setUpdated(new Date());
      timer = setTimeout(tick, POLL_MS);
    };
    tick();
    return () => { stop = true; clearTimeout(timer); };
  }, []);

  const last = history[history.length - 1];
  const table = history.length ? rows(history) : [];
  return html`<section aria-labelledby="live-title">
    <div class="bar"><h1 id="live-title">Live</h1>
      <p class="hint" aria-live="polite">${updated ? `Updated ${updated.toLocaleTimeString()} · every ${POLL_MS / 1000} s` : 'Loading…'}</p></div>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${last && !last.enabled && html`<p class="notice">The prometheus plugin is not loaded on this node:
      add it to the node config's <code>plugins</code> list to see traffic here.</p>`}
    <h2>Routes</h2>
    <p class="hint">Counted for routes that run the <code>prometheus</code> plugin (on the route, or in a global rule). Rates and percentiles over the last ${WINDOW * POLL_MS / 1000} s (since start when idle).</p>
    <table class="list" id="live-routes">
      <thead><tr><th scope="col">Route</th><th scope="col">Requests</th><th scope="col">req/s</th>
        <th scope="col">2xx</th><th scope="col">3xx</th><th scope="col">4xx</th><th scope="col">5xx</th>
        <th scope="col">p50</th><th scope="col">p90</th><th scope="col">p99</th></tr></thead>
      <tbody>
        ${table.length === 0 && html`<tr><td colspan="10" class="empty">No request counted yet.</td></tr>`}
        ${table.map((r) => html`<tr data-route=${r.route}>
          <td>${r.route ? html`<a href=${`#/r/routes/edit/${r.route}`}>${r.route}</a>` : '(no route)'}</td>
          <td class="num total">${r.total}</td><td class="num">${r.rate === null ? '–' : r.rate.toFixed(2)}</td>
          <td class="num">${r.status['2xx']}</td><td class="num">${r.status['3xx']}</td>
          <td class="num">${r.status['4xx']}</td><td class="num">${r.status['5xx']}</td>
          <td class="num">${ms(r.p50)}</td><td class="num">${ms(r.p90)}</td><td class="num">${ms(r.p99)}</td></tr>`)}
      </tbody>
    </table>
    <h2>Upstream health</h2>
    <p class="hint">Upstreams with health checks (<code>checks</code>) and more than one node.</p>
    <table class="list" id="live-health">
      <thead><tr><th scope="col">Upstream</th><th scope="col">Node</th><th scope="col">Status</th>
        <th scope="col">Successes</th><th scope="col">HTTP failures</th><th scope="col">TCP failures</th><th scope="col">Timeouts</th></tr></thead>
      <tbody>
        ${health.length === 0 && html`<tr><td colspan="7" class="empty">No upstream has health checks.</td></tr>`}
        ${health.flatMap((u) => (u.nodes || []).map((n) => html`<tr>
          <td>${u.name}</td><td>${n.ip}:${n.port}</td>
          <td><span class=${`tag ${n.status}`}>${n.status}</span></td>
          <td class="num">${(n.counter || {}).success ?? 0}</td><td class="num">${(n.counter || {}).http_failure ?? 0}</td>
          <td class="num">${(n.counter || {}).tcp_failure ?? 0}</td><td class="num">${(n.counter || {}).timeout_failure ?? 0}</td></tr>`))}
      </tbody>
    </table>
  </section>`;
}
