/**
 * The "dynpipe runs" sidebar: the store's runs, newest first, filtered by pipeline and
 * status, polled while visible (fast while a run is active, so progress shows live).
 * The first page is polled; "Show more runs" fetches the next older page of the API
 * (any number of them, so a store with thousands of runs can be browsed) and keeps it.
 * Older pages follow the API's `next` cursor, so runs arriving meanwhile shift nothing.
 */

import { Widget } from '@lumino/widgets';

import { api, IRunsPage, IRunSummary } from './api';
import { h, statusBadge } from './dom';
import {
  formatDuration,
  IRunFilters,
  mergeRuns,
  pollDelay,
  runsQuery,
  stepSummary,
  STATUSES
} from './format';

/** Runs per page of the API: the first is polled, older ones load per "Show more runs". */
const PAGE = 50;

export class RunsPanel extends Widget {
  constructor(
    private _open: (runId: string) => void,
    private _schedule?: () => void
  ) {
    super();
    this.id = 'dynpipe-runs';
    this.addClass('jp-dynpipe-runs');
    this.title.label = 'dynpipe runs';
    this.title.caption = 'dynpipe runs';
    this._pipeline = h('select', {
      'aria-label': 'Filter by pipeline',
      class: 'jp-dynpipe-filter-pipeline'
    });
    this._status = h('select', {
      'aria-label': 'Filter by status',
      class: 'jp-dynpipe-filter-status'
    });
    this._status.append(h('option', { value: '' }, 'all statuses'));
    for (const st of STATUSES) {
      this._status.append(h('option', { value: st }, st));
    }
    this._setPipelines([]);
    for (const select of [this._pipeline, this._status]) {
      select.addEventListener('change', () => {
        this._older = [];
        this._olderNext = null;
        this._pages = 1;
        void this.refresh();
      });
    }
    const refresh = h(
      'button',
      {
        class: 'jp-dynpipe-button',
        title: 'Refresh now',
        'aria-label': 'Refresh runs'
      },
      '⟳'
    );
    refresh.addEventListener('click', () => void this.refresh());
    this._store = h('div', { class: 'jp-dynpipe-store jp-dynpipe-muted' });
    this._list = h('ul', {
      class: 'jp-dynpipe-run-list',
      'aria-label': 'dynpipe runs'
    });
    this._message = h('div', { class: 'jp-dynpipe-message', role: 'status' });
    this._more = h(
      'button',
      { class: 'jp-dynpipe-button jp-dynpipe-more' },
      'Show more runs'
    );
    this._more.addEventListener('click', () => void this.loadMore());
    const schedule = h(
      'button',
      {
        class: 'jp-dynpipe-button jp-dynpipe-schedule',
        title: 'Schedule the current notebook…',
        'aria-label': 'Schedule this notebook'
      },
      'Schedule…'
    );
    schedule.addEventListener('click', () => this._schedule?.());
    schedule.hidden = !this._schedule;
    this.node.append(
      h(
        'div',
        { class: 'jp-dynpipe-runs-header' },
        h('h2', {}, 'dynpipe runs'),
        schedule,
        refresh
      ),
      h('div', { class: 'jp-dynpipe-filters' }, this._pipeline, this._status),
      this._store,
      this._message,
      this._list,
      this._more
    );
  }

  get filters(): IRunFilters {
    return { pipeline: this._pipeline.value, status: this._status.value };
  }

  /** Fetch once now; reschedule the next poll from the result. */
  async refresh(): Promise<void> {
    window.clearTimeout(this._timer);
    let anyActive = false;
    try {
      const page = await api.runs(runsQuery(this.filters, 1, PAGE));
      this._head = page;
      this._render();
      anyActive = page.runs.some(r => r.active);
      this._message.textContent = page.runs.length ? '' : 'No runs match.';
    } catch (err) {
      this._message.textContent = String(err);
    }
    if (!this.isDisposed && this.isVisible) {
      this._timer = window.setTimeout(
        () => void this.refresh(),
        pollDelay(anyActive)
      );
    }
  }

  /** Append the next older page (kept, not polled). */
  async loadMore(): Promise<void> {
    const after = this._pages === 1 ? this._head?.next : this._olderNext;
    if (!after) {
      return;
    }
    try {
      const page = await api.runs(runsQuery(this.filters, 1, PAGE, after));
      this._pages += 1;
      this._older = mergeRuns(this._older, page.runs);
      this._olderNext = page.next;
      this._render();
    } catch (err) {
      this._message.textContent = String(err);
    }
  }

  protected onAfterShow(): void {
    void this.refresh();
  }

  protected onBeforeHide(): void {
    window.clearTimeout(this._timer);
  }

  dispose(): void {
    window.clearTimeout(this._timer);
    super.dispose();
  }

  private _setPipelines(names: string[]): void {
    const current = this._pipeline.value;
    const key = names.join('\n');
    if (key === this._pipelinesKey && this._pipeline.options.length) {
      return;
    }
    this._pipelinesKey = key;
    this._pipeline.replaceChildren(h('option', { value: '' }, 'all pipelines'));
    for (const name of names) {
      this._pipeline.append(h('option', { value: name }, name));
    }
    this._pipeline.value = names.includes(current) ? current : '';
  }

  private _render(): void {
    const page = this._head;
    if (!page) {
      return;
    }
    this._setPipelines(page.pipelines);
    this._store.textContent = `store: ${page.store}`;
    this._more.hidden = this._pages === 1 ? !page.next : !this._olderNext;
    const runs = mergeRuns(page.runs, this._older);
    this._list.dataset.count = String(runs.length);
    const focused = document.activeElement?.getAttribute('data-run-id');
    this._list.replaceChildren(...runs.map(r => this._item(r)));
    if (focused) {
      this._list
        .querySelector<HTMLElement>(`[data-run-id="${CSS.escape(focused)}"]`)
        ?.focus();
    }
  }

  private _item(run: IRunSummary): HTMLLIElement {
    const button = h(
      'button',
      {
        class: 'jp-dynpipe-run',
        'data-run-id': run.id,
        'data-status': run.status,
        title: `Open run ${run.name}`
      },
      h('span', { class: 'jp-dynpipe-run-name' }, run.name),
      statusBadge(run.status),
      h(
        'span',
        { class: 'jp-dynpipe-run-pipeline jp-dynpipe-muted' },
        run.pipeline
      ),
      h(
        'span',
        { class: 'jp-dynpipe-run-steps' },
        stepSummary(run.step_counts)
      ),
      h(
        'span',
        { class: 'jp-dynpipe-run-time jp-dynpipe-muted' },
        formatDuration(run.active_seconds)
      ),
      run.origin
        ? h(
            'span',
            {
              class: 'jp-dynpipe-run-origin jp-dynpipe-muted',
              title: run.origin
            },
            run.origin
          )
        : null
    );
    button.addEventListener('click', () => this._open(run.id));
    return h('li', {}, button);
  }

  private _pipeline: HTMLSelectElement;
  private _status: HTMLSelectElement;
  private _store: HTMLDivElement;
  private _list: HTMLUListElement;
  private _message: HTMLDivElement;
  private _more: HTMLButtonElement;
  private _head: IRunsPage | null = null;
  private _older: IRunSummary[] = [];
  private _olderNext: string | null = null;
  private _pages = 1;
  private _pipelinesKey = '';
  private _timer = 0;
}
