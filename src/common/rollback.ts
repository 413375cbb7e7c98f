import { messageOf } from "./errors.js";

type Undo = () => void | Promise<void>;

/**
 * A stack of undo steps for a multi-step create. Push the undo right after a
 * step succeeds; `rollback()` runs them in reverse, keeps going past failures
 * and reports them all; `commit()` hands ownership on and empties the stack.
 * `await using` rolls back unless committed.
 */
export class Rollback implements AsyncDisposable {
  private steps: { name: string; undo: Undo }[] = [];

  push(name: string, undo: Undo): void {
    this.steps.push({ name, undo });
  }

  commit(): void {
    this.steps = [];
  }

  get size(): number {
    return this.steps.length;
  }

  /** Runs every undo in reverse order; throws an AggregateError naming each failed step. */
  async rollback(): Promise<void> {
    const steps = this.steps.reverse();
    this.steps = [];
    const failures: Error[] = [];
    for (const step of steps) {
      try {
        await step.undo();
      } catch (err) {
        failures.push(new Error(`undo ${step.name}: ${messageOf(err)}`, { cause: err }));
      }
    }
    if (failures.length > 0) {
      throw new AggregateError(failures, `rollback: ${failures.map((f) => f.message).join("; ")}`);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.rollback();
  }
}
