// The stagehook dashboard: plain DOM code over the public JSON API. No inline script or style
// anywhere (the page's CSP forbids them), and every string from the API goes in as text.
'use strict';

const API = '/staging/webhooks';
const params = new URLSearchParams(location.search);
const POLL_MS = Math.max(100, Number(params.get('poll')) || 2000);
const COLORS = ['#2563eb', '#db2777', '#059669', '#d97706', '#7c3aed', '#0891b2'];

const $ = (sel) => document.querySelector(sel);
const state = {
  locked: false,
  providers: [],
  shownIds: new Set(),
  cursor: null,
  detailId: null,
  // The event the detail shows, as the API gave it.
  detail: null,
  // Whether the body in the editor must be JSON.
  editJson: false,
  breakers: {},
  lastPayload: '',
  // What a click on a backfill button last said per endpoint, until a newer run replaces it.
  backfillNotes: {},
  // The providers whose secret is set (`[name, path]`), for the empty events table's next
  // step; null until the health check answers, as `eventsLoaded` is false until the list does.
  configured: null,
  eventsLoaded: false,
};

// ---- API --------------------------------------------------------------------------------

class Unauthorized extends Error {}

/** Fetches JSON from the API; a 401 shows the token prompt. */
async function api(path, options = {}) {
  const res = await fetch(path, { credentials: 'same-origin', ...options });
  if (res.status === 401) {
    showLogin(true);
    throw new Unauthorized();
  }
  const text = await res.text();
  const body = text ? JSON.parse(text) : null;
  if (!res.ok) {
    const msg = body && body.error ? body.error.message : `HTTP ${res.status}`;
    throw new Error(msg);
  }
  return body;
}

function post(path, body) {
  return api(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body || {}),
  });
}

// ---- small DOM helpers ------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? '')));
  return e;
}

function setText(sel, text) {
  const e = typeof sel === 'string' ? $(sel) : sel;
  if (e) {
    e.textContent = String(text);
    // The first paint says "loading" (in `index.html`) where a value will go; a value replaces it.
    e.classList.remove('loading');
  }
}

/** A time in the browser's zone, with the zone's name, so nobody has to guess which it is. */
function time(ms) {
  return ms ? new Date(ms).toLocaleString(undefined, { timeZoneName: 'short' }) : '—';
}

/** Hours and minutes with the zone, for the chart's axis. */
function clock(ms) {
  return new Date(ms).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', timeZoneName: 'short' });
}

function duration(seconds) {
  const s = Math.floor(seconds);
  const parts = [[86400, 'd'], [3600, 'h'], [60, 'm']];
  let out = '';
  let rest = s;
  for (const [n, unit] of parts) {
    if (rest >= n) {
      out += `${Math.floor(rest / n)}${unit} `;
      rest %= n;
    }
  }
  return `${out}${rest}s`;
}

/** A backfilled event's mark: it came from the provider's API, not as a signed webhook. */
function sourceBadge(e) {
  return e.source === 'backfill'
    ? el('span', { class: 'badge backfill', title: "read back from the provider's API, not a verified webhook" }, 'backfill')
    : '';
}

function statusBadge(status) {
  return el('span', { class: `status status-${status}` }, status);
}

// ---- login ------------------------------------------------------------------------------

function showLogin(show) {
  state.locked = show;
  $('#login').classList.toggle('hidden', !show);
  $('#app').classList.toggle('hidden', show);
  if (show) showSignedIn(false);
}

/** The "Log out" control, shown while this browser holds a session. */
function showSignedIn(on) {
  $('#logout').classList.toggle('hidden', !on);
}

/** Asks whether the (HttpOnly, so unreadable) session cookie names a live session. */
async function checkSession() {
  const res = await fetch('/dashboard/session', { credentials: 'same-origin' });
  if (res.ok) showSignedIn((await res.json()).signed_in);
}

async function login(event) {
  event.preventDefault();
  setText('#login-error', '');
  // JSON with its content type, as every state-changing request of the page sends.
  const res = await fetch('/dashboard/session', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: $('#login-token').value }),
  });
  if (res.status === 204) {
    $('#login-token').value = '';
    showLogin(false);
    showSignedIn(true);
    refreshAll();
    return;
  }
  // Too many failures from this address: say so, with the wait, rather than "wrong token".
  const body = await res.json().catch(() => null);
  setText('#login-error', res.status === 429 && body && body.error ? body.error.message : 'wrong token');
}

async function logout() {
  const res = await fetch('/dashboard/logout', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json' },
    body: '{}',
  });
  if (res.status !== 204) {
    console.warn('stagehook dashboard: logout answered', res.status);
    return;
  }
  // A fresh page keeps nothing the session showed; its first API call brings the prompt back.
  location.reload();
}

// ---- overview ---------------------------------------------------------------------------

/**
 * What needs a person's look beyond the store's own health: open breakers, events waiting for
 * another attempt, dead letters. The store's health comes first: when it is degraded, that is
 * what the pill says.
 */
function attention(stats, rec) {
  const reasons = [];
  const open = Object.entries(rec.providers)
    .filter(([, p]) => p.breaker.state !== 'closed')
    .map(([n, p]) => (p.breaker.state === 'open' ? n : `${n} (${p.breaker.state.replace('_', '-')})`));
  if (open.length) reasons.push(`${open.length > 1 ? 'breakers' : 'breaker'} open: ${open.join(', ')}`);
  if (stats.by_status.retrying) reasons.push(`${stats.by_status.retrying} retrying`);
  if (stats.by_status.failed) reasons.push(`${stats.by_status.failed} dead letter${stats.by_status.failed > 1 ? 's' : ''}`);
  return reasons;
}

/**
 * The header's instance id, and whether Redis answers when this stagehook shares its limits and
 * duplicates through it (`stats.redis` is then an object; null, or absent, without Redis: no
 * pill). Redis not answered yet (`connecting`) or down is a warning while ingest goes on alone
 * (`on_error = "open"`); down is as bad as a degraded store when ingest refuses without it
 * (`"closed"`).
 */
function renderInstance(stats) {
  setText('#instance', stats.instance ?? 'unnamed');
  const redis = stats.redis;
  const pill = $('#redis');
  pill.classList.toggle('hidden', !redis);
  if (!redis) return;
  // `connecting`: Redis has not answered this process yet; requests still try it, so it is a
  // warning whatever `on_error` says, until the first answer or the first outage decides.
  const connecting = redis.state === 'connecting';
  const down = redis.state !== 'up' && !connecting;
  const closed = redis.on_error === 'closed';
  setText('#redis-state', redis.state);
  pill.classList.toggle('warn', connecting || (down && !closed));
  pill.classList.toggle('bad', down && closed);
  pill.title = connecting
    ? 'Redis has not answered this instance yet'
    : !down
    ? 'Redis answers: limits and duplicates are shared with the other instances'
    : closed
      ? 'Redis is unreachable: ingest answers 503 redis_unavailable until it is back'
      : 'Redis is unreachable: this instance limits and deduplicates alone until it is back';
}

