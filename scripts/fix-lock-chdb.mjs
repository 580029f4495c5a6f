// chdb lists optional per-platform packages, but only the linux-x64 one is published, so npm
// leaves the others out of package-lock.json and `npm ci` then refuses the lock. This records
// them as optional, platform-gated entries (skipped on other platforms, never fetched).
import { readFileSync, writeFileSync } from 'node:fs';

const lockUrl = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(lockUrl, 'utf8'));
const chdb = lock.packages['node_modules/chdb'];
const platforms = {
  '@chdb/lib-darwin-arm64': { os: ['darwin'], cpu: ['arm64'] },
  '@chdb/lib-darwin-x64': { os: ['darwin'], cpu: ['x64'] },
  '@chdb/lib-linux-arm64-gnu': { os: ['linux'], cpu: ['arm64'] },
};
let added = 0;
for (const [name, gate] of Object.entries(platforms)) {
  const key = `node_modules/${name}`;
  const version = chdb?.optionalDependencies?.[name];
  if (!version || lock.packages[key]) continue;
  lock.packages[key] = { version, optional: true, ...gate };
  added++;
}
if (added === 0) process.exit(0);
const sorted = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))));
lock.packages = sorted;
writeFileSync(lockUrl, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`chdb lock entries added: ${added}`);
