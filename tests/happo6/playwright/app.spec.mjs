// happo 6's fixture: `happoScreenshot(locator, {component, variant, targets?})` runs
// window.happo.takeDOMSnapshot (dist/browser/main.js, injected with page.addInitScript) and
// registers the snapshot with the Controller; batches of 4 tests and the worker's end call
// Controller.finish() (asset package + snap-requests), which hands the ids to `happo --`.
// Canvases stay inline as data: URLs here (the Cypress command uploads them instead).
import { test } from 'happo/playwright';

test('card', async ({ page, happoScreenshot }) => {
  await page.goto(process.env.APP_URL);
  await happoScreenshot(page.locator('.card'), { component: 'Card', variant: 'playwright' });
  await happoScreenshot(page.locator('.card b'), { component: 'Bold', variant: 'playwright' });
});
