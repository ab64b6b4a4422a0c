/** Several messages carried by one `postMessage`. */
export interface Bulk<M> {
  type: "bulk";
  messages: M[];
}

/**
 * Wrap a `postMessage`-like function so that messages posted within one turn of the event loop
 * travel together: under load one structured clone and one wake-up of the other side serve many
 * messages; an idle channel adds no more than that one turn.
 * @param post sends one message (or one Bulk) with its transfer list
 * @returns a function with the same shape that queues, and flushes on `setImmediate`
 */
export function coalescing<M>(post: (m: M | Bulk<M>, transfer?: ArrayBuffer[]) => void): (m: M, transfer?: ArrayBuffer[]) => void {
  let queue: M[] = [];
  let transfers: ArrayBuffer[] = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    const messages = queue;
    const t = transfers;
    queue = [];
    transfers = [];
    if (messages.length === 1) post(messages[0]!, t);
    else if (messages.length > 1) post({ type: "bulk", messages }, t);
  };
  return (m, transfer) => {
    queue.push(m);
    if (transfer) transfers.push(...transfer);
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
}

/** Call `each` for every message in what arrived (a Bulk or a single message). */
export function unbulk<M>(raw: unknown, each: (m: M) => void): void {
  const b = raw as Partial<Bulk<M>> | undefined;
  if (b?.type === "bulk" && Array.isArray(b.messages)) for (const m of b.messages) each(m);
  else each(raw as M);
}
