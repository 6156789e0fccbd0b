// The Troop console: pool overview, services with their real servers, the events timeline and
// the write actions, all over the public /v1 API (api.js). Live: the events stream triggers a
// refresh, and a slow poll catches what no event announces.
import { APIError, followEvents, path, request, session } from './api.js';
import { badge, byId, h, table } from './dom.js';

const pollInterval = 15000;
const eventsShown = 500;
const schedulers = ['rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'dh', 'sh', 'sed', 'nq', 'fo', 'ovf', 'mh'];

const state = { status: null, members: [], services: [], dataplane: null };
let stopEvents = null;
let pollTimer = null;
let refreshTimer = null;

// --- login -------------------------------------------------------------------------------

function showLogin(message) {
  stopLive();
  session.clear();
  for (const id of ['main', 'nav', 'logout', 'live', 'error']) byId(id).hidden = true;
  byId('events').replaceChildren();
  rendered.clear();
  byId('login').hidden = false;
  byId('login-message').textContent = message || '';
  byId('token').value = '';
  byId('token').focus();
}

async function login(ev) {
  ev.preventDefault();
  session.set(byId('token').value);
  byId('login-message').textContent = '';
  try {
    await request('GET', '/v1/status');
  } catch (err) {
    showLogin(describe(err));
    return;
  }
  start();
}

function start() {
  byId('login').hidden = true;
  for (const id of ['main', 'nav', 'logout', 'live']) byId(id).hidden = false;
  route();
  refresh();
  stopEvents = followEvents({
    onEvent: addEvent,
    onState: setLive,
    onAuth: (err) => showLogin(describe(err)),
  });
  pollTimer = setInterval(refresh, pollInterval);
}

function stopLive() {
  if (stopEvents) stopEvents();
  stopEvents = null;
  clearInterval(pollTimer);
  clearTimeout(refreshTimer);
}

function setLive(s) {
  const el = byId('live');
  el.textContent = s === 'live' ? '● live' : '○ reconnecting';
  el.className = s === 'live' ? 'live up' : 'live down';
  byId('events-state').textContent = s === 'live' ? 'following' : 'stream lost, reconnecting…';
}

// --- errors ------------------------------------------------------------------------------

function describe(err) {
  if (err instanceof APIError) return `${err.status}: ${err.describe()}`;
  return `the agent did not answer (${err.message})`;
}

// fail shows err, or returns to the login screen when the token was refused.
function fail(err) {
  if (err instanceof APIError && err.auth) {
    showLogin(describe(err));
    return;
  }
  byId('error-text').textContent = describe(err);
  byId('error').hidden = false;
}

// --- data --------------------------------------------------------------------------------

async function optional(p) {
  try {
    return await request('GET', p);
  } catch (err) {
    if (err instanceof APIError && err.status === 404) return null; // no dataplane on this agent
    throw err;
  }
}

async function refresh() {
  try {
    const [status, members, services, dataplane] = await Promise.all([
      request('GET', '/v1/status'),
      request('GET', '/v1/members'),
      request('GET', '/v1/services'),
      optional('/v1/dataplane'),
    ]);
    Object.assign(state, {
      status, members: members.members || [], services: services.services || [], dataplane,
    });
  } catch (err) {
    fail(err);
    return;
  }
  // Re-render only what changed, so that a refresh does not replace the buttons under the user's
  // finger (or mouse) for nothing.
  const dp = state.dataplane;
  if (changed('overview', [state.status, state.members, dp && dp.status])) renderOverview();
  if (changed('services', [state.services, dp && dp.services])) renderServices();
}

const rendered = new Map();

function changed(what, data) {
  const key = JSON.stringify(data);
  if (rendered.get(what) === key) return false;
  rendered.set(what, key);
  return true;
}

// soon coalesces the refreshes a burst of events asks for.
function soon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 250);
}

// --- pages -------------------------------------------------------------------------------

function route() {
  const page = (location.hash || '#overview').slice(1);
  const known = ['overview', 'services', 'events'].includes(page) ? page : 'overview';
  for (const el of document.querySelectorAll('.page')) el.hidden = el.dataset.page !== known;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.page === known) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function card(label, value, cls) {
  return h('div', { class: `card ${cls || ''}` }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value));
}

