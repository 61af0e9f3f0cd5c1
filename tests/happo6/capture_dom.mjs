#!/usr/bin/env node
// Captures a REAL happo 6 DOM snapshot with headless Chromium and prints a cypress_run.mjs plan.
//
// Usage: node capture_dom.mjs URL [component] [variant] > plan.json
// URL is e2e_app/page.html served over HTTP (any static server) with happo's browser bundle
// (node_modules/happo/dist/browser/main.js) at /happo-browser.js. Chromium: $CHROMIUM or
// /usr/bin/chromium.

import { execFileSync } from 'node:child_process';

const [url, component = 'Card', variant = 'default'] = process.argv.slice(2);
if (!url) {
  console.error('usage: node capture_dom.mjs URL [component] [variant]');
  process.exit(2);
}

const dom = execFileSync(
  process.env.CHROMIUM || '/usr/bin/chromium',
  [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--virtual-time-budget=5000',
    '--dump-dom',
    url,
  ],
  { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'ignore'] },
);
const match = dom.match(/data-happo-snapshot="([^"]*)"/);
if (!match) {
  console.error(`no data-happo-snapshot attribute in the page's DOM:\n${dom.slice(0, 2000)}`);
  process.exit(1);
}
const json = match[1]
  .replaceAll('&quot;', '"')
  .replaceAll('&lt;', '<')
  .replaceAll('&gt;', '>')
  .replaceAll('&nbsp;', '\u00a0')
  .replaceAll('&amp;', '&');
const { snapshot, base64Images } = JSON.parse(json);
const plan = {
  specs: [{ name: 'captured.cy.js', snapshots: [{ component, variant, ...snapshot }], base64Images }],
};
process.stdout.write(`${JSON.stringify(plan, null, 2)}\n`);
