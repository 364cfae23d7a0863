/**
 * An interactive SVG view of a DAG payload: fit, zoom (wheel, +/-), pan (drag, arrows),
 * and a details pane for the selected node. Nodes are focusable buttons, so the whole
 * graph can be walked with Tab and opened with Enter.
 */

import { Widget } from '@lumino/widgets';

import { fill, h, s, statusBadge } from './dom';
import { formatDuration } from './format';
import { ILayout, layoutDag, NODE_H, NODE_W } from './layout';
import { IDagNode, IDagPayload } from './payload';

const MIN_SCALE = 0.05;
const MAX_SCALE = 4;
const PAD = 16;

export class DagView extends Widget {
  /** Called with the id of a node the user selected (click or Enter). */
  onSelect: ((id: string) => void) | null = null;

  constructor(options: { details?: boolean } = {}) {
    super();
    this.addClass('jp-dynpipe-dag');
    this._showDetails = options.details ?? true;
    const button = (label: string, title: string, act: () => void) => {
      const b = h(
        'button',
        { class: 'jp-dynpipe-button', title, 'aria-label': title },
        label
      );
      b.addEventListener('click', act);
      return b;
    };
    this._title = h('span', { class: 'jp-dynpipe-dag-title' });
    const toolbar = h(
      'div',
      { class: 'jp-dynpipe-dag-toolbar' },
      this._title,
      button('Fit', 'Fit the graph to the view (0)', () => this.fit()),
      button('+', 'Zoom in (+)', () => this.zoomBy(1.25)),
      button('−', 'Zoom out (-)', () => this.zoomBy(0.8))
    );
    this._svg = s('svg', {
      class: 'jp-dynpipe-dag-canvas',
      tabindex: 0,
      role: 'group'
    });
    this._svg.setAttribute(
      'aria-label',
      'pipeline DAG: arrows pan, + and - zoom, 0 fits'
    );
    this._root = s('g');
    this._svg.append(this._root);
    this._details = h('div', {
      class: 'jp-dynpipe-dag-details',
      'aria-live': 'polite'
    });
    this.node.append(toolbar, this._svg);
    if (this._showDetails) {
      this.node.append(this._details);
    }
    this._svg.addEventListener('wheel', this._onWheel, { passive: false });
    this._svg.addEventListener('pointerdown', this._onPointerDown);
    this._svg.addEventListener('keydown', this._onKey);
  }

  get payload(): IDagPayload | null {
    return this._payload;
  }

  get selected(): string | null {
    return this._selected;
  }

  /** Draw a payload; the view keeps its zoom unless the user never moved it. */
  setPayload(payload: IDagPayload): void {
    this._payload = payload;
    this._graphLayout = layoutDag(payload.nodes);
    this._title.textContent = `${payload.run.name} · ${payload.run.status}`;
    this._draw();
    if (!this._moved) {
      this.fit();
    }
    this._renderDetails();
  }

  select(id: string | null): void {
    this._selected = id;
    for (const g of Array.from(
      this._root.querySelectorAll('.jp-dynpipe-node')
    )) {
      g.classList.toggle('jp-mod-selected', g.getAttribute('data-id') === id);
    }
    this._renderDetails();
  }

  fit(): void {
    const box = this._svg.getBoundingClientRect();
    if (!this._graphLayout || box.width === 0 || box.height === 0) {
      this._apply(1, PAD, PAD);
      return;
    }
    const w = this._graphLayout.width + 2 * PAD;
    const hgt = this._graphLayout.height + 2 * PAD;
    const k = Math.min(
      MAX_SCALE,
      Math.max(MIN_SCALE, Math.min(box.width / w, box.height / hgt, 1))
    );
    this._apply(
      k,
      (box.width - this._graphLayout.width * k) / 2,
      (box.height - this._graphLayout.height * k) / 2
    );
    this._moved = false;
  }

  zoomBy(factor: number, cx?: number, cy?: number): void {
    const box = this._svg.getBoundingClientRect();
    const x = cx ?? box.width / 2;
    const y = cy ?? box.height / 2;
    const k = Math.min(MAX_SCALE, Math.max(MIN_SCALE, this._k * factor));
    const f = k / this._k;
    this._apply(k, x - (x - this._tx) * f, y - (y - this._ty) * f);
    this._moved = true;
  }

  panBy(dx: number, dy: number): void {
    this._apply(this._k, this._tx + dx, this._ty + dy);
    this._moved = true;
  }

  protected onAfterAttach(): void {
    requestAnimationFrame(() => {
      if (!this._moved) {
        this.fit();
      }
    });
  }

  protected onResize(): void {
    if (!this._moved) {
      this.fit();
    }
  }

  dispose(): void {
    this._svg.removeEventListener('wheel', this._onWheel);
    this._svg.removeEventListener('pointerdown', this._onPointerDown);
    this._svg.removeEventListener('keydown', this._onKey);
    super.dispose();
  }

  private _apply(k: number, tx: number, ty: number): void {
    this._k = k;
    this._tx = tx;
    this._ty = ty;
    this._root.setAttribute('transform', `translate(${tx},${ty}) scale(${k})`);
  }

