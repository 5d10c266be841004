// taskwire's service worker. The server serves it at /sw.js with `const VERSION = …` above
// this line (a digest of the site), so each new build installs a new worker.
//
// - Offline: it keeps a small offline page, and shows it when a page cannot be loaded.
//   It keeps no tasks and no app: a page shown without the server would show old tasks as
//   if they were live.
// - Push: it shows a notification for each push the server sends (one per transition a
//   device wants), unless a taskwire window is in view, as the page's own do.
// - The page's own notifications are shown here too (the page posts them), so both share
//   one tag per task and one look, and a transition shown once is not shown again.
// - A notification's action answers the prompt it shows, with the prompt's id: the server
//   refuses a prompt that has moved on, and the notification says so.

const CACHE = `taskwire-${VERSION}`;
const OFFLINE = '/offline.html';
const ICON = '/icons/icon-192.png';
const KEPT = [OFFLINE, ICON];

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches.open(CACHE)
      .then((cache) => cache.addAll(KEPT.map((url) => new Request(url, { cache: 'reload' }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('taskwire-') && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const { request } = event;
  const url = new URL(request.url);
  if (url.origin === self.location.origin && KEPT.includes(url.pathname)) {
    event.respondWith(caches.match(request).then((kept) => kept || fetch(request)));
  } else if (request.mode === 'navigate') {
    event.respondWith(fetch(request).then(
      // A proxy in front of a stopped taskwire answers 502–504 itself.
      (response) => (response.status >= 502 && response.status <= 504 ? offlinePage(response) : response),
      () => offlinePage(),
    ));
  }
});

async function offlinePage(response) {
  return (await caches.match(OFFLINE)) || response || Response.error();
}

self.addEventListener('push', (event) => {
  let notice;
  try {
    notice = event.data.json();
  } catch {
    return;
  }
  keepAlive(event, windowInView().then((inView) => (inView ? undefined : show(notice))));
});

self.addEventListener('message', (event) => {
  if (event.data && event.data.kind === 'notify') keepAlive(event, show(event.data.notice));
});

// Keeps the worker alive until `work` is done. An event a test dispatches is not trusted
// (or not extendable) and may not be extended: the work goes on regardless.
function keepAlive(event, work) {
  try {
    event.waitUntil(work);
  } catch {
    // as said
  }
}

async function windowInView() {
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  return windows.some((w) => w.visibilityState === 'visible');
}

const STATUS = { 'waiting-for-input': 'waits for you', failed: 'failed', completed: 'completed' };

// The notification of a transition: the task's name; its question and answers when it asks;
// up to two of the answers as actions, and Open.
async function show({ task, event_id: eventId }) {
  const tag = `taskwire-${task.id}`;
  if (eventId) {
    const shown = await self.registration.getNotifications({ tag });
    if (shown.some((n) => n.data && n.data.eventId === eventId)) return;
  }
  const prompt = task.status === 'waiting-for-input' ? task.prompt : null;
  const status = task.status === 'failed' && task.exit_code != null ? `failed (exit ${task.exit_code})` : STATUS[task.status];
  const body = prompt
    ? [prompt.question, prompt.choices.map((c) => c.label).join(' · ')].filter(Boolean).join('\n')
    : task.message || status || task.status;
  const choices = prompt ? prompt.choices.slice(0, 2) : [];
  await self.registration.showNotification(task.name, {
    body,
    tag,
    // A new transition of the task replaces the last one's notification, and says so.
    renotify: true,
    requireInteraction: !!prompt,
    icon: ICON,
    actions: [
      ...choices.map((c) => ({ action: `choice:${c.id}`, title: c.label })),
      { action: 'open', title: 'Open' },
    ],
    data: { eventId, task: task.id, prompt: prompt ? prompt.id : null, url: `/tasks/${task.id}` },
  });
}

self.addEventListener('notificationclick', (event) => {
  const { notification, action } = event;
  const work = action && action.startsWith('choice:')
    ? answer(notification, action.slice('choice:'.length))
    : openTask(notification);
  keepAlive(event, work);
});

async function answer(notification, choice) {
  const { task, prompt } = notification.data;
  let response;
  try {
    response = await fetch(`/api/tasks/${encodeURIComponent(task)}/reply`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-Taskwire': '1' },
      body: JSON.stringify({ prompt, choice }),
    });
  } catch {
    return say(notification, 'taskwire cannot be reached: nothing was sent.');
  }
  if (response.ok) {
    notification.close();
    return undefined;
  }
  if (response.status === 409) {
    return say(notification, 'This question has moved on: nothing was sent. Open the task to see where it is.');
  }
  if (response.status === 401 || response.status === 403) {
    return say(notification, 'Sign in to taskwire again to answer from here: nothing was sent.');
  }
  const refusal = await response.json().catch(() => ({}));
  return say(notification, `${refusal.error || `taskwire answered ${response.status}`}: nothing was sent.`);
}

// Replaces the notification with one that says what became of the tap.
function say(notification, text) {
  return self.registration.showNotification(notification.title, {
    body: text,
    tag: notification.tag,
    icon: ICON,
    actions: [{ action: 'open', title: 'Open' }],
    data: { ...notification.data, eventId: null, prompt: null },
  });
}

// Focuses the task's page where a taskwire window is open, else opens one.
async function openTask(notification) {
  notification.close();
  const url = new URL(notification.data.url, self.location.origin).href;
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  const there = windows.find((w) => w.url === url);
  if (there) return there.focus();
  for (const w of windows) {
    try {
      const moved = await w.navigate(url);
      if (moved) return moved.focus();
    } catch {
      // Not a window this worker controls: open one instead.
    }
  }
  return self.clients.openWindow(url);
}
