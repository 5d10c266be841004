// A fleet of two nodes on a real nats-server: a page served by node A shows, filters and
// drives the tasks of node B (DESIGN.md "Fleet").
import { test, expect, Page } from '@playwright/test';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { Nats } from './nats';
import { Taskwire, row, screenText, startFleet, watchErrors } from './server';

const strip = (page: Page) => page.getByRole('list', { name: 'Nodes' });
const nodeFact = (page: Page) => page.locator('xpath=//dl[@class="facts"]/dt[.="Node"]/following-sibling::dd[1]');
const terminal = (page: Page) => page.getByTestId('terminal');

/** Whether `node`'s own tmux runs the task. */
const runsOn = (node: Taskwire, id: string) =>
  spawnSync('tmux', ['-L', node.socket, 'has-session', '-t', `tw-${id}`]).status === 0;

test('a single node speaks of no nodes', async ({ page }) => {
  const server = await Taskwire.start();
  try {
    const task = await server.create('sleep 300', 'alone');
    // Everything about nodes starts hidden: look once the page knows the nodes.
    const nodesKnown = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/nodes');
    await server.open(page);
    await nodesKnown;
    await page.getByRole('link', { name: 'New task' }).click();
    await expect(page.getByLabel('Command')).toBeVisible();
    await expect(page.getByRole('combobox', { name: 'Node' })).toBeHidden();
    await page.locator('header .brand').click();
    await expect(row(page, task.id)).toBeVisible();
    await expect(row(page, task.id).locator('.task-node')).toBeHidden();
    await expect(strip(page)).toBeHidden();
    await expect(page.getByRole('combobox', { name: 'Node' })).toBeHidden();
  } finally {
    await server.dispose();
  }
});

test.describe('two nodes', () => {
  let nats: Nats;
  let a: Taskwire;
  let b: Taskwire;
  test.beforeEach(async () => { ({ nats, a, b } = await startFleet()); });
  test.afterEach(async () => {
    await a?.dispose();
    await b?.dispose();
    await nats?.dispose();
  });

  test("a page on one node shows another node's task live, filters by node, and shows both nodes online", async ({ page }) => {
    const errors = watchErrors(page);
    const marker = path.join(b.dataDir, 'go');
    const onA = await a.create('sleep 300', 'on a');
    const onB = await b.create(`while [ ! -e ${marker} ]; do sleep 0.1; done; exit 0`, 'on b');
    expect(onB.node).toBe('node-b');
    await a.open(page);

    await expect(row(page, onB.id).getByTestId('status')).toHaveText('running');
    await expect(row(page, onB.id).locator('.task-node')).toBeVisible();
    await expect(row(page, onB.id).locator('.task-node')).toHaveText('node-b');
    await expect(row(page, onA.id).locator('.task-node')).toHaveText('node-a');
    await expect(strip(page)).toBeVisible();
    await expect(strip(page).locator('li')).toHaveText(['node-a', 'node-b']);
    await expect(strip(page).locator('li[data-online="true"]')).toHaveCount(2);

    fs.writeFileSync(marker, '');
    await expect(row(page, onB.id).getByTestId('status')).toHaveText('completed');

    const filter = page.getByRole('combobox', { name: 'Node' });
    await filter.selectOption('node-b');
    await expect(row(page, onB.id)).toBeVisible();
    await expect(row(page, onA.id)).toBeHidden();
    await filter.selectOption({ label: 'All nodes' });
    await expect(row(page, onA.id)).toBeVisible();
    expect(errors).toEqual([]);
  });

  test("another node's task's terminal shows its output and takes what is typed", async ({ page }) => {
    const task = await b.create('echo ready; read line; echo heard-$line; sleep 30', 'asks');
    await a.open(page, `/tasks/${task.id}`);
    await expect(nodeFact(page)).toHaveText('node-b');
    await expect(terminal(page)).toHaveAttribute('data-state', 'live');
    await expect.poll(() => screenText(page), { timeout: 15_000 }).toContain('ready');

    await terminal(page).click();
    await page.keyboard.type('over-the-fleet');
    await page.keyboard.press('Enter');
    await expect.poll(() => screenText(page), { timeout: 15_000 }).toContain('heard-over-the-fleet');
    // It reached the program in B's tmux, not some copy.
    const { json } = await b.api('GET', `/api/tasks/${task.id}/output`);
    expect(json.output).toContain('heard-over-the-fleet');
  });

  test('the new-task form on one node starts a task on another', async ({ page }) => {
    await a.open(page, '/new');
    await page.getByLabel('Command').fill('sleep 300');
    await page.getByLabel(/^Name/).fill('started from a');
    await page.getByRole('combobox', { name: 'Node' }).selectOption('node-b');
    await page.getByRole('button', { name: 'Start' }).click();
    await expect(page).toHaveURL(/\/tasks\/[A-Za-z0-9_-]+$/);
    const id = page.url().split('/').pop()!;
    await expect(nodeFact(page)).toHaveText('node-b');

    const { status, json } = await b.api('GET', `/api/tasks/${id}`);
    expect(status).toBe(200);
    expect(json.node).toBe('node-b');
    expect(runsOn(b, id)).toBe(true);
    expect(runsOn(a, id)).toBe(false);

    await page.locator('header .brand').click();
    await expect(row(page, id).locator('.task-node')).toHaveText('node-b');
  });

  test('a node that is down is shown offline, and the form does not offer it', async ({ page }) => {
    const task = await b.create('sleep 300', 'left behind');
    await b.stop();
    await expect.poll(async () => {
      const { json } = await a.api('GET', '/api/nodes');
      return json.nodes.find((n: { name: string }) => n.name === 'node-b')?.online;
    }, { timeout: 15_000 }).toBe(false);

    await a.open(page);
    await expect(strip(page).locator('li[data-online="false"]')).toHaveText('node-b');
    await expect(strip(page).locator('li[data-online="true"]')).toHaveText('node-a');
    await row(page, task.id).getByRole('link').click();
    await expect(nodeFact(page)).toHaveClass('offline');

    await page.getByRole('link', { name: 'New task' }).click();
    const offline = page.getByRole('combobox', { name: 'Node' }).locator('option[value="node-b"]');
    await expect(offline).toHaveText('node-b (offline)');
    await expect(offline).toBeDisabled();
  });

  // From the `node.status` event alone: the page's next full refresh is a minute away.
  test('an open page sees a node go offline', async ({ page }) => {
    await a.open(page);
    await expect(strip(page).locator('li[data-online="true"]')).toHaveCount(2);
    await b.stop();
    await expect(strip(page).locator('li[data-online="false"]')).toHaveText('node-b', { timeout: 15_000 });
  });
});
