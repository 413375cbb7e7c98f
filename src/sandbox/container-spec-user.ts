/**
 * Who a container's process runs as: the CRI security context's user and
 * group, else the image's `User`, resolved against the image's /etc/passwd
 * and /etc/group (the OCI spec takes numbers only). The additional groups
 * are the primary group, the groups of /etc/group that list the user by
 * name, then the pod's and container's supplemental groups.
 */
import { VmpodError } from "../common/errors.js";

export interface PasswdEntry {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

export interface GroupEntry {
  readonly name: string;
  readonly gid: number;
  readonly members: readonly string[];
}

export interface UserRequest {
  readonly runAsUser?: number;
  readonly runAsGroup?: number;
  readonly runAsUsername?: string;
  /** The image config's `User`: "", "uid", "name", "uid:gid", "name:group", ... */
  readonly imageUser?: string;
  readonly supplementalGroups: readonly number[];
  /** The text of the image's /etc/passwd and /etc/group, when it has them. */
  readonly passwd?: string;
  readonly group?: string;
}

export interface ResolvedUser {
  readonly uid: number;
  readonly gid: number;
  readonly additionalGids: number[];
  /** The user's name in the image, when known. */
  readonly username?: string;
}

const MAX_ID = 0xffffffff;

function parseId(text: string): number | undefined {
  if (!/^\d{1,10}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= MAX_ID ? n : undefined;
}

function lines(text: string | undefined): string[][] {
  if (text === undefined) return [];
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => l.split(":"));
}

export function parsePasswd(text: string | undefined): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const f of lines(text)) {
    const uid = parseId(f[2] ?? "");
    const gid = parseId(f[3] ?? "");
    if (f[0] && uid !== undefined && gid !== undefined) out.push({ name: f[0], uid, gid });
  }
  return out;
}

export function parseGroup(text: string | undefined): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const f of lines(text)) {
    const gid = parseId(f[2] ?? "");
    if (f[0] && gid !== undefined) out.push({ name: f[0], gid, members: (f[3] ?? "").split(",").filter((m) => m !== "") });
  }
  return out;
}

function checkId(what: string, n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > MAX_ID) throw new VmpodError("InvalidArgument", `${what} ${n} is not a valid id`);
  return n;
}

export function resolveUser(req: UserRequest): ResolvedUser {
  const users = parsePasswd(req.passwd);
  const groups = parseGroup(req.group);
  const byName = (name: string, what: string): PasswdEntry => {
    const entry = users.find((u) => u.name === name);
    if (!entry) {
      throw new VmpodError(
        "InvalidArgument",
        req.passwd === undefined ? `${what} ${JSON.stringify(name)} cannot be resolved: the image has no /etc/passwd` : `${what} ${JSON.stringify(name)} is not in the image's /etc/passwd`,
      );
    }
    return entry;
  };
  const fromUid = (uid: number) => {
    const entry = users.find((u) => u.uid === uid);
    return { uid, gid: entry?.gid ?? 0, ...(entry ? { username: entry.name } : {}) };
  };

  let user: { uid: number; gid: number; username?: string };
  if (req.runAsUser !== undefined) {
    user = fromUid(checkId("runAsUser", req.runAsUser));
  } else if (req.runAsUsername !== undefined && req.runAsUsername !== "") {
    const numeric = parseId(req.runAsUsername);
    if (numeric !== undefined) user = fromUid(numeric);
    else {
      const entry = byName(req.runAsUsername, "user");
      user = { uid: entry.uid, gid: entry.gid, username: entry.name };
    }
  } else {
    user = fromImageUser(req.imageUser ?? "", groups, byName, fromUid, req.group !== undefined);
  }
  if (req.runAsGroup !== undefined) user = { ...user, gid: checkId("runAsGroup", req.runAsGroup) };

  const gids: number[] = [user.gid];
  if (user.username !== undefined) {
    for (const g of groups) if (g.members.includes(user.username)) gids.push(g.gid);
  }
  for (const g of req.supplementalGroups) gids.push(checkId("supplemental group", g));
  return { ...user, additionalGids: [...new Set(gids)] };
}

function fromImageUser(
  spec: string,
  groups: readonly GroupEntry[],
  byName: (name: string, what: string) => PasswdEntry,
  fromUid: (uid: number) => { uid: number; gid: number; username?: string },
  haveGroupFile: boolean,
): { uid: number; gid: number; username?: string } {
  if (spec === "") return fromUid(0);
  const colon = spec.indexOf(":");
  const userPart = colon < 0 ? spec : spec.slice(0, colon);
  const groupPart = colon < 0 ? undefined : spec.slice(colon + 1);
  if (userPart === "") throw new VmpodError("InvalidArgument", `the image's user ${JSON.stringify(spec)} names no user`);
  const numeric = parseId(userPart);
  let user: { uid: number; gid: number; username?: string };
  if (numeric !== undefined) user = fromUid(numeric);
  else {
    const entry = byName(userPart, "the image's user");
    user = { uid: entry.uid, gid: entry.gid, username: entry.name };
  }
  if (groupPart === undefined || groupPart === "") return user;
  const gid = parseId(groupPart);
  if (gid !== undefined) return { ...user, gid };
  const entry = groups.find((g) => g.name === groupPart);
  if (!entry) {
    throw new VmpodError(
      "InvalidArgument",
      haveGroupFile ? `the image's group ${JSON.stringify(groupPart)} is not in its /etc/group` : `the image's group ${JSON.stringify(groupPart)} cannot be resolved: the image has no /etc/group`,
    );
  }
  return { ...user, gid: entry.gid };
}