async function refreshOverview() {
  const [health, stats, rec] = await Promise.all([api(`${API}/test`), api(`${API}/stats`), api(`${API}/recovery/stats`)]);
  const reasons = attention(stats, rec);
  let word = health.reason ? `${health.status}: ${health.reason}` : health.status;
  // With no provider configured, the pill says so in three words; its title has the whole reason.
  if (health.reason_code === 'no_provider_configured') word = `${health.status}: no provider configured`;
  if (health.status === 'ok' && reasons.length) word = `attention: ${reasons.join(' · ')}`;
  setText('#health-status', word);
  $('#health').title = health.reason || "the store's health, and what needs a look";
  $('#health').classList.remove('pending');
  $('#health').classList.toggle('bad', health.status !== 'ok');
  $('#health').classList.toggle('warn', health.status === 'ok' && reasons.length > 0);
  setText('#uptime', duration(health.uptime_seconds));
  setText('#version', health.version);
  for (const id of ['#uptime-label', '#version-label']) $(id).classList.remove('hidden');
  renderInstance(stats);
  state.configured = Object.entries(health.providers).filter(([, p]) => p.configured).map(([n, p]) => [n, p.path]);
  showEventsEmpty($('#events-table tbody'), filterQuery());
  const providers = Object.keys(health.providers);
  if (providers.join() !== state.providers.join()) {
    state.providers = providers;
    const select = $('#filter-provider');
    select.replaceChildren(el('option', { value: '' }, 'all'), ...providers.map((p) => el('option', { value: p }, p)));
  }

  const by = stats.by_status;
  // An event stored without a target is `processed` (recording it was all there was to do) but
  // was never delivered: it has its own card, and the success rate leaves it out. Every card
  // but the total is one part of it: delivered, stored, in delivery, retrying and failed.
  const stored = stats.stored_only || 0;
  const delivered = by.processed - stored;
  card('received', stats.total_events);
  card('processed', delivered);
  card('stored', stored);
  card('pending', by.received + by.processing);
  card('retrying', by.retrying);
  card('failed', by.failed);
  card('duplicates', stats.duplicates);
  card('rejected', stats.rejected_total);
  const codes = Object.entries(stats.rejections).map(([code, n]) => el('li', {}, `${code}: ${n}`));
  $('[data-card="rejected"] .detail').replaceChildren(...codes);
  const done = delivered + by.failed;
  card('success-rate', done ? `${((100 * delivered) / done).toFixed(1)} %` : '—');
  // The rate counts only settled events that had a target: say what it leaves out, so 100 %
  // never hides a retry, nor an event nobody delivered.
  const open = by.received + by.processing + by.retrying;
  const notes = [done ? `${delivered} of ${done} delivered` : 'no event with a target has settled yet'];
  if (stored) notes.push(`${stored} stored (no target), not counted`);
  if (open) notes.push(`${open} not settled yet`);
  setText('[data-card="success-rate"] .note', notes.join('; '));
  for (const q of ['p50', 'p95', 'p99']) card(q, stats.processing_ms.samples ? `${stats.processing_ms[q]} ms` : '—');
  $('#confirm-count').dataset.failed = String(by.failed);

  // A row for every endpoint, and one for everything else that stored events: a notifier's
  // alert notifications (its `notify.<name>` lane), or a provider no longer configured. So the
  // columns add up to the cards above.
  const others = Object.keys(stats.by_provider).filter((p) => !providers.includes(p));
  const rows = [...providers, ...others].map((p) => {
    const s = stats.by_provider[p] || {};
    const st = s.by_status || {};
    const endpoint = health.providers[p];
    const notifier = !endpoint && p.startsWith('notify.');
    const num = (cls, n) => el('td', { class: cls }, n || 0);
    return el('tr', { 'data-provider': p },
      el('td', {}, p),
      el('td', { class: endpoint ? 'mono' : 'muted' }, endpoint ? endpoint.path : notifier ? 'alert notifications' : '—'),
      el('td', {}, endpoint ? (endpoint.configured ? 'yes' : 'no') : notifier ? 'notifier' : 'no longer'),
      num('events', s.events), num('items', s.items_received),
      num('processed', (st.processed || 0) - (s.stored_only || 0)), num('stored', s.stored_only),
      num('pending', (st.received || 0) + (st.processing || 0)), num('retrying', st.retrying),
      num('failed', st.failed), num('duplicates', s.duplicates));
  });
  $('#provider-table tbody').replaceChildren(...rows);
  drawChart(stats.throughput);
}

function card(name, value) {
  setText(`[data-card="${name}"] .value`, value);
}

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/** A line per provider over the last 60 minutes. */
function drawChart(throughput) {
  const chart = $('#throughput-chart');
  const series = Object.entries(throughput.providers);
  const max = Math.max(1, ...series.flatMap(([, v]) => v));
  const W = 720, H = 160, n = throughput.minutes.length;
  const nodes = [svg('line', { x1: 0, y1: H - 1, x2: W, y2: H - 1, class: 'axis' })];
  series.forEach(([name, counts], i) => {
    const pts = counts.map((c, j) => `${((j / Math.max(1, n - 1)) * W).toFixed(1)},${(H - 4 - (c / max) * (H - 12)).toFixed(1)}`);
    const line = svg('polyline', { points: pts.join(' '), fill: 'none', stroke: COLORS[i % COLORS.length], 'stroke-width': 2 });
    line.append(svg('title', {}));
    line.firstChild.textContent = `${name}: ${counts.reduce((a, b) => a + b, 0)} in the last hour`;
    nodes.push(line);
  });
  chart.replaceChildren(...nodes);
  // The peak and the axes are told in HTML: text inside a stretched SVG would be stretched too.
  // With nothing in the hour, there is no peak to tell: the chart says so.
  const none = series.every(([, v]) => v.every((c) => c === 0));
  setText('#chart-max', none ? '(no events in the last hour)' : `(peak ${max}/min)`);
  setText('#chart-ymax', none ? '' : max);
  const now = Date.now();
  setText('#chart-x-start', `${clock(now - 60 * 60000)} (60 min ago)`);
  setText('#chart-x-end', `now (${clock(now)})`);
  $('#throughput-legend').replaceChildren(...series.map(([name], i) => {
    const swatch = el('span', { class: `swatch swatch-${i % COLORS.length}` });
    return el('span', { class: 'legend-item' }, swatch, name);
  }));
}

// ---- breakers ---------------------------------------------------------------------------

