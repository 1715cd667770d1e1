/* The demo agent page: connects to this server with a token from the URL
 * fragment (#token=…), the form, the demo agent list, or the Genesys PKCE
 * login, and lists the pops it receives. Everything is rendered with textContent. */
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var frag = new URLSearchParams(window.location.hash.slice(1));
  if (window.location.hash) {
    // The fragment never reaches the server; drop it from the address bar too.
    try { window.history.replaceState(null, '', window.location.pathname); } catch (e) { /* ignore */ }
  }
  var client = null;
  var token = '';

  function setStatus(state, detail) {
    var s = $('status');
    s.setAttribute('data-state', state);
    var t = state;
    if (detail && detail.code) { t += ' (' + detail.code + ')'; }
    s.textContent = t;
    if (state === 'ready') { $('agent').textContent = 'agent ' + detail.agentId; }
  }

  function show(pop) {
    var li = document.createElement('li');
    var t = pop.target || {};
    li.setAttribute('data-seq', String(pop.seq));
    li.setAttribute('data-id', pop.id);
    li.setAttribute('data-action', t.action || '');
    var head = document.createElement('div');
    var what = t.action === 'open' ? (t.entity + ': ' + (t.name || t.id))
      : t.action === 'choose' ? ('choose among ' + (pop.candidates || []).length + ' records')
      : t.action === 'create' ? ('new ' + t.entity)
      : t.action === 'search' ? ('search for ' + (t.query || '')) : String(t.action);
    head.textContent = '#' + pop.seq + ' ' + pop.media + ' ' + pop.state + ' → ' + what;
    li.appendChild(head);
    var c = pop.customer || {};
    var sub = document.createElement('div');
    sub.className = 'muted';
    sub.textContent = [c.name, c.phone, c.email].filter(Boolean).join(' · ') + '  (' + pop.conversationId + ')';
    li.appendChild(sub);
    if (t.url) {
      var a = document.createElement('a');
      a.href = t.url;
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      a.textContent = 'open in Dynamics';
      li.appendChild(a);
    }
    $('pops').insertBefore(li, $('pops').firstChild);
  }

  function connect(tok) {
    token = tok;
    if (client) { client.reconnect(); return; }
    // Always this server's own socket (the library's default): a socket
    // named in a link would get the token the agent signs in with.
    client = window.ScreenPop.connect({
      token: function () { return token; },
      onPop: show,
      onState: setStatus
    });
    window.screenpopClient = client;
  }

  $('tokenForm').addEventListener('submit', function (ev) {
    ev.preventDefault();
    if ($('token').value) { connect($('token').value); $('token').value = ''; }
  });

  $('loginForm').addEventListener('submit', function (ev) {
    ev.preventDefault();
    window.ScreenPop.login({ loginURL: $('loginURL').value, clientId: $('clientId').value }).then(function (t) {
      connect(t.accessToken);
    }, function (err) {
      setStatus('login failed');
      window.console && console.warn('screenpop login:', err.message);
    });
  });

  // Demo mode lists the emulated agents with ready-made tokens.
  fetch('../demo/agents', { cache: 'no-store' }).then(function (r) { return r.ok ? r.json() : null; }).then(function (list) {
    if (!Array.isArray(list)) { return; }
    // A link prefills the login (#login=…&clientId=…, as `screenpopd demo`
    // prints it) in demo mode only. Every daemon serves this page: a link
    // to the real host naming a login URL of its own would have the agent's
    // click post the authorization code and PKCE verifier to that host's
    // /oauth/token, which trades them for the agent's Genesys token.
    if (frag.get('login')) { $('loginURL').value = frag.get('login'); }
    if (frag.get('clientId')) { $('clientId').value = frag.get('clientId'); }
    list.forEach(function (a) {
      if (!a || !a.token) { return; }
      var b = document.createElement('button');
      b.type = 'button';
      b.textContent = 'Connect as ' + (a.name || a.id);
      b.onclick = function () { connect(a.token); };
      $('agents').appendChild(b);
    });
  }, function () { /* not in demo mode */ });

  if (frag.get('token')) { connect(frag.get('token')); }
})();
