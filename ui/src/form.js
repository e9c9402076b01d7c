// A form generated from a resource's JSON Schema (the one the Admin API publishes): one
// control per top-level property -- text, number, checkbox, select for enums, one-per-line
// lists, checkboxes for enum lists -- and a JSON editor for the nested ones.
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { ADMIN, call } from './api.js';

const FIRST = ['username', 'name', 'desc', 'uri', 'uris', 'host', 'hosts', 'methods',
  'upstream_id', 'service_id', 'plugin_config_id', 'group_id', 'type', 'nodes', 'scheme',
  'snis', 'cert', 'key', 'content', 'plugins', 'upstream'];
const HIDDEN = new Set(['id', 'create_time', 'update_time']);
const LONG = new Set(['cert', 'key', 'content', 'certs', 'keys']);

function primitive(s) {
  return s && (s.type === 'string' || s.type === 'integer' || s.type === 'number');
}

/** What control a property gets. */
export function controlOf(s) {
  if (!s || typeof s !== 'object') return 'json';
  if (Array.isArray(s.enum)) return 'enum';
  const alts = s.anyOf || s.oneOf;
  if (!s.type && Array.isArray(alts) && alts.every(primitive)) return 'text';
  if (s.type === 'string') return 'text';
  if (s.type === 'integer' || s.type === 'number') return 'number';
  if (s.type === 'boolean') return 'bool';
  if (s.type === 'array' && s.items) {
    if (Array.isArray(s.items.enum)) return 'enumlist';
    if (s.items.type === 'string') return 'list';
  }
  return 'json';
}

/** ``all``: every field up front (a plugin's form), but ``_meta`` and the like. */
export function orderedFields(schema, all = false) {
  const props = (schema && schema.properties) || {};
  const names = Object.keys(props).filter((n) => !HIDDEN.has(n));
  const required = new Set((schema && schema.required) || []);
  const rank = (n) => (required.has(n) ? -1 : FIRST.includes(n) ? FIRST.indexOf(n) : 1000);
  names.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const front = all ? (n) => !n.startsWith('_') : (n) => rank(n) < 1000;
  const common = names.filter(front);
  const more = names.filter((n) => !front(n));
  return { props, required, common, more };
}

function JsonField({ id, value, onChange, invalid, describedBy, placeholder }) {
  const [text, setText] = useState(value === undefined ? '' : JSON.stringify(value, null, 2));
  const [bad, setBad] = useState('');
  useEffect(() => {
    let same = false;
    try {
      same = text.trim() ? JSON.stringify(JSON.parse(text)) === JSON.stringify(value) : value === undefined;
    } catch { /* being edited */ }
    if (!same && !bad) setText(value === undefined ? '' : JSON.stringify(value, null, 2));
  }, [JSON.stringify(value)]);
  const input = (e) => {
    const t = e.currentTarget.value;
    setText(t);
    if (!t.trim()) { setBad(''); onChange(undefined); return; }
    try { onChange(JSON.parse(t)); setBad(''); } catch (err) { setBad(`not valid JSON: ${err.message}`); }
  };
  return html`<textarea id=${id} class="json" rows=${Math.min(12, Math.max(3, text.split('\n').length))}
      value=${text} onInput=${input} spellcheck="false" placeholder=${placeholder || 'JSON'}
      aria-invalid=${invalid || bad ? 'true' : 'false'} aria-describedby=${describedBy}></textarea>
    ${bad && html`<p class="hint bad" role="status">${bad}</p>`}`;
}

