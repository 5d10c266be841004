import { test, expect } from '@playwright/test';
import * as path from 'path';
import { Taskwire, watchErrors } from './server';

let server: Taskwire;
test.beforeAll(async () => { server = await Taskwire.start(); });
test.afterAll(async () => { await server.dispose(); });

test('the server renders the dashboard and the release wasm hydrates it without errors', async ({ page }) => {
  const errors = watchErrors(page);
  // Without JavaScript's help the server already sent the header.
  const html = await (await fetch(`${server.url}/`)).text();
  expect(html).toContain('taskwire');
  await server.open(page);
  await expect(page.locator('header .brand')).toHaveText(/taskwire/);
  await expect(page.getByTestId('connection')).toHaveText('Live');
  expect(errors).toEqual([]);
});

test('a task page loaded afresh (as a notification opens it) always comes alive', async ({ page }) => {
  const errors = watchErrors(page);
  const asks = `python3 ${path.resolve(__dirname, '../fixtures/asks.py')} numbered`;
  const tasks = [await server.create('cat', 'first'), await server.create(asks, 'second')];
  await server.open(page);
  // One task's page loaded from another's, again and again: the lazily loaded page once
  // lost the race with the first fetch of the tasks about every other time, and died.
  for (let i = 0; i < 20; i++) {
    const task = tasks[i % 2];
    await page.goto(`${server.url}/tasks/${task.id}`);
    await expect(page.locator('.detail-head')).toContainText(task.name);
    await expect(page.getByTestId('terminal')).toBeVisible();
  }
  expect(errors).toEqual([]);
});

test('a signed-out visitor gets the sign-in form, and the token signs in', async ({ page }) => {
  await page.goto(server.url);
  await page.waitForSelector('body[data-hydrated]');
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await page.getByLabel('Token').fill('e2e-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForSelector('body[data-hydrated]');
  await expect(page.getByTestId('connection')).toHaveText('Live');
  await expect(page.getByRole('heading', { name: 'Sign in' })).toHaveCount(0);
});
