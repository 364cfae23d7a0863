/**
 * One run in a main-area tab: its DAG, a step table, the selected step's full log and
 * its artifacts with previews and a `Client()` snippet. Polls while the run is active.
 */

import { Clipboard } from '@jupyterlab/apputils';
import { Panel, Widget } from '@lumino/widgets';

import { api, IArtifactPreview, IRunDetail, IStepDetail } from './api';
import { DagView } from './dagview';
import { fill, h, statusBadge } from './dom';
import { formatBytes, formatDuration, pollDelay, stepSummary } from './format';

/** The repr while it fits a line; indented JSON for anything longer. */
export function previewText(p: IArtifactPreview): string {
  if (p.repr !== null && (p.json === null || p.repr.length <= 100)) {
    return p.repr;
  }
  return p.json ?? p.repr ?? p.error ?? '';
}

export class RunDetail extends Panel {
  constructor(readonly runId: string) {
    super();
    this.addClass('jp-dynpipe-detail');
    this.id = `dynpipe-run-${runId}`;
    this.title.label = `run ${runId.slice(0, 8)}`;
    this.title.closable = true;
    this._header = h('div', { class: 'jp-dynpipe-detail-header' });
    this._dag = new DagView({ details: false });
    this._dag.onSelect = id => void this.selectStep(id);
    this._table = h('table', {
      class: 'jp-dynpipe-steps',
      'aria-label': 'steps'
    });
    this._stepPane = h('div', {
      class: 'jp-dynpipe-step-pane',
      'aria-live': 'polite'
    });
    this.addWidget(new Widget({ node: this._header }));
    this.addWidget(this._dag);
    const lower = h(
      'div',
      { class: 'jp-dynpipe-lower' },
      this._table,
      this._stepPane
    );
    this.addWidget(new Widget({ node: lower }));
  }

  get detail(): IRunDetail | null {
    return this._detail;
  }

  async refresh(): Promise<void> {
    window.clearTimeout(this._timer);
    try {
      const detail = await api.run(this.runId);
      this._detail = detail;
      this.title.label = detail.run.name;
      this._renderHeader(detail);
      this._dag.setPayload(detail.dag);
      this._renderTable(detail.steps);
      if (this._step) {
        await this._renderStep(this._step, detail.run.active);
      }
      if (detail.run.active && !this.isDisposed) {
        this._timer = window.setTimeout(
          () => void this.refresh(),
          pollDelay(true)
        );
      }
    } catch (err) {
      this._header.replaceChildren(
        h('div', { class: 'jp-dynpipe-error' }, String(err))
      );
    }
  }

  async selectStep(id: string): Promise<void> {
    this._step = id;
    this._dag.select(id);
    for (const row of Array.from(
      this._table.querySelectorAll('tr[data-step]')
    )) {
      row.classList.toggle(
        'jp-mod-selected',
        row.getAttribute('data-step') === id
      );
    }
    await this._renderStep(id, false);
  }

  protected onAfterAttach(): void {
    void this.refresh();
  }

  dispose(): void {
    window.clearTimeout(this._timer);
    super.dispose();
  }

  private _renderHeader(d: IRunDetail): void {
    const r = d.run;
    fill(
      this._header,
      h('h2', {}, r.name, ' ', statusBadge(r.status)),
      h(
        'div',
        { class: 'jp-dynpipe-muted' },
        `pipeline ${r.pipeline} · ${stepSummary(r.step_counts)} · ` +
          `${r.active ? 'active for' : 'took'} ${formatDuration(r.active_seconds)}` +
          (r.start
            ? ` · started ${new Date(r.start * 1000).toLocaleString()}`
            : '')
      ),
      r.error ? h('pre', { class: 'jp-dynpipe-error' }, r.error) : null
    );
  }

