#!/usr/bin/env node
// Stands in for `cypress run` under `happo -- <command>` (happo 6), without Cypress or a browser.
//
// It loads happo 6's Cypress task module exactly as a Cypress config's
// `setupNodeEvents(on) { happoTask.register(on) }` does (`import happoTask from
// 'happo/cypress/task'`) and emits, in Cypress' order, what a spec calling
// `cy.get(sel).happoScreenshot({component, variant})` produces in the plugin process:
//
//   before:spec(spec)                        -> task.handleBeforeSpec  (Controller.init: reads
//                                               HAPPO_E2E_PORT + HAPPO_CONFIG_FILE + HAPPO_API_KEY/
//                                               SECRET that the wrapper put in our env)
//   cy.task('happoGetIntegrationConfig')     -> {autoApplyPseudoStateAttributes, skip}
//                                               (once per run; skip = HAPPO_SKIP_FILE's items)
//   per snapshot, unless skipped:
//     [canvas inlining] cy.task('happoRegisterBase64Image', {base64Chunk, src, isFirst, isLast})
//                                               -> writes ./.happo-tmp/_inlined/<md5>.png
//     cy.task('happoRegisterSnapshot', {timestamp, component, variant, targets, html,
//             assetUrls, cssBlocks, htmlElementAttrs, bodyElementAttrs})
//   after:spec(spec, results)                -> task.handleAfterSpec   (Controller.finish:
//                                               asset package upload, snap-requests/bulk, then
//                                               POST http://localhost:$HAPPO_E2E_PORT/ with the ids)
//
// Usage: node cypress_run.mjs plan.json, where plan.json is
//   {"specs": [{"name": "a.cy.js", "snapshots": [<happoRegisterSnapshot argument>, ...],
//               "base64Images": [{"src": "/.happo-tmp/_inlined/x.png", "base64": "..."}]}]}
// and each snapshot is what happo's browser side (`takeDOMSnapshot`) returns plus component /
// variant / targets:
//   {"component": "Header", "variant": "default", "targets": ["chrome"] (optional),
//    "html": "<div ...>...</div>",
//    "assetUrls": [{"url": "/img/logo.png", "baseUrl": "http://app/page.html"}],
//    "cssBlocks": [{"key": "<md5 of css>", "content": "...", "baseUrl": "http://app/page.html"},
//                  {"key": "http://app/app.css", "href": "http://app/app.css",
//                   "baseUrl": "http://app/page.html"}],
//    "htmlElementAttrs": {"lang": "en"}, "bodyElementAttrs": {"class": "x"}}
// Module resolution: `happo/cypress/task` is resolved from $HAPPO6_MODULES (the installed
// node_modules folder) when set, else from ./node_modules in the cwd (NODE_PATH does not apply
// to ESM imports). The cwd matters too: `.happo-tmp/_inlined/` is written and archived there.

import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const modules = process.env.HAPPO6_MODULES || path.resolve('node_modules');
const resolve = createRequire(path.join(modules, 'noop.js')).resolve;
const { default: happoTask } = await import(pathToFileURL(resolve('happo/cypress/task')).href);

const plan = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const events = {};
const tasks = {};
happoTask.register((event, handler) => {
  if (event === 'task') {
    Object.assign(tasks, handler);
  } else {
    events[event] = handler;
  }
});
for (const name of ['before:spec', 'after:spec']) {
  if (typeof events[name] !== 'function') {
    throw new Error(`happo/cypress/task registered no ${name} handler`);
  }
}
for (const name of ['happoRegisterSnapshot', 'happoRegisterBase64Image', 'happoGetIntegrationConfig']) {
  if (typeof tasks[name] !== 'function') {
    throw new Error(`happo/cypress/task registered no ${name} task`);
  }
}

let integrationConfig = null;
for (const spec of plan.specs) {
  const specInfo = {
    name: spec.name,
    relative: `cypress/e2e/${spec.name}`,
    absolute: path.resolve('cypress/e2e', spec.name),
    specType: 'integration',
  };
  const startedAt = new Date().toISOString();
  await events['before:spec'](specInfo);
  if (integrationConfig === null) {
    integrationConfig = await tasks.happoGetIntegrationConfig(null);
  }
  const skip = integrationConfig?.skip ?? [];
  const isSkipped = ({ component, variant }) =>
    skip.some((s) => s.component === component && (s.variant === undefined || s.variant === variant));

  for (const image of spec.base64Images ?? []) {
    // The browser side sends canvases in 200 000-char chunks; two chunks exercise the append.
    const half = Math.ceil(image.base64.length / 2);
    const chunks = [image.base64.slice(0, half), image.base64.slice(half)].filter(Boolean);
    for (const [i, base64Chunk] of chunks.entries()) {
      await tasks.happoRegisterBase64Image({
        base64Chunk,
        src: image.src,
        isFirst: i === 0,
        isLast: i === chunks.length - 1,
      });
    }
  }
  const tests = [];
  let sent = 0;
  for (const snapshot of spec.snapshots) {
    if (!isSkipped(snapshot)) {
      await tasks.happoRegisterSnapshot({ timestamp: Date.now(), ...snapshot });
      sent += 1;
    }
    tests.push({
      title: [snapshot.component, snapshot.variant],
      state: 'passed',
      attempts: [{ state: 'passed' }],
    });
  }
  await events['after:spec'](specInfo, {
    tests,
    stats: { startedAt, endedAt: new Date().toISOString() },
  });
  console.log(`[cypress_run] ${spec.name}: ${sent} snapshot(s), ${spec.snapshots.length - sent} skipped`);
}
