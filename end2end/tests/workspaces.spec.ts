import { test, expect } from '@playwright/test';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Taskwire, row, screenText } from './server';

// A task in a git worktree of its own, with real git: the Changes view follows what the
// agent writes, a review comment on picked lines reaches the agent as one message, and the
// work is committed and merged from the page.

let server: Taskwire;
let dir: string;
test.beforeEach(async () => {
  server = await Taskwire.start();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskwire-repo-'));
});
test.afterEach(async () => {
  await server.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

const IDENTITY = {
  GIT_AUTHOR_NAME: 'e2e', GIT_AUTHOR_EMAIL: 'e2e@example.com',
  GIT_COMMITTER_NAME: 'e2e', GIT_COMMITTER_EMAIL: 'e2e@example.com',
};
const git = (repo: string, ...args: string[]) =>
  execFileSync('git', ['-C', repo, ...args], { env: { ...process.env, ...IDENTITY } }).toString().trim();

/** A repository on `main` with one file of five lines. */
function repository(): string {
  const repo = path.join(dir, 'proj');
  fs.mkdirSync(repo);
  git(repo, 'init', '--quiet', '-b', 'main');
  fs.writeFileSync(path.join(repo, 'a.txt'), 'one\ntwo\nthree\nfour\nfive\n');
  git(repo, 'add', '.');
  git(repo, 'commit', '--quiet', '-m', 'start');
  return repo;
}

/** An agent in a new worktree: once `go` exists it rewrites lines 2–3, then reads lines. */
async function agent(repo: string, go: string) {
  const command = `while [ ! -e ${go} ]; do sleep 0.05; done; `
    + `printf 'one\\nTWO\\nTHREE\\nfour\\nfive\\n' > a.txt; `
    + 'while read -r line; do echo "agent got [$line]"; done';
  const { status, json } = await server.api('POST', '/api/tasks', { command, name: 'agent', workspace: { repo } });
  expect(status).toBe(201);
  return json;
}

test('the Changes view follows the agent, and a comment on two lines reaches it as one message', async ({ page }) => {
  const repo = repository();
  const go = path.join(dir, 'go');
  const task = await agent(repo, go);
  await server.open(page, `/tasks/${task.id}`);
  const changes = page.getByTestId('changes');
  await expect(changes).toContainText('Nothing changed yet.');
  await expect(changes.locator('.changes-count')).toHaveText('0 files · +0 −0');

  fs.writeFileSync(go, '');
  const file = changes.locator('.file[data-path="a.txt"]');
  await expect(file).toBeVisible();
  await expect(changes.locator('.changes-count')).toHaveText('1 file · +2 −2');
  await expect(file.locator('.line.add')).toHaveText([/TWO/, /THREE/]);
  // The list's row says it too.
  // Two lines picked: the first tap picks one, the second the lines between.
  await file.locator('.line.add', { hasText: 'TWO' }).click();
  await file.locator('.line.add', { hasText: 'THREE' }).click();
  await expect(file.locator('.line.picked')).toHaveCount(2);
  const form = file.locator('.comment-form');
  await expect(form).toContainText('Comment on lines 2–3');
  await form.locator('textarea').fill('keep these lowercase');
  await form.getByRole('button', { name: 'Add comment' }).click();
  await page.getByRole('button', { name: 'Send to the agent (1)' }).click();
  await expect.poll(() => screenText(page), { timeout: 10_000 })
    .toContain('agent got [Review comments: a.txt lines 2–3 ("TWO" ⏎ "THREE"): keep these lowercase]');
  await expect(page.getByTestId('review')).toHaveCount(0);

  // The checkout the person works in is untouched.
  expect(fs.readFileSync(path.join(repo, 'a.txt'), 'utf8')).toBe('one\ntwo\nthree\nfour\nfive\n');
  await page.getByRole('link', { name: 'taskwire' }).click();
  await expect(row(page, task.id).locator('.row-changes')).toHaveText('1 changed · +2 −2');
});

test('the work is committed and merged from the page; discard waits for the task to end', async ({ page }) => {
  const repo = repository();
  const go = path.join(dir, 'go');
  fs.writeFileSync(go, '');
  const task = await agent(repo, go);
  await server.open(page, `/tasks/${task.id}`);
  const changes = page.getByTestId('changes');
  await expect(changes.locator('.changes-count')).toHaveText('1 file · +2 −2');
  await expect(changes.getByRole('button', { name: 'Discard' })).toBeDisabled();

  await changes.getByLabel('Commit message').fill('Shout lines two and three');
  await changes.getByRole('button', { name: 'Commit' }).click();
  await expect(changes.getByRole('status')).toHaveText('Committed on its branch.');
  await changes.getByRole('button', { name: 'Merge into main' }).click();
  await expect(changes.getByRole('status')).toHaveText('Merged into main.');
  expect(git(repo, 'log', '--format=%s', '-1', 'main')).toBe('Shout lines two and three');
  expect(fs.readFileSync(path.join(repo, 'a.txt'), 'utf8')).toBe('one\nTWO\nTHREE\nfour\nfive\n');

  // Ended, the worktree stays until it is discarded.
  await server.api('POST', `/api/tasks/${task.id}/kill`);
  const worktree = task.workspace.path;
  await expect(changes.getByRole('button', { name: 'Discard' })).toBeEnabled();
  expect(fs.existsSync(worktree)).toBe(true);
  await changes.getByRole('button', { name: 'Discard' }).click();
  await changes.getByRole('button', { name: 'Yes, discard' }).click();
  await expect(page.getByTestId('changes')).toHaveCount(0);
  expect(fs.existsSync(worktree)).toBe(false);
  expect(git(repo, 'branch', '--list', task.workspace.branch)).toBe('');
});
