/**
 * One autocannon run with latencies kept at microsecond resolution: autocannon's own histogram
 * counts whole milliseconds, too coarse for sub-millisecond overheads, so every response time is
 * also recorded here from its 'response' event.
 */
import autocannon from 'autocannon';
import * as hdr from 'hdr-histogram-js';

export interface LoadTarget {
  url: string;
  /** For a unix socket target: autocannon connects here and `url` only supplies the path. */
  socketPath?: string;
  method: 'GET' | 'POST' | 'PUT';
  headers: Record<string, string>;
  body: Buffer;
}

export interface LoadResult {
  requestsPerSec: number;
  latencyUs: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
  requests: number;
  errors: number;
  non2xx: number;
  durationS: number;
}

export async function runLoad(target: LoadTarget, connections: number, durationS: number): Promise<LoadResult> {
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: target.url,
        socketPath: target.socketPath,
        method: target.method,
        headers: target.headers,
        body: target.body,
        connections,
        pipelining: 1,
        duration: durationS,
      },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
    instance.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
      if (statusCode >= 200 && statusCode < 300) histogram.recordValue(Math.max(1, Math.round(responseTimeMs * 1000)));
    });
  });
  const out: LoadResult = {
    requestsPerSec: result.requests.average,
    latencyUs: {
      p50: histogram.getValueAtPercentile(50),
      p90: histogram.getValueAtPercentile(90),
      p99: histogram.getValueAtPercentile(99),
      p999: histogram.getValueAtPercentile(99.9),
      max: histogram.maxValue,
      mean: Math.round(histogram.mean),
    },
    requests: result.requests.total,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    durationS: result.duration,
  };
  histogram.destroy();
  return out;
}
