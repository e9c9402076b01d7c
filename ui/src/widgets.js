// Small pieces the list pages share: the search form and the pager.
import { html } from 'htm/preact';
import { useState } from 'preact/hooks';

export function Search({ id, label, onSearch }) {
  const [q, setQ] = useState('');
  return html`<form class="search" role="search" onSubmit=${(e) => { e.preventDefault(); onSearch(q.trim()); }}>
    <label for=${id}>${label}</label>
    <input id=${id} type="search" value=${q} onInput=${(e) => setQ(e.currentTarget.value)} />
    <button type="submit">Search</button>
  </form>`;
}

export function Pager({ page, size, total, setPage }) {
  const pages = Math.max(1, Math.ceil(total / size));
  return html`<nav class="pager" aria-label="Pages">
    <button type="button" disabled=${page <= 1} onClick=${() => setPage(page - 1)}>Previous</button>
    <span>Page ${page} of ${pages} · ${total} in all</span>
    <button type="button" disabled=${page >= pages} onClick=${() => setPage(page + 1)}>Next</button>
  </nav>`;
}
