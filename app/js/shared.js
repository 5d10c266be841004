// One event connection per browser, however many dashboard tabs are open. Browsers allow six
// HTTP/1.1 connections per host across all tabs, and each list tab held two streams (events
// and tails), so a fourth tab never loaded.
//
// The tab that holds a Web Lock is the leader: it opens the EventSource of /api/events (and
// /api/tails/stream while some tab shows the list) and relays every message to the other
// tabs over a BroadcastChannel. When it closes, the lock passes to another tab within a
// moment, which connects, resuming after the last id it saw. Every tab applies what arrives
// with the same logic (live/connection.rs), refetching on `resync` or `resumed: false`.
// Without BroadcastChannel or Web Locks, each tab connects on its own, as before.
//
// The leader also shows desktop notifications, so each transition gives one per browser,
// and only while no dashboard tab is visible. The service worker (/sw.js) shows them, as it
// shows the server's pushes: a transition that reaches the browser both ways is shown once.
// Once notifications are allowed, this browser subscribes to the server's pushes too (the
// kinds the bell has ticked), so it hears of tasks with no dashboard tab open.

const CHANNEL = 'taskwire-events';
const LOCK = 'taskwire-events-leader';
const EVENT_NAMES = ['ready', 'task.created', 'task.status', 'task.updated', 'task.deleted', 'node.status', 'resync', 'end'];
const tabId = Math.random().toString(36).slice(2);
const shared = typeof BroadcastChannel === 'function' && !!navigator.locks;

export class SharedEvents {
  // url(): where to connect (with the cursor); onMessage(name, data, id); onError(closed).
  constructor(url, onMessage, onError) {
    this.url = url;
    this.onMessage = onMessage;
    this.onError = onError;
    this.onTail = null;
    this.leader = false;
    this.source = null;
    this.tails = null;
    this.wantTails = false;
    this.tailWanters = new Set();
    this.visibleTabs = new Set();
    this.closed = false;
    syncPush().catch((e) => console.warn('push:', e));
    if (!shared) {
      this.leader = true;
      this.connect();
      return;
    }
    this.channel = new BroadcastChannel(CHANNEL);
    this.channel.onmessage = (message) => this.received(message.data);
    document.addEventListener('visibilitychange', () => this.sayVisibility());
    addEventListener('pagehide', () => this.post({ kind: 'gone', tab: tabId }));
    this.sayVisibility();
    // Whoever leads now says how its connection is, so this tab can start from there.
    this.post({ kind: 'hello', tab: tabId });
    navigator.locks.request(LOCK, () => {
      if (this.closed) return undefined;
      this.becomeLeader();
      // Held until the tab goes away.
      return new Promise((release) => { this.release = release; });
    });
  }

  post(message) {
    if (this.channel) this.channel.postMessage(message);
  }

  becomeLeader() {
    this.leader = true;
    document.documentElement.dataset.eventsLeader = 'true';
    // Who wants tails and who is visible is asked again: the old leader knew.
    this.post({ kind: 'roll-call' });
    this.visibleTabs.clear();
    if (document.visibilityState === 'visible') this.visibleTabs.add(tabId);
    if (this.wantTails) this.tailWanters.add(tabId);
    this.connect();
    this.syncTails();
  }

  // (Re)opens the event stream: the leader's job; other tabs wait for what it relays.
  connect() {
    if (!this.leader || this.closed) return;
    if (this.source) this.source.close();
    const source = new EventSource(this.url());
    for (const name of EVENT_NAMES) {
      source.addEventListener(name, (event) => {
        this.deliver(name, event.data, event.lastEventId);
        this.post({ kind: 'event', name, data: event.data, id: event.lastEventId });
      });
    }
    source.onerror = () => {
      const closed = source.readyState === EventSource.CLOSED;
      // The browser would retry at once; live/connection.rs reconnects with backoff.
      source.close();
      if (this.source === source) this.source = null;
      this.onError(closed);
      this.post({ kind: 'error', closed });
    };
    this.source = source;
  }

  deliver(name, data, id) {
    this.onMessage(name, data, id);
    if (name === 'task.status' && this.leader) notifyIfAway(data, id, this.visibleTabs);
  }

  received(message) {
    switch (message.kind) {
      case 'event':
        if (message.to && message.to !== tabId) break;
        if (!this.leader) this.deliver(message.name, message.data, message.id);
        break;
      case 'error':
        if (!this.leader) this.onError(message.closed);
        break;
      case 'tail':
        if (!this.leader && this.onTail) this.onTail(message.data);
        break;
      case 'hello':
        if (this.leader) {
          // A new tab: it refetches, then follows what is relayed.
          if (this.source && this.source.readyState === EventSource.OPEN) {
            this.post({ kind: 'event', to: message.tab, name: 'ready', data: JSON.stringify({ event_id: '', resumed: false }), id: '' });
          } else {
            this.post({ kind: 'error', closed: false });
          }
        }
        break;
      case 'roll-call':
        this.sayVisibility();
        this.post({ kind: 'tails', tab: tabId, want: this.wantTails });
        break;
      case 'visible':
        if (message.visible) this.visibleTabs.add(message.tab); else this.visibleTabs.delete(message.tab);
        break;
      case 'tails':
        if (message.want) this.tailWanters.add(message.tab); else this.tailWanters.delete(message.tab);
        this.syncTails();
        break;
      case 'gone':
        this.visibleTabs.delete(message.tab);
        this.tailWanters.delete(message.tab);
        this.syncTails();
        break;
      default:
    }
  }

