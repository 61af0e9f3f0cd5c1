#!/usr/bin/env node
// Stands in for `cypress run` under `happo-e2e -- <command>`, without a browser.
//
// It loads happo-cypress's task module exactly as a Cypress config's `setupNodeEvents(on)`
// does (`require('happo-cypress/task').register(on)`) and then emits, in Cypress' order, the
// events a spec with `cy.happoScreenshot()` calls under `happoCypress.configure({
// localSnapshots: true })` produce in the plugin process:
//
//   before:spec(spec)                      -> task.handleBeforeSpec   (Controller.init)
//   per screenshot:
//     cy.task('happoRegisterLocalSnapshot', {imageId, component, variant, target})
//     cy.screenshot(imageId) -> after:screenshot({name: imageId, path, dimensions, ...})
//                                          -> task.handleAfterScreenshot (image upload)
//   after:spec(spec, results)              -> task.handleAfterSpec   (Controller.finish)
//
// (happo-cypress registers no before:run/after:run handlers; `target` is what its browser side
// computes: `${Cypress.browser.name}-${viewportWidth}x${viewportHeight}`.)
//
// Usage: node cypress_run.js plan.json, where plan.json is
//   {"specs": [{"name": "a.cy.js", "screenshots": [{"path", "component", "variant", "target"}]}]}
// `happo-cypress` resolves through NODE_PATH (the test's npm cache); the cwd holds `.happo.js`.

'use strict';

const fs = require('fs');
const path = require('path');

const happoTask = require('happo-cypress/task');

function pngDimensions(file) {
  const bytes = fs.readFileSync(file);
  if (bytes.toString('latin1', 1, 4) !== 'PNG') {
    throw new Error(`${file} is not a PNG`);
  }
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
}

async function main() {
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
  for (const name of ['before:spec', 'after:spec', 'after:screenshot']) {
    if (typeof events[name] !== 'function') {
      throw new Error(`happo-cypress registered no ${name} handler`);
    }
  }
  if (typeof tasks.happoRegisterLocalSnapshot !== 'function') {
    throw new Error('happo-cypress registered no happoRegisterLocalSnapshot task');
  }

  for (const spec of plan.specs) {
    const specInfo = {
      name: spec.name,
      relative: `cypress/e2e/${spec.name}`,
      absolute: path.resolve('cypress/e2e', spec.name),
      specType: 'integration',
    };
    const startedAt = new Date().toISOString();
    await events['before:spec'](specInfo);
    const tests = [];
    for (const shot of spec.screenshots) {
      const imageId = `${Math.random()}`.slice(2);
      await tasks.happoRegisterLocalSnapshot({
        imageId,
        component: shot.component,
        variant: shot.variant,
        target: shot.target,
      });
      await events['after:screenshot']({
        name: imageId,
        path: shot.path,
        size: fs.statSync(shot.path).size,
        dimensions: pngDimensions(shot.path),
        multipart: false,
        pixelRatio: 1,
        takenAt: new Date().toISOString(),
        specName: spec.name,
        testFailure: false,
        scaled: false,
        blackout: [],
        duration: 5,
      });
      tests.push({
        title: [shot.component, shot.variant],
        state: 'passed',
        attempts: [{ state: 'passed' }],
      });
    }
    await events['after:spec'](specInfo, {
      tests,
      stats: { startedAt, endedAt: new Date().toISOString() },
    });
    console.log(`[cypress_run] ${spec.name}: ${spec.screenshots.length} screenshot(s)`);
  }
}

main().catch((error) => {
  console.error('[cypress_run] failed:', error);
  process.exit(1);
});