function renderOverview() {
  const st = state.status;
  const cards = [
    card('Leader', st.leader_id || 'none', st.leader_id ? '' : 'bad'),
    card('Term', st.term),
    card('This agent', `${st.id} (${st.role}${st.witness ? ', witness' : ''})`),
    card('Index', `${st.applied_index} applied / ${st.commit_index} committed`),
    card('Table', `${st.services} services, ${st.reals} real servers`),
  ];
  if (st.halted) cards.push(card('HALTED', st.halted, 'bad'));
  byId('summary').replaceChildren(...cards);

  byId('members').replaceChildren(table(
    ['Director', 'Gossip', 'Raft', 'Role', 'Version', 'Protocol', 'Serial'],
    state.members.map((m) => ({
      attrs: { 'data-member': m.id },
      cells: [
        h('strong', null, m.id),
        badge(m.gossip, m.gossip === 'alive' || m.gossip === 'none' ? 'ok' : 'bad'),
        badge(m.raft, m.raft === 'leader' ? 'leader' : 'plain'),
        m.role || '—',
        m.version || '—',
        m.protocol || '—',
        m.serial ? badge(m.serial, m.serial === 'alive' ? 'ok' : 'bad') : '—',
      ],
    })),
    { class: 'grid', id: 'members-table' }));

  const dp = state.dataplane;
  if (!dp) {
    byId('dataplane').replaceChildren(h('p', { class: 'muted' }, 'This agent runs no dataplane.'));
    return;
  }
  const s = dp.status;
  byId('dataplane').replaceChildren(h('dl', { class: 'facts' },
    h('dt', null, 'IPVS'), h('dd', null, s.ipvs),
    h('dt', null, 'VIPs held'), h('dd', null, (s.vips || []).join(', ') || 'none'),
    h('dt', null, 'Synced index'), h('dd', null, s.synced_index),
    h('dt', null, 'Last sync'), h('dd', null, s.last_sync ? new Date(s.last_sync).toLocaleString() : 'never'),
    h('dt', null, 'Repairs'), h('dd', null, s.repairs),
    s.last_error ? [h('dt', null, 'Last error'), h('dd', { class: 'bad-text' }, s.last_error)] : null));
}

function serviceAddress(svc) {
  if (svc.fwmark) return `FWM ${svc.fwmark} ${svc.family || 'ipv4'}`;
  const vip = svc.vip && svc.vip.includes(':') ? `[${svc.vip}]` : svc.vip;
  return `${(svc.protocol || 'tcp').toUpperCase()} ${vip}:${svc.port}`;
}

// kernelOf finds a real server in this agent's kernel view, when it has one.
function kernelOf(name, realID) {
  const ks = state.dataplane && state.dataplane.services.find((k) => k.name === name);
  if (!ks) return null;
  return ks.destinations.find((d) => d.key === realID) || null;
}

function realID(r) {
  return r.address.includes(':') ? `[${r.address}]:${r.port}` : `${r.address}:${r.port}`;
}

function renderServices() {
  const list = byId('services');
  if (state.services.length === 0) {
    list.replaceChildren(h('p', { class: 'muted' }, 'No services yet.'));
    return;
  }
  list.replaceChildren(...state.services.map((svc) => {
    const facts = [
      serviceAddress(svc),
      svc.scheduler,
      svc.forwarding,
      svc.persistence ? `persistent ${svc.persistence.timeout}` : null,
      svc.quiescent ? 'quiescent' : null,
      svc.check ? `check ${svc.check.type}` : null,
      svc.fallback ? `fallback ${svc.fallback.address}` : null,
    ].filter(Boolean);
    const reals = svc.reals || [];
    return h('article', { class: 'service', 'data-service': svc.name },
      h('div', { class: 'bar' },
        h('h2', null, svc.name),
        h('div', { class: 'buttons' },
          h('button', { type: 'button', class: 'secondary', onclick: () => editService(svc) }, 'Edit'),
          h('button', { type: 'button', class: 'secondary', onclick: () => addReal(svc) }, 'Add real'),
          h('button', { type: 'button', class: 'danger', onclick: () => removeService(svc) }, 'Remove'))),
      h('p', { class: 'muted' }, facts.join(' · ')),
      reals.length === 0 ? h('p', { class: 'muted' }, 'No real servers.') : table(
        ['Real server', 'Health', 'Weight', 'Admin', 'Active', 'Inactive', 'Conn/s', 'Actions'],
        reals.map((r) => realRow(svc, r)),
        { class: 'grid reals' }));
  }));
}

