// The layer map of src/ (DESIGN.md, "Architecture"): a folder may import only folders below it, so no import goes
// up and no two folders import each other. Tests may reach down anywhere (they build fixtures with lower layers).
//
//   cli → tui → commands → bench, eval → calibrate → documents, profiles → engine → settings → base
//
// engine/addon.ts is the typed boundary to the native addon: only src/engine imports it.
const LAYERS = [["cli"], ["tui"], ["commands"], ["bench", "eval"], ["calibrate"], ["documents", "profiles"], ["engine"], ["settings"], ["base"]];

const folder = (names) => `^src/(${names.join("|")})/`;
const notTest = "\\.test\\.tsx?$";

const upward = LAYERS.flatMap((layer, i) => {
  const above = LAYERS.slice(0, i + 1)
    .flat()
    .filter((n) => !layer.includes(n));
  if (above.length === 0) return [];
  return [
    {
      name: `no-upward-from-${layer.join("-")}`,
      comment: `${layer.join(", ")} may import only the layers below it`,
      severity: "error",
      from: { path: folder(layer), pathNot: notTest },
      to: { path: folder(above) },
    },
  ];
});

// Folders of one layer are independent of each other.
const sideways = LAYERS.filter((l) => l.length > 1).flatMap((layer) =>
  layer.map((name) => ({
    name: `no-sideways-from-${name}`,
    comment: `${name} does not import the other folders of its layer (${layer.join(", ")})`,
    severity: "error",
    from: { path: folder([name]), pathNot: notTest },
    to: { path: folder(layer.filter((n) => n !== name)) },
  })),
);

module.exports = {
  forbidden: [
    ...upward,
    ...sideways,
    {
      name: "addon-only-from-engine",
      comment: "the native addon's typed boundary is the engine's own",
      severity: "error",
      from: { path: "^src/", pathNot: ["^src/engine/", notTest] },
      to: { path: "^src/engine/addon\\.ts$" },
    },
    {
      name: "no-circular",
      comment: "no import cycle, within a folder either",
      severity: "error",
      from: { path: "^src/", pathNot: notTest },
      // Cycles of runtime imports; a type-only import back (session.ts names the Model type) runs nothing.
      to: { circular: true, viaOnly: { dependencyTypesNot: ["type-only"] } },
    },
    {
      name: "every-folder-in-the-map",
      comment: "a new folder under src/ gets its place in LAYERS",
      severity: "error",
      from: { path: "^src/" },
      to: { path: "^src/[^/]+/", pathNot: folder(LAYERS.flat()) },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^(dist|native/build|native/deps)/" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { exportsFields: ["exports"], conditionNames: ["import", "require", "node", "default"], extensions: [".ts", ".tsx", ".js"] },
  },
};
