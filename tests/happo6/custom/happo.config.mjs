// happo 6 config for the custom integration: `happo --config <this file> --afterSha A ...`.
//
// Environment (set by the test):
//   HAPPO6_ENDPOINT   origin of the server (happo 6 builds `new URL('/api/...', endpoint)`)
//   HAPPO_API_KEY / HAPPO_API_SECRET   credentials (the config loader falls back to them)
//   HAPPO6_PROJECT    optional project name
//   HAPPO6_TARGETS    optional JSON object of targets, default one chrome target 800x600
//   HAPPO6_CHUNKS     optional: `chunks` for every target (splits the package into N requests)
//   HAPPO6_STATIC_DIR optional: the folder to package instead of ./static (e.g. one written by
//                     tests/happo_packages.write_static_package; with an iframe.html of its
//                     own, happo keeps it and entryPoint is not used)
//
// build() copies ./static (or $HAPPO6_STATIC_DIR) into a fresh temporary folder each run,
// because happo writes iframe.html (and, with --skip, the happo-skipped script) INTO the
// returned rootDir.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const here = import.meta.dirname;

const targets = process.env.HAPPO6_TARGETS
  ? JSON.parse(process.env.HAPPO6_TARGETS)
  : { chrome: { type: 'chrome', viewport: '800x600' } };
if (process.env.HAPPO6_CHUNKS) {
  for (const target of Object.values(targets)) {
    target.chunks = Number(process.env.HAPPO6_CHUNKS);
  }
}

export default {
  endpoint: process.env.HAPPO6_ENDPOINT,
  project: process.env.HAPPO6_PROJECT || undefined,
  targets,
  integration: {
    type: 'custom',
    build: async () => {
      const rootDir = await fs.mkdtemp(path.join(os.tmpdir(), 'happo6-custom-'));
      const source = process.env.HAPPO6_STATIC_DIR || path.join(here, 'static');
      await fs.cp(source, rootDir, { recursive: true });
      return { rootDir, entryPoint: 'entry.js', estimatedSnapsCount: 3 };
    },
  },
};
