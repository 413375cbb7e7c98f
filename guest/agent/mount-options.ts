/** mount(8)-style options, split into mount(2) flags and the file system's own data string. */

const FLAGS: Readonly<Record<string, number>> = {
  ro: 1,
  rw: 0,
  nosuid: 2,
  nodev: 4,
  noexec: 8,
  sync: 16,
  dirsync: 128,
  noatime: 1024,
  nodiratime: 2048,
  relatime: 1 << 21,
  strictatime: 1 << 24,
  defaults: 0,
};

export const MS_RDONLY = 1;

/** True for an option that is a mount(2) flag rather than file-system data. */
export function isMountFlag(option: string): boolean {
  return Object.hasOwn(FLAGS, option);
}

/** mount(8)-style options → mount(2) flags and the filesystem's own data string. */
export function parseMountOptions(options: readonly string[]): { flags: number; data: string } {
  let flags = 0;
  const data: string[] = [];
  for (const option of options) {
    const flag = Object.hasOwn(FLAGS, option) ? FLAGS[option] : undefined;
    if (flag !== undefined) flags |= flag;
    else if (option !== "") data.push(option);
  }
  return { flags, data: data.join(",") };
}
