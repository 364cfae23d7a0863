/**
 * The `application/vnd.dynpipe.dag+json` payload (version 1), as produced by
 * `dynpipe.server.dag_payload`. Validated on arrival: saved notebooks can hold anything,
 * and a clear message beats a blank output.
 */

export const DAG_MIME_TYPE = 'application/vnd.dynpipe.dag+json';

export interface IDagNode {
  id: string;
  label: string;
  step: string;
  status: string;
  duration: number | null;
  attempts: number;
  cached: boolean;
  error: string | null;
  upstream: string[];
}

export interface IDagRun {
  id: string;
  name: string;
  pipeline: string;
  status: string;
}

export interface IDagPayload {
  version: number;
  run: IDagRun;
  nodes: IDagNode[];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function str(obj: Record<string, unknown>, key: string, where: string): string {
  const value = obj[key];
  if (typeof value !== 'string') {
    throw new Error(`dynpipe DAG payload: ${where}.${key} must be a string`);
  }
  return value;
}

/** Check and normalise a payload; the error names the offending field. */
export function parsePayload(data: unknown): IDagPayload {
  if (!isObject(data)) {
    throw new Error('dynpipe DAG payload: expected a JSON object');
  }
  if (data.version !== 1) {
    throw new Error(
      `dynpipe DAG payload: version ${String(data.version)} is not supported (expected 1)`
    );
  }
  if (!isObject(data.run)) {
    throw new Error('dynpipe DAG payload: run must be an object');
  }
  const run: IDagRun = {
    id: str(data.run, 'id', 'run'),
    name: str(data.run, 'name', 'run'),
    pipeline: str(data.run, 'pipeline', 'run'),
    status: str(data.run, 'status', 'run')
  };
  if (!Array.isArray(data.nodes)) {
    throw new Error('dynpipe DAG payload: nodes must be a list');
  }
  const nodes = data.nodes.map((raw: unknown, i: number): IDagNode => {
    const where = `nodes[${i}]`;
    if (!isObject(raw)) {
      throw new Error(`dynpipe DAG payload: ${where} must be an object`);
    }
    const upstream = raw.upstream ?? [];
    if (
      !Array.isArray(upstream) ||
      !upstream.every(u => typeof u === 'string')
    ) {
      throw new Error(
        `dynpipe DAG payload: ${where}.upstream must be a list of node ids`
      );
    }
    const id = str(raw, 'id', where);
    return {
      id,
      label: typeof raw.label === 'string' ? raw.label : id,
      step: typeof raw.step === 'string' ? raw.step : id,
      status: str(raw, 'status', where),
      duration: typeof raw.duration === 'number' ? raw.duration : null,
      attempts: typeof raw.attempts === 'number' ? raw.attempts : 0,
      cached: raw.cached === true,
      error: typeof raw.error === 'string' ? raw.error : null,
      upstream: upstream as string[]
    };
  });
  return { version: 1, run, nodes };
}
