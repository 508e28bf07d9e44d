// Browser tests of the admin dashboard (/admin) in headless Chromium: two chatting users
// listed online with the message rate moving; disconnect and force-status from the dashboard;
// a wrong, an expired and a non-admin token; `#token=` sign-in that never puts the token in a
// request URL; a server that goes away and comes back; the phone-sized layout.
// Screenshots go to artifacts/ (gitignored); admin.png is the one docs/ shows.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  devSignIn, joinRoom, launchBrowser, mintToken, openPage, screenshot, startServer, waitInPage,
} from './helpers.mjs';

let server;
let browser;
const admin = () => mintToken('root', { roles: ['admin'] });

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Opens /admin in its own context and signs in by typing `token` into the form. */
async function openDashboard(http, token, viewport) {
  const opened = await openPage(browser, http, viewport);
  await opened.page.goto(`${http}/admin`, { waitUntil: 'load' });
  if (token !== undefined) {
    await opened.page.waitForSelector('#token-form');
    await opened.page.type('#token-input', token);
    await opened.page.click('#token-form button[type=submit]');
  }
  return opened;
}

const dashboardShown = () => !document.getElementById('dashboard').hidden;

/** In the page: whether `user` is listed online under `status`. */
const listedAs = (user, status) =>
  document.querySelector(`#users .group[data-status="${status}"] li[data-user="${user}"]`) !== null;

/** In the page: the session ids in the chosen user's table. */
const sessionIds = () => [...document.querySelectorAll('#sessions tr[data-session]')].map((r) => r.dataset.session);

/** Sends `text` from a chat page and waits until it is acknowledged. */
async function say(page, text) {
  await page.type('#composer-input', text);
  await page.keyboard.press('Enter');
  await waitInPage(page, `"${text}" sent`, (t) => [...document.querySelectorAll('#messages li.mine')]
    .some((li) => li.querySelector('.msg-text')?.textContent === t && li.querySelector('.msg-status')?.dataset.state !== 'sending'), text);
}

describe('the admin dashboard', () => {
  test('lists two chatting users online, charts the message rate, and disconnects and forces a status', async () => {
    // Arrange: alice and bob chat in #lobby (dev login, as in the chat tests).
    const alice = await openPage(browser, server.http);
    const bob = await openPage(browser, server.http);
    await devSignIn(alice.page, 'alice');
    await devSignIn(bob.page, 'bob');
    await joinRoom(alice.page, 'lobby');
    await joinRoom(bob.page, 'lobby');
    const dash = await openDashboard(server.http, admin());
    const { page } = dash;

    // Assert: both are listed online, and #lobby with both of them.
    await waitInPage(page, 'the dashboard', dashboardShown);
    await waitInPage(page, 'alice and bob online', () =>
      ['alice', 'bob'].every((u) => document.querySelector(`#users .group[data-status="online"] li[data-user="${u}"]`)));
    await waitInPage(page, '#lobby with both members', () => {
      const room = document.querySelector('#rooms li[data-room="public:lobby"]');
      return room && ['alice', 'bob'].every((u) => room.querySelector(`li[data-user="${u}"]`));
    });
    assert.ok(Number(await page.$eval('#tile-connections dd', (n) => n.textContent)) >= 2);
    assert.ok(await page.$('#chart-messages canvas'), 'uPlot drew the messages chart');

    // Act: they chat; Assert: the message and delivery rates move.
    for (let i = 0; i < 4; i++) {
      await say(alice.page, `ping ${i}`);
      await say(bob.page, `pong ${i}`);
    }
    await waitInPage(page, 'a message rate above 0', () => Number(document.getElementById('chart-messages').dataset.max) > 0);
    await waitInPage(page, 'a delivery rate above 0', () => Number(document.getElementById('chart-deliveries').dataset.max) > 0);
    await waitInPage(page, 'a commit latency', () => Number(document.getElementById('chart-commit').dataset.max) > 0);

    // Act: choose bob, force his status to busy.
    await page.click('#users li[data-user="bob"] button');
    await waitInPage(page, 'bob\'s sessions', () => document.getElementById('detail').dataset.user === 'bob'
      && document.querySelectorAll('#sessions tr[data-session]').length === 1);
    await page.select('#force-status', 'busy');
    await page.type('#force-message', 'in a meeting');
    await page.click('#force-button');
    // Assert: the dashboard lists bob as busy, and alice's chat shows it.
    await waitInPage(page, 'the action result', () => document.getElementById('action-result').textContent === 'bob is now busy.');
    await waitInPage(page, 'bob listed as busy', listedAs, 'bob', 'busy');
    await waitInPage(alice.page, 'bob busy for alice', () =>
      document.querySelector('#member-list li[data-user="bob"]')?.dataset.status === 'busy');
    await screenshot(page, 'admin');

    // Act: disconnect bob from the dashboard.
    const [before] = await page.evaluate(sessionIds);
    await page.click('#disconnect-button');
    // Assert: the dashboard reports it, bob's page loses its connection, and his old session
    // is gone from the table (the chat page reconnects with a new one).
    await waitInPage(page, 'the disconnect result', () => /^Disconnected bob: 1 session closed\.$/.test(document.getElementById('action-result').textContent));
    await waitInPage(bob.page, 'bob\'s lost-connection banner', () => document.getElementById('connection').textContent.startsWith('Connection lost'));
    await waitInPage(page, 'bob\'s old session gone', (old) =>
      document.querySelector('#detail').dataset.user === 'bob' && !document.querySelector(`#sessions tr[data-session="${old}"]`), before);
    await screenshot(page, 'admin-after-disconnect');

    assert.deepEqual(dash.problems, [], 'no console errors or CSP violations on the dashboard');
    for (const p of [alice, bob, dash]) await p.context.close();
  });
});

