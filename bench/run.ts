/**
 * `npm run bench` runs every benchmark; `npm run bench -- NAME` runs one.
 * Each prints one JSON object per measurement (see report.ts).
 */
const BENCHES: Record<string, () => Promise<{ run(): Promise<void> }>> = {
  "vm-start": () => import("./vm-start.js"),
  "image-pull": () => import("./image-pull.js"),
  "rootfs-io": () => import("./rootfs-io.js"),
  "pod-start": () => import("./pod-start.js"),
  "cri-latency": () => import("./cri-latency.js"),
  "pod-net": () => import("./pod-net.js"),
  density: () => import("./density.js"),
};

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  for (const name of wanted) {
    if (!(name in BENCHES)) {
      process.stderr.write(`unknown benchmark ${name}; known: ${Object.keys(BENCHES).join(", ")}\n`);
      process.exit(2);
    }
  }
  for (const name of wanted.length > 0 ? wanted : Object.keys(BENCHES)) {
    const bench = await (BENCHES[name] as () => Promise<{ run(): Promise<void> }>)();
    await bench.run();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
