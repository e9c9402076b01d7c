// Every resource kind: a list (search, paging, delete with the reference check and
// `force`) and an editor (the schema form beside a raw JSON / YAML editor).
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { ADMIN, call, errorText, idOf, label } from './api.js';
import { fieldOfError, SchemaForm } from './form.js';
import { loadYaml, parseRaw, RawEditor, show } from './raw.js';
import { Pager, Search } from './widgets.js';

const PAGE = 20;

function summary(kind, v) {
  if (!v || typeof v !== 'object') return '';
  if (kind === 'routes' || kind === 'stream_routes') {
    const uris = v.uri ? [v.uri] : v.uris || [];
    return [...uris, v.upstream_id ? `upstream ${v.upstream_id}` : '',
      v.service_id ? `service ${v.service_id}` : ''].filter(Boolean).join(' · ');
  }
  if (kind === 'upstreams' && v.nodes) {
    const nodes = Array.isArray(v.nodes) ? v.nodes.map((n) => `${n.host}:${n.port}`) : Object.keys(v.nodes);
    return `${v.type || 'roundrobin'} · ${nodes.join(', ')}`;
  }
  if (kind === 'ssls') return (v.snis || [v.sni]).filter(Boolean).join(', ');
  if (v.plugins) return Object.keys(v.plugins).join(', ');
  return '';
}

/** base: the collection's Admin API path; kind: its schema name. */
export function ResourceList({ kind, base, hrefBase, session, title, saved }) {
  const [page, setPage] = useState(1);
  const [search, setSearch] = useState('');
  const [data, setData] = useState(null);
  const [error, setError] = useState('');
  const [confirm, setConfirm] = useState(null);
  const [notice, setNotice] = useState(saved ? `Saved ${saved}.` : '');
  const viewer = session.role === 'viewer';
  const local = kind === 'consumers' || kind === 'credentials' || kind === 'secrets'
    || kind === 'plugin_metadata';

  const load = async () => {
    const qs = local ? '' : `?page=${page}&page_size=${PAGE}${search ? `&name=${encodeURIComponent(search)}` : ''}`;
    const res = await call('GET', base + qs);
    if (!res.ok) { setError(errorText(res)); setData({ list: [], total: 0 }); return; }
    setError('');
    let list = (res.data && res.data.list) || [];
    let total = (res.data && res.data.total) || list.length;
    if (local) {
      list = list.filter((it) => !search || JSON.stringify([idOf(kind, it), it.value]).includes(search));
      total = list.length;
      list = list.slice((page - 1) * PAGE, page * PAGE);
    }
    setData({ list, total });
  };
  useEffect(() => { load(); }, [base, page, search]);

  const remove = async (id, force) => {
    const res = await call('DELETE', `${base}/${id}${force ? '?force=true' : ''}`);
    if (res.ok) { setConfirm(null); setNotice(`Deleted ${id}.`); load(); return; }
    setConfirm({ id, error: errorText(res), referenced: /still using|in use|referenced/i.test(errorText(res)) });
  };

  return html`<section aria-labelledby="list-title">
    <div class="bar">
      <h1 id="list-title">${title || label(kind)}</h1>
      ${!viewer && html`<a class="button primary" href=${`${hrefBase}/new`}>Create</a>`}
    </div>
    <${Search} id="search" label=${local ? 'Search' : 'Search by name'} onSearch=${(v) => { setPage(1); setSearch(v); }} />
    ${notice && html`<p class="notice" role="status">${notice}</p>`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${data === null ? html`<p>Loading…</p>` : html`
    <table class="list">
      <thead><tr><th scope="col">ID</th><th scope="col">Name</th><th scope="col">Summary</th>
        <th scope="col">Updated</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>
        ${data.list.length === 0 && html`<tr><td colspan="5" class="empty">Nothing here yet.</td></tr>`}
        ${data.list.map((it) => {
          const id = idOf(kind, it);
          const v = it.value || {};
          return html`<tr key=${id} data-id=${id}>
            <td><a href=${`${hrefBase}/edit/${id}`}>${id}</a></td>
            <td>${v.name || v.username || v.desc || ''}</td>
            <td class="summary">${summary(kind, v)}</td>
            <td>${v.update_time ? new Date(v.update_time * 1000).toLocaleString() : ''}</td>
            <td class="actions">
              <a class="button" href=${`${hrefBase}/edit/${id}`}>${viewer ? 'View' : 'Edit'}</a>
              ${!viewer && html`<button type="button" class="danger" onClick=${() => setConfirm({ id })}
                aria-label=${`Delete ${id}`}>Delete</button>`}
            </td>
          </tr>`;
        })}
      </tbody>
    </table>
    <${Pager} page=${page} size=${PAGE} total=${data.total} setPage=${setPage} />`}
    ${confirm && html`<div class="confirm" role="alertdialog" aria-labelledby="confirm-text">
      <p id="confirm-text">Delete ${label(kind).replace(/s$/, '').toLowerCase()} <strong>${confirm.id}</strong>?</p>
      ${confirm.error && html`<p class="error" role="alert">${confirm.error}</p>`}
      <button type="button" class="danger" onClick=${() => remove(confirm.id, false)}>Delete</button>
      ${confirm.referenced && html`<button type="button" class="danger" onClick=${() => remove(confirm.id, true)}>Delete anyway (force)</button>`}
      <button type="button" onClick=${() => setConfirm(null)}>Cancel</button>
    </div>`}
  </section>`;
}

