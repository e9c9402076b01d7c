// The audit log of Admin API writes: who, what, when, and the diff of every change.
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { call, errorText } from './api.js';
import { Pager, Search } from './widgets.js';

const PAGE = 20;

function flat(v, prefix, out) {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    for (const k of Object.keys(v)) flat(v[k], prefix ? `${prefix}.${k}` : k, out);
    if (!Object.keys(v).length && prefix) out[prefix] = '{}';
  } else if (prefix) out[prefix] = JSON.stringify(v);
  return out;
}

/** Lines of a before/after diff: [sign, path, value]. */
export function diff(before, after) {
  const a = flat(before ?? {}, '', {});
  const b = flat(after ?? {}, '', {});
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  const out = [];
  for (const k of keys) {
    if (a[k] === b[k]) continue;
    if (k in a) out.push(['-', k, a[k]]);
    if (k in b) out.push(['+', k, b[k]]);
  }
  return out;
}

export function Audit() {
  const [page, setPage] = useState(1);
  const [search, setSearch] = useState('');
  const [data, setData] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => {
    (async () => {
      const res = await call('GET', `/ui/api/audit?page=${page}&page_size=${PAGE}&q=${encodeURIComponent(search)}`);
      if (res.ok) { setData(res.data); setError(''); } else setError(errorText(res));
    })();
  }, [page, search]);
  return html`<section aria-labelledby="audit-title">
    <h1 id="audit-title">Audit log</h1>
    <${Search} id="audit-search" label=${'Search'} onSearch=${(v) => { setPage(1); setSearch(v); }} />
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${data && !data.enabled && html`<p class="notice">The audit log is off on this node (deployment.admin.audit_log).</p>`}
    ${data && html`<ol class="audit">
      ${data.list.length === 0 && html`<li class="empty">No write recorded.</li>`}
      ${data.list.map((e) => html`<li>
        <details>
          <summary><time>${e.time}</time> · <strong>${e.key_name || 'anonymous'}</strong>
            ${e.client ? ` from ${e.client}` : ''} · <code>${e.method} ${e.path}</code> · revision ${e.revision}</summary>
          ${(e.changes || []).map((c) => html`<div class="change"><h3>${c.key}
            ${c.before == null ? ' (created)' : c.after == null ? ' (deleted)' : ''}</h3>
            <pre class="diff">${diff(c.before, c.after).map(([s, k, v]) => html`<span class=${s === "+" ? "add" : "del"}>${s} ${k}: ${v}</span>`)}</pre></div>`)}
        </details></li>`)}
    </ol>
    <${Pager} page=${page} size=${PAGE} total=${data.total} setPage=${setPage} />`}
  </section>`;
}