  sayVisibility() {
    const visible = document.visibilityState === 'visible';
    if (visible) this.visibleTabs.add(tabId); else this.visibleTabs.delete(tabId);
    this.post({ kind: 'visible', tab: tabId, visible });
  }

  // The list's live tails: wanted while this tab shows the list and is visible.
  followTails(want, onTail) {
    this.onTail = onTail;
    this.wantTails = want;
    if (want) this.tailWanters.add(tabId); else this.tailWanters.delete(tabId);
    this.post({ kind: 'tails', tab: tabId, want });
    this.syncTails();
  }

  syncTails() {
    if (!this.leader) return;
    const wanted = this.tailWanters.size > 0 && !this.closed;
    if (wanted && !this.tails) {
      this.tails = new EventSource('/api/tails/stream');
      this.tails.addEventListener('tail', (event) => {
        if (this.onTail && this.wantTails) this.onTail(event.data);
        this.post({ kind: 'tail', data: event.data });
      });
    } else if (!wanted && this.tails) {
      this.tails.close();
      this.tails = null;
    }
  }

  close() {
    this.closed = true;
    if (this.source) this.source.close();
    if (this.tails) this.tails.close();
    if (this.release) this.release();
    if (this.channel) {
      this.post({ kind: 'gone', tab: tabId });
      this.channel.close();
    }
  }
}

// Desktop notifications: which kinds the person wants, remembered in this browser.
const PREFS = 'taskwire.notify';
const KINDS = { 'waiting-for-input': 'waiting', failed: 'failed', completed: 'completed' };

function notificationPrefs() {
  try {
    return { waiting: true, failed: true, completed: true, ...JSON.parse(localStorage.getItem(PREFS) || '{}') };
  } catch {
    return { waiting: true, failed: true, completed: true };
  }
}

function setNotificationPref(kind, on) {
  const prefs = notificationPrefs();
  prefs[kind] = on;
  localStorage.setItem(PREFS, JSON.stringify(prefs));
}

function notificationPermission() {
  return typeof Notification === 'function' ? Notification.permission : 'unsupported';
}

// Asks for permission; only ever called from a click.
async function askNotificationPermission() {
  if (typeof Notification !== 'function') return 'unsupported';
  return Notification.requestPermission();
}

function notifyIfAway(data, eventId, visibleTabs) {
  if (notificationPermission() !== 'granted' || visibleTabs.size > 0) return;
  let task;
  try {
    task = JSON.parse(data);
  } catch {
    return;
  }
  const kind = KINDS[task.status];
  if (!kind || !notificationPrefs()[kind]) return;
  const worker = navigator.serviceWorker && navigator.serviceWorker.controller;
  if (worker) {
    worker.postMessage({ kind: 'notify', notice: { event: 'task.status', task, event_id: eventId } });
    return;
  }
  // No service worker (yet): the page shows it itself.
  const status = task.status === 'failed' && task.exit_code != null ? `failed (exit ${task.exit_code})` : task.status;
  // A task that asks says what: its question, then its answers.
  const asks = task.prompt && task.status === 'waiting-for-input'
    ? [task.prompt.question, task.prompt.choices.map((c) => c.label).join(' · ')].filter(Boolean).join('\n')
    : null;
  const notification = new Notification(task.name, {
    body: asks || task.message || status,
    // One per task, the worker's tag too: a newer change of the task replaces the older.
    tag: `taskwire-${task.id}`,
  });
  notification.onclick = () => {
    window.focus();
    history.pushState({}, '', `/tasks/${task.id}`);
    dispatchEvent(new PopStateEvent('popstate'));
    notification.close();
  };
}

// Web Push: where the browser can, the server pushes the ticked kinds to this browser, also
// with no dashboard tab open (a phone's lock screen). Says how it went, for the bell.
let pushState = 'unknown';

function pushSupport() {
  if (!window.isSecureContext) return 'insecure';
  if (!('serviceWorker' in navigator) || !('PushManager' in window)) {
    const apple = /iPhone|iPad|iPod/.test(navigator.userAgent);
    const standalone = matchMedia('(display-mode: standalone)').matches || navigator.standalone;
    return apple && !standalone ? 'home-screen' : 'unsupported';
  }
  return 'supported';
}

