// The fleet, measured in one run (a real nats-server, three taskwire nodes, Chromium):
//   cd end2end && npx playwright test -c playwright.bench.config.ts bench/fleet.bench.ts
// 1. A task on node B exits → its pill changes in a page served by node A: p50/p99 over
//    50 tasks, beside the same on a single node (a task and its page on one taskwire).
// 2. Sustained events per second through a fleet of three: renames sent to all three
//    nodes at once (8 at a time each), until an event stream on node A has had them all.
// 3. A browser that missed 5,000 events resumes on another node (from its ring and the
//    stream): the time from connecting until it has caught up.
import { test, expect, Page } from '@playwright/test';
import * as fs from 'fs';
import * as path from 'path';
import { Taskwire, completedAt, recordCompletions, row, TOKEN } from '../tests/server';
import { Nats } from '../tests/nats';

const TASKS = 50;
const RENAMES_PER_NODE = 1000;
const MISSED = 5000;

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];

/** Exit → pill, for tasks run by `owner` in a page served by `serving`. */
async function exitToPill(page: Page, serving: Taskwire, owner: Taskwire): Promise<number[]> {
  await serving.open(page);
  await page.getByRole('tab', { name: /All/ }).click();
  await recordCompletions(page);
  const latencies: number[] = [];
  for (let i = 0; i < TASKS; i++) {
    const marker = path.join(owner.dataDir, `go-${i}`);
    const task = await owner.create(`while [ ! -e ${marker} ]; do sleep 0.01; done`, `exit ${i}`);
    await expect(row(page, task.id).getByTestId('status')).toHaveText('running');
    const exitAt = Date.now();
    fs.writeFileSync(marker, '');
    await expect(row(page, task.id).getByTestId('status')).toHaveText('completed');
    latencies.push((await completedAt(page, task.id)) - exitAt);
  }
  return latencies.sort((a, b) => a - b);
}

/** An event stream read from Node: counts `task.updated` events as they come. */
class Stream {
  updated = 0;
  ready: any = null;
  private controller = new AbortController();
  private waiters: (() => void)[] = [];

  constructor(url: string, lastEventId?: string) {
    const headers: Record<string, string> = { Authorization: `Bearer ${TOKEN}` };
    if (lastEventId) headers['Last-Event-ID'] = lastEventId;
    void this.read(fetch(`${url}/api/events`, { headers, signal: this.controller.signal }));
  }

  private async read(response: Promise<Response>) {
    try {
      const reader = (await response).body!.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (frame.includes('event: task.updated')) this.updated++;
          if (frame.includes('event: ready')) this.ready = JSON.parse(frame.split('\ndata: ')[1]);
          this.waiters.forEach((w) => w());
        }
      }
    } catch {
      // closed
    }
  }

  async until(condition: () => boolean, timeout = 120_000) {
    const deadline = Date.now() + timeout;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error('the stream did not get there');
      await new Promise<void>((r) => { this.waiters.push(r); setTimeout(r, 100); });
      this.waiters = [];
    }
  }

  close() {
    this.controller.abort();
  }
}

/** `count` renames of `id` through `server`, `parallel` at a time. */
async function renames(server: Taskwire, id: string, count: number, parallel = 8) {
  let next = 0;
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < count) {
      const n = next++;
      const res = await fetch(`${server.url}/api/tasks/${id}`, {
        method: 'PATCH',
        headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ name: `rename ${n}` }),
      });
      await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`rename answered ${res.status}`);
    }
  }));
}

test('the fleet: exit to pill across nodes, events per second, resume on another node', async ({ page }) => {
  test.setTimeout(600_000);
  const nats = await Nats.start();
  const single = await Taskwire.start();
  const nodes: Taskwire[] = [];
  try {
    for (const name of ['node-a', 'node-b', 'node-c']) {
      nodes.push(await Taskwire.start({ TASKWIRE_NATS_URL: nats.url, TASKWIRE_NATS_INSECURE: "1", TASKWIRE_NODE: name }));
    }
    const [a, b, c] = nodes;
    await expect.poll(async () => (await a.api('GET', '/api/nodes')).json.nodes
      .filter((n: any) => n.online).length, { timeout: 15_000 }).toBe(3);

    const alone = await exitToPill(page, single, single);
    const across = await exitToPill(page, a, b);
    console.log(`exit → pill over ${TASKS} tasks: single node p50 ${percentile(alone, 0.5)} ms, p99 ${percentile(alone, 0.99)} ms; ` +
      `task on node B, page on node A p50 ${percentile(across, 0.5)} ms, p99 ${percentile(across, 0.99)} ms (target: within 2× the single node)`);

    // No page open from here on: on two cores, its rendering would be what is measured.
    await page.goto('about:blank');
    const targets = await Promise.all(nodes.map((node) => node.create('sleep 600', 'renamed')));
    const watcher = new Stream(a.url);
    await watcher.until(() => watcher.ready !== null);
    const started = Date.now();
    await Promise.all(nodes.map((node, i) => renames(node, targets[i].id, RENAMES_PER_NODE)));
    const sent = (Date.now() - started) / 1000;
    await watcher.until(() => watcher.updated >= 3 * RENAMES_PER_NODE);
    const seconds = (Date.now() - started) / 1000;
    watcher.close();
    console.log(`sustained through 3 nodes: ${3 * RENAMES_PER_NODE} events in ${seconds.toFixed(2)} s = ` +
      `${Math.round((3 * RENAMES_PER_NODE) / seconds)} events/s seen by a stream on node A ` +
      `(the renames themselves took ${sent.toFixed(2)} s to be answered)`);

    // The same through a single node, for comparison.
    const solo = await single.create('sleep 600', 'renamed');
    const soloWatcher = new Stream(single.url);
    await soloWatcher.until(() => soloWatcher.ready !== null);
    const soloStarted = Date.now();
    await renames(single, solo.id, 3 * RENAMES_PER_NODE, 24);
    await soloWatcher.until(() => soloWatcher.updated >= 3 * RENAMES_PER_NODE);
    const soloSeconds = (Date.now() - soloStarted) / 1000;
    soloWatcher.close();
    console.log(`the same ${3 * RENAMES_PER_NODE} renames through a single node: ${soloSeconds.toFixed(2)} s = ` +
      `${Math.round((3 * RENAMES_PER_NODE) / soloSeconds)} events/s`);

    const away = new Stream(a.url);
    await away.until(() => away.ready !== null);
    const cursor = away.ready.event_id as string;
    away.close();
    await renames(b, targets[1].id, MISSED);
    const seq = (id: string) => Number(id.split('-').pop());
    await expect.poll(async () => seq((await c.api('GET', '/api/tasks')).json.event_id),
      { timeout: 60_000 }).toBeGreaterThanOrEqual(seq(cursor) + MISSED);
    const connected = Date.now();
    const back = new Stream(c.url, cursor);
    await back.until(() => back.updated >= MISSED);
    const caughtUp = Date.now() - connected;
    back.close();
    expect(back.ready.resumed).toBe(true);
    console.log(`a browser that missed ${MISSED} events (ring of 1,024) resumed on node C and caught up in ${caughtUp} ms`);
  } finally {
    for (const node of nodes) await node.dispose();
    await single.dispose();
    await nats.dispose();
  }
});
