// A real Playwright run for `happo -- playwright test` (happo 6's Playwright fixture), driving
// Debian's Chromium (no Playwright browser download is possible here). Copied by
// harness.playwright_workdir() into a folder with a node_modules symlink: Playwright resolves
// `happo/playwright` and `@playwright/test` from the spec's folder. APP_URL: the page to
// snapshot (e2e_app/page.html served over HTTP).
export default {
  testDir: '.',
  testMatch: '*.spec.mjs',
  workers: 1,
  retries: 0,
  reporter: 'list',
  use: {
    headless: true,
    viewport: { width: 800, height: 600 },
    launchOptions: {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu'],
    },
  },
};
