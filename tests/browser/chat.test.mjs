// Browser tests of the demo chat page (/) in headless Chromium: two users chatting with
// presence, typing and receipts; sign-in errors; the token kept out of URLs; a dropped
// connection coming back; the phone-sized layout; the page without dev login.
// Screenshots go to artifacts/ (gitignored).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  devSignIn, joinRoom, launchBrowser, mintToken, openPage, screenshot, startServer, waitInPage,
} from './helpers.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** In the page: whether the receipt word under the user's own message `text` is `state`. */
const ownStatusIs = (text, state) => {
  const items = [...document.querySelectorAll('#messages li.mine')];
  const item = items.find((li) => li.querySelector('.msg-text')?.textContent === text);
  return item?.querySelector('.msg-status')?.dataset.state === state;
};

/** In the page: whether `user` shows with `status` in the open room's member list. */
const memberStatusIs = (user, status) =>
  document.querySelector(`#member-list li[data-user="${user}"]`)?.dataset.status === status;

describe('two users in the browser', () => {
  test('see each other online and typing, chat, and get delivered then read receipts', async () => {
    // Arrange: alice and bob sign in (dev login) in separate browser contexts and join #lobby.
    const alice = await openPage(browser, server.http);
    const bob = await openPage(browser, server.http);
    await devSignIn(alice.page, 'alice');
    await devSignIn(bob.page, 'bob');
    await joinRoom(alice.page, 'lobby');
    await joinRoom(bob.page, 'lobby');

    // Assert: each sees the other online.
    await waitInPage(alice.page, 'bob online for alice', memberStatusIs, 'bob', 'online');
    await waitInPage(bob.page, 'alice online for bob', memberStatusIs, 'alice', 'online');

    // Act + Assert: typing shows on the other side, both ways.
    await alice.page.type('#composer-input', 'hel');
    await waitInPage(bob.page, 'alice typing', () => document.getElementById('typing').textContent === 'alice is typing…');
    await bob.page.type('#composer-input', 'yo');
    await waitInPage(alice.page, 'bob typing', () => document.getElementById('typing').textContent === 'bob is typing…');
    await bob.page.$eval('#composer-input', (i) => { i.value = ''; });

    // Bob looks at another room, so alice's message is delivered but not read.
    await joinRoom(bob.page, 'elsewhere');
    await alice.page.$eval('#composer-input', (i) => { i.value = ''; });
    await alice.page.type('#composer-input', 'hello bob');
    await alice.page.keyboard.press('Enter');
    await waitInPage(alice.page, '"Delivered" under alice\'s message', ownStatusIs, 'hello bob', 'delivered');
    await waitInPage(bob.page, 'an unread badge on #lobby', () =>
      document.querySelector('#room-list button[data-room="public:lobby"] .badge')?.dataset.count === '1');
    await waitInPage(bob.page, 'a notification toast', () => document.querySelector('#toasts .toast')?.textContent.includes('hello bob'));
    await screenshot(bob.page, 'bob-unread-badge');

    // Bob opens #lobby: the message is read there, and alice sees "Read".
    await bob.page.click('#room-list button[data-room="public:lobby"]');
    await waitInPage(bob.page, 'alice\'s message at bob', () =>
      [...document.querySelectorAll('#messages .msg-text')].some((n) => n.textContent === 'hello bob'));
    await waitInPage(alice.page, '"Read" under alice\'s message', ownStatusIs, 'hello bob', 'read');
    assert.equal(await bob.page.$('#room-list button[data-room="public:lobby"] .badge'), null, 'the badge is gone once read');

    // Bob answers and turns busy; alice sees both.
    await bob.page.type('#composer-input', 'hi alice');
    await bob.page.click('#send-button');
    await waitInPage(alice.page, 'bob\'s answer at alice', () =>
      [...document.querySelectorAll('#messages .msg-text')].some((n) => n.textContent === 'hi alice'));
    await bob.page.select('#status-select', 'busy');
    await waitInPage(alice.page, 'bob busy for alice', memberStatusIs, 'bob', 'busy');

    await screenshot(alice.page, 'alice-chat');
    await screenshot(bob.page, 'bob-chat');
    assert.deepEqual(alice.problems, [], 'no console errors or CSP violations at alice');
    assert.deepEqual(bob.problems, [], 'no console errors or CSP violations at bob');
    await alice.context.close();
    await bob.context.close();
  });
});

