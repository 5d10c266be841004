// Starts the real release binary (target/release/taskwire) for a test file: its own port,
// data dir and tmux socket, so files can run side by side. It can be stopped and started
// again on the same port and data, as a user restarting taskwire would.
import { spawn, spawnSync, ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { expect, Page } from '@playwright/test';
import { Nats } from './nats';
import { freePort, terminate } from './ports';

export const TOKEN = 'e2e-token';
const ROOT = path.resolve(__dirname, '../..');
const BINARY = path.join(ROOT, 'target/release/taskwire');

export interface Task {
  id: string; name: string; kind: string; command: string; workdir: string; status: string;
  exit_code: number | null; error: string | null; node: string;
}

export class Taskwire {
  private proc?: ChildProcess;
  readonly dataDir: string;
  readonly socket: string;
  url = '';
  private port = 0;

  private constructor(private env: Record<string, string>) {
    this.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskwire-e2e-'));
    this.socket = `tw-e2e-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  }

  static async start(env: Record<string, string> = {}): Promise<Taskwire> {
    const server = new Taskwire(env);
    server.port = await freePort();
    server.url = `http://127.0.0.1:${server.port}`;
    await server.launch();
    return server;
  }

  async launch(): Promise<void> {
    this.proc = spawn(BINARY, [], {
      cwd: ROOT,
      env: {
        ...process.env,
        LEPTOS_SITE_ADDR: `127.0.0.1:${this.port}`,
        TASKWIRE_DATA_DIR: this.dataDir,
        TASKWIRE_TMUX_SOCKET: this.socket,
        TASKWIRE_TOKEN: TOKEN,
        TASKWIRE_IDLE_WAITING_SECS: '2',
        TASKWIRE_RECONCILE_SECS: '1',
        RUST_LOG: 'warn',
        ...this.env,
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        const res = await fetch(`${this.url}/healthz`);
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error('taskwire did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The server's process id (benchmarks read its CPU and memory). */
  pid(): number {
    return this.proc!.pid!;
  }

  /** SIGTERM, as a user stopping the service; tasks keep running in tmux. */
  async stop(): Promise<void> {
    await terminate(this.proc);
  }

  async dispose(): Promise<void> {
    await this.stop();
    spawnSync('tmux', ['-L', this.socket, 'kill-server']);
    fs.rmSync(this.dataDir, { recursive: true, force: true });
  }

  async api(method: string, route: string, body?: unknown): Promise<{ status: number; json: any }> {
    const res = await fetch(`${this.url}${route}`, {
      method,
      headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : null };
  }

  async create(command: string, name?: string): Promise<Task> {
    const { status, json } = await this.api('POST', '/api/tasks', { command, name });
    expect(status).toBe(201);
    return json as Task;
  }

  /** Signs the page in (sets the session cookie) and opens `route`, hydrated. */
  async open(page: Page, route = '/'): Promise<void> {
    await page.goto(`${this.url}/login?token=${TOKEN}`);
    if (route !== '/') await page.goto(`${this.url}${route}`);
    await page.waitForSelector('body[data-hydrated]');
  }
}

export const row = (page: Page, id: string) => page.locator(`.task-row[data-id="${id}"]`);
export const badge = (page: Page) => page.getByTestId('connection');

/** Collects console errors and page errors, to assert none happened. */
export function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(e.message));
  return errors;
}

/** Two nodes, node-a and node-b, on one nats-server, once each sees the other online. */
export async function startFleet(): Promise<{ nats: Nats; a: Taskwire; b: Taskwire }> {
  const nats = await Nats.start();
  const nodes: Taskwire[] = [];
  try {
    for (const name of ['node-a', 'node-b']) {
      nodes.push(await Taskwire.start({ TASKWIRE_NATS_URL: nats.url, TASKWIRE_NATS_INSECURE: "1", TASKWIRE_NODE: name }));
    }
    const [a, b] = nodes;
    for (const [server, other] of [[a, 'node-b'], [b, 'node-a']] as const) {
      await expect.poll(async () => {
        const { json } = await server.api('GET', '/api/nodes');
        return json.nodes.find((n: { name: string }) => n.name === other)?.online;
      }, { timeout: 15_000, message: `${other} online` }).toBe(true);
    }
    return { nats, a, b };
  } catch (e) {
    for (const node of nodes) await node.dispose();
    await nats.dispose();
    throw e;
  }
}

/** The text xterm.js holds in its buffer (screen and scrollback), one line per row. */
export async function screenText(page: Page): Promise<string> {
  return page.getByTestId('terminal').evaluate((el: any) => {
    const buffer = el.terminal?.buffer.active;
    if (!buffer) return '';
    const lines = [];
    for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
    return lines.join('\n');
  });
}

/** Records in the page when each row's pill first reads `completed` (Date.now()). */
export async function recordCompletions(page: Page): Promise<void> {
  await page.evaluate(() => {
    (window as any).__doneAt = {};
    new MutationObserver(() => {
      for (const pill of document.querySelectorAll('.task-row [data-testid=status]')) {
        const id = (pill.closest('.task-row') as HTMLElement).dataset.id!;
        if (pill.textContent === 'completed' && !(window as any).__doneAt[id]) (window as any).__doneAt[id] = Date.now();
      }
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
}

/** When `recordCompletions` saw task `id` complete. */
export const completedAt = (page: Page, id: string): Promise<number> =>
  page.evaluate((id) => (window as any).__doneAt[id], id);
