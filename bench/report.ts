/** One measurement, printed as one JSON line so runs can be compared. */
export interface Measurement {
  readonly bench: string;
  readonly metric: string;
  readonly value: number;
  readonly unit: string;
  /** The floor (what cannot be beaten) or the peer (what to compare with), in `unit`. */
  readonly floor?: number;
  readonly peer?: number;
  /** Free-form context: sample counts, what the floor or peer was. */
  readonly note?: string;
}

export function emit(m: Measurement): void {
  const base = m.floor ?? m.peer;
  const line = {
    bench: m.bench,
    metric: m.metric,
    value: round(m.value),
    unit: m.unit,
    ...(m.floor !== undefined ? { floor: round(m.floor) } : {}),
    ...(m.peer !== undefined ? { peer: round(m.peer) } : {}),
    ...(base !== undefined && base !== 0 ? { ratio: round(m.value / base, 3) } : {}),
    ...(m.note ? { note: m.note } : {}),
  };
  process.stdout.write(JSON.stringify(line) + "\n");
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function round(n: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