async function refreshRecovery() {
  const rec = await api(`${API}/recovery/stats`);
  state.breakers = rec.providers;
  const tiles = Object.entries(rec.providers).map(([name, p]) => {
    const word = p.breaker.state.replace('_', '-');
    return el('div', { class: `card breaker state-${word}`, 'data-provider': name },
      el('span', { class: 'label' }, name),
      el('span', { class: 'state' }, word),
      el('span', { class: 'muted' }, 'consecutive failures: ', el('span', { class: 'failures' }, p.breaker.consecutive_failures)),
      el('span', { class: 'muted' }, 'opened: ', el('span', { class: 'opened-at' }, p.breaker.opened_at_ms ? time(p.breaker.opened_at_ms) : '—')),
      el('span', { class: 'muted' }, 'next probe in ', el('span', { class: 'countdown', 'data-at': p.breaker.next_probe_ms || '' })),
      el('span', { class: 'muted' }, `dead letters: ${p.dead_letters}`),
      // Where its events go: each route (by event type) and forward_to, URLs masked by the API.
      ...(p.routes || []).map((r) => el('span', { class: 'muted route' },
        `route ${r.types.join(', ')} → ${r.targets.join(', ')}${r.also_default ? ' (and forward_to)' : ''}`)),
      el('span', { class: 'muted forward-to' },
        `forward_to: ${(p.targets || []).length ? p.targets.join(', ') : (p.routes || []).length ? 'none: other types are stored only' : 'none: stored only'}`));
  });
  $('#breakers').replaceChildren(...tiles);
  setText('#queue-depth', rec.queue_depth);
  const oldest = Object.values(rec.providers).map((p) => p.oldest_due_ms).filter(Boolean);
  setText('#oldest-due', oldest.length ? time(Math.min(...oldest)) : '—');
  tickCountdowns();
}

/** Seconds to each open breaker's probe, on the client's clock, every second. */
function tickCountdowns() {
  for (const c of document.querySelectorAll('.countdown')) {
    const at = Number(c.dataset.at);
    c.textContent = at ? `${Math.max(0, Math.ceil((at - Date.now()) / 1000))} s` : '—';
  }
}

// ---- events -----------------------------------------------------------------------------

function filterQuery() {
  const q = new URLSearchParams();
  const add = (k, v) => { if (v) q.set(k, v); };
  add('provider', $('#filter-provider').value);
  add('status', $('#filter-status').value);
  add('type', $('#filter-type').value.trim());
  add('q', $('#filter-search').value.trim());
  return q;
}

function eventRow(e) {
  const row = el('tr', { 'data-id': e.id, 'data-sig': rowSig(e), class: 'clickable' },
    el('td', { class: 'received-at' }, time(e.received_at_ms)),
    el('td', { class: 'provider' }, e.provider),
    el('td', { class: 'event-id mono' }, e.event_id, sourceBadge(e)),
    el('td', { class: 'event-type' }, e.event_type),
    el('td', { class: 'status', title: e.last_error || '' }, statusBadge(e.status)),
    el('td', { class: 'attempts' }, e.attempts),
    el('td', { class: 'last-error', title: e.last_error || '' }, e.last_error || ''),
    el('td', { class: 'next-attempt' }, nextAttempt(e)));
  row.prepend(compareCell(e));
  row.addEventListener('click', () => openDetail(e.id));
  return row;
}

/**
 * When the event's next attempt goes out: its queued job's due time, or, while its provider's
 * breaker is open, the breaker's probe (a replay goes out at once as that probe).
 */
function nextAttempt(e) {
  if (e.next_attempt_at_ms == null) return '—';
  const b = (state.breakers[e.provider] || {}).breaker;
  if (b && b.state === 'open' && b.next_probe_ms > e.next_attempt_at_ms) {
    return `waits for the ${e.provider} breaker's probe, ${time(b.next_probe_ms)}`;
  }
  return e.next_attempt_at_ms <= Date.now() ? 'due now' : time(e.next_attempt_at_ms);
}

/** What a row shows that can change; a row is rebuilt only when this does. */
function rowSig(e) {
  return `${e.status}|${e.attempts}|${e.last_error || ''}|${nextAttempt(e)}`;
}

/** Fetches the first page; new rows go on top, known rows are updated in place. */
async function refreshEvents(reset = false) {
  const q = filterQuery();
  for (const c of document.querySelectorAll('button.card[data-filter]')) {
    c.classList.toggle('active', c.dataset.filter !== '' && c.dataset.filter === $('#filter-status').value);
  }
  q.set('limit', '50');
  const page = await api(`${API}/events?${q}`);
  const body = $('#events-table tbody');
  if (reset) {
    body.replaceChildren();
    state.shownIds.clear();
    state.cursor = page.next_cursor;
  }
  const fresh = [];
  for (const e of page.events) {
    const existing = body.querySelector(`tr[data-id="${CSS.escape(e.id)}"]`);
    // Rebuilding an unchanged row every poll would flicker and swallow a click in progress.
    if (existing) { if (existing.dataset.sig !== rowSig(e)) existing.replaceWith(eventRow(e)); }
    else fresh.push(eventRow(e));
    state.shownIds.add(e.id);
  }
  body.prepend(...fresh);
  state.eventsLoaded = true;
  showEventsEmpty(body, q);
  if (reset) $('#events-more').classList.toggle('hidden', !state.cursor);
}

/**
 * An empty table says why and what to do next: no event matches the filters, or none is stored
 * yet (then: send one, or first configure a provider). Removed as soon as a row shows.
 */
function showEventsEmpty(body, q) {
  if (!state.eventsLoaded || !state.configured) return;
  const empty = !body.querySelector('tr[data-id]');
  const old = body.querySelector('tr.empty');
  if (!empty) {
    if (old) old.remove();
    return;
  }
  const filtered = [...q.keys()].some((k) => k !== 'limit');
  const [name, path] = state.configured[0] || [];
  const line = filtered
    ? ['No event matches these filters.']
    : name
      ? ['No events yet: send one with ', el('code', {}, `stagehook send ${name}`), ', or point the provider at ', el('code', {}, path), '.']
      : ['No events yet, and no provider is configured: set a provider\'s secret (see Configuration below), then send one with ', el('code', {}, 'stagehook send <provider>'), '.'];
  const sig = line.map((p) => (p instanceof Node ? p.textContent : p)).join('');
  if (old && old.dataset.sig === sig) return;
  const row = el('tr', { class: 'empty', 'data-sig': sig }, el('td', { colSpan: 9, class: 'muted' }, ...line));
  if (old) old.replaceWith(row);
  else body.append(row);
}

async function moreEvents() {
  if (!state.cursor) return;
  const q = filterQuery();
  q.set('limit', '50');
  q.set('cursor', state.cursor);
  const page = await api(`${API}/events?${q}`);
  const body = $('#events-table tbody');
  for (const e of page.events) {
    if (!state.shownIds.has(e.id)) {
      state.shownIds.add(e.id);
      body.append(eventRow(e));
    }
  }
  state.cursor = page.next_cursor;
  $('#events-more').classList.toggle('hidden', !state.cursor);
}

// ---- detail -----------------------------------------------------------------------------

