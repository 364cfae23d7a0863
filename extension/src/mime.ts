/**
 * The MIME renderer for `application/vnd.dynpipe.dag+json`: a saved notebook shows each
 * `%%pipeline` cell's DAG interactively with no kernel and no server call.
 */

import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Panel, Widget } from '@lumino/widgets';

import { DagView } from './dagview';
import { DAG_MIME_TYPE, parsePayload } from './payload';

export class DagRenderer extends Panel implements IRenderMime.IRenderer {
  constructor(private _mimeType: string) {
    super();
    this.addClass('jp-dynpipe-mime');
    this._error = new Widget({ node: document.createElement('pre') });
    this._error.addClass('jp-dynpipe-error');
    this._view = new DagView();
    this.addWidget(this._error);
    this.addWidget(this._view);
  }

  renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    try {
      const payload = parsePayload(model.data[this._mimeType]);
      this._error.node.textContent = '';
      this._error.hide();
      this._view.show();
      this._view.setPayload(payload);
    } catch (err) {
      this._error.node.textContent = String(err);
      this._error.show();
      this._view.hide();
    }
    return Promise.resolve();
  }

  private _view: DagView;
  private _error: Widget;
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
