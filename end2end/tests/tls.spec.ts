// The README's HTTPS recipe, run: Debian's nginx with deploy/nginx/taskwire.conf (its name,
// certificate paths and ports replaced, nothing else) in front of the real binary, with a
// certificate from a CA the test makes. Chromium trusts that CA by its key (as a phone
// with the person's own CA installed would), so the page is a secure context, not a
// certificate error clicked through; it reaches the proxy by a name that is not
// localhost, so the Host allow-list (TASKWIRE_ALLOWED_HOSTS, as the README says) is what
// lets it in.
import { test, expect, chromium, Browser, Page } from '@playwright/test';
import { ChildProcess, execFileSync, spawn, spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as https from 'https';
import * as os from 'os';
import * as path from 'path';
import config from '../playwright.config';
import { freePort, terminate } from './ports';
import { Taskwire, TOKEN, badge, row, screenText, watchErrors } from './server';

const RECIPE = path.resolve(__dirname, '../../deploy/nginx/taskwire.conf');
const ASKS = `python3 ${path.resolve(__dirname, '../fixtures/asks.py')}`;
const NGINX = fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';
/** The dashboard's name for the browser: not one taskwire answers to by default. */
const NAME = 'taskwire.test';

let dir: string;
let ca: Buffer;
let server: Taskwire;
let nginx: ChildProcess | undefined;
let port: number;
let browser: Browser;
const origin = () => `https://${NAME}:${port}`;

/** `text` with `from` replaced, which must be there: the test follows the recipe's edits. */
function substitute(text: string, from: string | RegExp, to: string): string {
  const found = typeof from === 'string' ? text.includes(from) : from.test(text);
  if (!found) throw new Error(`the recipe no longer has ${from}`);
  return typeof from === 'string' ? text.split(from).join(to) : text.replace(from, to);
}

/** A CA, and a certificate it signed for NAME (the chain in the .crt, as the recipe asks). */
function makeCertificates(): void {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2',
    '-subj', '/CN=taskwire e2e CA', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  openssl('req', ...ec, '-keyout', `${NAME}.key`, '-out', 'leaf.csr', '-subj', `/CN=${NAME}`);
  fs.writeFileSync(path.join(dir, 'leaf.ext'), [
    `subjectAltName=DNS:${NAME},DNS:localhost`, 'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature', 'extendedKeyUsage=serverAuth', '',
  ].join('\n'));
  openssl('x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '2', '-extfile', 'leaf.ext', '-out', 'leaf.crt');
  ca = fs.readFileSync(path.join(dir, 'ca.crt'));
  fs.writeFileSync(path.join(dir, `${NAME}.crt`), Buffer.concat([fs.readFileSync(path.join(dir, 'leaf.crt')), ca]));
}

/** The CA's key as Chromium's --ignore-certificate-errors-spki-list wants it. */
function spkiHash(pem: Buffer): string {
  const spki = new crypto.X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  return crypto.createHash('sha256').update(spki).digest('base64');
}

/** Writes the main config (everything in `dir`) around the recipe, and starts nginx. */
async function startNginx(upstream: string): Promise<void> {
  let site = fs.readFileSync(RECIPE, 'utf8');
  site = substitute(site, /^\s*listen \[::\]:443 ssl http2;\n/m, '');
  site = substitute(site, 'listen 443 ssl http2;', `listen 127.0.0.1:${port} ssl http2;`);
  site = substitute(site, '/etc/ssl/taskwire/', `${dir}/`);
  site = substitute(site, 'taskwire.example.net', NAME);
  site = substitute(site, 'http://127.0.0.1:3000;', `http://${upstream};`);
  fs.writeFileSync(path.join(dir, 'taskwire.conf'), site);
  for (const temp of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) fs.mkdirSync(path.join(dir, temp));
  // Debian's nginx.conf, made to run in the foreground from `dir`.
  fs.writeFileSync(path.join(dir, 'nginx.conf'), `
daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
${process.getuid?.() === 0 ? 'user root;  # workers as the test, to reach its temporary dir' : ''}
events { worker_connections 768; }
http {
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    access_log ${dir}/access.log;
    gzip on;
    client_body_temp_path ${dir}/body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
    include ${dir}/taskwire.conf;
}
`);
  const args = ['-p', `${dir}/`, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')];
  const check = spawnSync(NGINX, [...args, '-t'], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`nginx -t: ${check.stderr}`);
  nginx = spawn(NGINX, args, { stdio: 'ignore' });
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (nginx.exitCode !== null) throw new Error(`nginx exited: ${fs.readFileSync(path.join(dir, 'error.log'), 'utf8')}`);
    let failed: Error;
    try {
      const healthz = await request('/healthz');
      // nginx answers; taskwire behind it must too.
      expect(healthz, 'GET /healthz through nginx').toMatchObject({ status: 200, body: 'ok' });
      return;
    } catch (e) {
      // Not listening yet (ECONNREFUSED); anything else is an answer, and wrong.
      if (!(e instanceof Error && 'code' in e && e.code === 'ECONNREFUSED')) throw e;
      failed = e;
    }
    if (Date.now() > deadline) throw new Error(`nginx did not answer in 10 s: ${failed.message}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Answer { status: number; body: string; upgraded: boolean }

/** A request to the proxy over TLS, checked against the test's CA; Host is NAME unless `headers` say. */
function request(route: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1', port, servername: NAME, ca, path: route, agent: false,
      headers: { Host: `${NAME}:${port}`, ...headers },
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode!, body, upgraded: false }));
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode!, body: '', upgraded: true });
    });
    req.on('error', reject);
    req.end();
  });
}

test.beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskwire-tls-'));
  makeCertificates();
  // What the README tells a person to set for the name the proxy is reached by.
  server = await Taskwire.start({ TASKWIRE_ALLOWED_HOSTS: NAME });
  port = await freePort();
  await startNginx(new URL(server.url).host);
  browser = await chromium.launch({
    ...config.use!.launchOptions,
    args: [
      ...(config.use!.launchOptions!.args ?? []),
      // The test's CA trusted by its key: a valid certificate, no error to ignore.
      `--ignore-certificate-errors-spki-list=${spkiHash(ca)}`,
      `--host-resolver-rules=MAP ${NAME} 127.0.0.1`,
    ],
  });
});

test.afterAll(async () => {
  await browser?.close();
  await terminate(nginx);
  await server?.dispose();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

// nginx's own account of a failure (its log goes with the temporary dir).
test.afterEach(async ({}, info) => {
  const log = path.join(dir, 'error.log');
  if (info.status !== info.expectedStatus && fs.existsSync(log)) {
    await info.attach('nginx error.log', { body: fs.readFileSync(log, 'utf8'), contentType: 'text/plain' });
  }
});

async function expectOnScreen(page: Page, text: string) {
  await expect.poll(() => screenText(page), { timeout: 15_000 }).toContain(text);
}

test('through nginx over TLS the dashboard is a secure context and live: events, terminal keys, a reply', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = watchErrors(page);
  // What Chromium's padlock would say: isSecureContext is true even for a certificate
  // error ignored, this is not ('insecure-broken' then).
  const cdp = await context.newCDPSession(page);
  const security: { securityState: string; certificateSecurityState?: { issuer: string } }[] = [];
  cdp.on('Security.visibleSecurityStateChanged', (e) => security.push(e.visibleSecurityState));
  await cdp.send('Security.enable');
  await page.goto(`${origin()}/login?token=${TOKEN}`);
  await page.waitForSelector('body[data-hydrated]');
  expect(page.url()).toBe(`${origin()}/`);
  expect(await page.evaluate(() => window.isSecureContext)).toBe(true);
  await expect.poll(() => {
    const last = security.at(-1);
    return [last?.securityState, last?.certificateSecurityState?.issuer];
  }).toEqual(['secure', 'taskwire e2e CA']);
  // The page came over HTTP/2 (the recipe's `http2`).
  expect(await page.evaluate(() =>
    (performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming).nextHopProtocol)).toBe('h2');
  await expect(badge(page)).toHaveText('Live');
  // What HTTPS is for: the page's service worker (/sw.js, which every page registers) is
  // installed. Over a certificate error that is ignored, Chromium refuses to fetch it.
  await expect.poll(() => page.evaluate(async () =>
    (await navigator.serviceWorker.getRegistration())?.active?.state ?? 'none')).toBe('activated');

  // A task created afterwards reaches the page as an event through the proxy: no list
  // fetch in between (while Live the page refetches once a minute), and its tail comes
  // over the tails stream.
  const fetches: string[] = [];
  page.on('request', (r) => { if (new URL(r.url()).pathname === '/api/tasks') fetches.push(r.method()); });
  const listed = await server.create('echo listed-through-nginx; sleep 60', 'through the proxy');
  await expect(row(page, listed.id)).toBeVisible();
  await expect(row(page, listed.id).locator('.tail')).toHaveText('listed-through-nginx');
  expect(fetches).toEqual([]);
  await expect(badge(page)).toHaveText('Live');

  // Keys typed in the page's terminal (a WebSocket through the proxy) reach the program,
  // and what it prints comes back. The task page is opened from its row, as a person does.
  const echo = await server.create('while read -r line; do echo "program got [$line]"; done', 'echo');
  await row(page, echo.id).getByRole('link').click();
  await expect(page).toHaveURL(`${origin()}/tasks/${echo.id}`);
  const terminal = page.getByTestId('terminal');
  await expect(terminal).toHaveAttribute('data-state', 'live');
  await terminal.click();
  await page.keyboard.type('typed-over-tls');
  await page.keyboard.press('Enter');
  await expectOnScreen(page, 'program got [typed-over-tls]');

  // A reply: the menu's question and choices come to the list's row as events, a tap on
  // one answers it, and the program says what it got.
  await page.getByRole('link', { name: 'taskwire' }).click();
  const asks = await server.create(`${ASKS} numbered`, 'agent');
  const prompt = row(page, asks.id).getByTestId('prompt');
  await expect(prompt.getByRole('button')).toHaveText(['Yes', 'Yes, and always allow access to /tmp from this project', 'No']);
  await prompt.getByRole('button', { name: 'No', exact: true }).click();
  await expect(prompt).toHaveCount(0);
  await expect.poll(async () => (await server.api('GET', `/api/tasks/${asks.id}/output?tail=50`)).json.output)
    .toContain("got: No keys='3'");
  expect(security.filter((s) => s.securityState !== 'secure' && s.securityState !== 'neutral')).toEqual([]);
  expect(errors).toEqual([]);
  await context.close();
});

test('nginx passes Host and Origin on as the browser sent them', async () => {
  const task = await server.create('sleep 60', 'terminal');
  const auth = { Authorization: `Bearer ${TOKEN}` };
  expect((await request('/api/tasks', auth)).status).toBe(200);
  // A name taskwire was not told of is refused behind the proxy too (DNS rebinding).
  const other = await request('/api/tasks', { ...auth, Host: `elsewhere.test:${port}` });
  expect(other.status).toBe(421);
  expect(other.body).toContain('elsewhere.test');
  // A terminal opens from the dashboard's own origin, and from no other.
  const upgrade = {
    ...auth, Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
  };
  const route = `/api/tasks/${task.id}/terminal`;
  expect(await request(route, { ...upgrade, Origin: origin() })).toMatchObject({ status: 101, upgraded: true });
  expect(await request(route, { ...upgrade, Origin: 'https://elsewhere.test' })).toMatchObject({ status: 403, upgraded: false });
});