async function pushApi(method, body) {
  const response = await fetch('/api/push/subscriptions', {
    method,
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-Taskwire': '1' },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`the server answered ${response.status}`);
}

function sameKey(buffer, key) {
  if (!buffer) return false;
  const mine = btoa(String.fromCharCode(...new Uint8Array(buffer))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  return mine === key;
}

// Subscribes (or unsubscribes) this browser as the bell's kinds say; at every page load,
// so the server's list stays true. Asks for nothing: the permission comes from a click.
async function syncPush() {
  const support = pushSupport();
  if (support !== 'supported' || notificationPermission() !== 'granted') {
    pushState = support === 'supported' ? 'off' : support;
    return;
  }
  const registration = await navigator.serviceWorker.ready;
  let subscription = await registration.pushManager.getSubscription();
  const prefs = notificationPrefs();
  const kinds = Object.keys(KINDS).filter((status) => prefs[KINDS[status]]);
  if (kinds.length === 0) {
    if (subscription) {
      await pushApi('DELETE', { endpoint: subscription.endpoint });
      await subscription.unsubscribe();
    }
    pushState = 'off';
    return;
  }
  const answer = await fetch('/api/push/key', { credentials: 'same-origin' });
  if (!answer.ok) throw new Error(`the server answered ${answer.status}`);
  const { key } = await answer.json();
  // A subscription made for another key (another data dir) would be refused by its service.
  if (subscription && !sameKey(subscription.options.applicationServerKey, key)) {
    await subscription.unsubscribe();
    subscription = null;
  }
  try {
    subscription = subscription || await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  } catch (e) {
    pushState = 'failed';
    throw e;
  }
  await pushApi('POST', { ...subscription.toJSON(), kinds });
  pushState = 'on';
}

// The favicon shows how many tasks wait for the person, for a tab among many.
export function setFavicon(waiting) {
  const link = document.querySelector('link[rel=icon]');
  if (!link) return;
  const mark = waiting === 0
    ? "<rect x='6' y='4' width='8' height='24' rx='2' fill='#2f6feb'/>"
    : "<circle cx='16' cy='16' r='16' fill='#c27c00'/><text x='16' y='22' font-size='18' font-family='sans-serif' "
      + `font-weight='700' text-anchor='middle' fill='white'>${waiting > 9 ? '9+' : waiting}</text>`;
  const svg = `<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'>${mark}</svg>`;
  link.setAttribute('href', `data:image/svg+xml,${encodeURIComponent(svg)}`);
}

const HINTS = {
  granted: 'Shown when no taskwire tab is in view.',
  denied: "Notifications are blocked for this site in the browser's settings.",
  unsupported: 'This browser cannot show notifications.',
  default: 'Notifications are off in this browser.',
};
const PUSH_HINTS = {
  on: 'This device also gets them with no taskwire tab open.',
  failed: 'This browser could not subscribe to pushes: notifications come only while a taskwire tab is open.',
  insecure: 'On another device, notifications need HTTPS: see “Reaching it from another device” in the README.',
  'home-screen': 'On iPhone and iPad: Share → Add to Home Screen, then open taskwire from there to be notified.',
  unsupported: 'This browser cannot get pushes: notifications come only while a taskwire tab is open.',
};
const KIND_LABELS = [['waiting', 'Waits for you'], ['failed', 'Failed'], ['completed', 'Completed']];

// The bell's panel: the permission (asked for only on a click) and the kinds wanted.
export function toggleBell(button) {
  const open = button.parentElement.querySelector('.bell-panel');
  if (open) {
    open.remove();
    button.setAttribute('aria-expanded', 'false');
    return;
  }
  const panel = document.createElement('div');
  panel.className = 'bell-panel';
  panel.setAttribute('role', 'dialog');
  panel.setAttribute('aria-label', 'Notifications');
  const render = () => {
    const permission = notificationPermission();
    const hint = document.createElement('p');
    hint.className = 'hint';
    hint.textContent = HINTS[permission] || HINTS.default;
    panel.replaceChildren(hint);
    const pushHint = PUSH_HINTS[permission === 'granted' ? pushState : pushSupport()];
    if (pushHint) {
      const push = document.createElement('p');
      push.className = 'hint push-hint';
      push.textContent = pushHint;
      panel.append(push);
    }
    const resync = () => syncPush().catch((e) => console.warn('push:', e)).finally(render);
    if (permission === 'default') {
      const allow = document.createElement('button');
      allow.type = 'button';
      allow.className = 'button primary';
      allow.textContent = 'Allow notifications';
      allow.onclick = () => askNotificationPermission().then(resync);
      panel.append(allow);
    }
    const prefs = notificationPrefs();
    for (const [kind, text] of KIND_LABELS) {
      const label = document.createElement('label');
      label.className = 'pref';
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.checked = prefs[kind];
      box.onchange = () => {
        setNotificationPref(kind, box.checked);
        resync();
      };
      label.append(box, text);
      panel.append(label);
    }
  };
  render();
  button.after(panel);
  button.setAttribute('aria-expanded', 'true');
}
