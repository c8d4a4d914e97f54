// The xterm.js Terminal with its addons, theme and clipboard keys.

import { Terminal } from '../vendor/xterm/xterm.mjs';
import { FitAddon } from '../vendor/addon-fit/addon-fit.mjs';
import { SearchAddon } from '../vendor/addon-search/addon-search.mjs';
import { Unicode11Addon } from '../vendor/addon-unicode11/addon-unicode11.mjs';
import { WebLinksAddon } from '../vendor/addon-web-links/addon-web-links.mjs';
import { WebglAddon } from '../vendor/addon-webgl/addon-webgl.mjs';

const THEME = {
  background: '#16181d',
  foreground: '#d7dae0',
  cursor: '#e6e6e6',
  cursorAccent: '#16181d',
  selectionBackground: '#3a4556',
  black: '#1e2127',
  red: '#e06c75',
  green: '#98c379',
  yellow: '#d19a66',
  blue: '#61afef',
  magenta: '#c678dd',
  cyan: '#56b6c2',
  white: '#abb2bf',
  brightBlack: '#5c6370',
  brightRed: '#f07a83',
  brightGreen: '#b5e08f',
  brightYellow: '#e5c07b',
  brightBlue: '#7cc2ff',
  brightMagenta: '#de93f0',
  brightCyan: '#6fd3df',
  brightWhite: '#ffffff',
};

const FONT_FAMILY = '"DejaVu Sans Mono", "Noto Sans Mono", "Liberation Mono", Menlo, Consolas, monospace';

function openLink(event, uri) {
  event.preventDefault();
  window.open(uri, '_blank', 'noopener,noreferrer');
}

/**
 * Create the terminal inside `container`. Returns {term, fit, search, renderer}
 * where renderer is 'webgl' or 'dom' (WebGL is missing in headless browsers
 * and on some GPUs; xterm's DOM renderer is the fallback). `readOnly`: a
 * viewer's terminal, which takes no keyboard input.
 */
export function createTerminal(container, { readOnly = false } = {}) {
  const term = new Terminal({
    allowProposedApi: true, // the unicode11 addon needs term.unicode
    cursorBlink: !readOnly,
    disableStdin: readOnly,
    fontFamily: FONT_FAMILY,
    fontSize: 14,
    scrollback: 5000,
    theme: THEME,
  });
  const fit = new FitAddon();
  const search = new SearchAddon();
  term.loadAddon(fit);
  term.loadAddon(search);
  term.loadAddon(new WebLinksAddon(openLink));
  term.loadAddon(new Unicode11Addon());
  term.unicode.activeVersion = '11';
  term.open(container);
  return { term, fit, search, renderer: loadWebgl(term) };
}

function loadWebgl(term) {
  try {
    const webgl = new WebglAddon();
    // Disposing the addon hands rendering back to the DOM renderer.
    webgl.onContextLoss(() => webgl.dispose());
    term.loadAddon(webgl);
    return 'webgl';
  } catch (error) {
    console.info('termweb: WebGL renderer unavailable, using the DOM renderer', error);
    return 'dom';
  }
}

/** Copy the selection: the async clipboard API where allowed, else xterm's own copy handler. */
export function copySelection(term) {
  const text = term.getSelection();
  if (!text) return;
  const fallback = () => {
    term.focus();
    document.execCommand('copy'); // xterm's textarea answers the copy event with its selection
  };
  if (navigator.clipboard?.writeText) navigator.clipboard.writeText(text).catch(fallback);
  else fallback();
}

/**
 * Terminal-style shortcuts with Ctrl+Shift, so plain Ctrl+C/V still reach the
 * shell: Ctrl+Shift+C copies, Ctrl+Shift+V pastes (the browser's own paste
 * event, which xterm handles), and the extra `shortcuts` by lower-case key.
 */
export function bindKeys(term, shortcuts) {
  term.attachCustomKeyEventHandler((event) => {
    if (!(event.ctrlKey && event.shiftKey) || event.altKey || event.metaKey) return true;
    const key = event.key.toLowerCase();
    if (key === 'v') return false; // not preventDefault: the browser pastes
    const action = key === 'c' ? () => copySelection(term) : shortcuts[key];
    if (!action) return true;
    event.preventDefault();
    if (event.type === 'keydown') action();
    return false;
  });
}
