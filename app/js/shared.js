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
// and only while no dashboard tab is visible.

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
    if (name === 'task.status' && this.leader) notifyIfAway(data, this.visibleTabs);
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

function notifyIfAway(data, visibleTabs) {
  if (notificationPermission() !== 'granted' || visibleTabs.size > 0) return;
  let task;
  try {
    task = JSON.parse(data);
  } catch {
    return;
  }
  const kind = KINDS[task.status];
  if (!kind || !notificationPrefs()[kind]) return;
  const status = task.status === 'failed' && task.exit_code != null ? `failed (exit ${task.exit_code})` : task.status;
  // A task that asks says what: its question, then its answers.
  const asks = task.prompt && task.status === 'waiting-for-input'
    ? [task.prompt.question, task.prompt.choices.map((c) => c.label).join(' · ')].filter(Boolean).join('\n')
    : null;
  const notification = new Notification(task.name, {
    body: asks || task.message || status,
    // One per task: a newer change of the same task replaces the older notification.
    tag: `taskwire-${task.id}`,
  });
  notification.onclick = () => {
    window.focus();
    history.pushState({}, '', `/tasks/${task.id}`);
    dispatchEvent(new PopStateEvent('popstate'));
    notification.close();
  };
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
    if (permission === 'default') {
      const allow = document.createElement('button');
      allow.type = 'button';
      allow.className = 'button primary';
      allow.textContent = 'Allow notifications';
      allow.onclick = () => askNotificationPermission().then(render);
      panel.append(allow);
    }
    const prefs = notificationPrefs();
    for (const [kind, text] of KIND_LABELS) {
      const label = document.createElement('label');
      label.className = 'pref';
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.checked = prefs[kind];
      box.onchange = () => setNotificationPref(kind, box.checked);
      label.append(box, text);
      panel.append(label);
    }
  };
  render();
  button.after(panel);
  button.setAttribute('aria-expanded', 'true');
}