  private _draw(): void {
    const layout = this._graphLayout as ILayout;
    this._root.replaceChildren();
    const edges = s('g', { class: 'jp-dynpipe-edges' });
    for (const e of layout.edges) {
      const p = s('path', { d: e.path, class: 'jp-dynpipe-edge' });
      p.setAttribute('data-from', e.from);
      p.setAttribute('data-to', e.to);
      edges.append(p);
    }
    this._root.append(edges);
    for (const p of layout.nodes) {
      this._root.append(this._nodeElement(p.node, p.x, p.y));
    }
  }

  private _nodeElement(n: IDagNode, x: number, y: number): SVGGElement {
    const g = s('g', {
      class: `jp-dynpipe-node jp-dynpipe-status-${n.status}${n.id === this._selected ? ' jp-mod-selected' : ''}`,
      transform: `translate(${x},${y})`,
      tabindex: 0,
      role: 'button',
      'data-id': n.id,
      'data-status': n.status
    });
    g.setAttribute('aria-label', `${n.label}: ${n.status}`);
    const title = s('title');
    title.textContent = `${n.label} — ${n.status}`;
    const rect = s('rect', { width: NODE_W, height: NODE_H, rx: 6, ry: 6 });
    const label = s('text', { x: 10, y: 18, class: 'jp-dynpipe-node-label' });
    label.textContent =
      n.label.length > 22 ? n.label.slice(0, 21) + '…' : n.label;
    const sub = s('text', { x: 10, y: 34, class: 'jp-dynpipe-node-sub' });
    const extra = n.attempts > 1 ? ` · ${n.attempts} attempts` : '';
    sub.textContent = `${n.cached ? 'cached' : n.status} · ${formatDuration(n.duration)}${extra}`;
    g.append(title, rect, label, sub);
    const choose = () => {
      this.select(n.id);
      this.onSelect?.(n.id);
    };
    g.addEventListener('click', choose);
    g.addEventListener('keydown', (ev: KeyboardEvent) => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        ev.stopPropagation();
        choose();
      }
    });
    return g;
  }

  private _renderDetails(): void {
    const node = this._payload?.nodes.find(n => n.id === this._selected);
    if (!node) {
      this._details.replaceChildren(
        h(
          'span',
          { class: 'jp-dynpipe-muted' },
          'Select a step (click, or Tab then Enter) for its details.'
        )
      );
      return;
    }
    const row = (k: string, v: Node | string) =>
      h('tr', {}, h('th', {}, k), h('td', {}, v));
    fill(
      this._details,
      h(
        'table',
        { class: 'jp-dynpipe-kv' },
        row('step', node.label),
        row('status', statusBadge(node.status)),
        row('duration', formatDuration(node.duration)),
        row('attempts', String(node.attempts)),
        row('cache', node.cached ? 'cached' : 'computed'),
        row('upstream', node.upstream.join(', ') || '—')
      ),
      node.error ? h('pre', { class: 'jp-dynpipe-error' }, node.error) : null
    );
  }

  private _onWheel = (ev: WheelEvent): void => {
    ev.preventDefault();
    const box = this._svg.getBoundingClientRect();
    this.zoomBy(
      ev.deltaY < 0 ? 1.1 : 1 / 1.1,
      ev.clientX - box.left,
      ev.clientY - box.top
    );
  };

  private _onPointerDown = (ev: PointerEvent): void => {
    if ((ev.target as Element).closest('.jp-dynpipe-node')) {
      return;
    }
    let lastX = ev.clientX;
    let lastY = ev.clientY;
    const move = (e: PointerEvent) => {
      this.panBy(e.clientX - lastX, e.clientY - lastY);
      lastX = e.clientX;
      lastY = e.clientY;
    };
    const up = () => {
      window.removeEventListener('pointermove', move);
      window.removeEventListener('pointerup', up);
    };
    window.addEventListener('pointermove', move);
    window.addEventListener('pointerup', up);
  };

  private _onKey = (ev: KeyboardEvent): void => {
    const step = 40;
    const actions: Record<string, () => void> = {
      ArrowLeft: () => this.panBy(step, 0),
      ArrowRight: () => this.panBy(-step, 0),
      ArrowUp: () => this.panBy(0, step),
      ArrowDown: () => this.panBy(0, -step),
      '+': () => this.zoomBy(1.25),
      '=': () => this.zoomBy(1.25),
      '-': () => this.zoomBy(0.8),
      '0': () => this.fit()
    };
    const act = actions[ev.key];
    if (act) {
      ev.preventDefault();
      act();
    }
  };

  private _payload: IDagPayload | null = null;
  private _graphLayout: ILayout | null = null;
  private _selected: string | null = null;
  private _showDetails: boolean;
  private _svg: SVGSVGElement;
  private _root: SVGGElement;
  private _title: HTMLSpanElement;
  private _details: HTMLDivElement;
  private _k = 1;
  private _tx = 0;
  private _ty = 0;
  private _moved = false;
}
