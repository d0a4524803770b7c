// Validates rendered Kubernetes manifests (kubectl kustomize output, on stdin) against the Kubernetes API schemas:
//   node deploy/tools/validate-manifests.mjs <tools-folder> < rendered.yaml
// <tools-folder> holds node_modules with the packages of deploy/tools/package.json (.ci/run installs them).
// Two checks per object, because neither catches everything alone:
//   1. kubernetes-models' JSON-schema validators (generated from the Kubernetes OpenAPI): types, enums, required
//      fields, formats. They accept unknown fields, as the API's schema does.
//   2. TypeScript's excess-property check against the same models' type declarations: every field must exist at
//      its place (a misspelt `matchLabelKey:` or a field at the wrong level fails), as `kubectl apply
//      --validate=strict` would say on a real cluster.
// Prints one line per object and exits 1 when any object is invalid or of a kind without a schema.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const tools = resolve(process.argv[2] ?? "");
const modules = join(tools, "node_modules");
const require = createRequire(join(tools, "package.json"));
const { parseAllDocuments } = require("yaml");

const objects = [];
for (const document of parseAllDocuments(readFileSync(0, "utf8"))) {
  if (document.errors.length > 0) {
    console.log(`INVALID YAML: ${document.errors.map(e => e.message).join("; ")}`);
    process.exit(1);
  }
  const object = document.toJS();
  if (object) objects.push(object);
}

let invalid = 0;
const typed = [];
for (const [index, object] of objects.entries()) {
  const name = `${object.kind}/${object.metadata?.name}`;
  const [group, version] = String(object.apiVersion).includes("/") ? object.apiVersion.split("/") : ["", object.apiVersion];
  const folder = join(modules, "kubernetes-models", ...(group ? [group, version] : [version]));
  let model;
  try {
    model = (await import(pathToFileURL(join(folder, "index.js")).href))[object.kind];
  } catch {
    model = undefined;
  }
  if (typeof model !== "function") {
    console.log(`INVALID ${name}: no schema for ${object.apiVersion} ${object.kind}`);
    invalid++;
    continue;
  }
  try {
    new model(object).validate();
  } catch (error) {
    console.log(`INVALID ${name}: ${error.message}`);
    invalid++;
    continue;
  }
  typed.push({ index, name, module: join(folder, `${object.kind}.js`), kind: object.kind, object });
}

// Excess properties: one TypeScript file assigning each object literal to its model's interface.
const work = mkdtempSync(join(tools, "check-"));
try {
  const lines = [];
  for (const t of typed) {
    lines.push(`import type { I${t.kind} as T${t.index} } from ${JSON.stringify(t.module)};`);
  }
  for (const t of typed) {
    lines.push(`// ${t.name}`);
    lines.push(`export const o${t.index}: T${t.index} = ${JSON.stringify(t.object, null, 1)};`);
  }
  const file = join(work, "objects.ts");
  writeFileSync(file, lines.join("\n") + "\n");
  const tsc = join(modules, "typescript", "bin", "tsc");
  let output = "";
  try {
    execFileSync(process.execPath, [tsc, "--noEmit", "--strict", "--skipLibCheck", "--target", "es2022", "--module", "esnext",
      "--moduleResolution", "bundler", "--allowImportingTsExtensions", "--pretty", "false", file], { encoding: "utf8" });
  } catch (error) {
    output = `${error.stdout ?? ""}${error.stderr ?? ""}`;
  }
  const source = readFileSync(file, "utf8").split("\n");
  const failed = new Set();
  for (const line of output.split("\n").filter(l => l.includes("error TS"))) {
    const at = /objects\.ts\((\d+),/.exec(line);
    // The object a line belongs to: the nearest "// Kind/name" above it.
    let owner = "?";
    for (let i = at ? Number(at[1]) - 1 : -1; i >= 0; i--) {
      if (source[i].startsWith("// ")) { owner = source[i].slice(3); break; }
    }
    console.log(`INVALID ${owner}: ${line.replace(/^.*error TS\d+: /, "")}`);
    failed.add(owner);
  }
  if (output && failed.size === 0) {
    console.log(`INVALID: the type check failed:\n${output}`);
    invalid++;
  }
  invalid += failed.size;
  for (const t of typed.filter(t => !failed.has(t.name))) console.log(`valid ${t.name}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}

console.log(`${objects.length} objects, ${invalid} invalid`);
process.exit(invalid > 0 || objects.length === 0 ? 1 : 0);