function Field({ name, schema, value, set, error, readOnly, required, prefix }) {
  const id = `f-${prefix}${name}`;
  const errId = `err-${prefix}${name}`;
  const kind = controlOf(schema);
  const desc = schema && schema.description;
  const common = { id, disabled: readOnly, 'aria-invalid': error ? 'true' : 'false',
    'aria-describedby': error ? errId : undefined };
  let control;
  if (kind === 'enum') {
    const opts = schema.enum;
    const idx = opts.findIndex((o) => o === value);
    control = html`<select ...${common} value=${idx < 0 ? '' : String(idx)}
        onChange=${(e) => set(e.currentTarget.value === '' ? undefined : opts[Number(e.currentTarget.value)])}>
      <option value="">${schema.default !== undefined ? `(default: ${schema.default})` : '(unset)'}</option>
      ${opts.map((o, i) => html`<option value=${String(i)}>${String(o)}</option>`)}
    </select>`;
  } else if (kind === 'text') {
    const onInput = (e) => set(e.currentTarget.value === '' ? undefined : e.currentTarget.value);
    control = LONG.has(name) || (schema.maxLength || 0) > 4096
      ? html`<textarea ...${common} rows="4" value=${value ?? ''} onInput=${onInput}></textarea>`
      : html`<input ...${common} type="text" value=${value ?? ''} onInput=${onInput} />`;
  } else if (kind === 'number') {
    control = html`<input ...${common} type="number" value=${value ?? ''}
      step=${schema.type === 'integer' ? '1' : 'any'}
      onInput=${(e) => { const v = e.currentTarget.value; set(v === '' ? undefined : Number(v)); }} />`;
  } else if (kind === 'bool') {
    control = html`<input ...${common} type="checkbox" checked=${!!value}
      onChange=${(e) => set(e.currentTarget.checked ? true : undefined)} />`;
  } else if (kind === 'list') {
    control = html`<textarea ...${common} rows="3" value=${Array.isArray(value) ? value.join('\n') : ''}
      onInput=${(e) => { const l = e.currentTarget.value.split('\n').map((x) => x.trim()).filter(Boolean); set(l.length ? l : undefined); }}></textarea>
      <p class="hint">One per line.</p>`;
  } else if (kind === 'enumlist') {
    const chosen = Array.isArray(value) ? value : [];
    control = html`<div class="checks" role="group" aria-labelledby=${`lbl-${prefix}${name}`}>
      ${schema.items.enum.map((o) => html`<label class="check"><input type="checkbox" disabled=${readOnly}
        checked=${chosen.includes(o)} onChange=${(e) => {
          const next = e.currentTarget.checked ? [...chosen, o] : chosen.filter((x) => x !== o);
          set(next.length ? next : undefined);
        }} /> ${String(o)}</label>`)}
    </div>`;
  } else {
    control = html`<${JsonField} id=${id} value=${value} onChange=${set} invalid=${!!error}
      describedBy=${error ? errId : undefined}
      placeholder=${name === 'nodes' ? '{"127.0.0.1:1980": 1}' : 'JSON'} />`;
  }
  return html`<div class=${`field${error ? ' has-error' : ''}`} data-field=${prefix + name}>
    <label id=${`lbl-${prefix}${name}`} for=${kind === 'enumlist' ? undefined : id}>${name}${required ? ' *' : ''}</label>
    ${control}
    ${desc && html`<p class="hint">${desc}</p>`}
    ${error && html`<p id=${errId} class="field-error" role="alert">${error}</p>`}
  </div>`;
}

export function SchemaForm({ schema, value, onChange, errors, readOnly, prefix = '', pluginType }) {
  const { props, required, common, more } = orderedFields(schema, !!prefix);
  const set = (name) => (v) => {
    const next = { ...value };
    if (v === undefined) delete next[name]; else next[name] = v;
    onChange(next);
  };
  const render = (n) => (n === 'plugins' && !prefix
    ? html`<${PluginsField} key=${n} value=${value[n]} set=${set(n)} error=${errors[n]}
        readOnly=${readOnly} schemaType=${pluginType} />`
    : html`<${Field} key=${n} name=${n} schema=${props[n]} value=${value[n]} prefix=${prefix}
        set=${set(n)} error=${errors[n]} readOnly=${readOnly} required=${required.has(n)} />`);
  const openMore = more.some((n) => value[n] !== undefined || errors[n]);
  return html`<div class="schema-form">
    ${common.map(render)}
    ${more.length > 0 && html`<details open=${openMore}><summary>More fields (${more.length})</summary>
      ${more.map(render)}</details>`}
    ${!common.length && !more.length && html`<p class="hint">No fixed fields: use the JSON editor.</p>`}
  </div>`;
}

