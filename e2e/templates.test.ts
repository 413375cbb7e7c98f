/**
 * VM templates end to end: a real daemon (templates are on by default)
 * whose pods get their network from Debian's CNI plugins, in a network
 * namespace standing for the node. Two VM pods started through CRI are
 * restored from one template, built once: each runs its container, has its
 * own hostname, a clock set to the host's and a random pool of its own, and
 * the two reach each other over the pod network. Exec, logs and
 * port-forward work on a restored pod; after the daemon's kill -9 and
 * restart the pods are taken over and still talk; after removal nothing
 * is left.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { mountPoints } from "../src/common/mount.js";
import { assertNothingLeft, processesMentioning } from "../test/helpers/leaks.js";
import type { PushedImage } from "../test/helpers/registry/images.js";
import { connectSpdy, forwardOnce } from "../test/helpers/streaming/spdy-client.js";
import { runWsCommand } from "../test/helpers/streaming/ws-client.js";
import { startCniNode, type CniNode } from "./cni-node.js";
import type { Daemon } from "./daemon.js";
import { podNetnses, sh, until } from "./helpers.js";
import { reachFromTest } from "./netns-forward.js";

/** A template pod as the tests know it: its id, its container, its address. */
interface TemplatePod {
  readonly name: string;
  readonly id: string;
  readonly container: string;
  readonly ip: string;
}