describe('signing in to the dashboard', () => {
  test('a wrong token shows a clear error and no dashboard', async () => {
    const { page, context } = await openDashboard(server.http, 'not-a-token');
    await waitInPage(page, 'the sign-in error', () => !document.getElementById('login-error').hidden);
    assert.match(await page.$eval('#login-error', (n) => n.textContent), /not accepted/);
    assert.equal(await page.$eval('#dashboard', (n) => n.hidden), true);
    await screenshot(page, 'admin-wrong-token');
    await context.close();
  });

  test('an expired token says so, and a token without the admin role says that', async () => {
    const expired = await openDashboard(server.http, mintToken('root', { roles: ['admin'], ttlSecs: -3600 }));
    await waitInPage(expired.page, 'the expiry error', () => /expired/.test(document.getElementById('login-error').textContent));
    await expired.context.close();
    const plain = await openDashboard(server.http, mintToken('carol'));
    await waitInPage(plain.page, 'the role error', () => /no admin role/.test(document.getElementById('login-error').textContent));
    assert.equal(await plain.page.$eval('#dashboard', (n) => n.hidden), true);
    await plain.context.close();
  });

  test('#token= signs in, leaves the address bar, and never travels in a request URL', async () => {
    // Arrange: record every request the page makes.
    // Chromium's own record of what goes on the wire: `request.url` without the fragment
    // (CDP reports a fragment apart, in `urlFragment`).
    const { page, context, problems } = await openPage(browser, server.http);
    const urls = [];
    const cdp = await page.createCDPSession();
    await cdp.send('Network.enable');
    cdp.on('Network.requestWillBeSent', (e) => urls.push(e.request.url));
    const token = admin();
    // Act
    await page.goto(`${server.http}/admin#token=${token}`, { waitUntil: 'load' });
    // Assert
    await waitInPage(page, 'the dashboard', dashboardShown);
    await waitInPage(page, 'a second stats read', () => document.getElementById('updated').textContent !== '');
    assert.equal(await page.evaluate(() => location.hash), '');
    assert.ok(!page.url().includes(token), `the address bar: ${page.url()}`);
    assert.ok(urls.some((u) => u.endsWith('/v1/admin/stats')), urls.join(' '));
    for (const u of urls) assert.ok(!u.includes(token) && !u.includes('token='), `no token in ${u}`);
    assert.equal(await page.$eval('#me', (n) => n.textContent), 'root');
    assert.deepEqual(problems, []);
    await context.close();
  });
});

describe('the dashboard when the server goes away', () => {
  test('shows "Connection lost" and recovers when the server is back', async () => {
    // Arrange: a server of its own, restarted on the same port.
    let own = await startServer();
    const bind = new URL(own.http).host;
    const { page, context } = await openDashboard(own.http, admin());
    try {
      await waitInPage(page, 'the dashboard', dashboardShown);
      // Act
      await own.stop();
      // Assert
      await waitInPage(page, 'the lost-connection banner', () => document.getElementById('connection').textContent.startsWith('Connection lost'));
      await screenshot(page, 'admin-connection-lost');
      own = await startServer({ HERALD_BIND: bind });
      await waitInPage(page, 'the reconnected banner', () => document.getElementById('connection').textContent === 'Reconnected.');
      assert.equal(await page.$eval('#dashboard', (n) => n.hidden), false);
    } finally {
      await context.close();
      await own.stop();
    }
  });
});

describe('the dashboard on a phone', () => {
  test('fits a 390x844 screen and is usable from the keyboard', async () => {
    const { page, context, problems } = await openDashboard(server.http, undefined, { width: 390, height: 844 });
    await page.waitForSelector('#token-form');
    // Keyboard only: the token field has focus; Tab reaches the submit button.
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'token-input');
    await page.keyboard.type(admin());
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    await waitInPage(page, 'the dashboard', dashboardShown);
    await waitInPage(page, 'the charts', () => document.querySelectorAll('.chart canvas').length === 7);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal scrolling (${overflow} px too wide)`);
    await screenshot(page, 'admin-phone');
    assert.deepEqual(problems, []);
    await context.close();
  });
});
