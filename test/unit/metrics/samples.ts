/**
 * Reading what a registry exposes, for the metrics tests: the text format
 * parsed into samples (name, labels, value), and one sample's value.
 */
import assert from "node:assert/strict";

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The samples of Prometheus's text format (HELP and TYPE lines skipped). */
export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, "$1");
    const raw = m[3] as string;
    samples.push({ name: m[1] as string, labels, value: raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : Number(raw) });
  }
  return samples;
}

/** The value of the one sample named `name` whose labels include `labels`; undefined when there is none. */
export function valueOf(samples: readonly Sample[], name: string, labels: Readonly<Record<string, string>> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(found.length <= 1, `${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

/** The HELP and TYPE of every family in the text. */
export function families(text: string): Map<string, { help: string; type: string }> {
  const out = new Map<string, { help: string; type: string }>();
  for (const line of text.split("\n")) {
    const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (!m) continue;
    const name = m[2] as string;
    const entry = out.get(name) ?? { help: "", type: "" };
    if (m[1] === "HELP") entry.help = m[3] as string;
    else entry.type = m[3] as string;
    out.set(name, entry);
  }
  return out;
}

/** The families vmpod serves (besides the process and Node ones). */
export const VMPOD_FAMILIES = [
  "vmpod_cri_requests_total",
  "vmpod_cri_errors_total",
  "vmpod_cri_request_duration_seconds",
  "vmpod_pods",
  "vmpod_containers",
  "vmpod_vm_boot_seconds",
  "vmpod_vm_boot_phase_seconds",
  "vmpod_network_setup_seconds",
  "vmpod_image_pull_seconds",
  "vmpod_image_pull_bytes_total",
  "vmpod_pod_qemu_resident_memory_bytes",
  "vmpod_pod_qemu_cpu_seconds_total",
];