describe('signing in with a token', () => {
  test('a malformed token shows a clear error and no chat', async () => {
    const { page, context } = await openPage(browser, server.http);
    await page.type('#token-input', 'not-a-token');
    await page.click('#token-form button[type=submit]');
    await waitInPage(page, 'the sign-in error', () => !document.getElementById('login-error').hidden);
    const error = await page.$eval('#login-error', (n) => n.textContent);
    assert.match(error, /not accepted/);
    assert.equal(await page.$eval('#chat', (n) => n.hidden), true);
    await screenshot(page, 'wrong-token');
    await context.close();
  });

  test('an expired token says it has expired', async () => {
    const { page, context } = await openPage(browser, server.http);
    await page.type('#token-input', mintToken('carol', { ttlSecs: -3600 }));
    await page.click('#token-form button[type=submit]');
    await waitInPage(page, 'the sign-in error', () => !document.getElementById('login-error').hidden);
    assert.match(await page.$eval('#login-error', (n) => n.textContent), /expired/);
    await context.close();
  });

  test('a valid token connects without ever putting the token in a URL', async () => {
    // Arrange: record every HTTP request and WebSocket the page opens.
    const { page, context, problems } = await openPage(browser, server.http);
    const urls = [];
    page.on('request', (r) => urls.push(r.url()));
    const cdp = await page.createCDPSession();
    await cdp.send('Network.enable');
    cdp.on('Network.webSocketCreated', (e) => urls.push(e.url));
    const token = mintToken('dave');
    // Act
    await page.type('#token-input', token);
    await page.click('#token-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('me').textContent === 'dave', { timeout: 10000 });
    await joinRoom(page, 'lobby');
    // Assert
    assert.ok(urls.some((u) => u.includes('/v1/ws')), `a WebSocket was opened: ${urls.join(' ')}`);
    for (const u of urls) assert.ok(!u.includes(token) && !u.includes('token='), `no token in ${u}`);
    assert.deepEqual(problems, []);
    await context.close();
  });
});

describe('connection and layout', () => {
  test('a dropped connection is announced and comes back', async () => {
    // Arrange
    const { page, context } = await openPage(browser, server.http);
    await devSignIn(page, 'erin');
    await joinRoom(page, 'lobby');
    // Act: an administrator closes erin's sessions (close 4000); the client reconnects.
    const res = await fetch(`${server.http}/v1/admin/users/erin/disconnect`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${mintToken('root', { roles: ['admin'] })}` },
    });
    assert.equal(res.status, 200, await res.text());
    // Assert
    await waitInPage(page, 'the lost-connection banner', () => document.getElementById('connection').textContent.startsWith('Connection lost'));
    await screenshot(page, 'connection-lost');
    await waitInPage(page, 'the reconnected banner', () => document.getElementById('connection').textContent === 'Reconnected.');
    await context.close();
  });

  test('the page fits a phone-sized screen, is usable from the keyboard, and shows notifications', async () => {
    const { page, context, problems } = await openPage(browser, server.http, { width: 390, height: 844 });
    // Keyboard only: the name field has focus at start, Enter submits.
    await page.waitForSelector('#name-form:not([hidden])');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'name-input');
    await page.keyboard.type('frank');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#chat:not([hidden])');
    await joinRoom(page, 'lobby');
    await page.type('#composer-input', 'from my phone');
    await page.keyboard.press('Enter');
    await waitInPage(page, 'the message sent', () =>
      [...document.querySelectorAll('#messages .msg-text')].some((n) => n.textContent === 'from my phone'));
    // A notification from an app backend shows as a toast.
    const res = await fetch(`${server.http}/v1/admin/notifications`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${mintToken('backend', { roles: ['service'] })}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ users: ['frank'], notification_type: 'assignment', title: 'New task', message: 'Review PR 42' }),
    });
    assert.equal(res.status, 201, await res.text());
    await waitInPage(page, 'the notification toast', () =>
      [...document.querySelectorAll('#toasts .toast')].some((t) => t.textContent === 'New task: Review PR 42'));
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal scrolling (${overflow} px too wide)`);
    await screenshot(page, 'phone');
    assert.deepEqual(problems, []);
    await context.close();
  });
});

describe('without HERALD_DEV_LOGIN', () => {
  test('only the token form is offered', async () => {
    const plain = await startServer({ HERALD_DEV_LOGIN: 'false' });
    try {
      const { page, context } = await openPage(browser, plain.http);
      await page.waitForSelector('#token-form');
      assert.equal(await page.$eval('#name-form', (n) => n.hidden), true);
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'token-input');
      await context.close();
    } finally {
      await plain.stop();
    }
  });
});
