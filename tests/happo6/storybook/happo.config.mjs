// happo 6 config for the Storybook integration. Run `happo --config <this file> ...` from a
// working directory that holds a copy of tests/happo6/package.json, this folder's
// .storybook/, stories/ and public/, and a `node_modules` symlink to the installed cache
// (happo looks for ./package.json and ./node_modules/.bin/storybook in the cwd, and builds into
// ./.out). Environment as for ../custom/happo.config.mjs; HAPPO6_PREBUILT=1 makes happo reuse
// an existing ./.out instead of running `storybook build`.
const targets = process.env.HAPPO6_TARGETS
  ? JSON.parse(process.env.HAPPO6_TARGETS)
  : { chrome: { type: 'chrome', viewport: '800x600' } };

export default {
  endpoint: process.env.HAPPO6_ENDPOINT,
  project: process.env.HAPPO6_PROJECT || undefined,
  targets,
  integration: {
    type: 'storybook',
    configDir: '.storybook',
    outputDir: '.out',
    usePrebuiltPackage: Boolean(process.env.HAPPO6_PREBUILT),
  },
};