function realRow(svc, r) {
  const id = realID(r);
  const health = (svc.health && svc.health[id]) || { state: 'unknown' };
  const k = kernelOf(svc.name, id);
  const kd = k && k.kernel;
  const admin = r.admin || 'enabled';
  const weight = r.weight === undefined || r.weight === null ? 1 : r.weight;
  const act = (label, cls, fn) => h('button', { type: 'button', class: cls, 'data-action': label.toLowerCase(), onclick: fn }, label);
  return {
    attrs: { 'data-real': id },
    cells: [
      h('span', { class: 'mono' }, id),
      h('span', null, badge(health.state, health.state === 'up' ? 'ok' : health.state === 'down' ? 'bad' : 'plain'),
        health.reason ? h('span', { class: 'reason' }, ` ${health.reason}`) : null),
      kd && kd.Weight !== weight ? `${weight} (kernel ${kd.Weight})` : weight,
      h('span', { class: 'admin' }, badge(admin, admin === 'enabled' ? 'ok' : 'warn')),
      kd ? kd.ActiveConns : '—',
      kd ? kd.InactiveConns : '—',
      kd ? kd.Stats.CPS : (k && k.drift ? k.drift : '—'),
      h('div', { class: 'buttons' },
        admin === 'enabled' ? act('Drain', 'secondary', () => setAdmin(svc, id, 'draining')) : act('Enable', 'secondary', () => setAdmin(svc, id, 'enabled')),
        admin !== 'disabled' ? act('Disable', 'secondary', () => setAdmin(svc, id, 'disabled')) : null,
        act('Weight', 'secondary', () => setWeight(svc, id, weight)),
        act('Remove', 'danger', () => removeReal(svc, id))),
    ],
  };
}

function addEvent(ev) {
  const list = byId('events');
  const time = new Date(ev.time);
  list.prepend(h('li', { class: `event ${ev.kind}`, 'data-seq': ev.seq },
    h('time', { datetime: ev.time, title: ev.time }, time.toLocaleTimeString()),
    ' ', badge(ev.kind, 'kind'),
    ev.service ? h('span', { class: 'mono' }, ` ${ev.service}`) : null,
    ev.real ? h('span', { class: 'mono' }, ` ${ev.real}`) : null,
    h('span', { class: 'message' }, ` ${ev.message}`)));
  while (list.childElementCount > eventsShown) list.lastElementChild.remove();
  soon();
}

// --- dialogs -----------------------------------------------------------------------------

function dialogResult(dialog) {
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue), { once: true });
    dialog.returnValue = '';
    dialog.showModal();
  });
}

// confirmRequest shows what is about to be sent and resolves true once the user confirms.
async function confirmRequest(title, text, method, p, body) {
  byId('confirm-title').textContent = title;
  byId('confirm-text').textContent = text;
  byId('confirm-request').textContent = `${method} ${p}${body === undefined ? '' : `\n${JSON.stringify(body, null, 2)}`}`;
  return (await dialogResult(byId('confirm'))) === 'ok';
}

// perform confirms and sends a write, shows a refusal, and refreshes.
async function perform(title, text, method, p, body) {
  if (!(await confirmRequest(title, text, method, p, body))) return false;
  byId('error').hidden = true;
  try {
    await request(method, p, body);
  } catch (err) {
    fail(err);
    return false;
  }
  await refresh();
  return true;
}

