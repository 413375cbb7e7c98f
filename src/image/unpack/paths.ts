/**
 * The pure decisions of unpacking: what an entry's name means inside the
 * layer (normalized, or refused), whether it is a whiteout, and which
 * extended attributes an image may not set.
 */
import { VmpodError } from "../../common/errors.js";

/**
 * An entry name made relative to the layer's root: leading `/` and `./`
 * stripped, empty and `.` components dropped. "" is the root itself.
 *
 * Any `..` component is refused, even one that would stay inside the root
 * (`a/../b`): no tar writer that builds images emits one, and resolving it by
 * text would disagree with the kernel as soon as `a` is a symlink. A NUL is
 * refused too (only a pax record can carry one; no file name can).
 */
export function normalizeEntryName(name: string, what = `entry ${JSON.stringify(name)}`): string {
  if (name.includes("\0")) throw new VmpodError("InvalidArgument", `${what}: name contains a NUL byte`);
  const parts: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") throw new VmpodError("InvalidArgument", `${what}: name contains "..", which could escape the layer's root`);
    parts.push(part);
  }
  return parts.join("/");
}

/** The directory part of a normalized name ("" for a top-level name or the root). */
export function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash === -1 ? "" : path.slice(0, slash);
}

/** The last component of a normalized name. */
export function baseOf(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** Every ancestor of a normalized name, outermost first, the root excluded: "a/b/c" → ["a", "a/b"]. */
export function ancestorsOf(path: string): string[] {
  const out: string[] = [];
  for (let i = path.indexOf("/"); i !== -1; i = path.indexOf("/", i + 1)) out.push(path.slice(0, i));
  return out;
}

const WHITEOUT_PREFIX = ".wh.";
const WHITEOUT_META_PREFIX = ".wh..wh.";
const OPAQUE_MARKER = ".wh..wh..opq";

/** What an entry is for the layer, judged from its (normalized) name. */
export type EntryRole =
  | { readonly kind: "plain"; readonly path: string }
  /** Hide `path` of the layers below: a 0/0 character device there. */
  | { readonly kind: "whiteout"; readonly path: string }
  /** Hide everything below `dir` in the layers below: trusted.overlay.opaque on it. */
  | { readonly kind: "opaque"; readonly dir: string }
  /** Other `.wh..wh.` names and what is inside them: AUFS's own metadata, meaningless here. */
  | { readonly kind: "ignored" };

export function roleOf(path: string, what: string): EntryRole {
  const base = baseOf(path);
  // AUFS keeps its metadata in `.wh..wh.` names (and, for hardlinks, inside `.wh..wh.plnk/`).
  if (path.split("/").some((part) => part.startsWith(WHITEOUT_META_PREFIX) && part !== OPAQUE_MARKER)) return { kind: "ignored" };
  if (!base.startsWith(WHITEOUT_PREFIX)) return { kind: "plain", path };
  if (base === OPAQUE_MARKER) return { kind: "opaque", dir: parentOf(path) };
  const hidden = base.slice(WHITEOUT_PREFIX.length);
  if (hidden === "" || hidden === "." || hidden === "..") {
    throw new VmpodError("InvalidArgument", `${what}: whiteout names no entry`);
  }
  const dir = parentOf(path);
  return { kind: "whiteout", path: dir === "" ? hidden : `${dir}/${hidden}` };
}

/**
 * Xattrs that would let a layer forge overlayfs metadata (opaque directories,
 * redirects, metacopy, origin): `trusted.overlay.*`, and `user.overlay.*`,
 * which overlayfs reads instead when mounted with `userxattr`. Only the
 * unpacker writes these, from whiteout entries.
 */
export function isForbiddenXattr(name: string): boolean {
  return name.startsWith("trusted.overlay.") || name.startsWith("user.overlay.");
}