async function openDetail(id) {
  state.detailId = id;
  $('#detail').dataset.id = id;
  $('#detail').classList.remove('hidden');
  $('#curl-command').classList.add('hidden');
  closeEditor();
  setText('#detail-message', '');
  await refreshDetail();
  $('#detail').scrollIntoView({ block: 'nearest' });
}

function closeDetail() {
  state.detailId = null;
  $('#detail').classList.add('hidden');
}

async function refreshDetail() {
  const id = state.detailId;
  if (!id) return;
  const e = await api(`${API}/events/${encodeURIComponent(id)}`);
  if (state.detailId !== id) return;
  state.detail = e;
  setText('#detail-id', `${e.event_id} (${e.id})`);
  setText('#detail-parent-link', e.parent_id || '');
  $('#detail-parent').classList.toggle('hidden', !e.parent_id);
  $('#detail-source').classList.toggle('hidden', e.source !== 'backfill');
  renderRelated(e);
  $('#detail-status').replaceChildren(statusBadge(e.status));
  // Stored data that does not read back (storage_corrupt): say what, in place of what is missing.
  setText('#detail-damage', e.damage.length ? `storage_corrupt: ${e.damage.join('; ')}` : '');
  $('#detail-damage').classList.toggle('hidden', !e.damage.length);
  setText('#detail-timings', `${e.provider} · ${e.event_type} · received ${time(e.received_at_ms)} · processed in ${e.processing_us} µs · ${e.attempts} attempt(s)${e.delivery_pending ? ` · next attempt: ${nextAttempt(e)}` : ''}`);
  $('#detail-history').replaceChildren(...e.history.map((a) => el('li', { class: `outcome-${a.outcome}` },
    el('span', { class: 'attempt-status' }, a.status != null ? `HTTP ${a.status}` : (a.error || '—')),
    ' ', el('span', { class: 'attempt-outcome' }, a.outcome.replace('_', ' ')),
    el('span', { class: 'muted' }, ` · series ${a.series}, attempt ${a.attempt} · ${time(a.at_ms)} · ${(a.duration_us / 1000).toFixed(1)} ms · ${a.target}`),
    a.error && a.status != null ? el('div', { class: 'error-text' }, a.error) : '',
    slowerView(a), chaosView(a), answerView(a))));
  if (!e.history.length) $('#detail-history').append(el('li', { class: 'muted' }, 'no delivery attempts'));
  // What the developers' listeners (stagehook listen) reported of it, beside its own attempts.
  $('#detail-listeners').replaceChildren(...(e.listeners || []).map((l) => el('li', { class: 'listener-report' },
    `delivered to ${l.name} on ${l.host}: ${l.status != null ? l.status : (l.error || 'no answer')} in ${l.duration_ms} ms`,
    el('span', { class: 'muted' }, ` · ${time(l.at_ms)}`))));
  state.lastPayload = e.payload == null ? '' : e.payload_encoding === 'utf8' ? e.payload : atob(e.payload);
  renderPayload(e);
  $('#detail-headers tbody').replaceChildren(...e.headers.map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', { class: 'mono' }, v))));
}

/** An attempt slower than its provider's published delivery timeout: the API's message. */
function slowerView(a) {
  return a.slower_than_provider ? el('div', { class: 'attempt-slow' }, a.slower_than_provider.message) : '';
}

/** What chaos delivery did to an attempt (`chaos: duplicate`, `chaos: delayed 12 s`, ...), as text. */
function chaosView(a) {
  return a.chaos ? el('div', { class: 'attempt-chaos' }, a.chaos.message) : '';
}

/**
 * What the app answered to an attempt, folded: its headers and the start of its body, both as
 * text in a <pre> (an HTML error page shows as its markup, never rendered).
 */
function answerView(a) {
  const r = a.response;
  if (!r) return '';
  const size = `${r.body_bytes} byte(s)${r.body_truncated ? ', cut' : ''}`;
  const body = r.body_encoding === 'base64' ? `(not text; base64) ${r.body}` : r.body;
  return el('details', { class: 'attempt-answer' },
    el('summary', {}, `answer: ${r.content_type || 'no content type'} · ${size}`),
    el('pre', { class: 'answer-headers' }, r.headers.map(([k, v]) => `${k}: ${v}`).join('\n')),
    el('pre', { class: 'answer-body' }, body));
}

/** A thin event (Stripe's `v2.core.event`) carries a reference, not the object: say what it is
 *  about and when it was created. Text only: these are the provider's strings. */
function renderRelated(e) {
  const box = $('#detail-related');
  let created = null;
  try {
    const body = e.payload_encoding === 'utf8' ? JSON.parse(e.payload) : null;
    if (body && body.object === 'v2.core.event' && typeof body.created === 'string') created = body.created;
  } catch (_) { /* not JSON: no thin event */ }
  const r = e.related_object;
  box.classList.toggle('hidden', !r && !created);
  if (!r && !created) return box.replaceChildren();
  const when = created ? ` created ${time(Date.parse(created))}` : '';
  box.replaceChildren(el('span', { class: 'badge' }, 'thin event'), `${when}`,
    r ? el('span', {}, ' · about ', el('code', { class: 'related-type' }, r.type ?? ''), ' ',
      el('code', { class: 'related-id' }, r.id ?? ''), ' ', el('span', { class: 'muted related-url' }, r.url ?? '')) : ' · no related object');
}

function renderPayload(e) {
  const box = $('#detail-payload');
  if (e.payload == null) {
    box.replaceChildren(el('p', { class: 'muted' }, 'the body cannot be read back (see above)'));
    return;
  }
  const contentType = (e.headers.find(([k]) => k === 'content-type') || [, ''])[1];
  if (e.payload_encoding === 'utf8' && contentType.startsWith('application/x-www-form-urlencoded')) {
    const rows = [...new URLSearchParams(e.payload)].map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', {}, v)));
    box.replaceChildren(el('table', { class: 'form-table' }, el('tbody', {}, ...rows)));
    return;
  }
  let text = e.payload;
  try {
    text = JSON.stringify(JSON.parse(e.payload), null, 2);
  } catch (_) {
    // Not JSON: shown as it is.
  }
  box.replaceChildren(el('pre', { class: 'payload' }, text));
}

async function replayOne() {
  try {
    const r = await post(`${API}/events/${encodeURIComponent(state.detailId)}/replay`);
    setText('#detail-message', `replayed (${r.replayed})`);
  } catch (err) {
    if (!(err instanceof Unauthorized)) setText('#detail-message', err.message);
  }
  refreshDetail().catch(report);
}

// ---- edit and replay -------------------------------------------------------------------

/** Whether the event's body is JSON: its content type says so, or it parses as JSON. */
function jsonBody(e) {
  const contentType = (e.headers.find(([k]) => k === 'content-type') || [, ''])[1];
  if (contentType.includes('json')) return true;
  if (contentType.startsWith('application/x-www-form-urlencoded')) return false;
  try {
    JSON.parse(e.payload);
    return true;
  } catch (_) {
    return false;
  }
}

/** Opens the editor on the payload's exact text (re-serializing could round large numbers). */
function openEditor() {
  const e = state.detail;
  if (!e || e.id !== state.detailId) return;
  if (e.payload == null || e.payload_encoding !== 'utf8') {
    setText('#detail-message', 'this body is not text, so it cannot be edited here');
    return;
  }
  state.editJson = jsonBody(e);
  $('#edit-body').value = e.payload;
  checkEdit();
  $('#edit').classList.remove('hidden');
  $('#edit-body').focus();
}

function closeEditor() {
  $('#edit').classList.add('hidden');
  setText('#edit-error', '');
}

/** Refuses invalid JSON before anything is sent: the error names where it is. */
function checkEdit() {
  let problem = '';
  if (state.editJson) {
    try {
      JSON.parse($('#edit-body').value);
    } catch (err) {
      problem = `invalid JSON: ${err.message}`;
    }
  }
  setText('#edit-error', problem);
  $('#edit-send').disabled = problem !== '';
  return problem === '';
}

async function sendEdit(event) {
  event.preventDefault();
  if (!checkEdit()) return;
  const parent = state.detailId;
  try {
    // The text as typed: a string body is sent as its exact bytes.
    const r = await post(`${API}/events/${encodeURIComponent(parent)}/replay`, { body: $('#edit-body').value });
    closeEditor();
    await openDetail(r.id);
    setText('#detail-message', `replayed as an edited copy of ${parent}`);
    refreshEvents(true).catch(report);
  } catch (err) {
    if (!(err instanceof Unauthorized)) setText('#edit-error', err.message);
  }
}

async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (_) {
    return false;
  }
}