function clean(v) {
  const out = { ...(v || {}) };
  delete out.create_time;
  delete out.update_time;
  return out;
}

/** Create (id null) or edit one object. */
export function Editor({ kind, base, hrefBase, id, session, spec, children }) {
  const viewer = session.role === 'viewer';
  const [schema, setSchema] = useState(null);
  const [value, setValue] = useState(null);
  const [newId, setNewId] = useState('');
  const [format, setFormat] = useState('json');
  const [text, setText] = useState('');
  const [rawBad, setRawBad] = useState('');
  const [errors, setErrors] = useState({});
  const [top, setTop] = useState('');
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    (async () => {
      const s = await call('GET', `${ADMIN}/schema/${kind}`);
      setSchema(s.ok ? s.data : { properties: {} });
      if (id) {
        const r = await call('GET', `${base}/${id}`);
        if (!r.ok) { setTop(errorText(r)); setValue({}); return; }
        const v = clean(r.data.value);
        if (kind !== 'consumers') delete v.id;
        setValue(v);
        setText(show(v, 'json'));
      } else {
        setValue({});
        setText('{}');
      }
    })();
  }, [kind, id, base]);

  const fromForm = (v) => { setValue(v); setText(show(v, format)); setRawBad(''); };
  const fromRaw = (t) => {
    setText(t);
    const v = parseRaw(t, format);
    if (v instanceof Error) { setRawBad(v.message); return; }
    setValue(v);
    setRawBad('');
  };
  const switchFormat = async (f) => {
    if (rawBad || f === format) return;
    if (f === 'yaml') {
      try { await loadYaml(); } catch (err) { setTop(`cannot load the YAML editor: ${err.message}`); return; }
    }
    setFormat(f);
    setText(show(value, f));
  };

  const save = async (e) => {
    e.preventDefault();
    if (rawBad) { setTop(`Not saved: the raw editor's text is ${rawBad}.`); return; }
    setBusy(true);
    let res;
    const oid = id || newId.trim();
    if (kind === 'consumers') res = await call('PUT', base, value);
    else if (oid) res = await call('PUT', `${base}/${oid}`, value);
    else res = await call('POST', base, value);
    setBusy(false);
    if (res.ok) {
      location.hash = `${hrefBase}?saved=${encodeURIComponent(idOf(kind, res.data || {}) || oid)}`;
      return;
    }
    const msg = errorText(res);
    const f = fieldOfError(msg, schema);
    setErrors(f ? { [f]: msg } : {});
    setTop(f ? `Not saved: see the field ${f}.` : msg);
  };

  if (schema === null || value === null) return html`<p>Loading…</p>`;
  const idLabel = spec && spec.two_part_id ? 'ID (manager/id, e.g. vault/1)'
    : kind === 'plugin_metadata' ? 'Plugin name' : 'ID';
  const needsId = kind === 'plugin_metadata' || kind === 'credentials' || (spec && !spec.post && kind !== 'consumers');
  return html`<section aria-labelledby="editor-title">
    <div class="bar">
      <h1 id="editor-title">${id ? `${viewer ? '' : 'Edit '}${label(kind).replace(/s$/, '')} ${id}` : `New ${label(kind).replace(/s$/, '').toLowerCase()}`}</h1>
      <a class="button" href=${hrefBase}>Back to the list</a>
    </div>
    ${viewer && html`<p class="notice">Read-only: your key has the viewer role.</p>`}
    <form onSubmit=${save} aria-describedby=${top ? 'form-error' : undefined}>
      ${top && html`<p id="form-error" class="error" role="alert">${top}</p>`}
      ${!id && kind !== 'consumers' && html`<div class="field">
        <label for="f-__id">${idLabel}${needsId ? ' *' : ' (empty: generated)'}</label>
        <input id="f-__id" type="text" value=${newId} onInput=${(e) => setNewId(e.currentTarget.value)} required=${needsId} />
      </div>`}
      <div class="editor">
        <fieldset class="pane">
          <legend>Form</legend>
          <${SchemaForm} schema=${schema} value=${value} onChange=${fromForm} errors=${errors} readOnly=${viewer}
            pluginType=${kind === 'consumers' || kind === 'credentials' ? 'consumer' : ''} />
        </fieldset>
        <${RawEditor} format=${format} text=${text} bad=${rawBad} readOnly=${viewer}
          onText=${fromRaw} onFormat=${switchFormat} />
      </div>
      ${!viewer && html`<div class="bar"><button type="submit" class="primary" disabled=${busy}>Save</button></div>`}
    </form>
    ${children}
  </section>`;
}
