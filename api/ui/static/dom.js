// DOM helpers. Nothing in the console parses HTML: every element is made with createElement and
// every piece of data goes in as text (textContent or a Text node), so a service name or a
// health-check reason can never become markup or script.

// h makes an element: h('td', { class: 'num', 'data-label': 'Weight' }, '2'). Attributes named
// on... with a function value become event listeners; null, undefined and false are skipped.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// table makes a table whose cells carry their column's name (data-label), which the narrow
// layout shows beside each value instead of a header row.
export function table(columns, rows, attrs) {
  return h('table', attrs,
    h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', null, rows.map((row) => h('tr', row.attrs,
      row.cells.map((cell, i) => h('td', { 'data-label': columns[i] }, cell))))));
}

export function badge(text, kind) {
  return h('span', { class: `badge ${kind || text}` }, text);
}

export function byId(id) {
  return document.getElementById(id);
}
