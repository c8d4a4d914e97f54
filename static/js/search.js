// The small find box (Ctrl+Shift+F): Enter / Shift+Enter for next / previous, Escape closes.

const DECORATIONS = {
  matchBackground: '#3b4a5e',
  matchOverviewRuler: '#8da2bf',
  activeMatchBackground: '#b58a2a',
  activeMatchColorOverviewRuler: '#e5c07b',
};

export class SearchBox {
  /**
   * @param {HTMLFormElement} form  holds input[name=query], an output for the count
   *   and buttons with data-find="next|previous|close"
   * @param {import('../vendor/xterm/xterm.mjs').Terminal} term
   * @param {import('../vendor/addon-search/addon-search.mjs').SearchAddon} search
   */
  constructor(form, term, search) {
    this._form = form;
    this._input = form.elements.namedItem('query');
    this._count = form.querySelector('output');
    this._term = term;
    this._search = search;
    search.onDidChangeResults(({ resultIndex, resultCount }) => this._showCount(resultIndex, resultCount));
    form.addEventListener('submit', (event) => event.preventDefault());
    this._input.addEventListener('input', () => this._find('next', true));
    this._input.addEventListener('keydown', (event) => this._key(event));
    form.addEventListener('click', (event) => {
      const which = event.target.closest('[data-find]')?.dataset.find;
      if (which === 'close') this.close();
      else if (which) this._find(which);
    });
  }

  open() {
    this._form.hidden = false;
    const selection = this._term.getSelection();
    if (selection && !selection.includes('\n')) this._input.value = selection;
    this._input.focus();
    this._input.select();
  }

  close() {
    this._form.hidden = true;
    this._search.clearDecorations();
    this._term.focus();
  }

  _key(event) {
    if (event.key === 'Escape') {
      event.preventDefault();
      this.close();
    } else if (event.key === 'Enter') {
      event.preventDefault();
      this._find(event.shiftKey ? 'previous' : 'next');
    }
  }

  _find(which, incremental = false) {
    const query = this._input.value;
    if (!query) {
      this._search.clearDecorations();
      this._count.value = '';
      return;
    }
    const options = { decorations: DECORATIONS, incremental };
    if (which === 'previous') this._search.findPrevious(query, options);
    else this._search.findNext(query, options);
  }

  _showCount(index, count) {
    if (count === 0) this._count.value = 'no matches';
    else if (index < 0) this._count.value = `${count}+ matches`;
    else this._count.value = `${index + 1} of ${count}`;
  }
}
