import { test, expect } from '@playwright/test';
import * as fs from 'fs';
import * as path from 'path';
import { Taskwire, row, badge, watchErrors } from './server';

let server: Taskwire;
test.beforeEach(async () => { server = await Taskwire.start(); });
test.afterEach(async () => { await server.dispose(); });

test('a task created elsewhere appears without reload and its pill follows its exit', async ({ page }) => {
  const errors = watchErrors(page);
  await server.open(page);
  await expect(badge(page)).toHaveText('Live');
  await page.getByRole('tab', { name: /All/ }).click();
  const ok = await server.create('sleep 1; exit 0', 'passes');
  const bad = await server.create('sleep 1; exit 3', 'fails');
  await expect(row(page, ok.id)).toBeVisible();
  await expect(row(page, bad.id)).toBeVisible();
  await expect(row(page, ok.id).getByTestId('status')).toHaveText('running');
  await expect(row(page, ok.id).getByTestId('status')).toHaveText('completed');
  await expect(row(page, bad.id).getByTestId('status')).toHaveText('failed 3');
  expect(errors).toEqual([]);
});

test('a running row shows its latest output as it is printed', async ({ page }) => {
  await server.open(page);
  const task = await server.create('for i in 1 2 3 4 5 6; do echo step-$i; sleep 0.4; done; sleep 60', 'chatty');
  await expect(row(page, task.id).locator('.tail')).toContainText('step-2');
  await expect(row(page, task.id).locator('.tail')).toContainText('step-6');
  await expect(row(page, task.id).locator('.tail')).not.toContainText('step-1');
});

test('while live the page does not fetch the task list', async ({ page }) => {
  await server.open(page);
  await expect(badge(page)).toHaveText('Live');
  // Let the first load and its follow-ups settle.
  await page.waitForTimeout(1000);
  const listFetches: string[] = [];
  page.on('request', (r) => {
    if (new URL(r.url()).pathname === '/api/tasks' && r.method() === 'GET') listFetches.push(r.url());
  });
  const task = await server.create('sleep 2; exit 0');
  await expect(row(page, task.id)).toBeVisible();
  await page.waitForTimeout(10_000);
  await expect(badge(page)).toHaveText('Live');
  expect(listFetches).toEqual([]);
});

test('a waiting task shows in the pill and the title, and input brings it back to running', async ({ page }) => {
  await server.open(page);
  const task = await server.create('echo question?; read answer; echo thanks $answer; sleep 30', 'asks');
  await expect(row(page, task.id).getByTestId('status')).toHaveText('waiting-for-input', { timeout: 15_000 });
  await expect(page).toHaveTitle('(1) taskwire');
  await expect(row(page, task.id).locator('.idle')).toBeVisible();

  await row(page, task.id).getByRole('link').click();
  await expect(page.getByTestId('terminal')).toContainText('question?');
  // The page says why it counts as waiting.
  await expect(page.getByTestId('waiting-why')).toHaveText('Waiting: reading its terminal');
  await page.getByLabel('Send input').fill('yes');
  await page.getByRole('button', { name: 'Send' }).click();
  await expect(page.locator('.detail-head').getByTestId('status')).toHaveText('running');
  await expect(page.getByTestId('waiting-why')).toHaveCount(0);
  await expect(page.getByTestId('terminal')).toContainText('thanks yes');
  await expect(page).toHaveTitle('taskwire');
});

test('a restart of the server is weathered: the badge leaves Live, returns, and shows what changed', async ({ page }) => {
  await server.open(page);
  await expect(badge(page)).toHaveText('Live');
  const marker = path.join(server.dataDir, 'go');
  const task = await server.create(`while [ ! -e ${marker} ]; do sleep 0.1; done; exit 4`, 'ends while down');
  await expect(row(page, task.id).getByTestId('status')).toHaveText('running');

  await server.stop();
  await expect(badge(page)).not.toHaveText('Live');
  fs.writeFileSync(marker, '');
  await server.launch();
  await expect(badge(page)).toHaveText('Live', { timeout: 20_000 });
  await page.getByRole('tab', { name: /All/ }).click();
  await expect(row(page, task.id).getByTestId('status')).toHaveText('failed 4');
});

test('with the event stream blocked the page polls and still shows new tasks', async ({ page }) => {
  await page.route('**/api/events**', (route) => route.abort());
  await server.open(page);
  await expect(badge(page)).toHaveText('Polling', { timeout: 10_000 });
  const task = await server.create('sleep 60', 'seen by polling');
  await expect(row(page, task.id)).toBeVisible({ timeout: 7_000 });
});

test('create, rename, kill and delete through the page', async ({ page }) => {
  const errors = watchErrors(page);
  await server.open(page);
  await page.getByRole('link', { name: 'New task' }).click();
  await page.getByLabel('Command').fill('sleep 300');
  await page.getByLabel(/^Name/).fill('from the form');
  await page.getByRole('button', { name: 'Start' }).click();
  await expect(page).toHaveURL(/\/tasks\/[a-z0-9]+$/);
  await expect(page.getByRole('heading', { name: 'from the form' })).toBeVisible();
  const id = page.url().split('/').pop()!;

  await page.getByLabel('Name', { exact: true }).fill('renamed in the page');
  await page.getByRole('button', { name: 'Rename' }).click();
  await expect(page.getByRole('heading', { name: 'renamed in the page' })).toBeVisible();
  expect((await server.api('GET', `/api/tasks/${id}`)).json.name).toBe('renamed in the page');

  await page.getByRole('button', { name: 'Kill' }).click();
  await page.getByRole('button', { name: 'Yes, kill it' }).click();
  await expect(page.locator('.detail-head').getByTestId('status')).toHaveText('killed');

  await page.getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('button', { name: 'Yes, delete it' }).click();
  await expect(page).toHaveURL(`${server.url}/`);
  expect((await server.api('GET', `/api/tasks/${id}`)).status).toBe(404);
  expect(errors).toEqual([]);
});

test('a terminal opened from the form takes input', async ({ page }) => {
  await server.open(page, '/new');
  await page.getByRole('button', { name: 'Open a terminal' }).click();
  await expect(page).toHaveURL(/\/tasks\/[a-z0-9]+$/);
  await page.getByLabel('Send input').fill('echo $((40+2))');
  await page.getByRole('button', { name: 'Send' }).click();
  await expect(page.getByTestId('terminal')).toContainText('42');
});

test('two tabs see each other live', async ({ browser }) => {
  const context = await browser.newContext();
  const a = await context.newPage();
  const b = await context.newPage();
  await server.open(a);
  await server.open(b);
  const task = await server.create('sleep 300', 'shared');
  await expect(row(a, task.id)).toBeVisible();
  await expect(row(b, task.id)).toBeVisible();
  await row(a, task.id).getByRole('link').click();
  await a.getByRole('button', { name: 'Kill' }).click();
  await a.getByRole('button', { name: 'Yes, kill it' }).click();
  await b.getByRole('tab', { name: /All/ }).click();
  await expect(row(b, task.id).getByTestId('status')).toHaveText('killed');
  await context.close();
});
