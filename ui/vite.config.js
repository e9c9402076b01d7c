// The dashboard's build: `npm ci && npm run build` writes ../pylon/admin/ui_dist (committed,
// so `pip install` needs no npm) with fixed file names and no inline script (the server's
// Content-Security-Policy allows only same-origin files).
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/ui/',
  build: {
    outDir: '../pylon/admin/ui_dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    modulePreload: { polyfill: false },
    reportCompressedSize: true,
    rollupOptions: {
      output: {
        entryFileNames: 'assets/app.js',
        chunkFileNames: 'assets/[name].js',
        assetFileNames: 'assets/[name][extname]',
      },
    },
  },
});
