/*
 * screenpop-dynamics.js: the Dynamics 365 web resource. It adds
 * ScreenPop.Dynamics to the one global of screenpop.js (load screenpop.js
 * first) and opens each pop with Xrm.Navigation.openForm or, in a
 * multisession app (Customer Service workspace), in a new tab of the
 * focused session (Microsoft.Apm.createTab, template msdyn_entityrecord):
 *   open   -> the record (entityName + entityId)
 *   create -> a new record of target.entity, prefilled from pop.prefill (formParameters)
 *   choose -> a small chooser of the candidates; the agent's click opens one
 * The candidates of choose are first read as the agent (Xrm.WebApi): the
 * daemon's application user reads more than most agents, and a record the
 * agent may not read is not named (see readable).
 *   search -> a notification offering target.query; no URL is ever built from it
 * With several tabs of one agent open, only one tab acts on a pop (a Web
 * Lock plus a localStorage marker keyed by the pop id), the visible one if
 * any; each tab holds one connection however many pages load the script.
 * A pop counts as processed (acked) once this tab has claimed it and started
 * opening the form, or checking a choose pop's candidates: openForm's
 * promise is not waited for (see launch), nor that check (see act).
 *
 * From a form's OnLoad (pass the execution context, and the JSON options as
 * the second parameter):
 *   ScreenPop.Dynamics.onLoad(executionContext, '{"url":"wss://screenpop.contoso.com/v1/ws","loginURL":"https://login.mypurecloud.com","clientId":"…"}')
 * or from an HTML web resource: ScreenPop.Dynamics.start({ ... }).
 */
