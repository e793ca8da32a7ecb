// Builds dist/src when the package is installed from a path or a git
// checkout (npm runs "prepare" then), so `npm install path/to/clients/typescript`
// gives a working `import { Client } from "samgw"` without a manual build.
// TypeScript is a build-time dependency only: when the folder has no
// node_modules (a fresh clone), it is installed here first, without
// touching package.json or the lock file.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(dir, 'package.json'));
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function tscPath() {
  try {
    return require.resolve('typescript/bin/tsc');
  } catch {
    return undefined;
  }
}

let tsc = tscPath();
if (tsc === undefined) {
  const { devDependencies } = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const wanted = ['typescript', '@types/node'].map((name) => `${name}@${devDependencies[name]}`);
  execFileSync(npm, ['install', '--no-save', '--no-package-lock', '--ignore-scripts', '--no-audit', '--no-fund', ...wanted],
    { cwd: dir, stdio: 'inherit' });
  tsc = tscPath();
  if (tsc === undefined) throw new Error('prepare: typescript did not install');
}
execFileSync(process.execPath, [tsc, '-p', path.join(dir, 'tsconfig.build.json')], { cwd: dir, stdio: 'inherit' });
if (!existsSync(path.join(dir, 'dist/src/index.js'))) throw new Error('prepare: the build wrote no dist/src/index.js');
