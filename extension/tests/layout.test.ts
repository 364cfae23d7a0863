import { describe, expect, it } from 'vitest';

import {
  assignLayers,
  layoutDag,
  MAX_ROW,
  NODE_H,
  NODE_W
} from '../src/layout';
import { IDagNode } from '../src/payload';

function node(id: string, upstream: string[] = []): IDagNode {
  return {
    id,
    label: id,
    step: id,
    status: 'completed',
    duration: null,
    attempts: 1,
    cached: false,
    error: null,
    upstream
  };
}

describe('assignLayers', () => {
  it('puts every node one below its deepest parent', () => {
    const layers = assignLayers([
      node('a'),
      node('b', ['a']),
      node('c', ['a', 'b']),
      node('d')
    ]);
    expect(Object.fromEntries(layers)).toEqual({ a: 0, b: 1, c: 2, d: 0 });
  });

  it('survives cycles, self loops and unknown parents', () => {
    const layers = assignLayers([
      node('x', ['y']),
      node('y', ['x']),
      node('z', ['z', 'ghost'])
    ]);
    expect(Object.fromEntries(layers)).toEqual({ x: 0, y: 0, z: 0 });
  });
});

describe('layoutDag', () => {
  it('draws parents above children with one edge per dependency', () => {
    const nodes = [
      node('load'),
      node('a', ['load']),
      node('b', ['load']),
      node('best', ['a', 'b'])
    ];
    const out = layoutDag(nodes);
    const at = Object.fromEntries(out.nodes.map(p => [p.node.id, p]));
    expect(at.load.y).toBeLessThan(at.a.y);
    expect(at.a.y).toBe(at.b.y);
    expect(at.best.y).toBeGreaterThan(at.a.y);
    expect(at.a.x).not.toBe(at.b.x);
    expect(out.edges.map(e => `${e.from}->${e.to}`).sort()).toEqual([
      'a->best',
      'b->best',
      'load->a',
      'load->b'
    ]);
    for (const p of out.nodes) {
      expect(p.x).toBeGreaterThanOrEqual(0);
      expect(p.x + NODE_W).toBeLessThanOrEqual(out.width);
      expect(p.y + NODE_H).toBeLessThanOrEqual(out.height);
    }
  });

  it('wraps a wide fan-out into rows of MAX_ROW without overlaps', () => {
    const nodes = [node('root')];
    for (let i = 0; i < 40; i++) {
      nodes.push(node(`t${i}`, ['root']));
    }
    const out = layoutDag(nodes);
    const rows = new Set(
      out.nodes.filter(p => p.node.id !== 'root').map(p => p.y)
    );
    expect(rows.size).toBe(Math.ceil(40 / MAX_ROW));
    const spots = new Set(out.nodes.map(p => `${p.x},${p.y}`));
    expect(spots.size).toBe(nodes.length);
  });

  it('handles an empty DAG', () => {
    expect(layoutDag([])).toMatchObject({ nodes: [], edges: [] });
  });
});