  private _renderTable(steps: IStepDetail[]): void {
    const head = h(
      'tr',
      {},
      ...['step', 'status', 'attempts', 'duration', 'cache', 'runtime'].map(t =>
        h('th', { scope: 'col' }, t)
      )
    );
    const rows = steps.map(st => {
      const tr = h(
        'tr',
        {
          'data-step': st.id,
          tabindex: '0',
          class: st.id === this._step ? 'jp-mod-selected' : ''
        },
        h('td', {}, st.id),
        h('td', {}, statusBadge(st.status)),
        h('td', {}, String(st.attempts)),
        h('td', {}, formatDuration(st.duration)),
        h('td', {}, st.cache ?? '—'),
        h('td', {}, st.runtime ?? '—')
      );
      tr.addEventListener('click', () => void this.selectStep(st.id));
      tr.addEventListener('keydown', ev => {
        if (ev.key === 'Enter' || ev.key === ' ') {
          ev.preventDefault();
          void this.selectStep(st.id);
        }
      });
      return tr;
    });
    this._table.replaceChildren(h('thead', {}, head), h('tbody', {}, ...rows));
  }

  private async _renderStep(id: string, quiet: boolean): Promise<void> {
    const step = this._detail?.steps.find(s => s.id === id);
    if (!step) {
      return;
    }
    const log = await api.log(this.runId, id);
    if (this._step !== id) {
      return;
    }
    const logPre = h('pre', {
      class: 'jp-dynpipe-log',
      tabindex: '0',
      'aria-label': `log of ${id}`
    });
    logPre.textContent =
      (log.truncated
        ? `… (showing the last ${log.logs.length} of ${log.chars} characters)\n`
        : '') + (log.logs || '(no output)');
    const parts: (Node | null)[] = [
      h('h3', {}, `${id} `, statusBadge(step.status)),
      step.traceback
        ? h('pre', { class: 'jp-dynpipe-error' }, step.traceback)
        : null,
      h('h4', {}, 'log'),
      logPre,
      h('h4', {}, 'artifacts')
    ];
    if (!step.outputs.length) {
      parts.push(h('div', { class: 'jp-dynpipe-muted' }, 'no outputs'));
    }
    const previews =
      quiet && this._previews.has(id)
        ? (this._previews.get(id) as IArtifactPreview[])
        : await Promise.all(step.outputs.map(o => api.artifact(o.id)));
    this._previews.set(id, previews);
    if (this._step !== id) {
      return;
    }
    parts.push(
      ...previews.map((p, i) => this._artifact(step.outputs[i].name, p))
    );
    fill(this._stepPane, ...parts);
  }

  private _artifact(output: string, p: IArtifactPreview): HTMLElement {
    const copy = h(
      'button',
      {
        class: 'jp-dynpipe-button',
        title: 'Copy the snippet that loads this artifact'
      },
      'Copy'
    );
    copy.addEventListener('click', () => {
      Clipboard.copyToSystem(p.snippet);
      copy.textContent = 'Copied';
    });
    let body: HTMLElement;
    if (p.table) {
      body = h(
        'table',
        { class: 'jp-dynpipe-preview-table' },
        h(
          'thead',
          {},
          h('tr', {}, ...p.table.columns.map(c => h('th', {}, c)))
        ),
        h(
          'tbody',
          {},
          ...p.table.rows.map(r => h('tr', {}, ...r.map(v => h('td', {}, v))))
        )
      );
    } else {
      body = h('pre', { class: 'jp-dynpipe-preview' }, previewText(p));
    }
    return h(
      'section',
      { class: 'jp-dynpipe-artifact', 'data-artifact': p.id },
      h(
        'div',
        {},
        h('strong', {}, output),
        ` → ${p.name} v${p.version} · ${p.type} · ${formatBytes(p.size)}`
      ),
      p.error && (p.table || p.json || p.repr)
        ? h('div', { class: 'jp-dynpipe-error' }, p.error)
        : null,
      body,
      p.truncated
        ? h('div', { class: 'jp-dynpipe-muted' }, 'preview truncated')
        : null,
      h('div', { class: 'jp-dynpipe-snippet' }, h('pre', {}, p.snippet), copy)
    );
  }

  private _header: HTMLDivElement;
  private _dag: DagView;
  private _table: HTMLTableElement;
  private _stepPane: HTMLDivElement;
  private _detail: IRunDetail | null = null;
  private _step: string | null = null;
  private _previews = new Map<string, IArtifactPreview[]>();
  private _timer = 0;
}