/** ``plugins``: one form per plugin, from the plugin's own schema (``GET
 * /apisix/admin/plugins/<name>``, the consumer schema for consumers and credentials). */
function PluginsField({ value, set, error, readOnly, schemaType }) {
  const plugins = value && typeof value === 'object' ? value : {};
  const [names, setNames] = useState([]);
  const [schemas, setSchemas] = useState({});
  useEffect(() => {
    call('GET', `${ADMIN}/plugins/list`).then((r) => setNames(r.ok && Array.isArray(r.data) ? r.data : []));
  }, []);
  useEffect(() => {
    for (const n of Object.keys(plugins)) {
      if (schemas[n] !== undefined) continue;
      schemas[n] = null;
      (async () => {
        let r = schemaType ? await call('GET', `${ADMIN}/plugins/${n}?schema_type=${schemaType}`) : null;
        if (!r || !r.ok) r = await call('GET', `${ADMIN}/plugins/${n}`);   // no consumer schema
        setSchemas((s) => ({ ...s, [n]: r.ok ? r.data : { properties: {} } }));
      })();
    }
  }, [Object.keys(plugins).join(',')]);
  const setOne = (n) => (v) => set({ ...plugins, [n]: v });
  const remove = (n) => {
    const next = { ...plugins };
    delete next[n];
    set(Object.keys(next).length ? next : undefined);
  };
  const add = (e) => {
    const n = e.currentTarget.value;
    e.currentTarget.value = '';
    if (n && !plugins[n]) set({ ...plugins, [n]: {} });
  };
  return html`<div class=${`field${error ? ' has-error' : ''}`} data-field="plugins">
    <span class="label" id="lbl-plugins">plugins</span>
    ${Object.keys(plugins).length === 0 && html`<p class="hint">No plugin.</p>`}
    ${Object.keys(plugins).map((n) => html`<fieldset class="plugin" key=${n} data-plugin=${n}>
      <legend>${n}</legend>
      ${schemas[n] ? html`<${SchemaForm} schema=${schemas[n]} prefix=${`${n}.`} readOnly=${readOnly}
          value=${plugins[n] && typeof plugins[n] === 'object' ? plugins[n] : {}} onChange=${setOne(n)} errors=${{}} />`
        : html`<p class="hint">Loading the schema…</p>`}
      ${!readOnly && html`<button type="button" class="danger" onClick=${() => remove(n)}
        aria-label=${`Remove plugin ${n}`}>Remove</button>`}
    </fieldset>`)}
    ${!readOnly && html`<label for="add-plugin" class="inline">Add a plugin</label>
      <select id="add-plugin" onChange=${add}>
        <option value="">(choose)</option>
        ${names.filter((n) => !plugins[n]).map((n) => html`<option value=${n}>${n}</option>`)}
      </select>`}
    ${error && html`<p id="err-plugins" class="field-error" role="alert">${error}</p>`}
  </div>`;
}

/** The top-level field an Admin API error message is about, or null (shown at the top). */
export function fieldOfError(msg, schema) {
  const props = (schema && schema.properties) || {};
  const m = /property "([^"]+)"/.exec(msg || '');
  if (m && props[m[1]]) return m[1];
  const ref = /failed to fetch (\w+) info by/.exec(msg || '');   // a reference to nothing
  if (ref) {
    const f = ref[1] === 'consumer_group' ? 'group_id' : `${ref[1]}_id`;
    if (props[f]) return f;
  }
  const refs = [['upstream_id', /upstream id|upstream_id/], ['service_id', /service id|service_id/],
    ['plugin_config_id', /plugin_config|plugin config/], ['group_id', /consumer group|group_id/],
    ['plugins', /plugin/]];
  for (const [f, re] of refs) if (props[f] && re.test(msg || '')) return f;
  return null;
}
