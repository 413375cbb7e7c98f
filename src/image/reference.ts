/**
 * Image references as kubelet and users write them (`busybox`,
 * `user/app:1.0`, `127.0.0.1:5000/a/b@sha256:…`), parsed, validated and
 * normalized the way Docker does: a reference without a registry host is on
 * docker.io, and a one-component docker.io repository is under `library/`.
 */
import { VmpodError } from "../common/errors.js";
import { isDigest, type Digest } from "./digest.js";
import type { ImageReference } from "./types.js";

export const DOCKER_HUB = "docker.io";
const DOCKER_HUB_ALIASES = new Set(["docker.io", "index.docker.io"]);

/** One path component: lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`. */
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
/** A DNS name or IPv4 address with an optional port, or a bracketed IPv6 address with an optional port. */
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;
const HEX64 = /^[a-f0-9]{64}$/;
const MAX_NAME = 255;

/** `sha256:<64 hex>` or 64 hex characters: an image id, never a repository name. */
export function isImageIdLike(s: string): boolean {
  return isDigest(s) || HEX64.test(s);
}

export function parseReference(s: string): ImageReference {
  const bad = (why: string) => new VmpodError("InvalidArgument", `invalid image reference ${JSON.stringify(s)}: ${why}`);
  if (s === "") throw bad("it is empty");
  if (s.trim() !== s || /\s/.test(s)) throw bad("it contains white space");
  if (HEX64.test(s)) throw bad("a 64-character hexadecimal string is an image id, not a repository");

  let rest = s;
  let digest: Digest | undefined;
  const at = rest.lastIndexOf("@");
  if (at >= 0) {
    const d = rest.slice(at + 1);
    if (!isDigest(d)) throw bad(`${JSON.stringify(d)} is not a sha256 digest (sha256:<64 lowercase hex>)`);
    digest = d;
    rest = rest.slice(0, at);
  }

  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`tag ${JSON.stringify(tag)} is not valid (letters, digits, '_', '.', '-', at most 128, not starting with '.' or '-')`);
  }
  if (rest === "") throw bad("the repository name is missing");

  let registry = DOCKER_HUB;
  let path = rest;
  const slash = rest.indexOf("/");
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    // Docker's rule: the first component names a registry host when it looks like one.
    if (first.includes(".") || first.includes(":") || first === "localhost" || first !== first.toLowerCase()) {
      if (!HOST.test(first)) throw bad(`${JSON.stringify(first)} is not a valid registry host`);
      registry = DOCKER_HUB_ALIASES.has(first.toLowerCase()) ? DOCKER_HUB : first;
      path = rest.slice(slash + 1);
    }
  }
  if (path === "") throw bad("the repository name is missing");
  for (const component of path.split("/")) {
    if (component === "") throw bad("the repository path has an empty component");
    if (!COMPONENT.test(component)) {
      const why =
        component !== component.toLowerCase()
          ? "repository names must be lowercase"
          : "repository path components are lowercase letters and digits separated by '.', '_', '__' or '-'";
      throw bad(`${JSON.stringify(component)}: ${why}`);
    }
  }
  if (registry === DOCKER_HUB && !path.includes("/")) path = `library/${path}`;
  if (`${registry}/${path}`.length > MAX_NAME) throw bad(`the name is longer than ${MAX_NAME} characters`);
  if (tag === undefined && digest === undefined) tag = "latest";

  return { registry, repository: path, ...(tag === undefined ? {} : { tag }), ...(digest === undefined ? {} : { digest }) };
}

/** `registry/repository`: "docker.io/library/busybox". */
export function repositoryName(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}`;
}

/** The canonical form: "docker.io/library/busybox:latest", "reg/a:tag@sha256:…", "reg/a@sha256:…". */
export function formatReference(ref: ImageReference): string {
  return `${repositoryName(ref)}${ref.tag === undefined ? "" : `:${ref.tag}`}${ref.digest === undefined ? "" : `@${ref.digest}`}`;
}

/** "docker.io/library/busybox:latest", or undefined when the reference has no tag. */
export function repoTag(ref: ImageReference): string | undefined {
  return ref.tag === undefined ? undefined : `${repositoryName(ref)}:${ref.tag}`;
}

/** "docker.io/library/busybox@sha256:…" */
export function repoDigest(ref: ImageReference, digest: Digest): string {
  return `${repositoryName(ref)}@${digest}`;
}
