/*
 * screenpop.js: the dependency-free browser client of screenpop's agent
 * websocket (protocol v1, GET /v1/ws). One global: ScreenPop.
 *
 *   var client = ScreenPop.connect({
 *     url: 'wss://screenpop.example.com/v1/ws', // default: this page's host
 *     token: function () { return sessionStorage.getItem('genesysToken'); },
 *     onPop: function (pop) { ... },            // may return a Promise: acked after it settles,
 *                                               // or after popTimeoutMs (default 5000) at the latest
 *     onState: function (state, detail) { ... },// connecting, ready, reconnecting, auth, closed
 *   });
 *
 * It reconnects with capped exponential backoff and jitter (at once when
 * the browser comes back online), resumes with
 * lastSeq and epoch kept in sessionStorage (per tab, survives a reload),
 * drops a pop it has already seen, acks each processed pop, and reconnects
 * when it hears nothing (not even the server's heartbeat) for 60 s. Pops
 * are handed to onPop one at a time, in order; the next waits for the last
 * one's Promise for popTimeoutMs at most, so a handler that never settles
 * delays each later pop by that much instead of stopping them all. When the
 * token is refused (4401), a token function is asked again: a new token
 * reconnects, the same or none calls onAuthRequired.
 * ScreenPop.login() runs the Genesys Cloud authorization-code + PKCE login
 * in a popup and resolves with the agent's access token.
 */
