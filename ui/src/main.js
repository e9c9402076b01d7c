// The Pylon dashboard: sign-in, navigation (hash routes), and the pages.
import { html } from 'htm/preact';
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ADMIN, call, errorText, label, setSession } from './api.js';
import { Audit } from './audit.js';
import { Explain } from './explain.js';
import { Live } from './live.js';
import { Editor, ResourceList } from './resources.js';
import './style.css';

function useHash() {
  const [hash, setHash] = useState(location.hash || '#/r/routes');
  useEffect(() => {
    const on = () => setHash(location.hash || '#/r/routes');
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return hash;
}

function SignIn({ onIn, expired, keyless }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState(!expired ? ''
    : `Your session ended: ${keyless ? 'open the dashboard' : 'sign in'} again.`);
  const [busy, setBusy] = useState(false);
  const input = useRef(null);
  useEffect(() => { if (input.current) input.current.focus(); }, []);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    const res = await call('POST', '/ui/api/session', keyless ? {} : { key });
    setBusy(false);
    setKey('');
    if (res.ok) onIn(res.data);
    else setError(res.status === 401 ? 'Wrong key.' : errorText(res));
  };
  return html`<main class="signin">
    <form onSubmit=${submit} aria-labelledby="signin-title">
      <h1 id="signin-title">Pylon dashboard</h1>
      ${keyless ? html`<p>${NO_KEY}</p>` : html`<p>Sign in with an Admin API key
        (<code>deployment.admin.admin_key</code>). The key is exchanged for a session; it is
        not kept in this page.</p>`}
      ${error && html`<p class="error" role="alert">${error}</p>`}
      ${!keyless && html`<div class="field">
        <label for="key">Admin API key</label>
        <input id="key" ref=${input} type="password" autocomplete="current-password" value=${key}
          onInput=${(e) => setKey(e.currentTarget.value)} required />
      </div>`}
      <button type="submit" class="primary" disabled=${busy}>${keyless ? 'Open the dashboard' : 'Sign in'}</button>
    </form>
  </main>`;
}

const NO_KEY = 'This node has no Admin API key (deployment.admin.admin_key_required: false): '
  + 'anyone allowed to reach the Admin API can change it.';

function page(hash, session) {
  const [path, query] = hash.replace(/^#/, '').split('?');
  const saved = new URLSearchParams(query || '').get('saved') || '';
  const segs = path.split('/').filter(Boolean).map(decodeURIComponent);
  const specs = Object.fromEntries(session.kinds.map((k) => [k.name, k]));
  if (segs[0] === 'explain') return html`<${Explain} />`;
  if (segs[0] === 'live') return html`<${Live} />`;
  if (segs[0] === 'audit') return html`<${Audit} />`;
  if (segs[0] === 'c' && segs[1]) {          // a consumer's credentials
    const user = segs[1];
    const base = `${ADMIN}/consumers/${encodeURIComponent(user)}/credentials`;
    const hrefBase = `#/c/${encodeURIComponent(user)}`;
    if (segs[2] === 'new' || segs[2] === 'edit') {
      return html`<${Editor} key=${hash} kind="credentials" base=${base} hrefBase=${hrefBase}
        id=${segs[2] === 'edit' ? segs.slice(3).join('/') : null} session=${session} spec=${{ post: false }} />`;
    }
    return consumer(user, session, specs, saved);
  }
  const kind = segs[0] === 'r' && specs[segs[1]] ? segs[1] : 'routes';
  const base = `${ADMIN}/${kind}`;
  const hrefBase = `#/r/${kind}`;
  if (segs[2] === 'new') {
    return html`<${Editor} key=${hash} kind=${kind} base=${base} hrefBase=${hrefBase} id=${null} session=${session} spec=${specs[kind]} />`;
  }
  if (segs[2] === 'edit' && segs[3]) {
    const id = segs.slice(3).join('/');
    if (kind === 'consumers') return consumer(id, session, specs, '');
    return html`<${Editor} key=${hash} kind=${kind} base=${base} hrefBase=${hrefBase} id=${id} session=${session} spec=${specs[kind]} />`;
  }
  return html`<${ResourceList} key=${hash} kind=${kind} base=${base} hrefBase=${hrefBase} session=${session} saved=${saved} />`;
}

function consumer(user, session, specs, saved) {
  const cbase = `${ADMIN}/consumers/${encodeURIComponent(user)}/credentials`;
  return html`<${Editor} key=${`consumer-${user}`} kind="consumers" base=${`${ADMIN}/consumers`}
      hrefBase="#/r/consumers" id=${user} session=${session} spec=${specs.consumers}>
    <${ResourceList} kind="credentials" base=${cbase} hrefBase=${`#/c/${encodeURIComponent(user)}`}
      session=${session} title=${`Credentials of ${user}`} saved=${saved} />
  <//>`;
}

function Shell({ session, onOut }) {
  const hash = useHash();
  const current = hash.replace(/^#/, '').split('?')[0];
  const link = (href, text) => {
    const here = current === href.slice(1) || current.startsWith(`${href.slice(1)}/`);
    return html`<li><a href=${href} aria-current=${here ? 'page' : undefined}>${text}</a></li>`;
  };
  const signOut = async () => {
    await call('DELETE', '/ui/api/session');
    onOut();
  };
  return html`<div class="shell">
    <a class="skip" href="#main">Skip to content</a>
    <header class="top">
      <span class="brand">Pylon</span>
      <span class="who">Signed in as <strong>${session.name}</strong>
        <span class=${`role ${session.role}`}>${session.role}</span></span>
      <button type="button" onClick=${signOut}>Sign out</button>
    </header>
    <nav class="side" aria-label="Sections">
      <h2>Resources</h2>
      <ul>${session.kinds.map((k) => link(`#/r/${k.name}`, label(k.name)))}</ul>
      <h2>Operate</h2>
      <ul>${link('#/live', 'Live')}${link('#/explain', 'Explain')}${link('#/audit', 'Audit log')}</ul>
    </nav>
    <main id="main" tabindex="-1">
      ${session.key_required === false && html`<p class="notice warn">${NO_KEY}</p>`}
      ${page(hash, session)}</main>
  </div>`;
}

function App() {
  const [session, setS] = useState(undefined);
  const [expired, setExpired] = useState(false);
  const [keyless, setKeyless] = useState(false);
  const signedIn = (s) => {
    setSession(s.csrf, () => { setExpired(true); setS(null); });
    setExpired(false);
    setKeyless(s.key_required === false);
    setS(s);
  };
  useEffect(() => {
    (async () => {
      const res = await call('GET', '/ui/api/session');
      if (res.ok) { signedIn(res.data); return; }
      // a node without Admin API keys: open a session at once, nothing to ask
      const how = await call('GET', '/ui/api/sign-in');
      const open = how.ok && how.data && how.data.key_required === false;
      setKeyless(open);
      const opened = open ? await call('POST', '/ui/api/session', {}) : null;
      if (opened && opened.ok) signedIn(opened.data); else setS(null);
    })();
  }, []);
  if (session === undefined) return html`<p class="loading">Loading…</p>`;
  if (session === null) return html`<${SignIn} onIn=${signedIn} expired=${expired} keyless=${keyless} />`;
  return html`<${Shell} session=${session} onOut=${() => { setSession(''); setS(null); }} />`;
}

render(html`<${App} />`, document.getElementById('app'));
