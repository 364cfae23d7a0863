/**
 * The MIME renderer for `application/vnd.dynpipe.dag+json`: a saved notebook shows each
 * `%%pipeline` cell's DAG interactively with no kernel and no server call.
 */

import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { DagView } from './dagview';
import { DAG_MIME_TYPE, parsePayload } from './payload';

export class DagRenderer extends Widget implements IRenderMime.IRenderer {
  constructor(private _mimeType: string) {
    super();
    this.addClass('jp-dynpipe-mime');
    this._view = new DagView();
    this._error = document.createElement('pre');
    this._error.className = 'jp-dynpipe-error';
    this.node.append(this._error);
  }

  renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    try {
      const payload = parsePayload(model.data[this._mimeType]);
      this._error.textContent = '';
      if (!this._view.isAttached) {
        Widget.attach(this._view, this.node);
      }
      this._view.setPayload(payload);
    } catch (err) {
      this._error.textContent = String(err);
    }
    return Promise.resolve();
  }

  protected onResize(msg: Widget.ResizeMessage): void {
    this._view.processMessage(msg);
  }

  dispose(): void {
    if (this._view.isAttached) {
      Widget.detach(this._view);
    }
    this._view.dispose();
    super.dispose();
  }

  private _view: DagView;
  private _error: HTMLPreElement;
}

export const rendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [DAG_MIME_TYPE],
  // Preferred over the static SVG/PNG snapshot that sits in the same bundle, below the
  // live widget view (rank 0) while a kernel is attached.
  defaultRank: 30,
  createRenderer: options => new DagRenderer(options.mimeType)
};

const extension: IRenderMime.IExtension = {
  id: 'dynpipe:dag-renderer',
  description: 'Renders dynpipe DAGs saved in notebook outputs.',
  rendererFactory,
  rank: 30,
  dataType: 'json'
};

export default extension;