async function copyPayload() {
  setText('#detail-message', (await copy(state.lastPayload)) ? 'payload copied' : 'select the payload below to copy it');
}

async function copyCurl() {
  const r = await api(`${API}/events/${encodeURIComponent(state.detailId)}/curl`);
  const pre = $('#curl-command');
  pre.textContent = r.command;
  pre.classList.remove('hidden');
  setText('#detail-message', (await copy(r.command)) ? 'curl command copied' : 'select the command to copy it');
}

// ---- bulk replay ------------------------------------------------------------------------

function askReplayFailed() {
  setText('#confirm-count', $('#confirm-count').dataset.failed || '0');
  $('#confirm').classList.remove('hidden');
}

async function replayFailed() {
  $('#confirm').classList.add('hidden');
  try {
    const r = await post(`${API}/replay`, { status: 'failed' });
    setText('#replay-result', `replayed ${r.replayed}${r.skipped_no_target ? `, ${r.skipped_no_target} without target` : ''}`);
  } catch (err) {
    if (!(err instanceof Unauthorized)) setText('#replay-result', err.message);
  }
}

// ---- compare two events -------------------------------------------------------------------
// Two events of one provider, ticked in the events table, and a structural diff of their
// payloads: every path added, removed or changed. Payloads come from the internet: every path
// and value goes in as text.

const compare = {
  /** The ticked events, in the order they were ticked: `{id, provider, event_id}`. */
  picked: [],
  /** Counts the comparisons asked for, so that a slow answer never replaces a newer one. */
  run: 0,
};
/** A value longer than this is cut with an ellipsis; its cell's title holds more of it. */
const DIFF_VALUE_CHARS = 120;
/** Rows listed at most (two large payloads can differ everywhere); the summary counts them all. */
const DIFF_MAX_ROWS = 500;

/** The first cell of an event's row: a checkbox that picks the event for a comparison. */
function compareCell(e) {
  const box = el('input', { type: 'checkbox', class: 'compare-pick' });
  box.checked = compare.picked.some((p) => p.id === e.id);
  if (e.provider == null) {
    // A record that does not read back: no provider to compare within, no payload to compare.
    box.disabled = true;
    box.title = 'this event does not read back: nothing to compare';
  } else {
    box.setAttribute('aria-label', `compare ${e.event_id}`);
  }
  box.addEventListener('change', () => pickForCompare(e, box));
  const cell = el('td', { class: 'compare' }, el('label', {}, box));
  // Ticking is not opening: a click (or the space bar on the box) stays out of the row's handler.
  cell.addEventListener('click', (ev) => ev.stopPropagation());
  return cell;
}

/** Takes or drops a pick; refuses, saying why, a third event or one of another provider. */
function pickForCompare(e, box) {
  if (!box.checked) {
    compare.picked = compare.picked.filter((p) => p.id !== e.id);
    updateCompareBar();
    return;
  }
  const first = compare.picked[0];
  if (first && first.provider !== e.provider) {
    box.checked = false;
    updateCompareBar(`Not picked: ${e.event_id} is a ${e.provider} event and ${first.event_id} a ${first.provider} one; only events of one provider compare.`);
    return;
  }
  if (compare.picked.length >= 2) {
    box.checked = false;
    updateCompareBar('Not picked: two events are picked already; untick one first.');
    return;
  }
  compare.picked.push({ id: e.id, provider: e.provider, event_id: e.event_id });
  updateCompareBar();
}

/** The bar above the table: what is picked, or why a pick was refused, and the buttons. */
function updateCompareBar(refusal) {
  const picked = compare.picked;
  $('#compare-open').disabled = picked.length !== 2;
  $('#compare-clear').disabled = picked.length === 0;
  const msg = $('#compare-message');
  msg.classList.toggle('error-text', Boolean(refusal));
  const names = picked.map((p) => p.event_id).join(' and ');
  if (refusal) setText(msg, refusal);
  else if (!picked.length) setText(msg, 'tick two events of one provider to compare their payloads');
  else if (picked.length === 1) setText(msg, `${names} (${picked[0].provider}) picked: tick one more ${picked[0].provider} event`);
  else setText(msg, `${names} (${picked[0].provider}) picked`);
}

function clearCompare() {
  compare.picked = [];
  for (const box of document.querySelectorAll('#events-table input.compare-pick')) box.checked = false;
  updateCompareBar();
}

/** Fetches both picked events and shows their diff. */
async function openCompare() {
  if (compare.picked.length !== 2) return;
  const run = ++compare.run;
  let events;
  try {
    events = await Promise.all(compare.picked.map((p) => api(`${API}/events/${encodeURIComponent(p.id)}`)));
  } catch (err) {
    if (!(err instanceof Unauthorized) && run === compare.run) updateCompareBar(`The comparison failed: ${err.message}`);
    return;
  }
  if (run !== compare.run) return;
  showComparison(events[0], events[1]);
  const panel = $('#compare');
  panel.classList.remove('hidden');
  panel.scrollIntoView({ block: 'nearest' });
}

function closeCompare() {
  compare.run++;
  $('#compare').classList.add('hidden');
}

