// Main-thread time per pushed event with 50 and with 5,000 tasks in the list (Chrome's own
// TaskDuration, from the DevTools protocol, over 200 events). Run with the terminal benches:
//   cd end2end && npx playwright test -c playwright.bench.config.ts
// The 5,000 are recorded straight into the database (finished, unseen, so the default view
// shows them all); the events are renames of one live task.
import { test, expect } from '@playwright/test';
import { execFileSync } from 'child_process';
import * as path from 'path';
import { Taskwire, row } from '../tests/server';

const EVENTS = 200;

async function perEvent(tasks: number): Promise<number> {
  const server = await Taskwire.start();
  try {
    const live = await server.create('sleep 600', 'renamed');
    const rows = [];
    for (let i = 0; i < tasks - 1; i++) {
      const id = `bench${String(i).padStart(5, '0')}`;
      rows.push(`('${id}','task ${i}','command','echo ${i}','/tmp','completed',0,` +
        `'2026-01-01T00:00:00.000Z','2026-01-01T00:00:01.000Z','2026-01-01T00:00:01.000Z',NULL,NULL,0)`);
    }
    if (rows.length) {
      const sql = `INSERT INTO tasks (id,name,kind,command,workdir,status,exit_code,created_at,finished_at,last_activity_at,error,message,seen) VALUES ${rows.join(',')};`;
      execFileSync('sqlite3', [path.join(server.dataDir, 'taskwire.db')], { input: sql });
    }
    return await measure(server, live.id, tasks);
  } finally {
    await server.dispose();
  }
}

async function measure(server: Taskwire, id: string, tasks: number): Promise<number> {
  // A fresh browser per run keeps the two measurements apart.
  const { chromium } = await import('@playwright/test');
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage();
  await server.open(page);
  // The list draws the newest 200 rows of the view ("Show more" adds the rest).
  await expect(page.locator('.task-row')).toHaveCount(Math.min(tasks, 200), { timeout: 60_000 });
  await expect(page.getByRole('tab', { name: /Active/ })).toContainText(String(tasks));
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Performance.enable');
  const metric = async (name: string) => {
    const { metrics } = await cdp.send('Performance.getMetrics');
    return metrics.find((m: { name: string }) => m.name === name)!.value as number;
  };
  const taskDuration = () => metric('TaskDuration');
  const parts = async () => Promise.all(['ScriptDuration', 'LayoutDuration', 'RecalcStyleDuration'].map(metric));
  await page.waitForTimeout(1000);
  const before = await taskDuration();
  const partsBefore = await parts();
  for (let i = 0; i < EVENTS; i++) {
    await server.api('PATCH', `/api/tasks/${id}`, { name: `renamed ${i}` });
  }
  await expect(row(page, id).getByRole('link')).toHaveText(`renamed ${EVENTS - 1}`);
  await page.waitForTimeout(500);
  const after = await taskDuration();
  const partsAfter = await parts();
  const per = partsAfter.map((v, i) => (((v - partsBefore[i]) * 1000) / EVENTS).toFixed(3));
  console.log(`  ${tasks} tasks: script ${per[0]} ms, layout ${per[1]} ms, style ${per[2]} ms per event`);
  await browser.close();
  return ((after - before) * 1000) / EVENTS;
}

test('main-thread time per pushed event, 50 against 5,000 tasks', async () => {
  test.setTimeout(600_000);
  const small = await perEvent(50);
  const large = await perEvent(5000);
  console.log(`main-thread time per event: ${small.toFixed(3)} ms with 50 tasks, ${large.toFixed(3)} ms with 5,000 ` +
    `(${(large / small).toFixed(2)}×; targets: ≤ 1.5× and < 2 ms)`);
});
