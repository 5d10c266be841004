import { test, expect, BrowserContext, CDPSession, Page, Worker } from '@playwright/test';
import * as path from 'path';
import { Taskwire, row } from './server';

// The installable app and its service worker: the manifest, pushes shown with the prompt's
// answers as actions, an action that answers (or is refused for a prompt that moved on), and
// the app opening offline. The server's side of Web Push (encryption, VAPID, retries) is
// tested in server/tests/push.rs against a push service of its own; a browser here has no
// push service, so pushes are handed to the worker by the DevTools protocol.

const ASKS = `python3 ${path.resolve(__dirname, '../fixtures/asks.py')}`;

let server: Taskwire;
test.beforeEach(async () => { server = await Taskwire.start(); });
test.afterEach(async () => { await server.dispose(); });

/** Signs in, waits until the service worker controls the page; the worker. */
async function installed(context: BrowserContext, page: Page, route = '/'): Promise<Worker> {
  await server.open(page, route);
  await page.waitForFunction(() => !!navigator.serviceWorker.controller, null, { timeout: 15_000 });
  const worker = context.serviceWorkers()[0] ?? await context.waitForEvent('serviceworker');
  return worker;
}

/** Hands `notice` to the worker as a push, as the browser's push service would. */
async function deliverPush(page: Page, notice: unknown): Promise<void> {
  const cdp: CDPSession = await page.context().newCDPSession(page);
  const registration = new Promise<string>((resolve) => {
    cdp.on('ServiceWorker.workerRegistrationUpdated', ({ registrations }) => {
      const ours = registrations.find((r: any) => r.scopeURL.startsWith(server.url) && !r.isDeleted);
      if (ours) resolve(ours.registrationId);
    });
  });
  await cdp.send('ServiceWorker.enable');
  const registrationId = await registration;
  await cdp.send('ServiceWorker.deliverPushMessage', {
    origin: server.url, registrationId, data: JSON.stringify(notice),
  });
}

/** Leaves the dashboard, until the worker no longer counts the page as a window in view. */
async function leave(page: Page, worker: Worker): Promise<void> {
  await page.goto('about:blank');
  await expect.poll(() => worker.evaluate(async () =>
    (await (self as any).clients.matchAll({ type: 'window', includeUncontrolled: true })).length)).toBe(0);
}

interface Shown { title: string; body: string; tag: string; actions: { action: string; title: string }[]; data: any }

const notifications = (worker: Worker): Promise<Shown[]> => worker.evaluate(async () => {
  const shown = await (self as any).registration.getNotifications();
  return shown.map((n: any) => ({
    title: n.title, body: n.body, tag: n.tag, data: n.data,
    actions: n.actions.map((a: any) => ({ action: a.action, title: a.title })),
  }));
});

async function output(id: string): Promise<string> {
  const { json } = await server.api('GET', `/api/tasks/${id}/output?tail=50`);
  return json.output as string;
}

/** The task with its prompt, once its screen asks. */
async function asking(style: string) {
  const task = await server.create(`${ASKS} ${style}`, 'agent');
  await expect.poll(async () => (await server.api('GET', `/api/tasks/${task.id}`)).json.prompt?.choices?.length ?? 0,
    { timeout: 15_000 }).toBeGreaterThan(1);
  return (await server.api('GET', `/api/tasks/${task.id}`)).json;
}

test('the app is installable: its manifest parses without errors, with icons of their sizes', async ({ page, context }) => {
  await installed(context, page);
  const cdp = await context.newCDPSession(page);
  const manifest = await cdp.send('Page.getAppManifest');
  expect(manifest.errors).toEqual([]);
  expect(manifest.url).toBe(`${server.url}/manifest.webmanifest`);
  const parsed = JSON.parse(manifest.data!);
  expect(parsed).toMatchObject({ name: 'taskwire', display: 'standalone', start_url: '/' });
  const installability = await cdp.send('Page.getInstallabilityErrors');
  // Playwright's contexts are incognito, where nothing installs; that is the only reason.
  const reasons = installability.installabilityErrors.map((e) => e.errorId);
  expect(reasons.filter((r) => r !== 'in-incognito')).toEqual([]);

  // Readable without the session cookie, and each icon is a PNG of the size it declares.
  const anonymous = await fetch(`${server.url}/manifest.webmanifest`);
  expect(anonymous.status).toBe(200);
  expect(anonymous.headers.get('content-type')).toContain('manifest+json');
  const sizes = [];
  for (const icon of parsed.icons) {
    const png = Buffer.from(await (await fetch(`${server.url}${icon.src}`)).arrayBuffer());
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    const [width, height] = [png.readUInt32BE(16), png.readUInt32BE(20)];
    expect(`${width}x${height}`).toBe(icon.sizes);
    sizes.push(icon.sizes);
  }
  expect(sizes).toEqual(expect.arrayContaining(['192x192', '512x512']));

  // The worker names the site's version, so a new build's worker replaces it; the browser
  // asks for it anew on every visit.
  const script = await fetch(`${server.url}/sw.js`);
  expect(script.headers.get('content-type')).toContain('javascript');
  expect(script.headers.get('cache-control')).toBe('no-cache');
  expect(await script.text()).toMatch(/^const VERSION = '[0-9a-f]{16}';\n/);
});