/** Renders the diff of two events (detail JSON, as `/events/{id}` gives it), the older first. */
function showComparison(x, y) {
  const [before, after] = [x, y].sort((p, q) => p.received_at_ms - q.received_at_ms || (p.id < q.id ? -1 : 1));
  const panel = $('#compare');
  panel.dataset.before = before.id;
  panel.dataset.after = after.id;
  const side = (e) => `${e.event_id} (${e.id}) · ${e.event_type} · received ${time(e.received_at_ms)}`;
  setText('#compare-before', side(before));
  setText('#compare-after', side(after));
  const result = comparePayloads(before, after);
  const table = $('#compare-diff');
  const summary = $('#compare-summary');
  summary.classList.toggle('error-text', Boolean(result.refusal));
  if (result.refusal) {
    setText(summary, `Not comparable: ${result.refusal}.`);
    table.classList.add('hidden');
    return;
  }
  const entries = result.entries;
  const count = (kind) => entries.filter((d) => d.kind === kind).length;
  setText(summary, !entries.length ? 'no differences'
    : `${entries.length} difference${entries.length > 1 ? 's' : ''}: ${count('changed')} changed, ${count('added')} added, ${count('removed')} removed${entries.length > DIFF_MAX_ROWS ? `; the first ${DIFF_MAX_ROWS} are listed` : ''}`);
  $('#compare-diff tbody').replaceChildren(...entries.slice(0, DIFF_MAX_ROWS).map(diffRow));
  table.classList.toggle('hidden', !entries.length);
}

/** `{entries}` (the differences, in document order) or `{refusal}` (why they do not compare). */
function comparePayloads(before, after) {
  const a = comparable(before);
  const b = comparable(after);
  if (a.refusal || b.refusal) return { refusal: a.refusal || b.refusal };
  const entries = [];
  try {
    diffValues(a.value, b.value, '', entries);
  } catch (err) {
    // The walk recurses: a payload nested deeper than the browser's stack is refused, not fatal.
    if (err instanceof RangeError) return { refusal: 'the payloads nest too deeply to walk' };
    throw err;
  }
  return { entries };
}

/** An event's payload as a value to walk: JSON, or a form as a flat map of its fields. */
function comparable(e) {
  const name = e.event_id || e.id;
  if (e.payload == null) return { refusal: `the body of ${name} does not read back` };
  if (e.payload_encoding !== 'utf8') return { refusal: `${name} has a binary body, neither JSON nor a form` };
  const header = (e.headers || []).find(([k]) => k.toLowerCase() === 'content-type');
  if (header && header[1].toLowerCase().startsWith('application/x-www-form-urlencoded')) return { value: formFields(e.payload) };
  try {
    return { value: JSON.parse(e.payload) };
  } catch (_) {
    return { refusal: `the body of ${name} is neither JSON nor a form` };
  }
}

/** A form's fields; a repeated field keeps all its values, in order, so none escapes the diff. */
function formFields(text) {
  // No prototype: a field named `__proto__` or `constructor` is a field like any other.
  const fields = Object.create(null);
  for (const [k, v] of new URLSearchParams(text)) {
    if (!hasKey(fields, k)) fields[k] = v;
    else if (Array.isArray(fields[k])) fields[k].push(v);
    else fields[k] = [fields[k], v];
  }
  return fields;
}

function hasKey(o, k) {
  return Object.prototype.hasOwnProperty.call(o, k);
}

function kindOf(v) {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

/**
 * Appends to `out` every difference between `a` and `b` under `path`: objects key by key,
 * arrays index by index; a value whose type changed (an object become a number, say) is one
 * `changed` entry, not a list of what its parts became.
 */
function diffValues(a, b, path, out) {
  const kind = kindOf(a);
  if (kind !== kindOf(b)) {
    out.push({ path, kind: 'changed', before: a, after: b });
  } else if (kind === 'array') {
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      const p = `${path}[${i}]`;
      if (i >= b.length) out.push({ path: p, kind: 'removed', before: a[i] });
      else if (i >= a.length) out.push({ path: p, kind: 'added', after: b[i] });
      else diffValues(a[i], b[i], p, out);
    }
  } else if (kind === 'object') {
    for (const k of Object.keys(a)) {
      const p = childPath(path, k);
      if (hasKey(b, k)) diffValues(a[k], b[k], p, out);
      else out.push({ path: p, kind: 'removed', before: a[k] });
    }
    for (const k of Object.keys(b)) {
      if (!hasKey(a, k)) out.push({ path: childPath(path, k), kind: 'added', after: b[k] });
    }
  } else if (a !== b) {
    out.push({ path, kind: 'changed', before: a, after: b });
  }
}

/** `a.b` for a plain key; a key with a dot or another odd character quoted: `a["b.c"]`. */
function childPath(path, key) {
  if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(key)) return path ? `${path}.${key}` : key;
  return `${path}[${JSON.stringify(key)}]`;
}

/** A value as JSON text, cut with an ellipsis past `DIFF_VALUE_CHARS`. */
function shownValue(v) {
  const text = JSON.stringify(v);
  if (text.length <= DIFF_VALUE_CHARS) return text;
  let cut = DIFF_VALUE_CHARS - 1;
  // Never half a character: a cut inside a surrogate pair steps back before it.
  if (/[\uD800-\uDBFF]/.test(text[cut - 1])) cut--;
  return `${text.slice(0, cut)}…`;
}

function diffRow(d) {
  const value = (v, present) => (present
    ? el('td', { class: 'mono value', title: JSON.stringify(v).slice(0, 2000) }, shownValue(v))
    : el('td', { class: 'muted value absent' }, '—'));
  return el('tr', { class: `diff-${d.kind}`, 'data-path': d.path, 'data-kind': d.kind },
    el('td', { class: 'mono path' }, d.path || '(the whole payload)'),
    el('td', { class: 'kind' }, d.kind),
    value(d.before, d.kind !== 'added'),
    value(d.after, d.kind !== 'removed'));
}

function startCompare() {
  $('#compare-open').addEventListener('click', () => openCompare().catch(report));
  $('#compare-clear').addEventListener('click', clearCompare);
  $('#compare-close').addEventListener('click', closeCompare);
  updateCompareBar();
}

document.addEventListener('DOMContentLoaded', startCompare);

// ---- config and rejections ----------------------------------------------------------------

async function refreshConfig() {
  const [report, rej] = await Promise.all([api(`${API}/config/validate`), api(`${API}/rejections?limit=20`)]);
  const order = { error: 0, warning: 1, ok: 2 };
  const findings = [...report.findings].sort((a, b) => order[a.severity] - order[b.severity]);
  $('#config-report').replaceChildren(...findings.map((f) => el('li', { class: `finding severity-${f.severity}` },
    el('span', { class: 'severity' }, f.severity), ' ', el('code', {}, f.id), ' ',
    el('span', { class: 'muted' }, f.key), ' — ', f.message)));
  // An entry that does not read back is listed in its place, saying what is wrong with it.
  $('#rejections tbody').replaceChildren(...rej.rejections.map((r) => el('tr', { class: r.damage.length ? 'damaged' : '' },
    el('td', {}, time(r.at_ms)), el('td', {}, r.provider), el('td', {}, el('code', {}, r.code ?? 'storage_corrupt')),
    el('td', {}, r.source_ip), el('td', {}, r.message),
    // Why a signature failed, when stagehook worked it out: for the person reading, not the sender.
    r.diagnosis
      ? el('td', { class: 'diagnosis' }, el('code', {}, r.diagnosis.code), ' ', r.diagnosis.detail)
      : el('td', { class: 'diagnosis muted' }, ''))));
  // None refused: say so, and where a refusal would show, rather than an empty table.
  if (!rej.rejections.length) {
    $('#rejections tbody').append(el('tr', { class: 'empty' }, el('td', { colSpan: 6, class: 'muted' },
      'No request refused yet: a request with a bad signature or payload shows here, with its likely cause.')));
  }
}

