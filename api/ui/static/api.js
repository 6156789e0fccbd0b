// The console's only way to the agent: the public /v1 API, as the CLI uses it.
//
// The token is kept in sessionStorage (this tab only, gone when it closes) and sent on every
// request as "Authorization: Bearer <token>". It is never put in a cookie, so a request that
// another site makes the browser send to an agent carries no credential (no CSRF); and a
// cross-origin page cannot add the header itself without a CORS preflight, which the API does not
// answer. credentials: 'omit' keeps cookies and HTTP auth out of our own requests too.

const tokenKey = 'troop.token';

export const session = {
  token() { return sessionStorage.getItem(tokenKey); },
  loggedIn() { return sessionStorage.getItem(tokenKey) !== null; },
  set(token) { sessionStorage.setItem(tokenKey, token); },
  clear() { sessionStorage.removeItem(tokenKey); },
};

// APIError is a refused request: the API's {"error", "field", "value"} and the HTTP status.
export class APIError extends Error {
  constructor(status, message, field, value) {
    super(message);
    this.name = 'APIError';
    this.status = status;
    this.field = field || '';
    this.value = value || '';
  }

  // auth reports a missing, wrong or insufficient token: the console returns to its login.
  get auth() { return this.status === 401 || this.status === 403; }

  // describe is the message for the user, naming the field and the value when the API did and
  // the message does not already.
  describe() {
    const extra = [];
    if (this.field && !this.message.includes(this.field)) extra.push(`field ${this.field}`);
    if (this.value && !this.message.includes(this.value)) extra.push(`value "${this.value}"`);
    return extra.length ? `${this.message} (${extra.join(', ')})` : this.message;
  }
}

function headers(json) {
  const h = new Headers({ Accept: 'application/json' });
  const token = session.token();
  if (token) h.set('Authorization', `Bearer ${token}`);
  if (json) h.set('Content-Type', 'application/json');
  return h;
}

async function errorFrom(res) {
  let body = {};
  try {
    body = await res.json();
  } catch {
    // Not JSON (a proxy's page): the status says enough.
  }
  const msg = typeof body.error === 'string' && body.error ? body.error : `${res.status} ${res.statusText}`;
  return new APIError(res.status, msg, body.field, body.value);
}

// request sends one API call and returns its decoded JSON answer (null for 204), or throws an
// APIError (refused) or a TypeError (the agent is unreachable).
export async function request(method, path, body) {
  const init = { method, headers: headers(body !== undefined), cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(path, init);
  if (!res.ok) throw await errorFrom(res);
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

// path builds an API path from segments, escaping each (service names and real server IDs).
export function path(...segments) {
  return '/v1/' + segments.map((s) => encodeURIComponent(s)).join('/');
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// followEvents reads GET /v1/events?follow, a stream of JSON lines, with a ReadableStream
// reader, calling onEvent for each event. When the stream drops it reconnects with
// ?since=<last seq seen>, backing off from 1 s to 10 s, and reports the connection through
// onState('live' | 'reconnecting'). A 401 or 403 goes to onAuth and ends it. It returns stop.
export function followEvents({ onEvent, onState, onAuth }) {
  let lastSeq = 0;
  let stopped = false;
  let ctrl = null;
  let delay = 1000;
  (async () => {
    while (!stopped) {
      ctrl = new AbortController();
      try {
        const res = await fetch(`/v1/events?follow&since=${lastSeq}`, {
          headers: headers(false), signal: ctrl.signal, cache: 'no-store', credentials: 'omit',
        });
        if (!res.ok) {
          const err = await errorFrom(res);
          if (err.auth) {
            onAuth(err);
            return;
          }
          throw err;
        }
        onState('live');
        delay = 1000;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let nl;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (!line) continue;
            const ev = JSON.parse(line);
            if (ev.seq > lastSeq) lastSeq = ev.seq;
            onEvent(ev);
          }
        }
      } catch {
        // Dropped, refused or aborted: reconnect below unless stopped.
      }
      if (stopped) return;
      onState('reconnecting');
      await sleep(delay);
      delay = Math.min(delay * 2, 10000);
    }
  })();
  return () => {
    stopped = true;
    if (ctrl) ctrl.abort();
  };
}
