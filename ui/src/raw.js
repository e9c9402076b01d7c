// The raw editor beside the form: the whole object as JSON or as YAML (a toggle). Both are
// views of one value: the form and the raw text stay in sync either way, and text that does
// not parse (a syntax error, or not a mapping) is reported here and never sent.
import { html } from 'htm/preact';

let yaml = null;

/** The YAML library, loaded on first use (a separate chunk: see yaml.js). */
export async function loadYaml() {
  if (!yaml) yaml = await import('./yaml.js');
  return yaml;
}

/** A value as the editor shows it in ``format`` ('json' or 'yaml', loaded first). */
export function show(value, format) {
  if (format === 'yaml') {
    // lineWidth 0: no folding of long strings (certificates stay block literals)
    return yaml.stringify(value, { lineWidth: 0, aliasDuplicateObjects: false });
  }
  return JSON.stringify(value, null, 2);
}

/** The text parsed as ``format``: the object, or an Error saying why not. */
export function parseRaw(text, format) {
  const name = format === 'yaml' ? 'YAML' : 'JSON';
  let v;
  try {
    v = format === 'yaml' ? yaml.parse(text) : JSON.parse(text);
  } catch (err) {
    // the yaml library's message ends with a code frame: its first line names the place
    return new Error(`not valid ${name}: ${String(err.message).split('\n')[0]}`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) {
    return new Error(`not valid ${name}: the object must be a mapping`);
  }
  return v;
}

/** The raw pane: a format toggle and the text; ``bad`` is the parse error shown, if any. */
export function RawEditor({ format, text, bad, readOnly, onText, onFormat }) {
  const name = format === 'yaml' ? 'YAML' : 'JSON';
  const radio = (f, title) => html`<label class="check"><input type="radio" name="raw-format"
      value=${f} checked=${format === f} disabled=${!!bad && format !== f}
      onChange=${() => onFormat(f)} /> ${title}</label>`;
  return html`<fieldset class="pane">
    <legend>Raw</legend>
    <div class="checks" role="radiogroup" aria-label="Raw format">
      ${radio('json', 'JSON')}${radio('yaml', 'YAML')}
    </div>
    <label for="raw-text" class="sr-only">Raw ${name}</label>
    <textarea id="raw-text" class="json raw" value=${text} onInput=${(e) => onText(e.currentTarget.value)}
      readOnly=${readOnly} spellcheck="false" aria-invalid=${bad ? 'true' : 'false'}
      aria-describedby=${bad ? 'raw-error' : undefined}></textarea>
    ${bad && html`<p id="raw-error" class="hint bad" role="alert">${bad}</p>`}
    ${bad && html`<p class="hint">Fix it to switch format or save.</p>`}
  </fieldset>`;
}
