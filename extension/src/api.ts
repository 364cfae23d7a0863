/** Typed calls to the dynpipe REST API (`/dynpipe/api/...`) through the server connection. */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { IDagPayload } from './payload';

export interface IRunSummary {
  id: string;
  name: string;
  pipeline: string;
  status: string;
  active: boolean;
  start: number | null;
  end: number | null;
  active_seconds: number;
  steps: number;
  step_counts: Record<string, number>;
  error: string | null;
  /** Where the run came from (notebook path, script, schedule), when the store knows. */
  origin?: string | null;
}

export interface IRunsPage {
  store: string;
  page: number;
  per_page: number;
  has_more: boolean;
  /** The `after` of the next older page (stable while new runs arrive); null at the end. */
  next: string | null;
  pipelines: string[];
  runs: IRunSummary[];
}

export interface IStepOutput {
  name: string;
  id: string;
  artifact: string;
  version: number;
  type: string;
  size: number | null;
}

export interface IStepDetail {
  id: string;
  step: string;
  status: string;
  start: number | null;
  end: number | null;
  duration: number | null;
  attempts: number;
  runtime: string | null;
  cache: string | null;
  cached_from: string | null;
  upstream: string[];
  outputs: IStepOutput[];
  error: string | null;
  traceback: string | null;
  log_chars: number;
}

export interface IRunDetail {
  run: IRunSummary;
  steps: IStepDetail[];
  dag: IDagPayload;
}

export interface IStepLog {
  id: string;
  logs: string;
  truncated: boolean;
  chars: number;
}

export interface IArtifactPreview {
  id: string;
  name: string;
  version: number;
  type: string;
  materializer: string;
  size: number | null;
  snippet: string;
  repr: string | null;
  json: string | null;
  table: { columns: string[]; rows: string[][]; shape: number[] } | null;
  truncated: boolean;
  error: string | null;
}

export interface IFireTimes {
  cron: string;
  timezone: string;
  next: { utc: string; local: string }[];
}

export interface INotebookParameter {
  name: string;
  annotation: string | null;
  default: string;
  value: string;
}

export interface IScheduleRequest {
  path: string;
  name: string;
  cron: string;
  timezone: string;
  params: Record<string, string>;
  target: 'local';
}

export interface ISchedule {
  name: string;
  state?: string;
  cron: string;
  timezone: string;
  module: string;
  pipeline: string;
  params: Record<string, string>;
  next: string | null;
}

/** Call the API; a failed request throws with the server's reason. */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'dynpipe', 'api', endPoint);
  const response = await ServerConnection.makeRequest(url, init, settings);
  if (!response.ok) {
    let reason = response.statusText;
    try {
      const body = (await response.json()) as {
        message?: string;
        reason?: string;
      };
      reason = body.reason || body.message || reason;
    } catch {
      // not JSON: keep the status text
    }
    throw new Error(`dynpipe API ${endPoint}: ${response.status} ${reason}`);
  }
  return (await response.json()) as T;
}

export const api = {
  runs: (query: string) => requestAPI<IRunsPage>(`runs?${query}`),
  run: (id: string) => requestAPI<IRunDetail>(`runs/${encodeURIComponent(id)}`),
  log: (run: string, step: string) =>
    requestAPI<IStepLog>(
      `runs/${encodeURIComponent(run)}/steps/${encodeURIComponent(step)}/logs`
    ),
  artifact: (id: string) =>
    requestAPI<IArtifactPreview>(`artifacts/${encodeURIComponent(id)}`),
  schedules: () => requestAPI<{ schedules: ISchedule[] }>('schedules'),
  preview: (cron: string, timezone: string, count = 5) =>
    requestAPI<IFireTimes>(
      `schedules/preview?${new URLSearchParams({ cron, timezone, count: String(count) }).toString()}`
    ),
  notebookParameters: (path: string) =>
    requestAPI<{ function: string; parameters: INotebookParameter[] }>(
      `notebook-parameters?${new URLSearchParams({ path }).toString()}`
    ),
  schedule: (request: IScheduleRequest) =>
    requestAPI<ISchedule>('schedules', {
      method: 'POST',
      body: JSON.stringify(request)
    }),
  exportNotebook: (path: string) =>
    requestAPI<{ path: string; chars: number }>('export', {
      method: 'POST',
      body: JSON.stringify({ path })
    })
};
