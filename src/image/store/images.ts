/**
 * Image records: one JSON file per image, named by its id (the config's
 * digest), written atomically; an in-memory index over them answers by id,
 * id prefix, tag or digest. A tag names one image: giving it to another
 * takes it from the first, as a registry's tag moves.
 */
import { readFile, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { messageOf } from "../../common/errors.js";
import { writeFileAtomic } from "../../common/fs.js";
import type { Logger } from "../../common/log.js";
import { isDigest, type Digest } from "../digest.js";
import type { ImageRecord } from "../types.js";
import type { StoreLayout } from "./layout.js";

const SHORT_ID = /^(sha256:)?([a-f0-9]{4,64})$/;

export class ImageIndex {
  private readonly records = new Map<Digest, ImageRecord>();

  constructor(
    private readonly layout: StoreLayout,
    private readonly logger: Logger,
  ) {}

  /** Reads every record; unreadable ones are logged and skipped, never fatal. */
  async load(): Promise<void> {
    this.records.clear();
    const names = await readdir(this.layout.imagesDir).catch(() => [] as string[]);
    const loaded: ImageRecord[] = [];
    for (const name of names) {
      if (!name.endsWith(".json") || name.startsWith(".")) continue;
      try {
        const record = JSON.parse(await readFile(join(this.layout.imagesDir, name), "utf8")) as ImageRecord;
        if (!isDigest(record.id) || `${record.id.slice(7)}.json` !== name) throw new Error("the record's id does not match its file name");
        loaded.push(record);
      } catch (err) {
        this.logger.warn("skipping unreadable image record", { file: name, err: messageOf(err) });
      }
    }
    // A crash while a tag moved can leave it on two records: the newer pull keeps it.
    loaded.sort((a, b) => a.pulledAt.localeCompare(b.pulledAt));
    for (const record of loaded) this.records.set(record.id, record);
    for (const record of loaded) await this.takeRefs(record);
  }

  all(): ImageRecord[] {
    return [...this.records.values()];
  }

  get(id: Digest): ImageRecord | undefined {
    return this.records.get(id);
  }

  /** By full id, tag or repo digest (canonical strings), then by unique id prefix. */
  find(canonical: string | undefined, raw: string): ImageRecord | undefined {
    if (isDigest(raw)) {
      const byId = this.records.get(raw);
      if (byId) return byId;
    }
    if (canonical !== undefined) {
      for (const record of this.records.values()) {
        if (record.repoTags.includes(canonical) || record.repoDigests.includes(canonical)) return record;
      }
    }
    const short = SHORT_ID.exec(raw);
    if (short?.[2] !== undefined) {
      const hex = short[2];
      const matches = [...this.records.values()].filter((r) => r.id.slice(7).startsWith(hex));
      if (matches.length === 1) return matches[0];
    }
    return undefined;
  }

  /** Stores a record (new or changed) and takes its tags from any other image. */
  async put(record: ImageRecord): Promise<void> {
    await writeFileAtomic(this.layout.image(record.id), JSON.stringify(record, null, 1), 0o644);
    this.records.set(record.id, record);
    await this.takeRefs(record);
  }

  async delete(id: Digest): Promise<void> {
    await rm(this.layout.image(id), { force: true });
    this.records.delete(id);
  }

  /** Removes `record`'s tags and repo digests from every other record. */
  private async takeRefs(record: ImageRecord): Promise<void> {
    const mine = new Set([...record.repoTags, ...record.repoDigests]);
    for (const other of this.records.values()) {
      if (other.id === record.id) continue;
      if (!other.repoTags.some((t) => mine.has(t)) && !other.repoDigests.some((d) => mine.has(d))) continue;
      const updated: ImageRecord = {
        ...other,
        repoTags: other.repoTags.filter((t) => !mine.has(t)),
        repoDigests: other.repoDigests.filter((d) => !mine.has(d)),
      };
      await writeFileAtomic(this.layout.image(updated.id), JSON.stringify(updated, null, 1), 0o644);
      this.records.set(updated.id, updated);
    }
  }
}
