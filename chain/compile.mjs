// Compiles Havn's contracts with solc-js (no download, no native solc) into
// artifacts/<Name>.json ({contractName, abi, bytecode}), which are committed.
//
//   node chain/compile.mjs          rewrite the artifacts
//   node chain/compile.mjs --check  fail (exit 1) unless recompiling gives the committed ones
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
let solc;
try {
    solc = require("solc");
} catch {
    console.error("compile: solc-js is missing; run scripts/setup (npm ci in chain/)");
    process.exit(2);
}
const CONTRACTS = ["HAI", "StakeGuard", "Adjudicator", "PayoutRouter"];
const check = process.argv.includes("--check");
const dir = path.join(here, "contracts");
const sources = {};
for (const f of fs.readdirSync(dir).filter((f) => f.endsWith(".sol")).sort()) {
    sources[f] = { content: fs.readFileSync(path.join(dir, f), "utf8") };
}
const input = {
    language: "Solidity",
    sources,
    settings: {
        optimizer: { enabled: true, runs: 200 },
        evmVersion: "cancun",
        // No metadata hash: the bytecode depends on the sources and settings only.
        metadata: { bytecodeHash: "none", appendCBOR: false },
        outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
    },
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors || []).filter((e) => e.severity === "error");
for (const e of out.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);

let stale = [];
fs.mkdirSync(path.join(here, "artifacts"), { recursive: true });
for (const name of CONTRACTS) {
    const c = out.contracts[`${name}.sol`]?.[name];
    if (!c) {
        console.error(`compile: ${name}.sol did not produce contract ${name}`);
        process.exit(1);
    }
    const artifact = {
        contractName: name,
        compiler: `solc-js ${solc.version()}`,
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
    };
    const text = JSON.stringify(artifact, null, 1) + "\n";
    const file = path.join(here, "artifacts", `${name}.json`);
    if (check) {
        const committed = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
        if (committed !== text) stale.push(name);
    } else {
        fs.writeFileSync(file, text);
    }
}
if (stale.length) {
    console.error(
        `compile: the committed artifacts differ from the sources for ${stale.join(", ")}; ` +
            "run `node chain/compile.mjs` and commit chain/artifacts"
    );
    process.exit(1);
}
console.log(check ? `compile: artifacts match the sources (${CONTRACTS.length} contracts)` : `compile: wrote ${CONTRACTS.length} artifacts`);
