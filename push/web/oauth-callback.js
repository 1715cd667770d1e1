/* The OAuth redirect target of ScreenPop.login: it hands the authorization
 * code to the window that opened the login popup and closes itself. The
 * code is posted only to this origin or to an origin the deployment allows
 * (SCREENPOP_ALLOWED_ORIGINS, served as origins.json): anyone can open the
 * authorize URL with a PKCE challenge of their own, so a code posted to any
 * opener would be exchanged for the agent's token by whoever opened it. */
(function () {
  'use strict';
  var q = new URLSearchParams(window.location.search);
  var msg = { type: 'screenpop-oauth', code: q.get('code') || '', state: q.get('state') || '', error: q.get('error') || '' };
  try { window.history.replaceState(null, '', window.location.pathname); } catch (e) { /* ignore */ }
  var own = window.location.origin;
  var opener = window.opener;
  function post(target) {
    try { opener.postMessage(msg, target); } catch (e) { /* gone, or a malformed origin */ }
  }
  var sameOrigin = false;
  try { sameOrigin = !!opener && opener.location.origin === own; } catch (e) { /* the opener is on another origin (Dynamics) */ }
  // Same-origin windows (the demo page) hear the BroadcastChannel too.
  try { var bc = new BroadcastChannel('screenpop-oauth'); bc.postMessage(msg); bc.close(); } catch (e) { /* unsupported */ }
  var posted;
  if (!opener) {
    posted = Promise.resolve();
  } else if (sameOrigin) {
    post(own);
    posted = Promise.resolve();
  } else {
    // postMessage with an explicit targetOrigin is delivered only when the
    // opener is on that origin: the code never reaches any other.
    posted = fetch('origins.json', { cache: 'no-store' }).then(function (r) { return r.ok ? r.json() : []; }).then(function (list) {
      if (Array.isArray(list)) { list.forEach(function (o) { if (typeof o === 'string') { post(o); } }); }
    }).then(null, function () { /* no list: nothing is posted */ });
  }
  document.getElementById('msg').textContent = msg.error ? 'Sign-in failed. You can close this window.' : 'Signed in. You can close this window.';
  posted.then(function () { setTimeout(function () { window.close(); }, 300); });
})();
