// Validate one GLB/glTF file with the Khronos glTF-Validator and print a JSON summary.
// Usage: node tests/node/validate_gltf.js FILE.glb
// Exit status: 0 when the file has no errors, 1 when it has errors, 2 on bad usage or a validator failure.
"use strict";

const fs = require("fs");
const path = require("path");
const validator = require("gltf-validator");

const MAX_ISSUES = 100;

async function main(argv) {
  if (argv.length !== 1) {
    console.error("usage: node validate_gltf.js FILE.glb");
    return 2;
  }
  const file = argv[0];
  const bytes = new Uint8Array(fs.readFileSync(file));
  const report = await validator.validateBytes(bytes, {
    uri: path.basename(file),
    maxIssues: MAX_ISSUES,
  });
  const issues = report.issues;
  const summary = {
    file: file,
    validatorVersion: report.validatorVersion,
    numErrors: issues.numErrors,
    numWarnings: issues.numWarnings,
    numInfos: issues.numInfos,
    numHints: issues.numHints,
    truncated: issues.truncated,
    messages: issues.messages,
  };
  console.log(JSON.stringify(summary, null, 2));
  return issues.numErrors > 0 ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(`validate_gltf: ${error}`);
    process.exit(2);
  },
);