// ---- alerts -----------------------------------------------------------------------------

/** The firing alerts, at the top of the page; the section is hidden while none fires. */
async function refreshAlerts() {
  const body = await api(`${API}/alerts`);
  const items = [];
  for (const rule of body.rules) {
    for (const f of rule.firing) {
      const whom = f.provider ? `provider ${f.provider}` : 'all providers';
      items.push(el('li', { class: 'alert', 'data-rule': rule.rule, 'data-provider': f.provider || '' },
        el('strong', { class: 'alert-when' }, rule.when), ` on ${whom} since ${time(f.since_ms)}`,
        f.detail ? el('span', { class: 'muted' }, ` · ${f.detail}`) : '',
        el('span', { class: 'muted' }, ` · ${rule.rule}, notifies ${rule.notify.join(', ')}`)));
    }
  }
  $('#alerts-list').replaceChildren(...items);
  $('#alerts').classList.toggle('hidden', items.length === 0);
}

// ---- listeners --------------------------------------------------------------------------

/** The listeners (stagehook listen) whose stream is open now, with the last event each delivered. */
async function refreshListeners() {
  const body = await api(`${API}/listeners`);
  $('#listeners-table tbody').replaceChildren(...body.listeners.map((l) => el('tr', { class: 'listener' },
    el('td', {}, l.host ? `${l.name} on ${l.host}` : l.name),
    el('td', { class: 'mono' }, l.filters || '—'),
    el('td', {}, time(l.since_ms)),
    el('td', {}, l.last_event ? `${l.last_event.id}: ${l.last_event.status != null ? l.last_event.status : 'no answer'} at ${time(l.last_event.at_ms)}` : '—'))));
  $('#listeners-table').classList.toggle('hidden', body.listeners.length === 0);
  $('#listeners-none').classList.toggle('hidden', body.listeners.length !== 0);
}

// ---- backfill ---------------------------------------------------------------------------
// Events a provider sent while stagehook was down, read back from its API: a button per endpoint
// whose section gives API access, the last run's counts, and the downtime this start found.

/** A run's outcome in a line: its counts, or its error. */
function runSummary(r) {
  const counts = `listed ${r.listed}, already stored ${r.already_stored}, ${r.dry_run ? 'would add' : 'added'} ${r.added}, refused ${r.refused}`;
  if (r.state === 'failed') return `failed: ${r.error ? `${r.error.code}: ${r.error.message}` : 'no reason given'} (${counts})`;
  if (r.state === 'running') return `running… ${counts} so far`;
  return `${r.dry_run ? 'dry run: ' : ''}${counts} · ${time(r.finished_at_ms || r.started_at_ms)}`;
}

function downtimeLine(d, runs) {
  const span = `Down from ${time(d.from_ms)} to ${time(d.to_ms)}`;
  if (d.backfilled != null) return `${span}; backfilled ${d.backfilled} event${d.backfilled === 1 ? '' : 's'}`;
  // `backfilled` is null while the start's runs go on, and for good when none was started.
  if (runs.some((r) => r.trigger === 'start' && r.state === 'running')) return `${span}; recovering…`;
  return `${span}; not recovered (backfill.on_start is off)`;
}

async function refreshBackfill() {
  const body = await api(`${API}/backfill`);
  const down = $('#backfill-downtime');
  down.classList.toggle('hidden', !body.downtime);
  if (body.downtime) setText(down, downtimeLine(body.downtime, body.runs));
  const tbody = $('#backfill-table tbody');
  const rows = body.endpoints.map((ep) => {
    const last = body.runs.find((r) => r.endpoint === ep.endpoint);
    const note = state.backfillNotes[ep.endpoint];
    // A click's refusal (another run going on, say) stays until a run newer than it shows.
    const shown = note && (!last || last.started_at_ms < note.at_ms) ? note : last ? { text: runSummary(last), failed: last.state === 'failed' } : { text: '—' };
    const sig = `${ep.api}|${ep.message || ''}|${shown.text}`;
    const existing = tbody.querySelector(`tr[data-endpoint="${CSS.escape(ep.endpoint)}"]`);
    // An unchanged row stays, so a poll never swallows a click on its button.
    if (existing && existing.dataset.sig === sig) return existing;
    const action = ep.api === 'ready'
      ? el('button', { type: 'button', class: 'backfill-run', 'data-endpoint': ep.endpoint }, 'Backfill last 24 h')
      : el('span', { class: 'api-off', title: ep.api }, ep.message || ep.api);
    if (ep.api === 'ready') action.addEventListener('click', () => runBackfill(ep.endpoint, action).catch(report));
    return el('tr', { 'data-endpoint': ep.endpoint, 'data-sig': sig },
      el('td', {}, ep.endpoint), el('td', {}, action),
      el('td', { class: `run${shown.failed ? ' failed' : ''}` }, shown.text));
  });
  tbody.replaceChildren(...rows);
}

/** Starts a run over the last 24 hours (the API's default window) and shows its report. */
async function runBackfill(endpoint, button) {
  button.disabled = true;
  const row = button.closest('tr');
  setText(row.querySelector('.run'), 'running…');
  try {
    const r = await post(`${API}/backfill`, { endpoint });
    delete state.backfillNotes[endpoint];
    setText(row.querySelector('.run'), runSummary(r));
    refreshEvents(true).catch(report);
  } catch (err) {
    if (err instanceof Unauthorized) return;
    state.backfillNotes[endpoint] = { text: err.message, failed: true, at_ms: Date.now() };
  } finally {
    button.disabled = false;
  }
  await refreshBackfill();
}

// ---- app check --------------------------------------------------------------------------
// Per endpoint: a button that runs `check-app` against its app (POST /check-app) and the last
// scorecard the store kept. The app's answers go in as text only, never as markup.

