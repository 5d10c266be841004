// A node is one file: the release binary, copied alone into an empty directory and run
// from there, serves the whole dashboard (the app's wasm, CSS and xterm.js come from the
// binary itself).
import { test, expect } from '@playwright/test';
import { spawn, spawnSync, ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { freePort, terminate } from './ports';

const BINARY = path.resolve(__dirname, '../../target/release/taskwire');
const TOKEN = 'e2e-binary-token';

let proc: ChildProcess | undefined;
let dir = '';
const socket = `tw-e2e-binary-${process.pid}`;
test.afterEach(async () => {
  await terminate(proc);
  spawnSync('tmux', ['-L', socket, 'kill-server']);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the release binary alone, run from an empty directory, serves the live dashboard', async ({ page }) => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskwire-one-file-'));
  const copy = path.join(dir, 'taskwire');
  fs.copyFileSync(BINARY, copy);
  fs.chmodSync(copy, 0o755);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  proc = spawn(copy, [], {
    cwd: dir,
    env: {
      PATH: process.env.PATH!, HOME: process.env.HOME ?? dir,
      LEPTOS_SITE_ADDR: `127.0.0.1:${port}`, TASKWIRE_DATA_DIR: path.join(dir, 'data'),
      TASKWIRE_TMUX_SOCKET: socket, TASKWIRE_TOKEN: TOKEN, RUST_LOG: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await expect.poll(async () => {
    try { return (await fetch(`${url}/healthz`)).status; } catch { return 0; }
  }, { timeout: 15_000 }).toBe(200);
  expect(fs.readdirSync(dir).sort()).toEqual(['data', 'taskwire']);

  const wasm = await fetch(`${url}/pkg/taskwire.wasm`, { headers: { 'Accept-Encoding': 'br' } });
  expect(wasm.status).toBe(200);
  expect(wasm.headers.get('content-type')).toBe('application/wasm');
  expect(wasm.headers.get('content-encoding')).toBe('br');

  await page.goto(`${url}/login?token=${TOKEN}`);
  await page.waitForSelector('body[data-hydrated]');
  await expect(page.getByTestId('connection')).toHaveText('Live');
  const res = await fetch(`${url}/api/tasks`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ command: 'echo from-one-file; sleep 30', name: 'one file' }),
  });
  const task = await res.json();
  await page.locator(`.task-row[data-id="${task.id}"]`).getByRole('link').click();
  await expect(page.getByTestId('terminal')).toContainText('from-one-file');
});
