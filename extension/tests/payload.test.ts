import { describe, expect, it } from 'vitest';

import { parsePayload } from '../src/payload';

const good = {
  version: 1,
  run: { id: 'r1', name: 'etl-1', pipeline: 'etl', status: 'running' },
  nodes: [
    {
      id: 'load',
      label: 'load',
      step: 'load',
      status: 'completed',
      duration: 1.5,
      attempts: 1,
      cached: false,
      error: null,
      upstream: []
    },
    { id: 'total', status: 'running', upstream: ['load'] }
  ]
};

describe('parsePayload', () => {
  it('keeps a valid payload and fills optional node fields', () => {
    const p = parsePayload(good);
    expect(p.run.name).toBe('etl-1');
    expect(p.nodes[0].duration).toBe(1.5);
    expect(p.nodes[1]).toEqual({
      id: 'total',
      label: 'total',
      step: 'total',
      status: 'running',
      duration: null,
      attempts: 0,
      cached: false,
      error: null,
      upstream: ['load']
    });
  });

  it('names the field at fault', () => {
    expect(() => parsePayload(null)).toThrow('expected a JSON object');
    expect(() => parsePayload({ ...good, version: 2 })).toThrow(
      'version 2 is not supported'
    );
    expect(() =>
      parsePayload({ ...good, run: { ...good.run, name: 3 } })
    ).toThrow('run.name must be a string');
    expect(() =>
      parsePayload({
        ...good,
        nodes: [{ id: 'a', status: 'x', upstream: 'b' }]
      })
    ).toThrow('nodes[0].upstream must be a list of node ids');
    expect(() => parsePayload({ ...good, nodes: [{ status: 'x' }] })).toThrow(
      'nodes[0].id must be a string'
    );
  });
});
