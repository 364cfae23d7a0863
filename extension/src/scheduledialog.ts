/**
 * "Schedule this notebook…": a dialog with the schedule's name, cron (with the server's
 * preview of the next fire times), time zone, the notebook's `parameters` cell prefilled,
 * and the target. The server exports the notebook and creates the schedule exactly as
 * `dynpipe schedule create` would; a refusal re-opens the dialog with the reason.
 */

import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { api, INotebookParameter, IScheduleRequest, ISchedule } from './api';
import { h } from './dom';
import { defaultScheduleName } from './format';

/** Milliseconds the preview waits after the last keystroke before asking the server. */
const PREVIEW_DELAY = 300;

export interface IScheduleValues {
  name: string;
  cron: string;
  timezone: string;
  params: Record<string, string>;
}

function browserTimeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch {
    return 'UTC';
  }
}

export class ScheduleForm
  extends Widget
  implements Dialog.IBodyWidget<IScheduleValues>
{
  constructor(
    values: IScheduleValues,
    parameters: INotebookParameter[],
    error = ''
  ) {
    super();
    this.addClass('jp-dynpipe-schedule-form');
    const field = (
      label: string,
      input: HTMLElement,
      hint?: HTMLElement
    ): HTMLElement =>
      h(
        'label',
        { class: 'jp-dynpipe-field' },
        h('span', {}, label),
        input,
        hint ?? null
      );
    this._name = h('input', {
      class: 'jp-mod-styled jp-dynpipe-schedule-name',
      'aria-label': 'Schedule name',
      value: values.name
    });
    this._cron = h('input', {
      class: 'jp-mod-styled jp-dynpipe-schedule-cron',
      'aria-label': 'Cron expression',
      placeholder: '0 3 * * *  or  @daily',
      value: values.cron
    });
    this._timezone = h('input', {
      class: 'jp-mod-styled jp-dynpipe-schedule-timezone',
      'aria-label': 'Time zone',
      list: 'jp-dynpipe-timezones',
      value: values.timezone
    });
    const zones = h('datalist', { id: 'jp-dynpipe-timezones' });
    const intl = Intl as unknown as {
      supportedValuesOf?: (key: string) => string[];
    };
    for (const zone of intl.supportedValuesOf?.('timeZone') ?? ['UTC']) {
      zones.append(h('option', { value: zone }));
    }
    this._preview = h('ul', {
      class: 'jp-dynpipe-schedule-preview',
      'aria-live': 'polite',
      'aria-label': 'Next fire times'
    });
    const target = h(
      'select',
      {
        class: 'jp-mod-styled jp-dynpipe-schedule-target',
        'aria-label': 'Target'
      },
      h('option', { value: 'local' }, 'local (dynpipe scheduler)')
    );
    const k8s = h(
      'option',
      { value: 'kubernetes', disabled: 'true' },
      'Kubernetes CronJob (use: dynpipe schedule kubernetes)'
    );
    target.append(k8s);
    const params = h('table', { class: 'jp-dynpipe-schedule-params' });
    for (const p of parameters) {
      const input = h('input', {
        class: 'jp-mod-styled',
        'data-param': p.name,
        'aria-label': `Parameter ${p.name}`,
        value: values.params[p.name] ?? p.value
      });
      this._params.push(input);
      params.append(
        h(
          'tr',
          {},
          h('th', {}, p.annotation ? `${p.name}: ${p.annotation}` : p.name),
          h('td', {}, input)
        )
      );
    }
    this._error = h(
      'div',
      { class: 'jp-dynpipe-error jp-dynpipe-schedule-error', role: 'alert' },
      error
    );
    this._error.hidden = !error;
    this.node.append(
      field('Name', this._name),
      field('Cron', this._cron, this._preview),
      field('Time zone', this._timezone),
      zones,
      parameters.length
        ? h(
            'fieldset',
            {},
            h('legend', {}, 'Parameters (from the parameters cell)'),
            params
          )
        : h(
            'p',
            { class: 'jp-dynpipe-muted' },
            'The notebook has no cell tagged "parameters".'
          ),
      field('Target', target),
      this._error
    );
    for (const input of [this._cron, this._timezone]) {
      input.addEventListener('input', () => this._schedulePreview());
    }
    this._schedulePreview(0);
  }

  getValue(): IScheduleValues {
    const params: Record<string, string> = {};
    for (const input of this._params) {
      params[input.dataset.param ?? ''] = input.value;
    }
    return {
      name: this._name.value.trim(),
      cron: this._cron.value.trim(),
      timezone: this._timezone.value.trim() || 'UTC',
      params
    };
  }

  dispose(): void {
    window.clearTimeout(this._timer);
    super.dispose();
  }

  private _schedulePreview(delay = PREVIEW_DELAY): void {
    window.clearTimeout(this._timer);
    this._timer = window.setTimeout(() => void this._updatePreview(), delay);
  }

  private async _updatePreview(): Promise<void> {
    const { cron, timezone } = this.getValue();
    const asked = ++this._asked;
    if (!cron) {
      this._preview.replaceChildren();
      return;
    }
    try {
      const times = await api.preview(cron, timezone);
      if (asked === this._asked) {
        this._preview.dataset.state = 'ok';
        this._preview.replaceChildren(
          h(
            'li',
            { class: 'jp-dynpipe-muted jp-dynpipe-preview-head' },
            `Next runs (${timezone}):`
          ),
          ...times.next.map(t => h('li', {}, t.local))
        );
      }
    } catch (err) {
      if (asked === this._asked) {
        this._preview.dataset.state = 'error';
        this._preview.replaceChildren(
          h(
            'li',
            { class: 'jp-dynpipe-error' },
            String(err).replace(/^Error: dynpipe API [^:]*: \d+ /, '')
          )
        );
      }
    }
  }

  private _name: HTMLInputElement;
  private _cron: HTMLInputElement;
  private _timezone: HTMLInputElement;
  private _preview: HTMLUListElement;
  private _error: HTMLDivElement;
  private _params: HTMLInputElement[] = [];
  private _timer = 0;
  private _asked = 0;
}

/** Show the dialog for the saved notebook at `path` until a schedule is made or it is cancelled. */
export async function scheduleNotebook(
  path: string
): Promise<ISchedule | undefined> {
  let parameters: INotebookParameter[] = [];
  let error = '';
  try {
    parameters = (await api.notebookParameters(path)).parameters;
  } catch (err) {
    error = String(err);
  }
  let values: IScheduleValues = {
    name: defaultScheduleName(path),
    cron: '@daily',
    timezone: browserTimeZone(),
    params: {}
  };
  for (;;) {
    const result = await showDialog({
      title: `Schedule ${path}`,
      body: new ScheduleForm(values, parameters, error),
      buttons: [
        Dialog.cancelButton(),
        Dialog.okButton({ label: 'Create schedule' })
      ],
      focusNodeSelector: '.jp-dynpipe-schedule-name'
    });
    if (!result.button.accept || result.value === null) {
      return undefined;
    }
    values = result.value;
    const request: IScheduleRequest = { path, ...values, target: 'local' };
    try {
      const made = await api.schedule(request);
      Notification.success(
        `dynpipe: schedule ${made.name} created (${made.module}); next run ${made.next ?? '-'} while 'dynpipe scheduler' runs`,
        { autoClose: 8000 }
      );
      return made;
    } catch (err) {
      error = String(err);
    }
  }
}
