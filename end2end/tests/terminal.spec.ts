import { test, expect, Page } from '@playwright/test';
import * as path from 'path';
import { Taskwire, row, screenText, watchErrors } from './server';

const FIXTURES = path.resolve(__dirname, '../fixtures');

let server: Taskwire;
test.beforeEach(async () => { server = await Taskwire.start(); });
test.afterEach(async () => { await server.dispose(); });

const terminal = (page: Page) => page.getByTestId('terminal');
const pill = (page: Page) => page.locator('.detail-head').getByTestId('status');

async function expectOnScreen(page: Page, text: string) {
  await expect.poll(() => screenText(page), { timeout: 15_000 }).toContain(text);
}

test('a full-screen menu shows in the terminal and is answered with the arrow keys', async ({ page }) => {
  const errors = watchErrors(page);
  const task = await server.create(`python3 ${FIXTURES}/menu.py`, 'menu');
  await server.open(page, `/tasks/${task.id}`);
  await expectOnScreen(page, 'Do you want to make this edit?');
  await expectOnScreen(page, '> 1. Yes');
  // The menu is drawn as a screen, line by line, not glued into one paragraph.
  const screen = await screenText(page);
  expect(screen).toMatch(/> 1\. Yes\s*│?\s*\n.*2\. Yes, and don't ask again/);

  await terminal(page).click();
  await page.keyboard.press('ArrowDown');
  await expectOnScreen(page, '> 2. Yes');
  await page.keyboard.press('ArrowDown');
  await expectOnScreen(page, '> 3. No');
  await page.keyboard.press('Enter');
  await expect(pill(page)).toHaveText('failed 3');
  // The page keeps working after the terminal closed.
  await expect(terminal(page)).toHaveAttribute('data-state', 'finished');
  await page.getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('button', { name: 'Yes, delete it' }).click();
  await expect(page).toHaveURL(`${server.url}/`);
  expect(errors).toEqual([]);
});

test('a coloured word keeps its colour in the terminal', async ({ page }) => {
  const task = await server.create(`printf 'plain \\033[31mREDWORD\\033[0m plain\\n'; sleep 60`, 'colours');
  await server.open(page, `/tasks/${task.id}`);
  await expectOnScreen(page, 'REDWORD');
  const colour = await terminal(page).evaluate((el: any) => {
    const buffer = el.terminal.buffer.active;
    for (let y = 0; y < buffer.length; y++) {
      const line = buffer.getLine(y);
      const x = line.translateToString(true).indexOf('REDWORD');
      if (x < 0) continue;
      const cell = line.getCell(x);
      const plain = line.getCell(0);
      return { red: cell.isFgPalette() ? cell.getFgColor() : -1, plain: plain.isFgDefault() };
    }
    return null;
  });
  // Palette colour 1 is red; the word before it has the default colour.
  expect(colour).toEqual({ red: 1, plain: true });
});

test('two tabs on one task both see what is typed in either', async ({ browser }) => {
  const context = await browser.newContext();
  const a = await context.newPage();
  const b = await context.newPage();
  const task = await server.create('cat', 'echo');
  await server.open(a, `/tasks/${task.id}`);
  await server.open(b, `/tasks/${task.id}`);
  await expect(terminal(a)).toHaveAttribute('data-state', 'live');
  await expect(terminal(b)).toHaveAttribute('data-state', 'live');
  await terminal(a).click();
  await a.keyboard.type('typed-in-a');
  await a.keyboard.press('Enter');
  await expectOnScreen(b, 'typed-in-a');
  await terminal(b).click();
  await b.keyboard.type('typed-in-b');
  await b.keyboard.press('Enter');
  await expectOnScreen(a, 'typed-in-b');
  await context.close();
});

test.describe('at phone width', () => {
  test.use({ viewport: { width: 390, height: 844 }, hasTouch: true });

  test("the key row's Esc and Ctrl-C reach the program, and the page fits", async ({ page }) => {
    const task = await server.create(`python3 ${FIXTURES}/keys.py`, 'keys');
    await server.open(page, `/tasks/${task.id}`);
    await expectOnScreen(page, 'ready for keys');
    await page.getByRole('button', { name: 'Escape' }).click();
    await expectOnScreen(page, 'got-esc');
    await page.getByRole('button', { name: 'Ctrl-C' }).click();
    await expect(pill(page)).toHaveText('failed 7');
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    expect(width).toBeLessThanOrEqual(390);
  });
});

test("the list's tail of a progress bar shows only its latest value", async ({ page }) => {
  const task = await server.create(
    "for i in 1 2 3 4 5 6 7 8 9 10; do printf '\\rprogress %d%%' $((i*10)); sleep 0.05; done; sleep 60",
    'bar',
  );
  await server.open(page);
  await expect(row(page, task.id).locator('.tail')).toHaveText('progress 100%');
});
