/**
 * Bytes and inodes a directory tree uses on disk: allocated blocks, each
 * inode counted once however many hard links reach it.
 */
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { FilesystemUsage } from "../types.js";

export async function treeUsage(root: string): Promise<FilesystemUsage> {
  const seen = new Set<string>();
  let usedBytes = 0;
  const walk = async (path: string): Promise<void> => {
    let st;
    try {
      st = await lstat(path, { bigint: true });
    } catch {
      return; // gone while walking
    }
    const key = `${st.dev}:${st.ino}`;
    if (seen.has(key)) return;
    seen.add(key);
    usedBytes += Number(st.blocks) * 512;
    if (!st.isDirectory()) return;
    const names = await readdir(path).catch(() => [] as string[]);
    for (const name of names) await walk(join(path, name));
  };
  await walk(root);
  return { mountpoint: root, usedBytes, inodesUsed: seen.size, timestamp: Date.now() };
}
