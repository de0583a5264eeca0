// smproxy first-party tracker. Beacons: see src/collect/mod.rs.
(() => {
  'use strict';
  const w = window, d = document, loc = location, nav = navigator;
  if (w.__smTracker) return; // the snippet may be on a page twice
  w.__smTracker = 1;

  const COLLECT = "__SM_COLLECT__";
  const CT = 'text/plain;charset=UTF-8'; // no CORS preflight
  const RENEW = 90e3; // tokens are used for 100 s and live 120 s

  // Never break the page.
  const safe = f => function () { try { return f.apply(this, arguments); } catch (e) {} };

  // Control characters or half a surrogate pair would get the beacon refused.
  const str = (s, n) => String(s).replace(/[\0-\x1f\x7f-\x9f]/g, ' ').slice(0, n).replace(/[\ud800-\udbff]$/, '');
  const href = () => str(loc.href, 2048);
  const noHash = u => u.split('#')[0];
  const visible = () => d.visibilityState === 'visible';
  const other = a => /^https?:$/.test(a.protocol) && a.host !== loc.host; // hosts are lower-case

  // fetch when the answer matters (Set-Cookie, tokens), else sendBeacon. Resolves to the
  // answer ({} if empty) or null.
  const post = (obj, wantAnswer) => {
    const body = JSON.stringify(obj);
    return !wantAnswer && nav.sendBeacon && nav.sendBeacon(COLLECT, new Blob([body], { type: CT }))
      ? Promise.resolve({})
      : fetch(COLLECT, {
        method: 'POST', body, keepalive: true, credentials: 'same-origin', headers: { 'Content-Type': CT }
      }).then(r => r.status === 200 ? r.json() : r.ok ? {} : null).catch(() => null);
  };

  // Links to other sites, maybe sibling sites; hosts of other alphabets would be refused.
  const hosts = () => {
    const out = [];
    for (const a of d.links) {
      if (out.length < 20 && other(a) && /^[a-z0-9.:[\]-]+$/.test(a.host) && !out.includes(a.host)) out.push(a.host);
    }
    return out;
  };

  // Sibling-site tokens by host from the last answer (at: when). A failed refresh leaves them
  // to go stale.
  let links = new Map(), at, timer;
  const setLinks = a => {
    if (a) {
      links = new Map(Object.entries(a.links || {}).filter(e => typeof e[1] === 'string'));
      at = Date.now();
    }
    schedule(RENEW);
  };
  // Only while somebody can click the links.
  const schedule = ms => {
    clearTimeout(timer);
    if (links.size && visible()) {
      timer = setTimeout(() => post({ type: 'link', url: href(), hosts: hosts() }, true).then(setLinks), ms);
    }
  };

  // Only `_smx`: URLSearchParams would re-encode the whole query.
  const strip = u => {
    u.search = u.search.slice(1).split('&').filter(p => p && p.split('=')[0] !== '_smx').join('&');
    return u;
  };

  // Page views; engaged time is the visible time.
  let pvHref = loc.href, pvRef = d.referrer, resent, acc = 0, since = visible() ? performance.now() : null;
  const sendView = () => {
    const o = {
      type: 'pageview', url: str(pvHref, 2048), referrer: str(pvRef, 2048), title: str(d.title, 512),
      screen: screen.width + 'x' + screen.height, hosts: hosts()
    };
    if (/^[A-Za-z0-9-]{1,35}$/.test(nav.language)) o.lang = nav.language;
    post(o, true).then(setLinks);
  };
  const view = ref => {
    flush(true);
    pvRef = ref, pvHref = loc.href, resent = false;
    sendView();
  };
  const tick = () => {
    const t = performance.now();
    if (since !== null) acc += t - since;
    since = visible() ? t : null;
  };
  const flush = done => { // done: drop a remainder under 1 s
    tick();
    if (acc >= 1000) post({ type: 'engagement', url: str(pvHref, 2048), engaged_ms: Math.min(Math.round(acc), 864e5) });
    if (acc >= 1000 || done) acc = 0;
  };

  // SPA: a new path or query is a new page view, a new hash is not.
  const route = safe(() => {
    if (noHash(loc.href) !== noHash(pvHref)) view(pvHref);
  });
  for (const m of ['pushState', 'replaceState']) {
    const orig = history[m];
    history[m] = function () {
      const r = orig.apply(this, arguments);
      route();
      return r;
    };
  }
  w.addEventListener('popstate', route);

  d.addEventListener('visibilitychange', safe(() => {
    if (!visible()) return flush(), schedule(); // stops the refresh
    tick();
    if (links.size) schedule(RENEW + at - Date.now()); // at once if stale
  }));
  w.addEventListener('pagehide', safe(() => flush()));

  // Outbound links (not SVG ones) get the token before the browser follows, opens or copies them.
  const linkOf = e => {
    for (const n of e.composedPath()) {
      if (n instanceof HTMLAnchorElement && n.hasAttribute('href')) return other(n) && n;
    }
  };
  const decorate = a => {
    const t = Date.now() - at < 100e3 && links.get(a.host);
    if (!t) return;
    const u = strip(new URL(a.href));
    u.search += (u.search ? '&' : '') + '_smx=' + encodeURIComponent(t);
    if (u.href !== a.href) a.href = u.href;
  };
  const outbound = e => {
    const a = linkOf(e);
    if (a) {
      decorate(a);
      post({ type: 'outbound', url: href(), target: str(strip(new URL(a.href)).href, 2048) });
    }
  };
  const on = (t, f) => d.addEventListener(t, safe(f), { capture: true, passive: true });
  on('click', outbound);
  on('auxclick', e => e.button === 1 && outbound(e));
  for (const t of ['mousedown', 'touchstart']) on(t, e => { const a = linkOf(e); if (a) decorate(a); });

  // Field names only; the one value read is the e-mail.
  const ignored = el => el.closest('[data-sm-ignore]');
  on('submit', e => {
    const f = e.target, fields = [];
    let email;
    if (!(f instanceof HTMLFormElement) || ignored(f)) return;
    for (const el of f.elements) {
      const ac = el.getAttribute('autocomplete') || '';
      if (/password/i.test(el.type + ac) || ignored(el)) continue;
      if (!email && el instanceof HTMLInputElement && !el.disabled &&
          (el.type === 'email' || /^(text|search)$/.test(el.type) && /e-?mail/i.test([el.name, el.id, ac]))) email = el;
      const n = str(el.name || el.id, 64);
      if (n && fields.length < 50 && !fields.includes(n)) fields.push(n);
    }
    const o = { type: 'form', url: href(), fields }, v = email ? email.value.trim() : '';
    if (v === str(v, 254) && v.indexOf('@') > 0) o.email = v;
    post(o, true);
  });

  // Commands; others (the vendor's) are ignored.
  const props = p => {
    if (!p || Object.getPrototypeOf(p) !== Object.prototype) return; // plain objects only
    const out = {};
    for (const [k, v] of Object.entries(p).slice(0, 20)) {
      const t = typeof v;
      if (k && k === str(k, 64) && (v === null || /^(number|boolean|string)$/.test(t))) {
        out[k] = t === 'string' ? str(v, 256) : v;
        if (new Blob([JSON.stringify(out)]).size > 2048) delete out[k]; // the server's cap
      }
    }
    return out;
  };
  const run = safe((cmd, a, p) => {
    if (cmd === 'event' && typeof a === 'string' && (a = str(a, 100))) {
      post({ type: 'event', url: href(), name: a, props: props(p) });
    } else if (cmd === 'consent' && typeof a === 'boolean') {
      // The server says when the page view before consent was dropped and needs sending again.
      post({ type: 'consent', url: href(), consent: a }, true).then(r => {
        if (r && r.resend && !resent) resent = true, sendView();
      });
    } else if (cmd === 'pageview') {
      view(loc.href !== pvHref ? pvHref : pvRef);
    }
  });

  const name = w.SalesmanagoObject || 'sm', old = w[name];
  const queue = Array.from((typeof old === 'function' && old.q) || []);
  w[name] = function () { run(...arguments); };
  sendView();
  for (const q of queue) run(...q);
})();
