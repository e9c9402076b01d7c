// Explain: which route a request would match, why the others did not, its plugin chain
// and upstream (GET /apisix/admin/explain).
import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { ADMIN, call, errorText } from './api.js';

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

export function Explain() {
  const [method, setMethod] = useState('GET');
  const [url, setUrl] = useState('/');
  const [host, setHost] = useState('');
  const [headers, setHeaders] = useState('');
  const [result, setResult] = useState(null);
  const [error, setError] = useState('');

  const run = async (e) => {
    e.preventDefault();
    let path = url.trim();
    let h = host.trim();
    const m = /^https?:\/\/([^/]+)(\/.*)?$/i.exec(path);
    if (m) { h = h || m[1]; path = m[2] || '/'; }
    const q = new URLSearchParams({ uri: path, method });
    if (h) q.set('host', h);
    for (const line of headers.split('\n')) {
      const i = line.indexOf(':');
      if (i > 0) q.set(`header_${line.slice(0, i).trim()}`, line.slice(i + 1).trim());
    }
    const res = await call('GET', `${ADMIN}/explain?${q}`);
    if (!res.ok) { setError(errorText(res)); setResult(null); return; }
    setError('');
    setResult(res.data);
  };

  const mt = result && result.matched;
  return html`<section aria-labelledby="explain-title">
    <h1 id="explain-title">Explain a request</h1>
    <form class="explain" onSubmit=${run}>
      <div class="field"><label for="x-method">Method</label>
        <select id="x-method" value=${method} onChange=${(e) => setMethod(e.currentTarget.value)}>
          ${METHODS.map((m) => html`<option>${m}</option>`)}</select></div>
      <div class="field grow"><label for="x-url">URL or path</label>
        <input id="x-url" type="text" value=${url} onInput=${(e) => setUrl(e.currentTarget.value)} required /></div>
      <div class="field"><label for="x-host">Host</label>
        <input id="x-host" type="text" value=${host} onInput=${(e) => setHost(e.currentTarget.value)} /></div>
      <div class="field wide"><label for="x-headers">Headers (Name: value, one per line)</label>
        <textarea id="x-headers" rows="3" value=${headers} onInput=${(e) => setHeaders(e.currentTarget.value)}></textarea></div>
      <button type="submit" class="primary">Explain</button>
    </form>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${result && html`<div class="explain-result">
      <h2>Matched route</h2>
      ${mt ? html`<dl class="facts" id="matched">
          <dt>Route</dt><dd><a href=${`#/r/routes/edit/${mt.route_id}`}>${mt.route_id}</a>${mt.name ? ` (${mt.name})` : ''}</dd>
          <dt>Matched uri</dt><dd>${mt.matched_uri || ''}</dd>
          ${mt.matched_host && html`<dt>Matched host</dt><dd>${mt.matched_host}</dd>`}
          ${mt.service_id && html`<dt>Service</dt><dd>${mt.service_id}</dd>`}
          <dt>Upstream</dt><dd>${mt.upstream ? html`${mt.upstream.key}${mt.upstream.type ? ` · ${mt.upstream.type}` : ''}
            ${(mt.upstream.nodes || []).map((n) => html`<span class="tag">${n.host}:${n.port} (weight ${n.weight})</span>`)}` : 'none'}</dd>
          <dt>Plugin chain</dt><dd>${mt.plugins && mt.plugins.length
            ? html`<ol class="chain">${mt.plugins.map((p) => html`<li>${p.phase}: ${p.name} (${p.priority})</li>`)}</ol>` : 'no plugins'}</dd>
        </dl>` : html`<p id="matched" class="error">No route matches this request (404).</p>`}
      <h2>Candidates</h2>
      <table class="list"><thead><tr><th scope="col">Route</th><th scope="col">Result</th><th scope="col">Why</th></tr></thead>
        <tbody>${(result.candidates || []).map((c) => html`<tr>
          <td>${c.route_id}${c.name ? ` (${c.name})` : ''}</td><td><span class=${`tag ${c.result.replace(' ', '-')}`}>${c.result}</span></td>
          <td><ul class="reasons">${(c.reasons || []).map((r) => html`<li>${r}</li>`)}</ul></td></tr>`)}
          ${(result.candidates || []).length === 0 && html`<tr><td colspan="3" class="empty">No route's uri matches the path.</td></tr>`}
        </tbody></table>
      <details><summary>Raw answer</summary><pre>${JSON.stringify(result, null, 2)}</pre></details>
    </div>`}
  </section>`;
}
