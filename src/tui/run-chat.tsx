// Starts the chat screen on the terminal and cleans up after it: the model is freed however the screen ends.
import { render } from "ink";
import type { Conversation } from "../commands/chat.js";
import { ChatApp } from "./chat-app.js";
import type { ConversationOpener } from "./hooks/use-chat-session.js";

export interface RunChatOptions {
  open: ConversationOpener;
  modelName: string;
}

/** Runs the chat screen until the user leaves; returns the exit code (0, 1 when loading failed, 130 when cancelled). */
export async function runChatTui(o: RunChatOptions): Promise<number> {
  let opening: Promise<Conversation> | null = null;
  const open: ConversationOpener = (onProgress, signal) => (opening = o.open(onProgress, signal));
  const app = render(<ChatApp open={open} modelName={o.modelName} />, { exitOnCtrlC: false });
  // Raw mode turns Ctrl-C into a key; these come from outside (kill, a closed terminal).
  let signalled: number | null = null;
  const onSignal = (code: number) => () => {
    signalled = code;
    app.unmount();
  };
  const handlers = { SIGINT: onSignal(130), SIGTERM: onSignal(143), SIGHUP: onSignal(129) } as const;
  for (const [sig, h] of Object.entries(handlers)) process.once(sig, h);
  try {
    const result = await app.waitUntilExit();
    return signalled ?? (typeof result === "number" ? result : 0);
  } finally {
    for (const [sig, h] of Object.entries(handlers)) process.off(sig, h);
    // Unmounting aborted any loading or answer; wait for it to stop, then free the model.
    const conversation = await (opening as Promise<Conversation> | null)?.catch(() => null);
    await conversation?.close();
  }
}
