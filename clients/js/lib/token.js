// Token helpers: read a JWT's `exp` (without verifying it: the server verifies)
// and decide when to refresh it in-band with an `auth` frame.
//
// Owns only the timing rule: refresh `refreshBeforeMs` before `exp`, or half-way
// through the token's remaining life when that is later (a token shorter than
// twice the margin would otherwise be refreshed at once, again and again) (docs/protocol.md, Token expiry: a session whose token
// expires gets `token_expired` and `HERALD_TOKEN_GRACE_MS` to send `auth`).

/** The `exp` claim in ms since the epoch, or undefined if the token has none or is not a JWT. */
export function tokenExpiryMs(token) {
  const part = typeof token === 'string' ? token.split('.')[1] : undefined;
  if (!part) return undefined;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const json = new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
    const exp = JSON.parse(json).exp;
    return typeof exp === 'number' ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * How long to wait before refreshing a token that expires at `expMs`.
 * @param {number} expMs
 * @param {number} now
 * @param {number} refreshBeforeMs
 */
export function refreshDelayMs(expMs, now, refreshBeforeMs) {
  const left = expMs - now;
  if (left <= 0) return 0;
  return Math.max(left - refreshBeforeMs, left / 2);
}
