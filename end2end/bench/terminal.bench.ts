// Terminal benchmarks against the release build in Chromium (not part of the test suite):
//   cd end2end && npx playwright test -c playwright.bench.config.ts
// - keystroke → its echo drawn in the page's terminal, p50/p99 over 200 keys, beside the
//   floor: the same keys into `tmux attach` in a local pty (bench/floor.py), no browser;
// - throughput: 50 MB printed by a task (`cat` of a file) into the page's terminal, MB/s and
//   the server's CPU per MB;
// - memory per open terminal viewer: the server's and the tmux clients' resident memory.
import { test, expect, Page } from '@playwright/test';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { Taskwire } from '../tests/server';

let server: Taskwire;
test.beforeAll(async () => { server = await Taskwire.start(); });
test.afterAll(async () => { await server.dispose(); });

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
const terminal = (page: Page) => page.getByTestId('terminal');

async function openLive(page: Page, id: string) {
  await server.open(page, `/tasks/${id}`);
  await expect(terminal(page)).toHaveAttribute('data-state', 'live');
}

/** /proc figures of a process: CPU seconds (user + system) and resident KiB. */
function proc(pid: number): { cpu: number; rssKib: number } {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const ticks = Number(stat[11]) + Number(stat[12]);
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)![1]);
  return { cpu: ticks / 100, rssKib: rss };
}

function tmuxClientsRssKib(socket: string): number {
  const out = execFileSync('tmux', ['-L', socket, 'list-clients', '-F', '#{client_pid}']).toString();
  return out.split('\n').filter(Boolean).reduce((sum, pid) => sum + proc(Number(pid)).rssKib, 0);
}

test('keystroke to echo, against the floor', async ({ page }) => {
  test.setTimeout(300_000);
  const KEYS = 200;
  const task = await server.create('cat', 'echo');
  await openLive(page, task.id);
  await terminal(page).click();
  // Each key: when its echo is in xterm's buffer (parsed), and when it is drawn (the next
  // render, which waits for the browser's next frame).
  const { parsed, drawn } = await terminal(page).evaluate(async (el: any, keys: number) => {
    const term = el.terminal;
    const letters = 'abcdefghijklmnopqrstuvwxyz';
    const parsed: number[] = [];
    const drawn: number[] = [];
    const cursorLine = () => term.buffer.active.getLine(term.buffer.active.baseY + term.buffer.active.cursorY).translateToString(true);
    for (let i = 0; i < keys; i++) {
      const key = letters[i % 26];
      const before = cursorLine().length;
      const start = performance.now();
      await new Promise<void>((resolve) => {
        const onParsed = term.onWriteParsed(() => {
          if (cursorLine().length <= before) return;
          onParsed.dispose();
          parsed.push(performance.now() - start);
          const onRender = term.onRender(() => {
            onRender.dispose();
            drawn.push(performance.now() - start);
            resolve();
          });
        });
        term.input(key);
      });
      if (i % 50 === 49) {
        term.input('\r');
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    return { parsed, drawn };
  }, KEYS);
  const floor: number[] = JSON.parse(execFileSync('python3', [
    path.join(__dirname, 'floor.py'), server.socket, `tw-${task.id}`, String(KEYS),
  ]).toString());
  const report = (name: string, xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    console.log(`${name}: p50 ${percentile(s, 50).toFixed(2)} ms, p99 ${percentile(s, 99).toFixed(2)} ms over ${xs.length} keys`);
  };
  report('keystroke → echo in the page terminal\'s buffer', parsed);
  report('keystroke → echo drawn in the page (next frame)', drawn);
  report('floor: keystroke → echo through tmux attach in a local pty', floor);
});

test('throughput of 50 MB through the terminal, and memory per viewer', async ({ browser }) => {
  test.setTimeout(600_000);
  const file = path.join(server.dataDir, 'fifty-mb.txt');
  const line = 'x'.repeat(99) + '\n';
  fs.writeFileSync(file, line.repeat(500_000) + 'THE-END-OF-IT\n');
  const go = path.join(server.dataDir, 'go');
  const task = await server.create(`while [ ! -e ${go} ]; do sleep 0.05; done; cat ${file}; sleep 600`, 'fifty');
  const page = await browser.newPage();
  await openLive(page, task.id);
  const pid = server.pid();
  const before = proc(pid);
  const started = Date.now();
  fs.writeFileSync(go, '');
  await expect.poll(() => terminal(page).evaluate((el: any) => {
    const b = el.terminal.buffer.active;
    for (let y = 0; y < b.length; y++) if (b.getLine(y).translateToString(true).includes('THE-END-OF-IT')) return true;
    return false;
  }), { timeout: 300_000, intervals: [100] }).toBe(true);
  const seconds = (Date.now() - started) / 1000;
  const after = proc(pid);
  const mb = 50;
  console.log(`throughput: ${mb} MB in ${seconds.toFixed(1)} s = ${(mb / seconds).toFixed(1)} MB/s; server CPU ${((after.cpu - before.cpu) * 1000 / mb).toFixed(1)} ms per MB`);

  // Memory per viewer: 20 more viewers of a quiet task, as raw WebSockets from one page.
  const quiet = await server.create('sleep 600', 'quiet');
  const rssBefore = proc(pid).rssKib;
  const clientsBefore = tmuxClientsRssKib(server.socket);
  const VIEWERS = 20;
  await page.evaluate(async ({ id, n }) => {
    (window as any).viewers = await Promise.all(Array.from({ length: n }, () => new Promise((resolve) => {
      const ws = new WebSocket(`ws://${location.host}/api/tasks/${id}/terminal?cols=120&rows=40`);
      ws.onmessage = () => resolve(ws);
    })));
  }, { id: quiet.id, n: VIEWERS });
  await page.waitForTimeout(1000);
  const serverKib = (proc(pid).rssKib - rssBefore) / VIEWERS;
  const clientKib = (tmuxClientsRssKib(server.socket) - clientsBefore) / VIEWERS;
  console.log(`memory per terminal viewer: server ${serverKib.toFixed(0)} KiB + its tmux client ${clientKib.toFixed(0)} KiB`);
});
