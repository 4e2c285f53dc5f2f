// Bundles the pages into dispatch/static (git-ignored, shipped as package data).
// Plain ES2017 scripts (no modules) so that WeChat's and older phone browsers run them;
// hashed names so that those browsers' caches never serve a stale bundle.
import { build } from 'esbuild';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'dispatch', 'static');
const pages = {
  console: { entry: 'src/console/main.js', html: 'src/console.html', file: 'console.html' },
  phone: { entry: 'src/phone/main.js', html: 'src/m.html', file: 'm.html' },
  reports: { entry: 'src/reports/main.js', html: 'src/reports.html', file: 'reports.html' },
};

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const result = await build({
  absWorkingDir: here,
  entryPoints: Object.fromEntries(Object.entries(pages).map(([name, p]) => [name, p.entry])),
  bundle: true,
  minify: true,
  format: 'iife',
  target: 'es2017',
  outdir: join(out, 'assets'),
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  loader: { '.png': 'file', '.svg': 'file' },
  define: { 'process.env.NODE_ENV': '"production"' },
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning',
});

const outputs = result.metafile.outputs;
for (const [name, page] of Object.entries(pages)) {
  const entry = `${page.entry}`;
  const js = Object.keys(outputs).find((file) => outputs[file].entryPoint === entry);
  const css = outputs[js].cssBundle;
  const url = (file) => '/static/' + relative(out, join(here, file)).split('\\').join('/');
  const html = readFileSync(join(here, page.html), 'utf8')
    .replace('{{js}}', url(js))
    .replace('{{css}}', url(css));
  writeFileSync(join(out, page.file), html);
  const size = (file) => (outputs[file].bytes / 1024).toFixed(1) + ' KiB';
  console.log(`${name}: ${url(js)} ${size(js)}, ${url(css)} ${size(css)}`);
}
