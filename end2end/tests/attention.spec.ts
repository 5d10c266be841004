import { test, expect, Page, BrowserContext } from '@playwright/test';
import { execFileSync } from 'child_process';
import * as path from 'path';
import { Taskwire, row, badge, TOKEN } from './server';

let server: Taskwire;
test.beforeEach(async () => { server = await Taskwire.start(); });
test.afterEach(async () => { await server.dispose(); });

async function openStreams(): Promise<number> {
  const res = await fetch(`${server.url}/metrics`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  const text = await res.text();
  return Number(/^taskwire_event_streams_open (\d+)$/m.exec(text)![1]);
}

async function leaderOf(pages: Page[]): Promise<Page> {
  for (const page of pages) {
    if (await page.evaluate(() => document.documentElement.dataset.eventsLeader === 'true')) return page;
  }
  throw new Error('no tab leads');
}

test('nine tabs share one event stream, and another tab takes over when the leader closes', async ({ browser }) => {
  test.setTimeout(120_000);
  const context = await browser.newContext();
  const pages: Page[] = [];
  for (let i = 0; i < 8; i++) {
    const page = await context.newPage();
    await server.open(page);
    await expect(badge(page)).toHaveText('Live');
    pages.push(page);
  }
  const ninth = await context.newPage();
  await server.open(ninth);
  await expect(badge(ninth)).toHaveText('Live');
  pages.push(ninth);
  const first = await server.create('sleep 600', 'seen by all nine');
  for (const page of pages) await expect(row(page, first.id)).toBeVisible();
  await expect.poll(openStreams).toBe(1);

  const leader = await leaderOf(pages);
  await leader.close();
  const rest = pages.filter((p) => p !== leader);
  await expect.poll(async () => {
    try { await leaderOf(rest); return true; } catch { return false; }
  }, { timeout: 5_000 }).toBe(true);
  const second = await server.create('sleep 600', 'after the handover');
  for (const page of rest) await expect(row(page, second.id)).toBeVisible();
  await expect.poll(openStreams).toBe(1);
  await context.close();
});

/** Pages of this context report themselves hidden, and record notifications. */
async function awayWithSpy(context: BrowserContext) {
  await context.addInitScript(() => {
    Object.defineProperty(document, 'visibilityState', { get: () => 'hidden' });
    Object.defineProperty(document, 'hidden', { get: () => true });
    const shown: { title: string; body?: string; tag?: string }[] = [];
    (window as any).shownNotifications = shown;
    class SpyNotification {
      static permission = 'granted';
      static requestPermission() { return Promise.resolve('granted'); }
      onclick: (() => void) | null = null;
      constructor(title: string, options: { body?: string; tag?: string } = {}) {
        shown.push({ title, body: options.body, tag: options.tag });
      }
      close() {}
    }
    (window as any).Notification = SpyNotification;
  });
}

/** What the pages showed themselves (no service worker yet) and what the worker showed. */
async function allShown(pages: Page[]) {
  const lists = await Promise.all(pages.map((p) => p.evaluate(() => (window as any).shownNotifications)));
  const workers = pages[0].context().serviceWorkers();
  const byWorker = await Promise.all(workers.map((w) => w.evaluate(async () => {
    const shown = await (self as any).registration.getNotifications();
    return shown.map((n: any) => ({ title: n.title, body: n.body, tag: n.tag }));
  })));
  return [...lists.flat(), ...byWorker.flat()];
}

test('with no tab in view, a task that starts waiting gives one notification per browser', async ({ browser }) => {
  const context = await browser.newContext({ permissions: ['notifications'] });
  await awayWithSpy(context);
  const pages: Page[] = [];
  for (let i = 0; i < 3; i++) {
    const page = await context.newPage();
    await server.open(page);
    await expect(badge(page)).toHaveText('Live');
    pages.push(page);
  }
  const task = await server.create('sleep 600', 'deploy');
  for (const page of pages) await expect(row(page, task.id)).toBeVisible();
  const { status } = await server.api('POST', `/api/tasks/${task.id}/state`, {
    state: 'waiting-for-input', message: 'Deploy to production?',
  });
  expect(status).toBe(200);
  for (const page of pages) {
    await expect(row(page, task.id).locator('.message')).toHaveText('Deploy to production?');
  }
  await expect.poll(() => allShown(pages)).toHaveLength(1);
  // The bell keeps which kinds are wanted.
  await pages[0].getByRole('button', { name: 'Notifications' }).click();
  await expect(pages[0].getByRole('dialog', { name: 'Notifications' })).toContainText('Shown when no taskwire tab is in view.');
  await pages[0].getByLabel('Completed').uncheck();
  expect(await pages[0].evaluate(() => JSON.parse(localStorage.getItem('taskwire.notify')!).completed)).toBe(false);
  const [shown] = await allShown(pages);
  expect(shown).toEqual({ title: 'deploy', body: 'Deploy to production?', tag: `taskwire-${task.id}` });
  // Its page says why it waits, in the program's words.
  await row(pages[1], task.id).getByRole('link').click();
  await expect(pages[1].getByTestId('waiting-why')).toHaveText('Waiting: said so: Deploy to production?');
  // The page's title and favicon count it.
  await expect(pages[0]).toHaveTitle('(1) taskwire');
  const icon = await pages[0].locator('link[rel=icon]').getAttribute('href');
  expect(decodeURIComponent(icon!)).toContain('>1</text>');
  await context.close();
});

test('the notification of a task whose screen asks names the question and its answers', async ({ browser }) => {
  const context = await browser.newContext({ permissions: ['notifications'] });
  await awayWithSpy(context);
  const page = await context.newPage();
  await server.open(page);
  await expect(badge(page)).toHaveText('Live');
  const asks = path.resolve(__dirname, '../fixtures/asks.py');
  const task = await server.create(`python3 ${asks} cursor`, 'pick');
  await expect.poll(() => allShown([page])).toHaveLength(1);
  const [shown] = await allShown([page]);
  expect(shown).toEqual({ title: 'pick', body: '? Which colour? (Use arrow keys)\nRed · Green · Blue', tag: `taskwire-${task.id}` });
  await context.close();
});

test('a task that finished while no tab was open stays in view until it is opened', async ({ page }) => {
  const task = await server.create('echo done; exit 2', 'finished unseen');
  await expect.poll(async () => (await server.api('GET', `/api/tasks/${task.id}`)).json.status).toBe('failed');
  await server.open(page);
  await expect(row(page, task.id)).toBeVisible();
  await expect(row(page, task.id)).toHaveAttribute('data-unseen', 'true');
  await row(page, task.id).getByRole('link').click();
  await expect(page.locator('.detail-head').getByTestId('status')).toHaveText('failed 2');
  await expect.poll(async () => (await server.api('GET', `/api/tasks/${task.id}`)).json.seen).toBe(true);
  await page.getByRole('link', { name: 'taskwire' }).click();
  await expect(row(page, task.id)).toBeHidden();
  await page.getByRole('tab', { name: /All/ }).click();
  await expect(row(page, task.id)).toBeVisible();
});

test('a finished task is dismissed from the list with its check mark', async ({ page }) => {
  const task = await server.create('exit 0', 'dismiss me');
  await expect.poll(async () => (await server.api('GET', `/api/tasks/${task.id}`)).json.status).toBe('completed');
  await server.open(page);
  await row(page, task.id).getByRole('button', { name: 'Mark as seen' }).click();
  await expect(row(page, task.id)).toBeHidden();
});

test('a long list draws its newest 200 rows, and more on request', async ({ page }) => {
  const rows = [];
  for (let i = 0; i < 250; i++) {
    const id = `old${String(i).padStart(5, '0')}`;
    rows.push(`('${id}','old ${i}','command','true','/tmp','completed',0,` +
      `'2026-01-01T00:00:00.000Z','2026-01-01T00:00:01.000Z','2026-01-01T00:00:01.000Z',NULL,NULL,0)`);
  }
  const sql = `INSERT INTO tasks (id,name,kind,command,workdir,status,exit_code,created_at,finished_at,last_activity_at,error,message,seen) VALUES ${rows.join(',')};`;
  execFileSync('sqlite3', [path.join(server.dataDir, 'taskwire.db')], { input: sql });
  const live = await server.create('sleep 600', 'newest');
  await server.open(page);
  await expect(row(page, live.id)).toBeVisible();
  await expect(page.locator('.task-row')).toHaveCount(200);
  // A filter searches every task, drawn or not.
  await page.getByLabel('Filter tasks').fill('old 249');
  await expect(row(page, 'old00249')).toBeVisible();
  await page.getByLabel('Filter tasks').fill('');
  await expect(page.locator('.task-row')).toHaveCount(200);
  await page.getByRole('button', { name: /Show more \(51 older\)/ }).click();
  await expect(page.locator('.task-row')).toHaveCount(251);
  await expect(page.getByRole('button', { name: /Show more/ })).toHaveCount(0);
});