(function (root) {
  'use strict';
  var ns = root.ScreenPop = root.ScreenPop || {};
  ns.version = '1';

  var here = (function () {
    try {
      var s = root.document && root.document.currentScript;
      if (s && s.src) {
        // Dynamics serves form libraries under a version segment that
        // changes with each publish (/%7B6380…%7D/WebResources/…, in either
        // case, the folder too); the registered redirect URI is the plain
        // /WebResources/… address, and Genesys compares it exactly.
        var u = new URL('.', s.src);
        var p = u.pathname.replace(/^\/%7b\d+%7d\//i, '/');
        if (p !== u.pathname) { p = p.replace(/^\/webresources\//i, '/WebResources/'); }
        u.pathname = p;
        return u.href;
      }
    } catch (e) { /* not in a document */ }
    return root.location ? root.location.href : '';
  })();
  ns.baseURL = here;

  function pickStorage(kind) {
    var s = null;
    try {
      if (kind === 'local') { s = root.localStorage; } else if (kind !== 'none') { s = root.sessionStorage; }
      if (s) { s.setItem('screenpop.probe', '1'); s.removeItem('screenpop.probe'); }
    } catch (e) { s = null; }
    var mem = {};
    return s || { getItem: function (k) { return mem[k] || null; }, setItem: function (k, v) { mem[k] = String(v); }, removeItem: function (k) { delete mem[k]; } };
  }

  function defaultURL() {
    var l = root.location;
    return (l.protocol === 'https:' ? 'wss://' : 'ws://') + l.host + '/v1/ws';
  }

  function Client(opts) {
    this.opts = opts || {};
    this.url = this.opts.url || defaultURL();
    this.storage = pickStorage(this.opts.storage);
    this.key = this.opts.storageKey || ('screenpop.cursor:' + this.url);
    this.minBackoff = this.opts.minBackoffMs || 500;
    this.maxBackoff = this.opts.maxBackoffMs || 30000;
    this.watchdogMs = this.opts.watchdogMs || 60000;
    this.popTimeoutMs = this.opts.popTimeoutMs || 5000;
    this.state = 'idle';
    this.agentId = '';
    this.epoch = '';
    this.lastError = null;
    this.ws = null;
    this.attempt = 0;
    this.stopped = false;
    this.timer = null;
    this.watchdog = null;
    this.recvSeq = 0; // highest seq received on any socket of this client (same epoch)
    this.chain = Promise.resolve();
    this.usedToken = null; // the token sent on this.ws
    this.refusals = 0;     // 4401s since the last ready
    this.opens = 0;        // calls of open, to tell a stale token answer from a current one
    this.stream = 0;       // bumped when a ready starts the cursor afresh (another stream or agent)
    var c = this.loadCursor();
    this.cursor = c;
    this.recvSeq = c.lastSeq || 0;
  }

  Client.prototype.loadCursor = function () {
    try {
      var v = JSON.parse(this.storage.getItem(this.key) || 'null');
      if (v && typeof v.lastSeq === 'number') { return v; }
    } catch (e) { /* corrupt: start afresh */ }
    return { lastSeq: 0, epoch: '', agentId: '' };
  };

  Client.prototype.saveCursor = function () {
    try { this.storage.setItem(this.key, JSON.stringify(this.cursor)); } catch (e) { /* quota: keep in memory */ }
  };

  Client.prototype.setState = function (s, detail) {
    this.state = s;
    if (this.opts.onState) { try { this.opts.onState(s, detail || {}); } catch (e) { /* app bug */ } }
  };

  Client.prototype.token = function () {
    var t = this.opts.token;
    try {
      return Promise.resolve(typeof t === 'function' ? t() : t);
    } catch (e) {
      // A token function that throws is retried with backoff like a
      // failed connection; thrown through open, it left the client in
      // connecting for good.
      return Promise.reject(e);
    }
  };

  Client.prototype.start = function () {
    var self = this;
    self.stopped = false;
    if (!self.onOnline && root.addEventListener) {
      self.onOnline = function () { self.online(); };
      root.addEventListener('online', self.onOnline);
    }
    self.open();
    return self;
  };

  // online connects at once when the browser's network comes back (Wi-Fi,
  // a VPN, a laptop waking) while the client waits out a backoff: the
  // next try could be up to maxBackoffMs away, and the agent's pops with
  // it. A socket that is open, or opening, is left to itself (the
  // watchdog ends one that died with the network). The wait is retry's
  // timer, not a state: after a token function that failed (offline, it
  // cannot fetch one) the state is still connecting.
  Client.prototype.online = function () {
    if (this.stopped || this.ws || !this.waiting) { return; }
    this.attempt = 0;
    this.open();
  };

  Client.prototype.open = function () {
    var self = this;
    if (self.stopped) { return; }
    clearTimeout(self.timer);
    self.waiting = false;
    var opens = ++self.opens;
    self.setState('connecting', { attempt: self.attempt });
    // The watchdog covers the token too: a token function that never
    // answers (a fetch on a path not back after a wake) is silence, and
    // would leave the client connecting for good. A token that answers
    // after it, or after another open, is not used.
    self.feed();
    self.token().then(function (token) {
      if (self.stopped || opens !== self.opens) { return; }
      if (!token) { clearTimeout(self.watchdog); self.setState('auth', { code: 4401 }); self.authRequired(); return; }
      var ws;
      try { ws = new root.WebSocket(self.url); } catch (e) { clearTimeout(self.watchdog); self.retry(0); return; }
      self.ws = ws;
      self.usedToken = token;
      // The watchdog runs from here, not from onopen: an opening handshake
      // that is never answered (a route not back after a wake, a hung
      // proxy) is silence too, and only the browser's own timeout ends it.
      self.feed();
      ws.onopen = function () {
        // A socket the client has left (the watchdog, a close) says no
        // hello: closed, it is no second socket of the agent's.
        if (self.ws !== ws) { try { ws.close(); } catch (e) { /* closing */ } return; }
        var hello = { type: 'hello', token: token };
        // Once this tab has processed a pop on this stream, or got the
        // whole replay of its first hello (base), every later hello
        // resumes: from the last pop it processed, or from the agent's
        // newest pop when it first connected, so a reconnect gets the
        // whole replay window and not just the fresh window.
        if (self.cursor.epoch && (self.cursor.lastSeq > 0 || typeof self.cursor.base === 'number')) {
          hello.lastSeq = Math.max(self.cursor.lastSeq, self.cursor.base || 0);
          hello.epoch = self.cursor.epoch;
          // Whose cursor it is: the server ignores another agent's (a second
          // agent signed in on this tab) and sends this one the fresh window.
          if (self.cursor.agentId) { hello.agentId = self.cursor.agentId; }
          // Which pop the cursor is: a stream set back (a store restored
          // from a backup) may hold another pop of this agent at its seq.
          if (self.cursor.lastPopId && hello.lastSeq === self.cursor.lastSeq) { hello.lastPopId = self.cursor.lastPopId; }
        }
        ws.send(JSON.stringify(hello));
        self.feed();
      };
      ws.onmessage = function (ev) { if (self.ws === ws) { self.feed(); self.onMessage(ev.data); } };
      ws.onclose = function (ev) { if (self.ws === ws) { self.onClose(ev.code); } };
      ws.onerror = function () { /* onclose follows */ };
    }, function () {
      if (self.stopped || opens !== self.opens) { return; }
      clearTimeout(self.watchdog);
      self.retry(0);
    });
  };

  // feed resets the heartbeat watchdog: the server sends a frame at least
  // every 25 s, so silence for watchdogMs means the path is dead.
  Client.prototype.feed = function () {
    var self = this;
    clearTimeout(self.watchdog);
    self.watchdog = setTimeout(function () {
      var ws = self.ws;
      // The open this ends is over: a token answer still to come for it
      // (during the backoff below) opens nothing.
      self.opens++;
      self.detach();
      try { ws && ws.close(); } catch (e) { /* already closed */ }
      self.setState('reconnecting', { reason: 'silence' });
      self.retry(0);
    }, self.watchdogMs);
  };

  Client.prototype.detach = function () {
    var ws = this.ws;
    this.ws = null;
    clearTimeout(this.watchdog);
    if (ws) { ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null; }
  };

  Client.prototype.onMessage = function (data) {
    var self = this, m;
    try { m = JSON.parse(data); } catch (e) { return; }
    if (!m || typeof m.type !== 'string') { return; }
    switch (m.type) {
      case 'ready':
        if ((self.cursor.agentId && self.cursor.agentId !== m.agentId) || (self.cursor.epoch && self.cursor.epoch !== m.epoch) ||
            (typeof m.seq === 'number' && m.seq < Math.max(self.cursor.lastSeq, self.cursor.base || 0))) {
          // Another agent, or another stream, or this stream set back (a
          // store restored from a backup, writes lost to a power cut: the
          // agent's newest pop is before the cursor, and new pops take
          // seqs it has passed): the old cursor means nothing.
          self.cursor.lastSeq = 0;
          delete self.cursor.lastPopId;
          self.recvSeq = 0;
          self.stream++;
          delete self.cursor.base;
          delete self.cursor.pendingBase;
        }
        if (typeof self.cursor.base !== 'number') {
          // Not resumed from a base yet: pops up to m.seq are either in
          // the fresh window (sent now) or too old to show. That holds
          // only once they have all arrived, so m.seq becomes the base
          // at the first heartbeat, which the server sends after the
          // replay. A socket that ends before it leaves the base unset,
          // and the next hello asks for the fresh window again.
          self.cursor.pendingBase = typeof m.seq === 'number' ? m.seq : 0;
        }
        self.cursor.agentId = m.agentId;
        self.cursor.epoch = m.epoch;
        self.saveCursor();
        self.agentId = m.agentId;
        self.epoch = m.epoch;
        // attempt is reset at the heartbeat, not here: a server that sends
        // ready and then cannot replay (1013) would be hit every 0.5 s.
        self.refusals = 0;
        self.lastError = null;
        self.setState('ready', { agentId: m.agentId, epoch: m.epoch, seq: m.seq });
        break;
      case 'pop':
        if (typeof m.seq !== 'number' || m.seq <= self.recvSeq) { return; } // seen already
        self.recvSeq = m.seq;
        var stream = self.stream;
        self.queue(function () {
          return self.handOver(m).then(function () {
            // A pop of the stream before a ready that started the cursor
            // afresh (a daemon back on a lost store: seqs from 1 again)
            // does not move the new stream's cursor to its old seq.
            if (stream === self.stream && m.seq > self.cursor.lastSeq) {
              self.cursor.lastSeq = m.seq;
              if (typeof m.id === 'string') { self.cursor.lastPopId = m.id; } else { delete self.cursor.lastPopId; }
              self.saveCursor();
            }
            // On the socket open now: the pop's own may have closed while
            // it was processed, and the next one's replay brought it again
            // (dropped above as seen). The server ignores an ack of a seq
            // it did not send on that socket.
            var ws = self.ws;
            if (stream === self.stream && ws && ws.readyState === 1) {
              ws.send(JSON.stringify({ type: 'ack', seq: m.seq }));
            }
          });
        });
        break;
      case 'heartbeat':
        // The socket got its whole replay: a connect that worked, so the
        // next failure backs off from the start.
        self.attempt = 0;
        if (typeof self.cursor.pendingBase === 'number') {
          // The replay of this socket's hello is complete. Behind the
          // pops still being processed, so a reload meanwhile does not
          // resume after pops it never processed.
          var base = self.cursor.pendingBase, epoch = self.cursor.epoch;
          self.queue(function () {
            if (self.cursor.epoch !== epoch || typeof self.cursor.base === 'number') { return; }
            self.cursor.base = base;
            delete self.cursor.pendingBase;
            self.saveCursor();
          });
        }
        break;
      case 'error':
        self.lastError = { code: m.code, message: m.message };
        if (self.opts.onError) { try { self.opts.onError(self.lastError); } catch (e) { /* app bug */ } }
        break;
      default: // types of later versions
    }
  };

  // queue runs fn after everything queued before it; a failure does not
  // stop what comes after.
  Client.prototype.queue = function (fn) {
    this.chain = this.chain.then(fn).then(null, function () { /* reported where it happened */ });
  };

  // handOver calls onPop and settles when its result settles (the app
  // reports its own errors), or after popTimeoutMs: the pops after it wait
  // for it, and a handler that never settles must not hold them for ever.
  Client.prototype.handOver = function (m) {
    var self = this, r;
    try { r = self.opts.onPop && self.opts.onPop(m); } catch (e) { r = null; }
    return new Promise(function (resolve) {
      var t = setTimeout(resolve, self.popTimeoutMs);
      Promise.resolve(r).then(null, function () { /* see above */ }).then(function () {
        clearTimeout(t);
        resolve();
      });
    });
  };

  Client.prototype.onClose = function (code) {
    this.detach();
    if (this.stopped) { this.setState('closed', { code: code }); return; }
    if (code === 4401) {
      this.tokenRefused();
      return;
    }
    this.setState('reconnecting', { code: code });
    this.retry(code === 4008 ? 1 : 0);
  };

  // maxRefusals is how many 4401s in a row (with no ready between) make the
  // client stop asking the token function and call onAuthRequired: one
  // whose every new token is refused would otherwise keep the tab
  // reconnecting without ever saying why.
  var maxRefusals = 3;

  // tokenRefused handles a 4401: the token was refused, or expired on the
  // open socket (jwt mode closes it at exp). A token function is asked
  // again: a new token (an SSO library's refreshed JWT) reconnects, with
  // backoff; the same token or none means that only a new sign-in helps.
  Client.prototype.tokenRefused = function () {
    var self = this, refused = self.usedToken, opens = self.opens;
    self.refusals++;
    if (typeof self.opts.token !== 'function' || self.refusals >= maxRefusals) {
      self.setState('auth', { code: 4401 });
      self.authRequired();
      return;
    }
    self.setState('reconnecting', { code: 4401 });
    // The watchdog covers this token wait too, as open's: a token
    // function that never answers would leave the client reconnecting
    // for good (the watchdog's retry opens anew, and this answer is not
    // used).
    self.feed();
    self.token().then(null, function () { return ''; }).then(function (t) {
      if (self.stopped || self.opens !== opens || self.waiting) { return; } // closed, reconnected meanwhile, or the watchdog retries
      clearTimeout(self.watchdog);
      if (!t || t === refused) {
        self.setState('auth', { code: 4401 });
        self.authRequired();
        return;
      }
      self.retry(0);
    });
  };

  Client.prototype.authRequired = function () {
    if (this.opts.onAuthRequired) { try { this.opts.onAuthRequired(); } catch (e) { /* app bug */ } }
  };

  // retry waits a capped exponential backoff with jitter; fast (a too-slow
  // close or a server restart) starts from the shortest delay.
  Client.prototype.retry = function (fast) {
    var self = this;
    if (self.stopped) { return; }
    var d = Math.min(self.maxBackoff, self.minBackoff * Math.pow(2, fast ? 0 : self.attempt));
    self.attempt++;
    var wait = d / 2 + Math.random() * d / 2;
    clearTimeout(self.timer);
    self.waiting = true;
    self.timer = setTimeout(function () { self.open(); }, wait);
  };

  // reconnect drops the socket and connects now (e.g. after a new login).
  Client.prototype.reconnect = function () {
    var ws = this.ws;
    this.detach();
    try { ws && ws.close(1000); } catch (e) { /* already closed */ }
    this.attempt = 0;
    this.refusals = 0;
    this.stopped = false;
    this.open();
  };

  Client.prototype.close = function () {
    this.stopped = true;
    if (this.onOnline && root.removeEventListener) {
      root.removeEventListener('online', this.onOnline);
      this.onOnline = null;
    }
    clearTimeout(this.timer);
    var ws = this.ws;
    this.detach();
    try { ws && ws.close(1000); } catch (e) { /* already closed */ }
    this.setState('closed', { code: 1000 });
  };

  ns.Client = Client;
  ns.connect = function (opts) { return new Client(opts).start(); };

  // ---- Genesys Cloud login: authorization code + PKCE in a popup ----

  function b64url(bytes) {
    var s = '';
    for (var i = 0; i < bytes.length; i++) { s += String.fromCharCode(bytes[i]); }
    return root.btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function randomString(n) {
    var a = new Uint8Array(n);
    root.crypto.getRandomValues(a);
    return b64url(a);
  }

  /*
   * ScreenPop.login({loginURL | authorizeURL+tokenURL, clientId, redirectURI,
   * scope}) opens the Genesys Cloud login in a popup and resolves with
   * {accessToken, expiresIn}. Call it from a click handler: the popup is
   * opened synchronously, so popup blockers let it through. redirectURI
   * defaults to oauth-callback.html next to this script and must be
   * registered, exactly, in the Genesys OAuth client.
   */
  ns.login = function (o) {
    o = o || {};
    var base = (o.loginURL || '').replace(/\/+$/, '');
    var authorizeURL = o.authorizeURL || (base + '/oauth/authorize');
    var tokenURL = o.tokenURL || (base + '/oauth/token');
    var redirectURI = o.redirectURI || new URL('oauth-callback.html', ns.baseURL).href;
    var popup = root.open('about:blank', 'screenpop-login', o.features || 'popup,width=520,height=680');
    if (!popup) { return Promise.reject(new Error('popup blocked')); }
    var state = randomString(16);
    var verifier = randomString(48);
    return root.crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)).then(function (sum) {
      var q = new URLSearchParams({
        response_type: 'code', client_id: o.clientId, redirect_uri: redirectURI, state: state,
        code_challenge: b64url(new Uint8Array(sum)), code_challenge_method: 'S256'
      });
      if (o.scope) { q.set('scope', o.scope); }
      popup.location.href = authorizeURL + '?' + q.toString();
      return new Promise(function (resolve, reject) {
        var bc = root.BroadcastChannel ? new root.BroadcastChannel('screenpop-oauth') : null;
        var poll;
        function done(err, code) {
          root.removeEventListener('message', onMsg);
          if (bc) { bc.close(); }
          clearInterval(poll);
          try { popup.close(); } catch (e) { /* gone */ }
          if (err) { reject(err); } else { resolve(code); }
        }
        function take(d) {
          if (!d || d.type !== 'screenpop-oauth' || d.state !== state) { return; }
          if (d.error) { done(new Error('login refused: ' + d.error)); return; }
          done(null, d.code);
        }
        function onMsg(ev) { if (ev.source === popup) { take(ev.data); } }
        root.addEventListener('message', onMsg);
        if (bc) { bc.onmessage = function (ev) { take(ev.data); }; }
        poll = setInterval(function () { if (popup.closed) { done(new Error('login window closed')); } }, 500);
      });
    }).then(function (code) {
      var body = new URLSearchParams({
        grant_type: 'authorization_code', code: code, redirect_uri: redirectURI,
        client_id: o.clientId, code_verifier: verifier
      });
      return root.fetch(tokenURL, { method: 'POST', body: body, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    }).then(function (r) {
      if (!r.ok) { throw new Error('token exchange failed: HTTP ' + r.status); }
      return r.json();
    }).then(function (t) {
      if (!t || !t.access_token) { throw new Error('token exchange returned no access_token'); }
      return { accessToken: t.access_token, expiresIn: t.expires_in };
    });
  };
})(typeof self !== 'undefined' ? self : this);