async function refreshAppCheck() {
  const list = $('#app-check-list');
  // Every endpoint's last report in one request (null for one never checked): no 404 per endpoint.
  const { reports } = await api(`${API}/check-app`);
  for (const endpoint of state.providers) {
    let block = list.querySelector(`div[data-endpoint="${CSS.escape(endpoint)}"]`);
    if (!block) {
      const button = el('button', { type: 'button', class: 'app-check-run', 'data-endpoint': endpoint }, 'Run check');
      button.addEventListener('click', () => runAppCheck(endpoint, button).catch(report));
      block = el('div', { class: 'app-check', 'data-endpoint': endpoint },
        el('h3', {}, endpoint, ' ', button), el('p', { class: 'app-check-summary muted' }, '—'), el('div', { class: 'app-check-card' }));
      list.append(block);
    }
    // Not while a run of it goes on: its answer replaces what the last one said.
    if (block.dataset.running) continue;
    if (reports[endpoint]) showScorecard(block, reports[endpoint]);
    else setText(block.querySelector('.app-check-summary'), 'Not checked yet.');
  }
}

/** The scorecard: a line of counts, then a row per check. */
function showScorecard(block, r) {
  setText(block.querySelector('.app-check-summary'),
    `${r.ok ? 'all checks pass' : `${r.failed} failed`}: ${r.passed} passed, ${r.failed} failed, ${r.not_applicable} not applicable · ${r.target} · ${time(r.started_at_ms)}`);
  const answered = (c) => c.exchanges.map((x) => (x.answered.status != null ? `${x.answered.status} in ${x.answered.time_ms} ms` : x.answered.error || 'no answer')).join(', ') || '—';
  const rows = r.checks.map((c) => el('tr', { class: `check-${c.outcome}`, 'data-check': c.name },
    el('td', { class: 'mono' }, c.name),
    el('td', { class: 'outcome' }, c.outcome.replace('_', ' ')),
    el('td', {}, answered(c)),
    el('td', { class: 'app-body mono' }, c.outcome === 'fail' && c.exchanges.length ? c.exchanges[c.exchanges.length - 1].answered.body : ''),
    el('td', {}, c.fix || c.reason)));
  block.querySelector('.app-check-card').replaceChildren(el('table', { class: 'scorecard' },
    el('thead', {}, el('tr', {}, ...['check', 'result', 'answered', 'app said', 'fix or reason'].map((h) => el('th', {}, h)))),
    el('tbody', {}, ...rows)));
}

async function runAppCheck(endpoint, button) {
  const block = button.closest('.app-check');
  button.disabled = true;
  block.dataset.running = '1';
  setText(block.querySelector('.app-check-summary'), 'running…');
  try {
    showScorecard(block, await post(`${API}/check-app`, { endpoint }));
  } catch (err) {
    if (!(err instanceof Unauthorized)) setText(block.querySelector('.app-check-summary'), err.message);
  } finally {
    button.disabled = false;
    delete block.dataset.running;
  }
}

// ---- polling ----------------------------------------------------------------------------

function report(err) {
  if (!(err instanceof Unauthorized)) console.warn('stagehook dashboard:', err.message);
}

function refreshAll() {
  listen();
  refreshAlerts().catch(report);
  // The app checks after the overview, which lists the endpoints.
  refreshOverview().then(refreshAppCheck).catch(report);
  refreshRecovery().catch(report);
  refreshListeners().catch(report);
  refreshBackfill().catch(report);
  refreshEvents(true).catch(report);
  refreshConfig().catch(report);
}

// ---- live stream ------------------------------------------------------------------------
// With /events/stream open, a new event or a change of status refreshes the views at once (one
// refresh for a burst of changes); polling stays as the fallback, slower while the stream is up.

let source = null;
let live = false;
let changedSoon = null;

function listen() {
  if (!window.EventSource || (source && source.readyState !== EventSource.CLOSED)) return;
  source = new EventSource(`${API}/events/stream`);
  const changed = () => {
    if (changedSoon) return;
    changedSoon = setTimeout(() => {
      changedSoon = null;
      if (state.locked || document.hidden) return;
      refreshAlerts().catch(report);
      refreshOverview().catch(report);
      refreshRecovery().catch(report);
      refreshEvents().catch(report);
      refreshDetail().catch(report);
    }, 200);
  };
  source.addEventListener('event', changed);
  source.addEventListener('status', changed);
  // Changes were missed (stagehook restarted, or too many): reload everything.
  source.addEventListener('reset', () => refreshAll());
  source.onopen = () => { live = true; };
  // The browser reconnects by itself (with Last-Event-ID) unless the answer was a refusal
  // (signed out): then polling carries on, and the next refreshAll (after a login) listens again.
  source.onerror = () => { live = false; };
}

function poll() {
  if (!state.locked && !document.hidden) {
    refreshAlerts().catch(report);
    refreshOverview().catch(report);
    refreshRecovery().catch(report);
    refreshListeners().catch(report);
    refreshBackfill().catch(report);
    refreshEvents().catch(report);
    refreshDetail().catch(report);
  }
  setTimeout(poll, live ? Math.max(POLL_MS, 5000) : POLL_MS);
}

function start() {
  $('#login-form').addEventListener('submit', login);
  $('#logout').addEventListener('click', () => logout().catch(report));
  for (const id of ['#filter-provider', '#filter-status']) $(id).addEventListener('change', () => refreshEvents(true).catch(report));
  // Text filters apply as the user types, once the typing pauses.
  let typing = null;
  for (const id of ['#filter-type', '#filter-search']) {
    $(id).addEventListener('input', () => {
      clearTimeout(typing);
      typing = setTimeout(() => refreshEvents(true).catch(report), 250);
    });
  }
  $('#events-more').addEventListener('click', () => moreEvents().catch(report));
  // The status counts are filters: a click lists those events.
  for (const c of document.querySelectorAll('button.card[data-filter]')) {
    c.addEventListener('click', () => {
      $('#filter-status').value = c.dataset.filter;
      refreshEvents(true).catch(report);
      $('#events-title').scrollIntoView({ block: 'start' });
    });
  }
  $('#detail-close').addEventListener('click', closeDetail);
  $('#replay-one').addEventListener('click', replayOne);
  $('#edit-open').addEventListener('click', openEditor);
  $('#edit-body').addEventListener('input', checkEdit);
  $('#edit').addEventListener('submit', (ev) => sendEdit(ev).catch(report));
  $('#edit-cancel').addEventListener('click', closeEditor);
  $('#detail-parent-link').addEventListener('click', () => openDetail(state.detail.parent_id).catch(report));
  $('#copy-payload').addEventListener('click', () => copyPayload().catch(report));
  $('#copy-curl').addEventListener('click', () => copyCurl().catch(report));
  $('#replay-failed').addEventListener('click', askReplayFailed);
  $('#confirm-yes').addEventListener('click', replayFailed);
  $('#confirm-no').addEventListener('click', () => $('#confirm').classList.add('hidden'));
  setInterval(tickCountdowns, 1000);
  setInterval(() => { if (!state.locked) refreshConfig().catch(report); }, Math.max(POLL_MS, 10000));
  refreshAll();
  checkSession().catch(report);
  setTimeout(poll, POLL_MS);
}

document.addEventListener('DOMContentLoaded', start);
