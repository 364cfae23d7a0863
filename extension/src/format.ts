/** Small pure helpers shared by the panel, the run view and the DAG renderer. */

export const ACTIVE_STATUSES = [
  'queued',
  'initializing',
  'running',
  'retrying'
];
export const STATUSES = [
  'queued',
  'initializing',
  'running',
  'retrying',
  'completed',
  'cached',
  'failed',
  'skipped',
  'stopped'
];

export function isActive(status: string): boolean {
  return ACTIVE_STATUSES.includes(status);
}

/** `0.42s`, `12.0s`, `3m 05s`, `2h 03m`; an em dash when unknown. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return '—';
  }
  if (seconds < 10) {
    return `${seconds.toFixed(2)}s`;
  }
  if (seconds < 60) {
    return `${seconds.toFixed(1)}s`;
  }
  const m = Math.floor(seconds / 60);
  if (m < 60) {
    return `${m}m ${String(Math.floor(seconds % 60)).padStart(2, '0')}s`;
  }
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

export function formatBytes(size: number | null | undefined): string {
  if (size === null || size === undefined) {
    return '—';
  }
  const units = ['B', 'KB', 'MB', 'GB'];
  let value = size;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return i === 0 ? `${value} B` : `${value.toFixed(1)} ${units[i]}`;
}

/** `3/5 done` plus the counts that need attention (failed, running...). */
export function stepSummary(counts: Record<string, number>): string {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const done = (counts.completed ?? 0) + (counts.cached ?? 0);
  const extra = Object.entries(counts)
    .filter(([s]) => s !== 'completed' && s !== 'cached')
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([s, n]) => `${n} ${s}`);
  return [`${done}/${total} done`, ...extra].join(', ');
}

export interface IRunFilters {
  pipeline: string;
  status: string;
}

/**
 * Query string of `GET /dynpipe/api/runs` (empty filters are left out); `after` (a page's
 * `next`) asks for the page after it, which new runs do not shift, instead of `page`.
 */
export function runsQuery(
  filters: IRunFilters,
  page = 1,
  perPage = 50,
  after: string | null = null
): string {
  const params = new URLSearchParams();
  if (after) {
    params.set('after', after);
  } else {
    params.set('page', String(page));
  }
  params.set('per_page', String(perPage));
  if (filters.pipeline) {
    params.set('pipeline', filters.pipeline);
  }
  if (filters.status) {
    params.set('status', filters.status);
  }
  return params.toString();
}

/** Poll fast while something runs, slowly otherwise (new runs still show up). */
export function pollDelay(anyActive: boolean): number {
  return anyActive ? 1500 : 4000;
}

/**
 * The runs list: the polled first page, then the older pages loaded by "Show more runs"
 * minus any run already above (the polled head moves down as new runs arrive, so it can
 * repeat the start of the older pages; cursor pages never skip a run).
 */
export function mergeRuns<T extends { id: string }>(
  head: T[],
  older: T[]
): T[] {
  const seen = new Set(head.map(r => r.id));
  const merged = [...head];
  for (const run of older) {
    if (!seen.has(run.id)) {
      seen.add(run.id);
      merged.push(run);
    }
  }
  return merged;
}

/** A schedule name from a notebook path: its stem, in the characters names allow. */
export function defaultScheduleName(path: string): string {
  const stem = (path.split('/').pop() ?? 'notebook').replace(/\.ipynb$/, '');
  const name = stem.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[.-]+/, '');
  return name || 'notebook';
}