test('every page registers the service worker, the sign-in page too', async ({ page }) => {
  await page.goto(server.url);
  await expect(page.getByRole('button', { name: /sign in/i })).toBeVisible();
  await expect.poll(() => page.evaluate(async () =>
    (await navigator.serviceWorker.getRegistration())?.active?.scriptURL ?? '')).toBe(`${server.url}/sw.js`);
});

test('a push shows the question with its answers as actions, once; an action answers the prompt', async ({ browser }) => {
  const context = await browser.newContext({ permissions: ['notifications'] });
  const page = await context.newPage();
  const worker = await installed(context, page);
  const task = await asking('numbered');
  const [first, second] = task.prompt.choices;
  // Away from the dashboard: no taskwire window in view.
  await leave(page, worker);
  const notice = { event: 'task.status', task, url: `${server.url}/tasks/${task.id}`, event_id: 'e2e-1' };
  await deliverPush(page, notice);
  await expect.poll(async () => (await notifications(worker)).length).toBe(1);
  const [shown] = await notifications(worker);
  expect(shown.title).toBe('agent');
  expect(shown.body).toContain(task.prompt.question);
  expect(shown.tag).toBe(`taskwire-${task.id}`);
  expect(shown.actions.slice(0, 2)).toEqual([
    { action: `choice:${first.id}`, title: first.label },
    { action: `choice:${second.id}`, title: second.label },
  ]);

  // The same transition from the page's own stream is not shown twice.
  await worker.evaluate((notice) => (self as any).dispatchEvent(new MessageEvent('message', { data: { kind: 'notify', notice } })), notice);
  await deliverPush(page, notice);
  await expect.poll(async () => (await notifications(worker)).length).toBe(1);

  // The second answer, tapped on the notification.
  await worker.evaluate(async (action) => {
    const [n] = await (self as any).registration.getNotifications();
    (self as any).dispatchEvent(new (self as any).NotificationEvent('notificationclick', { notification: n, action }));
  }, `choice:${second.id}`);
  await expect.poll(() => output(task.id), { timeout: 10_000 }).toContain(`got: ${second.label}`);
  await expect.poll(async () => (await notifications(worker)).length).toBe(0);
  await context.close();
});

test('an action for a prompt that has moved on is refused, types nothing, and says so', async ({ browser }) => {
  const context = await browser.newContext({ permissions: ['notifications'] });
  const page = await context.newPage();
  const worker = await installed(context, page);
  const task = await asking('numbered');
  await leave(page, worker);
  // A push of an earlier asking: its prompt is not the one on the screen now.
  const stale = { ...task, prompt: { ...task.prompt, id: `${task.prompt.id}-earlier` } };
  await deliverPush(page, { event: 'task.status', task: stale, url: '', event_id: 'e2e-stale' });
  await expect.poll(async () => (await notifications(worker)).length).toBe(1);
  await worker.evaluate(async (action) => {
    const [n] = await (self as any).registration.getNotifications();
    (self as any).dispatchEvent(new (self as any).NotificationEvent('notificationclick', { notification: n, action }));
  }, `choice:${task.prompt.choices[0].id}`);
  await expect.poll(async () => (await notifications(worker))[0]?.body).toContain('moved on: nothing was sent');
  expect(await output(task.id)).not.toContain('got:');
  const now = (await server.api('GET', `/api/tasks/${task.id}`)).json;
  expect(now.status).toBe('waiting-for-input');
  expect(now.prompt.id).toBe(task.prompt.id);
  await context.close();
});

test('with the server stopped, the installed app opens and says it is offline, then comes back', async ({ page, context }) => {
  const task = await server.create('sleep 600', 'long one');
  const worker = await installed(context, page);
  await expect(row(page, task.id)).toBeVisible();
  await expect.poll(() => worker.evaluate(async () => !!(await caches.match('/offline.html')))).toBe(true);
  await server.stop();
  await page.goto(`${server.url}/`);
  await expect(page.getByRole('heading', { name: 'taskwire is offline' })).toBeVisible();
  await expect(page.getByRole('status')).toHaveText('Offline');
  await expect(page.locator('.task-row')).toHaveCount(0);
  // Back on: the page finds it by itself and shows the tasks, live.
  await server.launch();
  await expect(row(page, task.id)).toBeVisible({ timeout: 15_000 });
  await expect(page.getByTestId('connection')).toHaveText('Live');
});

test('a push is not shown while a taskwire window is in view, as the page\'s own are not', async ({ browser }) => {
  const context = await browser.newContext({ permissions: ['notifications'] });
  const page = await context.newPage();
  const worker = await installed(context, page);
  const failed = async (name: string) => {
    const task = await server.create('exit 3', name);
    await expect.poll(async () => (await server.api('GET', `/api/tasks/${task.id}`)).json.status).toBe('failed');
    return (await server.api('GET', `/api/tasks/${task.id}`)).json;
  };
  const seen = await failed('seen on the page');
  await deliverPush(page, { event: 'task.status', task: seen, url: '', event_id: 'e2e-in-view' });
  await leave(page, worker);
  const away = await failed('while away');
  await deliverPush(page, { event: 'task.status', task: away, url: '', event_id: 'e2e-away' });
  // Pushes are handled in order: by the time the second shows, the first was passed over.
  await expect.poll(async () => (await notifications(worker)).map((n) => n.title)).toEqual(['while away']);
  const [shown] = await notifications(worker);
  expect(shown.body).toBe('failed (exit 3)');
  expect(shown.actions.map((a) => a.title)).toEqual(['Open']);
  await context.close();
});
