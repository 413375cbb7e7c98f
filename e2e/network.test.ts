/**
 * Pod networking end to end: a real daemon whose pods get their network
 * from Debian's CNI plugins (bridge, host-local, portmap). The daemon runs
 * in a network namespace the test makes, standing for the node: the CNI
 * bridge, its routes and portmap's iptables rules live there, and go with
 * it. Two pods in VMs get addresses, reach each other, are reached from the
 * node directly and through a host port, see their DNS and hosts files;
 * the network survives the daemon's restart; after removal nothing is left.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status as grpcStatus } from "@grpc/grpc-js";
import { pushBusybox, type PushedImage } from "../test/helpers/registry/images.js";
import { startRegistry, type RunningRegistry } from "../test/helpers/registry/server.js";
import { podNetnses, sh } from "./helpers.js";
import { startDaemon, type Daemon } from "./daemon.js";
import { forwardIntoNetns, type Forward } from "./netns-forward.js";

describe("pod networking end to end (CNI plugins, a namespace standing for the node)", function () {
  this.timeout(900_000);
  const tag = randomBytes(3).toString("hex");
  const node = `vmpodtest-node-${tag}`;
  const bridge = `vmpe${tag}`;
  const subnetPrefix = `10.252.${randomBytes(1)[0] ?? 7}`;
  const gateway = `${subnetPrefix}.1`;
  const v6Prefix = `fd00:252:${Number.parseInt(tag.slice(0, 4), 16).toString(16)}`;
  let dir: string;
  let confDir: string;
  let ipamDir: string;
  let registry: RunningRegistry;
  let image: PushedImage;
  let daemon: Daemon;
  let forward: Forward | undefined;
  let netnsBefore: string[];

  const conflist = (extraPlugins: object[] = []) =>
    JSON.stringify({
      cniVersion: "1.0.0",
      name: `vmpod-e2e-${tag}`,
      plugins: [
        { type: "bridge", bridge, isGateway: true, ipMasq: true, hairpinMode: true, ipam: { type: "host-local", dataDir: ipamDir, ranges: [[{ subnet: `${subnetPrefix}.0/24` }], [{ subnet: `${v6Prefix}::/64` }]], routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }] } },
        { type: "portmap", capabilities: { portMappings: true }, snat: true },
        ...extraPlugins,
      ],
    });

  before(async () => {
    netnsBefore = await podNetnses();
    dir = await mkdtemp(join(tmpdir(), "vmpod-e2e-net-"));
    confDir = join(dir, "net.d");
    ipamDir = join(dir, "ipam");
    const binDir = join(dir, "bin");
    await mkdir(confDir);
    await mkdir(binDir);
    await writeFile(join(confDir, "10-e2e.conflist"), conflist());
    // A plugin that fails ADD the way CNI says plugins fail; DEL succeeds.
    await writeFile(
      join(binDir, "vmpodfail"),
      `#!/bin/sh\ncat >/dev/null\nif [ "$CNI_COMMAND" = ADD ]; then echo '{"cniVersion":"1.0.0","code":11,"msg":"vmpodfail refuses","details":"as the test asked"}'; exit 1; fi\nif [ "$CNI_COMMAND" = VERSION ]; then echo '{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}'; fi\nexit 0\n`,
    );
    await chmod(join(binDir, "vmpodfail"), 0o755);
    await sh("ip", ["netns", "add", node]);
    await sh("ip", ["-n", node, "link", "set", "lo", "up"]);
    registry = await startRegistry();
    image = await pushBusybox(registry, { repository: "e2e/busybox", tag: "net" });
    // The registry listens on the test's loopback; the daemon pulls from the node's.
    forward = await forwardIntoNetns(node, Number(registry.host.split(":")[1]), dir);
    daemon = await startDaemon({
      netns: node,
      extraToml: `[cni]\nconf_dir = "${confDir}"\nbin_dirs = ["${binDir}", "/usr/lib/cni"]\ncache_dir = "${join(dir, "cni")}"\n`,
    });
    await daemon.client.images.pullImage({ image: { image: image.reference } });
  });

  after(async () => {
    await daemon?.dispose();
    await forward?.close();
    await registry?.stop();
    await sh("ip", ["netns", "del", node]).catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
    assert.deepEqual((await podNetnses()).filter((n) => !netnsBefore.includes(n)), [], "no pod network namespace is left");
  });

  const podConfig = (name: string, extra: Record<string, unknown> = {}) => ({
    metadata: { name, uid: `uid-${name}-${tag}`, namespace: "e2e-net", attempt: 0 },
    hostname: name,
    logDirectory: join(daemon.logDir, name),
    dnsConfig: { servers: ["10.96.0.10"], searches: ["e2e-net.svc.cluster.local"], options: ["ndots:5"] },
    linux: { securityContext: { namespaceOptions: { pid: 1 /* CONTAINER */ } } },
    ...extra,
  });
  const container = (name: string, command: string[]) => ({
    metadata: { name, attempt: 0 },
    image: { image: image.reference },
    command,
    logPath: `${name}.log`,
    linux: { securityContext: { namespaceOptions: { pid: 1 /* CONTAINER */ } } },
  });
  const inNode = (args: string[]) => sh("ip", ["netns", "exec", node, ...args]);
  const fetchInNode = (url: string) => inNode([process.execPath, "-e", `fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(10000) }).then((r) => r.text()).then((t) => process.stdout.write(t))`]);

  it("gives pods in VMs addresses (IPv4 and IPv6); they reach each other, a namespace pod reaches them, the node reaches them directly and through a host port; DNS and hosts land in the guest; a restart keeps it all; nothing is left after removal", async () => {
    const rt = () => daemon.client.runtime;
    const st = await rt().status({});
    assert.equal(st.status?.conditions.find((c) => c.type === "NetworkReady")?.status, true);

    const webConfig = podConfig("web", { portMappings: [{ protocol: 0 /* TCP */, containerPort: 80, hostPort: 18080 }] });
    const { podSandboxId: web } = await rt().runPodSandbox({ config: webConfig });
    const { containerId: httpd } = await rt().createContainer({
      podSandboxId: web,
      config: container("httpd", ["sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && exec /bin/busybox httpd -f -p 80 -h /www"]),
      sandboxConfig: webConfig,
    });
    await rt().startContainer({ containerId: httpd });
    const clientConfig = podConfig("client");
    const { podSandboxId: client } = await rt().runPodSandbox({ config: clientConfig });
    const { containerId: shell } = await rt().createContainer({ podSandboxId: client, config: container("shell", ["sleep", "100000"]), sandboxConfig: clientConfig });
    await rt().startContainer({ containerId: shell });

    const ipOf = async (pod: string) => (await rt().podSandboxStatus({ podSandboxId: pod })).status?.network?.ip ?? "";
    const webIp = await ipOf(web);
    const clientIp = await ipOf(client);
    assert.match(webIp, new RegExp(`^${subnetPrefix.replaceAll(".", "\\.")}\\.\\d+$`));
    assert.match(clientIp, new RegExp(`^${subnetPrefix.replaceAll(".", "\\.")}\\.\\d+$`));
    assert.notEqual(webIp, clientIp);
    // Dual stack: the IPv6 address is the pod's additional IP, and the guests speak IPv6 to each other.
    const webV6 = (await rt().podSandboxStatus({ podSandboxId: web })).status?.network?.additionalIps[0]?.ip ?? "";
    assert.ok(webV6.startsWith(`${v6Prefix}:`), `an IPv6 address from the pod's network: ${webV6}`);
    const ping6 = await rt().execSync({ containerId: shell, cmd: ["/bin/busybox", "ping", "-6", "-c", "2", "-W", "5", webV6], timeout: 60n });
    assert.equal(ping6.exitCode, 0, `IPv6 pod to pod: ${Buffer.from(ping6.stdout).toString()}${Buffer.from(ping6.stderr).toString()}`);

    const fetchFromClient = async () => {
      // (busybox's static wget crashes; nc speaks HTTP well enough)
      const r = await rt().execSync({ containerId: shell, cmd: ["sh", "-c", `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 10 ${webIp} 80`], timeout: 60n });
      return Buffer.from(r.stdout).toString() + Buffer.from(r.stderr).toString();
    };
    assert.match(await fetchFromClient(), /hello-from-web/, "pod to pod");
    assert.equal(await fetchInNode(`http://${webIp}/`), "hello-from-web\n", "node to pod");
    assert.equal(await fetchInNode(`http://${gateway}:18080/`), "hello-from-web\n", "node to pod through the host port");

    // A namespace pod (runc handler) on the same network: its containers in the pod's CNI netns.
    const hostedConfig = podConfig("hosted");
    const { podSandboxId: hosted } = await rt().runPodSandbox({ config: hostedConfig, runtimeHandler: "runc" });
    const { containerId: hostedShell } = await rt().createContainer({ podSandboxId: hosted, config: container("hosted-shell", ["sleep", "100000"]), sandboxConfig: hostedConfig });
    await rt().startContainer({ containerId: hostedShell });
    const hostedIp = await ipOf(hosted);
    assert.match(hostedIp, new RegExp(`^${subnetPrefix.replaceAll(".", "\\.")}\\.\\d+$`));
    const fromHosted = await rt().execSync({ containerId: hostedShell, cmd: ["sh", "-c", `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 10 ${webIp} 80`], timeout: 60n });
    assert.match(Buffer.from(fromHosted.stdout).toString(), /hello-from-web/, "namespace pod to VM pod");

    const files = await rt().execSync({ containerId: shell, cmd: ["sh", "-c", "cat /etc/resolv.conf /etc/hosts; /bin/busybox hostname; /bin/busybox ip -o -4 addr show dev eth0"], timeout: 30n });
    const seen = Buffer.from(files.stdout).toString();
    assert.match(seen, /^nameserver 10\.96\.0\.10$/m);
    assert.match(seen, /^search e2e-net\.svc\.cluster\.local$/m);
    assert.match(seen, new RegExp(`^${clientIp.replaceAll(".", "\\.")}\\tclient$`, "m"), "the pod's own address in /etc/hosts");
    assert.match(seen, /^client$/m);
    assert.match(seen, new RegExp(`inet ${clientIp.replaceAll(".", "\\.")}/24`), "the guest's eth0 has the CNI address");

    await daemon.kill9();
    await daemon.restart();
    assert.equal(await ipOf(web), webIp, "the address survives the restart");
    assert.match(await fetchFromClient(), /hello-from-web/, "and the network still carries traffic");

    for (const pod of [web, client, hosted]) {
      await rt().stopPodSandbox({ podSandboxId: pod });
      await rt().removePodSandbox({ podSandboxId: pod });
    }
    const left = await podNetnses();
    for (const pod of [web, client, hosted]) assert.ok(!left.includes(`vmpod-${pod.slice(0, 24)}`), `the netns of pod ${pod} is gone`);
    const links = await inNode(["ip", "-o", "link", "show"]);
    assert.doesNotMatch(links, /veth/, "no veth left on the node");
    const rules = await inNode(["iptables-save"]);
    assert.ok(![webIp, clientIp, hostedIp].some((ip) => rules.includes(ip)), "no iptables rule for the pods is left");
    const allocations = (await readdir(join(ipamDir, `vmpod-e2e-${tag}`)).catch(() => [] as string[])).filter((f) => f.startsWith(subnetPrefix) || f.startsWith(v6Prefix));
    assert.deepEqual(allocations, [], "no address stays allocated");
  });

  it("refuses host networking for a VM pod, and a failing CNI plugin gives a clear error and leaves nothing", async () => {
    const rt = daemon.client.runtime;
    await assert.rejects(
      rt.runPodSandbox({ config: podConfig("hostnet", { linux: { securityContext: { namespaceOptions: { network: 2 /* NODE */, pid: 1 } } } }) }),
      (e: unknown) => (e as { code?: number }).code === grpcStatus.INVALID_ARGUMENT && /node's network/.test(String((e as Error).message)),
    );
    await writeFile(join(confDir, "10-e2e.conflist"), conflist([{ type: "vmpodfail" }]));
    try {
      await assert.rejects(rt.runPodSandbox({ config: podConfig("doomed") }), (e: unknown) => /vmpodfail refuses/.test(String((e as Error).message)));
    } finally {
      await writeFile(join(confDir, "10-e2e.conflist"), conflist());
    }
    assert.deepEqual(await podNetnses(), netnsBefore, "no pod netns left");
    assert.doesNotMatch(await inNode(["ip", "-o", "link", "show"]), /veth/, "no veth left");
    const allocations = (await readdir(join(ipamDir, `vmpod-e2e-${tag}`)).catch(() => [] as string[])).filter((f) => f.startsWith(subnetPrefix));
    assert.deepEqual(allocations, [], "the address is released");
    assert.deepEqual((await rt.listPodSandbox({})).items.filter((p) => p.metadata?.name === "doomed"), [], "no pod record is kept");
  });

  it("joins the VM to the pod's network by macvtap when configured so", async () => {
    const macvtapDaemon = await startDaemon({
      netns: node,
      runtimeToml: `internetworking_model = "macvtap"`,
      extraToml: `[cni]\nconf_dir = "${confDir}"\nbin_dirs = ["/usr/lib/cni"]\ncache_dir = "${join(dir, "cni-macvtap")}"\n`,
    });
    try {
      const rt = macvtapDaemon.client.runtime;
      await macvtapDaemon.client.images.pullImage({ image: { image: image.reference } });
      const config = { ...podConfig("macvtap-web"), logDirectory: join(macvtapDaemon.logDir, "macvtap-web") };
      const { podSandboxId: pod } = await rt.runPodSandbox({ config });
      const { containerId } = await rt.createContainer({
        podSandboxId: pod,
        config: container("httpd", ["sh", "-c", "mkdir -p /www && echo hello-through-macvtap > /www/index.html && exec /bin/busybox httpd -f -p 80 -h /www"]),
        sandboxConfig: config,
      });
      await rt.startContainer({ containerId });
      const ip = (await rt.podSandboxStatus({ podSandboxId: pod })).status?.network?.ip ?? "";
      assert.match(ip, new RegExp(`^${subnetPrefix.replaceAll(".", "\\.")}\\.\\d+$`));
      // httpd starts a moment after the container does.
      let answer = "";
      for (let i = 0; i < 30 && answer === ""; i++) answer = await fetchInNode(`http://${ip}/`).catch(async () => (await new Promise((r) => setTimeout(r, 1000)), ""));
      assert.equal(answer, "hello-through-macvtap\n", "node to pod through the macvtap");
      await rt.stopPodSandbox({ podSandboxId: pod });
      await rt.removePodSandbox({ podSandboxId: pod });
      assert.ok(!(await podNetnses()).includes(`vmpod-${pod.slice(0, 24)}`), "its netns is gone");
    } finally {
      await macvtapDaemon.dispose();
    }
  });
});
