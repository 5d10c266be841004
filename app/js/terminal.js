// The task page's terminal: xterm.js on one side, the task's WebSocket on the other.
// components/terminal.rs binds these exports with wasm_bindgen; wasm-bindgen copies this
// file into the site's pkg/snippets. xterm.js itself (public/xterm/, copied there by
// scripts/setup.sh from the npm packages of app/js) is imported only when a terminal opens,
// so other pages never load it.

const KEYS = {
  esc: '\x1b',
  tab: '\t',
  'shift-tab': '\x1b[Z',
  enter: '\r',
  'ctrl-c': '\x03',
};
// Arrows, as a terminal sends them in normal and in application cursor mode.
const ARROWS = { up: 'A', down: 'B', right: 'C', left: 'D' };

let stylesheet;
function loadStylesheet() {
  if (stylesheet) return;
  stylesheet = document.createElement('link');
  stylesheet.rel = 'stylesheet';
  stylesheet.href = '/xterm/xterm.css';
  document.head.appendChild(stylesheet);
}

export class TerminalHandle {
  constructor(element, path) {
    this.element = element;
    this.path = path;
    this.disposed = false;
    this.readOnly = false;
    this.retryMs = 500;
    this.encoder = new TextEncoder();
    element.dataset.state = 'loading';
    this.start().catch((e) => {
      element.dataset.state = 'failed';
      console.error('terminal:', e);
    });
  }

  async start() {
    loadStylesheet();
    const [{ Terminal }, { FitAddon }] = await Promise.all([
      import('/xterm/xterm.mjs'),
      import('/xterm/addon-fit.mjs'),
    ]);
    if (this.disposed) return;
    const term = new Terminal({
      cursorBlink: true,
      fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, monospace',
      fontSize: 13,
      scrollback: 5000,
      theme: { background: '#0f1115', foreground: '#e6e6e6' },
    });
    this.fit = new FitAddon();
    term.loadAddon(this.fit);
    term.open(this.element);
    this.term = term;
    // Tests and curious people read the screen through it.
    this.element.terminal = term;
    this.fit.fit();
    term.onData((data) => this.send(this.encoder.encode(data)));
    term.onBinary((data) => this.send(Uint8Array.from(data, (c) => c.charCodeAt(0))));
    term.onResize(({ cols, rows }) => {
      if (!this.readOnly && this.socket?.readyState === WebSocket.OPEN) {
        this.socket.send(JSON.stringify({ type: 'resize', cols, rows }));
      }
    });
    this.observer = new ResizeObserver(() => {
      if (!this.readOnly) this.fit.fit();
    });
    this.observer.observe(this.element);
    this.connect();
  }

  connect() {
    if (this.disposed) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const { cols, rows } = this.term;
    const socket = new WebSocket(`${scheme}://${location.host}${this.path}?cols=${cols}&rows=${rows}`);
    socket.binaryType = 'arraybuffer';
    socket.onopen = () => {
      this.retryMs = 500;
      this.element.dataset.state = 'live';
    };
    socket.onmessage = (message) => {
      if (typeof message.data === 'string') {
        this.control(message.data);
      } else {
        this.term.write(new Uint8Array(message.data));
      }
    };
    socket.onclose = (event) => {
      if (this.disposed || this.socket !== socket) return;
      if (event.code === 1000) {
        // The task ended: what is on screen now is its final screen.
        this.element.dataset.state = 'finished';
        this.readOnly = true;
        return;
      }
      // A lost connection: come back, with a growing pause.
      this.element.dataset.state = 'reconnecting';
      setTimeout(() => this.connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 10000);
    };
    this.socket = socket;
  }

  control(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message.type === 'size') {
      // A replay, drawn at the pane's size: the person reads it, nothing is typed.
      this.readOnly = true;
      this.element.dataset.state = 'replay';
      this.term.resize(message.cols, message.rows);
    }
  }

  send(bytes) {
    if (!this.readOnly && this.socket?.readyState === WebSocket.OPEN) this.socket.send(bytes);
  }

  // One key of the phone key row, by name (see KEYS and ARROWS).
  sendKey(name) {
    if (!this.term) return;
    let sequence = KEYS[name];
    if (ARROWS[name]) {
      const application = this.term.modes.applicationCursorKeysMode;
      sequence = (application ? '\x1bO' : '\x1b[') + ARROWS[name];
    }
    if (sequence) this.send(this.encoder.encode(sequence));
    this.term.focus();
  }

  dispose() {
    this.disposed = true;
    this.observer?.disconnect();
    this.socket?.close();
    this.term?.dispose();
  }
}

// The key row: label, the name `sendKey` knows it by, and what a screen reader says.
const KEY_ROW = [
  ['Esc', 'esc', 'Escape'], ['Tab', 'tab', 'Tab'], ['⇤', 'shift-tab', 'Shift-Tab'],
  ['↑', 'up', 'Up'], ['↓', 'down', 'Down'], ['←', 'left', 'Left'], ['→', 'right', 'Right'],
  ['⏎', 'enter', 'Enter'], ['^C', 'ctrl-c', 'Ctrl-C'],
];

// Opens the task's terminal in `element`, with the keys phone keyboards lack in `keyRow`.
export function openTerminal(element, path, keyRow) {
  const handle = new TerminalHandle(element, path);
  keyRow.replaceChildren(...KEY_ROW.map(([label, name, spoken]) => {
    const key = document.createElement('button');
    key.type = 'button';
    key.className = 'key';
    key.textContent = label;
    key.setAttribute('aria-label', spoken);
    // Pressing a key must not take the focus (and a phone's keyboard) away.
    key.addEventListener('pointerdown', (event) => event.preventDefault());
    key.addEventListener('click', () => handle.sendKey(name));
    return key;
  }));
  return handle;
}
