import { test, expect } from '@playwright/test';
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
