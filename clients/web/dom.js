// dom.js — small DOM helpers shared by the shell and the views.

export const $ = (selector, root = document) => root.querySelector(selector);

/** Build an element; children are nodes or strings (always text, never HTML). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('aria') || key === 'role') node.setAttribute(ariaName(key), value);
    else node[key] = value;
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

const ariaName = (key) => (key === 'role' ? key : key.replace(/^aria/, 'aria-').toLowerCase());

/** A <time> showing the hour today and the date before today; the full date on hover. */
export function timeElement(ts) {
  const date = new Date(ts);
  const today = date.toDateString() === new Date().toDateString();
  const style = today ? { timeStyle: 'short' } : { dateStyle: 'medium', timeStyle: 'short' };
  const text = date.toLocaleString([], style);
  return el('time', { dateTime: date.toISOString(), title: date.toLocaleString() }, text);
}

/** A random nonce: 32 hex digits. */
export function nonce() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** "99+" for counts at the cap. */
export const countText = (n, cap) => (n >= cap ? `${cap - 1}+` : String(n));