describe("VM templates end to end (pods restored from one template through CRI)", function () {
  this.timeout(900_000);
  const tag = randomBytes(3).toString("hex");
  let cniNode: CniNode | undefined;
  let node: string;
  let dir: string;
  let subnetPrefix: string;
  let image: PushedImage;
  let daemon: Daemon;
  // The two pods, started by the first test that needs them (every test may run alone).
  let pods: Promise<[TemplatePod, TemplatePod]> | undefined;
  // How much the daemon had printed when the two pods were asked for.
  let outputBeforePods = 0;
  const templatesDir = () => join(dir, "templates");

  before(async () => {
    cniNode = await startCniNode({
      name: "tpl",
      bridgePrefix: "vmpt",
      subnetBase: "10.253",
      // Templates of its own, not the run's shared ones: what this daemon builds is what the tests count.
      extraToml: (nodeDir) => `[factory]\ntemplate_path = "${join(nodeDir, "templates")}"\n`,
    });
    ({ node, dir, subnetPrefix, image, daemon } = cniNode);
    await daemon.client.images.pullImage({ image: { image: image.reference } });
  });

  after(async () => {
    await cniNode?.dispose();
  });

  afterEach(function () {
    if (this.currentTest?.state === "failed") process.stderr.write(`daemon output:\n${daemon.output().slice(-8000)}\n`);
  });

  const rt = () => daemon.client.runtime;
  const podConfig = (name: string) => ({
    metadata: { name, uid: `uid-${name}-${tag}`, namespace: "e2e-tpl", attempt: 0 },
    hostname: name,
    logDirectory: join(daemon.logDir, name),
    linux: { securityContext: { namespaceOptions: { pid: 1 /* CONTAINER */ } } },
  });
  // Each pod serves its hostname on port 80, having said so in its log.
  const webCommand = ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && echo serving $(hostname) && exec /bin/busybox httpd -f -p 80 -h /www"];

  const startPod = async (name: string): Promise<TemplatePod> => {
    const config = podConfig(name);
    const { podSandboxId: id } = await rt().runPodSandbox({ config });
    const { containerId: container } = await rt().createContainer({
      podSandboxId: id,
      config: { metadata: { name: "web", attempt: 0 }, image: { image: image.reference }, command: webCommand, logPath: "web.log", linux: { securityContext: { namespaceOptions: { pid: 1 } } } },
      sandboxConfig: config,
    });
    await rt().startContainer({ containerId: container });
    const ip = (await rt().podSandboxStatus({ podSandboxId: id })).status?.network?.ip ?? "";
    return { name, id, container, ip };
  };
  /** The key of the template a pod's VM was restored from, as its verbose status says. */
  const templateOf = async (podSandboxId: string): Promise<unknown> => {
    const verbose = await rt().podSandboxStatus({ podSandboxId, verbose: true });
    return (JSON.parse(verbose.info["info"] ?? "{}") as { template?: unknown }).template;
  };
  const templateBuilds = () => daemon.output().split("\n").filter((l) => l.includes(`"msg":"vm template built"`)).length;
  /**
   * The two pods, once the template is there: a pod asking before it is
   * built boots cold and has it built (unless the daemon's warm-up built it
   * already), so a first pod is started; when it was not restored, the
   * build is waited for in the daemon's log. That pod is removed.
   */
  const templatePods = () =>
    (pods ??= (async () => {
      const { podSandboxId: warm } = await rt().runPodSandbox({ config: podConfig("tpl-warm") });
      if ((await templateOf(warm)) === undefined) {
        await until(
          "the template's build",
          async () => {
            if (daemon.output().includes(`"msg":"vm template build failed"`)) throw new Error("the daemon could not build the template");
            return templateBuilds() > 0 ? true : undefined;
          },
          600_000,
        );
      }
      await rt().stopPodSandbox({ podSandboxId: warm });
      await rt().removePodSandbox({ podSandboxId: warm });
      outputBeforePods = daemon.output().length;
      return [await startPod("tpl-a"), await startPod("tpl-b")] as [TemplatePod, TemplatePod];
    })());

  const execOut = async (pod: TemplatePod, script: string): Promise<string> => {
    const r = await rt().execSync({ containerId: pod.container, cmd: ["sh", "-c", script], timeout: 60n });
    const out = Buffer.from(r.stdout).toString();
    assert.equal(r.exitCode, 0, `${script} in ${pod.name}: ${out}${Buffer.from(r.stderr).toString()}`);
    return out;
  };
  /** What `from` gets from the httpd of `to`, over the pod network (busybox nc speaks HTTP well enough). */
  const fetchFrom = async (from: TemplatePod, to: TemplatePod): Promise<string> => {
    // httpd starts a moment after its container.
    let answer = "";
    for (let i = 0; i < 20 && !answer.includes("200 OK"); i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 500));
      const r = await rt().execSync({ containerId: from.container, cmd: ["sh", "-c", `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 10 ${to.ip} 80`], timeout: 60n });
      answer = Buffer.from(r.stdout).toString();
    }
    return answer;
  };
  it("restores two pods from one template built once: each runs its container, with its own hostname, the host's clock and a random pool of its own; they reach each other", async () => {
    const [a, b] = await templatePods();
    const keyA = await templateOf(a.id);
    assert.match(String(keyA), /^[0-9a-f]{16}$/, `pod ${a.name} says which template it was restored from`);
    assert.equal(await templateOf(b.id), keyA, "both pods come from the same template");
    assert.equal(templateBuilds(), 1, "the template is built once");
    assert.doesNotMatch(daemon.output().slice(outputBeforePods), /booting cold/, "neither pod fell back to a cold boot");

    for (const pod of [a, b]) {
      assert.equal((await rt().containerStatus({ containerId: pod.container })).status?.state, 1 /* CONTAINER_RUNNING */);
      assert.match(pod.ip, new RegExp(`^${subnetPrefix.replaceAll(".", "\\.")}\\.\\d+$`), `${pod.name} has an address from the pod network`);
      assert.equal(await execOut(pod, "hostname; cat /etc/hostname"), `${pod.name}\n${pod.name}\n`, "the pod's own hostname, not the template's");
      // The guest's clock (adjtimex reads it to the microsecond) within a second of the host's around the call.
      const before = Date.now();
      const clock = await execOut(pod, "/bin/busybox adjtimex");
      const after = Date.now();
      const sec = Number(/time\.tv_sec:\s*(\d+)/.exec(clock)?.[1]);
      const usec = Number(/time\.tv_usec:\s*(\d+)/.exec(clock)?.[1]);
      const guest = sec * 1000 + usec / 1000;
      assert.ok(Number.isFinite(guest), `adjtimex printed the time: ${clock}`);
      assert.ok(guest >= before - 1000 && guest <= after + 1000, `${pod.name}'s clock ${guest} is within 1 s of the host's [${before}, ${after}]`);
    }
    assert.notEqual(a.ip, b.ip);
    const random = async (pod: TemplatePod) => execOut(pod, "head -c 32 /dev/urandom | od -x");
    const [randomA, randomB] = [await random(a), await random(b)];
    assert.ok(randomA.trim().length > 0 && randomB.trim().length > 0, "od printed the bytes");
    assert.notEqual(randomA, randomB, "restored pods do not share the template's random state");

    assert.match(await fetchFrom(a, b), /\r\n\r\ntpl-b\n$/, "a reaches b");
    assert.match(await fetchFrom(b, a), /\r\n\r\ntpl-a\n$/, "b reaches a");
  });

  it("execs, logs and port-forwards on a template pod", async () => {
    const [a] = await templatePods();
    const logPath = join(daemon.logDir, a.name, "web.log");
    const log = await until("the container's log", async () => {
      const text = await readFile(logPath, "utf8").catch(() => "");
      return text.includes("serving") ? text : undefined;
    });
    assert.match(log, /^\S+ stdout F serving tpl-a$/m);

    const { url: wsUrl } = await rt().exec({ containerId: a.container, cmd: ["sh", "-c", "cat; echo done >&2"], stdin: true, stdout: true, stderr: true });
    const execRelay = await reachFromTest(node, wsUrl, dir);
    try {
      const ws = await runWsCommand(execRelay.url, { stdin: "into a restored vm\n" });
      assert.equal(ws.channels.get(1), "into a restored vm\n");
      assert.equal(ws.channels.get(2), "done\n");
    } finally {
      await execRelay.close();
    }

    const { url: pfUrl } = await rt().portForward({ podSandboxId: a.id, port: [80] });
    const pfRelay = await reachFromTest(node, pfUrl, dir);
    const conn = await connectSpdy(pfRelay.url, ["portforward.k8s.io"]);
    try {
      const answer = await forwardOnce(conn.session, "1", 80, "GET / HTTP/1.0\r\n\r\n");
      assert.match(answer.data, /^HTTP\/1\.[01] 200/);
      assert.match(answer.data, /\r\n\r\ntpl-a\n$/);
    } finally {
      conn.session.destroy();
      await pfRelay.close();
    }
  });

  it("takes the template pods over after the daemon's kill -9; they still reach each other", async () => {
    const [a, b] = await templatePods();
    const key = await templateOf(a.id);
    await daemon.kill9();
    await daemon.restart();
    const listed = await rt().listPodSandbox({});
    for (const pod of [a, b]) {
      assert.equal(listed.items.find((p) => p.id === pod.id)?.state, 0 /* SANDBOX_READY */, `${pod.name} is taken over`);
      assert.equal(await templateOf(pod.id), key, `${pod.name} still says which template it came from`);
      assert.equal((await rt().containerStatus({ containerId: pod.container })).status?.state, 1 /* CONTAINER_RUNNING */);
    }
    assert.match(await fetchFrom(a, b), /\r\n\r\ntpl-b\n$/, "a still reaches b");
    assert.match(await fetchFrom(b, a), /\r\n\r\ntpl-a\n$/, "b still reaches a");
    assert.equal(templateBuilds(), 1, "the restarted daemon uses the template on disk");
  });

  it("removes the template pods and leaves nothing: no QEMU, netns, veth, mounts or state files", async () => {
    const started = await templatePods();
    for (const pod of started) {
      await rt().stopPodSandbox({ podSandboxId: pod.id });
      await rt().removePodSandbox({ podSandboxId: pod.id });
    }
    pods = undefined;
    assert.deepEqual((await rt().listPodSandbox({})).items, [], "no pod is listed");
    const netnses = await podNetnses();
    for (const pod of started) assert.ok(!netnses.includes(`vmpod-${pod.id.slice(0, 24)}`), `the netns of ${pod.name} is gone`);
    assert.doesNotMatch(await sh("ip", ["-n", node, "-o", "link", "show"]), /veth/, "no veth left on the node");
    const state = join(daemon.root, "state");
    await assertNothingLeft(join(state, "sandboxes"));
    const stateFiles = (await readdir(state, { recursive: true, withFileTypes: true })).filter((e) => !e.isDirectory()).map((e) => join(e.parentPath, e.name));
    assert.deepEqual(stateFiles, [], "no record, socket or other file is left in the daemon's state");
    assert.deepEqual(await processesMentioning(state), [], "no QEMU or virtiofsd of a pod is left");
    assert.deepEqual(await processesMentioning(templatesDir()), [], "no QEMU of the template's build or of a restore is left");
    assert.deepEqual((await mountPoints()).filter((m) => m.startsWith(daemon.root + "/")), [], "no mount under the daemon's directory is left");
  });
});
