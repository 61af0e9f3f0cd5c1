// A minimal Storybook 10 (html renderer, Vite builder) for happo 6's `integration: {type:
// 'storybook'}`. happo runs `node_modules/.bin/storybook build --output-dir .out --config-dir
// .storybook` in the working directory (it needs a package.json there listing `storybook` and a
// `storybook` script; see tests/happo6/package.json).
export default {
  stories: ['../stories/*.stories.js'],
  staticDirs: ['../public'],
  framework: { name: '@storybook/html-vite', options: {} },
  core: { disableTelemetry: true, disableWhatsNewNotifications: true },
};
