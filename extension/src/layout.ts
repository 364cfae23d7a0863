/**
 * A layered top-down layout of a DAG, computed in the browser.
 *
 * Client-side so the MIME renderer works in a saved notebook with no server at all, and
 * so the live panel can redraw every poll without a graphviz round trip. Layers are the
 * longest path from a source; within a layer nodes follow the mean position of their
 * parents (one barycenter pass), ties in call order. Wide fan-outs wrap onto extra rows.
 */

import { IDagNode } from './payload';

export const NODE_W = 168;
export const NODE_H = 44;
export const GAP_X = 28;
export const GAP_Y = 56;
/** Nodes per row before a layer wraps: keeps a 1,000-way fan-out viewable. */
export const MAX_ROW = 16;

export interface IPlaced {
  node: IDagNode;
  layer: number;
  x: number;
  y: number;
}

export interface IEdge {
  from: string;
  to: string;
  path: string;
}

export interface ILayout {
  nodes: IPlaced[];
  edges: IEdge[];
  width: number;
  height: number;
}

/** Longest-path layer of every node; nodes caught in a cycle land on layer 0. */
export function assignLayers(nodes: IDagNode[]): Map<string, number> {
  const ids = new Set(nodes.map(n => n.id));
  const children = new Map<string, string[]>();
  const indegree = new Map<string, number>();
  for (const n of nodes) {
    indegree.set(n.id, 0);
  }
  for (const n of nodes) {
    for (const u of n.upstream) {
      if (!ids.has(u) || u === n.id) {
        continue;
      }
      indegree.set(n.id, (indegree.get(n.id) ?? 0) + 1);
      const list = children.get(u) ?? [];
      list.push(n.id);
      children.set(u, list);
    }
  }
  const layer = new Map<string, number>();
  const queue = nodes.filter(n => indegree.get(n.id) === 0).map(n => n.id);
  for (const id of queue) {
    layer.set(id, 0);
  }
  for (let i = 0; i < queue.length; i++) {
    const id = queue[i];
    for (const child of children.get(id) ?? []) {
      layer.set(
        child,
        Math.max(layer.get(child) ?? 0, (layer.get(id) ?? 0) + 1)
      );
      const left = (indegree.get(child) ?? 0) - 1;
      indegree.set(child, left);
      if (left === 0) {
        queue.push(child);
      }
    }
  }
  for (const n of nodes) {
    if (!layer.has(n.id)) {
      layer.set(n.id, 0);
    }
  }
  return layer;
}

export function layoutDag(nodes: IDagNode[]): ILayout {
  const layerOf = assignLayers(nodes);
  const order = new Map(nodes.map((n, i) => [n.id, i]));
  const byLayer: IDagNode[][] = [];
  for (const n of nodes) {
    const l = layerOf.get(n.id) ?? 0;
    (byLayer[l] ??= []).push(n);
  }
  const column = new Map<string, number>();
  const placed = new Map<string, IPlaced>();
  let row = 0;
  let widest = 0;
  for (let l = 0; l < byLayer.length; l++) {
    const members = byLayer[l] ?? [];
    const weight = (n: IDagNode): number => {
      const cols = n.upstream
        .map(u => column.get(u))
        .filter((c): c is number => c !== undefined);
      return cols.length
        ? cols.reduce((a, b) => a + b, 0) / cols.length
        : (order.get(n.id) ?? 0);
    };
    const sorted = [...members].sort(
      (a, b) =>
        weight(a) - weight(b) || (order.get(a.id) ?? 0) - (order.get(b.id) ?? 0)
    );
    for (let i = 0; i < sorted.length; i += MAX_ROW) {
      const chunk = sorted.slice(i, i + MAX_ROW);
      widest = Math.max(widest, chunk.length);
      chunk.forEach((n, j) => {
        column.set(n.id, j);
        placed.set(n.id, { node: n, layer: l, x: j, y: row });
      });
      row++;
    }
  }
  const width = Math.max(1, widest) * (NODE_W + GAP_X) - GAP_X;
  // Centre every row under the widest one.
  const rowWidth = new Map<number, number>();
  for (const p of placed.values()) {
    rowWidth.set(p.y, Math.max(rowWidth.get(p.y) ?? 0, p.x + 1));
  }
  const out: IPlaced[] = nodes.map(n => {
    const p = placed.get(n.id) as IPlaced;
    const count = rowWidth.get(p.y) ?? 1;
    const offset = (width - (count * (NODE_W + GAP_X) - GAP_X)) / 2;
    return {
      node: n,
      layer: p.layer,
      x: offset + p.x * (NODE_W + GAP_X),
      y: p.y * (NODE_H + GAP_Y)
    };
  });
  const at = new Map(out.map(p => [p.node.id, p]));
  const edges: IEdge[] = [];
  for (const p of out) {
    for (const u of p.node.upstream) {
      const q = at.get(u);
      if (!q || u === p.node.id) {
        continue;
      }
      const x1 = q.x + NODE_W / 2;
      const y1 = q.y + NODE_H;
      const x2 = p.x + NODE_W / 2;
      const y2 = p.y;
      const mid = (y1 + y2) / 2;
      edges.push({
        from: u,
        to: p.node.id,
        path: `M${x1},${y1} C${x1},${mid} ${x2},${mid} ${x2},${y2}`
      });
    }
  }
  return {
    nodes: out,
    edges,
    width,
    height: Math.max(1, row) * (NODE_H + GAP_Y) - GAP_Y
  };
}
