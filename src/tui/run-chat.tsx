// Starts the chat screen on the terminal and cleans up after it: the model is freed however the screen ends.
import { render } from "ink";
import { StopSignals } from "../base/signals.js";
import type { Conversation } from "../commands/chat.js";
import { ChatApp } from "./chat-app.js";
import type { ConversationOpener } from "./hooks/use-chat-session.js";

export interface RunChatOptions {
  open: ConversationOpener;
  modelName: string;
  /** The exit code for a failed load. */
  exitCodeOf: (e: unknown) => number;
}

/** Runs the chat screen until the user leaves; returns the exit code (0, 1 when loading failed, 130 when cancelled). */
export async function runChatTui(o: RunChatOptions): Promise<number> {
  let opening: Promise<Conversation> | null = null;
  const open: ConversationOpener = (onProgress, signal) => (opening = o.open(onProgress, signal));
  const app = render(<ChatApp open={open} modelName={o.modelName} exitCodeOf={o.exitCodeOf} />, { exitOnCtrlC: false });
  // Raw mode turns Ctrl-C into a key; these come from outside (kill, a closed terminal).
  const signals = new StopSignals({ signals: ["SIGINT", "SIGTERM", "SIGHUP"], onStop: () => app.unmount(), onSecond: () => undefined });
  try {
    const result = await app.waitUntilExit();
    return signals.exitCode ?? (typeof result === "number" ? result : 0);
  } finally {
    signals.dispose();
    // Unmounting aborted any loading or answer; wait for it to stop, then free the model.
    const conversation = await (opening as Promise<Conversation> | null)?.catch(() => null);
    await conversation?.close();
  }
}
