/**
 * The dynpipe JupyterLab plugin: the runs sidebar, run tabs and the commands
 * "Show dynpipe runs", "Export notebook to pipeline module" and "Schedule this notebook…"
 * (palette, notebook toolbar, and the runs panel).
 */

import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  MainAreaWidget,
  Notification,
  WidgetTracker
} from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { CommandToolbarButton, LabIcon } from '@jupyterlab/ui-components';

import { api } from './api';
import { RunDetail } from './rundetail';
import { RunsPanel } from './runspanel';
import { scheduleNotebook } from './scheduledialog';

export const CommandIDs = {
  showRuns: 'dynpipe:show-runs',
  openRun: 'dynpipe:open-run',
  exportNotebook: 'dynpipe:export-notebook',
  scheduleNotebook: 'dynpipe:schedule-notebook'
};

const icon = new LabIcon({
  name: 'dynpipe:runs',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<rect x="9" y="2" width="6" height="5" rx="1"/><rect x="2" y="16" width="6" height="5" rx="1"/>' +
    '<rect x="16" y="16" width="6" height="5" rx="1"/>' +
    '<path d="M11.3 7h1.4v4H19v5h-1.4v-3.6H6.4V16H5v-5h6.3z"/></g></svg>'
});

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'dynpipe:plugin',
  description: 'dynpipe runs panel, run views and commands.',
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer, INotebookTracker],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    notebooks: INotebookTracker | null
  ) => {
    const tracker = new WidgetTracker<MainAreaWidget<RunDetail>>({
      namespace: 'dynpipe-run'
    });
    const panel = new RunsPanel(
      id => void app.commands.execute(CommandIDs.openRun, { id }),
      () => void app.commands.execute(CommandIDs.scheduleNotebook)
    );
    panel.title.icon = icon;
    app.shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, 'dynpipe-runs');

    app.commands.addCommand(CommandIDs.showRuns, {
      label: 'Show dynpipe runs',
      caption: 'Open the dynpipe runs panel',
      execute: () => {
        app.shell.activateById(panel.id);
      }
    });

    app.commands.addCommand(CommandIDs.openRun, {
      label: args => `Open dynpipe run ${String(args.id ?? '')}`,
      execute: args => {
        const id = String(args.id ?? '');
        const existing = tracker.find(w => w.content.runId === id);
        if (existing) {
          app.shell.activateById(existing.id);
          void existing.content.refresh();
          return existing;
        }
        const widget = new MainAreaWidget({ content: new RunDetail(id) });
        widget.id = `dynpipe-run-${id}`;
        widget.title.icon = icon;
        widget.title.label = `run ${id.slice(0, 8)}`;
        widget.content.title.changed.connect(() => {
          widget.title.label = widget.content.title.label;
        });
        void tracker.add(widget);
        app.shell.add(widget, 'main');
        app.shell.activateById(widget.id);
        return widget;
      }
    });
    restorer?.restore(tracker, {
      command: CommandIDs.openRun,
      args: w => ({ id: w.content.runId }),
      name: w => w.content.runId
    });

    app.commands.addCommand(CommandIDs.exportNotebook, {
      label: 'Export notebook to pipeline module',
      caption:
        "Write the notebook's %%pipeline cells as a runnable module beside it",
      isEnabled: () => !!notebooks?.currentWidget,
      execute: async () => {
        const current = notebooks?.currentWidget;
        if (!current) {
          return;
        }
        try {
          await current.context.save();
          const result = await api.exportNotebook(current.context.path);
          Notification.success(`dynpipe: wrote ${result.path}`, {
            autoClose: 5000
          });
          return result;
        } catch (err) {
          Notification.error(
            `dynpipe export of ${current.context.path} failed: ${String(err)}`
          );
        }
      }
    });

    app.commands.addCommand(CommandIDs.scheduleNotebook, {
      label: 'Schedule this notebook…',
      caption:
        'Export the notebook to a pipeline module and run it on a cron schedule',
      icon,
      execute: async () => {
        const current = notebooks?.currentWidget;
        if (!current) {
          Notification.warning(
            'dynpipe: open (and focus) the notebook to schedule first'
          );
          return;
        }
        await current.context.save();
        return scheduleNotebook(current.context.path);
      }
    });

    notebooks?.widgetAdded.connect((_, nb) => {
      const button = new CommandToolbarButton({
        commands: app.commands,
        id: CommandIDs.scheduleNotebook,
        label: 'Schedule…'
      });
      if (!nb.toolbar.insertAfter('spacer', 'dynpipe-schedule', button)) {
        nb.toolbar.addItem('dynpipe-schedule', button);
      }
    });

    if (palette) {
      for (const command of [
        CommandIDs.showRuns,
        CommandIDs.exportNotebook,
        CommandIDs.scheduleNotebook
      ]) {
        palette.addItem({ command, category: 'dynpipe' });
      }
    }
  }
};

export default plugin;
