// A real nats-server with JetStream for fleet tests: a free port, a temporary store, and
// started and stopped by the test itself (scripts/setup.sh installs Debian's nats-server).
import { spawn, ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { accepts, freePort, terminate } from './ports';

export class Nats {
  private proc?: ChildProcess;
  private constructor(readonly port: number, readonly store: string) {}

  static async start(): Promise<Nats> {
    const nats = new Nats(await freePort(), fs.mkdtempSync(path.join(os.tmpdir(), 'taskwire-nats-')));
    await nats.launch();
    return nats;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async launch(): Promise<void> {
    this.proc = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(this.port), '-sd', this.store], {
      stdio: 'ignore',
    });
    const deadline = Date.now() + 10_000;
    while (!(await accepts(this.port))) {
      if (Date.now() > deadline) throw new Error('nats-server did not start');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async stop(): Promise<void> {
    await terminate(this.proc);
  }

  async dispose(): Promise<void> {
    await this.stop();
    fs.rmSync(this.store, { recursive: true, force: true });
  }
}