// form asks for values. fields: {name, label, type (text|number|select|checkbox), value,
// options, required, readonly, hint}. It resolves to {name: value} or null when cancelled.
async function form(title, fields) {
  byId('edit-title').textContent = title;
  const inputs = {};
  byId('edit-fields').replaceChildren(...fields.map((f) => {
    const id = `f-${f.name}`;
    let input;
    if (f.type === 'select') {
      input = h('select', { id, name: f.name }, f.options.map((o) => h('option', { value: o, selected: o === f.value }, o || '(default)')));
    } else if (f.type === 'checkbox') {
      input = h('input', { id, name: f.name, type: 'checkbox', checked: !!f.value });
    } else {
      input = h('input', {
        id, name: f.name, type: f.type || 'text', required: !!f.required, readonly: !!f.readonly,
        placeholder: f.placeholder, min: f.min, max: f.max, spellcheck: 'false', autocomplete: 'off',
      });
      input.value = f.value === undefined || f.value === null ? '' : String(f.value);
    }
    inputs[f.name] = input;
    return h('div', { class: f.type === 'checkbox' ? 'field check' : 'field' },
      h('label', { for: id }, f.label), input, f.hint ? h('small', { class: 'muted' }, f.hint) : null);
  }));
  if ((await dialogResult(byId('edit'))) !== 'ok') return null;
  const out = {};
  for (const [name, input] of Object.entries(inputs)) out[name] = input.type === 'checkbox' ? input.checked : input.value.trim();
  return out;
}

// --- actions -----------------------------------------------------------------------------

function serviceFields(svc) {
  const check = svc && svc.check;
  return [
    { name: 'name', label: 'Name', value: svc ? svc.name : '', required: true, readonly: !!svc },
    { name: 'vip', label: 'VIP', value: svc ? svc.vip : '', placeholder: '192.0.2.6', hint: 'empty for a firewall-mark service' },
    { name: 'port', label: 'Port', type: 'number', min: 0, max: 65535, value: svc ? svc.port : '' },
    { name: 'protocol', label: 'Protocol', type: 'select', options: ['tcp', 'udp', 'sctp'], value: (svc && svc.protocol) || 'tcp' },
    { name: 'fwmark', label: 'Firewall mark', type: 'number', min: 0, value: svc && svc.fwmark ? svc.fwmark : '', hint: 'instead of VIP and port' },
    { name: 'scheduler', label: 'Scheduler', type: 'select', options: ['', ...schedulers], value: (svc && svc.scheduler) || '' },
    { name: 'forwarding', label: 'Forwarding', type: 'select', options: ['', 'dr', 'nat', 'tun'], value: (svc && svc.forwarding) || '' },
    { name: 'persistence', label: 'Persistence timeout', value: svc && svc.persistence ? svc.persistence.timeout : '', placeholder: '300s', hint: 'empty: not persistent' },
    { name: 'check', label: 'Health check', type: 'select', options: ['', 'none', 'tcp', 'http', 'https', 'icmp'], value: check ? check.type : '', hint: svc ? 'other check settings are kept' : '' },
    { name: 'path', label: 'Check path (http)', value: check ? check.path : '', placeholder: '/' },
    { name: 'expect', label: 'Check expects (substring)', value: check ? check.expect : '' },
    { name: 'quiescent', label: 'Quiescent (weight 0 instead of removal when down)', type: 'checkbox', value: svc && svc.quiescent },
  ];
}

// serviceBody overlays the form on the service it edits, so what the form does not show
// (thresholds, fallback, scheduler flags, check timings) is kept. No "reals": the API keeps them.
function serviceBody(old, v) {
  const body = old ? structuredClone(old) : {};
  delete body.health;
  delete body.reals;
  body.name = v.name;
  const set = (k, val) => { if (val === '' || val === undefined) delete body[k]; else body[k] = val; };
  set('vip', v.vip);
  set('port', v.port === '' ? '' : Number(v.port));
  set('fwmark', v.fwmark === '' || v.fwmark === '0' ? '' : Number(v.fwmark));
  set('protocol', body.fwmark ? '' : v.protocol);
  set('scheduler', v.scheduler);
  set('forwarding', v.forwarding);
  body.quiescent = v.quiescent;
  if (v.persistence) body.persistence = { ...(body.persistence || {}), timeout: v.persistence };
  else delete body.persistence;
  if (!v.check) delete body.check;
  else {
    const keep = body.check && body.check.type === v.check ? body.check : {};
    body.check = { ...keep, type: v.check };
    for (const k of ['path', 'expect']) {
      if (v[k]) body.check[k] = v[k];
      else delete body.check[k];
    }
  }
  return body;
}

