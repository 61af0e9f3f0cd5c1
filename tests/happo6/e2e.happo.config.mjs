// happo 6 config for `happo -- <command>` (Cypress / Playwright DOM snapshots), used with
// cypress_run.mjs standing in for `cypress run`. Environment as for custom/happo.config.mjs;
// HAPPO6_INTEGRATION=playwright switches the type (same Controller, same requests).
const targets = process.env.HAPPO6_TARGETS
  ? JSON.parse(process.env.HAPPO6_TARGETS)
  : { chrome: { type: 'chrome', viewport: '800x600' } };

export default {
  endpoint: process.env.HAPPO6_ENDPOINT,
  project: process.env.HAPPO6_PROJECT || undefined,
  targets,
  integration: {
    type: process.env.HAPPO6_INTEGRATION || 'cypress',
    // Only localhost/127.0.0.1 assets are downloaded into the package unless this is true.
    downloadAllAssets: Boolean(process.env.HAPPO6_DOWNLOAD_ALL_ASSETS),
  },
};
