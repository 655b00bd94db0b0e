// views/markdown.js — a message's text as Markdown (bold, italics, code, code
// blocks, links, quotes), drawn by the vendored markdown-it (vendor/, loaded by
// index.html as a classic script) configured never to emit raw HTML: `html:
// false` escapes any tag in the text, and links it does not trust
// (javascript:, data:…) stay text. Only its output is ever given to innerHTML.
// Mentions (@username) are then marked in the text nodes it drew.

const md = globalThis.markdownit({ html: false, linkify: true, breaks: true, typographer: false });
md.disable(['image', 'heading', 'lheading', 'table', 'hr']); // a chat line, not a page

const openLink = md.renderer.rules.link_open
  ?? ((tokens, i, options, env, self) => self.renderToken(tokens, i, options));
md.renderer.rules.link_open = (tokens, i, options, env, self) => {
  tokens[i].attrSet('target', '_blank');
  tokens[i].attrSet('rel', 'noopener noreferrer');
  return openLink(tokens, i, options, env, self);
};

const MENTION = /(^|[^\w@])@([A-Za-z0-9_.-]{1,32})/g;

/**
 * A fragment drawing `text`. `me` (a username, lowercase) gets the stronger
 * mark, and so does `@here`.
 */
export function renderMarkdown(text, { me = null } = {}) {
  const template = document.createElement('template');
  template.innerHTML = md.render(text).trimEnd(); // no newline after the last block
  markMentions(template.content, me);
  return template.content;
}

function markMentions(root, me) {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const nodes = [];
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.parentElement?.closest('code, pre, a') && node.data.includes('@')) nodes.push(node);
  }
  for (const node of nodes) {
    const parts = [];
    let last = 0;
    for (const match of node.data.matchAll(MENTION)) {
      const start = match.index + match[1].length;
      parts.push(document.createTextNode(node.data.slice(last, start)));
      const name = match[2].replace(/[.-]+$/, '');
      const span = document.createElement('span');
      const lower = name.toLowerCase();
      span.className = lower === me || lower === 'here' ? 'mention mention-me' : 'mention';
      span.textContent = `@${name}`;
      parts.push(span);
      last = start + 1 + name.length;
    }
    if (!parts.length) continue;
    parts.push(document.createTextNode(node.data.slice(last)));
    node.replaceWith(...parts);
  }
}

/** Whether `text` mentions `me` (a lowercase username). */
export function mentions(text, me) {
  if (!me) return false;
  for (const match of text.matchAll(MENTION)) {
    const name = match[2].replace(/[.-]+$/, '').toLowerCase();
    if (name === me || name === 'here') return true;
  }
  return false;
}
