// The YAML library, in a chunk of its own (assets/yaml.js): raw.js loads it the first time
// YAML is chosen, so the first load of the dashboard does not carry it.
export { parse, stringify } from 'yaml';
