import { describe, expect, it } from 'vitest';

import {
  defaultScheduleName,
  formatBytes,
  formatDuration,
  isActive,
  mergeRuns,
  pollDelay,
  runsQuery,
  stepSummary
} from '../src/format';

describe('format', () => {
  it('formats durations at every scale', () => {
    expect(formatDuration(null)).toBe('—');
    expect(formatDuration(0.421)).toBe('0.42s');
    expect(formatDuration(12)).toBe('12.0s');
    expect(formatDuration(185)).toBe('3m 05s');
    expect(formatDuration(7380)).toBe('2h 03m');
  });

  it('formats sizes', () => {
    expect(formatBytes(null)).toBe('—');
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(2048)).toBe('2.0 KB');
  });

  it('summarises step counts, attention first', () => {
    expect(
      stepSummary({ completed: 2, cached: 1, running: 1, failed: 1 })
    ).toBe('3/5 done, 1 failed, 1 running');
    expect(stepSummary({})).toBe('0/0 done');
  });

  it('builds the runs query without empty filters', () => {
    expect(runsQuery({ pipeline: '', status: '' })).toBe('page=1&per_page=50');
    expect(runsQuery({ pipeline: 'a b', status: 'failed' }, 2, 10)).toBe(
      'page=2&per_page=10&pipeline=a+b&status=failed'
    );
    expect(runsQuery({ pipeline: 'p', status: '' }, 1, 50, 'WzEuNSw')).toBe(
      'after=WzEuNSw&per_page=50&pipeline=p'
    );
  });

  it('polls within two seconds while a run is active', () => {
    expect(isActive('running')).toBe(true);
    expect(isActive('completed')).toBe(false);
    expect(pollDelay(true)).toBeLessThanOrEqual(2000);
    expect(pollDelay(false)).toBeGreaterThan(pollDelay(true));
  });

  it('merges older pages below the polled one without repeating a run', () => {
    const runs = (...ids: string[]) => ids.map(id => ({ id }));
    // Two new runs arrived since page 2 was fetched: its first two repeat page 1's end.
    expect(
      mergeRuns(runs('n2', 'n1', 'a', 'b'), runs('a', 'b', 'c', 'd'))
    ).toEqual(runs('n2', 'n1', 'a', 'b', 'c', 'd'));
    expect(mergeRuns(runs('a'), [])).toEqual(runs('a'));
  });

  it('names a schedule after the notebook, in the characters names allow', () => {
    expect(defaultScheduleName('work/daily report.ipynb')).toBe('daily-report');
    expect(defaultScheduleName('.hidden.ipynb')).toBe('hidden');
    expect(defaultScheduleName('ü.ipynb')).toBe('notebook');
  });
});
