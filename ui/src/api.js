// Calls to the Admin API and the dashboard's own endpoints. The session is an HttpOnly
// cookie (the page never sees the Admin API key); every write carries the CSRF token the
// sign-in answered.
export const ADMIN = '/apisix/admin';

let csrf = '';
let onExpired = () => {};

export function setSession(token, expired) {
  csrf = token || '';
  if (expired) onExpired = expired;
}

export async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET') headers['X-CSRF-Token'] = csrf;
  let r;
  try {
    r = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    return { status: 0, ok: false, data: { error_msg: `cannot reach the node: ${e.message}` } };
  }
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error_msg: text };
  }
  if (r.status === 401 && !path.startsWith('/ui/api/session')) onExpired();
  return { status: r.status, ok: r.ok, data };
}

export function errorText(res) {
  const d = res.data;
  if (d && typeof d === 'object' && d.error_msg) {
    return d.description ? `${d.error_msg}: ${d.description}` : d.error_msg;
  }
  return `HTTP ${res.status}`;
}

/** The id of an Admin API list entry, from its key (/apisix/<kind>/<id...>). */
export function idOf(kind, item) {
  const key = item.key || '';
  if (kind === 'credentials') return key.split('/credentials/')[1] || '';
  const prefix = `/apisix/${kind}/`;
  return key.startsWith(prefix) ? key.slice(prefix.length) : key;
}

export function label(name) {
  const s = name.replace(/_/g, ' ');
  return s === 'ssls' ? 'SSLs' : s.charAt(0).toUpperCase() + s.slice(1);
}
