import { describe, expect, it } from "vitest";
import { commandUsage, completeCommand, findCommand, parseInput, SLASH_COMMANDS } from "./slash-commands.js";

describe("slash commands", () => {
  it("is one table with unique names, each with help", () => {
    const names = SLASH_COMMANDS.flatMap((c) => [c.name, ...(c.aliases ?? [])]);
    expect(new Set(names).size).toBe(names.length);
    expect(SLASH_COMMANDS.map((c) => c.name)).toEqual(["help", "clear", "stats", "save", "kv", "exit"]);
    for (const c of SLASH_COMMANDS) expect(c.help.length).toBeGreaterThan(10);
    expect(commandUsage(findCommand("save")!)).toBe("/save FILE");
  });

  it("tells questions, commands with arguments and unknown commands apart", () => {
    expect(parseInput("  what is it? ")).toEqual({ kind: "question", text: "what is it?" });
    expect(parseInput("   ")).toEqual({ kind: "empty" });
    const save = parseInput("/save  notes/chat.md");
    expect(save.kind === "command" && save.command.name === "save" && save.args).toBe("notes/chat.md");
    const quit = parseInput("/QUIT");
    expect(quit.kind === "command" && quit.command.name).toBe("exit");
    expect(parseInput("/frob x")).toEqual({ kind: "unknown", name: "frob" });
    expect(parseInput("//etc/passwd is what?")).toEqual({ kind: "question", text: "/etc/passwd is what?" });
  });

  it("completes a unique command prefix with Tab", () => {
    expect(completeCommand("/sa")).toBe("/save ");
    expect(completeCommand("/st")).toBe("/stats");
    expect(completeCommand("/")).toBeUndefined();
    expect(completeCommand("/s")).toBeUndefined();
    expect(completeCommand("hello")).toBeUndefined();
    expect(completeCommand("/save x")).toBeUndefined();
  });
});
