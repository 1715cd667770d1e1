/* The OAuth redirect target of ScreenPop.login: it hands the authorization
 * code to the window that opened the login popup and closes itself. The
 * code is useless without the PKCE verifier, which never leaves the opener. */
(function () {
  'use strict';
  var q = new URLSearchParams(window.location.search);
  var msg = { type: 'screenpop-oauth', code: q.get('code') || '', state: q.get('state') || '', error: q.get('error') || '' };
  try { window.history.replaceState(null, '', window.location.pathname); } catch (e) { /* ignore */ }
  var target = '*';
  try { target = window.opener.location.origin; } catch (e) { /* the opener is on another origin (Dynamics) */ }
  try { if (window.opener) { window.opener.postMessage(msg, target); } } catch (e) { /* no opener */ }
  try { var bc = new BroadcastChannel('screenpop-oauth'); bc.postMessage(msg); bc.close(); } catch (e) { /* unsupported */ }
  document.getElementById('msg').textContent = msg.error ? 'Sign-in failed. You can close this window.' : 'Signed in. You can close this window.';
  setTimeout(function () { window.close(); }, 300);
})();