(function (root) {
  'use strict';
  var ns = root.ScreenPop = root.ScreenPop || {};
  if (ns.Dynamics) { return; }

  var MARK = 'screenpop.popped:';
  var CLAIM = 'screenpop.claim:'; // without Web Locks: "<tabId> <time>"
  var TOKEN = 'screenpop.genesysToken';
  var MARK_TTL = 6 * 3600 * 1000;
  var HIDDEN_WAIT = 300; // ms a hidden tab lets a visible one claim a pop first
  var KEEP = 20; // entries of handled kept: a page can stay open for a whole shift
  var tabId = Math.random().toString(36).slice(2) + Date.now().toString(36);

  function findXrm(opts) {
    if (opts && opts.xrm) { return opts.xrm; }
    if (root.Xrm && root.Xrm.Navigation) { return root.Xrm; }
    try { if (root.parent && root.parent.Xrm && root.parent.Xrm.Navigation) { return root.parent.Xrm; } } catch (e) { /* cross-origin parent */ }
    return null;
  }

  // appWindow is the topmost window of this tab on this origin: the app
  // itself when this script is a form library, which Unified Interface runs
  // in a hidden iframe per page (ClientApiFrame_<n>, 0x0), or this window.
  function appWindow() {
    var w = root;
    try {
      while (w.parent && w.parent !== w && w.parent.location.origin === root.location.origin) { w = w.parent; }
    } catch (e) { /* an ancestor on another origin (Outlook, an embedding page): stop below it */ }
    return w;
  }

  // nextTurn counts the pops acted on in this tab, by any of its pages (on
  // the app window, as tabKey); currentTurn is the latest.
  function turns() {
    try { return appWindow().ScreenPop = appWindow().ScreenPop || {}; } catch (e) { return ns; }
  }
  function nextTurn() { var t = turns(); t.turn = (t.turn || 0) + 1; return t.turn; }
  function currentTurn() { return turns().turn; }

  // The choose pop this tab shows, or is checking the candidates of, is
  // kept on the app window too ({id, pop: its JSON, turn}): the page that
  // claimed it can go before the agent picks (a pop that came just before
  // opened its record, and Unified Interface dropped the page), and the
  // list's buttons, and its check, ran that page's code, which runs no more.
  // The next page shows it again (resumeChoice). Cleared when the agent
  // picks or dismisses, and when a newer pop takes the screen.
  // (turns falls back to this script's namespace where the app window
  // cannot be reached.)
  function setChoice(v) { turns().choice = v; }
  function clearChoice(unless) {
    var t = turns();
    if (t.choice && t.choice.id !== unless) { t.choice = null; }
  }

  // tabKey names this browser tab: kept on the app window, the same for the
  // form libraries of every page of the tab, and new in each tab.
  function tabKey() {
    try {
      var ans = appWindow().ScreenPop = appWindow().ScreenPop || {};
      if (!ans.tab) { ans.tab = tabId; }
      return ans.tab;
    } catch (e) { return tabId; }
  }

  // apmOf finds the app profile manager of a multisession app (Customer
  // Service workspace, Contact Center workspace): Microsoft.Apm, on this
  // window or the app's. It returns {apm, win}: win is the window it lives
  // on, whose Map its createTab expects (a Map made in a form library's
  // frame is not an instance of the app window's Map). null in a
  // single-session app, or with the option multisession: false.
  function apmOf(opts) {
    if (opts && opts.multisession === false) { return null; }
    var wins = [root];
    try { if (appWindow() !== root) { wins.push(appWindow()); } } catch (e) { /* no app window */ }
    for (var i = 0; i < wins.length; i++) {
      try {
        var m = wins[i].Microsoft && wins[i].Microsoft.Apm;
        if (m && typeof m.createTab === 'function') { return { apm: m, win: wins[i] }; }
      } catch (e) { /* another origin */ }
    }
    return null;
  }

  function local() { try { return root.localStorage; } catch (e) { return null; } }

  function marked(id) {
    var s = local();
    return !!(s && s.getItem(MARK + id));
  }

  // stamp is the time in a marker ("<time>") or a claim ("<tabId> <time>");
  // NaN for anything else, such as a claim of an earlier version (the tab id
  // alone).
  function stamp(v) {
    v = String(v || '');
    var i = v.lastIndexOf(' ');
    return i < 0 ? Number(v) : Number(v.slice(i + 1));
  }

  function mark(id) {
    var s = local();
    if (!s) { return; }
    var now = Date.now();
    try {
      s.setItem(MARK + id, String(now));
      for (var i = s.length - 1; i >= 0; i--) { // prune old markers and claims
        var k = s.key(i);
        if (k && (k.indexOf(MARK) === 0 || k.indexOf(CLAIM) === 0) && !(now - stamp(s.getItem(k)) <= MARK_TTL)) { s.removeItem(k); }
      }
    } catch (e) { /* quota */ }
  }

  function delay(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  // claim resolves true in exactly one tab of this browser profile per pop
  // id. With Web Locks the check-and-mark runs under an exclusive lock held
  // for holdMs, so a second tab either waits and then sees the marker, or
  // finds the lock taken; without them a localStorage claim is written and
  // read back after a random pause.
  function claim(id, holdMs, hiddenWait) {
    var doc = root.document;
    if (doc && doc.visibilityState === 'hidden') {
      // A tab out of sight (a form's frame reports its tab's state) leaves
      // the pop to a tab the agent is looking at, if there is one: it waits
      // when another tab holds a connection, and only then (a background
      // tab's timers are slowed, and most agents have one Dynamics tab).
      return otherTabs().then(function (others) {
        return others ? delay(hiddenWait).then(function () { return claimNow(id, holdMs); }) : claimNow(id, holdMs);
      });
    }
    return claimNow(id, holdMs);
  }

  // otherTabs resolves whether another tab of this origin holds a
  // connection (its tab lock, see take); true when it cannot be told.
  function otherTabs() {
    var locks = root.navigator && root.navigator.locks;
    if (!locks || !locks.query) { return Promise.resolve(true); }
    var mine = 'screenpop-tab:' + tabKey();
    return locks.query().then(function (st) {
      return (st.held || []).some(function (l) { return l.name.indexOf('screenpop-tab:') === 0 && l.name !== mine; });
    }, function () { return true; });
  }

  function claimNow(id, holdMs) {
    if (marked(id)) { return Promise.resolve(false); }
    var locks = root.navigator && root.navigator.locks;
    if (locks && locks.request) {
      return new Promise(function (resolve) {
        locks.request('screenpop-pop:' + id, { ifAvailable: true }, function (lock) {
          if (!lock || marked(id)) { resolve(false); return null; }
          mark(id);
          resolve(true);
          return delay(holdMs); // keep the lock while the marker reaches the other tabs
        }).then(null, function () { resolve(false); });
      });
    }
    var s = local();
    if (!s) { return Promise.resolve(true); }
    var key = CLAIM + id, mine = tabId + ' ' + Date.now(); // the time, for mark's pruning
    if (s.getItem(key)) { return Promise.resolve(false); }
    s.setItem(key, mine);
    return delay(30 + Math.random() * 70).then(function () {
      if (s.getItem(key) !== mine || marked(id)) { return false; }
      mark(id);
      return true;
    });
  }

  // keep appends v to list, dropping the oldest entries past KEEP.
  function keep(list, v) {
    list.push(v);
    if (list.length > KEEP) { list.splice(0, list.length - KEEP); }
  }

  function Controller(opts) {
    this.opts = opts || {};
    this.handled = []; // {id, seq, action, opened} for the last KEEP pops this tab saw
    this.client = null;
    this.chooser = null;
    this.idColumns = Object.create(null); // table -> promise of its primary id column (see idColumn)
  }

  Controller.prototype.xrm = function () { return findXrm(this.opts); };

  // uiDocument is where the chooser and banners go: the container's
  // document, or the app's; a form library's own document is the hidden
  // ClientApiFrame, where the agent would never see them.
  Controller.prototype.uiDocument = function () {
    var c = this.opts.container;
    if (c && c.ownerDocument) { return c.ownerDocument; }
    try { return appWindow().document; } catch (e) { return root.document; }
  };

  // notify shows a Dynamics global notification (or an in-page banner when
  // Xrm.App is missing). level: 1 success, 2 error, 3 warning, 4 information.
  Controller.prototype.notify = function (level, message, action) {
    var x = this.xrm();
    if (x && x.App && x.App.addGlobalNotification) {
      var n = { type: 2, level: level, message: message, showCloseButton: true };
      if (action) { n.action = { actionLabel: action.label, eventHandler: action.run }; }
      return Promise.resolve(x.App.addGlobalNotification(n)).then(null, function () { /* shown or not, nothing else to do */ });
    }
    var doc = this.uiDocument();
    if (!doc || !doc.body) { return Promise.resolve(); }
    var bar = doc.createElement('div');
    bar.setAttribute('role', 'status');
    bar.className = 'screenpop-note';
    bar.style.cssText = 'position:fixed;top:8px;right:8px;z-index:2147483647;max-width:360px;padding:8px 12px;background:#fff;border:1px solid #888;border-radius:4px;font:14px sans-serif;box-shadow:0 2px 8px rgba(0,0,0,.2)';
    var text = doc.createElement('span');
    text.textContent = message;
    bar.appendChild(text);
    if (action) {
      var b = doc.createElement('button');
      b.type = 'button';
      b.textContent = action.label;
      b.style.marginLeft = '8px';
      b.onclick = function () { action.run(); };
      bar.appendChild(b);
    }
    var x2 = doc.createElement('button');
    x2.type = 'button';
    x2.textContent = '×';
    x2.setAttribute('aria-label', 'Dismiss');
    x2.style.marginLeft = '8px';
    x2.onclick = function () { bar.remove(); };
    bar.appendChild(x2);
    (this.opts.container || doc.body).appendChild(bar);
    return Promise.resolve(bar);
  };

  // clearAuthNote takes down this page's "Sign in" notification: its button
  // runs this page's code, which cannot sign in once the page is gone, and
  // a newer page holding the connection asks for itself.
  Controller.prototype.clearAuthNote = function () {
    var id = this.authNote, x = this.xrm();
    this.authNote = null;
    // One still on its way (the app answers with its id asynchronously)
    // is taken down once shown (see keepAuthNote).
    this.authGen = (this.authGen || 0) + 1;
    // A sign-in that did not complete goes with it: once signed in (or
    // asked again) it would tell a connected agent the sign-in failed.
    if (this.loginNote) { this.dropNote(this.loginNote); this.loginNote = null; }
    if (!id) { return; }
    try {
      if (id.remove) { id.remove(); } else if (x && x.App && x.App.clearGlobalNotification) { x.App.clearGlobalNotification(id); }
    } catch (e) { /* gone already */ }
  };

  // keepAuthNote notes the id of an auth notification (field: 'authNote' or
  // 'loginNote') once the app answers with it; if clearAuthNote ran
  // meanwhile (a newer page took the connection, the agent signed in),
  // the notification is taken down instead of kept for good.
  Controller.prototype.keepAuthNote = function (field, shown) {
    var self = this, gen = self.authGen;
    return shown.then(function (id) {
      if (id && gen !== self.authGen) { self.dropNote(id); return; }
      self[field] = id || null;
    });
  };

  // notifyPop is notify for what pop popId brings (the search offer, a
  // failure to open): such a notification is taken down when a newer pop
  // comes, as an earlier caller's list is. Left up, one piled up for every
  // such pop of a shift, each with a button acting on an earlier caller's
  // number.
  //
  // They are kept on the app window ({id, pop}), as the choice is: the
  // notification is the app's, and the next pop comes to whichever page
  // holds the connection then (the agent searched and opened a record).
  function popNotes() {
    var t = turns();
    t.popNotes = t.popNotes || [];
    return t.popNotes;
  }
  //
  // The app answers with the notification's id asynchronously: a newer pop
  // acted on in this tab meanwhile found nothing to take down, and the
  // notification is taken down here instead.
  Controller.prototype.notifyPop = function (popId, level, message, action) {
    var self = this, turn = currentTurn();
    return self.notify(level, message, action).then(function (id) {
      if (id && turn !== currentTurn()) { self.dropNote(id); return id; }
      if (id) { popNotes().push({ id: id, pop: popId }); }
      return id;
    });
  };

  // clearPopNotes takes down the notifications of earlier pops, but those
  // of the pop keep (if given: a pop of this tab replayed to it).
  Controller.prototype.clearPopNotes = function (keep) {
    var self = this;
    turns().popNotes = popNotes().filter(function (n) {
      if (keep && n.pop === keep) { return true; }
      self.dropNote(n.id);
      return false;
    });
  };

  // dropNote takes down one notification (an id of Xrm.App's, or a banner).
  Controller.prototype.dropNote = function (id) {
    var x = this.xrm();
    try {
      if (id.remove) { id.remove(); } else if (x && x.App && x.App.clearGlobalNotification) { x.App.clearGlobalNotification(id); }
    } catch (e) { /* gone already */ }
  };

  // launch starts Xrm.Navigation.openForm and returns at once. Its promise
  // is not waited for: Microsoft's reference says the success callback "is
  // not executed when you open a form for an existing or new record" (only
  // when a quick-create form is saved), so waiting held every later pop of
  // the tab. A failure (rejected, thrown, or no Xrm) shows failure and sets
  // rec.error.
  //
  // A page can get its first pop before Xrm is usable (a side pane or HTML
  // web resource loading before the app shell): launch waits for it, up to
  // xrmWaitMs (default 10 s), and settles once openForm has been called.
  //
  // In a multisession app the record opens in a new tab of the focused
  // session (Microsoft.Apm.createTab), so that the page the agent is on
  // stays open; openForm there would open it in that page's place. Should
  // createTab fail (a template removed, say) or not settle within
  // tabWaitMs, openForm opens it.
  //
  // Whatever settles late (Xrm coming after the wait, the fallback after a
  // createTab that failed or did not answer, openForm's rejection) is for
  // the turn launch was called in: once a newer pop has been acted on in
  // this tab, that pop has the screen, and the earlier record is not opened
  // over it, nor its failure shown there (notifications of a pop go at the
  // next pop), as a choose pop's list is not drawn (offerChoice).
  Controller.prototype.launch = function (options, params, failure, rec) {
    var self = this, turn = currentTurn();
    var stale = function () { return turn !== currentTurn(); };
    // The failure notification offers to open it again: openForm also
    // rejects when the agent, on a form with unsaved changes, cancels
    // Unified Interface's "save / discard" prompt to keep their work. The
    // pop is acked and comes no more; without the action the record it
    // found (or the form prefilled with the caller's number) is out of
    // reach once their work is saved. The notification goes at the next
    // pop, as before.
    var again = { label: 'Open', run: function () { self.launch(options, params, failure, rec); } };
    return self.whenXrm().then(function (x) {
      if (stale()) { if (rec) { rec.superseded = true; } return; }
      var form = function () {
        if (!x) { throw new Error('Xrm is not available'); }
        return params ? x.Navigation.openForm(options, params) : x.Navigation.openForm(options);
      };
      var opening, ms = apmOf(self.opts);
      try {
        opening = Promise.resolve(ms ? createTab(ms, options, params) : form());
      } catch (e) {
        opening = Promise.reject(e);
      }
      if (ms) {
        // A createTab that has not settled within tabWaitMs (default 10 s)
        // counts as failed: the pop is acked already, and would be lost.
        // Should its tab open after all, once openForm has opened the
        // record, that second copy is closed (Microsoft.Apm.closeTab). Not
        // when openForm failed: that tab is then the record's only copy,
        // and the failure notification goes instead. openForm may answer
        // after the tab came (a dialog the agent deals with first): the
        // tab is held tabWaitMs more for its rejection before it is closed.
        var tab = opening, wait = self.opts.tabWaitMs || 10000, late = false, formFailed = null, held = false;
        opening = new Promise(function (resolve, reject) {
          var timer = setTimeout(function () { late = true; reject(new Error('createTab did not settle')); }, wait);
          tab.then(function (v) {
            clearTimeout(timer);
            if (late && formFailed && !stale()) {
              if (rec) { rec.error = false; }
              formFailed.then(function (id) { if (id) { self.dropNote(id); } });
            } else if (late && !formFailed && !stale()) {
              held = true;
              setTimeout(function () { if (held) { held = false; closeLateTab(ms, v); } }, wait);
            } else if (late) {
              closeLateTab(ms, v);
            }
            resolve(v);
          }, function (e) { clearTimeout(timer); reject(e); });
        }).then(null, function (e) {
          if (stale()) { if (rec) { rec.superseded = true; } throw e; }
          return form();
        });
        opening.then(null, function () {
          if (held && !stale()) { held = false; return; } // the late tab has the record
          if (rec) { rec.error = true; }
          formFailed = stale() ? Promise.resolve(null) : self.notifyPop(rec && rec.id, 2, failure, again);
        });
        return;
      }
      opening.then(null, function () {
        if (rec) { rec.error = true; }
        if (stale()) { return; }
        self.notifyPop(rec && rec.id, 2, failure, again);
      });
    });
  };

  // createTab opens options' record (or a new one, prefilled with params)
  // in a new focused tab of the multisession app ms (see apmOf). A record
  // is opened with validateRecord: without it the entity-record template
  // opens a record no longer in Dataverse (deleted since the daemon's
  // lookup was cached, a stale override id) as a new record's form, in
  // create mode (Microsoft's "Manage application tab templates"), and the
  // agent takes the caller for one without a record.
  function createTab(ms, options, params) {
    var ctx = new ms.win.Map();
    ctx.set('entityName', options.entityName);
    if (options.entityId) { ctx.set('entityId', options.entityId); ctx.set('validateRecord', 'true'); }
    if (params) { ctx.set('data', JSON.stringify(params)); }
    return ms.apm.createTab({ templateName: 'msdyn_entityrecord', appContext: ctx, isFocused: true });
  }

  // closeLateTab closes the tab a late createTab opened (its id, a string),
  // where the app profile manager can.
  function closeLateTab(ms, tabId) {
    try {
      if (typeof tabId === 'string' && tabId && typeof ms.apm.closeTab === 'function') { ms.apm.closeTab(tabId); }
    } catch (e) { /* the agent closes it */ }
  }

  // whenXrm resolves with Xrm once it is usable, or null after xrmWaitMs.
  // The page waits once: after a wait that ended without Xrm, later pops
  // fail at once (each waiting 10 s would hold every pop after it).
  Controller.prototype.whenXrm = function () {
    var self = this, x = self.xrm();
    if (x) { return Promise.resolve(x); }
    if (!self.xrmWait) {
      var limit = Date.now() + (self.opts.xrmWaitMs || 10000);
      self.xrmWait = new Promise(function (resolve) {
        (function check() {
          var found = self.xrm();
          if (found || Date.now() >= limit) { resolve(found); return; }
          setTimeout(check, 100);
        })();
      });
    }
    return self.xrmWait;
  };

  Controller.prototype.openRecord = function (entity, id, rec) {
    return this.launch({ entityName: entity, entityId: id }, null, 'Screen pop: the record could not be opened.', rec);
  };

  // act starts what the pop asks for; the promise it returns settles once
  // that has started (or, for search, once the notification is shown).
  Controller.prototype.act = function (pop, rec) {
    var self = this, t = pop.target || {}, turn = nextTurn();
    self.clearPopNotes();
    if (t.action !== 'choose') {
      // An earlier caller's list must not stay over the next caller's
      // record, with focus in it: a click there would open the wrong one.
      self.dropChoosers();
    }
    switch (t.action) {
      case 'open':
        // Not held for an access check: a record the agent may not read
        // opens on Dynamics' own access-denied form, which names nothing.
        return self.openRecord(t.entity, t.id, rec);
      case 'create':
        return self.launch({ entityName: t.entity }, pop.prefill || {}, 'Screen pop: a new ' + t.entity + ' form could not be opened.', rec);
      case 'choose':
        // Not held for the access check: the next pop (another of the
        // agent's interactions alerting a moment later) must not wait up
        // to accessWaitMs for it. A newer pop acted on meanwhile takes the
        // turn, and this list is not drawn; should this page go first, the
        // next one shows it (resumeChoice).
        self.offerChoice(pop, rec, turn, false).then(null, function () { if (rec) { rec.error = true; } });
        return Promise.resolve();
      case 'search':
        return self.offerSearch(t, null, pop.id);
      case 'none':
        return Promise.resolve();
      default:
        // An action of a later daemon than this script (a web resource
        // cached by the browser, or not published yet): claimed here, no
        // other tab acts on it, so the agent gets the record it names, or
        // is told.
        if (t.entity && t.id) { return self.openRecord(t.entity, t.id, rec); }
        return self.notifyPop(pop.id, 3, 'Screen pop: this call\'s pop needs a newer version of the screen-pop web resource. Reload the page.');
    }
  };

  // offerChoice shows pop's chooser (turn: the act's); quiet leaves the
  // focus where it is.
  Controller.prototype.offerChoice = function (pop, rec, turn, quiet) {
    var self = this;
    setChoice({ id: pop.id, pop: JSON.stringify(pop), turn: turn });
    // The daemon looked the caller up as its application user, which
    // reads every business unit: only the records this agent may read
    // are offered, so no other unit's customer is named here.
    return self.readable(pop.candidates || []).then(function (ok) {
      // A newer pop acted on in this tab meanwhile (by a newer page,
      // which took the connection) has the screen: this caller's list
      // or record must not cover it.
      if (turn !== currentTurn()) { return; }
      if (ok.length === 1) { self.dropChoosers(); return self.openRecord(ok[0].entity, ok[0].id, rec); }
      if (!ok.length && (pop.candidates || []).length) { self.dropChoosers(); return self.offerUnreadable(pop); }
      // The list the agent sees, kept for the page that shows it again:
      // that one draws it as it is, and checks nothing anew (a check that
      // now left one record would open it, long after the pop, over
      // whatever page the agent went to).
      setChoice({ id: pop.id, pop: JSON.stringify(pop), turn: turn, shown: JSON.stringify(ok) });
      self.choose(ok, pop.id, quiet, pop);
    });
  };

  // REFUSED are the Dataverse error codes (Xrm.WebApi's errorCode, a
  // positive decimal) of a record the signed-in user may not open:
  // 0x80040220 their roles lack Read on the table; 0x80048306 they have it,
  // but the record is out of its reach (another business unit, not owned
  // by or shared with them or a team of theirs); 0x80040217 it is gone
  // (deleted since the daemon cached the lookup).
  var REFUSED = [0x80040220, 0x80048306, 0x80040217];

  function refused(e) {
    var c = e && e.errorCode;
    if (typeof c === 'string') { c = Number(c); }
    if (typeof c !== 'number' || !isFinite(c)) { return false; }
    if (c < 0) { c += 0x100000000; }
    return REFUSED.indexOf(c) >= 0;
  }

  // idColumn resolves with the primary id column of the table entity, which
  // the access check selects: <entity>id for most tables, but activityid
  // for every activity table (phonecall, email, task, a custom activity),
  // and Dataverse answers a $select of a column the table lacks with a 400
  // (0x80060888), no refusal. Xrm.Utility.getEntityMetadata is asked once
  // per table for the page's life; without it, or should it fail (asked
  // again next time), <entity>id.
  Controller.prototype.idColumn = function (x, entity) {
    var self = this, guess = entity + 'id', util = x && x.Utility;
    if (!util || typeof util.getEntityMetadata !== 'function') { return Promise.resolve(guess); }
    if (!self.idColumns[entity]) {
      var p = new Promise(function (resolve) {
        // A metadata call that never settles is not kept: the next check
        // asks again rather than waiting out accessWaitMs every time.
        var forget = function () { if (self.idColumns[entity] === p) { delete self.idColumns[entity]; } resolve(guess); };
        var timer = setTimeout(forget, self.opts.accessWaitMs || 1500);
        new Promise(function (r) { r(util.getEntityMetadata(entity, [])); }).then(function (m) {
          clearTimeout(timer);
          var c = m && m.PrimaryIdAttribute;
          resolve(typeof c === 'string' && c ? c : guess);
        }, function () { clearTimeout(timer); forget(); });
      });
      self.idColumns[entity] = p;
    }
    return self.idColumns[entity];
  };

  // readable resolves with those of recs ({entity, id}) the signed-in agent
  // may read: each is read once with Xrm.WebApi.retrieveRecord, which runs
  // as the agent, selecting its table's key (idColumn). Only a refusal
  // (REFUSED) drops one: without Xrm.WebApi, on any other error, or after
  // accessWaitMs (default 1500, the metadata included) the record is kept,
  // and Dynamics itself tells the agent when it opens.
  Controller.prototype.readable = function (recs) {
    var self = this;
    if (!recs.length || self.opts.checkAccess === false) { return Promise.resolve(recs); }
    return self.whenXrm().then(function (x) {
      var api = x && x.WebApi;
      if (!api || typeof api.retrieveRecord !== 'function') { return recs; }
      var wait = self.opts.accessWaitMs || 1500;
      return Promise.all(recs.map(function (r) {
        return new Promise(function (resolve) {
          var timer = setTimeout(function () { resolve(true); }, wait);
          var done = function (ok) { clearTimeout(timer); resolve(ok); };
          // A throw of retrieveRecord rejects here too: kept, as any error.
          self.idColumn(x, r.entity).then(function (col) {
            return api.retrieveRecord(r.entity, r.id, '?$select=' + col);
          }).then(function () { done(true); }, function (e) { done(!refused(e)); });
        });
      })).then(function (ok) { return recs.filter(function (r, i) { return ok[i]; }); });
    });
  };

  // announce has a screen reader read text without moving focus: a polite
  // live region of the app's document, made once and left empty until
  // needed (a region made together with its text is often not read).
  function announce(doc, text) {
    var r = doc.querySelector('.screenpop-live');
    if (!r) {
      r = doc.createElement('div');
      r.className = 'screenpop-live';
      r.setAttribute('role', 'status');
      r.setAttribute('aria-live', 'polite');
      r.style.cssText = 'position:fixed;left:-10000px;top:0;width:1px;height:1px;overflow:hidden';
      doc.body.appendChild(r);
    }
    r.textContent = '';
    setTimeout(function () { r.textContent = text; }, 100);
  }

  // offerUnreadable is the pop of a caller none of whose records the agent
  // may read: the search notification, as if nothing had matched in time.
  Controller.prototype.offerUnreadable = function (pop) {
    var c = pop.customer || {}, t = pop.target || {};
    return this.offerSearch({ entity: t.entity || (pop.candidates && pop.candidates[0] && pop.candidates[0].entity), query: c.phone || c.email || t.query || '' },
      'Screen pop: no record you have access to matches the caller. Search for ', pop.id);
  };

  // offerSearch shows the caller's number or email as text. The agent can
  // copy it into the Dynamics search box (or start a Channel Integration
  // Framework search where that is loaded); no URL carries it.
  Controller.prototype.offerSearch = function (t, lead, popId) {
    var q = String(t.query || '');
    var cif = root.Microsoft && root.Microsoft.CIFramework;
    var action = null;
    if (cif && cif.renderSearchPage) {
      action = { label: 'Search', run: function () { cif.renderSearchPage(t.entity || 'contact', q, 0); } };
    } else if (root.navigator && root.navigator.clipboard) {
      action = { label: 'Copy', run: function () { root.navigator.clipboard.writeText(q); } };
    }
    return this.notifyPop(popId, 4, (lead || 'Screen pop: no record could be looked up in time. Search for ') + q, action);
  };

  // dropChoosers removes every candidate list in the app, this page's or
  // one an earlier page drew, but the one of the pop keep (if given).
  // Focus in a removed list goes back where it was before that list.
  Controller.prototype.dropChoosers = function (keep) {
    var doc = this.uiDocument(), self = this;
    clearChoice(keep);
    if (!doc || !doc.querySelectorAll) { return; }
    Array.prototype.forEach.call(doc.querySelectorAll('.screenpop-chooser'), function (old) {
      if (keep && old.screenpopPop === keep) { return; }
      if (old === self.chooser) { self.chooser = null; }
      var had = old.contains(doc.activeElement), back = old.screenpopBack;
      old.remove();
      if (had && back && back !== doc.body && back.isConnected) {
        try { back.focus(); } catch (e) { /* gone with its page */ }
      }
    });
  };

  // whose names the customer a list is for: an agent may have a call and
  // chats, messages or emails at once, and the list of one must not be
  // taken for another's (a chat's list over the call's record). A call's
  // keeps "the caller"; the number or address follows where known.
  var WHOSE = { chat: 'the chat customer', message: 'the message sender', email: 'the email sender' };
  function whose(pop) {
    var w = (pop && WHOSE[pop.media]) || 'the caller', c = (pop && pop.customer) || {};
    var id = WHOSE[pop && pop.media] ? (c.email || c.phone) : (c.phone || c.email);
    return { who: w, id: id ? String(id) : '' };
  }

  // choose shows a small list of the candidates; a click opens one. It
  // follows the WAI-ARIA dialog pattern, without a focus trap (the app stays
  // usable): the dialog itself takes focus, so that a screen reader announces
  // it and keys the agent was still typing pick nothing; Tab reaches the
  // candidates; Escape or Dismiss closes it and puts focus back where it was.
  // Focus inside a frame (the Genesys panel's chat reply, an HTML web
  // resource) stays there: taken, it could not be given back to the field
  // (a frame of another origin is out of the page's reach), and the rest of
  // what the agent typed would be lost.
  Controller.prototype.choose = function (cands, popId, quiet, pop) {
    var self = this, doc = self.uiDocument();
    if (!doc || !doc.body) { return; }
    // It replaces any list in the app, this page's or one an earlier page
    // drew (its library stays loaded); focus in that one goes back, at the
    // end, to where it was before that one opened.
    var back = doc.activeElement;
    Array.prototype.forEach.call(doc.querySelectorAll('.screenpop-chooser'), function (old) {
      if (old.contains(back)) { back = old.screenpopBack; }
      old.remove();
    });
    self.chooser = null;
    var box = doc.createElement('div');
    box.className = 'screenpop-chooser';
    box.setAttribute('role', 'dialog');
    var wh = whose(pop);
    box.setAttribute('aria-label', 'Choose ' + wh.who + '\'s record');
    box.tabIndex = -1;
    box.screenpopBack = back;
    box.screenpopPop = popId || '';
    box.screenpopOwner = self;
    box.style.cssText = 'position:fixed;top:48px;right:8px;z-index:2147483647;box-sizing:border-box;width:320px;max-width:calc(100% - 16px);max-height:calc(100vh - 80px);overflow-y:auto;overflow-wrap:anywhere;padding:8px;background:#fff;border:1px solid #888;border-radius:4px;font:14px sans-serif;box-shadow:0 2px 8px rgba(0,0,0,.2)';
    function close(restore, pageGone) {
      var had = box.contains(doc.activeElement);
      if (!pageGone) { clearChoice(); } // picked or dismissed: no page shows it again
      box.remove();
      if (self.chooser === box) { self.chooser = null; }
      if (restore && had && back && back !== doc.body && back.isConnected) {
        try { back.focus(); } catch (e) { /* gone with its page */ }
      }
    }
    box.addEventListener('keydown', function (ev) {
      if (ev.key === 'Escape') { ev.preventDefault(); ev.stopPropagation(); close(true); }
    });
    var h = doc.createElement('div');
    h.textContent = 'Several records match ' + wh.who + (wh.id ? ' (' + wh.id + ')' : '') + ':';
    h.style.marginBottom = '6px';
    box.appendChild(h);
    cands.slice(0, 10).forEach(function (c) {
      var b = doc.createElement('button');
      b.type = 'button';
      b.className = 'screenpop-candidate';
      b.setAttribute('data-entity', c.entity);
      b.setAttribute('data-id', c.id);
      // The name is isolated (bdi): right-to-left text, or an override
      // (U+202E) that nothing in it closes, must not reorder the entity
      // after it, nor make the line read as another record's.
      var nm = doc.createElement('bdi');
      nm.textContent = c.name || '(no name)';
      b.appendChild(nm);
      b.appendChild(doc.createTextNode(' · ' + c.entity));
      b.style.cssText = 'display:block;width:100%;text-align:left;margin:2px 0';
      b.onclick = function () { close(false); self.openRecord(c.entity, c.id); };
      box.appendChild(b);
    });
    var dismiss = doc.createElement('button');
    dismiss.type = 'button';
    dismiss.textContent = 'Dismiss';
    dismiss.onclick = function () { close(true); };
    box.appendChild(dismiss);
    (self.opts.container || doc.body).appendChild(box);
    self.chooser = box;
    if (!quiet && (!back || !/^i?frame$/i.test(back.tagName || ''))) {
      box.focus();
    } else {
      announce(doc, 'Several records match ' + wh.who + ': the list is open at the top right of the app.');
    }
    box.screenpopClose = close;
    if (doc !== root.document && root.addEventListener && !self.hideWatch) {
      // In the app's document a list outlives this page, whose code it
      // calls: the page's list goes with the page (its buttons would do
      // nothing once the page is gone: the next page shows the list again,
      // resumeChoice). One listener for the page, not one per list: each
      // held its list, detached or not, for as long as the page lived (a
      // side pane: the whole shift).
      self.hideWatch = true;
      root.addEventListener('pagehide', function () {
        var b = self.chooser;
        if (b && b.screenpopClose) { b.screenpopClose(true, true); }
      });
    }
  };

  // handlePop acts on a pop in one tab only. It settles (and the pop is
  // acked) once this tab has claimed the pop and started acting on it, or
  // left it to another tab; rec.error may be set later, when opening fails.
  Controller.prototype.handlePop = function (pop) {
    var self = this;
    var rec = { id: pop.id, seq: pop.seq, action: pop.target && pop.target.action, opened: false, done: false };
    keep(self.handled, rec);
    return claim(pop.id, self.opts.lockMs || 10000, self.opts.hiddenWaitMs || HIDDEN_WAIT).then(function (mine) {
      if (!mine) {
        // Another tab acts on this newer pop: a list this tab drew for an
        // earlier caller must not wait here for the agent's next look. The
        // pop's own list stays: an earlier page of this tab claimed it and
        // drew it, and its ack was lost when this page took the socket over
        // (the pop replayed here is marked already).
        self.dropChoosers(pop.id);
        self.clearPopNotes(pop.id);
        rec.done = true;
        return;
      }
      rec.opened = true;
      return self.act(pop, rec).then(function () { rec.done = true; }, function () { rec.done = true; rec.error = true; });
    });
  };

  // userOf is the Dynamics user signed in where x was found, '' if unknown.
  function userOf(x) {
    try { return String(x.Utility.getGlobalContext().userSettings.userId || '').toLowerCase(); } catch (e) { return ''; }
  }

  // token is the page's token option, or the agent's sign-in kept in
  // sessionStorage with the Dynamics user it was made for. The tab's
  // sessionStorage outlives a Dynamics sign-out: on a shared workstation
  // the next user's page must not connect with the last one's token (it
  // would get that agent's pops and never ask its own to sign in).
  Controller.prototype.token = function () {
    if (this.opts.token) { return typeof this.opts.token === 'function' ? this.opts.token() : this.opts.token; }
    var raw;
    try { raw = root.sessionStorage.getItem(TOKEN); } catch (e) { return ''; }
    if (!raw) { return ''; }
    return this.whenXrm().then(function (x) {
      var v = null;
      try { v = JSON.parse(raw); } catch (e) { /* an earlier version's bare token: sign in again */ }
      if (v && typeof v.token === 'string' && v.user === userOf(x)) { return v.token; }
      try { root.sessionStorage.removeItem(TOKEN); } catch (e) { /* ignore */ }
      return '';
    });
  };

  // login runs the Genesys PKCE login (from a click) and reconnects.
  Controller.prototype.login = function () {
    var self = this, o = self.opts;
    return ns.login({ loginURL: o.loginURL, authorizeURL: o.authorizeURL, tokenURL: o.tokenURL, clientId: o.clientId, redirectURI: o.redirectURI, scope: o.scope }).then(function (t) {
      try { root.sessionStorage.setItem(TOKEN, JSON.stringify({ user: userOf(self.xrm()), token: t.accessToken })); } catch (e) { /* memory only */ }
      self.memToken = t.accessToken;
      self.clearAuthNote();
      if (self.client && self.client.state !== 'closed') { self.client.reconnect(); } else { self.take(true); }
    }, function () {
      if (self.loginNote) { self.dropNote(self.loginNote); self.loginNote = null; }
      self.keepAuthNote('loginNote', self.notify(2, 'Screen pop: Genesys Cloud sign-in did not complete.'));
    });
  };

  Controller.prototype.start = function () {
    this.take(true);
    return this;
  };

  // resumeChoice shows again, on the page that takes the tab's connection,
  // the list of the tab's latest choose pop when the page that claimed it
  // went before the agent picked (see setChoice). It does not take the
  // focus: the agent is on the new page; a screen reader is told.
  Controller.prototype.resumeChoice = function () {
    var c = turns().choice, doc = this.uiDocument();
    if (!c || c.turn !== currentTurn() || !doc || !doc.querySelectorAll) { return; }
    var self = this, had = false, mine = false;
    Array.prototype.forEach.call(doc.querySelectorAll('.screenpop-chooser'), function (b) {
      if (b.screenpopPop !== c.id) { return; }
      if (b.screenpopOwner === self) { mine = true; }
      if (b.contains(doc.activeElement)) { had = true; }
    });
    if (mine) { return; } // this page drew it, and is still here
    // A list an earlier page drew goes with that page, whenever the app
    // drops it (before or after this one loaded): this page draws it.
    var pop, shown;
    try { pop = JSON.parse(c.pop); shown = c.shown && JSON.parse(c.shown); } catch (e) { return; }
    if (shown) { self.choose(shown, c.id, !had, pop); return; }
    self.offerChoice(pop, null, nextTurn(), true);
  };

  // take connects while this page holds the tab's connection. Unified
  // Interface loads a form's libraries and runs its OnLoad in a new frame
  // for every page (every record opened), and may keep the earlier pages'
  // frames: each would hold a socket of its own. A Web Lock named after the
  // tab makes it one: the newest page takes it (steal) and an earlier page
  // still alive gets it back when that one is gone.
  Controller.prototype.take = function (steal) {
    var self = this, locks = root.navigator && root.navigator.locks;
    if (!self.watching && root.addEventListener) {
      self.watching = true;
      root.addEventListener('pagehide', function () { self.clearAuthNote(); });
    }
    if (!locks || !locks.request) { self.connect(); self.resumeChoice(); return; }
    locks.request('screenpop-tab:' + tabKey(), steal ? { steal: true } : {}, function () {
      self.connect();
      self.resumeChoice();
      return new Promise(function () { /* held while this page lives */ });
    }).then(null, function () {
      // Stolen by a newer page of this tab: hand it the socket, and wait.
      if (self.client) { self.client.close(); }
      self.clearAuthNote();
      self.take(false);
    });
  };

  // agentReady notes the agent the tab's connection is for (kept on the app
  // window, as the turn: the same for every page of the tab). Another agent
  // than the last one (hot desking: B signed in on the page A left) takes
  // down what A's pops left on the screen, A's caller's list and its
  // search or failure notification, and ends A's turn, so that nothing of
  // A's settling late (a list being checked, a record waiting for Xrm) is
  // drawn over B's screen.
  Controller.prototype.agentReady = function (agent) {
    var t = turns(), last = t.agent;
    t.agent = agent || '';
    if (!last || !agent || last === agent) { return; }
    nextTurn();
    this.dropChoosers();
    this.clearPopNotes();
  };

  Controller.prototype.connect = function () {
    var self = this, o = self.opts;
    self.client = ns.connect({
      url: o.url,
      storage: o.storage,
      token: function () { return self.memToken || self.token(); },
      onPop: function (pop) { return self.handlePop(pop); },
      onState: function (state, detail) {
        if (state === 'ready') { self.agentReady(detail && detail.agentId); }
        if (o.onState) { o.onState(state, detail); }
      },
      onError: function (err) {
        if (err.code !== 4008) { self.lastError = err; }
      },
      onAuthRequired: function () {
        self.memToken = '';
        try { root.sessionStorage.removeItem(TOKEN); } catch (e) { /* ignore */ }
        if (o.clientId) {
          self.clearAuthNote();
          self.keepAuthNote('authNote', self.notify(3, 'Screen pop: sign in to Genesys Cloud to receive screen pops.', { label: 'Sign in', run: function () { self.login(); } }));
        } else {
          // Kept as the "Sign in" one is: a newer page of the tab that
          // takes the connection over (with a renewed token) takes it down.
          self.clearAuthNote();
          self.keepAuthNote('authNote', self.notify(2, 'Screen pop: the screen-pop token was refused. Reload the page to sign in again.'));
        }
      }
    });
  };

  ns.Dynamics = {
    // start connects with options {url, token | loginURL+clientId, redirectURI, storage, container, xrm}.
    start: function (opts) { var c = new Controller(opts); ns.Dynamics.current = c; return c.start(); },
    // onLoad is the form OnLoad handler: the options come as a JSON string.
    onLoad: function (executionContext, json) {
      if (ns.Dynamics.current) { return ns.Dynamics.current; }
      var opts = {};
      try { opts = typeof json === 'string' ? JSON.parse(json) : (json || {}); } catch (e) { opts = {}; }
      return ns.Dynamics.start(opts);
    },
    Controller: Controller,
    current: null
  };
})(typeof self !== 'undefined' ? self : this);