async function editService(svc) {
  const v = await form(svc ? `Edit service ${svc.name}` : 'Add service', serviceFields(svc));
  if (!v) return;
  const body = serviceBody(svc, v);
  await perform(svc ? 'Replace service?' : 'Create service?',
    svc ? `Service ${svc.name} will be replaced; its real servers are kept.` : `Service ${v.name} will be created.`,
    'PUT', path('services', v.name), body);
}

async function removeService(svc) {
  await perform('Remove service?', `Service ${svc.name} and its ${(svc.reals || []).length} real servers leave every director's IPVS table.`,
    'DELETE', path('services', svc.name));
}

async function addReal(svc) {
  const v = await form(`Add a real server to ${svc.name}`, [
    { name: 'id', label: 'Address', required: true, placeholder: '192.0.2.21 or 192.0.2.21:8080', hint: `the port defaults to the service's (${svc.port || 'none'})` },
    { name: 'weight', label: 'Weight', type: 'number', min: 0, max: 65535, placeholder: '1' },
    { name: 'admin', label: 'Admin state', type: 'select', options: ['enabled', 'draining', 'disabled'], value: 'enabled' },
  ]);
  if (!v) return;
  const body = { admin: v.admin };
  if (v.weight !== '') body.weight = Number(v.weight);
  await perform('Add real server?', `${v.id} joins ${svc.name}.`, 'PUT', path('services', svc.name, 'reals', v.id), body);
}

async function removeReal(svc, id) {
  await perform('Remove real server?', `${id} leaves ${svc.name} (drained first, then removed).`,
    'DELETE', path('services', svc.name, 'reals', id));
}

async function setAdmin(svc, id, admin) {
  const what = { draining: 'takes no new connections; existing ones finish', enabled: 'takes connections again', disabled: 'is taken out at once' }[admin];
  await perform(`Set ${id} ${admin}?`, `${id} in ${svc.name} ${what}.`,
    'PUT', path('services', svc.name, 'reals', id, 'admin'), { admin });
}

async function setWeight(svc, id, weight) {
  const v = await form(`Weight of ${id}`, [{ name: 'weight', label: 'Weight (0–65535)', type: 'number', min: 0, max: 65535, value: weight, required: true }]);
  if (!v) return;
  await perform('Change weight?', `${id} in ${svc.name} gets weight ${v.weight}.`,
    'PUT', path('services', svc.name, 'reals', id, 'weight'), { weight: Number(v.weight) });
}

async function transferLeadership() {
  const st = state.status;
  const voters = (st.peers || []).filter((p) => p.voter && !p.leader).map((p) => p.id);
  const v = await form('Transfer leadership', [
    { name: 'id', label: 'New leader', type: 'select', options: ['', ...voters], value: '', hint: '(default): the most up-to-date follower' },
  ]);
  if (!v) return;
  await perform('Transfer leadership?', `${st.leader_id || 'The leader'} hands leadership to ${v.id || 'the most up-to-date follower'}; the VIPs move with it.`,
    'POST', '/v1/operator/raft/transfer-leadership', v.id ? { id: v.id } : {});
}

// --- wiring ------------------------------------------------------------------------------

byId('login-form').addEventListener('submit', login);
byId('logout').addEventListener('click', () => showLogin('Logged out.'));
byId('error-close').addEventListener('click', () => { byId('error').hidden = true; });
byId('add-service').addEventListener('click', () => editService(null));
byId('transfer').addEventListener('click', transferLeadership);
window.addEventListener('hashchange', route);

if (session.loggedIn()) start();
else showLogin('');
