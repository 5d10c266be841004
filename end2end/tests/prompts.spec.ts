import { test, expect, Page } from '@playwright/test';
import * as path from 'path';
import { Taskwire, row, screenText, watchErrors } from './server';

// Programs that ask as coding agents do: a menu drawn from an event loop, repainted every
// 500 ms while it waits (see the fixture's docstring).
const ASKS = `python3 ${path.resolve(__dirname, '../fixtures/asks.py')}`;

let server: Taskwire;
test.beforeEach(async () => { server = await Taskwire.start(); });
test.afterEach(async () => { await server.dispose(); });

const prompt = (scope: Page | ReturnType<typeof row>) => scope.getByTestId('prompt');

async function expectOnScreen(page: Page, text: string) {
  await expect.poll(() => screenText(page), { timeout: 15_000 }).toContain(text);
}

/** The whole of `locator` is inside the page's first screen. */
async function expectInFirstScreen(page: Page, locator: ReturnType<Page['locator']>) {
  const box = await locator.boundingBox();
  const viewport = page.viewportSize()!;
  expect(box, 'laid out').not.toBeNull();
  expect(box!.y).toBeGreaterThanOrEqual(0);
  expect(box!.y + box!.height).toBeLessThanOrEqual(viewport.height);
}

test('the task page leads with the prompt and the terminal; a tap answers a menu without digits', async ({ page }) => {
  const errors = watchErrors(page);
  await page.setViewportSize({ width: 1280, height: 800 });
  const task = await server.create(`${ASKS} cursor`, 'colours');
  await server.open(page, `/tasks/${task.id}`);
  const asks = prompt(page);
  await expect(asks.locator('.question')).toHaveText('? Which colour? (Use arrow keys)');
  await expect(asks.getByRole('button')).toHaveText(['Red', 'Green', 'Blue']);
  await expect(page.locator('.detail-head').getByTestId('status')).toHaveText(/waiting/);
  // What a person came for fits the first screen; the details are one folded line.
  await expectInFirstScreen(page, asks);
  await expectInFirstScreen(page, page.getByTestId('terminal'));
  await expect(page.locator('details.about')).not.toHaveAttribute('open');
  await expect(page.locator('dl.facts')).toBeHidden();

  await asks.getByRole('button', { name: 'Green' }).click();
  await expectOnScreen(page, 'got: Green');
  await expect(asks).toHaveCount(0);
  await expect(page.locator('.detail-head').getByTestId('status')).toHaveText(/running|completed/);
  expect(errors).toEqual([]);
});

test('on a phone, the task page shows the prompt and the terminal in its first screen', async ({ page }) => {
  await page.setViewportSize({ width: 390, height: 844 });
  const task = await server.create(`${ASKS} numbered`, 'agent');
  await server.open(page, `/tasks/${task.id}`);
  const asks = prompt(page);
  await expect(asks.getByRole('button')).toHaveCount(3);
  await expectInFirstScreen(page, asks);
  await expectInFirstScreen(page, page.getByTestId('terminal'));
  // Thumb-sized: each answer at least 44 px high and the width of the page.
  for (const button of await asks.getByRole('button').all()) {
    const box = (await button.boundingBox())!;
    expect(box.height).toBeGreaterThanOrEqual(44);
    expect(box.width).toBeGreaterThan(300);
  }
  // Details open on a tap.
  await page.locator('details.about summary').click();
  await expect(page.locator('dl.facts')).toBeVisible();
});

test("on a phone, a list row's buttons answer its prompt", async ({ page }) => {
  const errors = watchErrors(page);
  await page.setViewportSize({ width: 390, height: 844 });
  const task = await server.create(`${ASKS} reverse --work 30`, 'deploy');
  await server.open(page, '/');
  const asks = prompt(row(page, task.id));
  await expect(asks.getByRole('button')).toHaveText(['staging', 'production', 'local']);
  await asks.getByRole('button', { name: 'local' }).click();
  // The row runs again, its buttons gone, and the program got the third choice.
  await expect(row(page, task.id)).toHaveAttribute('data-status', 'running');
  await expect(asks).toHaveCount(0);
  await expect.poll(async () => (await server.api('GET', `/api/tasks/${task.id}/output?tail=50`)).json.output)
    .toContain('got: local');
  expect(errors).toEqual([]);
});

test('a stale tap says the prompt changed and types nothing', async ({ page }) => {
  const task = await server.create(`${ASKS} numbered --change-after 3`, 'two questions');
  await server.open(page, '/');
  const asks = prompt(row(page, task.id));
  await expect(asks.getByRole('button')).toHaveCount(3);
  // The program moves on to another question just before the tap: the page still shows
  // the first one when its reply is sent.
  await page.route(`**/api/tasks/${task.id}/reply`, async (route) => {
    await expect.poll(async () => (await server.api('GET', `/api/tasks/${task.id}`)).json.prompt?.question ?? '',
      { timeout: 10_000 }).toContain('second step');
    await route.continue();
  });
  const first = (await server.api('GET', `/api/tasks/${task.id}`)).json.prompt.id;
  await asks.getByRole('button', { name: 'No' }).click();
  await expect(asks.getByRole('alert')).toHaveText('the prompt has changed');
  const now = (await server.api('GET', `/api/tasks/${task.id}`)).json;
  expect(now.prompt.id).not.toBe(first);
  expect(now.status).toBe('waiting-for-input');
  // Answered now, the program's only key is this one.
  await page.unroute(`**/api/tasks/${task.id}/reply`);
  await expect(asks.locator('.question')).toContainText('second step');
  await asks.getByRole('button', { name: 'Yes', exact: true }).click();
  await expect.poll(async () => (await server.api('GET', `/api/tasks/${task.id}/output?tail=50`)).json.output)
    .toContain("got: Yes keys='1'");
});
