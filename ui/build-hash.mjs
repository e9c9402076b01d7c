// Records the hash of the dashboard's sources in the build (ui_dist/build.json):
// tests/ui/test_build.py recomputes it, so a source change without a rebuild fails the tests.
// The hash: SHA-256 over the sorted source files, each as "<path>\0<bytes>\0".
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('.', import.meta.url).pathname;
const TOP = ['index.html', 'package.json', 'package-lock.json', 'vite.config.js', 'build-hash.mjs'];

function walk(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

const files = [...TOP.map((n) => join(root, n)), ...walk(join(root, 'src'))]
  .map((p) => relative(root, p).split('\\').join('/'))
  .sort();
const h = createHash('sha256');
for (const f of files) {
  h.update(f + '\0');
  h.update(readFileSync(join(root, f)));
  h.update('\0');
}
const out = { source_sha256: h.digest('hex'), files };
writeFileSync(join(root, '../pylon/admin/ui_dist/build.json'), JSON.stringify(out, null, 2) + '\n');
console.log('ui_dist/build.json', out.source_sha256);
